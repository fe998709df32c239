/* sse_handler.c -- the SSE endpoints, one stream per civetweb worker:
 *
 *   GET /api/channels/<channel>/events          one channel, ids are stream ids
 *   GET /api/events?channel=a&channel=b         several channels, ids hold every cursor
 *
 * A stream has one source per channel. A source is a cursor, the id of the
 * last entry of its channel that the stream has passed:
 *
 *          Redis pages (XRANGE "(cursor" base COUNT n)        ring (shared, in memory)
 *   ──────────────────────────────────────────────────────┬──────────────────────────────>
 *   0-0                          cursor              base_id           last_id
 *
 * While the cursor is before base_id (replay, or fell behind the ring) the
 * source reads pages from Redis through the pool; once it reaches base_id it
 * is served from the ring. The cursor is the only truth, so the seam has no
 * gap and no duplicate. A slow client only falls behind and reads pages; it is
 * never cut off. Any short mg_write means the client is gone.
 *
 * One source (stream_run_one) sends whole pages and blocks in gw_channel_poll
 * on its channel's condition variable. Several sources (stream_run_merge) keep
 * the next entry of each channel in view (a page read ahead, or a peek into
 * the ring) and send from the channel with the oldest one until the second
 * oldest, so replay is ordered by stream id across channels; a gw_waiter wakes
 * the stream when any of its channels moves. Every event id then names the
 * channel and every cursor, "<index>:<cursor 0>,<cursor 1>,..." (docs/interfaces.md),
 * so one Last-Event-ID resumes every channel.
 *
 * Who runs a stream: the civetweb worker parses the request, takes a client
 * slot, subscribes, then takes the client socket from civetweb
 * (gw_http_take_socket) and starts a stream thread (gw_fanout_spawn); the
 * worker is free again at once. The thread writes the headers and replays;
 * once a single-channel stream is live (its cursor in the ring, all sent) it
 * is handed to a fanout writer (fanout.h) and the thread ends. A live stream
 * that needs Redis again (it fell behind the ring, its channel was reset)
 * comes back to a new stream thread. Several-channel streams keep their
 * thread. Should civetweb's socket not be found, the stream runs on the
 * worker to its end, as it did before the fanout, and the worker pool caps
 * such streams (503 beyond).
 *
 * ?partial=mark sends an entry whose `partial` field is 1 as event
 * "<event>.partial" ("message.partial" without an event name); the event=
 * filter still matches the base name. Ring entries carry the offsets for it
 * (hub.h), pages are encoded per stream anyway: no entry is encoded twice.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <civetweb.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/id.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/sse.h"

#include "fanout.h"
#include "gateway.h"
#include "http_util.h"

#define SSE_WRITE_MAX (256u << 10) /* bytes gathered before one write */
#define SSE_OUT_MAX (80u << 20)    /* hard cap of the output buffer: one huge entry */
#define SSE_PAGE_COUNT 500u
/* a page's entries add up to about this many bytes (COUNT adapts to the entries' size) */
#define SSE_PAGE_BYTES (1u << 20)
/* COUNT of a source's first page, before any entry size is known */
#define SSE_PAGE_FIRST 16u
/* several channels share about SSE_PAGE_COUNT entries read ahead, at least this many each */
#define SSE_MERGE_PAGE_MIN 16u
#define SSE_FILTERS_MAX 16
#define SSE_TAIL_MAX 100000ULL
#define SSE_TAIL_PLAIN_MAX 1000ULL /* larger tails are resolved inside Redis by a script */
#define SSE_CHANNELS_MAX GW_WAITER_MAX
/* "<index>:" plus one id and a comma per channel */
#define SSE_MULTI_ID_MAX (8 + SSE_CHANNELS_MAX * PC_ID_STRLEN)

/* Returns of the steps below. */
enum {
    STEP_OK = 0,
    STEP_REDIS = -1, /* Redis unreachable or failing: keep the stream, retry with backoff */
    STEP_FATAL = -2, /* the key is not a stream, or out of memory: end the stream */
    STEP_DEAD = -3,  /* the client is gone, or the hub is stopping */
};

enum start_mode { START_BEGIN, START_END, START_TAIL, START_ID };

/* One channel of a stream. */
struct sse_src {
    struct gw_channel *ch;
    const char *key; /* "<prefix>:ch:<name>" */
    char name[PC_CHANNEL_MAX + 1];
    unsigned index; /* position in the request's channel list */
    enum start_mode mode;
    struct pc_id cursor; /* the last entry passed (sent or filtered out) */
    int start_pending;   /* the start point still needs Redis */
    int gap_check;       /* look for trimmed entries before reading pages */
    int live;            /* the last look was served from the ring */
    redisReply *page;    /* entries read from Redis, not all passed yet; page_i is the next one */
    size_t page_i;
    size_t entry_avg; /* average size of the entries of the last page (0: none read yet) */
    int gap_sent;     /* a gap up to gap_first was reported: entries before it are known lost */
    struct pc_id gap_first;
    /* several channels only: */
    char cur_str[PC_ID_STRLEN]; /* cursor as text ("" for 0-0), valid while cur_of == cursor */
    struct pc_id cur_of;
    int has_next;      /* next is the id of the next entry to send */
    struct pc_id next; /* (from the page or the ring) */
    int idle;          /* nothing to send: looked at again when its waiter bit fires */
};

struct sse_stream {
    struct gw_ctx *gw;
    struct mg_connection *conn; /* NULL once the socket was taken from civetweb */
    int fd;                     /* the taken socket, else -1 */
    int opened;                 /* the response headers went out */
    int on_worker;              /* holds its civetweb worker (counted in gw->sse_on_workers) */
    struct gw_live lv;          /* while live in the fanout */
    struct gw_idfmt fmt;        /* single channel: how ids and partial entries are written */
    const struct gw_idfmt *fmtp;
    int multi;        /* GET /api/events: multi-channel ids and gap data */
    int mark_partial; /* ?partial=mark: partial entries are sent as "<event>.partial" */
    unsigned n;
    struct sse_src *src;
    struct gw_waiter *waiter; /* n > 1 */
    unsigned long long tail;
    unsigned page_max; /* COUNT of a page at most */
    size_t page_bytes; /* what a page of one source should weigh */
    char filter_buf[SSE_FILTERS_MAX][PC_EVENT_MAX + 1];
    const char *filter_names[SSE_FILTERS_MAX];
    struct gw_filter filter;
    struct pc_buf out;
    struct pc_buf idbuf; /* the id: line around the current source's cursor */
    long long ping_ms;
    long long next_ping;
    struct pc_backoff bo;
};

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Write all of @p len bytes to the taken socket. A client that takes nothing
 * for GW_WRITE_TIMEOUT_MS (civetweb's request_timeout_ms for the others) is
 * gone. @return the bytes written: len, or less when gone or stopping.
 */
static int fd_write(struct sse_stream *st, const char *p, size_t len)
{
    size_t done = 0;
    long long last = pc_now_ms();

    while (done < len) {
        ssize_t k = send(st->fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        struct pollfd pfd;

        if (k > 0) {
            done += (size_t)k;
            last = pc_now_ms();
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break;
        if (gw_hub_stopping(st->gw->hub) || pc_now_ms() - last >= GW_WRITE_TIMEOUT_MS)
            break;
        pfd.fd = st->fd;
        pfd.events = POLLOUT;
        pfd.revents = 0;
        poll(&pfd, 1, 200); /* in slices: a stop is noticed */
    }
    return (int)done;
}

/* Write out the buffer. A short write means the client is gone (or stopped reading). */
static int st_flush(struct sse_stream *st)
{
    int n;

    if (st->out.len == 0)
        return STEP_OK;
    if (st->fd >= 0)
        n = fd_write(st, st->out.data, st->out.len);
    else
        n = mg_write(st->conn, st->out.data, st->out.len);
    if (n < 0 || (size_t)n != st->out.len) {
        pc_debug("sse", "%s: client gone (wrote %d of %zu bytes)", st->src[0].key, n, st->out.len);
        pc_buf_reset(&st->out);
        return STEP_DEAD;
    }
    pc_buf_reset(&st->out);
    st->next_ping = pc_now_ms() + st->ping_ms;
    return STEP_OK;
}

static int st_ping(struct sse_stream *st)
{
    if (pc_sse_comment(&st->out, "ping") != 0)
        return STEP_FATAL;
    return st_flush(st);
}

static int st_ping_if_due(struct sse_stream *st)
{
    return pc_now_ms() >= st->next_ping ? st_ping(st) : STEP_OK;
}

/*
 * Wait for anything on the stream's channels until @p until_ms; with
 * @p until_ready (single channel), not at all once its ring is set up.
 */
static int st_wait(struct sse_stream *st, long long until_ms, int until_ready)
{
    enum gw_poll w;

    if (st->waiter) {
        gw_waiter_wait(st->waiter, until_ms);
        return gw_hub_stopping(st->gw->hub) ? STEP_DEAD : STEP_OK;
    }
    w = gw_channel_wait(st->src[0].ch, until_ms, until_ready);
    if (w == GW_POLL_STOP)
        return STEP_DEAD;
    if (w == GW_POLL_BAD)
        return STEP_FATAL;
    return STEP_OK;
}

/* Sleep until @p until_ms, keeping the stream alive with pings. */
static int st_sleep(struct sse_stream *st, long long until_ms)
{
    int rc = st_flush(st);

    while (rc == STEP_OK && pc_now_ms() < until_ms) {
        rc = st_wait(st, until_ms < st->next_ping ? until_ms : st->next_ping, 0);
        if (rc == STEP_OK)
            rc = st_ping_if_due(st);
    }
    return rc;
}

/* Wait before retrying Redis. */
static int st_backoff(struct sse_stream *st)
{
    return st_sleep(st, pc_now_ms() + pc_backoff_next(&st->bo));
}

/* The key of @p src is not a stream: say so in a comment, then the stream ends. */
static int st_bad(struct sse_stream *st, const struct sse_src *src)
{
    char msg[PC_CHANNEL_MAX + 64];

    if (st->multi)
        snprintf(msg, sizeof(msg), "error: channel %s: its key is not a stream", src->name);
    else
        snprintf(msg, sizeof(msg), "error: this channel's key is not a stream");
    pc_buf_reset(&st->out);
    if (pc_sse_comment(&st->out, msg) == 0)
        st_flush(st);
    return STEP_FATAL;
}

/* ------------------------------------------------------------------------ */
/* Event ids of several channels                                             */
/* ------------------------------------------------------------------------ */

/* Append the cursor of @p src: "" for 0-0 (from the start), else "<ms>-<seq>". */
static int idbuf_cursor(struct pc_buf *b, struct sse_src *src)
{
    /* formatted again only when it moved: most cursors stand still between two events */
    if (pc_id_cmp(&src->cur_of, &src->cursor) != 0) { /* (calloc: 0-0 is "") */
        src->cur_of = src->cursor;
        if (pc_id_is_zero(&src->cursor))
            src->cur_str[0] = '\0';
        else
            pc_id_format(&src->cursor, src->cur_str);
    }
    return pc_buf_append_str(b, src->cur_str);
}

/*
 * The id: line of the events of source @p k: "<k>:<c0>,..,<ck-1>," before
 * the entry's id and ",<ck+1>,..,<cn-1>" after it. Several channels only:
 * the other cursors do not move while source k sends.
 */
static int st_idfmt(struct sse_stream *st, unsigned k, struct gw_idfmt *f)
{
    struct pc_buf *b = &st->idbuf;
    size_t prelen;
    int rc;

    pc_buf_reset(b);
    rc = pc_buf_printf(b, "%u:", k);
    for (unsigned i = 0; i < k && rc == 0; i++)
        if ((rc = idbuf_cursor(b, &st->src[i])) == 0)
            rc = pc_buf_append(b, ",", 1);
    prelen = b->len;
    for (unsigned i = k + 1; i < st->n && rc == 0; i++)
        if ((rc = pc_buf_append(b, ",", 1)) == 0)
            rc = idbuf_cursor(b, &st->src[i]);
    if (rc != 0)
        return STEP_FATAL;
    f->pre = b->data;
    f->prelen = prelen;
    f->post = b->data + prelen;
    f->postlen = b->len - prelen;
    f->mark_partial = st->mark_partial;
    return STEP_OK;
}

/*
 * Parse a multi-channel id for @p n channels into @p cursors: strictly
 * "<index>:<part>,...,<part>", index a decimal below n without leading zeros,
 * exactly n parts, each empty (from the start) or "<ms>-<seq>".
 * @return 0 or -1.
 */
static int parse_multi_id(const char *s, size_t len, unsigned n, struct pc_id *cursors)
{
    const char *end = s + len, *p = s;
    unsigned long idx = 0;
    unsigned i = 0;

    if (p == end || *p < '0' || *p > '9' || (*p == '0' && p + 1 < end && p[1] != ':'))
        return -1;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        idx = idx * 10 + (unsigned long)(*p - '0');
        if (idx >= n)
            return -1;
    }
    if (p == end || *p != ':')
        return -1;
    p++;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;

        if (i >= n)
            return -1;
        if (stop == p)
            cursors[i] = (struct pc_id){0, 0};
        else if (pc_id_parse(p, (size_t)(stop - p), 0, &cursors[i]) != 0)
            return -1;
        i++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return i == n ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Redis                                                                     */
/* ------------------------------------------------------------------------ */

static int is_wrongtype(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0;
}

/* One command through the pool. NULL (counted, logged at debug) when Redis is unreachable. */
static redisReply *src_command(struct sse_stream *st, const struct sse_src *src, int argc,
                               const char **argv)
{
    size_t argvlen[8];
    char err[256];
    redisReply *r;

    for (int i = 0; i < argc; i++)
        argvlen[i] = strlen(argv[i]);
    r = gw_rpool_command(st->gw->pool, GW_POOL_WAIT_MS, err, sizeof(err), argc, argv, argvlen);
    if (!r) {
        pc_debug("sse", "%s: %s", src->key, err);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        gw_metrics_add(&st->gw->metrics->redis_errors, 1);
        if (!is_wrongtype(r))
            pc_warn("sse", "redis: %s %s: %s", argv[0], src->key, r->str);
    }
    return r;
}

/* The id of an entry reply ([id, [field, value, ...]]). */
static int entry_id(const redisReply *e, struct pc_id *id)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    return pc_id_parse(e->element[0]->str, e->element[0]->len, 0, id) == 0 ? 0 : -1;
}

static const redisReply *entry_field(const redisReply *e, const char *name, size_t nl)
{
    const redisReply *fields;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
        return NULL;
    fields = e->element[1];
    if (fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i];

        if (f->type == REDIS_REPLY_STRING && f->len == nl && memcmp(f->str, name, nl) == 0)
            return fields->element[i + 1]->type == REDIS_REPLY_STRING ? fields->element[i + 1]
                                                                      : NULL;
    }
    return NULL;
}

/*
 * Tell the client that entries after @p requested were trimmed away: `event:
 * gap` with {"requested", "first_available"} (and "channel" on a
 * multi-channel stream; no id: line, so the client's resume point does not
 * move).
 */
static int src_send_gap(struct sse_stream *st, struct sse_src *src, const struct pc_id *requested,
                        const struct pc_id *first_id)
{
    char json[PC_CHANNEL_MAX + 192], req[PC_ID_STRLEN], fa[PC_ID_STRLEN];

    pc_id_format(requested, req);
    pc_id_format(first_id, fa);
    /* channel names need no JSON escaping ([A-Za-z0-9._:@-]) */
    if (st->multi)
        snprintf(json, sizeof(json),
                 "{\"channel\":\"%s\",\"requested\":\"%s\",\"first_available\":\"%s\"}", src->name,
                 req, fa);
    else
        snprintf(json, sizeof(json), "{\"requested\":\"%s\",\"first_available\":\"%s\"}", req, fa);
    pc_debug("sse", "%s: gap %s", src->key, json);
    src->gap_sent = 1;
    src->gap_first = *first_id;
    if (pc_sse_event(&st->out, NULL, "gap", json, strlen(json)) != 0)
        return STEP_FATAL;
    return st_flush(st);
}

/*
 * XINFO STREAM of the source's key: @p first gets the first entry's id (when
 * there is one, else *has_first is 0) and @p trimmed is set when entries may
 * have been removed (entries-added exceeds length, or Redis < 7 cannot tell).
 * A missing key is an empty stream.
 */
static int src_xinfo(struct sse_stream *st, struct sse_src *src, struct pc_id *first_id,
                     int *has_first, int *trimmed)
{
    const char *argv[3] = {"XINFO", "STREAM", src->key};
    redisReply *r;
    long long length = -1, added = -1;
    const redisReply *first = NULL;
    int rc = STEP_OK;

    *has_first = 0;
    *trimmed = 0;

    r = src_command(st, src, 3, argv);
    if (!r)
        return STEP_REDIS;
    if (r->type == REDIS_REPLY_ERROR) {
        /* no such key: nothing retained, nothing to report */
        rc = is_wrongtype(r) ? STEP_FATAL : strstr(r->str, "no such key") ? STEP_OK : STEP_REDIS;
        freeReplyObject(r);
        return rc;
    }
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];

            if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
                continue;
            if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER)
                length = v->integer;
            else if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER)
                added = v->integer;
            else if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY)
                first = v;
        }
    }
    if (first && entry_id(first, first_id) == 0)
        *has_first = 1;
    /* Without entries-added (Redis < 7) a trim cannot be ruled out. */
    *trimmed = added < 0 || length < 0 || added > length;
    freeReplyObject(r);
    return rc;
}

/*
 * If entries after @p requested may have been trimmed away, send `gap`.
 * Redis 7.0 signs: the requested id is before the first retained entry and
 * entries-added exceeds the length.
 */
static int src_check_gap(struct sse_stream *st, struct sse_src *src, const struct pc_id *requested)
{
    struct pc_id first_id;
    int has_first, trimmed, rc;

    if (st_flush(st) != STEP_OK)
        return STEP_DEAD;
    rc = src_xinfo(st, src, &first_id, &has_first, &trimmed);
    if (rc != STEP_OK || !has_first || !trimmed || pc_id_cmp(requested, &first_id) >= 0)
        return rc;
    return src_send_gap(st, src, requested, &first_id);
}

/* The start point: from=end, tail=N (needs Redis), an explicit id (gap check), or 0-0. */
static int src_resolve_start(struct sse_stream *st, struct sse_src *src)
{
    redisReply *r = NULL;
    struct pc_id id = {0, 0};
    int rc = STEP_OK;

    switch (src->mode) {
    case START_BEGIN:
        src->cursor = id;
        return STEP_OK;
    case START_ID:
        return src_check_gap(st, src, &src->cursor);
    case START_END:
    case START_TAIL: {
        unsigned long long want = src->mode == START_END ? 1 : st->tail + 1;
        char count[32];

        snprintf(count, sizeof(count), "%llu", want);
        if (want <= SSE_TAIL_PLAIN_MAX + 1) {
            const char *argv[6] = {"XREVRANGE", src->key, "+", "-", "COUNT", count};

            r = src_command(st, src, 6, argv);
        } else {
            /* Only the id of the (N+1)-th newest entry crosses the network. */
            static const char script[] =
                "local r = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1]) "
                "if #r < tonumber(ARGV[1]) then return {} end "
                "return {r[#r]}";
            const char *argv[5] = {"EVAL", script, "1", src->key, count};

            r = src_command(st, src, 5, argv);
        }
        if (!r)
            return STEP_REDIS;
        if (r->type == REDIS_REPLY_ARRAY) {
            /* fewer than N+1 entries: everything (cursor 0-0); else after the (N+1)-th */
            if (r->elements > 0 && (src->mode == START_END || r->elements == (size_t)want ||
                                    want > SSE_TAIL_PLAIN_MAX + 1)) {
                if (entry_id(r->element[r->elements - 1], &id) != 0)
                    rc = STEP_REDIS;
            }
        } else {
            rc = is_wrongtype(r) ? STEP_FATAL : STEP_REDIS;
        }
        freeReplyObject(r);
        if (rc == STEP_OK)
            src->cursor = id;
        return rc;
    }
    }
    return STEP_FATAL;
}

/* Resolve the start point or check for a gap, whichever is pending. */
static int src_prepare(struct sse_stream *st, struct sse_src *src)
{
    int rc = src->start_pending ? src_resolve_start(st, src) : src_check_gap(st, src, &src->cursor);

    if (rc == STEP_OK) {
        src->start_pending = 0;
        src->gap_check = 0;
        pc_backoff_reset(&st->bo);
    }
    return rc;
}

/* COUNT of the next page: about st->page_bytes of entries, judged by the last page. */
static unsigned src_page_count(const struct sse_stream *st, const struct sse_src *src)
{
    size_t n;

    if (src->entry_avg == 0)
        return st->page_max < SSE_PAGE_FIRST ? st->page_max : SSE_PAGE_FIRST;
    n = st->page_bytes / src->entry_avg;
    if (n < 1)
        n = 1;
    return n > st->page_max ? st->page_max : (unsigned)n;
}

/* Note the average size of the entries of page @p r (bytes of ids, fields and values). */
static void src_note_page_size(struct sse_src *src, const redisReply *r)
{
    size_t total = 0;

    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2)
            continue;
        total += e->element[0]->len + 16;
        if (e->element[1]->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < e->element[1]->elements; j++)
                total += e->element[1]->element[j]->len + 16;
    }
    src->entry_avg = r->elements > 0 ? total / r->elements + 1 : src->entry_avg;
}

/*
 * The first retained entry and the page, read at one instant: a trim that
 * removes entries after the cursor between two pages cannot go unnoticed.
 */
static const char page_script[] =
    "local f = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1) "
    "return {f, redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])}";

/*
 * Read the page of entries after the cursor into src->page, up to base_id
 * when the ring is ready. When the cursor is past 0-0 and the first retained
 * entry is after it, entries after the cursor may have been trimmed away
 * since the last page: `gap` goes out first (src_check_gap's signs). @return
 * 1 when the page has entries, 0 when there were none (the cursor then jumps
 * to base_id when known), or a STEP_* error.
 */
static int src_fetch_page(struct sse_stream *st, struct sse_src *src, const struct gw_ring_pos *pos)
{
    char start[PC_ID_STRLEN + 1], end[PC_ID_STRLEN], count[16];
    const struct pc_id zero = {0, 0};
    int check = pc_id_cmp(&src->cursor, &zero) != 0;
    redisReply *r, *page;
    int rc;

    /* what is gathered goes out before the stream waits for Redis */
    if (st_flush(st) != STEP_OK)
        return STEP_DEAD;
    start[0] = '(';
    pc_id_format(&src->cursor, start + 1);
    if (pos->ready)
        pc_id_format(&pos->base_id, end);
    else
        snprintf(end, sizeof(end), "+");
    snprintf(count, sizeof(count), "%u", src_page_count(st, src));
    if (check) {
        const char *argv[7] = {"EVAL", page_script, "1", src->key, start, end, count};

        r = src_command(st, src, 7, argv);
    } else {
        const char *argv[6] = {"XRANGE", src->key, start, end, "COUNT", count};

        r = src_command(st, src, 6, argv);
    }
    if (!r)
        return STEP_REDIS;
    if (r->type != REDIS_REPLY_ARRAY ||
        (check && (r->elements != 2 || r->element[0]->type != REDIS_REPLY_ARRAY ||
                   r->element[1]->type != REDIS_REPLY_ARRAY))) {
        rc = is_wrongtype(r) ? STEP_FATAL : STEP_REDIS;
        freeReplyObject(r);
        return rc;
    }
    pc_backoff_reset(&st->bo);
    page = r;
    if (check) {
        const redisReply *f = r->element[0];
        struct pc_id first_id, xfirst;
        int has_first, trimmed;

        page = r->element[1];
        r->element[1] = NULL; /* the page outlives the script's reply */
        if (f->elements > 0 && entry_id(f->element[0], &first_id) == 0 &&
            pc_id_cmp(&src->cursor, &first_id) < 0 &&
            !(src->gap_sent && pc_id_cmp(&first_id, &src->gap_first) <= 0)) {
            /* the cursor's entry is gone: trimmed (or deleted) since the last page? (not
             * when the client was already told that everything before first_id is lost) */
            rc = src_xinfo(st, src, &xfirst, &has_first, &trimmed);
            if (rc == STEP_OK && trimmed)
                rc = src_send_gap(st, src, &src->cursor, &first_id);
            if (rc != STEP_OK) {
                freeReplyObject(r);
                freeReplyObject(page);
                return rc;
            }
        }
        freeReplyObject(r);
    }
    if (page->elements == 0) {
        /* Nothing retained between the cursor and base_id: the ring takes over. */
        if (pos->ready && pc_id_cmp(&src->cursor, &pos->base_id) < 0)
            src->cursor = pos->base_id;
        freeReplyObject(page);
        return 0;
    }
    src_note_page_size(src, page);
    src->page = page;
    src->page_i = 0;
    return 1;
}

static void src_drop_page(struct sse_src *src)
{
    if (src->page)
        freeReplyObject(src->page);
    src->page = NULL;
    src->page_i = 0;
}

/* Page entry @p e can be sent: it has data and a valid event name (else it is counted). */
static int page_entry_ok(struct sse_stream *st, const redisReply *e, const redisReply **data,
                         const redisReply **ev)
{
    *data = entry_field(e, "data", 4);
    *ev = entry_field(e, "event", 5);
    if (!*data || (*ev && !pc_event_valid((*ev)->str, (*ev)->len))) {
        gw_metrics_add(&st->gw->metrics->sse_events_dropped, 1);
        return 0;
    }
    return 1;
}

/* The entry's `partial` field is "1": it does not end its line. */
static int entry_partial(const redisReply *e)
{
    const redisReply *p = entry_field(e, "partial", 7);

    return p && p->len == 1 && p->str[0] == '1';
}

/*
 * Append one page entry as an event written as @p fmt says (NULL: the stream
 * id, partial entries not marked).
 */
static int st_append_entry(struct sse_stream *st, const struct gw_idfmt *fmt, const redisReply *e,
                           const redisReply *ev, const redisReply *data)
{
    const char *id = e->element[0]->str;
    const char *name = ev ? ev->str : NULL;
    char marked[GW_PARTIAL_NAME_SIZE];
    size_t old = st->out.len;
    int rc;

    if (fmt && fmt->mark_partial && entry_partial(e))
        name = gw_partial_name(name, marked);
    if (!fmt || (fmt->prelen == 0 && fmt->postlen == 0))
        return pc_sse_event(&st->out, id, name, data->str, data->len);
    if ((rc = gw_idfmt_line(&st->out, fmt, id, e->element[0]->len)) != 0)
        return rc;
    rc = pc_sse_event(&st->out, NULL, name, data->str, data->len);
    if (rc != 0) {
        st->out.len = old;
        st->out.data[old] = '\0';
    }
    return rc;
}

/*
 * Send the entries of src->page from page_i on that pass the filter, stopping
 * before the first one beyond @p limit (NULL: none); the page is dropped once
 * it is all passed. @return STEP_OK, STEP_DEAD or STEP_FATAL.
 */
static int src_send_page(struct sse_stream *st, struct sse_src *src, const struct gw_idfmt *fmt,
                         const struct gw_limit *limit)
{
    struct gw_metrics *m = st->gw->metrics;
    const redisReply *r = src->page;
    unsigned long long sent = 0;
    int rc = STEP_OK;

    for (; src->page_i < r->elements; src->page_i++) {
        const redisReply *e = r->element[src->page_i];
        const redisReply *data, *ev;
        struct pc_id id;
        int erc;

        if (entry_id(e, &id) != 0)
            continue;
        if (gw_limit_beyond(limit, &id))
            break;
        if (page_entry_ok(st, e, &data, &ev) && gw_filter_match(&st->filter, ev ? ev->str : NULL)) {
            if (st->out.len >= SSE_WRITE_MAX && st_flush(st) != STEP_OK) {
                rc = STEP_DEAD;
                break;
            }
            erc = st_append_entry(st, fmt, e, ev, data);
            if (erc == PC_ETOOBIG && st->out.len > 0) {
                if (st_flush(st) != STEP_OK) {
                    rc = STEP_DEAD;
                    break;
                }
                erc = st_append_entry(st, fmt, e, ev, data);
            }
            if (erc != 0) {
                pc_warn("sse", "%s %s: entry of %zu bytes cannot be sent (%s), skipped", src->key,
                        e->element[0]->str, data->len, pc_strerror(erc));
                gw_metrics_add(&m->sse_events_dropped, 1);
            } else {
                sent++;
            }
        }
        src->cursor = id;
    }
    if (src->page_i == r->elements)
        src_drop_page(src);
    gw_metrics_add(&m->sse_events_sent, sent);
    gw_metrics_add(&m->sse_events_replayed, sent);
    return rc;
}

/*
 * Pass the page entries that are not sent (no data, bad event name, filtered
 * out) and note the id of the next one in src->next. @return 1 when there is
 * one, 0 when the page is used up (and dropped).
 */
static int src_page_next(struct sse_stream *st, struct sse_src *src)
{
    const redisReply *r = src->page;

    for (; src->page_i < r->elements; src->page_i++) {
        const redisReply *e = r->element[src->page_i];
        const redisReply *data, *ev;
        struct pc_id id;

        if (entry_id(e, &id) != 0)
            continue;
        if (page_entry_ok(st, e, &data, &ev) && gw_filter_match(&st->filter, ev ? ev->str : NULL)) {
            src->next = id;
            src->has_next = 1;
            return 1;
        }
        src->cursor = id;
    }
    src_drop_page(src);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One channel                                                               */
/* ------------------------------------------------------------------------ */

static void stream_live_done(struct gw_live *lv, enum gw_live_end why);

/* Hand a live stream (cursor in the ring, nothing unsent) to a fanout writer. @return 0 or -1. */
static int stream_go_live(struct sse_stream *st)
{
    struct sse_src *s = &st->src[0];

    memset(&st->lv, 0, sizeof(st->lv));
    st->lv.fd = st->fd;
    st->lv.ch = s->ch;
    st->lv.cursor = &s->cursor;
    st->lv.filter = &st->filter;
    st->lv.fmt = st->fmtp;
    st->lv.out = &st->out;
    st->lv.done = stream_live_done;
    return gw_fanout_adopt(st->gw->fanout, &st->lv);
}

/*
 * One channel: replay, then live. A stream with its own socket goes to the
 * fanout as soon as it is live. @return 1 when it did (it is not this
 * thread's any more), 0 when the stream has ended.
 */
static int stream_run_one(struct sse_stream *st)
{
    struct gw_metrics *m = st->gw->metrics;
    struct sse_src *s = &st->src[0];
    const struct gw_idfmt *f;
    int to_fanout = st->fd >= 0; /* a taken socket: the fanout can serve it */

    /* on /api/events the id is "0:<id>": nothing else moves */
    st->fmtp = NULL;
    if (st->multi) {
        if (st_idfmt(st, 0, &st->fmt) != STEP_OK)
            return 0;
        st->fmtp = &st->fmt;
    } else if (st->mark_partial) {
        memset(&st->fmt, 0, sizeof(st->fmt)); /* the stream id alone */
        st->fmt.mark_partial = 1;
        st->fmtp = &st->fmt;
    }
    f = st->fmtp;
    while (!gw_hub_stopping(st->gw->hub)) {
        struct gw_ring_pos pos = {0, {0, 0}};
        enum gw_poll p;
        size_t n = 0;
        int rc;

        if (s->start_pending || s->gap_check) {
            rc = src_prepare(st, s);
            if (rc != STEP_OK && (rc != STEP_REDIS || st_backoff(st) != STEP_OK))
                return 0;
            continue;
        }
        /* with the fanout, no waiting here: nothing new means live */
        p = gw_channel_poll(s->ch, &s->cursor, &st->filter, f, NULL, &st->out, SSE_WRITE_MAX,
                            to_fanout ? 0 : st->next_ping, &n, &pos);
        switch (p) {
        case GW_POLL_DATA:
            s->live = 1;
            if (st_flush(st) != STEP_OK)
                return 0;
            gw_metrics_add(&m->sse_events_sent, n);
            continue;
        case GW_POLL_TIMEOUT:
            s->live = 1;
            if (to_fanout) {
                if (stream_go_live(st) == 0)
                    return 1;
                return 0; /* stopping */
            }
            if (st_ping(st) != STEP_OK)
                return 0;
            continue;
        case GW_POLL_BEHIND:
            if (s->live) {
                /* fell behind the ring: were entries trimmed from under the cursor? */
                s->live = 0;
                s->gap_check = 1;
                continue;
            }
            rc = src_fetch_page(st, s, &pos);
            if (rc == 1)
                rc = src_send_page(st, s, f, NULL) == STEP_OK ? st_flush(st) : STEP_DEAD;
            else if (rc == 0 && !pos.ready && (rc = st_wait(st, st->next_ping, 1)) == STEP_OK)
                rc = st_ping_if_due(st); /* woken when the ring is set up */
            if (rc != STEP_OK && (rc != STEP_REDIS || st_backoff(st) != STEP_OK))
                return 0;
            continue;
        case GW_POLL_BAD:
            st_bad(st, s);
            return 0;
        case GW_POLL_STOP:
        case GW_POLL_ERROR:
            return 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Several channels: merged by id                                            */
/* ------------------------------------------------------------------------ */

/*
 * Find the next entry of @p src to send: from its page, else from the ring,
 * else a new page. On STEP_OK exactly one holds: has_next (next is set), idle
 * (nothing yet: wait for its waiter bit), or a start/gap check is pending.
 */
static int src_look(struct sse_stream *st, struct sse_src *src)
{
    src->has_next = 0;
    src->idle = 0;
    for (;;) {
        struct gw_ring_pos pos = {0, {0, 0}};
        int rc;

        if (src->page && src_page_next(st, src))
            return STEP_OK;
        switch (gw_channel_peek(src->ch, &src->cursor, &st->filter, &src->next, &pos)) {
        case GW_POLL_DATA:
            src->live = 1;
            src->has_next = 1;
            return STEP_OK;
        case GW_POLL_TIMEOUT:
            src->live = 1;
            src->idle = 1;
            return STEP_OK;
        case GW_POLL_BEHIND:
            if (src->live) {
                src->live = 0;
                src->gap_check = 1;
                return STEP_OK;
            }
            rc = src_fetch_page(st, src, &pos);
            if (rc == 0 && !pos.ready) {
                src->idle = 1; /* the ring is being set up: its bit fires when it is */
                return STEP_OK;
            }
            if (rc < 0)
                return rc;
            continue;
        case GW_POLL_BAD:
            return st_bad(st, src);
        case GW_POLL_STOP:
            return STEP_DEAD;
        default:
            return STEP_FATAL;
        }
    }
}

/* Send from @p src up to @p limit (NULL: as much as there is). */
static int src_send(struct sse_stream *st, struct sse_src *src, const struct gw_limit *limit)
{
    struct gw_ring_pos pos;
    struct gw_idfmt fmt;
    size_t n = 0;

    src->has_next = 0;
    if (st_idfmt(st, src->index, &fmt) != STEP_OK)
        return STEP_FATAL;
    if (src->page)
        return src_send_page(st, src, &fmt, limit);
    switch (gw_channel_poll(src->ch, &src->cursor, &st->filter, &fmt, limit, &st->out,
                            SSE_WRITE_MAX, 0, &n, &pos)) {
    case GW_POLL_DATA:
        gw_metrics_add(&st->gw->metrics->sse_events_sent, n);
        return n == 0 ? st_flush(st) : STEP_OK; /* n == 0: the buffer is full */
    case GW_POLL_TIMEOUT:
    case GW_POLL_BEHIND: /* the next entry left the ring: src_look sees it */
        return STEP_OK;
    case GW_POLL_BAD:
        return st_bad(st, src);
    case GW_POLL_STOP:
        return STEP_DEAD;
    default:
        return STEP_FATAL;
    }
}

/* Order of the next entries: by id, then by the channel's index (ids of two streams may tie). */
static int src_before(const struct sse_src *a, const struct sse_src *b)
{
    int c = pc_id_cmp(&a->next, &b->next);

    return c < 0 || (c == 0 && a->index < b->index);
}

static void stream_run_merge(struct sse_stream *st)
{
    uint64_t fired = 0;

    while (!gw_hub_stopping(st->gw->hub)) {
        struct sse_src *best = NULL, *second = NULL;
        struct gw_limit limit;
        int rc = STEP_OK, unsure = 0;

        /* Until every channel knows where it stands, nothing is sent: the order depends on it. */
        for (unsigned i = 0; i < st->n && rc == STEP_OK; i++)
            if (st->src[i].start_pending || st->src[i].gap_check)
                rc = src_prepare(st, &st->src[i]);
        fired |= gw_waiter_wait(st->waiter, 0);
        for (unsigned i = 0; i < st->n && rc == STEP_OK; i++) {
            struct sse_src *s = &st->src[i];

            if (!s->has_next && (!s->idle || (fired & ((uint64_t)1 << i))))
                rc = src_look(st, s);
        }
        if (rc != STEP_OK) {
            if (rc == STEP_REDIS && st_backoff(st) == STEP_OK)
                continue;
            return;
        }
        fired = 0;
        for (unsigned i = 0; i < st->n; i++) {
            struct sse_src *s = &st->src[i];

            if (!s->has_next) {
                unsure |= !s->idle;
                continue;
            }
            if (!best || src_before(s, best)) {
                second = best;
                best = s;
            } else if (!second || src_before(s, second)) {
                second = s;
            }
        }
        if (unsure) /* a start point or gap check came up */
            continue;
        if (!best) {
            /* every channel is idle: wait for one of them, or ping */
            if (st_flush(st) != STEP_OK)
                return;
            fired = gw_waiter_wait(st->waiter, st->next_ping);
            if (gw_hub_stopping(st->gw->hub) || st_ping_if_due(st) != STEP_OK)
                return;
            continue;
        }
        if (second) {
            /* the oldest sends up to the second oldest; equal ids go by index */
            limit.id = second->next;
            limit.inclusive = best->index < second->index;
        }
        if (src_send(st, best, second ? &limit : NULL) != STEP_OK)
            return;
        if (st->out.len >= SSE_WRITE_MAX && st_flush(st) != STEP_OK)
            return;
    }
}

/* ------------------------------------------------------------------------ */
/* The request                                                               */
/* ------------------------------------------------------------------------ */

static void stream_free(struct sse_stream *st)
{
    if (!st)
        return;
    for (unsigned i = 0; st->src && i < st->n; i++)
        src_drop_page(&st->src[i]);
    free(st->src);
    pc_buf_free(&st->out);
    pc_buf_free(&st->idbuf);
    free(st);
}

static struct sse_stream *stream_new(struct gw_ctx *gw, struct mg_connection *conn, unsigned n)
{
    struct sse_stream *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    st->src = calloc(n, sizeof(*st->src));
    if (!st->src) {
        free(st);
        return NULL;
    }
    st->gw = gw;
    st->conn = conn;
    st->fd = -1;
    st->n = n;
    for (unsigned i = 0; i < n; i++)
        st->src[i].index = i;
    pc_buf_init(&st->out, SSE_OUT_MAX);
    pc_buf_init(&st->idbuf, SSE_MULTI_ID_MAX);
    return st;
}

/*
 * Parse a stream id given as Last-Event-ID or lastEventId; with @p apply, into
 * the sources' cursors. @return 0, or the 400 response already sent.
 */
static int parse_start_id(struct sse_stream *st, const char *what, const char *v, size_t len,
                          int apply)
{
    struct pc_id ids[SSE_CHANNELS_MAX];
    char q[128];

    if (!st->multi) {
        if (pc_id_parse(v, len, 0, &ids[0]) != 0) {
            gw_http_quote(v, len, q, sizeof(q));
            return gw_http_error(st->conn, st->gw, 400, NULL,
                                 "%s \"%s\": invalid stream id (expected <ms>-<seq>)", what, q);
        }
    } else if (parse_multi_id(v, len, st->n, ids) != 0) {
        gw_http_quote(v, len, q, sizeof(q));
        return gw_http_error(st->conn, st->gw, 400, NULL,
                             "%s \"%s\": invalid event id (expected <index>:<id>,<id>,... with "
                             "one <ms>-<seq> or empty part per channel, %u here)",
                             what, q, st->n);
    }
    for (unsigned i = 0; apply && i < st->n; i++)
        st->src[i].cursor = ids[i];
    return 0;
}

/* Parse the start point and filters. @return 0, or the 400 response already sent. */
static int stream_parse(struct sse_stream *st)
{
    struct mg_connection *conn = st->conn;
    const struct gw_ctx *gw = st->gw;
    const char *hdr = mg_get_header(conn, "Last-Event-ID");
    char v[SSE_MULTI_ID_MAX], q[128];
    int have_id = 0, have_tail = 0, from_end = 0, n, rc;
    unsigned long long tail = 0;

    if (hdr && *hdr) {
        if ((rc = parse_start_id(st, "Last-Event-ID", hdr, strlen(hdr), 1)) != 0)
            return rc;
        have_id = 1;
    }
    n = gw_http_query(conn, "lastEventId", 0, v, sizeof(v));
    if (n == -2)
        return gw_http_error(conn, gw, 400, NULL, "lastEventId: too long");
    if (n > 0) {
        /* the header wins, but a malformed query is an error all the same */
        if ((rc = parse_start_id(st, "lastEventId", v, (size_t)n, !have_id)) != 0)
            return rc;
        have_id = 1;
    }
    n = gw_http_query(conn, "tail", 0, v, sizeof(v));
    if (n == -2 || (n >= 0 && gw_http_parse_uint(v, SSE_TAIL_MAX, &tail) != 0)) {
        gw_http_quote(v, n > 0 ? (size_t)n : 0, q, sizeof(q));
        return gw_http_error(conn, gw, 400, NULL, "tail \"%s\": expected a number 0-%llu", q,
                             SSE_TAIL_MAX);
    }
    have_tail = n >= 0;
    n = gw_http_query(conn, "from", 0, v, sizeof(v));
    if (n >= 0 && strcmp(v, "start") != 0 && strcmp(v, "end") != 0) {
        gw_http_quote(v, (size_t)n, q, sizeof(q));
        return gw_http_error(conn, gw, 400, NULL, "from \"%s\": expected start or end", q);
    }
    if (n == -2)
        return gw_http_error(conn, gw, 400, NULL, "from: expected start or end");
    from_end = n >= 0 && strcmp(v, "end") == 0;
    for (size_t occ = 0;; occ++) {
        n = gw_http_query(conn, "event", occ, v, sizeof(v));
        if (n == -1)
            break;
        if (occ >= SSE_FILTERS_MAX)
            return gw_http_error(conn, gw, 400, NULL, "event: at most %d filters", SSE_FILTERS_MAX);
        if (n < 0 || !pc_event_valid(v, (size_t)n)) {
            gw_http_quote(v, n > 0 ? (size_t)n : 0, q, sizeof(q));
            return gw_http_error(conn, gw, 400, NULL,
                                 "event \"%s\": invalid event name (allowed: 1-64 bytes of "
                                 "A-Z a-z 0-9 _ -)",
                                 q);
        }
        memcpy(st->filter_buf[occ], v, (size_t)n + 1);
        st->filter_names[occ] = st->filter_buf[occ];
        st->filter.n = (int)occ + 1;
    }
    st->filter.names = st->filter_names;
    for (size_t occ = 0;; occ++) {
        n = gw_http_query(conn, "partial", occ, v, sizeof(v));
        if (n == -1)
            break;
        if (n != 4 || memcmp(v, "mark", 4) != 0) {
            gw_http_quote(v, n > 0 ? (size_t)n : 0, q, sizeof(q));
            return gw_http_error(conn, gw, 400, NULL, "partial \"%s\": expected mark", q);
        }
        st->mark_partial = 1;
    }

    st->tail = tail;
    for (unsigned i = 0; i < st->n; i++) {
        struct sse_src *s = &st->src[i];

        if (have_id)
            /* on /api/events an empty part is "from the start", like from=start: no gap check */
            s->mode = st->multi && pc_id_is_zero(&s->cursor) ? START_BEGIN : START_ID;
        else if (have_tail)
            s->mode = START_TAIL;
        else if (from_end)
            s->mode = START_END;
        else
            s->mode = START_BEGIN;
        s->start_pending = s->mode != START_BEGIN;
    }
    return 0;
}

/*
 * The channels of GET /api/events: 1-SSE_CHANNELS_MAX `channel` parameters,
 * each a valid name, no name twice. @return 0, or the 400 response already sent.
 */
static int parse_channels(struct mg_connection *conn, const struct gw_ctx *gw, unsigned *np,
                          char (*names)[PC_CHANNEL_MAX + 1])
{
    char v[PC_CHANNEL_MAX + 2], msg[512];
    unsigned n = 0;

    for (;;) {
        int len = gw_http_query(conn, "channel", n, v, sizeof(v));

        if (len == -1)
            break;
        if (n == SSE_CHANNELS_MAX)
            return gw_http_error(conn, gw, 400, NULL, "channel: at most %d channels",
                                 SSE_CHANNELS_MAX);
        if (len == -2)
            return gw_http_error(conn, gw, 400, NULL,
                                 "channel: name too long (allowed: 1-%d bytes of A-Z a-z 0-9 . _ "
                                 ": @ -)",
                                 PC_CHANNEL_MAX);
        if (len < 0 || !pc_channel_valid(v, (size_t)len)) {
            pc_channel_explain(v, len < 0 ? 0 : (size_t)len, msg, sizeof(msg));
            return gw_http_error(conn, gw, 400, NULL, "%s", msg);
        }
        for (unsigned i = 0; i < n; i++)
            if (strcmp(names[i], v) == 0)
                return gw_http_error(conn, gw, 400, NULL, "channel \"%s\": given twice", v);
        memcpy(names[n++], v, (size_t)len + 1);
    }
    if (n == 0)
        return gw_http_error(conn, gw, 400, NULL,
                             "channel: missing (give 1-%d channel=NAME parameters)",
                             SSE_CHANNELS_MAX);
    *np = n;
    return 0;
}

static int stream_open(struct sse_stream *st)
{
    char cors[1200];

    gw_http_cors_headers(st->gw, cors, sizeof(cors));
    if (st->conn)
        mg_disable_connection_keep_alive(st->conn);
    if (pc_buf_printf(&st->out,
                      "HTTP/1.1 200 OK\r\n"
                      "Content-Type: text/event-stream; charset=utf-8\r\n"
                      "Cache-Control: no-cache\r\n"
                      "X-Accel-Buffering: no\r\n"
                      "Connection: close\r\n"
                      "%s\r\n",
                      cors) != 0 ||
        pc_sse_retry(&st->out, st->gw->cfg->retry_ms) != 0)
        return STEP_FATAL;
    return st_flush(st);
}

/* The end of a stream: leave the channels, give the slot back, close, free. */
static void stream_finish(struct sse_stream *st, int nowake)
{
    struct gw_ctx *gw = st->gw;
    struct gw_channel *chs[SSE_CHANNELS_MAX];

    pc_debug("sse", "%s%s: stream closed", st->src[0].key, st->n > 1 ? " (and more)" : "");
    /* the waiter leaves the channels before they may be freed */
    gw_waiter_free(st->waiter);
    st->waiter = NULL;
    for (unsigned i = 0; i < st->n; i++)
        chs[i] = st->src[i].ch;
    if (nowake) /* a fanout writer: no Redis round trip */
        for (unsigned i = 0; i < st->n; i++)
            gw_hub_unsubscribe_nowake(gw->hub, chs[i]);
    else
        gw_hub_unsubscribe_many(gw->hub, chs, st->n);
    if (st->on_worker)
        atomic_fetch_sub(&gw->sse_on_workers, 1);
    atomic_fetch_sub(&gw->metrics->sse_clients, 1);
    if (st->fd >= 0)
        close(st->fd);
    stream_free(st);
}

/* Headers, then stream. @return 1 when the stream went live in the fanout, 0 when it ended. */
static int stream_body(struct sse_stream *st)
{
    if (!st->opened) {
        st->opened = 1;
        if (stream_open(st) != STEP_OK)
            return 0;
    }
    if (st->n > 1) {
        stream_run_merge(st);
        return 0;
    }
    return stream_run_one(st);
}

/* A stream thread (gw_fanout_spawn): serve until the stream ends or goes live. */
static void stream_thread(void *arg)
{
    struct sse_stream *st = arg;

    if (!stream_body(st))
        stream_finish(st, 0);
}

/* A fanout writer lets go of a stream: back to a thread, or the end. */
static void stream_live_done(struct gw_live *lv, enum gw_live_end why)
{
    struct sse_stream *st =
        (struct sse_stream *)(void *)((char *)lv - offsetof(struct sse_stream, lv));

    if (why == GW_LIVE_BEHIND && !gw_hub_stopping(st->gw->hub) &&
        gw_fanout_spawn(st->gw->fanout, stream_thread, st) == 0)
        return;
    stream_finish(st, 1);
}

/*
 * Take a client slot, subscribe, then stream: on a stream thread of its own
 * once the socket is taken from civetweb, else here to the end. Frees @p st
 * (or hands it on). @return the status.
 */
static int stream_serve(struct sse_stream *st)
{
    struct gw_ctx *gw = st->gw;
    struct gw_metrics *m = gw->metrics;
    struct gw_channel *chs[SSE_CHANNELS_MAX];
    const char *names[SSE_CHANNELS_MAX];
    int status = 200;

    if (atomic_fetch_add(&m->sse_clients, 1) >= gw->cfg->max_clients) {
        atomic_fetch_sub(&m->sse_clients, 1);
        gw_metrics_add(&m->sse_rejected, 1);
        status = gw_http_error(st->conn, gw, 503, "Retry-After: 2\r\n",
                               "too many streams (max-clients %d reached), retry later",
                               gw->cfg->max_clients);
        stream_free(st);
        return status;
    }
    for (unsigned i = 0; i < st->n; i++)
        names[i] = st->src[i].name;
    if (gw_hub_subscribe_many(gw->hub, names, st->n, chs) != 0) {
        atomic_fetch_sub(&m->sse_clients, 1);
        status = gw_http_error(st->conn, gw, 503, "Retry-After: 2\r\n", "%s",
                               gw_hub_stopping(gw->hub) ? "shutting down" : "out of memory");
        stream_free(st);
        return status;
    }
    for (unsigned i = 0; i < st->n; i++) {
        st->src[i].ch = chs[i];
        st->src[i].key = gw_channel_key(chs[i]);
    }
    if (st->n > 1) {
        st->waiter = gw_waiter_new(gw->hub, st->n);
        for (unsigned i = 0; st->waiter && i < st->n; i++)
            gw_waiter_attach(st->waiter, i, chs[i]);
        if (!st->waiter)
            status = gw_http_error(st->conn, gw, 503, "Retry-After: 2\r\n", "out of memory");
    }
    if (status == 200) {
        unsigned count = SSE_PAGE_COUNT / st->n;

        /* a merged stream holds a page per channel: together about one single-channel page */
        st->page_max = count < SSE_MERGE_PAGE_MIN ? SSE_MERGE_PAGE_MIN : count;
        st->page_bytes = SSE_PAGE_BYTES / st->n;
        pc_backoff_init(&st->bo, 100, 2000);
        st->ping_ms = (long long)gw->cfg->ping_interval_s * 1000;
        st->next_ping = pc_now_ms() + st->ping_ms;
        pc_debug("sse", "%s%s: stream opened", st->src[0].key, st->n > 1 ? " (and more)" : "");
        if ((st->fd = gw_http_take_socket(st->conn)) >= 0) {
            st->conn = NULL;
            if (gw_fanout_spawn(gw->fanout, stream_thread, st) == 0)
                return status;
            /* no thread to be had: this worker serves it */
        } else if (atomic_fetch_add(&gw->sse_on_workers, 1) >= gw->worker_streams_max) {
            /* civetweb keeps the socket: the stream holds this worker, and workers are few */
            atomic_fetch_sub(&gw->sse_on_workers, 1);
            gw_metrics_add(&m->sse_rejected, 1);
            status = gw_http_error(st->conn, gw, 503, "Retry-After: 2\r\n",
                                   "too many streams for the worker threads, retry later");
        } else {
            st->on_worker = 1;
        }
    }
    if (status == 200 && stream_body(st))
        return status; /* live in the fanout */
    stream_finish(st, 0);
    return status;
}

int gw_sse_handle(struct gw_ctx *gw, struct mg_connection *conn, const char *channel)
{
    struct sse_stream *st = stream_new(gw, conn, 1);
    int rc;

    if (!st)
        return gw_http_error(conn, gw, 500, NULL, "out of memory");
    snprintf(st->src[0].name, sizeof(st->src[0].name), "%s", channel);
    if ((rc = stream_parse(st)) != 0) {
        stream_free(st);
        return rc;
    }
    return stream_serve(st);
}

int gw_sse_handle_multi(struct gw_ctx *gw, struct mg_connection *conn)
{
    char(*names)[PC_CHANNEL_MAX + 1] = malloc(SSE_CHANNELS_MAX * sizeof(*names));
    struct sse_stream *st = NULL;
    unsigned n = 0;
    int rc;

    if (!names)
        return gw_http_error(conn, gw, 500, NULL, "out of memory");
    rc = parse_channels(conn, gw, &n, names);
    if (rc == 0 && !(st = stream_new(gw, conn, n)))
        rc = gw_http_error(conn, gw, 500, NULL, "out of memory");
    if (rc == 0) {
        st->multi = 1;
        for (unsigned i = 0; i < n; i++)
            memcpy(st->src[i].name, names[i], sizeof(names[i]));
    }
    free(names);
    if (rc != 0)
        return rc;
    if ((rc = stream_parse(st)) != 0) {
        stream_free(st);
        return rc;
    }
    return stream_serve(st);
}
