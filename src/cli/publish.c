/* publish.c -- pipelined XADDs into one stream, and nothing lost silently.
 *
 * Every entry is encoded once, as the RESP bytes of its XADD, into the log.
 * The log is at the same time the output buffer and the queue of everything
 * not yet acknowledged:
 *
 *   log:  | acked (dead) | sent, waiting for a reply | not sent yet |
 *         0              head                        sent           len
 *
 * A record per command says where it ends; each reply pops the oldest record
 * and its bytes. When the connection is lost, `sent` goes back to `head`, so
 * after the reconnect every unacknowledged command is written again, in order
 * (at-least-once: a line whose reply was lost may appear twice).
 *
 * An entry is  head[ev][partial] "$<len>\r\n" <data> tail[ev][partial]  where
 * head and tail are built once per event name: the hot path is four memcpy.
 *
 * Memory is bounded: a source's bytes are fed to its splitter only while the
 * queue has room for every entry they can produce (at most buffer_lines
 * entries and PC_PUB_SOFT_CAP bytes); the rest waits in the source's input
 * buffer and the source takes no new input until it is consumed, which is
 * the backpressure on the producer.
 */
#include "publish.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/splitter.h"

#define PUB_READ_MAX (64 * 1024)  /* one read() of a source */
#define PUB_RBUF_SIZE (64 * 1024) /* one recv() of replies */
#define PUB_WINDOW 1024           /* commands written and not yet answered */
#define PUB_SLACK 4096            /* room for EXPIRE and lifecycle commands beyond the cap */
#define PUB_CONNECT_MS 2000
#define PUB_IO_TIMEOUT_MS 10000 /* no reply progress for this long: dead connection */
#define PUB_EXPIRE_EVERY_MS 1000
#define PUB_BACKOFF_MIN_MS 100
#define PUB_BACKOFF_MAX_MS 2000

enum pub_rec_kind {
    PUB_REC_ENTRY,
    PUB_REC_EXPIRE,
};

struct pub_rec {
    uint64_t end; /* absolute log offset just past this command */
    int kind;     /* enum pub_rec_kind */
};

/* The fixed RESP parts around an entry's data, per partial flag. */
struct pub_event {
    struct pc_buf head[2];
    struct pc_buf tail[2];
};

struct pc_pub_src {
    struct pc_pub *pub;
    int ev;
    size_t max_line;
    const char *name;
    struct pc_splitter *sp;
    char *in; /* PUB_READ_MAX bytes: the last read, fed from in_off */
    size_t in_off;
    size_t in_len;
    int eof_seen;
    int input_done; /* EOF seen, everything fed, splitter finished */
    int flush_armed;
    long long last_data_ms;
};

struct pc_pub {
    struct pc_pub_opts o;

    struct pub_event ev[PC_PUB_EVENTS_MAX];
    int nev;
    struct pc_buf expire;
    size_t overhead; /* upper bound of the encoding bytes around one entry's data */

    struct pc_pub_src *src[PC_PUB_SOURCES_MAX];
    int nsrc;

    /* the log of unacknowledged commands; absolute offset of log[i] is log_base + i */
    char *log;
    size_t log_head;
    size_t log_len;
    size_t log_cap;
    uint64_t log_base;
    uint64_t sent; /* absolute offset: written on the current connection up to here */

    /* one record per command in the log, oldest at rec_head */
    struct pub_rec *recs;
    size_t rec_head;
    size_t rec_n;
    size_t rec_cap;
    size_t rec_sent; /* records fully written, waiting for their reply */
    size_t entries;  /* PUB_REC_ENTRY records among them */

    long long failed; /* entries Redis refused with an error reply */
    char first_err[256];
    char last_err[256];
    int expire_warned;
    int fatal; /* PC_E* code that ends the run (out of memory) */
    int err;   /* set once pc_pub_step() has failed for good */

    int ttl_dirty;
    long long last_expire_ms;

    /* Redis connection */
    redisContext *rc;
    char *rbuf;
    int want_write;
    long long last_io_ms;
    long long fail_since; /* -1: no failure pending */
    long long next_connect_ms;
    struct pc_backoff bo;
    char why[600]; /* "redis <where>: <why>" of the last failure */
    char errstr[700];
    int outage_logged;
    int ever_connected;
    int refused; /* Redis refused AUTH or SELECT */
};

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

static int pub_bulk_str(struct pc_buf *b, const char *s)
{
    size_t len = strlen(s);

    if (pc_buf_printf(b, "$%zu\r\n", len) != 0 || pc_buf_append(b, s, len) != 0 ||
        pc_buf_append(b, "\r\n", 2) != 0)
        return PC_ENOMEM;
    return 0;
}

int pc_pub_event(struct pc_pub *p, const char *event)
{
    struct pub_event *e;
    char num[32];
    size_t over;
    int k, rc = 0;

    if (event && !pc_event_valid(event, strlen(event)))
        return PC_ENAME;
    if (p->nev == PC_PUB_EVENTS_MAX)
        return PC_ETOOBIG;
    e = &p->ev[p->nev];
    for (k = 0; k < 2; k++) {
        int argc = 2 + (p->o.maxlen > 0 ? 3 : 0) + 1 + 2 + (event ? 2 : 0) + (k ? 2 : 0);

        pc_buf_init(&e->head[k], 4096);
        pc_buf_init(&e->tail[k], 4096);
        rc |= pc_buf_printf(&e->head[k], "*%d\r\n", argc);
        rc |= pub_bulk_str(&e->head[k], "XADD");
        rc |= pub_bulk_str(&e->head[k], p->o.key);
        if (p->o.maxlen > 0) {
            snprintf(num, sizeof(num), "%lld", p->o.maxlen);
            rc |= pub_bulk_str(&e->head[k], "MAXLEN");
            rc |= pub_bulk_str(&e->head[k], "~");
            rc |= pub_bulk_str(&e->head[k], num);
        }
        rc |= pub_bulk_str(&e->head[k], "*");
        rc |= pub_bulk_str(&e->head[k], "data");
        rc |= pc_buf_append(&e->tail[k], "\r\n", 2);
        if (event) {
            rc |= pub_bulk_str(&e->tail[k], "event");
            rc |= pub_bulk_str(&e->tail[k], event);
        }
        if (k) {
            rc |= pub_bulk_str(&e->tail[k], "partial");
            rc |= pub_bulk_str(&e->tail[k], "1");
        }
    }
    if (rc) {
        for (k = 0; k < 2; k++) {
            pc_buf_free(&e->head[k]);
            pc_buf_free(&e->tail[k]);
        }
        return PC_ENOMEM;
    }
    /* "$" + up to 20 digits + CRLF */
    over = e->head[1].len + 24 + e->tail[1].len;
    if (over > p->overhead)
        p->overhead = over;
    return p->nev++;
}

/* Make room for @p need more bytes at the end of the log. */
static int pub_log_reserve(struct pc_pub *p, size_t need)
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

static int pub_rec_push(struct pc_pub *p, int kind)
{
    if (p->rec_head + p->rec_n == p->rec_cap) {
        if (p->rec_head > 0 && p->rec_head >= p->rec_n) {
            memmove(p->recs, p->recs + p->rec_head, p->rec_n * sizeof(*p->recs));
            p->rec_head = 0;
        } else {
            size_t ncap = p->rec_cap ? p->rec_cap * 2 : 1024;
            struct pub_rec *n = realloc(p->recs, ncap * sizeof(*n));
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
    if (kind == PUB_REC_ENTRY)
        p->entries++;
    return 0;
}

/* "$<len>\r\n" into @p out; @return its length. */
static size_t pub_fmt_len(char *out, size_t len)
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

int pc_pub_add(struct pc_pub *p, int ev, const char *data, size_t len, int partial)
{
    const struct pc_buf *h, *t;
    char num[32];
    size_t nn, need;
    char *w;
    int rc;

    if (ev < 0 || ev >= p->nev)
        return PC_EINVAL;
    partial = partial ? 1 : 0;
    h = &p->ev[ev].head[partial];
    t = &p->ev[ev].tail[partial];
    nn = pub_fmt_len(num, len);
    need = h->len + nn + len + t->len;
    rc = pub_log_reserve(p, need);
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
        rc = pub_rec_push(p, PUB_REC_ENTRY);
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

/* Splitter callback: one entry becomes one XADD in the log. */
static int pub_on_entry(void *privdata, const char *data, size_t len, int partial)
{
    struct pc_pub_src *s = privdata;

    return pc_pub_add(s->pub, s->ev, data, len, partial);
}

/* Queue an EXPIRE after the writes (at most once a second, and once at the end). */
static void pub_maybe_expire(struct pc_pub *p, long long now, int force)
{
    if (p->o.ttl <= 0 || !p->ttl_dirty || p->fatal)
        return;
    if (!force && now - p->last_expire_ms < PUB_EXPIRE_EVERY_MS)
        return;
    if (pub_log_reserve(p, p->expire.len) != 0) {
        p->fatal = PC_ENOMEM;
        return;
    }
    memcpy(p->log + p->log_len, p->expire.data, p->expire.len);
    p->log_len += p->expire.len;
    if (pub_rec_push(p, PUB_REC_EXPIRE) != 0) {
        p->log_len -= p->expire.len;
        p->fatal = PC_ENOMEM;
        return;
    }
    p->ttl_dirty = 0;
    p->last_expire_ms = now;
}

/* ------------------------------------------------------------------------ */
/* Sources                                                                  */
/* ------------------------------------------------------------------------ */

struct pc_pub_src *pc_pub_src_new(struct pc_pub *p, int ev, size_t max_line, const char *name)
{
    struct pc_pub_src *s;

    if (ev < 0 || ev >= p->nev || p->nsrc == PC_PUB_SOURCES_MAX || max_line < PC_LINE_MAX_MIN)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->pub = p;
    s->ev = ev;
    s->max_line = max_line;
    s->name = name;
    s->in = malloc(PUB_READ_MAX);
    s->sp = pc_splitter_new(max_line, pub_on_entry, s);
    if (!s->in || !s->sp) {
        pc_splitter_free(s->sp);
        free(s->in);
        free(s);
        return NULL;
    }
    p->src[p->nsrc++] = s;
    return s;
}

static void pub_src_free(struct pc_pub_src *s)
{
    if (!s)
        return;
    pc_splitter_free(s->sp);
    free(s->in);
    free(s);
}

int pc_pub_src_readable(const struct pc_pub_src *s)
{
    return !s->eof_seen && s->in_off == s->in_len;
}

int pc_pub_src_eof_seen(const struct pc_pub_src *s)
{
    return s->eof_seen;
}

int pc_pub_src_done(const struct pc_pub_src *s)
{
    return s->input_done;
}

void pc_pub_src_eof(struct pc_pub_src *s)
{
    s->eof_seen = 1;
}

ssize_t pc_pub_src_read(struct pc_pub_src *s, int fd, long long now, const char **data)
{
    ssize_t n = read(fd, s->in, PUB_READ_MAX);

    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        /* EIO: the other side of a pty is gone -- its normal end of input */
        if (errno == EIO)
            pc_debug(s->name, "read: %s; end of input", strerror(errno));
        else
            pc_warn(s->name, "read: %s; treating it as the end of input", strerror(errno));
        s->eof_seen = 1;
        return 0;
    }
    if (n == 0) {
        s->eof_seen = 1;
        return 0;
    }
    s->in_off = 0;
    s->in_len = (size_t)n;
    s->last_data_ms = now;
    s->flush_armed = 1;
    *data = s->in;
    return n;
}

/*
 * How many of the @p avail unfed bytes of @p s may go to its splitter now so
 * that the queue stays within its limits whatever they contain. Feeding n
 * bytes adds at most n to (queued entries + pending fragments), and at most
 * (newlines + chunks + 1) entries. Every source may later flush a fragment of
 * up to max_line bytes without asking: that is held in reserve.
 */
static size_t pub_feed_limit(const struct pc_pub *p, const struct pc_pub_src *s, const char *in,
                             size_t avail)
{
    size_t committed = p->entries, held = 0, over = 0;
    size_t used = p->log_len - p->log_head;
    size_t reserve, k, chunks, want, pos, seen;
    int i;

    for (i = 0; i < p->nsrc; i++) {
        committed += pc_splitter_pending(p->src[i]->sp) > 0 ? 1 : 0;
        held += p->src[i]->max_line;
        over += p->overhead;
    }
    reserve = held + over + p->overhead + PUB_SLACK + avail;
    if (committed >= (size_t)p->o.buffer_lines || used + reserve >= PC_PUB_SOFT_CAP)
        return 0;
    k = (size_t)p->o.buffer_lines - committed;
    if ((PC_PUB_SOFT_CAP - used - reserve) / p->overhead < k)
        k = (PC_PUB_SOFT_CAP - used - reserve) / p->overhead;
    if (k >= avail)
        return avail; /* even if every byte ended an entry */
    chunks = avail / (s->max_line - 3) + 1;
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
static long long pub_src_unqueued(const struct pc_pub_src *s)
{
    const char *c = s->in + s->in_off, *end = s->in + s->in_len;
    long long n = 0;
    int open = pc_splitter_pending(s->sp) > 0;

    while (c < end) {
        const char *nl = memchr(c, '\n', (size_t)(end - c));
        if (!nl) {
            open = 1;
            break;
        }
        n++;
        open = 0;
        c = nl + 1;
    }
    return n + open;
}

/* Feed as much unfed input as the queue allows; finish at the end of input. */
static void pub_src_feed(struct pc_pub *p, struct pc_pub_src *s)
{
    size_t before = s->in_off;

    while (s->in_off < s->in_len && !p->fatal) {
        size_t n = pub_feed_limit(p, s, s->in + s->in_off, s->in_len - s->in_off);
        if (n == 0)
            return;
        if (pc_splitter_feed(s->sp, s->in + s->in_off, n) != 0) {
            if (!p->fatal)
                p->fatal = PC_ENOMEM;
            return;
        }
        s->in_off += n;
    }
    if (s->in_off == s->in_len) {
        /* Input held back by a full queue was not idle time: the flush clock starts now. */
        if (s->in_len > 0 && before > 0)
            s->last_data_ms = pc_now_ms();
        s->in_off = s->in_len = 0;
        if (s->eof_seen && !s->input_done && !p->fatal) {
            if (pc_splitter_finish(s->sp) != 0 && !p->fatal)
                p->fatal = PC_ENOMEM;
            s->input_done = 1;
        }
    }
}

static void pub_src_maybe_flush(struct pc_pub *p, struct pc_pub_src *s, long long now)
{
    if (!s->input_done && s->flush_armed && s->in_off == s->in_len &&
        now - s->last_data_ms >= p->o.flush_ms) {
        s->flush_armed = 0;
        if (pc_splitter_pending(s->sp) > 0 && pc_splitter_flush(s->sp) != 0 && !p->fatal)
            p->fatal = PC_ENOMEM;
    }
}

/* ------------------------------------------------------------------------ */
/* Redis                                                                    */
/* ------------------------------------------------------------------------ */

static void pub_disconnect(struct pc_pub *p, const char *why)
{
    long long now = pc_now_ms();

    snprintf(p->why, sizeof(p->why), "redis %s: %s", p->o.where, why);
    if (!p->outage_logged) {
        pc_warn("redis", "%s; reconnecting (%zu commands to resend)", p->why, p->rec_n);
        p->outage_logged = 1;
    }
    redisFree(p->rc);
    p->rc = NULL;
    p->want_write = 0;
    p->sent = p->log_base + p->log_head;
    p->rec_sent = 0;
    if (p->fail_since < 0)
        p->fail_since = now;
    p->next_connect_ms = now + pc_backoff_next(&p->bo);
}

/* One connection attempt. @return 0 or the PC_E* code of the failure. */
static int pub_try_connect(struct pc_pub *p)
{
    char err[512];
    redisContext *rc;
    long long now;
    int code = 0;

    rc = pc_redis_connect_ex(p->o.url, PUB_CONNECT_MS, PUB_IO_TIMEOUT_MS, &code, err, sizeof(err));
    now = pc_now_ms();
    if (!rc) {
        snprintf(p->why, sizeof(p->why), "%s", err);
        if (code == PC_EAUTH) {
            p->refused = 1; /* AUTH/SELECT refused: retrying will not help */
            return code;
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
        return code ? code : PC_EREDIS;
    }
    p->rc = rc;
    p->sent = p->log_base + p->log_head;
    p->rec_sent = 0;
    p->last_io_ms = now;
    if (p->outage_logged && p->ever_connected)
        pc_info("redis", "redis %s: connected, resending %zu commands", p->o.where, p->rec_n);
    p->outage_logged = 0;
    p->ever_connected = 1;
    return 0;
}

int pc_pub_connect(struct pc_pub *p)
{
    int rc;

    if (p->rc)
        return 0;
    rc = pub_try_connect(p);
    if (rc != 0) {
        snprintf(p->errstr, sizeof(p->errstr), "%s", p->why);
        /* a later pc_pub_step() starts its own retry clock */
        p->fail_since = -1;
    }
    return rc;
}

/* Errors after which the same command may well succeed on a new connection. */
static int pub_transient_error(const char *s)
{
    static const char *const prefixes[] = {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"};
    size_t i;

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* One reply: it answers the oldest record. @return 0, or -1 after a disconnect. */
static int pub_on_reply(struct pc_pub *p, const redisReply *r)
{
    struct pub_rec rec;

    if (p->rec_sent == 0) {
        pub_disconnect(p, "protocol error: a reply to no command");
        return -1;
    }
    rec = p->recs[p->rec_head];
    if (r->type == REDIS_REPLY_ERROR) {
        const char *msg = r->str ? r->str : "error";
        if (pub_transient_error(msg)) {
            pub_disconnect(p, msg);
            return -1;
        }
        if (rec.kind == PUB_REC_ENTRY) {
            p->failed++;
            if (strcmp(p->last_err, msg) != 0) {
                fprintf(stderr, "pipecast: redis %s: XADD %s: %s\n", p->o.where, p->o.key, msg);
                snprintf(p->last_err, sizeof(p->last_err), "%s", msg);
                if (!p->first_err[0])
                    snprintf(p->first_err, sizeof(p->first_err), "%s", msg);
            }
        } else if (!p->expire_warned) {
            pc_warn("redis", "redis %s: EXPIRE %s: %s", p->o.where, p->o.key, msg);
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
    if (rec.kind == PUB_REC_ENTRY)
        p->entries--;
    if (p->rec_n == 0) {
        p->rec_head = 0;
        p->log_base += p->log_len;
        p->log_head = p->log_len = 0;
    }
    return 0;
}

static void pub_read_replies(struct pc_pub *p)
{
    int rounds;

    for (rounds = 0; rounds < 16 && p->rc; rounds++) {
        ssize_t n = recv(p->rc->fd, p->rbuf, PUB_RBUF_SIZE, MSG_DONTWAIT);
        void *reply;

        if (n == 0) {
            pub_disconnect(p, "server closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pub_disconnect(p, strerror(errno));
            return;
        }
        p->last_io_ms = pc_now_ms();
        if (redisReaderFeed(p->rc->reader, p->rbuf, (size_t)n) != REDIS_OK) {
            pub_disconnect(p, "out of memory reading replies");
            return;
        }
        for (;;) {
            int rv;

            reply = NULL;
            if (redisReaderGetReply(p->rc->reader, &reply) != REDIS_OK) {
                char why[200];
                snprintf(why, sizeof(why), "protocol error: %s", p->rc->reader->errstr);
                pub_disconnect(p, why);
                return;
            }
            if (!reply)
                break;
            rv = pub_on_reply(p, reply);
            freeReplyObject(reply);
            if (rv < 0)
                return;
        }
        if ((size_t)n < PUB_RBUF_SIZE)
            return;
    }
}

/* Write what the window allows. @return 1 when the socket is full (wait for POLLOUT). */
static int pub_write(struct pc_pub *p)
{
    while (p->rc && p->rec_n > 0) {
        size_t win = p->rec_n < PUB_WINDOW ? p->rec_n : PUB_WINDOW;
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
        pub_disconnect(p, w < 0 ? strerror(errno) : "write returned 0");
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The step                                                                 */
/* ------------------------------------------------------------------------ */

static long long pub_min(long long a, long long b)
{
    return a < b ? a : b;
}

static int pub_has_work(const struct pc_pub *p)
{
    int i;

    if (p->rec_n > 0)
        return 1;
    for (i = 0; i < p->nsrc; i++)
        if (pc_splitter_pending(p->src[i]->sp) > 0 || p->src[i]->in_off < p->src[i]->in_len)
            return 1;
    return 0;
}

static int pub_fail(struct pc_pub *p, int code)
{
    if (code == PC_ETIMEOUT)
        snprintf(p->errstr, sizeof(p->errstr), "%s; gave up after %lld s", p->why,
                 p->o.retry_timeout);
    else if (code == PC_EAUTH)
        snprintf(p->errstr, sizeof(p->errstr), "%s", p->why);
    else
        snprintf(p->errstr, sizeof(p->errstr), "%s", pc_strerror(code));
    p->err = code;
    return code;
}

int pc_pub_step(struct pc_pub *p, long long now)
{
    int i, all_done = 1;

    if (p->err)
        return p->err;
    for (i = 0; i < p->nsrc && !p->fatal; i++) {
        pub_src_feed(p, p->src[i]);
        pub_src_maybe_flush(p, p->src[i], now);
        all_done &= p->src[i]->input_done;
    }
    pub_maybe_expire(p, now, all_done);
    if (p->fatal)
        return pub_fail(p, p->fatal);

    if (!p->rc) {
        if (!pub_has_work(p))
            p->fail_since = -1; /* the give-up clock runs only while something waits */
        else if (p->fail_since < 0)
            p->fail_since = now;
        if (p->fail_since >= 0 && now - p->fail_since >= p->o.retry_timeout * 1000)
            return pub_fail(p, PC_ETIMEOUT);
        if (now >= p->next_connect_ms) {
            pub_try_connect(p);
            if (p->refused)
                return pub_fail(p, PC_EAUTH);
            now = pc_now_ms();
            if (!p->rc && pub_has_work(p) && now - p->fail_since >= p->o.retry_timeout * 1000)
                return pub_fail(p, PC_ETIMEOUT);
        }
    }

    if (p->rc && p->fail_since >= 0) {
        /* reconnected after a failure, but no reply has confirmed it yet */
        if (p->rec_n == 0)
            p->fail_since = -1;
        else if (now - p->fail_since >= p->o.retry_timeout * 1000)
            return pub_fail(p, PC_ETIMEOUT);
    }

    p->want_write = p->rc ? pub_write(p) : 0;
    return 0;
}

int pc_pub_pollfd(const struct pc_pub *p, short *events)
{
    if (!p->rc) {
        *events = 0;
        return -1;
    }
    *events = (short)(POLLIN | (p->want_write ? POLLOUT : 0));
    return p->rc->fd;
}

long long pc_pub_deadline(const struct pc_pub *p)
{
    long long deadline = LLONG_MAX;
    int i;

    for (i = 0; i < p->nsrc; i++) {
        const struct pc_pub_src *s = p->src[i];
        if (!s->input_done && s->flush_armed && s->in_off == s->in_len)
            deadline = pub_min(deadline, s->last_data_ms + p->o.flush_ms);
    }
    if (p->o.ttl > 0 && p->ttl_dirty)
        deadline = pub_min(deadline, p->last_expire_ms + PUB_EXPIRE_EVERY_MS);
    if (!p->rc)
        deadline = pub_min(deadline, p->next_connect_ms);
    else if (p->rec_n > 0)
        deadline = pub_min(deadline, p->last_io_ms + PUB_IO_TIMEOUT_MS);
    if (p->fail_since >= 0)
        deadline = pub_min(deadline, p->fail_since + p->o.retry_timeout * 1000);
    return deadline;
}

void pc_pub_io(struct pc_pub *p, short revents, long long now)
{
    if (p->rc && (revents & (POLLIN | POLLHUP | POLLERR)))
        pub_read_replies(p);
    if (p->rc && p->rec_n > 0 && now - p->last_io_ms >= PUB_IO_TIMEOUT_MS)
        pub_disconnect(p, "no reply for 10 s");
}

int pc_pub_idle(const struct pc_pub *p)
{
    return !pub_has_work(p);
}

long long pc_pub_unpublished(const struct pc_pub *p)
{
    long long n = (long long)p->entries + p->failed;
    int i;

    for (i = 0; i < p->nsrc; i++)
        n += pub_src_unqueued(p->src[i]);
    return n;
}

long long pc_pub_failed(const struct pc_pub *p)
{
    return p->failed;
}

const char *pc_pub_first_error(const struct pc_pub *p)
{
    return p->first_err;
}

const char *pc_pub_errstr(const struct pc_pub *p)
{
    return p->errstr[0] ? p->errstr : p->why;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                               */
/* ------------------------------------------------------------------------ */

struct pc_pub *pc_pub_new(const struct pc_pub_opts *o)
{
    struct pc_pub *p;
    int rc = 0;

    if (!o || !o->url || !o->key || !o->where || o->buffer_lines < 1)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->o = *o;
    p->fail_since = -1;
    p->last_expire_ms = pc_now_ms() - PUB_EXPIRE_EVERY_MS;
    pc_backoff_init(&p->bo, PUB_BACKOFF_MIN_MS, PUB_BACKOFF_MAX_MS);
    pc_buf_init(&p->expire, 4096);
    if (o->ttl > 0) {
        char num[32];
        snprintf(num, sizeof(num), "%lld", o->ttl);
        rc |= pc_buf_append_str(&p->expire, "*3\r\n");
        rc |= pub_bulk_str(&p->expire, "EXPIRE");
        rc |= pub_bulk_str(&p->expire, o->key);
        rc |= pub_bulk_str(&p->expire, num);
    }
    p->rbuf = malloc(PUB_RBUF_SIZE);
    if (rc || !p->rbuf) {
        pc_pub_free(p);
        return NULL;
    }
    return p;
}

void pc_pub_free(struct pc_pub *p)
{
    int i, k;

    if (!p)
        return;
    redisFree(p->rc);
    for (i = 0; i < p->nsrc; i++)
        pub_src_free(p->src[i]);
    for (i = 0; i < p->nev; i++) {
        for (k = 0; k < 2; k++) {
            pc_buf_free(&p->ev[i].head[k]);
            pc_buf_free(&p->ev[i].tail[k]);
        }
    }
    pc_buf_free(&p->expire);
    free(p->log);
    free(p->recs);
    free(p->rbuf);
    free(p);
}
