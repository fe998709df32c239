/* api.c -- the REST endpoints: routing under /api/, channels, publish, health, metrics.
 *
 *   GET    /api/channels[?cursor=&limit=&match=]   list (SCAN ... TYPE stream, XINFO each)
 *   GET    /api/channels/<ch>                      one channel (XINFO STREAM)
 *   DELETE /api/channels/<ch>                      DEL
 *   POST   /api/channels/<ch>[?event=]             publish the body, one entry per line
 *   GET    /api/channels/<ch>/events               SSE (sse_handler.c)
 *   GET    /api/events?channel=a&channel=b          SSE, several channels (sse_handler.c)
 *   GET    /healthz, /metrics
 *   /api/jobs, /api/sessions, /api/runners, /api/templates: jobs_api.c
 *
 * civetweb runs with decode_url=no, so a path segment is URL-decoded here and
 * "a%2Fb" or "a%00b" is refused as a channel name instead of being rewritten.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/id.h"
#include "pipecast/log.h"
#include "pipecast/splitter.h"

#include "gateway.h"
#include "http_util.h"
#include "jobs_api.h"
#include "sessions.h"

#define API_LIST_DEFAULT 100
#define API_LIST_MAX 1000
#define API_SCAN_ROUNDS 64 /* SCAN calls per list request at most */
#define API_PUB_BATCH 256  /* XADDs in flight per round trip */
#define API_PUB_MAXLEN "100000"
#define API_READ_CHUNK (64 * 1024)
#define API_READ_SMALL 4096

static const char ALLOW_CHANNELS[] = "Allow: GET, OPTIONS\r\n";
static const char ALLOW_CHANNEL[] = "Allow: GET, POST, DELETE, OPTIONS\r\n";
static const char ALLOW_EVENTS[] = "Allow: GET, OPTIONS\r\n";

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int method_is(const struct mg_request_info *ri, const char *m)
{
    return ri->request_method && strcmp(ri->request_method, m) == 0;
}

static int not_allowed(struct mg_connection *conn, const struct gw_ctx *gw, const char *allow,
                       const struct mg_request_info *ri)
{
    char q[64];

    gw_http_quote(ri->request_method ? ri->request_method : "",
                  ri->request_method ? strlen(ri->request_method) : 0, q, sizeof(q));
    return gw_http_error(conn, gw, 405, allow, "method %s not allowed here", q);
}

/* OPTIONS (CORS preflight included). */
static int preflight(struct mg_connection *conn, const struct gw_ctx *gw, const char *allow)
{
    char extra[512];
    const char *methods = strchr(allow, ' ') + 1;

    snprintf(extra, sizeof(extra),
             "%sAccess-Control-Allow-Methods: %.*s\r\n"
             "Access-Control-Allow-Headers: Content-Type, Last-Event-ID\r\n"
             "Access-Control-Max-Age: 600\r\n",
             allow, (int)(strlen(methods) - 2), methods);
    return gw_http_send(conn, gw, 204, "text/plain", extra, NULL, 0);
}

static int redis_unavailable(struct mg_connection *conn, const struct gw_ctx *gw, const char *why)
{
    return gw_http_error(conn, gw, 503, "Retry-After: 2\r\n", "%s", why);
}

static int reply_error(struct mg_connection *conn, const struct gw_ctx *gw, const char *what,
                       const redisReply *r)
{
    gw_metrics_add(&gw->metrics->redis_errors, 1);
    return gw_http_error(conn, gw, 500, NULL, "redis: %s: %s", what,
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
}

static redisReply *get_reply(redisContext *c)
{
    void *v = NULL;

    if (redisGetReply(c, &v) != REDIS_OK)
        return NULL;
    return v;
}

/* Add "name": "<id>" from an entry reply ([id, fields]), or null. */
static void add_entry_id(cJSON *o, const char *name, const redisReply *e)
{
    if (e && e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
        e->element[0]->type == REDIS_REPLY_STRING)
        cJSON_AddStringToObject(o, name, e->element[0]->str);
    else
        cJSON_AddNullToObject(o, name);
}

/* The channel object of docs/interfaces.md from an XINFO STREAM reply. NULL on a bad reply. */
static cJSON *channel_json(const char *name, const redisReply *info)
{
    const redisReply *first = NULL, *last = NULL, *gen = NULL;
    long long length = 0;
    struct pc_id gid = {0, 0};
    cJSON *o;

    if (info->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < info->elements; i += 2) {
        const redisReply *k = info->element[i], *v = info->element[i + 1];

        if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
            continue;
        if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER)
            length = v->integer;
        else if (strcmp(k->str, "first-entry") == 0)
            first = v;
        else if (strcmp(k->str, "last-entry") == 0)
            last = v;
        else if (strcmp(k->str, "last-generated-id") == 0 &&
                 (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS))
            gen = v;
    }
    o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "length", (double)length);
    add_entry_id(o, "first_id", first);
    add_entry_id(o, "last_id", last);
    /* stream ids are milliseconds: the last XADD's time is the last activity */
    if (gen && pc_id_parse(gen->str, gen->len, 0, &gid) == 0 && !pc_id_is_zero(&gid))
        cJSON_AddNumberToObject(o, "last_activity_ms", (double)gid.ms);
    else
        cJSON_AddNullToObject(o, "last_activity_ms");
    return o;
}

/* ------------------------------------------------------------------------ */
/* GET /api/channels                                                         */
/* ------------------------------------------------------------------------ */

/* Glob for MATCH: the channel alphabet plus * ? [ ] ^ \ . */
static int glob_valid(const char *s, size_t len)
{
    if (len == 0 || len > PC_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._:@-*?[]^\\", c)) ||
            c == '\0')
            return 0;
    }
    return 1;
}

struct key_name {
    char key[PC_KEY_MAX];
};

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(((const struct key_name *)a)->key, ((const struct key_name *)b)->key);
}

/*
 * The opaque cursor is "<scan cursor>" or "<scan cursor>.<skip>": a page ends
 * inside one SCAN batch when limit is reached there; the next request repeats
 * that SCAN call and skips what was already returned.
 */
static int parse_list_cursor(const char *v, char *scan, size_t scanlen, unsigned long long *skip)
{
    const char *dot = strchr(v, '.');
    size_t cl = dot ? (size_t)(dot - v) : strlen(v);
    unsigned long long tmp;

    *skip = 0;
    if (cl == 0 || cl > 20 || cl >= scanlen)
        return -1;
    memcpy(scan, v, cl);
    scan[cl] = '\0';
    if (gw_http_parse_uint(scan, ~0ULL, &tmp) != 0)
        return -1;
    if (dot && gw_http_parse_uint(dot + 1, 100000, skip) != 0)
        return -1;
    return 0;
}

static int api_list(struct mg_connection *conn, const struct gw_ctx *gw)
{
    char v[512], q[128], scan[32], pattern[PC_PREFIX_MAX + 8 + 512], next[64], err[256];
    unsigned long long limit = API_LIST_DEFAULT, skip = 0;
    struct key_name *keys;
    size_t nkeys = 0;
    int n, done = 0, broken = 0, status;
    redisContext *c;
    cJSON *root, *arr;

    n = gw_http_query(conn, "cursor", 0, v, sizeof(v));
    if (n == -2 || (n >= 0 && parse_list_cursor(v, scan, sizeof(scan), &skip) != 0)) {
        gw_http_quote(v, n > 0 ? (size_t)n : 0, q, sizeof(q));
        return gw_http_error(conn, gw, 400, NULL, "cursor \"%s\": invalid cursor", q);
    }
    if (n < 0)
        snprintf(scan, sizeof(scan), "0");
    n = gw_http_query(conn, "limit", 0, v, sizeof(v));
    if (n == -2 || (n >= 0 && (gw_http_parse_uint(v, API_LIST_MAX, &limit) != 0 || limit < 1))) {
        gw_http_quote(v, n > 0 ? (size_t)n : 0, q, sizeof(q));
        return gw_http_error(conn, gw, 400, NULL, "limit \"%s\": expected a number 1-%d", q,
                             API_LIST_MAX);
    }
    n = gw_http_query(conn, "match", 0, v, sizeof(v));
    if (n == -2 || (n >= 0 && !glob_valid(v, (size_t)n))) {
        gw_http_quote(v, n > 0 ? (size_t)n : 0, q, sizeof(q));
        return gw_http_error(conn, gw, 400, NULL,
                             "match \"%s\": invalid pattern (1-200 bytes of A-Z a-z 0-9 . _ : "
                             "@ - and the glob characters * ? [ ] ^ \\)",
                             q);
    }
    snprintf(pattern, sizeof(pattern), "%s:ch:%s", gw->cfg->prefix, n >= 0 ? v : "*");

    keys = malloc(limit * sizeof(*keys));
    if (!keys)
        return gw_http_error(conn, gw, 500, NULL, "out of memory");
    c = gw_rpool_get(gw->pool, GW_POOL_WAIT_MS, err, sizeof(err));
    if (!c) {
        free(keys);
        return redis_unavailable(conn, gw, err);
    }
    next[0] = '\0';
    for (int round = 0; round < API_SCAN_ROUNDS && !done; round++) {
        const char *argv[8] = {"SCAN", scan, "MATCH", pattern, "COUNT", "1000", "TYPE", "stream"};
        size_t argvlen[8];
        const redisReply *ks;
        redisReply *r;

        for (int i = 0; i < 8; i++)
            argvlen[i] = strlen(argv[i]);
        r = redisCommandArgv(c, 8, argv, argvlen);
        if (!r) {
            snprintf(err, sizeof(err), "redis: %s", c->errstr);
            broken = 1;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
            r->element[0]->len >= sizeof(scan)) {
            gw_rpool_put(gw->pool, c, 0);
            free(keys);
            status = reply_error(conn, gw, "SCAN", r);
            freeReplyObject(r);
            return status;
        }
        ks = r->element[1];
        for (size_t i = (size_t)skip; i < ks->elements; i++) {
            const redisReply *k = ks->element[i];
            const char *name;

            if (nkeys == limit) {
                snprintf(next, sizeof(next), "%s.%zu", scan, i);
                done = 1;
                break;
            }
            if (k->type != REDIS_REPLY_STRING || k->len >= PC_KEY_MAX)
                continue;
            name = pc_key_channel_name(k->str, gw->cfg->prefix);
            if (!name || !pc_channel_valid(name, strlen(name)) || strlen(k->str) != k->len)
                continue;
            memcpy(keys[nkeys++].key, k->str, k->len + 1);
        }
        skip = 0;
        if (!done) {
            memcpy(scan, r->element[0]->str, r->element[0]->len + 1);
            if (strcmp(scan, "0") == 0) {
                done = 1;
            } else if (nkeys == limit || round == API_SCAN_ROUNDS - 1) {
                snprintf(next, sizeof(next), "%s", scan);
                done = 1;
            }
        }
        freeReplyObject(r);
    }
    if (broken) {
        gw_rpool_put(gw->pool, c, 1);
        free(keys);
        return redis_unavailable(conn, gw, err);
    }

    qsort(keys, nkeys, sizeof(*keys), cmp_keys);
    for (size_t i = 0; i < nkeys; i++) {
        const char *argv[3] = {"XINFO", "STREAM", keys[i].key};
        size_t argvlen[3] = {5, 6, strlen(keys[i].key)};

        redisAppendCommandArgv(c, 3, argv, argvlen);
    }
    root = cJSON_CreateObject();
    arr = root ? cJSON_AddArrayToObject(root, "channels") : NULL;
    for (size_t i = 0; i < nkeys; i++) {
        redisReply *r = get_reply(c);
        cJSON *o;

        if (!r) {
            snprintf(err, sizeof(err), "redis: %s", c->errstr);
            broken = 1;
            break;
        }
        /* a key deleted since SCAN answers an error: leave it out */
        o = channel_json(pc_key_channel_name(keys[i].key, gw->cfg->prefix), r);
        if (o && arr)
            cJSON_AddItemToArray(arr, o);
        else
            cJSON_Delete(o);
        freeReplyObject(r);
    }
    gw_rpool_put(gw->pool, c, broken);
    free(keys);
    if (broken) {
        cJSON_Delete(root);
        return redis_unavailable(conn, gw, err);
    }
    if (root) {
        if (next[0])
            cJSON_AddStringToObject(root, "next_cursor", next);
        else
            cJSON_AddNullToObject(root, "next_cursor");
    }
    return gw_http_json_take(conn, gw, 200, NULL, root);
}

/* ------------------------------------------------------------------------ */
/* GET / DELETE /api/channels/<ch>                                           */
/* ------------------------------------------------------------------------ */

static int api_channel_get(struct mg_connection *conn, const struct gw_ctx *gw, const char *name,
                           const char *key)
{
    const char *argv[3] = {"XINFO", "STREAM", key};
    size_t argvlen[3] = {5, 6, strlen(key)};
    char err[256];
    redisReply *r = gw_rpool_command(gw->pool, GW_POOL_WAIT_MS, err, sizeof(err), 3, argv, argvlen);
    cJSON *o;
    int status;

    if (!r)
        return redis_unavailable(conn, gw, err);
    if (r->type == REDIS_REPLY_ERROR &&
        (strstr(r->str, "no such key") || strncmp(r->str, "WRONGTYPE", 9) == 0)) {
        freeReplyObject(r);
        return gw_http_error(conn, gw, 404, NULL, "channel \"%s\" not found", name);
    }
    o = channel_json(name, r);
    if (!o) {
        status = reply_error(conn, gw, "XINFO STREAM", r);
        freeReplyObject(r);
        return status;
    }
    freeReplyObject(r);
    return gw_http_json_take(conn, gw, 200, NULL, o);
}

static int api_channel_delete(struct mg_connection *conn, const struct gw_ctx *gw, const char *name,
                              const char *key)
{
    const char *targv[2] = {"TYPE", key};
    const char *dargv[2] = {"DEL", key};
    size_t targvlen[2] = {4, strlen(key)};
    size_t dargvlen[2] = {3, strlen(key)};
    char err[256];
    redisReply *r;
    cJSON *o;
    int is_stream, status;

    /* Only streams are channels: another type under the prefix is left alone. */
    r = gw_rpool_command(gw->pool, GW_POOL_WAIT_MS, err, sizeof(err), 2, targv, targvlen);
    if (!r)
        return redis_unavailable(conn, gw, err);
    is_stream = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "stream") == 0;
    freeReplyObject(r);
    if (!is_stream)
        return gw_http_error(conn, gw, 404, NULL, "channel \"%s\" not found", name);
    r = gw_rpool_command(gw->pool, GW_POOL_WAIT_MS, err, sizeof(err), 2, dargv, dargvlen);
    if (!r)
        return redis_unavailable(conn, gw, err);
    if (r->type != REDIS_REPLY_INTEGER) {
        status = reply_error(conn, gw, "DEL", r);
        freeReplyObject(r);
        return status;
    }
    if (r->integer == 0) {
        freeReplyObject(r);
        return gw_http_error(conn, gw, 404, NULL, "channel \"%s\" not found", name);
    }
    freeReplyObject(r);
    /* the hub's ring still holds the deleted entries: new subscribers must not replay them */
    gw_hub_reset_channel(gw->hub, name);
    o = cJSON_CreateObject();
    if (o)
        cJSON_AddTrueToObject(o, "deleted");
    pc_info("api", "channel \"%s\" deleted", name);
    return gw_http_json_take(conn, gw, 200, NULL, o);
}

/* ------------------------------------------------------------------------ */
/* POST /api/channels/<ch>                                                   */
/* ------------------------------------------------------------------------ */

struct pub {
    redisContext *c;
    const char *key;
    const char *event; /* NULL: no event field */
    size_t pending;    /* XADDs sent, replies not read yet */
    unsigned long long published;
    char last_id[PC_ID_STRLEN];
    int broken; /* the connection failed: replies are lost */
    int status; /* 0, or the HTTP status of the first failure */
    char err[256];
    struct gw_metrics *metrics;
};

static int pub_collect(struct pub *p)
{
    while (p->pending > 0) {
        redisReply *r = get_reply(p->c);

        if (!r) {
            p->broken = 1;
            p->status = 503;
            snprintf(p->err, sizeof(p->err), "redis: %s", p->c->errstr);
            return PC_EREDIS;
        }
        p->pending--;
        if (r->type == REDIS_REPLY_STRING && r->len < sizeof(p->last_id)) {
            p->published++;
            memcpy(p->last_id, r->str, r->len + 1);
        } else if (!p->status) {
            gw_metrics_add(&p->metrics->redis_errors, 1);
            p->status = 500;
            snprintf(p->err, sizeof(p->err), "redis: XADD: %s",
                     r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        }
        freeReplyObject(r);
    }
    return p->status ? PC_EREDIS : 0;
}

static int pub_entry(void *privdata, const char *data, size_t len, int partial)
{
    struct pub *p = privdata;
    const char *argv[12];
    size_t argvlen[12];
    int argc = 0;

#define ARG(s, l)                                                                                  \
    do {                                                                                           \
        argv[argc] = (s);                                                                          \
        argvlen[argc] = (l);                                                                       \
        argc++;                                                                                    \
    } while (0)
    ARG("XADD", 4);
    ARG(p->key, strlen(p->key));
    ARG("MAXLEN", 6);
    ARG("~", 1);
    ARG(API_PUB_MAXLEN, strlen(API_PUB_MAXLEN));
    ARG("*", 1);
    if (p->event) {
        ARG("event", 5);
        ARG(p->event, strlen(p->event));
    }
    ARG("data", 4);
    ARG(data, len);
    if (partial) {
        ARG("partial", 7);
        ARG("1", 1);
    }
#undef ARG
    if (redisAppendCommandArgv(p->c, argc, argv, argvlen) != REDIS_OK) {
        p->status = 500;
        snprintf(p->err, sizeof(p->err), "out of memory");
        return PC_ENOMEM;
    }
    p->pending++;
    return p->pending >= API_PUB_BATCH ? pub_collect(p) : 0;
}

/* Read the whole body into @p body (at most its max). @return 0, 413 or 400. */
static int read_body(struct mg_connection *conn, struct pc_buf *body)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char small[API_READ_SMALL], *chunk = small;
    size_t size = sizeof(small);
    int rc = 0;

    /* most bodies are small: no 64 KiB allocation for them */
    if (!ri || ri->content_length < 0 || ri->content_length > (long long)sizeof(small)) {
        chunk = malloc(API_READ_CHUNK);
        size = API_READ_CHUNK;
    }
    if (!chunk)
        return 500;
    for (;;) {
        int n = mg_read(conn, chunk, size);

        if (n == 0)
            break;
        if (n < 0) {
            rc = 400;
            break;
        }
        if (pc_buf_append(body, chunk, (size_t)n) != 0) {
            rc = 413;
            break;
        }
    }
    if (chunk != small)
        free(chunk);
    return rc;
}

static int api_publish(struct mg_connection *conn, const struct gw_ctx *gw, const char *key)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char ev[128], q[128], err[256];
    struct pc_splitter *sp;
    struct pc_buf body;
    struct pub p;
    int n, rc;
    cJSON *o;

    memset(&p, 0, sizeof(p));
    n = gw_http_query(conn, "event", 0, ev, sizeof(ev));
    if (n == -2 || (n >= 0 && !pc_event_valid(ev, (size_t)n))) {
        gw_http_quote(ev, n > 0 ? (size_t)n : 0, q, sizeof(q));
        return gw_http_error(conn, gw, 400, NULL,
                             "event \"%s\": invalid event name (allowed: 1-64 bytes of A-Z a-z "
                             "0-9 _ -)",
                             q);
    }
    if (ri->content_length > (long long)gw->cfg->max_body) {
        mg_disable_connection_keep_alive(conn);
        return gw_http_error(conn, gw, 413, "Connection: close\r\n",
                             "body of %lld bytes is larger than max-body (%zu bytes)",
                             ri->content_length, gw->cfg->max_body);
    }
    pc_buf_init(&body, gw->cfg->max_body);
    rc = read_body(conn, &body);
    if (rc != 0) {
        pc_buf_free(&body);
        mg_disable_connection_keep_alive(conn);
        if (rc == 413)
            return gw_http_error(conn, gw, 413, "Connection: close\r\n",
                                 "body larger than max-body (%zu bytes)", gw->cfg->max_body);
        return gw_http_error(conn, gw, rc, "Connection: close\r\n", "could not read the body");
    }

    p.c = gw_rpool_get(gw->pool, GW_POOL_WAIT_MS, err, sizeof(err));
    if (!p.c) {
        pc_buf_free(&body);
        return redis_unavailable(conn, gw, err);
    }
    p.key = key;
    p.event = n > 0 ? ev : NULL;
    p.metrics = gw->metrics;
    sp = pc_splitter_new(PC_LINE_MAX_DEFAULT, pub_entry, &p);
    if (!sp) {
        gw_rpool_put(gw->pool, p.c, 0);
        pc_buf_free(&body);
        return gw_http_error(conn, gw, 500, NULL, "out of memory");
    }
    if (pc_splitter_feed(sp, body.data ? body.data : "", body.len) == 0)
        pc_splitter_finish(sp);
    if (!p.broken)
        pub_collect(&p);
    pc_splitter_free(sp);
    pc_buf_free(&body);
    gw_rpool_put(gw->pool, p.c, p.broken);
    gw_metrics_add(&gw->metrics->published, p.published);

    if (!p.status) {
        /* the common answer, written directly (ids are digits and '-': nothing to escape) */
        char json[64 + PC_ID_STRLEN];
        int jl = snprintf(json, sizeof(json), "{\"published\":%llu,\"last_id\":%s%s%s}",
                          p.published, p.published ? "\"" : "", p.published ? p.last_id : "null",
                          p.published ? "\"" : "");

        return gw_http_send(conn, gw, 200, "application/json", NULL, json, (size_t)jl);
    }
    /* a failure: what went in before it, and why */
    o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "error", p.err);
        cJSON_AddNumberToObject(o, "published", (double)p.published);
        if (p.published)
            cJSON_AddStringToObject(o, "last_id", p.last_id);
        else
            cJSON_AddNullToObject(o, "last_id");
    }
    pc_warn("api", "publish to %s: %s (%llu entries published)", key, p.err, p.published);
    return gw_http_json_take(conn, gw, p.status, p.status == 503 ? "Retry-After: 2\r\n" : NULL, o);
}

/* ------------------------------------------------------------------------ */
/* Routing                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * URL-decode one path segment into a channel name. @return 0, or the 400
 * response already sent.
 */
static int decode_channel(struct mg_connection *conn, const struct gw_ctx *gw, const char *seg,
                          size_t seglen, char *name, size_t namelen)
{
    char buf[1024], msg[512];
    int n = -1;

    if (seglen < sizeof(buf) / 2)
        n = mg_url_decode(seg, (int)seglen, buf, (int)sizeof(buf), 0);
    if (n < 0) {
        /* far too long to be a name: explain with the raw text */
        pc_channel_explain(seg, seglen, msg, sizeof(msg));
        return gw_http_error(conn, gw, 400, NULL, "%s", msg);
    }
    if (!pc_channel_valid(buf, (size_t)n) || (size_t)n >= namelen) {
        pc_channel_explain(buf, (size_t)n, msg, sizeof(msg));
        return gw_http_error(conn, gw, 400, NULL, "%s", msg);
    }
    memcpy(name, buf, (size_t)n);
    name[n] = '\0';
    return 0;
}

int gw_api_handler(struct mg_connection *conn, void *cbdata)
{
    struct gw_ctx *gw = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *uri = ri->local_uri ? ri->local_uri : "";
    char name[PC_CHANNEL_MAX + 1], key[PC_KEY_MAX];
    const char *rest, *slash;
    size_t seglen;
    int rc;

    if (strcmp(uri, "/api/events") == 0) {
        gw_metrics_request(gw->metrics, GW_EP_EVENTS);
        if (method_is(ri, "OPTIONS"))
            return preflight(conn, gw, ALLOW_EVENTS);
        if (!method_is(ri, "GET"))
            return not_allowed(conn, gw, ALLOW_EVENTS, ri);
        return gw_sse_handle_multi(gw, conn);
    }
    if (gw_jobs_api_match(uri))
        return gw_jobs_api_handle(conn, gw);
    if (strncmp(uri, "/api/channels", 13) != 0 || (uri[13] != '\0' && uri[13] != '/'))
        return gw_http_error(conn, gw, 404, NULL, "no such endpoint");
    rest = uri + 13;
    if (*rest == '/')
        rest++;
    if (*rest == '\0') {
        gw_metrics_request(gw->metrics, GW_EP_CHANNELS);
        if (method_is(ri, "OPTIONS"))
            return preflight(conn, gw, ALLOW_CHANNELS);
        if (!method_is(ri, "GET"))
            return not_allowed(conn, gw, ALLOW_CHANNELS, ri);
        return api_list(conn, gw);
    }
    slash = strchr(rest, '/');
    seglen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (slash && strcmp(slash, "/events") != 0)
        return gw_http_error(conn, gw, 404, NULL, "no such endpoint");

    if (slash) {
        gw_metrics_request(gw->metrics, GW_EP_EVENTS);
        if (method_is(ri, "OPTIONS"))
            return preflight(conn, gw, ALLOW_EVENTS);
        if (!method_is(ri, "GET"))
            return not_allowed(conn, gw, ALLOW_EVENTS, ri);
    } else {
        gw_metrics_request(gw->metrics, method_is(ri, "POST") ? GW_EP_PUBLISH : GW_EP_CHANNEL);
        if (method_is(ri, "OPTIONS"))
            return preflight(conn, gw, ALLOW_CHANNEL);
        if (!method_is(ri, "GET") && !method_is(ri, "DELETE") && !method_is(ri, "POST"))
            return not_allowed(conn, gw, ALLOW_CHANNEL, ri);
    }
    if ((rc = decode_channel(conn, gw, rest, seglen, name, sizeof(name))) != 0)
        return rc;
    if (pc_key_channel(key, sizeof(key), gw->cfg->prefix, name) < 0)
        return gw_http_error(conn, gw, 400, NULL, "channel \"%s\": invalid name", name);

    if (slash)
        return gw_sse_handle(gw, conn, name);
    if (method_is(ri, "GET"))
        return api_channel_get(conn, gw, name, key);
    if (method_is(ri, "DELETE"))
        return api_channel_delete(conn, gw, name, key);
    return api_publish(conn, gw, key);
}

int gw_api_health_handler(struct mg_connection *conn, void *cbdata)
{
    struct gw_ctx *gw = cbdata;
    const char *argv[1] = {"PING"};
    size_t argvlen[1] = {4};
    char err[256];
    redisReply *r;
    cJSON *o;
    int ok;

    gw_metrics_request(gw->metrics, GW_EP_HEALTH);
    r = gw_rpool_command(gw->pool, 1000, err, sizeof(err), 1, argv, argvlen);
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r && !ok)
        snprintf(err, sizeof(err), "%s", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
    if (r)
        freeReplyObject(r);
    o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "status", ok ? "ok" : "error");
        cJSON_AddStringToObject(o, "redis", ok ? "ok" : err);
    }
    return gw_http_json_take(conn, gw, ok ? 200 : 503, ok ? NULL : "Retry-After: 2\r\n", o);
}

int gw_api_metrics_handler(struct mg_connection *conn, void *cbdata)
{
    struct gw_ctx *gw = cbdata;
    struct pc_buf b;
    int status;

    gw_metrics_request(gw->metrics, GW_EP_METRICS);
    pc_buf_init(&b, 1 << 20);
    if (gw_metrics_render(gw->metrics, &b) != 0) {
        pc_buf_free(&b);
        return gw_http_error(conn, gw, 500, NULL, "out of memory");
    }
    status = gw_http_send(conn, gw, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data,
                          b.len);
    pc_buf_free(&b);
    return status;
}
