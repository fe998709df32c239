/* tail.c -- `pipecast tail`: print a channel's entries, and follow it with -f.
 *
 * History is read in pages (XRANGE ... COUNT 1000), then new entries with
 * XREAD BLOCK 1000 from the last printed id: the short block lets SIGINT end
 * the program within a second. In follow mode a lost connection is retried
 * with backoff and the stream resumes after the last printed id, so nothing
 * is printed twice or skipped (except entries trimmed away meanwhile).
 *
 * A closed stdout (EPIPE, `| head`) is a normal end: exit 0, quietly.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/id.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"

#include "cli.h"

#define TAIL_PAGE 1000
#define TAIL_BLOCK_MS "1000"
#define TAIL_CONNECT_MS 2000
#define TAIL_CMD_TIMEOUT_MS 10000
#define TAIL_MAX_EVENTS 64
#define TAIL_BACKOFF_MIN_MS 200
#define TAIL_BACKOFF_MAX_MS 5000

/* Step results. */
enum {
    TAIL_OK = 0,
    TAIL_DONE = 1,   /* this phase has nothing more to do */
    TAIL_CONN = -1,  /* connection lost (rc freed); retry in follow mode */
    TAIL_FATAL = -2, /* message printed: exit 1 */
    TAIL_STOP = -3,  /* stdout closed or signal: exit 0 */
};

enum tail_from {
    TAIL_FROM_START,
    TAIL_FROM_END,
    TAIL_FROM_ID,
};

enum tail_phase {
    TAIL_PH_START, /* find where to begin */
    TAIL_PH_HISTORY,
    TAIL_PH_FOLLOW,
};

struct tail_ctx {
    struct pc_cli_common *com;
    int follow;
    int from; /* enum tail_from */
    struct pc_id from_id;
    long long n;     /* -n, or -1 */
    int show_events; /* --events */
    const char *events[TAIL_MAX_EVENTS];
    int nevents;

    redisContext *rc;
    int phase;          /* enum tail_phase */
    struct pc_id start; /* history: next XRANGE starts here (inclusive) */
    int start_valid;    /* 0: start is "-" */
    struct pc_id last;  /* the last entry printed or skipped (XREAD after it) */
    char why[600];

    /* --events: an open partial line that the next entry of this event continues */
    int open_partial;
    char open_event[PC_EVENT_MAX + 2];
};

static volatile sig_atomic_t tail_stop;

static void tail_on_signal(int sig)
{
    (void)sig;
    tail_stop = 1;
}

/* The id right before @p id (core has only pc_id_next). @return PC_EID for 0-0. */
static int tail_id_prev(const struct pc_id *id, struct pc_id *out)
{
    if (id->seq > 0) {
        out->ms = id->ms;
        out->seq = id->seq - 1;
        return 0;
    }
    if (id->ms == 0)
        return PC_EID;
    out->ms = id->ms - 1;
    out->seq = UINT64_MAX;
    return 0;
}

/* Sleep @p ms, returning early on a signal. */
static void tail_sleep_ms(int ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    (void)nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------ */
/* Redis                                                                    */
/* ------------------------------------------------------------------------ */

static int tail_connect(struct tail_ctx *t)
{
    t->rc = pc_redis_connect(&t->com->url, TAIL_CONNECT_MS, TAIL_CMD_TIMEOUT_MS, t->why,
                             sizeof(t->why));
    return t->rc ? 0 : -1;
}

/*
 * Run one command. @return the reply (caller frees), or NULL with *res set:
 * TAIL_CONN (connection gone, t->rc freed) or TAIL_FATAL (message printed).
 */
static redisReply *tail_command(struct tail_ctx *t, int argc, const char **argv, int *res)
{
    redisReply *r = redisCommandArgv(t->rc, argc, argv, NULL);

    if (!r) {
        snprintf(t->why, sizeof(t->why), "redis %s: %s", t->com->where,
                 t->rc->errstr[0] ? t->rc->errstr : "connection lost");
        redisFree(t->rc);
        t->rc = NULL;
        *res = TAIL_CONN;
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "LOADING", 7) == 0 || strncmp(r->str, "BUSY", 4) == 0) {
            snprintf(t->why, sizeof(t->why), "redis %s: %s", t->com->where, r->str);
            freeReplyObject(r);
            redisFree(t->rc);
            t->rc = NULL;
            *res = TAIL_CONN;
            return NULL;
        }
        pc_cli_err("redis %s: %s %s: %s", t->com->where, argv[0], t->com->key, r->str);
        freeReplyObject(r);
        *res = TAIL_FATAL;
        return NULL;
    }
    return r;
}

static int tail_bad_reply(struct tail_ctx *t, const char *cmd)
{
    pc_cli_err("redis %s: %s %s: unexpected reply", t->com->where, cmd, t->com->key);
    return TAIL_FATAL;
}

/* Parse the id of one XRANGE/XREAD entry ([id, [field, value, ...]]). */
static int tail_entry_id(const redisReply *e, struct pc_id *id)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return PC_EPROTO;
    return pc_id_parse(e->element[0]->str, e->element[0]->len, 0, id);
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

static int tail_out_failed(void)
{
    return ferror(stdout) != 0;
}

struct tail_fields {
    const char *data;
    size_t data_len;
    const char *event; /* NULL when absent */
    size_t event_len;
    int partial;
};

/*
 * Pick the fields of one entry. @return 1 when the entry is to be printed
 * (it has data and passes the --event filter), 0 when it is skipped.
 */
static int tail_entry_fields(const struct tail_ctx *t, const redisReply *e, struct tail_fields *f)
{
    const redisReply *fields;
    size_t i;
    int j;

    memset(f, 0, sizeof(*f));
    if (e->elements < 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
        return 0; /* deleted entry: nothing to print */
    fields = e->element[1];
    for (i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (!f->data && k->len == 4 && memcmp(k->str, "data", 4) == 0) {
            f->data = v->str;
            f->data_len = v->len;
        } else if (!f->event && k->len == 5 && memcmp(k->str, "event", 5) == 0) {
            f->event = v->str;
            f->event_len = v->len;
        } else if (k->len == 7 && memcmp(k->str, "partial", 7) == 0) {
            f->partial = v->len == 1 && v->str[0] == '1';
        }
    }
    if (!f->data)
        return 0; /* entries without data are skipped, by contract */
    if (t->nevents == 0)
        return 1;
    for (j = 0; j < t->nevents && f->event; j++)
        if (strlen(t->events[j]) == f->event_len &&
            memcmp(t->events[j], f->event, f->event_len) == 0)
            return 1;
    return 0;
}

/* Print one entry (or skip it). @return TAIL_OK, TAIL_STOP (stdout closed) or TAIL_FATAL. */
static int tail_print_entry(struct tail_ctx *t, const redisReply *e)
{
    struct tail_fields f;
    struct pc_id id;

    if (tail_entry_id(e, &id) != 0)
        return tail_bad_reply(t, "XRANGE");
    t->last = id;
    if (!tail_entry_fields(t, e, &f))
        return TAIL_OK;
    if (t->show_events) {
        char idbuf[PC_ID_STRLEN];
        const char *ev = f.event ? f.event : "-";
        size_t ev_len = f.event ? f.event_len : 1;
        int continues = t->open_partial && strlen(t->open_event) == ev_len &&
                        memcmp(t->open_event, ev, ev_len) == 0;

        if (t->open_partial && !continues)
            fputc('\n', stdout); /* another event interrupts an unfinished line */
        if (!continues) {
            pc_id_format(&id, idbuf);
            fprintf(stdout, "%s %.*s ", idbuf, (int)ev_len, ev);
        }
        t->open_partial = f.partial;
        if (f.partial) {
            if (ev_len > PC_EVENT_MAX)
                ev_len = PC_EVENT_MAX;
            memcpy(t->open_event, ev, ev_len);
            t->open_event[ev_len] = '\0';
        }
    }
    if (f.data_len)
        fwrite(f.data, 1, f.data_len, stdout);
    if (!f.partial)
        fputc('\n', stdout);
    return tail_out_failed() ? TAIL_STOP : TAIL_OK;
}

/* Print the entries of an XRANGE-shaped array. */
static int tail_print_entries(struct tail_ctx *t, const redisReply *arr)
{
    size_t i;
    int rc;

    for (i = 0; i < arr->elements; i++) {
        rc = tail_print_entry(t, arr->element[i]);
        if (rc != TAIL_OK)
            return rc;
        if (tail_stop)
            return TAIL_STOP;
    }
    if (fflush(stdout) != 0 || tail_out_failed())
        return TAIL_STOP;
    return TAIL_OK;
}

/* ------------------------------------------------------------------------ */
/* Phases                                                                   */
/* ------------------------------------------------------------------------ */

/* The newest entry's id into t->last (0-0 when the stream is empty or missing). */
static int tail_find_end(struct tail_ctx *t)
{
    const char *argv[] = {"XREVRANGE", t->com->key, "+", "-", "COUNT", "1"};
    redisReply *r;
    int res = TAIL_OK;

    r = tail_command(t, 6, argv, &res);
    if (!r)
        return res;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return tail_bad_reply(t, "XREVRANGE");
    }
    memset(&t->last, 0, sizeof(t->last));
    if (r->elements > 0 && tail_entry_id(r->element[0], &t->last) != 0) {
        freeReplyObject(r);
        return tail_bad_reply(t, "XREVRANGE");
    }
    freeReplyObject(r);
    return TAIL_OK;
}

/*
 * -n N: walk back over the last N printable entries (with data, passing the
 * --event filter) in pages, keeping only the oldest id counted; the history
 * phase then prints forward from it. Memory stays one page.
 */
static int tail_find_last_n(struct tail_ctx *t)
{
    char endbuf[PC_ID_STRLEN], countbuf[16];
    const char *argv[] = {"XREVRANGE", t->com->key, "+", "-", "COUNT", countbuf};
    long long left = t->n;
    struct pc_id oldest = {0, 0}, id = {0, 0};
    int have = 0, res = TAIL_OK;

    if (t->n == 0)
        return tail_find_end(t);
    snprintf(countbuf, sizeof(countbuf), "%d", TAIL_PAGE);
    while (left > 0) {
        struct tail_fields f;
        redisReply *r;
        size_t i, got;

        r = tail_command(t, 6, argv, &res);
        if (!r)
            return res;
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return tail_bad_reply(t, "XREVRANGE");
        }
        got = r->elements;
        for (i = 0; i < got && left > 0; i++) {
            if (tail_entry_id(r->element[i], &id) != 0) {
                freeReplyObject(r);
                return tail_bad_reply(t, "XREVRANGE");
            }
            if (tail_entry_fields(t, r->element[i], &f)) {
                oldest = id;
                have = 1;
                left--;
            }
        }
        freeReplyObject(r);
        if (got < TAIL_PAGE || left == 0)
            break;
        {
            struct pc_id prev;
            if (tail_id_prev(&id, &prev) != 0)
                break;
            pc_id_format(&prev, endbuf);
            argv[2] = endbuf;
        }
    }
    memset(&t->last, 0, sizeof(t->last));
    if (have) {
        t->start = oldest;
        t->start_valid = 1;
        (void)tail_id_prev(&oldest, &t->last);
        return TAIL_OK;
    }
    /* nothing printable: go on from the current end */
    res = tail_find_end(t);
    if (res == TAIL_OK) {
        if (pc_id_next(&t->last, &t->start) != 0)
            return TAIL_DONE;
        t->start_valid = 1;
    }
    return res;
}

static int tail_phase_start(struct tail_ctx *t)
{
    int rc;

    memset(&t->last, 0, sizeof(t->last));
    t->start_valid = 0;
    if (t->n >= 0) {
        rc = tail_find_last_n(t);
        if (rc != TAIL_OK)
            return rc;
        t->phase = (t->n == 0) ? TAIL_PH_FOLLOW : TAIL_PH_HISTORY;
        return TAIL_OK;
    }
    switch (t->from) {
    case TAIL_FROM_END:
        rc = tail_find_end(t);
        if (rc != TAIL_OK)
            return rc;
        t->phase = TAIL_PH_FOLLOW;
        return TAIL_OK;
    case TAIL_FROM_ID:
        t->last = t->from_id;
        if (pc_id_next(&t->from_id, &t->start) != 0)
            return TAIL_DONE; /* nothing can come after the maximum id */
        t->start_valid = 1;
        break;
    default:
        break;
    }
    t->phase = TAIL_PH_HISTORY;
    return TAIL_OK;
}

/* One page of history. @return TAIL_OK (more may follow), TAIL_DONE or an error. */
static int tail_history_page(struct tail_ctx *t)
{
    char startbuf[PC_ID_STRLEN], countbuf[16];
    const char *argv[] = {"XRANGE", t->com->key, "-", "+", "COUNT", countbuf};
    redisReply *r;
    size_t got;
    int res = TAIL_OK;

    snprintf(countbuf, sizeof(countbuf), "%d", TAIL_PAGE);
    if (t->start_valid) {
        pc_id_format(&t->start, startbuf);
        argv[2] = startbuf;
    }
    r = tail_command(t, 6, argv, &res);
    if (!r)
        return res;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return tail_bad_reply(t, "XRANGE");
    }
    got = r->elements;
    res = tail_print_entries(t, r);
    freeReplyObject(r);
    if (res != TAIL_OK)
        return res;
    if (got > 0) {
        if (pc_id_next(&t->last, &t->start) != 0)
            return TAIL_DONE;
        t->start_valid = 1;
    }
    return got < TAIL_PAGE ? TAIL_DONE : TAIL_OK;
}

/* One XREAD BLOCK round. */
static int tail_follow_round(struct tail_ctx *t)
{
    char lastbuf[PC_ID_STRLEN], countbuf[16];
    const char *argv[] = {"XREAD",       "COUNT",   countbuf,    "BLOCK",
                          TAIL_BLOCK_MS, "STREAMS", t->com->key, lastbuf};
    redisReply *r;
    size_t i;
    int res = TAIL_OK;

    snprintf(countbuf, sizeof(countbuf), "%d", TAIL_PAGE);
    pc_id_format(&t->last, lastbuf);
    r = tail_command(t, 8, argv, &res);
    if (!r)
        return res;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return TAIL_OK;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return tail_bad_reply(t, "XREAD");
    }
    for (i = 0; i < r->elements && res == TAIL_OK; i++) {
        const redisReply *s = r->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
            s->element[1]->type != REDIS_REPLY_ARRAY) {
            res = tail_bad_reply(t, "XREAD");
            break;
        }
        res = tail_print_entries(t, s->element[1]);
    }
    freeReplyObject(r);
    return res;
}

static int tail_run(struct tail_ctx *t)
{
    struct pc_backoff bo;
    int warned = 0;

    pc_backoff_init(&bo, TAIL_BACKOFF_MIN_MS, TAIL_BACKOFF_MAX_MS);
    if (tail_connect(t) != 0) {
        pc_cli_err("%s", t->why);
        return PC_EXIT_FAIL;
    }
    t->phase = TAIL_PH_START;
    for (;;) {
        int rc;

        if (tail_stop)
            return PC_EXIT_OK;
        if (!t->rc) {
            tail_sleep_ms(pc_backoff_next(&bo));
            if (tail_stop)
                return PC_EXIT_OK;
            if (tail_connect(t) != 0) {
                pc_debug("redis", "%s", t->why);
                continue;
            }
            pc_info("redis", "redis %s: reconnected", t->com->where);
            warned = 0;
            pc_backoff_reset(&bo);
        }
        switch (t->phase) {
        case TAIL_PH_START:
            rc = tail_phase_start(t);
            break;
        case TAIL_PH_HISTORY:
            rc = tail_history_page(t);
            if (rc == TAIL_DONE) {
                if (!t->follow)
                    return PC_EXIT_OK;
                t->phase = TAIL_PH_FOLLOW;
                rc = TAIL_OK;
            }
            break;
        default:
            if (!t->follow)
                return PC_EXIT_OK;
            rc = tail_follow_round(t);
            break;
        }
        switch (rc) {
        case TAIL_OK:
            break;
        case TAIL_DONE:
            return PC_EXIT_OK;
        case TAIL_STOP:
            return PC_EXIT_OK;
        case TAIL_CONN:
            if (!t->follow) {
                pc_cli_err("%s", t->why);
                return PC_EXIT_FAIL;
            }
            if (!warned) {
                pc_warn("redis", "%s; reconnecting", t->why);
                warned = 1;
            }
            break;
        default:
            return PC_EXIT_FAIL;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

enum {
    OPT_FROM = PC_OPT_LOCAL,
    OPT_EVENTS,
    OPT_EVENT,
};

static void tail_usage(FILE *f)
{
    fputs("usage: pipecast tail [options] <channel>\n"
          "\n"
          "Prints a channel's entries, one per line (a partial entry without its newline).\n"
          "\n"
          "options:\n"
          "  -f, --follow         keep waiting for new entries\n"
          "  --from start|end|ID  where to begin (after ID; default start)\n"
          "  -n N                 only the last N entries (then follow with -f)\n"
          "  --events             prefix each line with \"<id> <event or -> \"\n"
          "  --event NAME         keep only entries with this event name "
          "(repeatable)\n" PC_CLI_COMMON_HELP,
          f);
}

static int tail_parse(struct pc_cli_common *com, struct tail_ctx *t, int argc, char **argv)
{
    static const struct option longopts[] = {
        PC_CLI_COMMON_LONGOPTS,
        {"follow", no_argument, NULL, 'f'},
        {"from", required_argument, NULL, OPT_FROM},
        {"events", no_argument, NULL, OPT_EVENTS},
        {"event", required_argument, NULL, OPT_EVENT},
        {"lines", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    int opt, rc, from_given = 0;

    t->n = -1;
    t->from = TAIL_FROM_START;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":fn:", longopts, NULL)) != -1) {
        rc = pc_cli_common_option(com, opt, optarg);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        switch (opt) {
        case 'f':
            t->follow = 1;
            break;
        case 'n':
            rc = pc_cli_parse_ll("-n", optarg, 0, LLONG_MAX, &t->n);
            if (rc != 0)
                return rc;
            break;
        case OPT_FROM:
            from_given = 1;
            if (strcmp(optarg, "start") == 0) {
                t->from = TAIL_FROM_START;
            } else if (strcmp(optarg, "end") == 0) {
                t->from = TAIL_FROM_END;
            } else if (pc_id_parse(optarg, strlen(optarg), 1, &t->from_id) == 0) {
                t->from = TAIL_FROM_ID;
            } else {
                pc_cli_err("--from \"%.80s\": not start, end or a stream id (<ms>-<seq>)", optarg);
                return PC_EXIT_USAGE;
            }
            break;
        case OPT_EVENTS:
            t->show_events = 1;
            break;
        case OPT_EVENT:
            if (!pc_event_valid(optarg, strlen(optarg))) {
                pc_cli_err("event \"%.80s\": invalid name (allowed: 1-%d bytes of A-Z a-z 0-9 _ -)",
                           optarg, PC_EVENT_MAX);
                return PC_EXIT_USAGE;
            }
            if (t->nevents == TAIL_MAX_EVENTS) {
                pc_cli_err("--event: at most %d names", TAIL_MAX_EVENTS);
                return PC_EXIT_USAGE;
            }
            t->events[t->nevents++] = optarg;
            break;
        default:
            return pc_cli_getopt_error(com, opt, argc, argv);
        }
    }
    if (com->help) {
        tail_usage(stdout);
        return -1;
    }
    if (com->version) {
        pc_cli_print_version();
        return -1;
    }
    if (from_given && t->n >= 0)
        return pc_cli_usage_error(com, "tail: -n and --from cannot be combined");
    return pc_cli_common_finish(com, argc, argv, optind);
}

int pc_cli_tail(int argc, char **argv)
{
    struct pc_cli_common com;
    struct tail_ctx t;
    struct sigaction sa, old_int, old_term;
    int rc;

    rc = pc_cli_common_init(&com, "tail");
    if (rc != 0)
        return rc;
    memset(&t, 0, sizeof(t));
    t.com = &com;
    rc = tail_parse(&com, &t, argc, argv);
    if (rc != 0)
        return rc < 0 ? PC_EXIT_OK : rc;

    /* No SA_RESTART: a signal interrupts a blocked write and ends the wait. */
    tail_stop = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tail_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGTERM, NULL, &old_term);
    if (old_int.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
    if (old_term.sa_handler != SIG_IGN)
        sigaction(SIGTERM, &sa, NULL);

    rc = tail_run(&t);
    if (t.show_events && t.open_partial && !tail_out_failed())
        fputc('\n', stdout);
    if (fflush(stdout) != 0)
        clearerr(stdout); /* closed stdout is a normal end */

    redisFree(t.rc);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}
