/* jobs_api.h -- the job endpoints of pipecast-gateway (docs/jobs.md, "Gateway job API").
 *
 * api.c's router hands every request whose path gw_jobs_api_match() accepts to
 * gw_jobs_api_handle(); everything else about jobs (validation, Redis keys,
 * control messages) stays inside jobs_api.c.
 */
#ifndef PC_GW_JOBS_API_H
#define PC_GW_JOBS_API_H

#include <stddef.h>

struct mg_connection;
struct gw_ctx;
struct gw_jobs;

/* Job ids: 16 lowercase hex characters. */
#define GW_JOB_ID_LEN 16

/*
 * The job API's shared state: a short-lived snapshot of the live runners, so
 * that a burst of submits does not SCAN the keyspace once each. Thread-safe.
 * @return the state, or NULL when out of memory (the API then reads Redis
 * every time). gw_jobs_free(NULL) is a no-op.
 */
struct gw_jobs *gw_jobs_new(void);
void gw_jobs_free(struct gw_jobs *j);

/*
 * @return 1 when @p uri (the raw local URI) belongs to the job API:
 * /api/jobs[/...], /api/sessions[/...], /api/runners, /api/templates.
 */
int gw_jobs_api_match(const char *uri);

/* Answer one request that gw_jobs_api_match() accepted. @return the HTTP status sent. */
int gw_jobs_api_handle(struct mg_connection *conn, struct gw_ctx *gw);

/* What gw_jobs_session_walk() does to the jobs of a session, and what it finds. */
struct gw_session_walk {
    /* in */
    int kill;                 /* kill every queued/running job, as DELETE /api/sessions/<s> */
    long long created_max_ms; /* kill and channel_ttl_s: only jobs created at or before (0: all) */
    const char *members_key;  /* the set of job ids to walk (NULL: the session's set) */
    int channel_ttl_s;        /* > 0: EXPIRE <channel stream> this NX, for each job's channel */
    int watched;              /* read the jobs' channels' scores in <prefix>:sessions:watched */
    /* out */
    size_t jobs;          /* job ids in the session's set (with a hash) */
    size_t live;          /* of them queued or running */
    size_t killed;        /* kill asked */
    size_t channels_ttl;  /* channel streams that got a TTL now */
    long long watched_ms; /* the newest watched score of those channels (0: none) */
};

struct redisContext;

/*
 * Walk the jobs of session @p session (a valid name) on the borrowed
 * connection @p c: the code of DELETE /api/sessions/<s>, for callers without
 * an HTTP request (sessions.c). @return 0, or -1 with the reason in @p err;
 * then *broken says whether @p c must be dropped rather than reused.
 */
int gw_jobs_session_walk(struct gw_ctx *gw, struct redisContext *c, const char *session,
                         struct gw_session_walk *w, int *broken, char *err, size_t errlen);

#endif
