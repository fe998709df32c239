/* template.h -- job requests, job templates and the argv/env a job runs with.
 *
 * Wire format: docs/jobs.md ("Request", "Templates"). Three layers:
 *
 *   pc_job_request_parse()   the request JSON (POST /api/jobs body, the `spec`
 *                            field of pc:job:<id>): shape checks only. Used at
 *                            the edge (gateway, CLI) and again by the runner.
 *   pc_tmpl_set_*            a runner's --config file: templates with typed
 *                            parameters, plus limits_max.
 *   pc_job_plan_build()      request + templates -> the exact argv, envp, cwd,
 *                            limits, timeout, pty and restart policy to spawn.
 *
 * Parameter values are substituted for `{name}` inside argv elements only:
 * one argv element stays one element (no word splitting, no shell), so a
 * value such as `; rm -rf /` or `$(id)` is plain text; the default pattern
 * refuses it anyway. An element that is exactly `{name}` of an optional
 * parameter without a default that the request left out is dropped from argv
 * (optional flags); elsewhere an absent value is the empty string.
 * `${...}` is never a placeholder (shell templates keep their variables).
 */
#ifndef PC_TEMPLATE_H
#define PC_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "spawn.h"

#define PC_JOB_ARGV_MAX 256        /* argv elements in a request */
#define PC_JOB_ARG_LEN_MAX 4096    /* bytes per argv element / parameter value */
#define PC_JOB_TIMEOUT_MAX 604800  /* timeout_s upper bound (7 days) */
#define PC_JOB_SESSION_MAX 64      /* bytes of a session id */
#define PC_JOB_SPEC_MAX (1 << 20)  /* bytes of a request JSON */
#define PC_TMPL_NAME_MAX 64        /* bytes of a template or parameter name */
#define PC_TMPL_FILE_MAX (1 << 20) /* bytes of a --config file */

/* ------------------------------------------------------------ requests */

/**
 * Parse and check a job request (docs/jobs.md "Request"): a JSON object with
 * only the known keys, exactly one of `template` / `argv`, argv of 1-256
 * strings of at most 4096 bytes, env names [A-Za-z_][A-Za-z0-9_]*, timeout_s
 * 1..604800, positive integer limits, a valid channel and session, no NUL
 * (`\u0000`) anywhere. Template parameters are not checked here (that needs
 * the template: see pc_tmpl_check_args).
 * @return the parsed request (owned by the caller, cJSON_Delete), or NULL
 * with a message in @p err such as `"timeout_s": must be an integer 1..604800`.
 */
cJSON *pc_job_request_parse(const char *json, size_t len, char *err, size_t errlen);

/** Like pc_job_request_parse for an already parsed object. @return 0 or PC_EINVAL. */
int pc_job_request_check(const cJSON *req, char *err, size_t errlen);

/* ------------------------------------------------------------ templates */

/* A runner's templates and limits_max (opaque). */
struct pc_tmpl_set;

/**
 * Parse a --config document (docs/jobs.md "Templates"). Every template is
 * checked now: argv shape, parameter declarations (type, pattern compiles,
 * default matches), placeholders naming declared parameters, limits, restart.
 * @return a set owned by the caller (pc_tmpl_set_free), or NULL with a
 * message in @p err naming the template and the field.
 */
struct pc_tmpl_set *pc_tmpl_set_parse(const char *json, size_t len, char *err, size_t errlen);

/** Read and parse the file at @p path (at most PC_TMPL_FILE_MAX bytes). */
struct pc_tmpl_set *pc_tmpl_set_load(const char *path, char *err, size_t errlen);

/** pc_tmpl_set_free(NULL) is a no-op. */
void pc_tmpl_set_free(struct pc_tmpl_set *ts);

/** @return the number of templates in @p ts (0 for NULL). */
int pc_tmpl_set_count(const struct pc_tmpl_set *ts);

/**
 * The public description of every template, as published in the runner
 * heartbeat: `{name: {"description", "params": {p: {"type", "pattern",
 * "default", "required", "min", "max", "allow_dash", "allow_dotdot"}}}}`
 * (argv, env and cwd are not exposed). Owned by the caller; NULL when out of
 * memory; an empty object for a NULL set.
 */
cJSON *pc_tmpl_set_describe(const struct pc_tmpl_set *ts);

/**
 * Check request arguments @p args (an object name -> string|number|bool, or
 * an array of "k=v" strings; NULL = none) against the parameter declarations
 * @p params (a template's "params" object, as in the config file or in a
 * heartbeat's description; NULL = none). Unknown or duplicate names, missing
 * required values, type/min/max/pattern mismatches, a leading '-' (unless
 * allow_dash) and `..` path segments (unless allow_dotdot) are refused.
 * @return 0 or PC_EINVAL with a message such as
 * `parameter "dir": "../etc" contains a ".." path segment`.
 */
int pc_tmpl_check_args(const cJSON *params, const cJSON *args, char *err, size_t errlen);

/* ------------------------------------------------------------ plans */

enum pc_restart_policy { PC_RESTART_NEVER = 0, PC_RESTART_ON_FAILURE = 1 };

/* What a job runs with. Every pointer is owned by the plan. */
struct pc_job_plan {
    char **argv;      /* NULL-terminated */
    char **envp;      /* NULL-terminated */
    char *cwd;        /* NULL: the runner's */
    char *template;   /* template name, NULL for an argv request */
    char *stdin_data; /* written to stdin first, NULL when none */
    size_t stdin_len; /* bytes at stdin_data */
    int pty;          /* run on a pty */
    int shell;        /* the template says it runs a shell */
    long timeout_s;   /* 0: none */
    struct pc_limits limits;
    enum pc_restart_policy restart;
    int max_attempts; /* >= 1 */
    int backoff_ms;   /* between attempts */
};

/* The runner-side facts that go into a job's environment. */
struct pc_job_ctx {
    const char *job_id;  /* PIPECAST_JOB_ID */
    const char *channel; /* PIPECAST_CHANNEL */
    const char *home;    /* HOME, NULL: "/" */
};

/**
 * Turn a checked request into a plan: the template's argv with parameters
 * substituted (or the request's argv when @p allow_any is nonzero and the
 * request has one), env = PATH, HOME, LANG, template env, request env,
 * PIPECAST_JOB_ID, PIPECAST_CHANNEL (a template job's request may not set
 * PATH, LD_* and other variables that change which code runs), limits and
 * timeout = the smallest of template, request and limits_max.
 * @p ts may be NULL (no templates). On success @return 0 and fill @p plan
 * (free with pc_job_plan_free); else @return PC_EINVAL (or PC_ENOMEM) with a
 * message in @p err such as `unknown template "bulid"` and leave @p plan empty.
 */
int pc_job_plan_build(const struct pc_tmpl_set *ts, int allow_any, const cJSON *req,
                      const struct pc_job_ctx *ctx, struct pc_job_plan *plan, char *err,
                      size_t errlen);

/** Free what @p plan owns and zero it; safe on a zeroed or already freed plan. */
void pc_job_plan_free(struct pc_job_plan *plan);

#endif
