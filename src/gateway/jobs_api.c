/* jobs_api.c -- the job endpoints of the gateway (docs/jobs.md, "Gateway job API").
 *
 *   POST   /api/jobs                                 submit: validate, check live runners, queue
 *   GET    /api/jobs[?status=&session=&cursor=&limit=]  list, newest first
 *   GET    /api/jobs/<id>                            one job
 *   DELETE /api/jobs/<id>[?signal=TERM|KILL|INT|HUP]  kill (cancel while queued)
 *   POST   /api/jobs/<id>/stdin[?eof=1]              write the body to the job's stdin
 *   DELETE /api/sessions/<s>                         kill every queued/running job of a session
 *   GET    /api/sessions/<s>                         idle expiry, activity, job counts
 *   PUT    /api/sessions/<s>                         {"idle_s": N|null}: set or drop idle expiry
 *   POST   /api/sessions/<s>/touch                   activity (refresh the idle expiry)
 *   GET    /api/runners                              live runners (heartbeats + "free")
 *   GET    /api/templates                            templates of the live runners, merged
 *
 * Redis keys (prefix "pc" shown):
 *
 *   pc:jobs            stream   one entry per job: "job <id>"     (runners: XREADGROUP)
 *   pc:job:<id>        hash     state; written here at submit, then by the runner
 *   pc:jobs:index      zset     score = created ms, member = id   (listing)
 *   pc:session:<s>     set      the job ids of a session
 *   pc:sessions:*      session idle expiry: meta hash, expiry and watched zsets (sessions.h)
 *   pc:runner:<r>      string   heartbeat JSON with EX 15         (liveness, templates)
 *   pc:ctl:<r>         stream   control messages to runner r      (kill, stdin, eof)
 *
 * A submit is one MULTI/EXEC (hash, index, session, queue entry), so a runner
 * never sees a queue entry without its hash. Requests are validated here,
 * strictly (unknown keys, duplicate keys, NUL, types, ranges), and the
 * template's parameters against the declarations the live runners publish in
 * their heartbeats; the runner validates again, it never trusts the queue.
 *
 * Handlers fill a struct jreq with the answer; the pooled Redis connection
 * goes back before the answer is written, so a slow client never holds one.
 */
#include "jobs_api.h"

#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/utf8.h"

#include "gateway.h"
#include "http_util.h"
#include "sessions.h"

#define JOBS_LIST_DEFAULT 100
#define JOBS_LIST_MAX 1000
#define JOBS_LIST_PAGE 500        /* index entries per ZREVRANGEBYSCORE */
#define JOBS_LIST_EXAMINE 10000   /* index entries looked at per list request at most */
#define JOBS_INDEX_KEEP "-100001" /* ZREMRANGEBYRANK 0 this: keep the newest 100000 */
/* Control streams are never trimmed by writers (MAXLEN would cut entries the runner has not
 * read): the runner trims what it read; a write refreshes the stream's expiry, so the stream of a
 * runner that died goes away; kills stop at JOBS_CTL_KILL_MAX entries waiting (503), stdin
 * messages are bounded by the job's stdin_max, each charged JOBS_STDIN_MSG_COST bytes more. */
#define JOBS_CTL_TTL "86400"
#define JOBS_CTL_KILL_MAX "100000"
#define JOBS_STDIN_MSG_COST "64"
#define JOBS_STDIN_MAX_DEFAULT "1048576"
#define JOBS_SESSION_JOBS_MAX 100000 /* jobs of one session handled per request */
#define JOBS_RUNNERS_MAX 1024
#define JOBS_SCAN_ROUNDS 1000
#define JOBS_MGET_BATCH 128
#define JOBS_HB_MAX (256 * 1024)             /* a heartbeat larger than this is ignored */
#define JOBS_HB_TOTAL_MAX (32 * 1024 * 1024) /* heartbeat bytes kept per load */
#define JOBS_SNAP_MS 5000                    /* how long a runner snapshot serves submits */
#define JOBS_ARGV_MAX 256
#define JOBS_ARG_MAX 4096 /* bytes of one argv element or parameter value */
#define JOBS_MAP_MAX 1024 /* entries of env or args */
#define JOBS_NAME_MAX 128 /* template, param and env names */
#define JOBS_ENV_VALUE_MAX 65536
#define JOBS_PATH_MAX 4096
#define JOBS_TIMEOUT_MAX 604800
#define JOBS_LIMIT_MAX 2147483647LL
#define JOBS_SESSION_MAX 64
#define JOBS_PATTERN_MAX 1024
#define JOBS_DEFAULT_PATTERN "^[A-Za-z0-9_.,:@=+/-]*$"
#define JOBS_READ_CHUNK (64 * 1024)
#define JOBS_KEY_MAX (PC_PREFIX_MAX + 300)
#define JOBS_RUNNER_ID_MAX 256
#define JOBS_CMD_ARGS 32

static const char ALLOW_JOBS[] = "Allow: GET, POST, OPTIONS\r\n";
static const char ALLOW_JOB[] = "Allow: GET, DELETE, OPTIONS\r\n";
static const char ALLOW_STDIN[] = "Allow: POST, OPTIONS\r\n";
static const char ALLOW_SESSION[] = "Allow: GET, PUT, DELETE, OPTIONS\r\n";
static const char ALLOW_TOUCH[] = "Allow: POST, OPTIONS\r\n";
static const char ALLOW_GET[] = "Allow: GET, OPTIONS\r\n";

static const char *const job_statuses[] = {"queued",  "running", "exited", "killed",
                                           "timeout", "failed",  "lost"};
#define JOBS_STATUS_COUNT (sizeof(job_statuses) / sizeof(job_statuses[0]))

/* ------------------------------------------------------------------------ */
/* Request context and answers                                               */
/* ------------------------------------------------------------------------ */

struct jreq {
    struct mg_connection *conn;
    struct gw_ctx *gw;
    const struct mg_request_info *ri;
    redisContext *c;                        /* borrowed from the pool on first use */
    int broken;                             /* c failed: close it when it goes back */
    char rerr[256];                         /* why Redis failed */
    char job_session[JOBS_SESSION_MAX + 1]; /* the session job_state() read ("": none) */
    /* the answer */
    int status;
    const char *extra; /* extra header lines, or NULL */
    char extra_buf[128];
    cJSON *json; /* body (owned), or NULL: {"error": msg} */
    char msg[1024];
};

static int jerr(struct jreq *q, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int jerr(struct jreq *q, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(q->msg, sizeof(q->msg), fmt, ap);
    va_end(ap);
    cJSON_Delete(q->json);
    q->json = NULL;
    q->status = status;
    return status;
}

/* Answer @p o (taken) with @p status. */
static int jok(struct jreq *q, int status, cJSON *o)
{
    if (!o)
        return jerr(q, 500, "out of memory");
    cJSON_Delete(q->json);
    q->json = o;
    q->status = status;
    return status;
}

/* 503: Redis is unreachable (q->rerr says why). */
static int junavail(struct jreq *q)
{
    q->extra = "Retry-After: 2\r\n";
    return jerr(q, 503, "%s", q->rerr[0] ? q->rerr : "redis: unavailable");
}

/* 500: Redis answered something unexpected to @p what. */
static int jreply_error(struct jreq *q, const char *what, const redisReply *r)
{
    gw_metrics_add(&q->gw->metrics->redis_errors, 1);
    return jerr(q, 500, "redis: %s: %s", what,
                r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
}

static redisContext *jredis(struct jreq *q)
{
    if (!q->c && !q->broken)
        q->c = gw_rpool_get(q->gw->pool, GW_POOL_WAIT_MS, q->rerr, sizeof(q->rerr));
    return q->broken ? NULL : q->c;
}

static void jbroken(struct jreq *q)
{
    q->broken = 1;
    snprintf(q->rerr, sizeof(q->rerr), "redis: %s",
             q->c && q->c->errstr[0] ? q->c->errstr : "connection lost");
}

/* An argv for redisCommandArgv / redisAppendCommandArgv. */
struct cmd {
    int argc;
    const char *argv[JOBS_CMD_ARGS];
    size_t len[JOBS_CMD_ARGS];
};

static void cmd_arg(struct cmd *m, const char *s, size_t len)
{
    if (m->argc < JOBS_CMD_ARGS) {
        m->argv[m->argc] = s;
        m->len[m->argc] = len;
        m->argc++;
    }
}

static void cmd_str(struct cmd *m, const char *s)
{
    cmd_arg(m, s, strlen(s));
}

/* Run @p m. @return the reply (may be an error reply), or NULL with the connection marked broken.
 */
static redisReply *jcmd(struct jreq *q, struct cmd *m)
{
    redisContext *c = jredis(q);
    redisReply *r;

    if (!c)
        return NULL;
    r = redisCommandArgv(c, m->argc, m->argv, m->len);
    if (!r)
        jbroken(q);
    return r;
}

/* Queue @p m on the connection (pipelining). @return 0 or -1 (broken). */
static int jappend(struct jreq *q, struct cmd *m)
{
    redisContext *c = jredis(q);

    if (!c)
        return -1;
    if (redisAppendCommandArgv(c, m->argc, m->argv, m->len) != REDIS_OK) {
        jbroken(q);
        return -1;
    }
    return 0;
}

/* The next pipelined reply, or NULL with the connection marked broken. */
static redisReply *jget(struct jreq *q)
{
    void *v = NULL;

    if (!q->c || q->broken)
        return NULL;
    if (redisGetReply(q->c, &v) != REDIS_OK) {
        jbroken(q);
        return NULL;
    }
    return v;
}

static int method_is(const struct jreq *q, const char *m)
{
    return q->ri->request_method && strcmp(q->ri->request_method, m) == 0;
}

static int not_allowed(struct jreq *q, const char *allow)
{
    char m[64];
    const char *rm = q->ri->request_method ? q->ri->request_method : "";

    gw_http_quote(rm, strlen(rm), m, sizeof(m));
    q->extra = allow;
    return jerr(q, 405, "method %s not allowed here", m);
}

/* OPTIONS (CORS preflight included): sent at once, no Redis involved. */
static int preflight(struct jreq *q, const char *allow)
{
    char extra[512];
    const char *methods = strchr(allow, ' ') + 1;

    snprintf(extra, sizeof(extra),
             "%sAccess-Control-Allow-Methods: %.*s\r\n"
             "Access-Control-Allow-Headers: Content-Type, Last-Event-ID\r\n"
             "Access-Control-Max-Age: 600\r\n",
             allow, (int)(strlen(methods) - 2), methods);
    q->status = gw_http_send(q->conn, q->gw, 204, "text/plain", extra, NULL, 0);
    return -1; /* answered */
}

/*
 * Read the request body into @p body (capped at max-body). @return 0, or the
 * error answer set (413 closes the connection: the rest is not read).
 */
static int read_body(struct jreq *q, struct pc_buf *body)
{
    size_t max = q->gw->cfg->max_body;
    char *chunk;
    int rc = 0;

    pc_buf_init(body, max);
    if (q->ri->content_length > (long long)max) {
        mg_disable_connection_keep_alive(q->conn);
        q->extra = "Connection: close\r\n";
        return jerr(q, 413, "body of %lld bytes is larger than max-body (%zu bytes)",
                    q->ri->content_length, max);
    }
    chunk = malloc(JOBS_READ_CHUNK);
    if (!chunk)
        return jerr(q, 500, "out of memory");
    for (;;) {
        int n = mg_read(q->conn, chunk, JOBS_READ_CHUNK);

        if (n == 0)
            break;
        if (n < 0 || pc_buf_append(body, chunk, (size_t)n) != 0) {
            mg_disable_connection_keep_alive(q->conn);
            q->extra = "Connection: close\r\n";
            rc = n < 0 ? jerr(q, 400, "could not read the body")
                       : jerr(q, 413, "body larger than max-body (%zu bytes)", max);
            break;
        }
    }
    free(chunk);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Names and small parsers                                                   */
/* ------------------------------------------------------------------------ */

static int job_id_valid(const char *s, size_t len)
{
    if (len != GW_JOB_ID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int session_valid(const char *s, size_t len)
{
    return len >= 1 && len <= JOBS_SESSION_MAX && pc_channel_valid(s, len);
}

static int env_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > JOBS_NAME_MAX ||
        !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

static int status_known(const char *s)
{
    for (size_t i = 0; i < sizeof(job_statuses) / sizeof(job_statuses[0]); i++)
        if (strcmp(s, job_statuses[i]) == 0)
            return 1;
    return 0;
}

/* Strict decimal integer with an optional '-' (at most 18 digits). @return 0 or -1. */
static int parse_ll(const char *s, size_t len, long long *out)
{
    long long v = 0;
    size_t i = 0;
    int neg = 0;

    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len || len - i > 18)
        return -1;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* A JSON number that is an integer in [min, max]. @return 0 or -1. */
static int json_int(const cJSON *v, long long min, long long max, long long *out)
{
    double d;

    if (!cJSON_IsNumber(v))
        return -1;
    d = v->valuedouble;
    if (!(d >= (double)min && d <= (double)max) || d != (double)(long long)d)
        return -1;
    *out = (long long)d;
    return 0;
}

/* Untrusted text for a message. */
static const char *quote(const char *s, char *dst, size_t dstlen)
{
    gw_http_quote(s ? s : "", s ? strlen(s) : 0, dst, dstlen);
    return dst;
}

/* 16 lowercase hex characters from /dev/urandom. @return 0 or -1. */
static int job_new_id(char id[GW_JOB_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[GW_JOB_ID_LEN / 2];
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (got < sizeof(raw)) {
        ssize_t n = read(fd, raw + got, sizeof(raw) - got);

        if (n <= 0) {
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    for (size_t i = 0; i < sizeof(raw); i++) {
        id[2 * i] = hex[raw[i] >> 4];
        id[2 * i + 1] = hex[raw[i] & 15];
    }
    id[GW_JOB_ID_LEN] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The request body: strict JSON, normalized spec                           */
/* ------------------------------------------------------------------------ */

/*
 * Checks cJSON does not make: valid UTF-8, no NUL byte (raw or \u0000, which
 * cJSON would silently cut a string at), no raw control character inside a
 * string. @return 0 or -1 with a message.
 */
static int json_precheck(const char *s, size_t len, char *msg, size_t msglen)
{
    int in_str = 0;

    if (!pc_utf8_valid((const unsigned char *)s, len)) {
        snprintf(msg, msglen, "body: not valid UTF-8");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '\0') {
            snprintf(msg, msglen, "body: NUL byte at offset %zu", i);
            return -1;
        }
        if (!in_str) {
            in_str = c == '"';
            continue;
        }
        if (c == '"') {
            in_str = 0;
        } else if (c < 0x20) {
            snprintf(msg, msglen, "body: control character 0x%02X inside a string (offset %zu)", c,
                     i);
            return -1;
        } else if (c == '\\') {
            if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) {
                snprintf(msg, msglen, "body: \\u0000 (NUL) is not allowed in strings");
                return -1;
            }
            i++; /* the escaped character; \uXXXX's digits are plain characters */
        }
    }
    return 0;
}

/* session_idle_s is the gateway's (sessions.c): it is not part of the spec the runner sees */
static const char *const spec_keys[] = {"template", "args", "argv",   "channel",
                                        "session",  "env",  "cwd",    "timeout_s",
                                        "stdin",    "pty",  "limits", "session_idle_s"};
enum {
    K_TEMPLATE,
    K_ARGS,
    K_ARGV,
    K_CHANNEL,
    K_SESSION,
    K_ENV,
    K_CWD,
    K_TIMEOUT,
    K_STDIN,
    K_PTY,
    K_LIMITS,
    K_SESSION_IDLE,
    K_COUNT
};

static const char *const limit_keys[] = {"cpu_s", "as_mb", "nofile", "nproc"};

struct spec {
    cJSON *norm;                        /* the normalized request: the "spec" field */
    const char *template;               /* inside norm, or NULL (argv request) */
    const cJSON *args;                  /* norm's "args": an object of strings, or NULL */
    char channel[PC_CHANNEL_MAX + 1];   /* "" = the default channel */
    char session[JOBS_SESSION_MAX + 1]; /* "" = none */
    long long session_idle_s;           /* 0 = not given */
};

/* A string of 0..max bytes (already NUL-free, see json_precheck). */
static int json_str(const cJSON *v, size_t min, size_t max)
{
    size_t n;

    if (!cJSON_IsString(v) || !v->valuestring)
        return 0;
    n = strlen(v->valuestring);
    return n >= min && n <= max;
}

/* Does object @p o already hold key @p k before item @p upto? (Duplicate keys.) */
static int json_dup_key(const cJSON *o, const cJSON *upto)
{
    for (const cJSON *it = o->child; it && it != upto; it = it->next)
        if (strcmp(it->string, upto->string) == 0)
            return 1;
    return 0;
}

/*
 * "args" -> an object of strings. Accepts {"k": "v" | integer | bool} or
 * ["k=v", ...]. @return the new object, or NULL with a message.
 */
static cJSON *args_normalize(const cJSON *a, char *msg, size_t msglen)
{
    cJSON *o = cJSON_CreateObject();
    char q[160], key[JOBS_NAME_MAX + 1], num[32];
    int count = 0;

    if (!o) {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    if (!cJSON_IsArray(a) && !cJSON_IsObject(a)) {
        snprintf(msg, msglen, "args: expected an object or an array of \"name=value\" strings");
        goto fail;
    }
    for (const cJSON *it = a->child; it; it = it->next) {
        const char *val;

        if (++count > JOBS_MAP_MAX) {
            snprintf(msg, msglen, "args: more than %d entries", JOBS_MAP_MAX);
            goto fail;
        }
        if (cJSON_IsArray(a)) {
            const char *eq;

            if (!json_str(it, 0, JOBS_NAME_MAX + 1 + JOBS_ARG_MAX) ||
                !(eq = strchr(it->valuestring, '=')) || eq == it->valuestring ||
                (size_t)(eq - it->valuestring) > JOBS_NAME_MAX) {
                snprintf(msg, msglen, "args[%d]: expected a \"name=value\" string", count - 1);
                goto fail;
            }
            memcpy(key, it->valuestring, (size_t)(eq - it->valuestring));
            key[eq - it->valuestring] = '\0';
            val = eq + 1;
        } else {
            long long n;

            if (strlen(it->string) == 0 || strlen(it->string) > JOBS_NAME_MAX) {
                snprintf(msg, msglen, "args: invalid parameter name \"%s\"",
                         quote(it->string, q, sizeof(q)));
                goto fail;
            }
            snprintf(key, sizeof(key), "%s", it->string);
            if (cJSON_IsString(it)) {
                val = it->valuestring;
            } else if (cJSON_IsBool(it)) {
                val = cJSON_IsTrue(it) ? "true" : "false";
            } else if (json_int(it, -(1LL << 53), 1LL << 53, &n) == 0) {
                snprintf(num, sizeof(num), "%lld", n);
                val = num;
            } else {
                snprintf(msg, msglen, "args.%s: expected a string, an integer or a boolean",
                         quote(key, q, sizeof(q)));
                goto fail;
            }
        }
        if (strlen(val) > JOBS_ARG_MAX) {
            snprintf(msg, msglen, "args.%s: value longer than %d bytes", quote(key, q, sizeof(q)),
                     JOBS_ARG_MAX);
            goto fail;
        }
        if (cJSON_GetObjectItemCaseSensitive(o, key)) {
            snprintf(msg, msglen, "args: parameter \"%s\" given twice", quote(key, q, sizeof(q)));
            goto fail;
        }
        if (!cJSON_AddStringToObject(o, key, val)) {
            snprintf(msg, msglen, "out of memory");
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static int check_argv(const cJSON *v, char *msg, size_t msglen)
{
    int n = 0;

    if (!cJSON_IsArray(v) || !v->child) {
        snprintf(msg, msglen, "argv: expected a non-empty array of strings");
        return -1;
    }
    for (const cJSON *it = v->child; it; it = it->next, n++) {
        if (n >= JOBS_ARGV_MAX) {
            snprintf(msg, msglen, "argv: more than %d elements", JOBS_ARGV_MAX);
            return -1;
        }
        if (!json_str(it, n == 0 ? 1 : 0, JOBS_ARG_MAX)) {
            snprintf(msg, msglen, "argv[%d]: expected a string of %d-%d bytes", n, n == 0 ? 1 : 0,
                     JOBS_ARG_MAX);
            return -1;
        }
    }
    return 0;
}

static int check_env(const cJSON *v, char *msg, size_t msglen)
{
    char q[160];
    int n = 0;

    if (!cJSON_IsObject(v)) {
        snprintf(msg, msglen, "env: expected an object of strings");
        return -1;
    }
    for (const cJSON *it = v->child; it; it = it->next) {
        if (++n > JOBS_MAP_MAX) {
            snprintf(msg, msglen, "env: more than %d variables", JOBS_MAP_MAX);
            return -1;
        }
        if (!env_name_valid(it->string)) {
            snprintf(msg, msglen,
                     "env: invalid variable name \"%s\" (allowed: [A-Za-z_][A-Za-z0-9_]*)",
                     quote(it->string, q, sizeof(q)));
            return -1;
        }
        if (!json_str(it, 0, JOBS_ENV_VALUE_MAX)) {
            snprintf(msg, msglen, "env.%s: expected a string of at most %d bytes", it->string,
                     JOBS_ENV_VALUE_MAX);
            return -1;
        }
        if (n <= JOBS_MAP_MAX && json_dup_key(v, it)) {
            snprintf(msg, msglen, "env: variable \"%s\" given twice", it->string);
            return -1;
        }
    }
    return 0;
}

static int check_limits(const cJSON *v, char *msg, size_t msglen)
{
    unsigned seen = 0;
    char q[160];

    if (!cJSON_IsObject(v)) {
        snprintf(msg, msglen, "limits: expected an object");
        return -1;
    }
    for (const cJSON *it = v->child; it; it = it->next) {
        size_t k;
        long long n;

        for (k = 0; k < sizeof(limit_keys) / sizeof(limit_keys[0]); k++)
            if (strcmp(it->string, limit_keys[k]) == 0)
                break;
        if (k == sizeof(limit_keys) / sizeof(limit_keys[0])) {
            snprintf(msg, msglen,
                     "limits: unknown key \"%s\" (allowed: cpu_s, as_mb, nofile, nproc)",
                     quote(it->string, q, sizeof(q)));
            return -1;
        }
        if (seen & (1u << k)) {
            snprintf(msg, msglen, "limits: key \"%s\" given twice", limit_keys[k]);
            return -1;
        }
        seen |= 1u << k;
        if (json_int(it, 1, JOBS_LIMIT_MAX, &n) != 0) {
            snprintf(msg, msglen, "limits.%s: expected an integer 1-%lld", limit_keys[k],
                     JOBS_LIMIT_MAX);
            return -1;
        }
    }
    return 0;
}

static void spec_free(struct spec *sp)
{
    cJSON_Delete(sp->norm);
    memset(sp, 0, sizeof(*sp));
}

/*
 * Parse and validate a request body into @p sp (docs/jobs.md "Request").
 * @return 0, or -1 with a message for a 400.
 */
static int spec_parse(const char *s, size_t len, struct spec *sp, char *msg, size_t msglen)
{
    const cJSON *item[K_COUNT] = {0};
    const char *end = NULL;
    cJSON *root, *norm = NULL;
    char q[160];
    long long n;

    memset(sp, 0, sizeof(*sp));
    if (json_precheck(s, len, msg, msglen) != 0)
        return -1;
    root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!root) {
        snprintf(msg, msglen, "body: invalid JSON (at offset %zu)",
                 end && end >= s && end <= s + len ? (size_t)(end - s) : (size_t)0);
        return -1;
    }
    while (end && end < s + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != s + len) {
        snprintf(msg, msglen, "body: unexpected data after the JSON value");
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(msg, msglen, "body: expected a JSON object");
        goto fail;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        int k;

        for (k = 0; k < K_COUNT; k++)
            if (strcmp(it->string, spec_keys[k]) == 0)
                break;
        if (k == K_COUNT) {
            snprintf(msg, msglen,
                     "unknown key \"%s\" (allowed: template, args, argv, channel, session, env, "
                     "cwd, timeout_s, stdin, pty, limits, session_idle_s)",
                     quote(it->string, q, sizeof(q)));
            goto fail;
        }
        if (item[k]) {
            snprintf(msg, msglen, "key \"%s\" given twice", spec_keys[k]);
            goto fail;
        }
        item[k] = it;
    }

    if (!item[K_TEMPLATE] == !item[K_ARGV]) {
        snprintf(msg, msglen, "exactly one of \"template\" and \"argv\" is required");
        goto fail;
    }
    norm = cJSON_CreateObject();
    if (!norm) {
        snprintf(msg, msglen, "out of memory");
        goto fail;
    }
    if (item[K_TEMPLATE]) {
        cJSON *args;

        if (!json_str(item[K_TEMPLATE], 1, JOBS_NAME_MAX)) {
            snprintf(msg, msglen, "template: expected a name of 1-%d bytes", JOBS_NAME_MAX);
            goto fail;
        }
        if (item[K_ARGS]) {
            args = args_normalize(item[K_ARGS], msg, msglen);
            if (!args)
                goto fail;
        } else {
            args = cJSON_CreateObject();
        }
        if (!cJSON_AddStringToObject(norm, "template", item[K_TEMPLATE]->valuestring) || !args ||
            !cJSON_AddItemToObject(norm, "args", args)) {
            cJSON_Delete(args);
            snprintf(msg, msglen, "out of memory");
            goto fail;
        }
        sp->template = cJSON_GetObjectItemCaseSensitive(norm, "template")->valuestring;
        sp->args = args;
    } else {
        if (item[K_ARGS]) {
            snprintf(msg, msglen, "args: only with \"template\" (argv is given whole)");
            goto fail;
        }
        if (check_argv(item[K_ARGV], msg, msglen) != 0)
            goto fail;
    }
    if (item[K_CHANNEL]) {
        const cJSON *v = item[K_CHANNEL];

        if (!cJSON_IsString(v) || !pc_channel_valid(v->valuestring, strlen(v->valuestring))) {
            if (cJSON_IsString(v))
                pc_channel_explain(v->valuestring, strlen(v->valuestring), msg, msglen);
            else
                snprintf(msg, msglen, "channel: expected a string");
            goto fail;
        }
        snprintf(sp->channel, sizeof(sp->channel), "%s", v->valuestring);
    }
    if (item[K_SESSION]) {
        const cJSON *v = item[K_SESSION];

        if (!cJSON_IsString(v) || !session_valid(v->valuestring, strlen(v->valuestring))) {
            snprintf(msg, msglen,
                     "session \"%s\": invalid (allowed: 1-%d bytes of A-Z a-z 0-9 . _ : @ -)",
                     cJSON_IsString(v) ? quote(v->valuestring, q, sizeof(q)) : "(not a string)",
                     JOBS_SESSION_MAX);
            goto fail;
        }
        snprintf(sp->session, sizeof(sp->session), "%s", v->valuestring);
    }
    if (item[K_ENV] && check_env(item[K_ENV], msg, msglen) != 0)
        goto fail;
    if (item[K_CWD] && !json_str(item[K_CWD], 1, JOBS_PATH_MAX)) {
        snprintf(msg, msglen, "cwd: expected a path of 1-%d bytes", JOBS_PATH_MAX);
        goto fail;
    }
    if (item[K_TIMEOUT] && json_int(item[K_TIMEOUT], 1, JOBS_TIMEOUT_MAX, &n) != 0) {
        snprintf(msg, msglen, "timeout_s: expected an integer 1-%d", JOBS_TIMEOUT_MAX);
        goto fail;
    }
    if (item[K_STDIN] && !cJSON_IsString(item[K_STDIN])) {
        snprintf(msg, msglen, "stdin: expected a string");
        goto fail;
    }
    if (item[K_PTY] && !cJSON_IsBool(item[K_PTY])) {
        snprintf(msg, msglen, "pty: expected true or false");
        goto fail;
    }
    if (item[K_LIMITS] && check_limits(item[K_LIMITS], msg, msglen) != 0)
        goto fail;
    if (item[K_SESSION_IDLE]) {
        if (json_int(item[K_SESSION_IDLE], 1, GW_SESSION_IDLE_MAX, &sp->session_idle_s) != 0) {
            snprintf(msg, msglen, "session_idle_s: expected an integer 1-%d (seconds)",
                     GW_SESSION_IDLE_MAX);
            goto fail;
        }
        if (!sp->session[0]) {
            snprintf(msg, msglen, "session_idle_s: only with \"session\"");
            goto fail;
        }
    }

    /* The normalized spec: known keys in a fixed order, args as an object of strings. */
    for (int k = K_ARGV; k < K_COUNT; k++) {
        cJSON *d;

        if (!item[k] || k == K_SESSION_IDLE)
            continue;
        d = cJSON_Duplicate(item[k], 1);
        if (!d || !cJSON_AddItemToObject(norm, spec_keys[k], d)) {
            cJSON_Delete(d);
            snprintf(msg, msglen, "out of memory");
            goto fail;
        }
    }
    cJSON_Delete(root);
    sp->norm = norm;
    return 0;
fail:
    cJSON_Delete(norm);
    cJSON_Delete(root);
    sp->template = NULL;
    sp->args = NULL;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Live runners                                                              */
/* ------------------------------------------------------------------------ */

struct runner {
    char *id; /* the key's suffix: pc:runner:<id> */
    cJSON *hb;
};

struct runners {
    struct runner *v;
    size_t n;
    size_t bytes; /* heartbeat bytes kept (capped at JOBS_HB_TOTAL_MAX) */
};

static void runners_free(struct runners *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->v[i].id);
        cJSON_Delete(rs->v[i].hb);
    }
    free(rs->v);
    rs->v = NULL;
    rs->n = 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_runner(const void *a, const void *b)
{
    return strcmp(((const struct runner *)a)->id, ((const struct runner *)b)->id);
}

/* MGET keys[from..to) and keep the valid heartbeats. @return 0 or the answer set. */
static int runners_mget(struct jreq *q, char **keys, size_t from, size_t to, size_t plen,
                        struct runners *rs)
{
    const char *argv[JOBS_MGET_BATCH + 1];
    size_t argvlen[JOBS_MGET_BATCH + 1];
    redisContext *c = jredis(q);
    redisReply *r;

    if (!c)
        return junavail(q);
    argv[0] = "MGET";
    argvlen[0] = 4;
    for (size_t i = from; i < to; i++) {
        argv[1 + i - from] = keys[i];
        argvlen[1 + i - from] = strlen(keys[i]);
    }
    r = redisCommandArgv(c, (int)(1 + to - from), argv, argvlen);
    if (!r) {
        jbroken(q);
        return junavail(q);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != to - from) {
        int st = jreply_error(q, "MGET", r);

        freeReplyObject(r);
        return st;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        cJSON *hb;

        /* gone since SCAN, or not a heartbeat: not a live runner */
        if (e->type != REDIS_REPLY_STRING || e->len > JOBS_HB_MAX)
            continue;
        if (rs->bytes + e->len > JOBS_HB_TOTAL_MAX) {
            pc_warn("jobs", "heartbeats larger than %d bytes in all: %s and later ignored",
                    JOBS_HB_TOTAL_MAX, keys[from + i]);
            break;
        }
        rs->bytes += e->len;
        hb = cJSON_ParseWithLength(e->str, e->len);
        if (!cJSON_IsObject(hb)) {
            pc_debug("jobs", "%s: heartbeat is not a JSON object: ignored", keys[from + i]);
            cJSON_Delete(hb);
            continue;
        }
        rs->v[rs->n].id = strdup(keys[from + i] + plen);
        if (!rs->v[rs->n].id) {
            cJSON_Delete(hb);
            freeReplyObject(r);
            return jerr(q, 500, "out of memory");
        }
        rs->v[rs->n].hb = hb;
        rs->n++;
    }
    freeReplyObject(r);
    return 0;
}

/*
 * The live runners: SCAN <prefix>:runner:* (TYPE string), then MGET their
 * heartbeats. Sorted by id. @return 0, or the answer set (503 / 500).
 */
static int runners_load(struct jreq *q, struct runners *rs)
{
    char pattern[JOBS_KEY_MAX], cursor[32] = "0";
    size_t plen, nkeys = 0;
    char **keys;
    int rc = 0;

    rs->v = NULL;
    rs->n = 0;
    rs->bytes = 0;
    snprintf(pattern, sizeof(pattern), "%s:runner:*", q->gw->cfg->prefix);
    plen = strlen(pattern) - 1;
    keys = calloc(JOBS_RUNNERS_MAX, sizeof(*keys));
    if (!keys)
        return jerr(q, 500, "out of memory");
    for (int round = 0; round < JOBS_SCAN_ROUNDS; round++) {
        struct cmd m = {0};
        redisReply *r;

        cmd_str(&m, "SCAN");
        cmd_str(&m, cursor);
        cmd_str(&m, "MATCH");
        cmd_str(&m, pattern);
        cmd_str(&m, "COUNT");
        cmd_str(&m, "10000");
        cmd_str(&m, "TYPE");
        cmd_str(&m, "string");
        r = jcmd(q, &m);
        if (!r) {
            rc = junavail(q);
            goto out;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof(cursor) ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = jreply_error(q, "SCAN", r);
            freeReplyObject(r);
            goto out;
        }
        for (size_t i = 0; i < r->element[1]->elements && nkeys < JOBS_RUNNERS_MAX; i++) {
            const redisReply *k = r->element[1]->element[i];

            if (k->type != REDIS_REPLY_STRING || k->len <= plen ||
                k->len - plen > JOBS_RUNNER_ID_MAX || strlen(k->str) != k->len)
                continue;
            keys[nkeys] = strdup(k->str);
            if (!keys[nkeys]) {
                freeReplyObject(r);
                rc = jerr(q, 500, "out of memory");
                goto out;
            }
            nkeys++;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0 || nkeys == JOBS_RUNNERS_MAX)
            break;
    }
    if (nkeys == 0)
        goto out;
    /* SCAN may return a key twice: drop repeats */
    qsort(keys, nkeys, sizeof(*keys), cmp_str_ptr);
    {
        size_t w = 1;

        for (size_t i = 1; i < nkeys; i++) {
            if (strcmp(keys[i], keys[w - 1]) == 0)
                free(keys[i]);
            else
                keys[w++] = keys[i];
        }
        nkeys = w;
    }
    rs->v = calloc(nkeys, sizeof(*rs->v));
    if (!rs->v) {
        rc = jerr(q, 500, "out of memory");
        goto out;
    }
    for (size_t from = 0; from < nkeys && rc == 0; from += JOBS_MGET_BATCH) {
        size_t to = from + JOBS_MGET_BATCH < nkeys ? from + JOBS_MGET_BATCH : nkeys;

        rc = runners_mget(q, keys, from, to, plen, rs);
    }
    qsort(rs->v, rs->n, sizeof(*rs->v), cmp_runner);
out:
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    if (rc != 0)
        runners_free(rs);
    return rc;
}

/*
 * Runner snapshots. A submit only needs to know that some live runner can
 * take the job; a snapshot at most JOBS_SNAP_MS old tells which runners would,
 * and one EXISTS on their heartbeat keys confirms that one of them is still
 * alive, so a burst of submits costs one keyspace SCAN, not one each. A
 * request the snapshot refuses (503, 400, 403), or whose runners are gone, is
 * decided on a fresh read.
 * GET /api/runners and /api/templates always read fresh (and refresh the
 * snapshot). Snapshots are immutable and reference-counted.
 */
struct jobs_snap {
    int refs;
    long long at_ms; /* pc_now_ms() of the read */
    struct runners rs;
};

struct gw_jobs {
    pthread_mutex_t mu;
    struct jobs_snap *snap; /* NULL: none yet */
};

struct gw_jobs *gw_jobs_new(void)
{
    struct gw_jobs *j = calloc(1, sizeof(*j));

    if (j)
        pthread_mutex_init(&j->mu, NULL);
    return j;
}

static void snap_unref_locked(struct jobs_snap *s)
{
    if (s && --s->refs == 0) {
        runners_free(&s->rs);
        free(s);
    }
}

void gw_jobs_free(struct gw_jobs *j)
{
    if (!j)
        return;
    snap_unref_locked(j->snap);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void snap_put(struct gw_jobs *j, struct jobs_snap *s)
{
    if (!s)
        return;
    if (!j) {
        snap_unref_locked(s);
        return;
    }
    pthread_mutex_lock(&j->mu);
    snap_unref_locked(s);
    pthread_mutex_unlock(&j->mu);
}

/* A snapshot younger than JOBS_SNAP_MS, or NULL. Give it back with snap_put. */
static struct jobs_snap *snap_get_cached(struct gw_jobs *j)
{
    struct jobs_snap *s = NULL;

    if (!j)
        return NULL;
    pthread_mutex_lock(&j->mu);
    if (j->snap && pc_now_ms() - j->snap->at_ms < JOBS_SNAP_MS) {
        s = j->snap;
        s->refs++;
    }
    pthread_mutex_unlock(&j->mu);
    return s;
}

/* Read the live runners now and make that the snapshot. @return it (snap_put), or NULL with the
 * answer set. */
static struct jobs_snap *snap_load(struct jreq *q)
{
    struct gw_jobs *j = q->gw->jobs;
    struct jobs_snap *s = calloc(1, sizeof(*s)), *old = NULL;

    if (!s) {
        jerr(q, 500, "out of memory");
        return NULL;
    }
    s->at_ms = pc_now_ms();
    if (runners_load(q, &s->rs) != 0) {
        free(s);
        return NULL;
    }
    s->refs = 1;
    if (j) {
        pthread_mutex_lock(&j->mu);
        old = j->snap;
        if (!old || old->at_ms <= s->at_ms) {
            j->snap = s;
            s->refs++;
        } else {
            old = NULL; /* a newer one is there already */
        }
        snap_unref_locked(old);
        pthread_mutex_unlock(&j->mu);
    }
    return s;
}

static int runner_any_command(const struct runner *r)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->hb, "allow_any_command"));
}

/* Runner @p r's declaration of template @p name, or NULL. */
static const cJSON *runner_template(const struct runner *r, const char *name)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->hb, "templates");

    t = cJSON_IsObject(t) ? cJSON_GetObjectItemCaseSensitive(t, name) : NULL;
    return cJSON_IsObject(t) ? t : NULL;
}

/* ------------------------------------------------------------------------ */
/* Template parameters (checked against the heartbeats' declarations)       */
/* ------------------------------------------------------------------------ */

/*
 * Parentheses balanced outside bracket expressions and escapes: then the
 * pattern cannot close the group that anchors it (see value_matches).
 */
static int pattern_balanced(const char *p)
{
    int depth = 0;

    for (size_t i = 0; p[i]; i++) {
        if (p[i] == '\\') {
            if (!p[++i])
                return 0;
        } else if (p[i] == '[') {
            i++;
            if (p[i] == '^')
                i++;
            if (p[i] == ']')
                i++;
            for (; p[i] && p[i] != ']'; i++) {
                if (p[i] == '[' && (p[i + 1] == ':' || p[i + 1] == '.' || p[i + 1] == '=')) {
                    char close = p[i + 1];

                    for (i += 2; p[i] && !(p[i] == close && p[i + 1] == ']'); i++)
                        ;
                    if (!p[i])
                        return 0;
                    i++;
                }
            }
            if (!p[i])
                return 0;
        } else if (p[i] == '(') {
            depth++;
        } else if (p[i] == ')') {
            if (depth-- == 0)
                return 0;
        }
    }
    return depth == 0;
}

/*
 * Does the whole of @p value match the POSIX extended regex @p pattern? The
 * pattern is compiled as ^(pattern)$ with REG_EXTENDED|REG_NOSUB.
 * @return 1 match, 0 no match, -1 the pattern is invalid.
 */
static int value_matches(const char *pattern, const char *value)
{
    size_t n = strlen(pattern);
    regex_t re;
    char *w;
    int ok;

    if (n > JOBS_PATTERN_MAX || !pattern_balanced(pattern))
        return -1;
    w = malloc(n + 5);
    if (!w)
        return -1;
    snprintf(w, n + 5, "^(%s)$", pattern);
    if (regcomp(&re, w, REG_EXTENDED | REG_NOSUB) != 0) {
        free(w);
        return -1;
    }
    ok = regexec(&re, value, 0, NULL, 0) == 0;
    regfree(&re);
    free(w);
    return ok;
}

/* A ".." path segment (between slashes, or at either end). */
static int has_dotdot(const char *v)
{
    for (const char *p = v; (p = strstr(p, "..")) != NULL; p++)
        if ((p == v || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
            return 1;
    return 0;
}

/* Validate @p value of param @p name against its declaration. @return 0 or -1 with a message. */
static int param_check(const char *tmpl, const char *name, const cJSON *decl, const char *value,
                       char *msg, size_t msglen)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(decl, "type");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(decl, "pattern");
    const char *t = cJSON_IsString(type) ? type->valuestring : "string";
    const char *pattern;
    char qv[160], qp[160];
    int m;

    if (strcmp(t, "int") == 0) {
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(decl, "min");
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(decl, "max");
        long long v;

        if (parse_ll(value, strlen(value), &v) != 0) {
            snprintf(msg, msglen, "template \"%s\": param \"%s\": value \"%s\" is not an integer",
                     tmpl, name, quote(value, qv, sizeof(qv)));
            return -1;
        }
        if ((cJSON_IsNumber(mn) && (double)v < mn->valuedouble) ||
            (cJSON_IsNumber(mx) && (double)v > mx->valuedouble)) {
            snprintf(msg, msglen, "template \"%s\": param \"%s\": %lld is out of range", tmpl, name,
                     v);
            return -1;
        }
        return 0;
    }
    if (strcmp(t, "bool") == 0) {
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            snprintf(msg, msglen,
                     "template \"%s\": param \"%s\": value \"%s\" is not true or false", tmpl, name,
                     quote(value, qv, sizeof(qv)));
            return -1;
        }
        return 0;
    }
    if (strcmp(t, "string") != 0) {
        snprintf(msg, msglen,
                 "template \"%s\": param \"%s\": unknown type \"%s\" in the runner's declaration",
                 tmpl, name, quote(t, qv, sizeof(qv)));
        return -1;
    }
    /* strings: no leading '-' (option injection), no ".." segment, the pattern */
    if (value[0] == '-' && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(decl, "allow_dash"))) {
        snprintf(msg, msglen, "template \"%s\": param \"%s\": value \"%s\" starts with '-'", tmpl,
                 name, quote(value, qv, sizeof(qv)));
        return -1;
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(decl, "allow_dotdot")) &&
        has_dotdot(value)) {
        snprintf(msg, msglen,
                 "template \"%s\": param \"%s\": value \"%s\" has a \"..\" path segment", tmpl,
                 name, quote(value, qv, sizeof(qv)));
        return -1;
    }
    pattern = cJSON_IsString(pat) ? pat->valuestring : JOBS_DEFAULT_PATTERN;
    m = value_matches(pattern, value);
    if (m < 0) {
        snprintf(msg, msglen,
                 "template \"%s\": param \"%s\": the runner declares an invalid pattern", tmpl,
                 name);
        return -1;
    }
    if (m == 0) {
        snprintf(msg, msglen, "template \"%s\": param \"%s\": value \"%s\" does not match %s", tmpl,
                 name, quote(value, qv, sizeof(qv)), quote(pattern, qp, sizeof(qp)));
        return -1;
    }
    return 0;
}

/*
 * Check @p args (an object of strings) against the declared @p params of
 * template @p tmpl: no unknown name, every required one present, each value
 * valid. @return 0 or -1 with a message.
 */
static int args_check(const char *tmpl, const cJSON *params, const cJSON *args, char *msg,
                      size_t msglen)
{
    char q[160];

    if (!cJSON_IsObject(params))
        params = NULL;
    for (const cJSON *a = args ? args->child : NULL; a; a = a->next) {
        if (!params || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(params, a->string))) {
            snprintf(msg, msglen, "template \"%s\": unknown param \"%s\"", tmpl,
                     quote(a->string, q, sizeof(q)));
            return -1;
        }
    }
    for (const cJSON *p = params ? params->child : NULL; p; p = p->next) {
        const cJSON *v = args ? cJSON_GetObjectItemCaseSensitive(args, p->string) : NULL;

        if (!cJSON_IsObject(p))
            continue;
        if (!v) {
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "required")) &&
                !cJSON_GetObjectItemCaseSensitive(p, "default")) {
                snprintf(msg, msglen, "template \"%s\": missing required param \"%s\"", tmpl,
                         quote(p->string, q, sizeof(q)));
                return -1;
            }
            continue;
        }
        if (param_check(tmpl, p->string, p, v->valuestring, msg, msglen) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Job objects                                                               */
/* ------------------------------------------------------------------------ */

/* The value of @p field in an HGETALL reply, or NULL. */
static const redisReply *hfield(const redisReply *h, const char *field)
{
    if (!h || h->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];

        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, field) == 0 &&
            v->type == REDIS_REPLY_STRING)
            return v;
    }
    return NULL;
}

static int hnum(const redisReply *h, const char *field, long long *out)
{
    const redisReply *v = hfield(h, field);

    return v && parse_ll(v->str, v->len, out) == 0 ? 0 : -1;
}

/* o[name] = the number in hash field @p field, or null. */
static void add_num_as(cJSON *o, const char *name, const redisReply *h, const char *field)
{
    long long v;

    if (hnum(h, field, &v) == 0)
        cJSON_AddNumberToObject(o, name, (double)v);
    else
        cJSON_AddNullToObject(o, name);
}

/* o[name] = the (non-empty, UTF-8) string in hash field @p field, or null. */
static void add_str_as(cJSON *o, const char *name, const redisReply *h, const char *field)
{
    const redisReply *v = hfield(h, field);

    if (v && v->len > 0 && strlen(v->str) == v->len && pc_utf8_valid((void *)v->str, v->len))
        cJSON_AddStringToObject(o, name, v->str);
    else
        cJSON_AddNullToObject(o, name);
}

static void add_num(cJSON *o, const redisReply *h, const char *field)
{
    add_num_as(o, field, h, field);
}

static void add_str(cJSON *o, const redisReply *h, const char *field)
{
    add_str_as(o, field, h, field);
}

/*
 * "stdin": the job's stdin accounting (see "Stdin flow control" in docs/jobs.md):
 * max (null until a runner took the job), accepted, written, dropped, pending
 * (accepted, neither written nor dropped yet) and closed (null while open).
 */
static void add_stdin(cJSON *o, const redisReply *h)
{
    cJSON *st = cJSON_AddObjectToObject(o, "stdin");
    long long acc = 0, wr = 0, dr = 0;

    if (!st)
        return;
    add_num_as(st, "max", h, "stdin_max");
    (void)hnum(h, "stdin_accepted", &acc);
    (void)hnum(h, "stdin_written", &wr);
    (void)hnum(h, "stdin_dropped", &dr);
    cJSON_AddNumberToObject(st, "accepted", (double)acc);
    cJSON_AddNumberToObject(st, "written", (double)wr);
    cJSON_AddNumberToObject(st, "dropped", (double)dr);
    cJSON_AddNumberToObject(st, "pending", (double)(acc - wr - dr > 0 ? acc - wr - dr : 0));
    add_str_as(st, "closed", h, "stdin_closed"); /* eof, closed, ended, lost */
}

/* The job object of the API from a job hash (HGETALL reply, non-empty). NULL when out of memory. */
static cJSON *job_json(const redisReply *h)
{
    const redisReply *argv = hfield(h, "argv"), *spec = hfield(h, "spec");
    cJSON *o = cJSON_CreateObject(), *a = NULL, *sj = NULL;
    const cJSON *tmpl = NULL;
    long long started, ended;

    if (!o)
        return NULL;
    add_str(o, h, "id");
    add_str(o, h, "status");
    add_str(o, h, "channel");
    add_str(o, h, "runner");
    add_num(o, h, "pid");
    if (argv)
        a = cJSON_ParseWithLength(argv->str, argv->len);
    if (cJSON_IsArray(a))
        cJSON_AddItemToObject(o, "argv", a);
    else {
        cJSON_Delete(a);
        cJSON_AddNullToObject(o, "argv");
    }
    add_num(o, h, "code");
    add_num(o, h, "signal");
    add_str(o, h, "reason");
    add_num(o, h, "created_ms");
    add_num(o, h, "started_ms");
    add_num(o, h, "ended_ms");
    if (hnum(h, "started_ms", &started) == 0 && hnum(h, "ended_ms", &ended) == 0 &&
        ended >= started)
        cJSON_AddNumberToObject(o, "duration_ms", (double)(ended - started));
    else
        cJSON_AddNullToObject(o, "duration_ms");
    add_str(o, h, "session");
    if (spec)
        sj = cJSON_ParseWithLength(spec->str, spec->len);
    tmpl = cJSON_IsObject(sj) ? cJSON_GetObjectItemCaseSensitive(sj, "template") : NULL;
    if (cJSON_IsString(tmpl))
        cJSON_AddStringToObject(o, "template", tmpl->valuestring);
    else
        cJSON_AddNullToObject(o, "template");
    cJSON_Delete(sj);
    add_num(o, h, "attempt");
    add_str(o, h, "error");
    add_stdin(o, h);
    return o;
}

static void job_key(char *dst, size_t len, const struct jreq *q, const char *id)
{
    snprintf(dst, len, "%s:job:%s", q->gw->cfg->prefix, id);
}

static void ctl_key(char *dst, size_t len, const struct jreq *q, const char *runner)
{
    snprintf(dst, len, "%s:ctl:%s", q->gw->cfg->prefix, runner);
}

/* ------------------------------------------------------------------------ */
/* Session activity (sessions.h)                                             */
/* ------------------------------------------------------------------------ */

/*
 * Touch @p session (a valid name): @p idle_s > 0 also sets its idle expiry,
 * @p revive starts an expired one again. @return GW_TOUCH_*, or -2 with the
 * answer set (Redis failed).
 */
static int session_touch(struct jreq *q, const char *session, long long idle_s, int revive)
{
    struct gw_session_touch t;
    struct cmd m = {0};
    redisReply *r;
    int rc;

    gw_session_touch_prepare(&t, q->gw->cfg->prefix, session, idle_s, revive, pc_wall_ms());
    for (int i = 0; i < t.argc; i++)
        cmd_arg(&m, t.argv[i], t.len[i]);
    r = jcmd(q, &m);
    if (!r) {
        junavail(q);
        return -2;
    }
    if (r->type != REDIS_REPLY_INTEGER || r->integer < GW_TOUCH_EXPIRED ||
        r->integer > GW_TOUCH_OK) {
        jreply_error(q, "session touch", r);
        freeReplyObject(r);
        return -2;
    }
    rc = (int)r->integer;
    freeReplyObject(r);
    return rc;
}

/*
 * A request named @p session (listing, stdin, kill): refresh its idle expiry,
 * if it has one. Best effort: the answer already set is left as it is.
 */
static void session_activity(struct jreq *q, const char *session)
{
    struct jreq t = *q;
    int rc;

    t.json = NULL; /* failures write into the copy's answer, never into q's */
    rc = session_touch(&t, session, 0, 0);
    cJSON_Delete(t.json);
    q->c = t.c;
    q->broken = t.broken;
    if (rc == -2)
        pc_debug("jobs", "session \"%s\": activity not recorded: %s", session, t.msg);
}

/* ------------------------------------------------------------------------ */
/* POST /api/jobs                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Check @p sp against a runner's declaration @p t of its template: the params,
 * and "cwd" / "env" only where the template takes them ("request_cwd",
 * "request_env"; the runner also refuses the variables on its denylist).
 * @return 0 or -1 with a message.
 */
static int tmpl_check(const struct spec *sp, const cJSON *t, char *msg, size_t msglen)
{
    char q[160];
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(sp->norm, "env");
    const cJSON *renv = cJSON_GetObjectItemCaseSensitive(t, "request_env");

    if (args_check(sp->template, cJSON_GetObjectItemCaseSensitive(t, "params"), sp->args, msg,
                   msglen) != 0)
        return -1;
    if (cJSON_GetObjectItemCaseSensitive(sp->norm, "cwd") &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "request_cwd"))) {
        snprintf(msg, msglen, "cwd: template \"%s\" does not take a working directory",
                 sp->template);
        return -1;
    }
    for (const cJSON *e = cJSON_IsObject(env) ? env->child : NULL; e; e = e->next) {
        int ok = cJSON_IsTrue(renv);

        for (const cJSON *n = cJSON_IsArray(renv) ? renv->child : NULL; n && !ok; n = n->next)
            ok = cJSON_IsString(n) && strcmp(n->valuestring, e->string) == 0;
        if (!ok) {
            snprintf(msg, msglen, "env: template \"%s\" does not take \"%s\"", sp->template,
                     quote(e->string, q, sizeof(q)));
            return -1;
        }
    }
    return 0;
}

/* Check the spec against the live runners. @return 0 or the answer set (503/403/400). */
static int submit_check_runners(struct jreq *q, const struct spec *sp, const struct runners *rs)
{
    char msg[1024], first[1024] = "", qt[160];
    size_t offered = 0;

    if (rs->n == 0) {
        q->extra = "Retry-After: 2\r\n";
        return jerr(q, 503, "no runner alive: nothing would run the job");
    }
    if (!sp->template) {
        for (size_t i = 0; i < rs->n; i++)
            if (runner_any_command(&rs->v[i]))
                return 0;
        return jerr(q, 403,
                    "argv: no live runner allows arbitrary commands (use a template, or start a "
                    "runner with --allow-any-command)");
    }
    for (size_t i = 0; i < rs->n; i++) {
        const cJSON *t = runner_template(&rs->v[i], sp->template);

        if (!t)
            continue;
        offered++;
        if (tmpl_check(sp, t, msg, sizeof(msg)) == 0)
            return 0;
        if (!first[0])
            snprintf(first, sizeof(first), "%s", msg);
    }
    if (!offered)
        return jerr(q, 400, "template \"%s\": unknown (no live runner offers it)",
                    quote(sp->template, qt, sizeof(qt)));
    return jerr(q, 400, "%s", first);
}

/* Would runner @p r take the job of @p sp? */
static int runner_takes(const struct runner *r, const struct spec *sp)
{
    const cJSON *t;
    char msg[512];

    if (!sp->template)
        return runner_any_command(r);
    t = runner_template(r, sp->template);
    return t && tmpl_check(sp, t, msg, sizeof(msg)) == 0;
}

/*
 * A snapshot accepted the job: is one of the runners that would take it still
 * alive now? One EXISTS on their heartbeat keys (the first JOBS_CMD_ARGS - 1).
 * @return 1 yes, 0 no (decide on a fresh read), -1 Redis failed (answer set).
 */
static int snap_confirm(struct jreq *q, const struct jobs_snap *snap, const struct spec *sp)
{
    char(*keys)[JOBS_KEY_MAX] = malloc((JOBS_CMD_ARGS - 1) * sizeof(*keys));
    struct cmd m = {0};
    redisReply *r;
    int n = 0, alive;

    if (!keys) {
        jerr(q, 500, "out of memory");
        return -1;
    }
    cmd_str(&m, "EXISTS");
    for (size_t i = 0; i < snap->rs.n && n < JOBS_CMD_ARGS - 1; i++) {
        if (!runner_takes(&snap->rs.v[i], sp))
            continue;
        snprintf(keys[n], sizeof(keys[n]), "%s:runner:%s", q->gw->cfg->prefix, snap->rs.v[i].id);
        cmd_str(&m, keys[n]);
        n++;
    }
    if (n == 0) {
        free(keys);
        return 0;
    }
    r = jcmd(q, &m);
    free(keys);
    if (!r) {
        junavail(q);
        return -1;
    }
    alive = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return alive;
}

/*
 * Write the job: hash, index (trimmed), session set and queue entry in one
 * MULTI/EXEC, then the hash's "entry" field. @return 0 or the answer set.
 */
static int submit_write(struct jreq *q, const struct spec *sp, const char *id, const char *channel,
                        const char *spec_text)
{
    const char *prefix = q->gw->cfg->prefix;
    char jkey[JOBS_KEY_MAX], ikey[JOBS_KEY_MAX], skey[JOBS_KEY_MAX], qkey[JOBS_KEY_MAX];
    char created[32];
    struct cmd m;
    int nq = 0, st = 0;
    redisReply *r = NULL, *x;
    const redisReply *xid;

    job_key(jkey, sizeof(jkey), q, id);
    snprintf(ikey, sizeof(ikey), "%s:jobs:index", prefix);
    gw_session_set_key(skey, sizeof(skey), prefix, sp->session);
    snprintf(qkey, sizeof(qkey), "%s:jobs", prefix);
    snprintf(created, sizeof(created), "%lld", pc_wall_ms());

    memset(&m, 0, sizeof(m));
    cmd_str(&m, "MULTI");
    if (jappend(q, &m) != 0)
        return junavail(q);
    memset(&m, 0, sizeof(m));
    cmd_str(&m, "HSET");
    cmd_str(&m, jkey);
    cmd_str(&m, "id");
    cmd_str(&m, id);
    cmd_str(&m, "status");
    cmd_str(&m, "queued");
    cmd_str(&m, "channel");
    cmd_str(&m, channel);
    cmd_str(&m, "spec");
    cmd_str(&m, spec_text);
    cmd_str(&m, "created_ms");
    cmd_str(&m, created);
    if (sp->session[0]) {
        cmd_str(&m, "session");
        cmd_str(&m, sp->session);
    }
    jappend(q, &m);
    nq++;
    memset(&m, 0, sizeof(m));
    cmd_str(&m, "ZADD");
    cmd_str(&m, ikey);
    cmd_str(&m, created);
    cmd_str(&m, id);
    jappend(q, &m);
    nq++;
    memset(&m, 0, sizeof(m));
    cmd_str(&m, "ZREMRANGEBYRANK");
    cmd_str(&m, ikey);
    cmd_str(&m, "0");
    cmd_str(&m, JOBS_INDEX_KEEP);
    jappend(q, &m);
    nq++;
    if (sp->session[0]) {
        struct gw_session_touch t;

        memset(&m, 0, sizeof(m));
        cmd_str(&m, "SADD");
        cmd_str(&m, skey);
        cmd_str(&m, id);
        jappend(q, &m);
        nq++;
        /* a submit is activity, and starts an expired session again: no TTL under the new job */
        memset(&m, 0, sizeof(m));
        cmd_str(&m, "PERSIST");
        cmd_str(&m, skey);
        jappend(q, &m);
        nq++;
        gw_session_touch_prepare(&t, prefix, sp->session, sp->session_idle_s, 1, pc_wall_ms());
        memset(&m, 0, sizeof(m));
        for (int i = 0; i < t.argc; i++)
            cmd_arg(&m, t.argv[i], t.len[i]);
        jappend(q, &m);
        nq++;
    }
    memset(&m, 0, sizeof(m));
    cmd_str(&m, "XADD");
    cmd_str(&m, qkey);
    cmd_str(&m, "*");
    cmd_str(&m, "job");
    cmd_str(&m, id);
    jappend(q, &m);
    nq++;
    memset(&m, 0, sizeof(m));
    cmd_str(&m, "EXEC");
    if (jappend(q, &m) != 0)
        return junavail(q);

    /* MULTI's +OK, one +QUEUED per command, then EXEC's array */
    for (int i = 0; i < nq + 1 && st == 0; i++) {
        r = jget(q);
        if (!r)
            return junavail(q);
        if (r->type != REDIS_REPLY_STATUS)
            st = jreply_error(q, i == 0 ? "MULTI" : "queueing the job", r);
        freeReplyObject(r);
    }
    r = jget(q);
    if (!r)
        return junavail(q);
    if (st != 0) {
        freeReplyObject(r);
        return st;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)nq) {
        st = jreply_error(q, "EXEC", r);
        freeReplyObject(r);
        return st;
    }
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            st = jreply_error(q, "EXEC", r->element[i]);
            freeReplyObject(r);
            return st;
        }
    }
    xid = r->element[nq - 1];
    if (xid->type != REDIS_REPLY_STRING) {
        st = jreply_error(q, "XADD", xid);
        freeReplyObject(r);
        return st;
    }
    memset(&m, 0, sizeof(m));
    cmd_str(&m, "HSET");
    cmd_str(&m, jkey);
    cmd_str(&m, "entry");
    cmd_arg(&m, xid->str, xid->len);
    x = jcmd(q, &m);
    freeReplyObject(r);
    if (!x)
        return junavail(q);
    if (x->type == REDIS_REPLY_ERROR)
        st = jreply_error(q, "HSET entry", x);
    freeReplyObject(x);
    return st;
}

static int job_submit(struct jreq *q)
{
    char id[GW_JOB_ID_LEN + 1], channel[PC_CHANNEL_MAX + 1], msg[1024];
    struct jobs_snap *snap = NULL;
    struct pc_buf body;
    struct spec sp;
    char *spec_text = NULL;
    cJSON *o;
    int st;

    if ((st = read_body(q, &body)) != 0) {
        pc_buf_free(&body);
        return st;
    }
    st = spec_parse(body.data ? body.data : "", body.len, &sp, msg, sizeof(msg));
    pc_buf_free(&body);
    if (st != 0)
        return jerr(q, 400, "%s", msg);
    snap = snap_get_cached(q->gw->jobs);
    if (snap) {
        int alive = submit_check_runners(q, &sp, &snap->rs) == 0 ? snap_confirm(q, snap, &sp) : 0;

        if (alive < 0) {
            st = q->status;
            goto out;
        }
        if (!alive) {
            /* refused by the snapshot, or its runners are gone: decide on a fresh read */
            snap_put(q->gw->jobs, snap);
            snap = NULL;
            q->extra = NULL;
        }
    }
    if (!snap) {
        snap = snap_load(q);
        if (!snap) {
            st = q->status;
            goto out;
        }
        if ((st = submit_check_runners(q, &sp, &snap->rs)) != 0)
            goto out;
    }
    if (job_new_id(id) != 0) {
        st = jerr(q, 500, "cannot read /dev/urandom for a job id");
        goto out;
    }
    if (sp.channel[0])
        snprintf(channel, sizeof(channel), "%s", sp.channel);
    else if (sp.session[0])
        snprintf(channel, sizeof(channel), "%s:%s", sp.session, id);
    else
        snprintf(channel, sizeof(channel), "job:%s", id);
    spec_text = cJSON_PrintUnformatted(sp.norm);
    if (!spec_text) {
        st = jerr(q, 500, "out of memory");
        goto out;
    }
    if ((st = submit_write(q, &sp, id, channel, spec_text)) != 0)
        goto out;
    pc_info("jobs", "job %s queued (%s%s), channel %s", id, sp.template ? "template " : "argv",
            sp.template ? sp.template : "", channel);
    o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "channel", channel);
        cJSON_AddStringToObject(o, "status", "queued");
    }
    st = jok(q, 201, o);
    if (st == 201) {
        snprintf(q->extra_buf, sizeof(q->extra_buf), "Location: /api/jobs/%s\r\n", id);
        q->extra = q->extra_buf;
    }
out:
    cJSON_free(spec_text);
    snap_put(q->gw->jobs, snap);
    spec_free(&sp);
    return st;
}

/* ------------------------------------------------------------------------ */
/* GET /api/jobs                                                             */
/* ------------------------------------------------------------------------ */

/* A position in the newest-first order: created ms, then id (both descending). */
struct jpos {
    unsigned long long ms;
    char id[GW_JOB_ID_LEN + 1];
    char status[16]; /* session listing: the job's status */
};

/* "<ms>.<id>" */
static int parse_cursor(const char *v, struct jpos *c)
{
    const char *dot = strchr(v, '.');
    char ms[24];

    if (!dot || dot == v || (size_t)(dot - v) >= sizeof(ms) ||
        !job_id_valid(dot + 1, strlen(dot + 1)))
        return -1;
    memcpy(ms, v, (size_t)(dot - v));
    ms[dot - v] = '\0';
    if (gw_http_parse_uint(ms, ~0ULL, &c->ms) != 0)
        return -1;
    memcpy(c->id, dot + 1, GW_JOB_ID_LEN + 1);
    return 0;
}

static void format_cursor(const struct jpos *p, char *dst, size_t len)
{
    snprintf(dst, len, "%llu.%s", p->ms, p->id);
}

/* @return nonzero when @p e comes after cursor @p c (newest first). */
static int after_cursor(const struct jpos *e, const struct jpos *c)
{
    return e->ms < c->ms || (e->ms == c->ms && strcmp(e->id, c->id) < 0);
}

static int cmp_jpos_desc(const void *a, const void *b)
{
    const struct jpos *x = a, *y = b;

    if (x->ms != y->ms)
        return x->ms < y->ms ? 1 : -1;
    return -strcmp(x->id, y->id);
}

/*
 * HGETALL each job of @p ids (pipelined). @return an array of @p n replies
 * (free with free_replies), or NULL with the answer set.
 */
static redisReply **hgetall_many(struct jreq *q, const struct jpos *ids, size_t n)
{
    redisReply **rs = calloc(n ? n : 1, sizeof(*rs));
    char key[JOBS_KEY_MAX];

    if (!rs) {
        jerr(q, 500, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct cmd m = {0};

        job_key(key, sizeof(key), q, ids[i].id);
        cmd_str(&m, "HGETALL");
        cmd_str(&m, key);
        if (jappend(q, &m) != 0) {
            free(rs);
            junavail(q);
            return NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rs[i] = jget(q);
        if (!rs[i]) {
            for (size_t j = 0; j < i; j++)
                freeReplyObject(rs[j]);
            free(rs);
            junavail(q);
            return NULL;
        }
    }
    return rs;
}

static void free_replies(redisReply **rs, size_t n)
{
    for (size_t i = 0; rs && i < n; i++)
        freeReplyObject(rs[i]);
    free(rs);
}

static int hash_exists(const redisReply *h)
{
    return h->type == REDIS_REPLY_ARRAY && h->elements >= 2;
}

static int hash_status_is(const redisReply *h, const char *status)
{
    const redisReply *v = hfield(h, "status");

    return !status || (v && strcmp(v->str, status) == 0);
}

struct list_out {
    cJSON *arr;
    size_t added;
    int has_next;
    struct jpos next;
};

/*
 * Newest first from the index zset: pages of ZREVRANGEBYSCORE ... WITHSCORES,
 * each page's hashes read in one pipeline, filtered by status. At most
 * JOBS_LIST_EXAMINE index entries are looked at per request; the cursor then
 * points after the last one looked at, so a rare status costs several short
 * requests rather than one unbounded one.
 */
static int list_index(struct jreq *q, const char *status, const struct jpos *cur,
                      unsigned long long limit, struct list_out *out)
{
    char ikey[JOBS_KEY_MAX], maxs[32], offs[32], cnt[32];
    unsigned long long offset = 0;
    size_t examined = 0, nmissing = 0;
    struct jpos *page = NULL, last;
    char(*missing)[GW_JOB_ID_LEN + 1] = NULL;
    int st = 0, have_last = 0;

    snprintf(ikey, sizeof(ikey), "%s:jobs:index", q->gw->cfg->prefix);
    if (cur)
        snprintf(maxs, sizeof(maxs), "%llu", cur->ms);
    else
        snprintf(maxs, sizeof(maxs), "+inf");
    snprintf(cnt, sizeof(cnt), "%d", JOBS_LIST_PAGE);
    page = calloc(JOBS_LIST_PAGE, sizeof(*page));
    missing = calloc(JOBS_LIST_PAGE, sizeof(*missing));
    if (!page || !missing) {
        st = jerr(q, 500, "out of memory");
        goto out;
    }
    while (out->added < limit) {
        struct cmd m = {0};
        redisReply *r, **hs;
        size_t n = 0, got;

        if (examined >= JOBS_LIST_EXAMINE) {
            if (have_last) {
                out->has_next = 1;
                out->next = last;
            }
            break;
        }
        snprintf(offs, sizeof(offs), "%llu", offset);
        cmd_str(&m, "ZREVRANGEBYSCORE");
        cmd_str(&m, ikey);
        cmd_str(&m, maxs);
        cmd_str(&m, "-inf");
        cmd_str(&m, "WITHSCORES");
        cmd_str(&m, "LIMIT");
        cmd_str(&m, offs);
        cmd_str(&m, cnt);
        r = jcmd(q, &m);
        if (!r) {
            st = junavail(q);
            goto out;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
            st = jreply_error(q, "ZREVRANGEBYSCORE", r);
            freeReplyObject(r);
            goto out;
        }
        got = r->elements / 2;
        for (size_t i = 0; i < got; i++) {
            const redisReply *mem = r->element[2 * i], *sc = r->element[2 * i + 1];
            struct jpos e;
            char sbuf[32];

            if (mem->type != REDIS_REPLY_STRING || !job_id_valid(mem->str, mem->len) ||
                sc->type != REDIS_REPLY_STRING || sc->len >= sizeof(sbuf))
                continue;
            memcpy(sbuf, sc->str, sc->len + 1);
            if (gw_http_parse_uint(sbuf, ~0ULL, &e.ms) != 0)
                continue;
            memcpy(e.id, mem->str, GW_JOB_ID_LEN + 1);
            if (i == 0 && offset == 0 && !cur)
                /* later pages count from this score, not from +inf: new jobs do not shift them */
                snprintf(maxs, sizeof(maxs), "%llu", e.ms);
            if (cur && !after_cursor(&e, cur))
                continue;
            page[n++] = e;
        }
        freeReplyObject(r);
        examined += got;
        offset += got;

        hs = hgetall_many(q, page, n);
        if (!hs) {
            st = q->status;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            cJSON *o;

            last = page[i];
            have_last = 1;
            if (!hash_exists(hs[i])) {
                /* expired with its job: drop it from the index (below, after the pages) */
                if (nmissing < JOBS_LIST_PAGE)
                    memcpy(missing[nmissing++], page[i].id, GW_JOB_ID_LEN + 1);
                continue;
            }
            if (!hash_status_is(hs[i], status))
                continue;
            o = job_json(hs[i]);
            if (!o || !cJSON_AddItemToArray(out->arr, o)) {
                cJSON_Delete(o);
                free_replies(hs, n);
                st = jerr(q, 500, "out of memory");
                goto out;
            }
            if (++out->added == limit) {
                out->has_next = i + 1 < n || got == JOBS_LIST_PAGE;
                out->next = page[i];
                break;
            }
        }
        free_replies(hs, n);
        if (got < JOBS_LIST_PAGE)
            break;
    }
    if (nmissing > 0) {
        const char *argv[JOBS_LIST_PAGE + 2];
        size_t argvlen[JOBS_LIST_PAGE + 2];
        redisReply *r;

        argv[0] = "ZREM";
        argvlen[0] = 4;
        argv[1] = ikey;
        argvlen[1] = strlen(ikey);
        for (size_t i = 0; i < nmissing; i++) {
            argv[2 + i] = missing[i];
            argvlen[2 + i] = GW_JOB_ID_LEN;
        }
        r = redisCommandArgv(q->c, (int)(2 + nmissing), argv, argvlen);
        if (!r)
            jbroken(q);
        else
            freeReplyObject(r);
    }
out:
    free(page);
    free(missing);
    return st;
}

/*
 * Every member of set @p key (SSCAN), sorted, without repeats, at most
 * JOBS_SESSION_JOBS_MAX; invalid ids are skipped. @return 0 or the answer set.
 */
static int set_members(struct jreq *q, const char *key, struct jpos **out, size_t *nout)
{
    char cursor[32] = "0";
    struct jpos *v = NULL;
    size_t n = 0, cap = 0;

    *out = NULL;
    *nout = 0;
    for (;;) {
        struct cmd m = {0};
        redisReply *r;

        cmd_str(&m, "SSCAN");
        cmd_str(&m, key);
        cmd_str(&m, cursor);
        cmd_str(&m, "COUNT");
        cmd_str(&m, "1000");
        r = jcmd(q, &m);
        if (!r) {
            free(v);
            return junavail(q);
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof(cursor) ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            int st = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0
                         ? 0
                         : jreply_error(q, "SSCAN", r);

            freeReplyObject(r);
            free(v);
            return st;
        }
        for (size_t i = 0; i < r->element[1]->elements && n < JOBS_SESSION_JOBS_MAX; i++) {
            const redisReply *e = r->element[1]->element[i];

            if (e->type != REDIS_REPLY_STRING || !job_id_valid(e->str, e->len))
                continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct jpos *nv = realloc(v, nc * sizeof(*v));

                if (!nv) {
                    freeReplyObject(r);
                    free(v);
                    return jerr(q, 500, "out of memory");
                }
                v = nv;
                cap = nc;
            }
            memset(&v[n], 0, sizeof(v[n]));
            memcpy(v[n].id, e->str, GW_JOB_ID_LEN + 1);
            n++;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0)
            break;
        if (n >= JOBS_SESSION_JOBS_MAX) {
            pc_warn("jobs", "%s: more than %d jobs, only the first are handled", key,
                    JOBS_SESSION_JOBS_MAX);
            break;
        }
    }
    if (n > 1) {
        size_t w = 1;

        qsort(v, n, sizeof(*v), cmp_jpos_desc); /* ms are all 0 here: by id */
        for (size_t i = 1; i < n; i++)
            if (strcmp(v[i].id, v[w - 1].id) != 0)
                v[w++] = v[i];
        n = w;
    }
    *out = v;
    *nout = n;
    return 0;
}

/*
 * Read "created_ms status runner" of each job in @p v (pipelined, in batches);
 * jobs whose hash is gone get ms = 0 and status "". @return 0 or the answer set.
 */
static int read_states(struct jreq *q, struct jpos *v, size_t n,
                       char (*runners)[JOBS_RUNNER_ID_MAX + 1])
{
    char key[JOBS_KEY_MAX];

    for (size_t from = 0; from < n; from += 1000) {
        size_t to = from + 1000 < n ? from + 1000 : n;

        for (size_t i = from; i < to; i++) {
            struct cmd m = {0};

            job_key(key, sizeof(key), q, v[i].id);
            cmd_str(&m, "HMGET");
            cmd_str(&m, key);
            cmd_str(&m, "created_ms");
            cmd_str(&m, "status");
            cmd_str(&m, "runner");
            if (jappend(q, &m) != 0)
                return junavail(q);
        }
        for (size_t i = from; i < to; i++) {
            redisReply *r = jget(q);
            const redisReply *e;
            long long ms = 0;

            if (!r)
                return junavail(q);
            v[i].ms = 0;
            v[i].status[0] = '\0';
            if (runners)
                runners[i][0] = '\0';
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
                e = r->element[0];
                if (e->type == REDIS_REPLY_STRING && parse_ll(e->str, e->len, &ms) == 0 && ms > 0)
                    v[i].ms = (unsigned long long)ms;
                e = r->element[1];
                if (e->type == REDIS_REPLY_STRING && e->len < sizeof(v[i].status))
                    memcpy(v[i].status, e->str, e->len + 1);
                e = r->element[2];
                if (runners && e->type == REDIS_REPLY_STRING && e->len <= JOBS_RUNNER_ID_MAX)
                    memcpy(runners[i], e->str, e->len + 1);
            }
            freeReplyObject(r);
        }
    }
    return 0;
}

/* A session's jobs, newest first: SSCAN its set, read each job's time and status, sort. */
static int list_session(struct jreq *q, const char *status, const char *session,
                        const struct jpos *cur, unsigned long long limit, struct list_out *out)
{
    char skey[JOBS_KEY_MAX];
    struct jpos *v = NULL;
    redisReply **hs;
    size_t n = 0, w = 0, first = 0, take;
    int st;

    gw_session_set_key(skey, sizeof(skey), q->gw->cfg->prefix, session);
    if ((st = set_members(q, skey, &v, &n)) != 0)
        return st;
    if ((st = read_states(q, v, n, NULL)) != 0) {
        free(v);
        return st;
    }
    for (size_t i = 0; i < n; i++)
        if (v[i].status[0] && (!status || strcmp(v[i].status, status) == 0))
            v[w++] = v[i];
    n = w;
    if (n == 0) {
        free(v);
        return 0;
    }
    qsort(v, n, sizeof(*v), cmp_jpos_desc);
    while (cur && first < n && !after_cursor(&v[first], cur))
        first++;
    take = n - first < limit ? n - first : (size_t)limit;
    hs = hgetall_many(q, v + first, take);
    if (!hs) {
        free(v);
        return q->status;
    }
    for (size_t i = 0; i < take; i++) {
        cJSON *o;

        if (!hash_exists(hs[i]))
            continue;
        o = job_json(hs[i]);
        if (!o || !cJSON_AddItemToArray(out->arr, o)) {
            cJSON_Delete(o);
            st = jerr(q, 500, "out of memory");
            break;
        }
        out->added++;
    }
    free_replies(hs, take);
    if (st == 0 && first + take < n && take > 0) {
        out->has_next = 1;
        out->next = v[first + take - 1];
    }
    free(v);
    return st;
}

static int job_list(struct jreq *q)
{
    char v[256], qv[160], status[16] = "", session[JOBS_SESSION_MAX + 1] = "", nc[64];
    unsigned long long limit = JOBS_LIST_DEFAULT;
    struct list_out out;
    struct jpos cur;
    int n, have_cur = 0, st;
    cJSON *root;

    n = gw_http_query(q->conn, "status", 0, v, sizeof(v));
    if (n >= 0 && !status_known(v))
        return jerr(q, 400,
                    "status \"%s\": unknown (queued|running|exited|killed|timeout|failed|lost)",
                    quote(v, qv, sizeof(qv)));
    if (n == -2)
        return jerr(q, 400, "status: unknown (queued|running|exited|killed|timeout|failed|lost)");
    if (n >= 0)
        memcpy(status, v, (size_t)n + 1); /* a known status: shorter than status[] */
    n = gw_http_query(q->conn, "session", 0, v, sizeof(v));
    if (n == -2 || (n >= 0 && !session_valid(v, (size_t)n)))
        return jerr(q, 400,
                    "session \"%s\": invalid (allowed: 1-%d bytes of A-Z a-z 0-9 . _ : @ -)",
                    quote(n > 0 ? v : "", qv, sizeof(qv)), JOBS_SESSION_MAX);
    if (n >= 0)
        memcpy(session, v, (size_t)n + 1); /* session_valid: at most 64 bytes */
    n = gw_http_query(q->conn, "cursor", 0, v, sizeof(v));
    if (n == -2 || (n >= 0 && parse_cursor(v, &cur) != 0))
        return jerr(q, 400, "cursor \"%s\": invalid cursor", quote(n > 0 ? v : "", qv, sizeof(qv)));
    have_cur = n >= 0;
    n = gw_http_query(q->conn, "limit", 0, v, sizeof(v));
    if (n == -2 || (n >= 0 && (gw_http_parse_uint(v, JOBS_LIST_MAX, &limit) != 0 || limit < 1)))
        return jerr(q, 400, "limit \"%s\": expected a number 1-%d",
                    quote(n > 0 ? v : "", qv, sizeof(qv)), JOBS_LIST_MAX);

    root = cJSON_CreateObject();
    memset(&out, 0, sizeof(out));
    out.arr = root ? cJSON_AddArrayToObject(root, "jobs") : NULL;
    if (!out.arr) {
        cJSON_Delete(root);
        return jerr(q, 500, "out of memory");
    }
    if (session[0])
        st = list_session(q, status[0] ? status : NULL, session, have_cur ? &cur : NULL, limit,
                          &out);
    else
        st = list_index(q, status[0] ? status : NULL, have_cur ? &cur : NULL, limit, &out);
    if (st != 0) {
        cJSON_Delete(root);
        return st;
    }
    if (out.has_next) {
        format_cursor(&out.next, nc, sizeof(nc));
        cJSON_AddStringToObject(root, "next_cursor", nc);
    } else {
        cJSON_AddNullToObject(root, "next_cursor");
    }
    if (session[0])
        session_activity(q, session);
    return jok(q, 200, root);
}

/* ------------------------------------------------------------------------ */
/* GET / DELETE /api/jobs/<id>, POST /api/jobs/<id>/stdin                   */
/* ------------------------------------------------------------------------ */

static int job_get(struct jreq *q, const char *id)
{
    char key[JOBS_KEY_MAX];
    struct cmd m = {0};
    redisReply *r;
    int st;

    job_key(key, sizeof(key), q, id);
    cmd_str(&m, "HGETALL");
    cmd_str(&m, key);
    r = jcmd(q, &m);
    if (!r)
        return junavail(q);
    if (r->type != REDIS_REPLY_ARRAY) {
        st = jreply_error(q, "HGETALL", r);
    } else if (!hash_exists(r)) {
        st = jerr(q, 404, "job %s not found", id);
    } else {
        st = jok(q, 200, job_json(r));
    }
    freeReplyObject(r);
    return st;
}

/* Status and runner of job @p id ("" when absent). @return 0, or the answer set (404 included). */
static int job_state(struct jreq *q, const char *id, char *status, size_t slen, char *runner,
                     size_t rlen)
{
    char key[JOBS_KEY_MAX];
    struct cmd m = {0};
    redisReply *r;
    int st = 0;

    job_key(key, sizeof(key), q, id);
    cmd_str(&m, "HMGET");
    cmd_str(&m, key);
    cmd_str(&m, "status");
    cmd_str(&m, "runner");
    cmd_str(&m, "session");
    r = jcmd(q, &m);
    if (!r)
        return junavail(q);
    status[0] = runner[0] = q->job_session[0] = '\0';
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        st = jreply_error(q, "HMGET", r);
    } else if (r->element[0]->type != REDIS_REPLY_STRING) {
        st = jerr(q, 404, "job %s not found", id);
    } else {
        snprintf(status, slen, "%s", r->element[0]->str);
        if (r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len < rlen)
            memcpy(runner, r->element[1]->str, r->element[1]->len + 1);
        if (r->element[2]->type == REDIS_REPLY_STRING &&
            session_valid(r->element[2]->str, r->element[2]->len))
            memcpy(q->job_session, r->element[2]->str, r->element[2]->len + 1);
    }
    freeReplyObject(r);
    return st;
}

/*
 * XADD a control message (no MAXLEN: see JOBS_CTL_TTL) unless the stream already holds
 * ARGV[1] entries (its runner does not read it), and refresh the stream's expiry.
 *   KEYS: control stream.  ARGV: entry limit, expiry (s), field, value, ...
 * @return 1, or 0 when the stream is full
 */
static const char SCRIPT_CTL_SEND[] =
    "if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end "
    "local a = {'XADD', KEYS[1], '*'} "
    "for i = 3, #ARGV do a[#a + 1] = ARGV[i] end "
    "redis.call(unpack(a)) "
    "redis.call('EXPIRE', KEYS[1], ARGV[2]) "
    "return 1";

/* XADD one control message to runner @p runner. @return 0 or the answer set. */
static int ctl_send(struct jreq *q, const char *runner, const char *type, const char *id,
                    const char *k, const char *v, size_t vlen)
{
    char key[JOBS_KEY_MAX];
    struct cmd m = {0};
    redisReply *r;
    int st = 0;

    ctl_key(key, sizeof(key), q, runner);
    cmd_str(&m, "EVAL");
    cmd_str(&m, SCRIPT_CTL_SEND);
    cmd_str(&m, "1");
    cmd_str(&m, key);
    cmd_str(&m, JOBS_CTL_KILL_MAX);
    cmd_str(&m, JOBS_CTL_TTL);
    cmd_str(&m, "type");
    cmd_str(&m, type);
    cmd_str(&m, "job");
    cmd_str(&m, id);
    if (k) {
        cmd_str(&m, k);
        cmd_arg(&m, v, vlen);
    }
    r = jcmd(q, &m);
    if (!r)
        return junavail(q);
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        st = jerr(q, 503,
                  "runner %s is not reading its control stream (" JOBS_CTL_KILL_MAX
                  " messages waiting); try again later",
                  runner);
    else if (r->type != REDIS_REPLY_INTEGER)
        st = jreply_error(q, "EVAL control", r);
    freeReplyObject(r);
    return st;
}

/*
 * Kill a queued or running job: a queued one is marked cancel=1 (the runner
 * that takes it ends it as killed at once); a runner that already has it gets
 * a kill control message. @return 0 or the answer set.
 */
static int job_kill(struct jreq *q, const char *id, const char *status, const char *runner,
                    const char *sig)
{
    char key[JOBS_KEY_MAX], rbuf[JOBS_RUNNER_ID_MAX + 1];
    struct cmd m = {0};
    redisReply *r;

    snprintf(rbuf, sizeof(rbuf), "%s", runner);
    if (strcmp(status, "queued") == 0 || !rbuf[0]) {
        job_key(key, sizeof(key), q, id);
        cmd_str(&m, "HSET");
        cmd_str(&m, key);
        cmd_str(&m, "cancel");
        cmd_str(&m, "1");
        r = jcmd(q, &m);
        if (!r)
            return junavail(q);
        freeReplyObject(r);
        /* a runner may have taken it meanwhile: tell that one too */
        memset(&m, 0, sizeof(m));
        cmd_str(&m, "HGET");
        cmd_str(&m, key);
        cmd_str(&m, "runner");
        r = jcmd(q, &m);
        if (!r)
            return junavail(q);
        if (r->type == REDIS_REPLY_STRING && r->len < sizeof(rbuf))
            memcpy(rbuf, r->str, r->len + 1);
        freeReplyObject(r);
    }
    if (!rbuf[0])
        return 0;
    return ctl_send(q, rbuf, "kill", id, sig ? "signal" : NULL, sig, sig ? strlen(sig) : 0);
}

static int job_delete(struct jreq *q, const char *id)
{
    static const char *const sigs[] = {"TERM", "KILL", "INT", "HUP"};
    char status[32], runner[JOBS_RUNNER_ID_MAX + 1], v[32], qv[80];
    const char *sig = NULL;
    int n, st;
    cJSON *o;

    n = gw_http_query(q->conn, "signal", 0, v, sizeof(v));
    if (n != -1) {
        for (size_t i = 0; n >= 0 && i < sizeof(sigs) / sizeof(sigs[0]); i++)
            if (strcmp(v, sigs[i]) == 0)
                sig = sigs[i];
        if (!sig)
            return jerr(q, 400, "signal \"%s\": expected TERM, KILL, INT or HUP",
                        quote(n > 0 ? v : "", qv, sizeof(qv)));
    }
    if ((st = job_state(q, id, status, sizeof(status), runner, sizeof(runner))) != 0)
        return st;
    if (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0)
        return jerr(q, 409, "job %s has already ended (%s)", id, quote(status, qv, sizeof(qv)));
    if ((st = job_kill(q, id, status, runner, sig)) != 0)
        return st;
    pc_info("jobs", "job %s: kill asked (%s%s%s)", id, status, runner[0] ? " on " : "", runner);
    o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "status", "killing");
    }
    return jok(q, 202, o);
}

/*
 * POST /api/jobs/<id>/stdin in one step (docs/jobs.md "Stdin flow control"):
 * check that the job still runs on runner ARGV[1] with its stdin open, reserve
 * the body in stdin_accepted while the pending stdin stays within the
 * runner's stdin_max, and queue the control messages, data before eof,
 * tagged with the credit, the attempt and the seq. Pending: stdin_accepted -
 * stdin_written - stdin_dropped (bytes accepted, not yet written by the
 * runner) + ARGV[6] per data message the runner has not read yet (stdin_seq -
 * stdin_seq_read): that bounds the entries in the control stream, which
 * writers do not trim. A body always fits when nothing is pending. seq: the
 * data messages of the attempt are numbered from 1 (stdin_seq, reset by the
 * running transition), the eof carries the number of the last one, so the
 * runner sees entries missing from the stream. One script: nothing is
 * reserved without its message, two gateways never both take the last room,
 * and an eof closes stdin for every gateway at once.
 *   KEYS: job hash, control stream of the runner
 *   ARGV: runner, job id, data, eof (1/0), stdin_max when the hash has none,
 *         cost of a message, expiry of the control stream (s)
 * @return {"ok", pending} | {"gone"} | {"status", s} | {"runner", r} | {"closed", why}
 *       | {"big", max} | {"full", pending, max}
 */
static const char SCRIPT_STDIN[] =
    "local h = redis.call('HMGET', KEYS[1], 'status', 'runner', 'attempt', 'stdin_closed', "
    "'stdin_max', 'stdin_accepted', 'stdin_written', 'stdin_dropped', 'stdin_seq', "
    "'stdin_seq_read') "
    "if not h[1] then return {'gone'} end "
    "if h[1] ~= 'running' then return {'status', h[1]} end "
    "if h[2] ~= ARGV[1] then return {'runner', h[2] or ''} end "
    "if h[4] then return {'closed', h[4]} end "
    "local n = string.len(ARGV[3]) "
    "local max = tonumber(h[5]) or tonumber(ARGV[5]) "
    "local cost = tonumber(ARGV[6]) "
    "local seq = tonumber(h[9]) or 0 "
    "local msgs = seq - (tonumber(h[10]) or 0) "
    "if msgs < 0 then msgs = 0 end "
    "local pend = (tonumber(h[6]) or 0) - (tonumber(h[7]) or 0) - (tonumber(h[8]) or 0) "
    "  + cost * msgs "
    "if n > max then return {'big', tostring(max)} end "
    "if n > 0 and pend > 0 and pend + n + cost > max then "
    "  return {'full', tostring(pend), tostring(max)} end "
    "local att = h[3] or '' "
    "if n > 0 then "
    "  seq = redis.call('HINCRBY', KEYS[1], 'stdin_seq', 1) "
    "  redis.call('HINCRBY', KEYS[1], 'stdin_accepted', n) "
    "  redis.call('XADD', KEYS[2], '*', 'type', 'stdin', 'job', ARGV[2], 'data', ARGV[3], "
    "             'credit', tostring(n), 'attempt', att, 'seq', tostring(seq)) "
    "end "
    "if ARGV[4] == '1' then "
    "  redis.call('HSET', KEYS[1], 'stdin_closed', 'eof') "
    "  redis.call('XADD', KEYS[2], '*', 'type', 'eof', 'job', ARGV[2], 'attempt', att, "
    "             'seq', tostring(seq)) "
    "end "
    "redis.call('EXPIRE', KEYS[2], ARGV[7]) "
    "return {'ok', tostring(pend + n)}";

/* Why stdin_closed says stdin is closed, for a 409. */
static const char *stdin_closed_text(const char *why)
{
    if (strcmp(why, "eof") == 0)
        return "eof was sent";
    if (strcmp(why, "closed") == 0)
        return "the job closed it";
    if (strcmp(why, "ended") == 0)
        return "the job's process ended";
    if (strcmp(why, "lost") == 0)
        return "the job's runner, or stdin messages it had not read, were lost";
    return "closed";
}

static const char *reply_elem(const redisReply *r, size_t i, char *dst, size_t len)
{
    dst[0] = '\0';
    if (r->type == REDIS_REPLY_ARRAY && i < r->elements &&
        r->element[i]->type == REDIS_REPLY_STRING && r->element[i]->len < len)
        memcpy(dst, r->element[i]->str, r->element[i]->len + 1);
    return dst;
}

/* Reserve room for @p body and queue it (+ eof) for @p runner. @return 0 or the answer set. */
static int stdin_reserve(struct jreq *q, const char *id, const char *runner,
                         const struct pc_buf *body, int eof)
{
    char key[JOBS_KEY_MAX], ckey[JOBS_KEY_MAX], tag[16], a1[JOBS_RUNNER_ID_MAX + 1], a2[32], qv[80];
    struct cmd m = {0};
    redisReply *r;
    int st = 0;

    job_key(key, sizeof(key), q, id);
    ctl_key(ckey, sizeof(ckey), q, runner);
    cmd_str(&m, "EVAL");
    cmd_str(&m, SCRIPT_STDIN);
    cmd_str(&m, "2");
    cmd_str(&m, key);
    cmd_str(&m, ckey);
    cmd_str(&m, runner);
    cmd_str(&m, id);
    cmd_arg(&m, body->data ? body->data : "", body->len);
    cmd_str(&m, eof ? "1" : "0");
    cmd_str(&m, JOBS_STDIN_MAX_DEFAULT); /* for a hash without stdin_max */
    cmd_str(&m, JOBS_STDIN_MSG_COST);
    cmd_str(&m, JOBS_CTL_TTL);
    r = jcmd(q, &m);
    if (!r)
        return junavail(q);
    reply_elem(r, 0, tag, sizeof(tag));
    reply_elem(r, 1, a1, sizeof(a1));
    reply_elem(r, 2, a2, sizeof(a2));
    if (strcmp(tag, "ok") == 0) {
        st = 0;
    } else if (strcmp(tag, "gone") == 0) {
        st = jerr(q, 404, "job %s not found", id);
    } else if (strcmp(tag, "status") == 0) {
        st = jerr(q, 409, "job %s is %s, not running: its stdin is not open", id,
                  quote(a1, qv, sizeof(qv)));
    } else if (strcmp(tag, "runner") == 0) {
        st = jerr(q, 409, "job %s moved to another runner meanwhile; try again", id);
    } else if (strcmp(tag, "closed") == 0) {
        st = jerr(q, 409, "job %s: stdin is closed (%s)", id, stdin_closed_text(a1));
    } else if (strcmp(tag, "big") == 0) {
        st = jerr(q, 413,
                  "stdin body of %zu bytes is larger than the job's stdin buffer (%s bytes): "
                  "send it in smaller pieces",
                  body->len, a1);
    } else if (strcmp(tag, "full") == 0) {
        cJSON *o = cJSON_CreateObject();

        if (o) {
            long long pend = strtoll(a1, NULL, 10), max = strtoll(a2, NULL, 10);
            char msg[160];

            snprintf(msg, sizeof(msg), "stdin buffer full: %lld bytes waiting, max %lld", pend,
                     max);
            cJSON_AddStringToObject(o, "error", msg);
            cJSON_AddNumberToObject(o, "pending", (double)pend);
            cJSON_AddNumberToObject(o, "max", (double)max);
        }
        q->extra = "Retry-After: 1\r\n";
        st = jok(q, 429, o);
    } else {
        st = jreply_error(q, "EVAL stdin", r);
    }
    freeReplyObject(r);
    return st;
}

static int job_stdin(struct jreq *q, const char *id)
{
    char status[32], runner[JOBS_RUNNER_ID_MAX + 1], v[16], qv[80];
    struct pc_buf body;
    int n, eof = 0, st;
    cJSON *o;

    n = gw_http_query(q->conn, "eof", 0, v, sizeof(v));
    if (n != -1) {
        if (n >= 0 && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0))
            eof = 1;
        else if (!(n >= 0 && (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)))
            return jerr(q, 400, "eof \"%s\": expected 1 or 0",
                        quote(n > 0 ? v : "", qv, sizeof(qv)));
    }
    if ((st = read_body(q, &body)) != 0) {
        pc_buf_free(&body);
        return st;
    }
    st = job_state(q, id, status, sizeof(status), runner, sizeof(runner));
    if (st == 0 && strcmp(status, "running") != 0)
        st = jerr(q, 409, "job %s is %s, not running: its stdin is not open", id,
                  quote(status, qv, sizeof(qv)));
    if (st == 0 && !runner[0])
        st = jerr(q, 409, "job %s has no runner yet", id);
    if (st == 0)
        st = stdin_reserve(q, id, runner, &body, eof);
    if (st == 0) {
        o = cJSON_CreateObject();
        if (o)
            cJSON_AddNumberToObject(o, "written", (double)body.len);
        st = jok(q, 202, o);
    }
    pc_buf_free(&body);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Sessions: DELETE, GET, PUT /api/sessions/<s>, POST /api/sessions/<s>/touch */
/* ------------------------------------------------------------------------ */

_Static_assert(JOBS_SESSION_MAX == GW_SESSION_MAX, "session names: one limit");

#define JOBS_CHAN_BATCH 256 /* jobs whose channel is read per round trip */

/* EXPIRE NX the channel streams named in @p names[0..n) where @p ttl_on says so. */
static int channels_expire(struct jreq *q, char (*names)[PC_CHANNEL_MAX + 1],
                           const unsigned char *ttl_on, size_t n, struct gw_session_walk *w)
{
    char key[PC_KEY_MAX], ttl[24];
    size_t sent = 0;

    snprintf(ttl, sizeof(ttl), "%d", w->channel_ttl_s);
    for (size_t i = 0; i < n; i++) {
        struct cmd m = {0};

        if (!ttl_on[i] || pc_key_channel(key, sizeof(key), q->gw->cfg->prefix, names[i]) < 0)
            continue;
        cmd_str(&m, "EXPIRE");
        cmd_str(&m, key);
        cmd_str(&m, ttl);
        cmd_str(&m, "NX");
        if (jappend(q, &m) != 0)
            return junavail(q);
        sent++;
    }
    for (size_t i = 0; i < sent; i++) {
        redisReply *r = jget(q);

        if (!r)
            return junavail(q);
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
            w->channels_ttl++;
        else if (r->type != REDIS_REPLY_INTEGER) {
            int st = jreply_error(q, "EXPIRE channel", r);

            freeReplyObject(r);
            while (++i < sent) /* drain the pipeline */
                if ((r = jget(q)) != NULL)
                    freeReplyObject(r);
            return st;
        }
        freeReplyObject(r);
    }
    return 0;
}

/* The newest score in <prefix>:sessions:watched of @p names[0..n) into w->watched_ms. */
static int channels_watched(struct jreq *q, char (*names)[PC_CHANNEL_MAX + 1], size_t n,
                            struct gw_session_walk *w)
{
    char key[GW_SESSION_KEY_MAX];
    const char **argv = malloc((n + 2) * sizeof(*argv));
    size_t *len = malloc((n + 2) * sizeof(*len));
    redisContext *c = jredis(q);
    redisReply *r = NULL;
    int st = 0;

    if (!argv || !len) {
        free(argv);
        free(len);
        return jerr(q, 500, "out of memory");
    }
    gw_session_watched_key(key, sizeof(key), q->gw->cfg->prefix);
    argv[0] = "ZMSCORE";
    len[0] = 7;
    argv[1] = key;
    len[1] = strlen(key);
    for (size_t i = 0; i < n; i++) {
        argv[2 + i] = names[i];
        len[2 + i] = strlen(names[i]);
    }
    if (c) {
        r = redisCommandArgv(c, (int)(n + 2), argv, len);
        if (!r)
            jbroken(q);
    }
    free(argv);
    free(len);
    if (!r)
        return junavail(q);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        st = jreply_error(q, "ZMSCORE watched", r);
    } else {
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = r->element[i];
            long long ms;

            if (e->type == REDIS_REPLY_STRING && (ms = strtoll(e->str, NULL, 10)) > w->watched_ms)
                w->watched_ms = ms;
        }
    }
    freeReplyObject(r);
    return st;
}

/* The channels of the jobs @p v[0..n) (read from their hashes): watched scores, TTLs. */
static int session_channels(struct jreq *q, const struct jpos *v, size_t n,
                            struct gw_session_walk *w)
{
    char(*names)[PC_CHANNEL_MAX + 1] = malloc(JOBS_CHAN_BATCH * sizeof(*names));
    unsigned char ttl_on[JOBS_CHAN_BATCH];
    char key[JOBS_KEY_MAX];
    size_t from = 0;
    int st = 0;

    if (!names)
        return jerr(q, 500, "out of memory");
    while (st == 0 && from < n) {
        size_t idx[JOBS_CHAN_BATCH], k = 0, nn = 0;

        for (; from < n && k < JOBS_CHAN_BATCH; from++)
            if (v[from].status[0]) /* its hash exists */
                idx[k++] = from;
        for (size_t i = 0; i < k; i++) {
            struct cmd m = {0};

            job_key(key, sizeof(key), q, v[idx[i]].id);
            cmd_str(&m, "HGET");
            cmd_str(&m, key);
            cmd_str(&m, "channel");
            if (jappend(q, &m) != 0) {
                st = junavail(q);
                break;
            }
        }
        for (size_t i = 0; st == 0 && i < k; i++) {
            redisReply *r = jget(q);

            if (!r) {
                st = junavail(q);
                break;
            }
            if (r->type == REDIS_REPLY_STRING && r->len <= PC_CHANNEL_MAX &&
                pc_channel_valid(r->str, r->len)) {
                memcpy(names[nn], r->str, r->len + 1);
                ttl_on[nn] =
                    !w->created_max_ms || v[idx[i]].ms <= (unsigned long long)w->created_max_ms;
                nn++;
            }
            freeReplyObject(r);
        }
        if (st == 0 && nn > 0 && w->watched)
            st = channels_watched(q, names, nn, w);
        if (st == 0 && nn > 0 && w->channel_ttl_s > 0)
            st = channels_expire(q, names, ttl_on, nn, w);
    }
    free(names);
    return st;
}

/*
 * Walk the jobs of @p session (see struct gw_session_walk); @p counts (may be
 * NULL) gets the number of jobs per status, in job_statuses order.
 * @return 0 or the answer set.
 */
static int session_walk(struct jreq *q, const char *session, struct gw_session_walk *w,
                        size_t *counts)
{
    char skey[JOBS_KEY_MAX];
    char(*runners)[JOBS_RUNNER_ID_MAX + 1] = NULL;
    struct jpos *v = NULL;
    size_t n = 0;
    int st;

    w->jobs = w->live = w->killed = w->channels_ttl = 0;
    w->watched_ms = 0;
    if (w->members_key)
        snprintf(skey, sizeof(skey), "%s", w->members_key);
    else
        gw_session_set_key(skey, sizeof(skey), q->gw->cfg->prefix, session);
    if ((st = set_members(q, skey, &v, &n)) != 0)
        return st;
    runners = calloc(n ? n : 1, sizeof(*runners));
    if (!runners) {
        free(v);
        return jerr(q, 500, "out of memory");
    }
    st = read_states(q, v, n, runners);
    for (size_t i = 0; st == 0 && i < n; i++) {
        if (!v[i].status[0])
            continue; /* the hash is gone */
        w->jobs++;
        for (size_t k = 0; counts && k < JOBS_STATUS_COUNT; k++)
            if (strcmp(v[i].status, job_statuses[k]) == 0)
                counts[k]++;
        if (strcmp(v[i].status, "queued") != 0 && strcmp(v[i].status, "running") != 0)
            continue;
        w->live++;
        if (!w->kill || (w->created_max_ms > 0 && v[i].ms > (unsigned long long)w->created_max_ms))
            continue;
        st = job_kill(q, v[i].id, v[i].status, runners[i], NULL);
        if (st == 0)
            w->killed++;
    }
    if (st == 0 && (w->watched || w->channel_ttl_s > 0))
        st = session_channels(q, v, n, w);
    free(runners);
    free(v);
    return st;
}

int gw_jobs_session_walk(struct gw_ctx *gw, struct redisContext *c, const char *session,
                         struct gw_session_walk *w, int *broken, char *err, size_t errlen)
{
    struct jreq q;
    int st;

    memset(&q, 0, sizeof(q));
    q.gw = gw;
    q.c = c;
    q.status = 500;
    st = session_walk(&q, session, w, NULL);
    *broken = q.broken;
    cJSON_Delete(q.json);
    if (st == 0)
        return 0;
    snprintf(err, errlen, "%s", q.msg[0] ? q.msg : "failed");
    return -1;
}

static int session_delete(struct jreq *q, const char *session)
{
    struct gw_session_walk w;
    int st;
    cJSON *o;

    memset(&w, 0, sizeof(w));
    w.kill = 1;
    if ((st = session_walk(q, session, &w, NULL)) != 0)
        return st;
    if (w.killed)
        pc_info("jobs", "session \"%s\": kill asked for %zu jobs", session, w.killed);
    o = cJSON_CreateObject();
    if (o)
        cJSON_AddNumberToObject(o, "killed", (double)w.killed);
    return jok(q, 200, o);
}

static void add_ms(cJSON *o, const char *name, long long ms)
{
    if (ms > 0)
        cJSON_AddNumberToObject(o, name, (double)ms);
    else
        cJSON_AddNullToObject(o, name);
}

/*
 * Answer the session object: {session, idle_s, last_active_ms, expires_ms,
 * expired_ms, watched, jobs: {total, <status>: n}}. With @p must_exist, a
 * session with neither jobs nor an idle expiry is a 404.
 */
static int session_answer(struct jreq *q, const char *session, int must_exist)
{
    char mkey[GW_SESSION_KEY_MAX];
    size_t counts[JOBS_STATUS_COUNT] = {0};
    long long idle = 0, last = 0, expired = 0, now, active;
    struct gw_session_walk w;
    struct cmd m = {0};
    redisReply *r;
    cJSON *o, *jobs;
    int st;

    gw_session_meta_key(mkey, sizeof(mkey), q->gw->cfg->prefix, session);
    cmd_str(&m, "HMGET");
    cmd_str(&m, mkey);
    cmd_str(&m, "idle_s");
    cmd_str(&m, "last_active_ms");
    cmd_str(&m, "expired_ms");
    r = jcmd(q, &m);
    if (!r)
        return junavail(q);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        st = jreply_error(q, "HMGET session meta", r);
        freeReplyObject(r);
        return st;
    }
    if (r->element[0]->type == REDIS_REPLY_STRING)
        parse_ll(r->element[0]->str, r->element[0]->len, &idle);
    if (r->element[1]->type == REDIS_REPLY_STRING)
        parse_ll(r->element[1]->str, r->element[1]->len, &last);
    if (r->element[2]->type == REDIS_REPLY_STRING)
        parse_ll(r->element[2]->str, r->element[2]->len, &expired);
    freeReplyObject(r);
    if (idle < 1 || idle > GW_SESSION_IDLE_MAX)
        idle = last = expired = 0; /* no idle expiry (or not one written by a gateway) */

    memset(&w, 0, sizeof(w));
    w.watched = 1;
    if ((st = session_walk(q, session, &w, counts)) != 0)
        return st;
    if (must_exist && !idle && w.jobs == 0)
        return jerr(q, 404, "session \"%s\" not found (no jobs, no idle expiry)", session);
    now = pc_wall_ms();
    active = gw_session_active_ms(last, w.watched_ms, now);
    o = cJSON_CreateObject();
    if (!o)
        return jerr(q, 500, "out of memory");
    cJSON_AddStringToObject(o, "session", session);
    if (idle)
        cJSON_AddNumberToObject(o, "idle_s", (double)idle);
    else
        cJSON_AddNullToObject(o, "idle_s");
    add_ms(o, "last_active_ms", idle ? active : 0);
    add_ms(o, "expires_ms", idle && !expired ? active + idle * 1000 : 0);
    add_ms(o, "expired_ms", expired);
    cJSON_AddBoolToObject(o, "watched",
                          w.watched_ms > 0 && w.watched_ms >= now - GW_SESSION_WATCH_FRESH_MS);
    jobs = cJSON_AddObjectToObject(o, "jobs");
    if (jobs) {
        cJSON_AddNumberToObject(jobs, "total", (double)w.jobs);
        for (size_t k = 0; k < JOBS_STATUS_COUNT; k++)
            cJSON_AddNumberToObject(jobs, job_statuses[k], (double)counts[k]);
    }
    return jok(q, 200, o);
}

/* PUT /api/sessions/<s> {"idle_s": N | null}. */
static int session_put(struct jreq *q, const char *session)
{
    char msg[256], qv[160];
    const cJSON *idle = NULL;
    const char *end = NULL;
    struct pc_buf body;
    long long n = 0;
    cJSON *root;
    int st;

    if ((st = read_body(q, &body)) != 0) {
        pc_buf_free(&body);
        return st;
    }
    if (json_precheck(body.data ? body.data : "", body.len, msg, sizeof(msg)) != 0) {
        pc_buf_free(&body);
        return jerr(q, 400, "%s", msg);
    }
    root = cJSON_ParseWithLengthOpts(body.data ? body.data : "", body.len, &end, 0);
    if (root && end)
        while (end < body.data + body.len && strchr(" \t\r\n", *end))
            end++;
    if (!root || !end || end != body.data + body.len) {
        st = jerr(q, 400, "body: expected a JSON object like {\"idle_s\": 600}");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        st = jerr(q, 400, "body: expected a JSON object like {\"idle_s\": 600}");
        goto out;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "idle_s") != 0) {
            st = jerr(q, 400, "unknown key \"%s\" (allowed: idle_s)",
                      quote(it->string, qv, sizeof(qv)));
            goto out;
        }
        if (idle) {
            st = jerr(q, 400, "key \"idle_s\" given twice");
            goto out;
        }
        idle = it;
    }
    if (!idle || (!cJSON_IsNull(idle) && json_int(idle, 1, GW_SESSION_IDLE_MAX, &n) != 0)) {
        st = jerr(q, 400, "idle_s: expected an integer 1-%d (seconds), or null for none",
                  GW_SESSION_IDLE_MAX);
        goto out;
    }
    if (n > 0) {
        if (session_touch(q, session, n, 1) == -2) {
            st = q->status;
            goto out;
        }
        pc_info("jobs", "session \"%s\": idle expiry %llds", session, n);
    } else {
        /* no idle expiry any more: forget it, and nothing of the session expires */
        char mkey[GW_SESSION_KEY_MAX], ekey[GW_SESSION_KEY_MAX], skey[JOBS_KEY_MAX];
        const char *cmds[3][3] = {
            {"DEL", mkey, NULL}, {"ZREM", ekey, session}, {"PERSIST", skey, NULL}};

        gw_session_meta_key(mkey, sizeof(mkey), q->gw->cfg->prefix, session);
        gw_session_expiry_key(ekey, sizeof(ekey), q->gw->cfg->prefix);
        gw_session_set_key(skey, sizeof(skey), q->gw->cfg->prefix, session);
        for (int i = 0; i < 3; i++) {
            struct cmd m = {0};
            redisReply *r;

            for (int k = 0; k < 3 && cmds[i][k]; k++)
                cmd_str(&m, cmds[i][k]);
            r = jcmd(q, &m);
            if (!r) {
                st = junavail(q);
                goto out;
            }
            if (r->type != REDIS_REPLY_INTEGER) {
                st = jreply_error(q, cmds[i][0], r);
                freeReplyObject(r);
                goto out;
            }
            freeReplyObject(r);
        }
        pc_info("jobs", "session \"%s\": no idle expiry", session);
    }
    st = session_answer(q, session, 0);
out:
    cJSON_Delete(root);
    pc_buf_free(&body);
    return st;
}

/* POST /api/sessions/<s>/touch. */
static int session_touch_req(struct jreq *q, const char *session)
{
    int rc = session_touch(q, session, 0, 0);

    if (rc == -2)
        return q->status;
    if (rc == GW_TOUCH_EXPIRED)
        return jerr(q, 409,
                    "session \"%s\" has expired (its jobs were killed); PUT "
                    "/api/sessions/%s or submit a job to start it again",
                    session, session);
    return session_answer(q, session, 1);
}

/* ------------------------------------------------------------------------ */
/* GET /api/runners, GET /api/templates                                      */
/* ------------------------------------------------------------------------ */

static int runners_list(struct jreq *q)
{
    struct jobs_snap *snap = snap_load(q);
    const struct runners *rs;
    cJSON *root, *arr;

    if (!snap)
        return q->status;
    rs = &snap->rs;
    root = cJSON_CreateObject();
    arr = root ? cJSON_AddArrayToObject(root, "runners") : NULL;
    for (size_t i = 0; arr && i < rs->n; i++) {
        cJSON *d = cJSON_Duplicate(rs->v[i].hb, 1);
        const cJSON *slots, *running;

        if (!d)
            continue;
        /* the key names the runner: pc:runner:<id> is what pc:ctl:<id> follows */
        cJSON_DeleteItemFromObjectCaseSensitive(d, "id");
        cJSON_AddStringToObject(d, "id", rs->v[i].id);
        slots = cJSON_GetObjectItemCaseSensitive(d, "slots");
        running = cJSON_GetObjectItemCaseSensitive(d, "running");
        cJSON_DeleteItemFromObjectCaseSensitive(d, "free");
        if (cJSON_IsNumber(slots) && cJSON_IsNumber(running))
            cJSON_AddNumberToObject(d, "free",
                                    slots->valuedouble > running->valuedouble
                                        ? slots->valuedouble - running->valuedouble
                                        : 0);
        else
            cJSON_AddNullToObject(d, "free");
        cJSON_AddItemToArray(arr, d);
    }
    snap_put(q->gw->jobs, snap);
    if (!arr) {
        cJSON_Delete(root);
        root = NULL;
    }
    return jok(q, 200, root);
}

static int templates_list(struct jreq *q)
{
    struct jobs_snap *snap = snap_load(q);
    const struct runners *rs;
    cJSON *root, *all;

    if (!snap)
        return q->status;
    rs = &snap->rs;
    root = cJSON_CreateObject();
    all = root ? cJSON_AddObjectToObject(root, "templates") : NULL;
    for (size_t i = 0; all && i < rs->n; i++) {
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(rs->v[i].hb, "templates");

        if (!cJSON_IsObject(ts))
            continue;
        for (const cJSON *t = ts->child; t; t = t->next) {
            cJSON *e = cJSON_GetObjectItemCaseSensitive(all, t->string);
            const cJSON *desc, *params;

            if (!cJSON_IsObject(t))
                continue;
            if (!e) {
                /* the first runner (by id) that offers it describes it */
                desc = cJSON_GetObjectItemCaseSensitive(t, "description");
                params = cJSON_GetObjectItemCaseSensitive(t, "params");
                e = cJSON_AddObjectToObject(all, t->string);
                if (!e)
                    continue;
                cJSON_AddStringToObject(e, "description",
                                        cJSON_IsString(desc) ? desc->valuestring : "");
                cJSON_AddItemToObject(e, "params",
                                      cJSON_IsObject(params) ? cJSON_Duplicate(params, 1)
                                                             : cJSON_CreateObject());
                cJSON_AddArrayToObject(e, "runners");
            }
            cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(e, "runners"),
                                 cJSON_CreateString(rs->v[i].id));
        }
    }
    snap_put(q->gw->jobs, snap);
    if (!all) {
        cJSON_Delete(root);
        root = NULL;
    }
    return jok(q, 200, root);
}

/* ------------------------------------------------------------------------ */
/* Routing                                                                   */
/* ------------------------------------------------------------------------ */

/* @p uri is @p base or starts with base + "/". @return what follows base ("" or "/..."), or NULL.
 */
static const char *under(const char *uri, const char *base)
{
    size_t n = strlen(base);

    if (strncmp(uri, base, n) != 0 || (uri[n] != '\0' && uri[n] != '/'))
        return NULL;
    return uri + n;
}

int gw_jobs_api_match(const char *uri)
{
    return uri && (under(uri, "/api/jobs") || under(uri, "/api/sessions") ||
                   under(uri, "/api/runners") || under(uri, "/api/templates"));
}

static int route_jobs(struct jreq *q, const char *rest)
{
    char id[GW_JOB_ID_LEN + 1], qv[80];
    const char *slash;
    size_t seglen;
    int st;

    if (*rest == '/')
        rest++;
    if (*rest == '\0') {
        gw_metrics_request(q->gw->metrics, GW_EP_JOBS);
        if (method_is(q, "OPTIONS"))
            return preflight(q, ALLOW_JOBS);
        if (method_is(q, "GET"))
            return job_list(q);
        if (method_is(q, "POST"))
            return job_submit(q);
        return not_allowed(q, ALLOW_JOBS);
    }
    gw_metrics_request(q->gw->metrics, GW_EP_JOB);
    slash = strchr(rest, '/');
    seglen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (slash && strcmp(slash, "/stdin") != 0)
        return jerr(q, 404, "no such endpoint");
    if (slash) {
        if (method_is(q, "OPTIONS"))
            return preflight(q, ALLOW_STDIN);
        if (!method_is(q, "POST"))
            return not_allowed(q, ALLOW_STDIN);
    } else {
        if (method_is(q, "OPTIONS"))
            return preflight(q, ALLOW_JOB);
        if (!method_is(q, "GET") && !method_is(q, "DELETE"))
            return not_allowed(q, ALLOW_JOB);
    }
    if (!job_id_valid(rest, seglen)) {
        gw_http_quote(rest, seglen, qv, sizeof(qv));
        return jerr(q, 400, "job id \"%s\": invalid (expected 16 lowercase hex characters)", qv);
    }
    memcpy(id, rest, GW_JOB_ID_LEN);
    id[GW_JOB_ID_LEN] = '\0';
    if (!slash && method_is(q, "GET"))
        return job_get(q, id);
    st = slash ? job_stdin(q, id) : job_delete(q, id);
    if (st >= 200 && st < 300 && q->job_session[0])
        session_activity(q, q->job_session); /* stdin or a kill: its session's activity */
    return st;
}

static int route_sessions(struct jreq *q, const char *rest)
{
    char buf[256], qv[160];
    const char *slash;
    size_t seglen;
    int n = -1, touch;

    gw_metrics_request(q->gw->metrics, GW_EP_SESSIONS);
    if (*rest == '/')
        rest++;
    slash = strchr(rest, '/');
    seglen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (seglen == 0 || (slash && strcmp(slash, "/touch") != 0))
        return jerr(q, 404, "no such endpoint");
    touch = slash != NULL;
    if (method_is(q, "OPTIONS"))
        return preflight(q, touch ? ALLOW_TOUCH : ALLOW_SESSION);
    if (touch ? !method_is(q, "POST")
              : !method_is(q, "GET") && !method_is(q, "PUT") && !method_is(q, "DELETE"))
        return not_allowed(q, touch ? ALLOW_TOUCH : ALLOW_SESSION);
    if (seglen < sizeof(buf) / 2)
        n = mg_url_decode(rest, (int)seglen, buf, (int)sizeof(buf), 0);
    if (n < 0 || !session_valid(buf, (size_t)n)) {
        if (n < 0)
            gw_http_quote(rest, seglen, qv, sizeof(qv));
        else
            gw_http_quote(buf, (size_t)n, qv, sizeof(qv));
        return jerr(q, 400,
                    "session \"%s\": invalid (allowed: 1-%d bytes of A-Z a-z 0-9 . _ : @ -)", qv,
                    JOBS_SESSION_MAX);
    }
    if (touch)
        return session_touch_req(q, buf);
    if (method_is(q, "GET"))
        return session_answer(q, buf, 1);
    if (method_is(q, "PUT"))
        return session_put(q, buf);
    return session_delete(q, buf);
}

static int route_get(struct jreq *q, const char *rest, enum gw_endpoint ep,
                     int (*fn)(struct jreq *q))
{
    gw_metrics_request(q->gw->metrics, ep);
    if (*rest == '/')
        rest++;
    if (*rest != '\0')
        return jerr(q, 404, "no such endpoint");
    if (method_is(q, "OPTIONS"))
        return preflight(q, ALLOW_GET);
    if (!method_is(q, "GET"))
        return not_allowed(q, ALLOW_GET);
    return fn(q);
}

int gw_jobs_api_handle(struct mg_connection *conn, struct gw_ctx *gw)
{
    struct jreq q;
    const char *uri, *rest;
    int rc;

    memset(&q, 0, sizeof(q));
    q.conn = conn;
    q.gw = gw;
    q.ri = mg_get_request_info(conn);
    q.status = 500;
    uri = q.ri->local_uri ? q.ri->local_uri : "";

    if ((rest = under(uri, "/api/jobs")) != NULL)
        rc = route_jobs(&q, rest);
    else if ((rest = under(uri, "/api/sessions")) != NULL)
        rc = route_sessions(&q, rest);
    else if ((rest = under(uri, "/api/runners")) != NULL)
        rc = route_get(&q, rest, GW_EP_RUNNERS, runners_list);
    else if ((rest = under(uri, "/api/templates")) != NULL)
        rc = route_get(&q, rest, GW_EP_TEMPLATES, templates_list);
    else
        rc = jerr(&q, 404, "no such endpoint");

    if (q.c)
        gw_rpool_put(gw->pool, q.c, q.broken);
    if (rc < 0) /* answered already (OPTIONS) */
        return q.status;
    if (q.json)
        return gw_http_json_take(conn, gw, q.status, q.extra, q.json);
    return gw_http_error(conn, gw, q.status, q.extra, "%s", q.msg);
}
