/* sse_handler.c -- GET /api/channels/<channel>/events: one SSE stream per civetweb worker.
 *
 * A subscriber is a cursor, the id of the last entry it has passed:
 *
 *          Redis pages (XRANGE "(cursor" base COUNT 500)      ring (shared, in memory)
 *   ──────────────────────────────────────────────────────┬──────────────────────────────>
 *   0-0                          cursor              base_id           last_id
 *
 * While the cursor is before base_id (replay, or fell behind the ring) the
 * stream reads pages from Redis through the pool; once it reaches base_id it
 * is served from the ring. The cursor is the only truth, so the seam has no
 * gap and no duplicate. A slow client only falls behind and reads pages; it is
 * never cut off. Any short mg_write means the client is gone.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/id.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/sse.h"

#include "gateway.h"
#include "http_util.h"

#define SSE_WRITE_MAX (256u << 10) /* bytes gathered before one mg_write */
#define SSE_OUT_MAX (80u << 20)    /* hard cap of the output buffer: one huge entry */
#define SSE_PAGE_COUNT "500"
#define SSE_FILTERS_MAX 16
#define SSE_TAIL_MAX 100000ULL
#define SSE_TAIL_PLAIN_MAX 1000ULL /* larger tails are resolved inside Redis by a script */

/* Returns of the steps below. */
enum {
    STEP_OK = 0,
    STEP_REDIS = -1, /* Redis unreachable or failing: keep the stream, retry with backoff */
    STEP_FATAL = -2, /* the key is not a stream, or out of memory: end the stream */
    STEP_DEAD = -3,  /* the client is gone, or the hub is stopping */
};

enum start_mode { START_BEGIN, START_END, START_TAIL, START_ID };

struct sse_sub {
    struct gw_ctx *gw;
    struct mg_connection *conn;
    struct gw_channel *ch;
    const char *key;
    enum start_mode mode;
    unsigned long long tail;
    struct pc_id cursor; /* the last entry passed (sent or filtered out) */
    int start_pending;   /* the start point still needs Redis */
    int gap_check;       /* look for trimmed entries before reading pages */
    int live;            /* the last poll was served from the ring */
    char filter_buf[SSE_FILTERS_MAX][PC_EVENT_MAX + 1];
    const char *filter_names[SSE_FILTERS_MAX];
    struct gw_filter filter;
    struct pc_buf out;
    long long ping_ms;
    long long next_ping;
    struct pc_backoff bo;
};

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

/* Write out the buffer. A short write means the client is gone (or stopped reading). */
static int sub_flush(struct sse_sub *s)
{
    int n;

    if (s->out.len == 0)
        return STEP_OK;
    n = mg_write(s->conn, s->out.data, s->out.len);
    if (n < 0 || (size_t)n != s->out.len) {
        pc_debug("sse", "%s: client gone (wrote %d of %zu bytes)", s->key, n, s->out.len);
        pc_buf_reset(&s->out);
        return STEP_DEAD;
    }
    pc_buf_reset(&s->out);
    s->next_ping = pc_now_ms() + s->ping_ms;
    return STEP_OK;
}

static int sub_ping(struct sse_sub *s)
{
    if (pc_sse_comment(&s->out, "ping") != 0)
        return STEP_FATAL;
    return sub_flush(s);
}

static int sub_ping_if_due(struct sse_sub *s)
{
    return pc_now_ms() >= s->next_ping ? sub_ping(s) : STEP_OK;
}

/* Sleep until @p until_ms, keeping the stream alive with pings. */
static int sub_sleep(struct sse_sub *s, long long until_ms)
{
    for (;;) {
        long long now = pc_now_ms();
        enum gw_poll w;
        int rc;

        if (now >= until_ms)
            return STEP_OK;
        w = gw_channel_wait(s->ch, until_ms < s->next_ping ? until_ms : s->next_ping);
        if (w == GW_POLL_STOP)
            return STEP_DEAD;
        if (w == GW_POLL_BAD)
            return STEP_FATAL;
        if ((rc = sub_ping_if_due(s)) != STEP_OK)
            return rc;
    }
}

/* Wait for anything on the channel (entries, ring ready) or the next ping. */
static int sub_wait_event(struct sse_sub *s)
{
    enum gw_poll w = gw_channel_wait(s->ch, s->next_ping);

    if (w == GW_POLL_STOP)
        return STEP_DEAD;
    if (w == GW_POLL_BAD)
        return STEP_FATAL;
    return sub_ping_if_due(s);
}

/* ------------------------------------------------------------------------ */
/* Redis                                                                     */
/* ------------------------------------------------------------------------ */

static int is_wrongtype(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0;
}

/* One command through the pool. NULL (counted, logged at debug) when Redis is unreachable. */
static redisReply *sub_command(struct sse_sub *s, int argc, const char **argv)
{
    size_t argvlen[8];
    char err[256];
    redisReply *r;

    for (int i = 0; i < argc; i++)
        argvlen[i] = strlen(argv[i]);
    r = gw_rpool_command(s->gw->pool, GW_POOL_WAIT_MS, err, sizeof(err), argc, argv, argvlen);
    if (!r) {
        pc_debug("sse", "%s: %s", s->key, err);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        gw_metrics_add(&s->gw->metrics->redis_errors, 1);
        if (!is_wrongtype(r))
            pc_warn("sse", "redis: %s %s: %s", argv[0], s->key, r->str);
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

static int filter_match(const struct gw_filter *f, const char *event)
{
    const char *ev = event ? event : "message";

    if (f->n == 0)
        return 1;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->names[i], ev) == 0)
            return 1;
    return 0;
}

/*
 * If entries after @p requested may have been trimmed away, tell the client:
 * `event: gap` with {"requested", "first_available"} (no id: line, so the
 * client's resume point does not move). Redis 7.0 signs: the requested id is
 * before the first retained entry and entries-added exceeds the length.
 */
static int sub_check_gap(struct sse_sub *s, const struct pc_id *requested)
{
    const char *argv[3] = {"XINFO", "STREAM", s->key};
    redisReply *r = sub_command(s, 3, argv);
    long long length = -1, added = -1;
    const redisReply *first = NULL;
    struct pc_id first_id;
    char json[160], req[PC_ID_STRLEN], fa[PC_ID_STRLEN];
    int rc = STEP_OK;

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
    /* Without entries-added (Redis < 7) a trim cannot be ruled out. */
    if (first && entry_id(first, &first_id) == 0 && pc_id_cmp(requested, &first_id) < 0 &&
        (added < 0 || length < 0 || added > length)) {
        pc_id_format(requested, req);
        pc_id_format(&first_id, fa);
        snprintf(json, sizeof(json), "{\"requested\":\"%s\",\"first_available\":\"%s\"}", req, fa);
        pc_debug("sse", "%s: gap %s", s->key, json);
        if (pc_sse_event(&s->out, NULL, "gap", json, strlen(json)) != 0)
            rc = STEP_FATAL;
        else
            rc = sub_flush(s);
    }
    freeReplyObject(r);
    return rc;
}

/* The start point: from=end, tail=N (needs Redis), an explicit id (gap check), or 0-0. */
static int sub_resolve_start(struct sse_sub *s)
{
    redisReply *r = NULL;
    struct pc_id id = {0, 0};
    int rc = STEP_OK;

    switch (s->mode) {
    case START_BEGIN:
        s->cursor = id;
        return STEP_OK;
    case START_ID:
        return sub_check_gap(s, &s->cursor);
    case START_END:
    case START_TAIL: {
        unsigned long long want = s->mode == START_END ? 1 : s->tail + 1;
        char count[32];

        snprintf(count, sizeof(count), "%llu", want);
        if (want <= SSE_TAIL_PLAIN_MAX + 1) {
            const char *argv[6] = {"XREVRANGE", s->key, "+", "-", "COUNT", count};

            r = sub_command(s, 6, argv);
        } else {
            /* Only the id of the (N+1)-th newest entry crosses the network. */
            static const char script[] =
                "local r = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1]) "
                "if #r < tonumber(ARGV[1]) then return {} end "
                "return {r[#r]}";
            const char *argv[5] = {"EVAL", script, "1", s->key, count};

            r = sub_command(s, 5, argv);
        }
        if (!r)
            return STEP_REDIS;
        if (r->type == REDIS_REPLY_ARRAY) {
            /* fewer than N+1 entries: everything (cursor 0-0); else after the (N+1)-th */
            if (r->elements > 0 && (s->mode == START_END || r->elements == (size_t)want ||
                                    want > SSE_TAIL_PLAIN_MAX + 1)) {
                if (entry_id(r->element[r->elements - 1], &id) != 0)
                    rc = STEP_REDIS;
            }
        } else {
            rc = is_wrongtype(r) ? STEP_FATAL : STEP_REDIS;
        }
        freeReplyObject(r);
        if (rc == STEP_OK)
            s->cursor = id;
        return rc;
    }
    }
    return STEP_FATAL;
}

/*
 * Send one page of entries after the cursor from Redis, up to base_id when
 * the ring is ready. @return 1 when the cursor moved, 0 when there was nothing
 * (the cursor then jumps to base_id when known), or a STEP_* error.
 */
static int sub_page(struct sse_sub *s, const struct gw_ring_pos *pos)
{
    char start[PC_ID_STRLEN + 1], end[PC_ID_STRLEN];
    const char *argv[6] = {"XRANGE", s->key, start, end, "COUNT", SSE_PAGE_COUNT};
    struct gw_metrics *m = s->gw->metrics;
    unsigned long long sent = 0;
    redisReply *r;
    int rc = 1;

    start[0] = '(';
    pc_id_format(&s->cursor, start + 1);
    if (pos->ready)
        pc_id_format(&pos->base_id, end);
    else
        snprintf(end, sizeof(end), "+");
    r = sub_command(s, 6, argv);
    if (!r)
        return STEP_REDIS;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = is_wrongtype(r) ? STEP_FATAL : STEP_REDIS;
        freeReplyObject(r);
        return rc;
    }
    if (r->elements == 0) {
        /* Nothing retained between the cursor and base_id: the ring takes over. */
        if (pos->ready && pc_id_cmp(&s->cursor, &pos->base_id) < 0)
            s->cursor = pos->base_id;
        freeReplyObject(r);
        return 0;
    }
    for (size_t i = 0; i < r->elements && rc == 1; i++) {
        const redisReply *e = r->element[i];
        const redisReply *data, *ev;
        struct pc_id id;
        int erc;

        if (entry_id(e, &id) != 0)
            continue;
        data = entry_field(e, "data", 4);
        ev = entry_field(e, "event", 5);
        if (!data || (ev && !pc_event_valid(ev->str, ev->len))) {
            gw_metrics_add(&m->sse_events_dropped, 1);
        } else if (filter_match(&s->filter, ev ? ev->str : NULL)) {
            if (s->out.len >= SSE_WRITE_MAX && sub_flush(s) != STEP_OK) {
                rc = STEP_DEAD;
                break;
            }
            erc = pc_sse_event(&s->out, e->element[0]->str, ev ? ev->str : NULL, data->str,
                               data->len);
            if (erc == PC_ETOOBIG && s->out.len > 0) {
                if (sub_flush(s) != STEP_OK) {
                    rc = STEP_DEAD;
                    break;
                }
                erc = pc_sse_event(&s->out, e->element[0]->str, ev ? ev->str : NULL, data->str,
                                   data->len);
            }
            if (erc != 0) {
                pc_warn("sse", "%s %s: entry of %zu bytes cannot be sent (%s), skipped", s->key,
                        e->element[0]->str, data->len, pc_strerror(erc));
                gw_metrics_add(&m->sse_events_dropped, 1);
            } else {
                sent++;
            }
        }
        s->cursor = id;
    }
    freeReplyObject(r);
    if (rc == 1 && sub_flush(s) != STEP_OK)
        rc = STEP_DEAD;
    gw_metrics_add(&m->sse_events_sent, sent);
    gw_metrics_add(&m->sse_events_replayed, sent);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The stream                                                                */
/* ------------------------------------------------------------------------ */

/* Wait before retrying Redis. */
static int sub_backoff(struct sse_sub *s)
{
    return sub_sleep(s, pc_now_ms() + pc_backoff_next(&s->bo));
}

static void sub_run(struct sse_sub *s)
{
    struct gw_metrics *m = s->gw->metrics;

    while (!gw_hub_stopping(s->gw->hub)) {
        struct gw_ring_pos pos = {0, {0, 0}};
        enum gw_poll p;
        size_t n = 0;
        int rc;

        if (s->start_pending || s->gap_check) {
            rc = s->start_pending ? sub_resolve_start(s) : sub_check_gap(s, &s->cursor);
            if (rc == STEP_OK) {
                s->start_pending = 0;
                s->gap_check = 0;
                pc_backoff_reset(&s->bo);
            } else if (rc != STEP_REDIS || sub_backoff(s) != STEP_OK) {
                break;
            }
            continue;
        }
        p = gw_channel_poll(s->ch, &s->cursor, &s->filter, &s->out, SSE_WRITE_MAX, s->next_ping, &n,
                            &pos);
        switch (p) {
        case GW_POLL_DATA:
            s->live = 1;
            if (sub_flush(s) != STEP_OK)
                return;
            gw_metrics_add(&m->sse_events_sent, n);
            continue;
        case GW_POLL_TIMEOUT:
            s->live = 1;
            if (sub_ping(s) != STEP_OK)
                return;
            continue;
        case GW_POLL_BEHIND:
            if (s->live) {
                /* fell behind the ring: were entries trimmed from under the cursor? */
                s->live = 0;
                s->gap_check = 1;
                continue;
            }
            rc = sub_page(s, &pos);
            if (rc == 1) {
                pc_backoff_reset(&s->bo);
            } else if (rc == 0) {
                pc_backoff_reset(&s->bo);
                if (!pos.ready && sub_wait_event(s) != STEP_OK)
                    return;
            } else if (rc != STEP_REDIS || sub_backoff(s) != STEP_OK) {
                return;
            }
            continue;
        case GW_POLL_BAD:
            pc_buf_reset(&s->out);
            if (pc_sse_comment(&s->out, "error: this channel's key is not a stream") == 0)
                sub_flush(s);
            return;
        case GW_POLL_STOP:
        case GW_POLL_ERROR:
            return;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The request                                                               */
/* ------------------------------------------------------------------------ */

/* Parse the start point and filters. @return 0, or the 400 response already sent. */
static int sub_parse(struct sse_sub *s, struct mg_connection *conn)
{
    const struct gw_ctx *gw = s->gw;
    const char *hdr = mg_get_header(conn, "Last-Event-ID");
    char v[256], q[128];
    int have_id = 0, have_tail = 0, from_end = 0, n;
    struct pc_id id;
    unsigned long long tail = 0;

    if (hdr && *hdr) {
        if (pc_id_parse(hdr, strlen(hdr), 0, &id) != 0) {
            gw_http_quote(hdr, strlen(hdr), q, sizeof(q));
            return gw_http_error(conn, gw, 400, NULL,
                                 "Last-Event-ID \"%s\": invalid stream id (expected <ms>-<seq>)",
                                 q);
        }
        s->cursor = id;
        have_id = 1;
    }
    n = gw_http_query(conn, "lastEventId", 0, v, sizeof(v));
    if (n == -2)
        return gw_http_error(conn, gw, 400, NULL, "lastEventId: too long");
    if (n > 0) {
        if (pc_id_parse(v, (size_t)n, 0, &id) != 0) {
            gw_http_quote(v, (size_t)n, q, sizeof(q));
            return gw_http_error(conn, gw, 400, NULL,
                                 "lastEventId \"%s\": invalid stream id (expected <ms>-<seq>)", q);
        }
        if (!have_id)
            s->cursor = id;
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
        memcpy(s->filter_buf[occ], v, (size_t)n + 1);
        s->filter_names[occ] = s->filter_buf[occ];
        s->filter.n = (int)occ + 1;
    }
    s->filter.names = s->filter_names;

    if (have_id) {
        s->mode = START_ID;
    } else if (have_tail) {
        s->mode = START_TAIL;
        s->tail = tail;
    } else if (from_end) {
        s->mode = START_END;
    } else {
        s->mode = START_BEGIN;
    }
    s->start_pending = s->mode != START_BEGIN;
    return 0;
}

static int sub_open(struct sse_sub *s)
{
    char cors[1200];

    gw_http_cors_headers(s->gw, cors, sizeof(cors));
    mg_disable_connection_keep_alive(s->conn);
    if (pc_buf_printf(&s->out,
                      "HTTP/1.1 200 OK\r\n"
                      "Content-Type: text/event-stream; charset=utf-8\r\n"
                      "Cache-Control: no-cache\r\n"
                      "X-Accel-Buffering: no\r\n"
                      "Connection: close\r\n"
                      "%s\r\n",
                      cors) != 0 ||
        pc_sse_retry(&s->out, s->gw->cfg->retry_ms) != 0)
        return STEP_FATAL;
    return sub_flush(s);
}

int gw_sse_handle(struct gw_ctx *gw, struct mg_connection *conn, const char *channel)
{
    struct gw_metrics *m = gw->metrics;
    struct sse_sub *s = calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return gw_http_error(conn, gw, 500, NULL, "out of memory");
    s->gw = gw;
    s->conn = conn;
    rc = sub_parse(s, conn);
    if (rc != 0) {
        free(s);
        return rc;
    }
    if (atomic_fetch_add(&m->sse_clients, 1) >= gw->cfg->max_clients) {
        atomic_fetch_sub(&m->sse_clients, 1);
        gw_metrics_add(&m->sse_rejected, 1);
        free(s);
        return gw_http_error(conn, gw, 503, "Retry-After: 2\r\n",
                             "too many streams (max-clients %d reached), retry later",
                             gw->cfg->max_clients);
    }
    s->ch = gw_hub_subscribe(gw->hub, channel);
    if (!s->ch) {
        atomic_fetch_sub(&m->sse_clients, 1);
        free(s);
        return gw_http_error(conn, gw, 503, "Retry-After: 2\r\n",
                             gw_hub_stopping(gw->hub) ? "shutting down" : "out of memory");
    }
    s->key = gw_channel_key(s->ch);
    pc_buf_init(&s->out, SSE_OUT_MAX);
    pc_backoff_init(&s->bo, 100, 2000);
    s->ping_ms = (long long)gw->cfg->ping_interval_s * 1000;
    s->next_ping = pc_now_ms() + s->ping_ms;
    pc_debug("sse", "%s: stream opened", s->key);

    if (sub_open(s) == STEP_OK)
        sub_run(s);

    pc_debug("sse", "%s: stream closed", s->key);
    gw_hub_unsubscribe(gw->hub, s->ch);
    atomic_fetch_sub(&m->sse_clients, 1);
    pc_buf_free(&s->out);
    free(s);
    return 200;
}
