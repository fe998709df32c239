/* jobs.c -- `pipecast jobs`: submit, list, show, kill and feed jobs through the gateway.
 *
 *   pipecast jobs submit TEMPLATE [k=v...] [--channel C] [--session S] [--timeout S]
 *                        [--env K=V] [--cwd DIR] [--stdin-file F] [--pty] [--follow]
 *   pipecast jobs submit --argv [options] -- CMD ARGS...
 *   pipecast jobs ls [--status S] [--session S] [--limit N] [--cursor C]
 *   pipecast jobs show ID | kill ID [--signal S] | stdin ID [--eof] | runners | templates
 *
 * Everything goes through the gateway's job API (docs/jobs.md) with the small
 * HTTP client of http_client.c: --gateway URL, else $PIPECAST_GATEWAY, else
 * http://127.0.0.1:8080. --json prints the gateway's JSON instead of text.
 *
 * `submit --follow` reads the job's channel over SSE from its start, writes
 * stdout events to stdout and stderr events to stderr (with ?partial=mark: a
 * `stdout.partial` / `stderr.partial` chunk is written without its newline,
 * the next entry of that stream continues its line), and ends with the
 * job's exit status when its `exit` event arrives (reconnecting with
 * Last-Event-ID when the stream drops).
 *
 * Exit codes: 0 success (or the job's code with --follow), 1 gateway/HTTP
 * failure (`pipecast: gateway URL: 404 job ... not found`), 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/utf8.h"

#include "cli.h"
#include "http_client.h"

#define JOBS_GATEWAY_DEFAULT "http://127.0.0.1:8080"
#define JOBS_HTTP_TIMEOUT_MS 30000
#define JOBS_STREAM_CONNECT_MS 10000
#define JOBS_STREAM_IDLE_MS 60000 /* the gateway pings every 15 s */
#define JOBS_FOLLOW_GIVE_UP_MS 60000
#define JOBS_FINAL_WAIT_MS 3000 /* after `exit`: how long to wait for the final status */
#define JOBS_STDIN_CHUNK 65536
#define JOBS_STDIN_CHUNK_MIN 1024
#define JOBS_STDIN_WAIT_MIN_MS 10  /* 429: first wait before sending again, doubled each time */
#define JOBS_STDIN_WAIT_MAX_MS 500 /* ... up to this (or the answer's Retry-After) */
#define STDIN_SMALLER (-1)         /* stdin_post: 413, send smaller pieces */
#define JOBS_FILE_MAX (16 * 1024 * 1024)
#define JOBS_ID_LEN 16
#define JOBS_SESSION_MAX 64
#define JOBS_TIMEOUT_MAX 604800

enum jobs_opt {
    OPT_GATEWAY = PC_OPT_LOCAL,
    OPT_JSON,
    OPT_CHANNEL,
    OPT_SESSION,
    OPT_TIMEOUT,
    OPT_ENV,
    OPT_CWD,
    OPT_STDIN_FILE,
    OPT_PTY,
    OPT_FOLLOW,
    OPT_ARGV,
    OPT_STATUS,
    OPT_LIMIT,
    OPT_CURSOR,
    OPT_SIGNAL,
    OPT_EOF,
    OPT_SESSION_IDLE,
};

static const struct option jobs_longopts[] = {
    {"gateway", required_argument, NULL, OPT_GATEWAY},
    {"json", no_argument, NULL, OPT_JSON},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"session", required_argument, NULL, OPT_SESSION},
    {"session-idle", required_argument, NULL, OPT_SESSION_IDLE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"env", required_argument, NULL, OPT_ENV},
    {"cwd", required_argument, NULL, OPT_CWD},
    {"stdin-file", required_argument, NULL, OPT_STDIN_FILE},
    {"pty", no_argument, NULL, OPT_PTY},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    {"argv", no_argument, NULL, OPT_ARGV},
    {"status", required_argument, NULL, OPT_STATUS},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"cursor", required_argument, NULL, OPT_CURSOR},
    {"signal", required_argument, NULL, OPT_SIGNAL},
    {"eof", no_argument, NULL, OPT_EOF},
    {"log-level", required_argument, NULL, PC_OPT_LOG_LEVEL},
    {"help", no_argument, NULL, PC_OPT_HELP},
    {"version", no_argument, NULL, PC_OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* One subcommand: its name, the options it takes (by code), its positional arguments. */
struct jobs_sub {
    const char *name;
    const char *args;
    const char *summary;
    const int *opts; /* 0-terminated */
};

static const int submit_opts[] = {
    OPT_CHANNEL, OPT_SESSION,    OPT_SESSION_IDLE, OPT_TIMEOUT, OPT_ENV, OPT_CWD,
    OPT_PTY,     OPT_STDIN_FILE, OPT_FOLLOW,       OPT_ARGV,    0};
static const int ls_opts[] = {OPT_STATUS, OPT_SESSION, OPT_LIMIT, OPT_CURSOR, 0};
static const int kill_opts[] = {OPT_SIGNAL, 0};
static const int stdin_opts[] = {OPT_EOF, 0};
static const int no_opts[] = {0};

static const struct jobs_sub jobs_subs[] = {
    {"submit", "TEMPLATE [NAME=VALUE...] | --argv -- CMD [ARGS...]", "queue a job", submit_opts},
    {"ls", "", "list jobs, newest first", ls_opts},
    {"show", "ID", "show one job", no_opts},
    {"kill", "ID", "kill a job (cancel it while queued)", kill_opts},
    {"stdin", "ID", "write stdin to a running job (--eof: then close it)", stdin_opts},
    {"runners", "", "list the live runners", no_opts},
    {"templates", "", "list the templates the live runners offer", no_opts},
};

struct jobs_ctx {
    const struct jobs_sub *sub;
    struct pc_cli_common com;
    struct cli_http_url url;
    int json;
    /* submit */
    const char *channel, *session, *cwd, *stdin_file;
    long long timeout_s, session_idle_s;
    int pty, follow, argv_mode;
    const char **env;
    int nenv;
    /* ls */
    const char *status, *cursor;
    long long limit;
    /* kill, stdin */
    const char *signal;
    int eof;
    char err[512];
};

static void jobs_usage(FILE *f)
{
    fputs("usage: pipecast jobs <command> [options] [arguments]\n"
          "\n"
          "Start, watch and control jobs through the gateway's job API.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < sizeof(jobs_subs) / sizeof(jobs_subs[0]); i++)
        fprintf(f, "  %-9s %s\n", jobs_subs[i].name, jobs_subs[i].summary);
    fputs("\n"
          "  submit TEMPLATE [NAME=VALUE...]    a template of the runners' config with its params\n"
          "  submit --argv -- CMD [ARGS...]     a command (only when a runner allows any command)\n"
          "    --channel C        publish the job's output to channel C (default: job:<id>,\n"
          "                       or <session>:<id> with --session)\n"
          "    --session S        the job belongs to session S (1-64 bytes, channel alphabet)\n"
          "    --session-idle S   with --session: kill the session's jobs after S seconds\n"
          "                       without activity (1-604800; see docs/jobs.md, Sessions)\n"
          "    --timeout S        kill the job after S seconds (1-604800)\n"
          "    --env NAME=VALUE   an environment variable for the job (repeatable)\n"
          "    --cwd DIR          the job's working directory\n"
          "    --stdin-file F     text written to the job's stdin first\n"
          "    --pty              run the job on a pseudo-terminal\n"
          "    --follow           print the job's stdout/stderr as it runs and exit with its\n"
          "                       exit code (128+N for signal N, 1 when lost or failed)\n"
          "  ls [--status S] [--session S] [--limit N] [--cursor C]\n"
          "  show ID\n"
          "  kill ID [--signal TERM|KILL|INT|HUP]\n"
          "  stdin ID [--eof] < FILE\n"
          "  runners\n"
          "  templates\n"
          "\n"
          "options of every command:\n"
          "  --gateway URL        the gateway (env PIPECAST_GATEWAY, default " JOBS_GATEWAY_DEFAULT
          ")\n"
          "  --json               print the gateway's JSON answer\n"
          "  (env PIPECAST_TOKEN: the token for a gateway started with --tokens)\n"
          "  --log-level L        debug|info|warn|error\n"
          "  --help               show this help\n"
          "\n"
          "Exit status: 0 ok (with --follow: the job's), 1 gateway or HTTP error, 2 usage error.\n",
          f);
}

static int sub_takes(const struct jobs_sub *s, int opt)
{
    for (const int *o = s->opts; *o; o++)
        if (*o == opt)
            return 1;
    return 0;
}

static const char *opt_name(int opt)
{
    for (const struct option *o = jobs_longopts; o->name; o++)
        if (o->val == opt)
            return o->name;
    return "?";
}

/* ------------------------------------------------------------------------ */
/* Gateway answers                                                           */
/* ------------------------------------------------------------------------ */

/* Print "pipecast: gateway URL: <why>" for a failed exchange. @return PC_EXIT_FAIL. */
static int gw_fail(const struct jobs_ctx *x, const char *why)
{
    pc_cli_err("gateway %s: %s", x->url.text, why);
    return PC_EXIT_FAIL;
}

/* Printable text (at most @p max bytes) of untrusted bytes, into @p dst. */
static void clean_text(const char *s, size_t len, char *dst, size_t dstlen, size_t max)
{
    size_t o = 0;

    for (size_t i = 0; i < len && i < max && o + 1 < dstlen; i++) {
        unsigned char c = (unsigned char)s[i];

        dst[o++] = (c >= 0x20 && c != 0x7f) || c >= 0x80 ? (char)c : ' ';
    }
    dst[o] = '\0';
    while (o > 0 && dst[o - 1] == ' ')
        dst[--o] = '\0';
}

/* Report an answer with an unexpected status. @return PC_EXIT_FAIL. */
static int gw_status_fail(const struct jobs_ctx *x, const struct cli_http_resp *r)
{
    cJSON *j = r->body.len ? cJSON_ParseWithLength(r->body.data, r->body.len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    char msg[600];

    if (cJSON_IsString(e))
        clean_text(e->valuestring, strlen(e->valuestring), msg, sizeof(msg), 500);
    else if (r->body.len)
        clean_text(r->body.data, r->body.len, msg, sizeof(msg), 200);
    else
        snprintf(msg, sizeof(msg), "(no message)");
    cJSON_Delete(j);
    pc_cli_err("gateway %s: %d %s", x->url.text, r->status, msg);
    return PC_EXIT_FAIL;
}

/*
 * One request; on success the answer (status @p want) is parsed into @p out
 * (may be NULL). @return 0, or PC_EXIT_FAIL after printing why.
 */
static int gw_call(struct jobs_ctx *x, const char *method, const char *path, const char *body,
                   int want, struct cli_http_resp *r, cJSON **out)
{
    int rc;

    if (out)
        *out = NULL;
    pc_debug("jobs", "%s %s%s", method, x->url.text, path);
    rc = cli_http_request(&x->url, method, path, body ? "application/json" : NULL, body,
                          body ? strlen(body) : 0, JOBS_HTTP_TIMEOUT_MS, r, x->err, sizeof(x->err));
    if (rc != 0)
        return gw_fail(x, x->err);
    if (r->status != want) {
        gw_status_fail(x, r);
        cli_http_resp_free(r);
        return PC_EXIT_FAIL;
    }
    if (out) {
        *out = r->body.len ? cJSON_ParseWithLength(r->body.data, r->body.len) : NULL;
        if (!*out) {
            cli_http_resp_free(r);
            return gw_fail(x, "the answer is not JSON");
        }
    }
    return 0;
}

/* --json: the gateway's answer as it came. */
static void print_raw(const struct cli_http_resp *r)
{
    if (r->body.len) {
        fwrite(r->body.data, 1, r->body.len, stdout);
        if (r->body.data[r->body.len - 1] != '\n')
            fputc('\n', stdout);
    }
}

/*
 * GET @p path expecting 200. With --json the answer is printed as it came and
 * *ans stays NULL; otherwise *ans is the parsed answer (the caller frees it).
 * @return 0, or PC_EXIT_FAIL after printing why.
 */
static int gw_get(struct jobs_ctx *x, const char *path, cJSON **ans)
{
    struct cli_http_resp r;
    int rc = gw_call(x, "GET", path, NULL, 200, &r, x->json ? NULL : ans);

    if (rc != 0)
        return rc;
    if (x->json)
        print_raw(&r);
    cli_http_resp_free(&r);
    return 0;
}

/* Append @p s percent-encoded to @p b (query values). */
static int url_escape(struct pc_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;

    for (; *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~:@", c)) {
            rc = pc_buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};

            rc = pc_buf_append(b, e, 3);
        }
    }
    return rc;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jnum(const cJSON *o, const char *k, long long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (!cJSON_IsNumber(v))
        return -1;
    *out = (long long)v->valuedouble;
    return 0;
}

static int id_valid(const char *s)
{
    if (strlen(s) != JOBS_ID_LEN)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static int session_valid(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= JOBS_SESSION_MAX && pc_channel_valid(s, n);
}

/* ------------------------------------------------------------------------ */
/* --follow: the job's channel over SSE                                      */
/* ------------------------------------------------------------------------ */

struct follow {
    struct jobs_ctx *x;
    const char *id;
    const char *channel;
    char last_id[64]; /* the last event id seen: Last-Event-ID on reconnect */
    /* the event being read */
    char ev_name[PC_EVENT_MAX + sizeof(".partial")];
    char ev_id[64];
    int ev_has_id;
    int ev_has_data;
    struct pc_buf data;
    /* outcome */
    int pending_exit; /* an exit event came; the job may still restart */
    int exit_code;
    int done;
    int fatal; /* a write error on stdout/stderr */
};

static void follow_reset_event(struct follow *f)
{
    f->ev_name[0] = '\0';
    f->ev_has_id = 0;
    f->ev_has_data = 0;
    pc_buf_reset(&f->data);
}

/* The exit status for an `exit` event's JSON. */
static int exit_status_of(const cJSON *e)
{
    const char *reason = jstr(e, "reason");
    long long v;

    if (reason && (strcmp(reason, "lost") == 0 || strncmp(reason, "failed", 6) == 0))
        return 1;
    if (jnum(e, "code", &v) == 0)
        return v >= 0 && v <= 255 ? (int)v : 1;
    if (jnum(e, "signal", &v) == 0 && v > 0 && v < 128)
        return 128 + (int)v;
    return 1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * After an `exit` event: is that the end of the job? A restart policy may
 * start it again, so wait (a little) for the job's final status.
 * @return 1 ended, 0 not (yet): keep following.
 */
static int follow_job_ended(struct follow *f, long long attempt)
{
    long long until = pc_now_ms() + JOBS_FINAL_WAIT_MS;
    char path[64], err[256];

    snprintf(path, sizeof(path), "/api/jobs/%s", f->id);
    for (;;) {
        struct cli_http_resp r;
        cJSON *j = NULL;
        const char *st = NULL;
        long long a = 0;
        int rc;

        rc = cli_http_request(&f->x->url, "GET", path, NULL, NULL, 0, JOBS_HTTP_TIMEOUT_MS, &r, err,
                              sizeof(err));
        if (rc != 0 || r.status != 200) {
            /* cannot tell: the exit event is the best answer there is */
            if (rc == 0)
                cli_http_resp_free(&r);
            return 1;
        }
        j = cJSON_ParseWithLength(r.body.data, r.body.len);
        cli_http_resp_free(&r);
        st = jstr(j, "status");
        if (!st || (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0)) {
            cJSON_Delete(j);
            return 1;
        }
        rc = jnum(j, "attempt", &a) == 0 && a > attempt;
        cJSON_Delete(j);
        if (rc || pc_now_ms() >= until)
            return 0; /* restarting (or the runner is slow): the stream tells what happens */
        sleep_ms(100);
    }
}

static int write_all(FILE *f, const char *p, size_t n, int nl)
{
    if ((n && fwrite(p, 1, n, f) != n) || (nl && fputc('\n', f) == EOF) || fflush(f) != 0)
        return -1;
    return 0;
}

/* One complete SSE event. @return 1 to stop reading. */
static int follow_dispatch(struct follow *f)
{
    const char *name = f->ev_name[0] ? f->ev_name : "message";
    const char *d = f->data.data ? f->data.data : "";

    if (f->ev_has_id)
        snprintf(f->last_id, sizeof(f->last_id), "%s", f->ev_id);
    if (!f->ev_has_data)
        return 0;
    if (f->pending_exit && strcmp(name, "exit") != 0)
        f->pending_exit = 0; /* something after the exit: the job goes on (restart) */
    if (strcmp(name, "stdout") == 0 || strcmp(name, "stderr") == 0 ||
        strcmp(name, "stdout.partial") == 0 || strcmp(name, "stderr.partial") == 0) {
        /* a partial chunk does not end its line: the next entry of its stream goes on with it */
        int partial = strchr(name, '.') != NULL;

        if (write_all(strncmp(name, "stdout", 6) == 0 ? stdout : stderr, d, f->data.len,
                      !partial) != 0) {
            f->fatal = 1;
            return 1;
        }
    } else if (strcmp(name, "exit") == 0) {
        cJSON *e = cJSON_ParseWithLength(d, f->data.len);
        const char *job = jstr(e, "job");
        long long attempt = 0;

        if (job && strcmp(job, f->id) == 0) {
            f->exit_code = exit_status_of(e);
            f->pending_exit = 1;
            (void)jnum(e, "attempt", &attempt);
            if (follow_job_ended(f, attempt)) {
                f->done = 1;
                cJSON_Delete(e);
                return 1;
            }
        }
        cJSON_Delete(e);
    } else if (strcmp(name, "gap") == 0) {
        pc_cli_err("channel %s: the oldest output was trimmed away (gap)", f->channel);
    }
    return 0;
}

/* SSE parsing, one line at a time (the WHATWG rules for the fields used here). */
static int follow_line(void *privdata, const char *line, size_t len)
{
    struct follow *f = privdata;
    const char *colon, *v;
    size_t flen, vlen;
    int stop;

    if (len == 0) {
        stop = follow_dispatch(f);
        follow_reset_event(f);
        return stop;
    }
    if (line[0] == ':')
        return 0;
    colon = memchr(line, ':', len);
    flen = colon ? (size_t)(colon - line) : len;
    v = colon ? colon + 1 : line + len;
    vlen = colon ? len - flen - 1 : 0;
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (flen == 4 && memcmp(line, "data", 4) == 0) {
        if ((f->ev_has_data && pc_buf_append(&f->data, "\n", 1) != 0) ||
            pc_buf_append(&f->data, v, vlen) != 0) {
            pc_cli_err("channel %s: an event larger than %u bytes was cut", f->channel,
                       CLI_HTTP_LINE_MAX);
        }
        f->ev_has_data = 1;
    } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
        size_t max = sizeof(f->ev_name) - 1;

        snprintf(f->ev_name, sizeof(f->ev_name), "%.*s", (int)(vlen < max ? vlen : max), v);
    } else if (flen == 2 && memcmp(line, "id", 2) == 0 && vlen < sizeof(f->ev_id) &&
               !memchr(v, '\0', vlen)) {
        memcpy(f->ev_id, v, vlen);
        f->ev_id[vlen] = '\0';
        f->ev_has_id = 1;
    }
    return 0;
}

static int follow_run(struct jobs_ctx *x, const char *id, const char *channel)
{
    struct follow f;
    struct pc_backoff bo;
    long long failing_since = 0;
    char path[512], hdr[128];
    struct pc_buf p;

    memset(&f, 0, sizeof(f));
    f.x = x;
    f.id = id;
    f.channel = channel;
    pc_buf_init(&f.data, CLI_HTTP_LINE_MAX);
    pc_backoff_init(&bo, 200, 5000);
    pc_buf_init(&p, sizeof(path) - 1);
    if (pc_buf_append_str(&p, "/api/channels/") != 0 || url_escape(&p, channel) != 0 ||
        pc_buf_append_str(&p, "/events?from=start&partial=mark") != 0) {
        pc_buf_free(&p);
        pc_buf_free(&f.data);
        return gw_fail(x, "channel name too long");
    }
    snprintf(path, sizeof(path), "%s", p.data);
    pc_buf_free(&p);

    for (;;) {
        struct cli_http_resp r;
        int rc;

        if (f.last_id[0])
            snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s\r\n", f.last_id);
        else
            hdr[0] = '\0';
        follow_reset_event(&f);
        rc = cli_http_stream(&x->url, path, hdr, JOBS_STREAM_CONNECT_MS, JOBS_STREAM_IDLE_MS,
                             follow_line, &f, &r, x->err, sizeof(x->err));
        if (rc == 0 && r.status != 200 && r.status != 503) {
            gw_status_fail(x, &r);
            cli_http_resp_free(&r);
            break;
        }
        if (rc == 0 && r.status == 200)
            failing_since = 0;
        if (rc == 0 && r.status == 503)
            snprintf(x->err, sizeof(x->err), "503 (gateway busy or Redis unreachable)");
        cli_http_resp_free(&r);
        if (f.done || f.fatal)
            break;
        /* the stream ended or failed: reconnect after the last event seen */
        if (!failing_since)
            failing_since = pc_now_ms();
        else if (pc_now_ms() - failing_since > JOBS_FOLLOW_GIVE_UP_MS) {
            pc_cli_err("gateway %s: %s; gave up following job %s after %d s", x->url.text, x->err,
                       id, JOBS_FOLLOW_GIVE_UP_MS / 1000);
            break;
        }
        pc_debug("jobs", "stream of %s: %s; reconnecting", channel, x->err);
        sleep_ms(pc_backoff_next(&bo));
    }
    pc_buf_free(&f.data);
    if (f.done)
        return f.exit_code;
    if (f.fatal)
        return PC_EXIT_FAIL;
    return f.pending_exit ? f.exit_code : PC_EXIT_FAIL;
}

/* ------------------------------------------------------------------------ */
/* submit                                                                    */
/* ------------------------------------------------------------------------ */

/* The contents of @p path (text for JSON: valid UTF-8, no NUL). @return 0 or PC_EXIT_USAGE. */
static int read_text_file(const char *path, struct pc_buf *out)
{
    char chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    pc_buf_init(out, JOBS_FILE_MAX);
    if (fd < 0) {
        pc_cli_err("--stdin-file \"%s\": %s", path, strerror(errno));
        return PC_EXIT_USAGE;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || pc_buf_append(out, chunk, (size_t)n) != 0) {
            pc_cli_err("--stdin-file \"%s\": %s", path,
                       n < 0 ? strerror(errno) : "larger than 16 MiB");
            close(fd);
            pc_buf_free(out);
            return PC_EXIT_USAGE;
        }
    }
    close(fd);
    if (out->len && (memchr(out->data, '\0', out->len) ||
                     !pc_utf8_valid((const unsigned char *)out->data, out->len))) {
        pc_cli_err("--stdin-file \"%s\": not UTF-8 text without NUL bytes (JSON carries text)",
                   path);
        pc_buf_free(out);
        return PC_EXIT_USAGE;
    }
    return 0;
}

static int env_name_ok(const char *s, size_t n)
{
    if (n == 0 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Build the request body. @return the JSON object, or NULL after printing a usage error. */
static cJSON *submit_body(struct jobs_ctx *x, int npos, char **pos, int *rc)
{
    cJSON *o = cJSON_CreateObject(), *a;

    *rc = PC_EXIT_USAGE;
    if (!o) {
        *rc = PC_EXIT_FAIL;
        pc_cli_err("out of memory");
        return NULL;
    }
    if (x->session_idle_s && !x->session) {
        pc_cli_usage_error(&x->com, "submit: --session-idle needs --session");
        goto fail;
    }
    if (x->argv_mode) {
        if (npos < 1) {
            pc_cli_usage_error(&x->com, "submit --argv: missing the command (-- CMD ARGS...)");
            goto fail;
        }
        a = cJSON_AddArrayToObject(o, "argv");
        for (int i = 0; a && i < npos; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(pos[i]));
    } else {
        if (npos < 1) {
            pc_cli_usage_error(&x->com, "submit: missing the template name (or --argv -- CMD)");
            goto fail;
        }
        cJSON_AddStringToObject(o, "template", pos[0]);
        a = cJSON_AddArrayToObject(o, "args");
        for (int i = 1; a && i < npos; i++) {
            const char *eq = strchr(pos[i], '=');

            if (!eq || eq == pos[i]) {
                pc_cli_usage_error(&x->com, "submit: argument \"%s\": expected NAME=VALUE", pos[i]);
                goto fail;
            }
            cJSON_AddItemToArray(a, cJSON_CreateString(pos[i]));
        }
    }
    if (x->channel)
        cJSON_AddStringToObject(o, "channel", x->channel);
    if (x->session)
        cJSON_AddStringToObject(o, "session", x->session);
    if (x->session_idle_s)
        cJSON_AddNumberToObject(o, "session_idle_s", (double)x->session_idle_s);
    if (x->nenv) {
        cJSON *e = cJSON_AddObjectToObject(o, "env");

        for (int i = 0; e && i < x->nenv; i++) {
            const char *eq = strchr(x->env[i], '=');
            char name[256];

            if (!eq || !env_name_ok(x->env[i], (size_t)(eq - x->env[i])) ||
                (size_t)(eq - x->env[i]) >= sizeof(name)) {
                pc_cli_usage_error(
                    &x->com, "--env \"%s\": expected NAME=VALUE, NAME of [A-Za-z_][A-Za-z0-9_]*",
                    x->env[i]);
                goto fail;
            }
            memcpy(name, x->env[i], (size_t)(eq - x->env[i]));
            name[eq - x->env[i]] = '\0';
            if (cJSON_GetObjectItemCaseSensitive(e, name)) {
                pc_cli_usage_error(&x->com, "--env %s: given twice", name);
                goto fail;
            }
            cJSON_AddStringToObject(e, name, eq + 1);
        }
    }
    if (x->cwd)
        cJSON_AddStringToObject(o, "cwd", x->cwd);
    if (x->timeout_s)
        cJSON_AddNumberToObject(o, "timeout_s", (double)x->timeout_s);
    if (x->pty)
        cJSON_AddTrueToObject(o, "pty");
    if (x->stdin_file) {
        struct pc_buf b;

        if (read_text_file(x->stdin_file, &b) != 0)
            goto fail;
        cJSON_AddStringToObject(o, "stdin", b.data ? b.data : "");
        pc_buf_free(&b);
    }
    *rc = 0;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static int cmd_submit(struct jobs_ctx *x, int npos, char **pos)
{
    struct cli_http_resp r;
    cJSON *req, *ans = NULL;
    const char *id, *ch;
    char *body;
    int rc;

    req = submit_body(x, npos, pos, &rc);
    if (!req)
        return rc;
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) {
        pc_cli_err("out of memory");
        return PC_EXIT_FAIL;
    }
    rc = gw_call(x, "POST", "/api/jobs", body, 201, &r, &ans);
    cJSON_free(body);
    if (rc != 0)
        return rc;
    id = jstr(ans, "id");
    ch = jstr(ans, "channel");
    if (!id || !id_valid(id) || !ch || !pc_channel_valid(ch, strlen(ch))) {
        cJSON_Delete(ans);
        cli_http_resp_free(&r);
        return gw_fail(x, "the answer to POST /api/jobs lacks a valid id or channel");
    }
    /* with --follow stdout carries the job's stdout only: the id goes to stderr */
    if (x->json)
        print_raw(&r);
    else if (!x->follow)
        printf("%s\n", id);
    fflush(stdout);
    cli_http_resp_free(&r);
    rc = PC_EXIT_OK;
    if (x->follow) {
        pc_cli_err("job %s, channel %s", id, ch);
        rc = follow_run(x, id, ch);
    }
    cJSON_Delete(ans);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* ls, show                                                                  */
/* ------------------------------------------------------------------------ */

static void fmt_time(const cJSON *o, const char *k, char *dst, size_t len)
{
    long long ms;
    time_t t;
    struct tm tm;

    if (jnum(o, k, &ms) != 0) {
        snprintf(dst, len, "-");
        return;
    }
    t = (time_t)(ms / 1000);
    if (!localtime_r(&t, &tm) || strftime(dst, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(dst, len, "%lld", ms);
}

static void fmt_exit(const cJSON *o, char *dst, size_t len)
{
    long long v;

    if (jnum(o, "code", &v) == 0)
        snprintf(dst, len, "%lld", v);
    else if (jnum(o, "signal", &v) == 0)
        snprintf(dst, len, "sig %lld", v);
    else
        snprintf(dst, len, "-");
}

static int cmd_ls(struct jobs_ctx *x)
{
    struct pc_buf path;
    cJSON *ans = NULL;
    const cJSON *jobs, *j;
    const char *sep = "?";
    int rc = 0;

    pc_buf_init(&path, 4096);
    rc |= pc_buf_append_str(&path, "/api/jobs");
    if (x->status) {
        rc |= pc_buf_printf(&path, "%sstatus=", sep);
        rc |= url_escape(&path, x->status);
        sep = "&";
    }
    if (x->session) {
        rc |= pc_buf_printf(&path, "%ssession=", sep);
        rc |= url_escape(&path, x->session);
        sep = "&";
    }
    if (x->cursor) {
        rc |= pc_buf_printf(&path, "%scursor=", sep);
        rc |= url_escape(&path, x->cursor);
        sep = "&";
    }
    if (x->limit)
        rc |= pc_buf_printf(&path, "%slimit=%lld", sep, x->limit);
    if (rc != 0) {
        pc_buf_free(&path);
        return pc_cli_usage_error(&x->com, "ls: options too long");
    }
    rc = gw_get(x, path.data, &ans);
    pc_buf_free(&path);
    if (rc != 0)
        return rc;
    if (x->json)
        return PC_EXIT_OK;
    jobs = cJSON_GetObjectItemCaseSensitive(ans, "jobs");
    printf("%-16s  %-8s  %-19s  %-6s  %-10s  %s\n", "ID", "STATUS", "CREATED", "EXIT", "TEMPLATE",
           "CHANNEL");
    cJSON_ArrayForEach(j, jobs)
    {
        char created[32], ex[32];
        const char *t = jstr(j, "template");

        fmt_time(j, "created_ms", created, sizeof(created));
        fmt_exit(j, ex, sizeof(ex));
        printf("%-16s  %-8s  %-19s  %-6s  %-10s  %s\n", jstr(j, "id") ? jstr(j, "id") : "-",
               jstr(j, "status") ? jstr(j, "status") : "-", created, ex, t ? t : "(argv)",
               jstr(j, "channel") ? jstr(j, "channel") : "-");
    }
    if (jstr(ans, "next_cursor"))
        fprintf(stderr, "pipecast: more jobs: --cursor %s\n", jstr(ans, "next_cursor"));
    cJSON_Delete(ans);
    return fflush(stdout) == 0 ? PC_EXIT_OK : PC_EXIT_FAIL;
}

static int cmd_show(struct jobs_ctx *x, const char *id)
{
    static const char *const fields[] = {
        "id",          "status",  "channel", "session",    "template",   "runner",
        "pid",         "attempt", "argv",    "created_ms", "started_ms", "ended_ms",
        "duration_ms", "code",    "signal",  "reason",     "error",      "stdin"};
    char path[64];
    cJSON *ans = NULL;
    int rc;

    snprintf(path, sizeof(path), "/api/jobs/%s", id);
    rc = gw_get(x, path, &ans);
    if (rc != 0)
        return rc;
    if (x->json)
        return PC_EXIT_OK;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ans, fields[i]);
        char buf[32];

        if (!v || cJSON_IsNull(v))
            continue;
        if (cJSON_IsString(v)) {
            printf("%-12s %s\n", fields[i], v->valuestring);
        } else if (cJSON_IsNumber(v) && strstr(fields[i], "_ms") &&
                   strcmp(fields[i], "duration_ms")) {
            fmt_time(ans, fields[i], buf, sizeof(buf));
            printf("%-12s %s (%.0f)\n", fields[i], buf, v->valuedouble);
        } else if (cJSON_IsNumber(v)) {
            printf("%-12s %.0f\n", fields[i], v->valuedouble);
        } else {
            char *t = cJSON_PrintUnformatted(v);

            printf("%-12s %s\n", fields[i], t ? t : "?");
            cJSON_free(t);
        }
    }
    cJSON_Delete(ans);
    return fflush(stdout) == 0 ? PC_EXIT_OK : PC_EXIT_FAIL;
}

/* ------------------------------------------------------------------------ */
/* kill, stdin                                                               */
/* ------------------------------------------------------------------------ */

static int cmd_kill(struct jobs_ctx *x, const char *id)
{
    struct cli_http_resp r;
    char path[96];
    int rc;

    snprintf(path, sizeof(path), "/api/jobs/%s%s%s", id, x->signal ? "?signal=" : "",
             x->signal ? x->signal : "");
    rc = gw_call(x, "DELETE", path, NULL, 202, &r, NULL);
    if (rc != 0)
        return rc;
    if (x->json)
        print_raw(&r);
    else
        printf("%s killing\n", id);
    cli_http_resp_free(&r);
    return fflush(stdout) == 0 ? PC_EXIT_OK : PC_EXIT_FAIL;
}

/*
 * POST one piece of stdin, all or nothing (docs/jobs.md "Stdin flow control").
 * 429 (the job's stdin buffer is full: it reads slower than we send) is
 * waited out and the same bytes sent again: polled with a short backoff,
 * capped by the answer's Retry-After, so the upload resumes as soon as the
 * job has read. @return 0 sent, STDIN_SMALLER the gateway wants smaller pieces
 * (413, and @p len can shrink), or PC_EXIT_FAIL after printing why.
 */
static int stdin_post(struct jobs_ctx *x, const char *id, const char *data, size_t len, int eof,
                      unsigned long long *written)
{
    struct cli_http_resp r;
    char path[96];
    int rc, wait_ms = JOBS_STDIN_WAIT_MIN_MS, waited_ms = 0;

    snprintf(path, sizeof(path), "/api/jobs/%s/stdin%s", id, eof ? "?eof=1" : "");
    for (;;) {
        rc = cli_http_request(&x->url, "POST", path, "application/octet-stream", data, len,
                              JOBS_HTTP_TIMEOUT_MS, &r, x->err, sizeof(x->err));
        if (rc != 0)
            return gw_fail(x, x->err);
        if (r.status != 429)
            break;
        long ra = strtol(r.retry_after, NULL, 10);

        cli_http_resp_free(&r);
        if (ra > 0 && ra * 1000 < wait_ms)
            wait_ms = (int)ra * 1000;
        if (waited_ms / 10000 != (waited_ms + wait_ms) / 10000 || waited_ms == 0)
            pc_debug("jobs", "job %s: stdin buffer full; sending again in %d ms (%d s waited)", id,
                     wait_ms, waited_ms / 1000);
        sleep_ms(wait_ms);
        waited_ms += wait_ms;
        wait_ms = wait_ms * 2 < JOBS_STDIN_WAIT_MAX_MS ? wait_ms * 2 : JOBS_STDIN_WAIT_MAX_MS;
    }
    if (r.status == 413 && len > JOBS_STDIN_CHUNK_MIN) {
        cli_http_resp_free(&r);
        return STDIN_SMALLER;
    }
    if (r.status != 202) {
        gw_status_fail(x, &r);
        cli_http_resp_free(&r);
        if (*written > 0)
            pc_cli_err("job %s: %llu bytes of stdin were written before", id, *written);
        return PC_EXIT_FAIL;
    }
    *written += len;
    cli_http_resp_free(&r);
    return 0;
}

/*
 * `jobs stdin ID [--eof] < FILE`: one POST per read, so typed lines reach the
 * job as they are entered, and any size streams through the job's bounded
 * buffer in order (stdin_post waits while it is full).
 */
static int cmd_stdin(struct jobs_ctx *x, const char *id)
{
    char *buf = malloc(JOBS_STDIN_CHUNK);
    unsigned long long written = 0;
    size_t piece = JOBS_STDIN_CHUNK; /* halved on 413 (a small --max-body or stdin_max) */
    int rc = 0;

    if (!buf) {
        pc_cli_err("out of memory");
        return PC_EXIT_FAIL;
    }
    for (;;) {
        ssize_t n = read(0, buf, JOBS_STDIN_CHUNK);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            pc_cli_err("stdin: %s", strerror(errno));
            rc = PC_EXIT_FAIL;
            break;
        }
        if (n == 0) {
            if (x->eof)
                rc = stdin_post(x, id, "", 0, 1, &written);
            break;
        }
        for (size_t off = 0; rc == 0 && off < (size_t)n;) {
            size_t k = (size_t)n - off < piece ? (size_t)n - off : piece;

            rc = stdin_post(x, id, buf + off, k, 0, &written);
            if (rc == STDIN_SMALLER) {
                piece = k / 2;
                rc = 0;
            } else if (rc == 0) {
                off += k;
            }
        }
        if (rc != 0)
            break;
    }
    free(buf);
    if (rc == 0 && x->json)
        printf("{\"written\":%llu}\n", written);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* runners, templates                                                        */
/* ------------------------------------------------------------------------ */

static void fmt_num(const cJSON *o, const char *k, char *dst, size_t len)
{
    long long v;

    if (jnum(o, k, &v) == 0)
        snprintf(dst, len, "%lld", v);
    else
        snprintf(dst, len, "-");
}

static int cmd_runners(struct jobs_ctx *x)
{
    cJSON *ans = NULL;
    const cJSON *it;
    int rc;

    rc = gw_get(x, "/api/runners", &ans);
    if (rc != 0)
        return rc;
    if (x->json)
        return PC_EXIT_OK;
    printf("%-24s  %-16s  %-7s  %5s  %7s  %4s  %-8s  %s\n", "ID", "HOST", "PID", "SLOTS", "RUNNING",
           "FREE", "VERSION", "ANY-COMMAND");
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(ans, "runners"))
    {
        char pid[24], slots[24], running[24], fr[24];

        fmt_num(it, "pid", pid, sizeof(pid));
        fmt_num(it, "slots", slots, sizeof(slots));
        fmt_num(it, "running", running, sizeof(running));
        fmt_num(it, "free", fr, sizeof(fr));
        printf("%-24s  %-16s  %-7s  %5s  %7s  %4s  %-8s  %s\n",
               jstr(it, "id") ? jstr(it, "id") : "-", jstr(it, "host") ? jstr(it, "host") : "-",
               pid, slots, running, fr, jstr(it, "version") ? jstr(it, "version") : "-",
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "allow_any_command")) ? "yes"
                                                                                       : "no");
    }
    cJSON_Delete(ans);
    return fflush(stdout) == 0 ? PC_EXIT_OK : PC_EXIT_FAIL;
}

static int cmd_templates(struct jobs_ctx *x)
{
    cJSON *ans = NULL;
    const cJSON *t;
    int rc;

    rc = gw_get(x, "/api/templates", &ans);
    if (rc != 0)
        return rc;
    if (x->json)
        return PC_EXIT_OK;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(ans, "templates"))
    {
        const char *desc = jstr(t, "description");
        const cJSON *p, *rn;
        int first = 1;

        printf("%s%s%s\n", t->string, desc && *desc ? "  " : "", desc ? desc : "");
        printf("    runners:");
        cJSON_ArrayForEach(rn, cJSON_GetObjectItemCaseSensitive(t, "runners"))
        {
            printf("%s%s", first ? " " : ", ", cJSON_IsString(rn) ? rn->valuestring : "?");
            first = 0;
        }
        printf("\n");
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(t, "params"))
        {
            const cJSON *def = cJSON_GetObjectItemCaseSensitive(p, "default");
            char *d = def ? cJSON_PrintUnformatted(def) : NULL;

            printf("    %s=<%s>%s%s%s%s%s\n", p->string,
                   jstr(p, "type") ? jstr(p, "type") : "string",
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "required")) ? " required" : "",
                   d ? " default " : "", d ? d : "", jstr(p, "pattern") ? " pattern " : "",
                   jstr(p, "pattern") ? jstr(p, "pattern") : "");
            cJSON_free(d);
        }
    }
    cJSON_Delete(ans);
    return fflush(stdout) == 0 ? PC_EXIT_OK : PC_EXIT_FAIL;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* Apply option @p opt. @return 0, or PC_EXIT_USAGE after printing why. */
static int jobs_option(struct jobs_ctx *x, int opt, const char *arg, const char **gateway)
{
    static const char *const statuses[] = {"queued",  "running", "exited", "killed",
                                           "timeout", "failed",  "lost"};
    int rc;

    if (x->sub && opt >= OPT_CHANNEL && !sub_takes(x->sub, opt))
        return pc_cli_usage_error(&x->com, "%s: option '--%s' does not apply", x->sub->name,
                                  opt_name(opt));
    switch (opt) {
    case OPT_GATEWAY:
        *gateway = arg;
        return 0;
    case OPT_JSON:
        x->json = 1;
        return 0;
    case OPT_CHANNEL:
        if (!pc_channel_valid(arg, strlen(arg))) {
            char msg[512];

            pc_channel_explain(arg, strlen(arg), msg, sizeof(msg));
            pc_cli_err("%s", msg);
            return PC_EXIT_USAGE;
        }
        x->channel = arg;
        return 0;
    case OPT_SESSION:
        if (!session_valid(arg))
            return pc_cli_usage_error(
                &x->com, "--session \"%s\": invalid (allowed: 1-64 bytes of A-Z a-z 0-9 . _ : @ -)",
                arg);
        x->session = arg;
        return 0;
    case OPT_TIMEOUT:
        return pc_cli_parse_ll("--timeout", arg, 1, JOBS_TIMEOUT_MAX, &x->timeout_s);
    case OPT_SESSION_IDLE:
        return pc_cli_parse_ll("--session-idle", arg, 1, JOBS_TIMEOUT_MAX, &x->session_idle_s);
    case OPT_ENV: {
        const char **nv = realloc(x->env, (size_t)(x->nenv + 1) * sizeof(*nv));

        if (!nv) {
            pc_cli_err("out of memory");
            return PC_EXIT_FAIL;
        }
        x->env = nv;
        x->env[x->nenv++] = arg;
        return 0;
    }
    case OPT_CWD:
        if (!*arg)
            return pc_cli_usage_error(&x->com, "--cwd: empty path");
        x->cwd = arg;
        return 0;
    case OPT_STDIN_FILE:
        x->stdin_file = arg;
        return 0;
    case OPT_PTY:
        x->pty = 1;
        return 0;
    case OPT_FOLLOW:
        x->follow = 1;
        return 0;
    case OPT_ARGV:
        x->argv_mode = 1;
        return 0;
    case OPT_STATUS:
        for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
            if (strcmp(arg, statuses[i]) == 0) {
                x->status = arg;
                return 0;
            }
        return pc_cli_usage_error(
            &x->com, "--status \"%s\": unknown (queued|running|exited|killed|timeout|failed|lost)",
            arg);
    case OPT_LIMIT:
        return pc_cli_parse_ll("--limit", arg, 1, 1000, &x->limit);
    case OPT_CURSOR:
        x->cursor = arg;
        return 0;
    case OPT_SIGNAL:
        if (strcmp(arg, "TERM") && strcmp(arg, "KILL") && strcmp(arg, "INT") && strcmp(arg, "HUP"))
            return pc_cli_usage_error(&x->com, "--signal \"%s\": expected TERM, KILL, INT or HUP",
                                      arg);
        x->signal = arg;
        return 0;
    case OPT_EOF:
        x->eof = 1;
        return 0;
    default:
        rc = pc_cli_common_option(&x->com, opt, arg);
        return rc == 1 ? 0 : rc == 0 ? PC_EXIT_USAGE : rc;
    }
}

int pc_cli_jobs(int argc, char **argv)
{
    struct jobs_ctx x;
    const char *gateway = NULL, *subname;
    int opt, rc, npos;
    char **pos;

    memset(&x, 0, sizeof(x));
    if ((rc = pc_cli_common_init(&x.com, "jobs")) != 0)
        return rc;

    /* options before the subcommand: the ones every subcommand takes */
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:", jobs_longopts, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return pc_cli_getopt_error(&x.com, opt, argc, argv);
        if (opt >= OPT_CHANNEL)
            return pc_cli_usage_error(&x.com, "option '--%s' goes after the command",
                                      opt_name(opt));
        if ((rc = jobs_option(&x, opt, optarg, &gateway)) != 0)
            return rc;
    }
    if (x.com.help) {
        jobs_usage(stdout);
        return PC_EXIT_OK;
    }
    if (x.com.version)
        return pc_cli_print_version();
    if (optind >= argc) {
        jobs_usage(stderr);
        return PC_EXIT_USAGE;
    }
    subname = argv[optind];
    for (size_t i = 0; i < sizeof(jobs_subs) / sizeof(jobs_subs[0]); i++)
        if (strcmp(subname, jobs_subs[i].name) == 0)
            x.sub = &jobs_subs[i];
    if (!x.sub)
        return pc_cli_usage_error(&x.com, "jobs: unknown command \"%s\"", subname);

    /* the subcommand's own argv: argv[0] is its name */
    argc -= optind;
    argv += optind;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", jobs_longopts, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            rc = pc_cli_getopt_error(&x.com, opt, argc, argv);
        else
            rc = jobs_option(&x, opt, optarg, &gateway);
        if (rc != 0) {
            free(x.env);
            return rc;
        }
    }
    pos = argv + optind;
    npos = argc - optind;
    if (x.com.help) {
        free(x.env);
        jobs_usage(stdout);
        return PC_EXIT_OK;
    }
    pc_log_init("pipecast", (enum pc_log_level)x.com.log_level);

    if (!gateway)
        gateway = getenv("PIPECAST_GATEWAY");
    if (!gateway || !*gateway)
        gateway = JOBS_GATEWAY_DEFAULT;
    if (cli_http_url_parse(gateway, &x.url, x.err, sizeof(x.err)) != 0) {
        free(x.env);
        pc_cli_err("%s", x.err);
        return PC_EXIT_USAGE;
    }
    /* A gateway started with --tokens wants one (docs/interfaces.md): from the environment
     * only, so that it never shows in `ps`. */
    const char *token = getenv("PIPECAST_TOKEN");
    if (token && *token) {
        size_t tl = strlen(token);
        int ok = tl < sizeof(x.url.token);
        for (size_t i = 0; ok && i < tl; i++)
            ok = token[i] > 0x20 && token[i] < 0x7f;
        if (!ok) {
            free(x.env);
            pc_cli_err("PIPECAST_TOKEN: invalid token (1-256 printable ASCII characters)");
            return PC_EXIT_USAGE;
        }
        memcpy(x.url.token, token, tl + 1);
    }

    if (strcmp(x.sub->name, "submit") == 0) {
        if (x.follow && x.json) {
            rc = pc_cli_usage_error(&x.com, "submit: --follow and --json do not mix");
        } else {
            rc = cmd_submit(&x, npos, pos);
        }
        free(x.env);
        return rc;
    }
    free(x.env);
    if (x.sub->args[0] == '\0') {
        if (npos > 0)
            return pc_cli_usage_error(&x.com, "%s: unexpected argument \"%s\"", x.sub->name,
                                      pos[0]);
        if (strcmp(x.sub->name, "ls") == 0)
            return cmd_ls(&x);
        if (strcmp(x.sub->name, "runners") == 0)
            return cmd_runners(&x);
        return cmd_templates(&x);
    }
    if (npos != 1)
        return pc_cli_usage_error(&x.com, "%s: expected one job id", x.sub->name);
    if (!id_valid(pos[0]))
        return pc_cli_usage_error(&x.com,
                                  "job id \"%s\": invalid (expected 16 lowercase hex "
                                  "characters)",
                                  pos[0]);
    if (strcmp(x.sub->name, "show") == 0)
        return cmd_show(&x, pos[0]);
    if (strcmp(x.sub->name, "kill") == 0)
        return cmd_kill(&x, pos[0]);
    return cmd_stdin(&x, pos[0]);
}
