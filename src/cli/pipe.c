/* pipe.c -- `pipecast pipe`: stdin lines -> XADD, pipelined, and nothing lost silently.
 *
 * One poll() loop over stdin and the Redis socket. Every entry is encoded
 * once, as the RESP bytes of its XADD, into the log. The log is at the same
 * time the output buffer and the queue of everything not yet acknowledged:
 *
 *   log:  | acked (dead) | sent, waiting for a reply | not sent yet |
 *         0              head                        sent           len
 *
 * A record per command says where it ends; each reply pops the oldest record
 * and its bytes. When the connection is lost, `sent` goes back to `head`, so
 * after the reconnect every unacknowledged command is written again, in order
 * (at-least-once: a line whose reply was lost may appear twice).
 *
 * Memory is bounded: stdin bytes are fed to the splitter only while the queue
 * has room for every entry they can produce (at most --buffer-lines lines and
 * PIPE_SOFT_CAP bytes); the rest waits in the input buffer and stdin is not
 * read until it is consumed, which is the backpressure on the producer.
 */
#define _GNU_SOURCE /* ppoll */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/splitter.h"

#include "cli.h"

#define PIPE_READ_MAX (64 * 1024)        /* one read() from stdin */
#define PIPE_RBUF_SIZE (64 * 1024)       /* one recv() of replies */
#define PIPE_WINDOW 1024                 /* commands written and not yet answered */
#define PIPE_SOFT_CAP ((size_t)64 << 20) /* bytes of unacknowledged commands */
#define PIPE_SLACK 4096                  /* room for EXPIRE commands beyond the cap */
#define PIPE_CONNECT_MS 2000
#define PIPE_IO_TIMEOUT_MS 10000 /* no reply progress for this long: dead connection */
#define PIPE_EXPIRE_EVERY_MS 1000
#define PIPE_BACKOFF_MIN_MS 100
#define PIPE_BACKOFF_MAX_MS 2000
#define PIPE_MAX_LINE_MAX (16LL << 20)

enum pipe_rec_kind {
    PIPE_REC_LINE,
    PIPE_REC_EXPIRE,
};

struct pipe_rec {
    uint64_t end; /* absolute log offset just past this command */
    int kind;     /* enum pipe_rec_kind */
};

struct pipe_opts {
    const char *event;
    long long maxlen;
    long long ttl;
    long long max_line;
    long long flush_ms;
    long long buffer_lines;
    long long retry_timeout;
    int tee;
    int quiet;
};

struct pipe_ctx {
    struct pc_cli_common *com;
    struct pipe_opts o;

    /* RESP templates: an entry is head[partial] "$<len>\r\n" <data> tail[partial] */
    struct pc_buf head[2];
    struct pc_buf tail[2];
    struct pc_buf expire;
    size_t overhead; /* upper bound of the encoding bytes around one entry's data */

    /* the log of unacknowledged commands; absolute offset of log[i] is log_base + i */
    char *log;
    size_t log_head;
    size_t log_len;
    size_t log_cap;
    uint64_t log_base;
    uint64_t sent; /* absolute offset: written on the current connection up to here */

    /* one record per command in the log, oldest at rec_head */
    struct pipe_rec *recs;
    size_t rec_head;
    size_t rec_n;
    size_t rec_cap;
    size_t rec_sent; /* records fully written, waiting for their reply */
    size_t lines;    /* PIPE_REC_LINE records among them */

    long long failed; /* lines Redis refused with an error reply */
    char first_err[256];
    char last_err[256];
    int expire_warned;
    int fatal; /* PC_E* code that ends the run (out of memory) */

    /* input */
    struct pc_splitter *sp;
    char *in;
    size_t in_off;
    size_t in_len;
    int eof_seen;
    int input_done;
    int flush_armed;
    long long last_data_ms;
    int tee;

    int ttl_dirty;
    long long last_expire_ms;

    /* Redis connection */
    redisContext *rc;
    char *rbuf;
    long long last_io_ms;
    long long fail_since; /* -1: no failure pending */
    long long next_connect_ms;
    struct pc_backoff bo;
    char why[600]; /* "redis <where>: <why>" of the last failure */
    int outage_logged;
    int ever_connected;
    int refused; /* Redis refused AUTH or SELECT */
};

static volatile sig_atomic_t pipe_signals;

static void pipe_on_signal(int sig)
{
    (void)sig;
    if (pipe_signals < 100)
        pipe_signals++;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

static int pipe_bulk(struct pc_buf *b, const char *s, size_t len)
{
    if (pc_buf_printf(b, "$%zu\r\n", len) != 0 || pc_buf_append(b, s, len) != 0 ||
        pc_buf_append(b, "\r\n", 2) != 0)
        return PC_ENOMEM;
    return 0;
}

static int pipe_bulk_str(struct pc_buf *b, const char *s)
{
    return pipe_bulk(b, s, strlen(s));
}

/* Build the fixed parts of every command once. */
static int pipe_templates(struct pipe_ctx *p)
{
    char num[32];
    int k, rc = 0;

    for (k = 0; k < 2; k++) {
        int argc = 2 + (p->o.maxlen > 0 ? 3 : 0) + 1 + 2 + (p->o.event ? 2 : 0) + (k ? 2 : 0);

        pc_buf_init(&p->head[k], 4096);
        pc_buf_init(&p->tail[k], 4096);
        rc |= pc_buf_printf(&p->head[k], "*%d\r\n", argc);
        rc |= pipe_bulk_str(&p->head[k], "XADD");
        rc |= pipe_bulk_str(&p->head[k], p->com->key);
        if (p->o.maxlen > 0) {
            snprintf(num, sizeof(num), "%lld", p->o.maxlen);
            rc |= pipe_bulk_str(&p->head[k], "MAXLEN");
            rc |= pipe_bulk_str(&p->head[k], "~");
            rc |= pipe_bulk_str(&p->head[k], num);
        }
        rc |= pipe_bulk_str(&p->head[k], "*");
        rc |= pipe_bulk_str(&p->head[k], "data");
        rc |= pc_buf_append(&p->tail[k], "\r\n", 2);
        if (p->o.event) {
            rc |= pipe_bulk_str(&p->tail[k], "event");
            rc |= pipe_bulk_str(&p->tail[k], p->o.event);
        }
        if (k) {
            rc |= pipe_bulk_str(&p->tail[k], "partial");
            rc |= pipe_bulk_str(&p->tail[k], "1");
        }
    }
    pc_buf_init(&p->expire, 4096);
    if (p->o.ttl > 0) {
        snprintf(num, sizeof(num), "%lld", p->o.ttl);
        rc |= pc_buf_append_str(&p->expire, "*3\r\n");
        rc |= pipe_bulk_str(&p->expire, "EXPIRE");
        rc |= pipe_bulk_str(&p->expire, p->com->key);
        rc |= pipe_bulk_str(&p->expire, num);
    }
    /* "$" + up to 20 digits + CRLF */
    p->overhead = p->head[1].len + 24 + p->tail[1].len;
    return rc ? PC_ENOMEM : 0;
}

/* Make room for @p need more bytes at the end of the log. */
static int pipe_log_reserve(struct pipe_ctx *p, size_t need)
{
    size_t live = p->log_len - p->log_head;
    size_t ncap;
    char *nlog;

    if (p->log_cap - p->log_len >= need)
        return 0;
    /* Compact when the dead front is at least as big as the live part: amortised O(1). */
    if (p->log_head > 0 && p->log_head >= live && p->log_cap - live >= need) {
        memmove(p->log, p->log + p->log_head, live);
        p->log_base += p->log_head;
        p->log_len = live;
        p->log_head = 0;
        return 0;
    }
    ncap = p->log_cap ? p->log_cap : 64 * 1024;
    while (ncap - p->log_len < need) {
        if (ncap > SIZE_MAX / 2)
            return PC_ENOMEM;
        ncap *= 2;
    }
    nlog = realloc(p->log, ncap);
    if (!nlog)
        return PC_ENOMEM;
    p->log = nlog;
    p->log_cap = ncap;
    return 0;
}

static int pipe_rec_push(struct pipe_ctx *p, int kind)
{
    if (p->rec_head + p->rec_n == p->rec_cap) {
        if (p->rec_head > 0 && p->rec_head >= p->rec_n) {
            memmove(p->recs, p->recs + p->rec_head, p->rec_n * sizeof(*p->recs));
            p->rec_head = 0;
        } else {
            size_t ncap = p->rec_cap ? p->rec_cap * 2 : 1024;
            struct pipe_rec *n = realloc(p->recs, ncap * sizeof(*n));
            if (!n)
                return PC_ENOMEM;
            p->recs = n;
            p->rec_cap = ncap;
        }
    }
    if (p->rec_n == 0)
        p->last_io_ms = pc_now_ms(); /* the reply clock starts with the first command */
    p->recs[p->rec_head + p->rec_n].end = p->log_base + p->log_len;
    p->recs[p->rec_head + p->rec_n].kind = kind;
    p->rec_n++;
    if (kind == PIPE_REC_LINE)
        p->lines++;
    return 0;
}

/* "$<len>\r\n" into @p out; @return its length. */
static size_t pipe_fmt_len(char *out, size_t len)
{
    char tmp[24];
    size_t n = 0, i = 0;

    do {
        tmp[n++] = (char)('0' + len % 10);
        len /= 10;
    } while (len);
    out[i++] = '$';
    while (n)
        out[i++] = tmp[--n];
    out[i++] = '\r';
    out[i++] = '\n';
    return i;
}

/* Splitter callback: one entry becomes one XADD in the log. */
static int pipe_on_entry(void *privdata, const char *data, size_t len, int partial)
{
    struct pipe_ctx *p = privdata;
    const struct pc_buf *h, *t;
    char num[32];
    size_t nn, need;
    char *w;
    int rc;

    partial = partial ? 1 : 0;
    h = &p->head[partial];
    t = &p->tail[partial];
    nn = pipe_fmt_len(num, len);
    need = h->len + nn + len + t->len;
    rc = pipe_log_reserve(p, need);
    if (rc == 0) {
        w = p->log + p->log_len;
        memcpy(w, h->data, h->len);
        w += h->len;
        memcpy(w, num, nn);
        w += nn;
        if (len)
            memcpy(w, data, len);
        w += len;
        memcpy(w, t->data, t->len);
        p->log_len += need;
        rc = pipe_rec_push(p, PIPE_REC_LINE);
        if (rc != 0)
            p->log_len -= need;
    }
    if (rc != 0) {
        p->fatal = rc;
        return rc;
    }
    p->ttl_dirty = 1;
    return 0;
}

/* Queue an EXPIRE after the writes (at most once a second, and once at the end). */
static void pipe_maybe_expire(struct pipe_ctx *p, long long now, int force)
{
    if (p->o.ttl <= 0 || !p->ttl_dirty || p->fatal)
        return;
    if (!force && now - p->last_expire_ms < PIPE_EXPIRE_EVERY_MS)
        return;
    if (pipe_log_reserve(p, p->expire.len) != 0) {
        p->fatal = PC_ENOMEM;
        return;
    }
    memcpy(p->log + p->log_len, p->expire.data, p->expire.len);
    p->log_len += p->expire.len;
    if (pipe_rec_push(p, PIPE_REC_EXPIRE) != 0) {
        p->log_len -= p->expire.len;
        p->fatal = PC_ENOMEM;
        return;
    }
    p->ttl_dirty = 0;
    p->last_expire_ms = now;
}

/* ------------------------------------------------------------------------ */
/* Input                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * How many of the @p avail unfed input bytes may go to the splitter now so
 * that the queue stays within its limits whatever they contain. Feeding n
 * bytes adds at most n to (queued lines + pending fragment), and at most
 * (newlines + chunks + 1) entries.
 */
static size_t pipe_feed_limit(const struct pipe_ctx *p, const char *in, size_t avail)
{
    size_t committed = p->lines + (pc_splitter_pending(p->sp) > 0 ? 1 : 0);
    size_t used = p->log_len - p->log_head;
    size_t reserve = (size_t)p->o.max_line + 2 * p->overhead + PIPE_SLACK + avail;
    size_t k, chunks, want, pos, seen;

    if (committed >= (size_t)p->o.buffer_lines || used + reserve >= PIPE_SOFT_CAP)
        return 0;
    k = (size_t)p->o.buffer_lines - committed;
    if ((PIPE_SOFT_CAP - used - reserve) / p->overhead < k)
        k = (PIPE_SOFT_CAP - used - reserve) / p->overhead;
    if (k >= avail)
        return avail; /* even if every byte ended an entry */
    chunks = avail / ((size_t)p->o.max_line - 3) + 1;
    if (k <= chunks)
        return k;
    /* Feed up to the (k - chunks)-th newline. */
    want = k - chunks;
    pos = 0;
    seen = 0;
    while (pos < avail) {
        const char *nl = memchr(in + pos, '\n', avail - pos);
        if (!nl)
            return avail;
        pos = (size_t)(nl - in) + 1;
        if (++seen == want)
            return pos;
    }
    return avail;
}

/* Lines that were read but are in no command yet (for the "not published" count). */
static long long pipe_unqueued_lines(const struct pipe_ctx *p)
{
    const char *s = p->in + p->in_off, *end = p->in + p->in_len;
    long long n = 0;
    int open = pc_splitter_pending(p->sp) > 0;

    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl) {
            open = 1;
            break;
        }
        n++;
        open = 0;
        s = nl + 1;
    }
    return n + open;
}

static long long pipe_unpublished(const struct pipe_ctx *p)
{
    return (long long)p->lines + p->failed + pipe_unqueued_lines(p);
}

static void pipe_tee_write(struct pipe_ctx *p, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, b, n);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* someone made our stdout non-blocking: wait for it */
            struct pollfd pf = {.fd = STDOUT_FILENO, .events = POLLOUT};
            (void)poll(&pf, 1, 1000);
            continue;
        }
        pc_debug("tee", "stdout: %s; no longer copying stdin", w < 0 ? strerror(errno) : "closed");
        p->tee = 0;
        return;
    }
}

/* Feed as much unfed input as the queue allows; finish at the end of input. */
static void pipe_feed(struct pipe_ctx *p)
{
    size_t before = p->in_off;

    while (p->in_off < p->in_len && !p->fatal) {
        size_t n = pipe_feed_limit(p, p->in + p->in_off, p->in_len - p->in_off);
        if (n == 0)
            return;
        if (pc_splitter_feed(p->sp, p->in + p->in_off, n) != 0) {
            if (!p->fatal)
                p->fatal = PC_ENOMEM;
            return;
        }
        p->in_off += n;
    }
    if (p->in_off == p->in_len) {
        /* Input held back by a full queue was not idle time: the flush clock starts now. */
        if (p->in_len > 0 && before > 0)
            p->last_data_ms = pc_now_ms();
        p->in_off = p->in_len = 0;
        if (p->eof_seen && !p->input_done && !p->fatal) {
            if (pc_splitter_finish(p->sp) != 0 && !p->fatal)
                p->fatal = PC_ENOMEM;
            p->input_done = 1;
        }
    }
}

static void pipe_read_input(struct pipe_ctx *p, long long now)
{
    ssize_t n = read(STDIN_FILENO, p->in, PIPE_READ_MAX);

    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        pc_warn("stdin", "read: %s; treating it as the end of input", strerror(errno));
        p->eof_seen = 1;
        return;
    }
    if (n == 0) {
        p->eof_seen = 1;
        return;
    }
    if (p->tee)
        pipe_tee_write(p, p->in, (size_t)n);
    p->in_off = 0;
    p->in_len = (size_t)n;
    p->last_data_ms = now;
    p->flush_armed = 1;
}

/* ------------------------------------------------------------------------ */
/* Redis                                                                    */
/* ------------------------------------------------------------------------ */

static void pipe_disconnect(struct pipe_ctx *p, const char *why)
{
    long long now = pc_now_ms();

    snprintf(p->why, sizeof(p->why), "redis %s: %s", p->com->where, why);
    if (!p->outage_logged) {
        pc_warn("redis", "%s; reconnecting (%zu commands to resend)", p->why, p->rec_n);
        p->outage_logged = 1;
    }
    redisFree(p->rc);
    p->rc = NULL;
    p->sent = p->log_base + p->log_head;
    p->rec_sent = 0;
    if (p->fail_since < 0)
        p->fail_since = now;
    p->next_connect_ms = now + pc_backoff_next(&p->bo);
}

static void pipe_connect(struct pipe_ctx *p)
{
    char err[512];
    redisContext *rc;
    long long now;
    int code = 0;

    rc = pc_redis_connect_ex(&p->com->url, PIPE_CONNECT_MS, PIPE_IO_TIMEOUT_MS, &code, err,
                             sizeof(err));
    now = pc_now_ms();
    if (!rc) {
        snprintf(p->why, sizeof(p->why), "%s", err);
        if (code == PC_EAUTH) {
            p->refused = 1; /* AUTH/SELECT refused: retrying will not help */
            return;
        }
        /* Before the first connection the final message says it all; a lost one is news. */
        if (!p->ever_connected)
            pc_debug("redis", "%s; retrying for up to %lld s", err, p->o.retry_timeout);
        else if (!p->outage_logged)
            pc_warn("redis", "%s; retrying for up to %lld s", err, p->o.retry_timeout);
        p->outage_logged = 1;
        if (p->fail_since < 0)
            p->fail_since = now;
        p->next_connect_ms = now + pc_backoff_next(&p->bo);
        return;
    }
    p->rc = rc;
    p->sent = p->log_base + p->log_head;
    p->rec_sent = 0;
    p->last_io_ms = now;
    if (p->outage_logged && p->ever_connected)
        pc_info("redis", "redis %s: connected, resending %zu commands", p->com->where, p->rec_n);
    p->outage_logged = 0;
    p->ever_connected = 1;
}

/* Errors after which the same command may well succeed on a new connection. */
static int pipe_transient_error(const char *s)
{
    static const char *const prefixes[] = {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"};
    size_t i;

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* One reply: it answers the oldest record. @return 0, or -1 after a disconnect. */
static int pipe_on_reply(struct pipe_ctx *p, const redisReply *r)
{
    struct pipe_rec rec;

    if (p->rec_sent == 0) {
        pipe_disconnect(p, "protocol error: a reply to no command");
        return -1;
    }
    rec = p->recs[p->rec_head];
    if (r->type == REDIS_REPLY_ERROR) {
        const char *msg = r->str ? r->str : "error";
        if (pipe_transient_error(msg)) {
            pipe_disconnect(p, msg);
            return -1;
        }
        if (rec.kind == PIPE_REC_LINE) {
            p->failed++;
            if (strcmp(p->last_err, msg) != 0) {
                pc_cli_err("redis %s: XADD %s: %s", p->com->where, p->com->key, msg);
                snprintf(p->last_err, sizeof(p->last_err), "%s", msg);
                if (!p->first_err[0])
                    snprintf(p->first_err, sizeof(p->first_err), "%s", msg);
            }
        } else if (!p->expire_warned) {
            pc_warn("redis", "redis %s: EXPIRE %s: %s", p->com->where, p->com->key, msg);
            p->expire_warned = 1;
        }
    } else {
        p->fail_since = -1;
        pc_backoff_reset(&p->bo);
    }
    p->log_head = (size_t)(rec.end - p->log_base);
    p->rec_head++;
    p->rec_n--;
    p->rec_sent--;
    if (rec.kind == PIPE_REC_LINE)
        p->lines--;
    if (p->rec_n == 0) {
        p->rec_head = 0;
        p->log_base += p->log_len;
        p->log_head = p->log_len = 0;
    }
    return 0;
}

static void pipe_read_replies(struct pipe_ctx *p)
{
    int rounds;

    for (rounds = 0; rounds < 16 && p->rc; rounds++) {
        ssize_t n = recv(p->rc->fd, p->rbuf, PIPE_RBUF_SIZE, MSG_DONTWAIT);
        void *reply;

        if (n == 0) {
            pipe_disconnect(p, "server closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pipe_disconnect(p, strerror(errno));
            return;
        }
        p->last_io_ms = pc_now_ms();
        if (redisReaderFeed(p->rc->reader, p->rbuf, (size_t)n) != REDIS_OK) {
            pipe_disconnect(p, "out of memory reading replies");
            return;
        }
        for (;;) {
            int rv;

            reply = NULL;
            if (redisReaderGetReply(p->rc->reader, &reply) != REDIS_OK) {
                char why[200];
                snprintf(why, sizeof(why), "protocol error: %s", p->rc->reader->errstr);
                pipe_disconnect(p, why);
                return;
            }
            if (!reply)
                break;
            rv = pipe_on_reply(p, reply);
            freeReplyObject(reply);
            if (rv < 0)
                return;
        }
        if ((size_t)n < PIPE_RBUF_SIZE)
            return;
    }
}

/* Write what the window allows. @return 1 when the socket is full (wait for POLLOUT). */
static int pipe_write(struct pipe_ctx *p)
{
    while (p->rc && p->rec_n > 0) {
        size_t win = p->rec_n < PIPE_WINDOW ? p->rec_n : PIPE_WINDOW;
        uint64_t limit = p->recs[p->rec_head + win - 1].end;
        ssize_t w;

        if (p->sent >= limit)
            return 0;
        w = send(p->rc->fd, p->log + (p->sent - p->log_base), (size_t)(limit - p->sent),
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p->sent += (uint64_t)w;
            p->last_io_ms = pc_now_ms();
            while (p->rec_sent < p->rec_n && p->recs[p->rec_head + p->rec_sent].end <= p->sent)
                p->rec_sent++;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        pipe_disconnect(p, w < 0 ? strerror(errno) : "write returned 0");
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

static long long pipe_min(long long a, long long b)
{
    return a < b ? a : b;
}

static int pipe_has_work(const struct pipe_ctx *p)
{
    return p->rec_n > 0 || pc_splitter_pending(p->sp) > 0 || p->in_off < p->in_len;
}

static int pipe_give_up(struct pipe_ctx *p)
{
    pc_cli_err("%s; gave up after %lld s: %lld lines not published", p->why, p->o.retry_timeout,
               pipe_unpublished(p));
    return PC_EXIT_FAIL;
}

static int pipe_run(struct pipe_ctx *p, const sigset_t *waitmask)
{
    for (;;) {
        long long now = pc_now_ms(), deadline = LLONG_MAX;
        struct pollfd fds[2];
        int nfds = 0, want_write = 0, in_idx = -1, rc_idx = -1, r;

        if (p->fatal) {
            pc_cli_err("%s: %lld lines not published", pc_strerror(p->fatal), pipe_unpublished(p));
            return PC_EXIT_FAIL;
        }
        if (pipe_signals >= 2 && pipe_has_work(p)) {
            pc_cli_err("interrupted: %lld lines not published", pipe_unpublished(p));
            return PC_EXIT_FAIL;
        }
        if (pipe_signals >= 1 && !p->eof_seen) {
            pc_debug("pipe", "signal: finishing");
            p->eof_seen = 1;
        }

        pipe_feed(p);
        if (p->fatal)
            continue;
        if (!p->input_done && p->flush_armed && p->in_off == p->in_len &&
            now - p->last_data_ms >= p->o.flush_ms) {
            p->flush_armed = 0;
            if (pc_splitter_pending(p->sp) > 0 && pc_splitter_flush(p->sp) != 0 && !p->fatal)
                p->fatal = PC_ENOMEM;
        }
        pipe_maybe_expire(p, now, p->input_done);

        if (!p->rc) {
            if (!pipe_has_work(p))
                p->fail_since = -1; /* the give-up clock runs only while something waits */
            else if (p->fail_since < 0)
                p->fail_since = now;
            if (p->fail_since >= 0 && now - p->fail_since >= p->o.retry_timeout * 1000)
                return pipe_give_up(p);
            if (now >= p->next_connect_ms) {
                pipe_connect(p);
                if (p->refused) {
                    long long n = pipe_unpublished(p);
                    if (n > 0)
                        pc_cli_err("%s; %lld lines not published", p->why, n);
                    else
                        pc_cli_err("%s", p->why);
                    return PC_EXIT_FAIL;
                }
                now = pc_now_ms();
                if (!p->rc && pipe_has_work(p) && now - p->fail_since >= p->o.retry_timeout * 1000)
                    return pipe_give_up(p);
            }
        }

        if (p->rc && p->fail_since >= 0) {
            /* reconnected after a failure, but no reply has confirmed it yet */
            if (p->rec_n == 0)
                p->fail_since = -1;
            else if (now - p->fail_since >= p->o.retry_timeout * 1000)
                return pipe_give_up(p);
        }

        if (p->input_done && p->rec_n == 0) {
            if (p->failed > 0) {
                pc_cli_err("redis %s: %lld lines not published (%s)", p->com->where, p->failed,
                           p->first_err);
                return PC_EXIT_FAIL;
            }
            return PC_EXIT_OK;
        }

        if (p->rc)
            want_write = pipe_write(p);

        /* stdin: only when the last read has been fed completely */
        if (!p->eof_seen && p->in_off == p->in_len) {
            fds[nfds].fd = STDIN_FILENO;
            fds[nfds].events = POLLIN;
            in_idx = nfds++;
        }
        if (p->rc) {
            fds[nfds].fd = p->rc->fd;
            fds[nfds].events = (short)(POLLIN | (want_write ? POLLOUT : 0));
            rc_idx = nfds++;
        }

        if (!p->input_done && p->flush_armed && p->in_off == p->in_len)
            deadline = pipe_min(deadline, p->last_data_ms + p->o.flush_ms);
        if (p->o.ttl > 0 && p->ttl_dirty)
            deadline = pipe_min(deadline, p->last_expire_ms + PIPE_EXPIRE_EVERY_MS);
        if (!p->rc)
            deadline = pipe_min(deadline, p->next_connect_ms);
        else if (p->rec_n > 0)
            deadline = pipe_min(deadline, p->last_io_ms + PIPE_IO_TIMEOUT_MS);
        if (p->fail_since >= 0)
            deadline = pipe_min(deadline, p->fail_since + p->o.retry_timeout * 1000);

        {
            struct timespec ts, *tsp = NULL;
            if (deadline != LLONG_MAX) {
                long long wait = deadline - now;
                if (wait < 0)
                    wait = 0;
                ts.tv_sec = (time_t)(wait / 1000);
                ts.tv_nsec = (long)(wait % 1000) * 1000000L;
                tsp = &ts;
            }
            r = ppoll(fds, (nfds_t)nfds, tsp, waitmask);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            pc_cli_err("poll: %s", strerror(errno));
            p->fatal = PC_EIO;
            continue;
        }
        now = pc_now_ms();
        if (in_idx >= 0 && fds[in_idx].revents) {
            if (fds[in_idx].revents & POLLNVAL)
                p->eof_seen = 1;
            else
                pipe_read_input(p, now);
        }
        if (rc_idx >= 0 && p->rc && (fds[rc_idx].revents & (POLLIN | POLLHUP | POLLERR)))
            pipe_read_replies(p);
        if (p->rc && p->rec_n > 0 && now - p->last_io_ms >= PIPE_IO_TIMEOUT_MS)
            pipe_disconnect(p, "no reply for 10 s");
    }
}

/* ------------------------------------------------------------------------ */
/* Options and setup                                                        */
/* ------------------------------------------------------------------------ */

enum {
    OPT_EVENT = PC_OPT_LOCAL,
    OPT_MAXLEN,
    OPT_TTL,
    OPT_TEE,
    OPT_MAX_LINE,
    OPT_FLUSH_MS,
    OPT_BUFFER_LINES,
    OPT_RETRY_TIMEOUT,
};

static void pipe_usage(FILE *f)
{
    fputs("usage: pipecast pipe [options] <channel>\n"
          "\n"
          "Publishes stdin to a channel: each line becomes one entry of the Redis stream\n"
          "<prefix>:ch:<channel>. Exits 0 only when Redis has acknowledged every line.\n"
          "\n"
          "options:\n"
          "  --event NAME         event name for every entry ([A-Za-z0-9_-]{1,64})\n"
          "  --maxlen N           approximate trimming, MAXLEN ~ N (default 100000; 0: none)\n"
          "  --ttl SECONDS        EXPIRE the stream key after writes\n"
          "  --tee                also copy stdin to stdout unchanged\n"
          "  --max-line BYTES     longer lines are split into partial entries (default 65536,\n"
          "                       16-16777216)\n"
          "  --flush-ms MS        publish a line without newline as partial after this idle\n"
          "                       time (default 50)\n"
          "  --buffer-lines N     at most N lines held unconfirmed (default 100000)\n"
          "  --retry-timeout S    keep retrying an unreachable Redis this long (default 30)\n"
          "  -q, --quiet          print nothing but errors\n" PC_CLI_COMMON_HELP,
          f);
}

static int pipe_parse(struct pc_cli_common *com, struct pipe_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        PC_CLI_COMMON_LONGOPTS,
        {"event", required_argument, NULL, OPT_EVENT},
        {"maxlen", required_argument, NULL, OPT_MAXLEN},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"tee", no_argument, NULL, OPT_TEE},
        {"max-line", required_argument, NULL, OPT_MAX_LINE},
        {"flush-ms", required_argument, NULL, OPT_FLUSH_MS},
        {"buffer-lines", required_argument, NULL, OPT_BUFFER_LINES},
        {"retry-timeout", required_argument, NULL, OPT_RETRY_TIMEOUT},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    int opt, rc;

    o->maxlen = 100000;
    o->max_line = PC_LINE_MAX_DEFAULT;
    o->flush_ms = 50;
    o->buffer_lines = 100000;
    o->retry_timeout = 30;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":q", longopts, NULL)) != -1) {
        rc = pc_cli_common_option(com, opt, optarg);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        switch (opt) {
        case OPT_EVENT:
            if (!pc_event_valid(optarg, strlen(optarg))) {
                pc_cli_err("event \"%.80s\": invalid name (allowed: 1-%d bytes of A-Z a-z 0-9 _ -)",
                           optarg, PC_EVENT_MAX);
                return PC_EXIT_USAGE;
            }
            o->event = optarg;
            break;
        case OPT_MAXLEN:
            rc = pc_cli_parse_ll("--maxlen", optarg, 0, LLONG_MAX, &o->maxlen);
            break;
        case OPT_TTL:
            rc = pc_cli_parse_ll("--ttl", optarg, 1, INT_MAX, &o->ttl);
            break;
        case OPT_TEE:
            o->tee = 1;
            break;
        case OPT_MAX_LINE:
            rc = pc_cli_parse_ll("--max-line", optarg, PC_LINE_MAX_MIN, PIPE_MAX_LINE_MAX,
                                 &o->max_line);
            break;
        case OPT_FLUSH_MS:
            rc = pc_cli_parse_ll("--flush-ms", optarg, 0, 3600000, &o->flush_ms);
            break;
        case OPT_BUFFER_LINES:
            rc = pc_cli_parse_ll("--buffer-lines", optarg, 1, 10000000, &o->buffer_lines);
            break;
        case OPT_RETRY_TIMEOUT:
            rc = pc_cli_parse_ll("--retry-timeout", optarg, 0, 86400, &o->retry_timeout);
            break;
        case 'q':
            o->quiet = 1;
            break;
        default:
            return pc_cli_getopt_error(com, opt, argc, argv);
        }
        if (rc != 0)
            return rc;
    }
    if (com->help) {
        pipe_usage(stdout);
        return -1;
    }
    if (com->version) {
        pc_cli_print_version();
        return -1;
    }
    if (o->quiet && com->log_level < PC_LOG_ERROR)
        com->log_level = PC_LOG_ERROR;
    return pc_cli_common_finish(com, argc, argv, optind);
}

static void pipe_ctx_free(struct pipe_ctx *p)
{
    int k;

    redisFree(p->rc);
    p->rc = NULL;
    pc_splitter_free(p->sp);
    for (k = 0; k < 2; k++) {
        pc_buf_free(&p->head[k]);
        pc_buf_free(&p->tail[k]);
    }
    pc_buf_free(&p->expire);
    free(p->log);
    free(p->recs);
    free(p->in);
    free(p->rbuf);
}

int pc_cli_pipe(int argc, char **argv)
{
    struct pc_cli_common com;
    struct pipe_ctx *p;
    struct sigaction sa, old_int, old_term;
    sigset_t block, oldmask, waitmask;
    int rc;

    rc = pc_cli_common_init(&com, "pipe");
    if (rc != 0)
        return rc;
    p = calloc(1, sizeof(*p));
    if (!p) {
        pc_cli_err("out of memory");
        return PC_EXIT_FAIL;
    }
    p->com = &com;
    rc = pipe_parse(&com, &p->o, argc, argv);
    if (rc != 0) {
        free(p);
        return rc < 0 ? PC_EXIT_OK : rc;
    }
    p->tee = p->o.tee;
    p->fail_since = -1;
    p->last_expire_ms = pc_now_ms() - PIPE_EXPIRE_EVERY_MS;
    pc_backoff_init(&p->bo, PIPE_BACKOFF_MIN_MS, PIPE_BACKOFF_MAX_MS);
    p->in = malloc(PIPE_READ_MAX);
    p->rbuf = malloc(PIPE_RBUF_SIZE);
    p->sp = pc_splitter_new((size_t)p->o.max_line, pipe_on_entry, p);
    if (!p->in || !p->rbuf || !p->sp || pipe_templates(p) != 0) {
        pc_cli_err("out of memory");
        pipe_ctx_free(p);
        free(p);
        return PC_EXIT_FAIL;
    }

    /* SIGINT/SIGTERM are delivered only inside ppoll(), so no wake-up is missed. */
    pipe_signals = 0;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &oldmask);
    waitmask = oldmask;
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pipe_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGTERM, NULL, &old_term);
    if (old_int.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
    if (old_term.sa_handler != SIG_IGN)
        sigaction(SIGTERM, &sa, NULL);

    rc = pipe_run(p, &waitmask);

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    pipe_ctx_free(p);
    free(p);
    return rc;
}
