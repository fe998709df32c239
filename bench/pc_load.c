/* pc_load.c -- the load tool of bench/compare.py: the same clients and publishers against
 * pipecast-gateway and nginx + nchan, so that both are measured by identical code.
 *
 * Subscribers are EventSource-like HTTP/1.1 clients on one libevent loop (thousands of
 * connections on one thread). Publishers run on their own thread with blocking sockets: either
 * Redis (XADD into "<key-prefix><channel>", pipecast's producer contract) or HTTP (POST to a URL,
 * one keep-alive connection; nchan's publisher location, or pipecast's POST /api/channels/<ch>).
 * Every payload is "<monotonic µs at publish> <sequence number>": a client that receives it
 * records now - that (same process, same clock), and checks the sequence for gaps and duplicates.
 * A fixed-rate publisher that runs over 1 ms late (its previous publish was slow to answer) stamps
 * the event with its scheduled time instead, so that the wait counts in the latency.
 *
 *   pc-load sse      N clients on C channels, a fixed publish rate: latency, delivery, RSS, CPU
 *   pc-load storm    N clients disconnect, M events are published, all reconnect at once with
 *                    Last-Event-ID: time until every client has caught up
 *   pc-load replay   E entries published first, then one client reads them all from the start
 *   pc-load pubrate  HTTP publish, one keep-alive connection, as fast as answers come: requests/s
 *   pc-load overload H streams held, S idle connections, then K requests at once: time to answer
 *
 * URL templates contain "{ch}", replaced by the channel name. Ids are handled generically: a
 * client sends back as Last-Event-ID exactly the last `id:` the server sent (stream ids for
 * pipecast, "<time>:<tag>" for nchan). Output: one line of key=value pairs on stdout.
 * Bench tool, run by hand (bench/compare.py): not part of the test suite.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#define LOAD_ID_MAX 1024   /* longest `id:` kept for Last-Event-ID */
#define LOAD_PATH_MAX 2048 /* longest request path */
#define LOAD_RESP_MAX (1u << 20)

/* ------------------------------------------------------------------ time, /proc */

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(long long us)
{
    if (us <= 0)
        return;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

#define LOAD_PIDS_MAX 16
struct pidset {
    int pid[LOAD_PIDS_MAX];
    int n;
};

/* "1,2,3" -> pids; an empty or NULL list is an empty set. */
static void pidset_parse(struct pidset *ps, const char *list)
{
    ps->n = 0;
    while (list && *list && ps->n < LOAD_PIDS_MAX) {
        char *end;
        long v = strtol(list, &end, 10);
        if (end == list)
            break;
        if (v > 0)
            ps->pid[ps->n++] = (int)v;
        list = *end == ',' ? end + 1 : end;
    }
}

/* Sum of VmRSS over the set, in KB (-1 for an empty set). */
static long pidset_rss_kb(const struct pidset *ps)
{
    long sum = 0;
    if (ps->n == 0)
        return -1;
    for (int i = 0; i < ps->n; i++) {
        char path[64], line[256];
        long kb = 0;
        snprintf(path, sizeof(path), "/proc/%d/status", ps->pid[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
                break;
        fclose(f);
        sum += kb;
    }
    return sum;
}

/* Sum of utime + stime over the set (all threads), in seconds. */
static double pidset_cpu_s(const struct pidset *ps)
{
    double sum = 0;
    long tck = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < ps->n; i++) {
        char path[64], buf[2048];
        snprintf(path, sizeof(path), "/proc/%d/stat", ps->pid[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* Fields after the command name, which may contain spaces: skip to the last ')'. */
        char *p = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        if (p &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            sum += (double)(ut + st) / (double)tck;
    }
    return sum;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ histogram */

/* 1 µs buckets up to 10 ms, then 100 µs buckets up to 10 s, then one overflow bucket. */
#define HISTO_FINE 10000
#define HISTO_COARSE 100000
struct histo {
    unsigned long long fine[HISTO_FINE];
    unsigned long long coarse[HISTO_COARSE];
    unsigned long long n;
    long long max;
};

static void histo_add(struct histo *h, long long us)
{
    if (us < 0)
        us = 0;
    if (us < HISTO_FINE)
        h->fine[us]++;
    else if ((us - HISTO_FINE) / 100 < HISTO_COARSE)
        h->coarse[(us - HISTO_FINE) / 100]++;
    if (us > h->max)
        h->max = us;
    h->n++;
}

/* The value at quantile q (0..1) in µs; -1 when empty; beyond 10 s, the maximum. */
static long long histo_q(const struct histo *h, double q)
{
    if (h->n == 0)
        return -1;
    if (q >= 1.0)
        return h->max;
    unsigned long long want = (unsigned long long)(q * (double)h->n), seen = 0;
    for (long long i = 0; i < HISTO_FINE; i++) {
        seen += h->fine[i];
        if (seen > want)
            return i;
    }
    for (long long i = 0; i < HISTO_COARSE; i++) {
        seen += h->coarse[i];
        if (seen > want)
            return HISTO_FINE + i * 100;
    }
    return h->max;
}

/* ------------------------------------------------------------------ URLs */

struct url {
    char host[256];
    char port[16];
    char path[LOAD_PATH_MAX]; /* may hold "{ch}" */
};

/* Parses "http://host:port/path" (or "redis://host:port[/db]", path then ignored). */
static int url_parse(const char *s, const char *scheme, struct url *u)
{
    size_t sl = strlen(scheme);
    if (strncmp(s, scheme, sl) != 0 || strncmp(s + sl, "://", 3) != 0)
        return -1;
    s += sl + 3;
    const char *slash = strchr(s, '/');
    const char *end = slash ? slash : s + strlen(s);
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof(u->host) ||
        (size_t)(end - colon - 1) >= sizeof(u->port) || end == colon + 1)
        return -1;
    memcpy(u->host, s, (size_t)(colon - s));
    u->host[colon - s] = '\0';
    memcpy(u->port, colon + 1, (size_t)(end - colon - 1));
    u->port[end - colon - 1] = '\0';
    snprintf(u->path, sizeof(u->path), "%s", slash ? slash : "/");
    return 0;
}

/* tmpl with every "{ch}" replaced by ch, into out (truncated at cap). */
static void url_expand(const char *tmpl, const char *ch, char *out, size_t cap)
{
    size_t o = 0, cl = strlen(ch);
    while (*tmpl && o + 1 < cap) {
        if (strncmp(tmpl, "{ch}", 4) == 0) {
            size_t n = cl < cap - 1 - o ? cl : cap - 1 - o;
            memcpy(out + o, ch, n);
            o += n;
            tmpl += 4;
        } else {
            out[o++] = *tmpl++;
        }
    }
    out[o] = '\0';
}

static int resolve(const struct url *u, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(u->host, u->port, &hints, &ai) != 0 || !ai)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static void channel_name(char *out, size_t cap, const char *prefix, int nchannels, int i)
{
    if (nchannels == 1)
        snprintf(out, cap, "%s", prefix);
    else
        snprintf(out, cap, "%s-%d", prefix, i);
}

/* ------------------------------------------------------------------ publishers */

enum { PUB_REDIS, PUB_HTTP };

struct pub {
    int kind;
    redisContext *rc;
    char key_prefix[128];
    struct url u;
    int fd;
    char *in; /* response bytes read but not consumed */
    size_t in_len;
    char *req; /* pipelined requests being built */
    size_t req_len, req_cap;
    long long errors;
    long long reconnects; /* after a "Connection: close" answer */
    int last_status;
    int closing;   /* the server said "Connection: close": reconnect before the next request */
    char err[640]; /* host (255) + port + strerror */
};

static int pub_http_connect(struct pub *p)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(&p->u, &ss, &len) != 0) {
        snprintf(p->err, sizeof(p->err), "cannot resolve %s", p->u.host);
        return -1;
    }
    p->fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&ss, len) != 0) {
        snprintf(p->err, sizeof(p->err), "connect %s:%s: %s", p->u.host, p->u.port,
                 strerror(errno));
        if (p->fd >= 0)
            close(p->fd);
        p->fd = -1;
        return -1;
    }
    int one = 1;
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p->in_len = 0;
    return 0;
}

/* spec: "redis://host:port" or "http://host:port/path-with-{ch}". */
static int pub_open(struct pub *p, const char *spec, const char *key_prefix)
{
    memset(p, 0, sizeof(*p));
    p->fd = -1;
    snprintf(p->key_prefix, sizeof(p->key_prefix), "%s", key_prefix);
    if (strncmp(spec, "redis://", 8) == 0) {
        p->kind = PUB_REDIS;
        if (url_parse(spec, "redis", &p->u) != 0) {
            snprintf(p->err, sizeof(p->err), "bad redis URL %s", spec);
            return -1;
        }
        p->rc = redisConnect(p->u.host, atoi(p->u.port));
        if (!p->rc || p->rc->err) {
            snprintf(p->err, sizeof(p->err), "redis %s: %s", spec,
                     p->rc ? p->rc->errstr : "out of memory");
            return -1;
        }
        return 0;
    }
    p->kind = PUB_HTTP;
    if (url_parse(spec, "http", &p->u) != 0) {
        snprintf(p->err, sizeof(p->err), "bad publish URL %s", spec);
        return -1;
    }
    p->in = malloc(LOAD_RESP_MAX);
    if (!p->in)
        return -1;
    return pub_http_connect(p);
}

static void pub_close(struct pub *p)
{
    if (p->rc)
        redisFree(p->rc);
    if (p->fd >= 0)
        close(p->fd);
    free(p->in);
    free(p->req);
    p->rc = NULL;
    p->fd = -1;
    p->in = NULL;
    p->req = NULL;
}

static int pub_req_add(struct pub *p, const char *ch, const char *data, size_t dlen)
{
    char path[LOAD_PATH_MAX], head[LOAD_PATH_MAX + 256];
    url_expand(p->u.path, ch, path, sizeof(path));
    int hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      path, p->u.host, p->u.port, dlen);
    size_t need = p->req_len + (size_t)hl + dlen;
    if (need > p->req_cap) {
        size_t cap = need * 2;
        char *n = realloc(p->req, cap);
        if (!n)
            return -1;
        p->req = n;
        p->req_cap = cap;
    }
    memcpy(p->req + p->req_len, head, (size_t)hl);
    memcpy(p->req + p->req_len + hl, data, dlen);
    p->req_len = need;
    return 0;
}

static int write_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one whole HTTP response (Content-Length bodies only); its status, or -1. */
static int pub_http_read_response(struct pub *p)
{
    for (;;) {
        char *eoh = NULL;
        if (p->in_len >= 4) {
            for (size_t i = 0; i + 3 < p->in_len; i++)
                if (memcmp(p->in + i, "\r\n\r\n", 4) == 0) {
                    eoh = p->in + i;
                    break;
                }
        }
        if (eoh) {
            int status = 0;
            size_t clen = 0, hlen = (size_t)(eoh - p->in) + 4;
            sscanf(p->in, "HTTP/1.%*c %d", &status);
            for (char *h = p->in; h < eoh; h++) {
                if ((h == p->in || h[-1] == '\n') && strncasecmp(h, "content-length:", 15) == 0)
                    clen = strtoull(h + 15, NULL, 10);
                if ((h == p->in || h[-1] == '\n') && strncasecmp(h, "connection:", 11) == 0 &&
                    strncasecmp(h + 11 + strspn(h + 11, " "), "close", 5) == 0)
                    p->closing = 1;
                if ((h == p->in || h[-1] == '\n') &&
                    strncasecmp(h, "transfer-encoding:", 18) == 0) {
                    snprintf(p->err, sizeof(p->err), "chunked publish responses not supported");
                    return -1;
                }
            }
            if (hlen + clen <= p->in_len) {
                memmove(p->in, p->in + hlen + clen, p->in_len - hlen - clen);
                p->in_len -= hlen + clen;
                p->last_status = status;
                return status;
            }
        }
        if (p->in_len == LOAD_RESP_MAX) {
            snprintf(p->err, sizeof(p->err), "response too large");
            return -1;
        }
        ssize_t r = read(p->fd, p->in + p->in_len, LOAD_RESP_MAX - p->in_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(p->err, sizeof(p->err), "publish connection closed: %s",
                     r < 0 ? strerror(errno) : "EOF");
            return -1;
        }
        p->in_len += (size_t)r;
    }
}

/* Sends the batch built with pub_req_add and reads its n answers; -1 on a broken connection,
 * else the number of non-2xx answers (counted in p->errors too). */
static int pub_http_flush(struct pub *p, int n)
{
    int bad = 0;
    if (p->closing) {
        /* Only between batches: a server that closes inside a pipelined batch is an error. */
        close(p->fd);
        p->fd = -1;
        p->closing = 0;
        p->reconnects++;
        if (pub_http_connect(p) != 0)
            return -1;
    }
    if (write_all(p->fd, p->req, p->req_len) != 0) {
        snprintf(p->err, sizeof(p->err), "publish write: %s", strerror(errno));
        p->req_len = 0;
        return -1;
    }
    p->req_len = 0;
    for (int i = 0; i < n; i++) {
        int st = pub_http_read_response(p);
        if (st < 0)
            return -1;
        if (st < 200 || st > 299)
            bad++;
    }
    p->errors += bad;
    return bad;
}

static void payload(char *buf, size_t cap, long long ts, long long seq, int *len)
{
    *len = snprintf(buf, cap, "%lld %lld", ts ? ts : now_us(), seq);
}

/* One entry on channel ch with sequence number seq, stamped ts (0: now); waits for the answer. */
static int pub_one(struct pub *p, const char *ch, long long seq, long long ts)
{
    char data[64];
    int dl;
    if (p->kind == PUB_REDIS) {
        payload(data, sizeof(data), ts, seq, &dl);
        redisReply *r =
            redisCommand(p->rc, "XADD %s%s * data %b", p->key_prefix, ch, data, (size_t)dl);
        if (!r) {
            snprintf(p->err, sizeof(p->err), "XADD: %s", p->rc->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR)
            p->errors++;
        freeReplyObject(r);
        return 0;
    }
    payload(data, sizeof(data), ts, seq, &dl);
    if (pub_req_add(p, ch, data, (size_t)dl) != 0)
        return -1;
    return pub_http_flush(p, 1) < 0 ? -1 : 0;
}

/* Entries first..first+n-1 on ch, pipelined depth at a time (prefill, missed events). */
static int pub_many(struct pub *p, const char *ch, long long first, long long n, int depth)
{
    char data[64];
    int dl;
    for (long long done = 0; done < n;) {
        int batch = (int)(n - done < depth ? n - done : depth);
        for (int i = 0; i < batch; i++) {
            payload(data, sizeof(data), 0, first + done + i, &dl);
            if (p->kind == PUB_REDIS) {
                redisAppendCommand(p->rc, "XADD %s%s * data %b", p->key_prefix, ch, data,
                                   (size_t)dl);
            } else if (pub_req_add(p, ch, data, (size_t)dl) != 0) {
                return -1;
            }
        }
        if (p->kind == PUB_REDIS) {
            for (int i = 0; i < batch; i++) {
                redisReply *r = NULL;
                if (redisGetReply(p->rc, (void **)&r) != REDIS_OK) {
                    snprintf(p->err, sizeof(p->err), "XADD: %s", p->rc->errstr);
                    return -1;
                }
                if (r->type == REDIS_REPLY_ERROR)
                    p->errors++;
                freeReplyObject(r);
            }
        } else if (pub_http_flush(p, batch) < 0) {
            return -1;
        }
        done += batch;
    }
    return 0;
}

/* ------------------------------------------------------------------ SSE clients */

/*
 * A client is a non-blocking socket with one libevent event (no bufferevent): recv() into the
 * client's own buffer, lines parsed in place (no allocation per line), and the time of an event
 * is taken once per recv(), right after it returns -- the earliest point the tool sees the
 * bytes, so that parsing the other sockets of the same round does not count in the latency.
 * With --kstamp the kernel's receive time of the bytes (SO_TIMESTAMPNS) is recorded too, in a
 * second histogram: that is when the server's send() reached the client socket, without the
 * time the tool takes to get to it.
 */

enum { C_IDLE, C_CONNECTING, C_HEADERS, C_BODY, C_CLOSED };

/* A client's read buffer starts at this size and doubles, up to LOAD_RESP_MAX. */
#define LOAD_RBUF_MIN 4096

struct load;

struct client {
    struct load *L;
    int fd;
    struct event *ev; /* on fd: EV_WRITE while connecting / sending the request, then EV_READ */
    struct event *retry_ev;
    unsigned gen; /* bumped by client_close: a read loop stops when its connection is gone */
    int idx;
    int ch; /* channel index */
    int state;
    int status;
    int retry_after; /* seconds, from a 503's Retry-After; -1 none */
    int silent;      /* overload: connect and send nothing */
    int probe;       /* overload: close after the headers */
    int answered;
    int caught_up;
    int sits_out; /* storm: never got an id, so does not take part */
    long long t_connect, t_answer, t_done;
    long long t_rx, t_krx; /* when the bytes being parsed were read (tool, kernel; 0: none) */
    /* I/O */
    char *wbuf; /* the request while it is being sent */
    size_t wlen, woff;
    char *rbuf; /* received bytes not parsed yet: [0, rlen) */
    size_t rlen, rcap;
    /* SSE parsing */
    char cur_id[LOAD_ID_MAX];
    char last_id[LOAD_ID_MAX];
    int has_cur_id;
    int ev_has_data;
    long long ev_ts, ev_seq;
    /* accounting */
    long long last_seq; /* -1: none yet */
    unsigned long long events, dups, missing, gaps;
};

enum { M_SSE, M_STORM, M_REPLAY, M_PUBRATE, M_OVERLOAD };

struct load {
    int mode;
    struct event_base *base;
    struct event *tick;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const char *url_tmpl;
    struct url u;
    const char *chan_prefix;
    const char *pub_spec;
    const char *key_prefix;
    int nchannels;
    int nclients;
    struct client *clients;
    struct histo *h;
    struct histo *kh;          /* --kstamp: publish -> kernel receive time (NULL: off) */
    long long real_to_mono_ns; /* CLOCK_MONOTONIC - CLOCK_REALTIME, for kernel stamps */
    int window;                /* max clients waiting for their answer at once */
    int pending;               /* clients connecting or waiting for headers */
    int answered;              /* clients with a status line */
    int ready;                 /* clients with a 200 */
    int failed;                /* connections lost or refused, non-200 answers */
    int rejected;              /* 503 answers */
    int with_retry;            /* 503 answers that had Retry-After */
    int reconnects;
    int reconnect_on_fail;
    int caught;
    int storm_clients;    /* storm: clients that had an id to resume from */
    int probe_from;       /* overload: the first probe */
    long long target_seq; /* storm / replay: the sequence number that ends a client's run */
    long long measure_from_us;
    unsigned long long delivered;
    struct pidset srv, redis;
    /* publisher thread (sse mode) */
    double rate;     /* per channel */
    double duration; /* seconds */
    atomic_int pub_running;
    atomic_llong published;
    atomic_llong pub_behind_max_us;
    char pub_err[640];
    long long pub_errors;
};

static void client_start(struct client *c);

static void client_close(struct client *c)
{
    struct load *L = c->L;
    c->gen++;
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = c->woff = 0;
    c->rlen = 0; /* the buffer is kept for the next connection */
    if (c->state == C_CONNECTING || c->state == C_HEADERS)
        L->pending--;
    c->state = C_CLOSED;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    (void)what;
    c->L->reconnects++;
    client_start(c);
}

static void client_fail(struct client *c)
{
    struct load *L = c->L;
    int was_done = c->caught_up;
    client_close(c);
    L->failed++;
    if (L->reconnect_on_fail && !was_done) {
        /* EventSource-like: try again after the Retry-After, else one second. */
        int s = c->retry_after > 0 ? c->retry_after : 1;
        if (!c->retry_ev)
            c->retry_ev = evtimer_new(L->base, retry_cb, c);
        struct timeval tv = {s, 0};
        evtimer_add(c->retry_ev, &tv);
    }
}

static void client_event(struct client *c)
{
    struct load *L = c->L;
    long long now = c->t_rx ? c->t_rx : now_us();
    if (c->has_cur_id)
        memcpy(c->last_id, c->cur_id, sizeof(c->last_id));
    c->has_cur_id = 0;
    if (!c->ev_has_data)
        return;
    c->ev_has_data = 0;
    c->events++;
    L->delivered++;
    if (c->last_seq >= 0 && c->ev_seq <= c->last_seq)
        c->dups++;
    else if (c->ev_seq > c->last_seq + 1)
        c->missing += (unsigned long long)(c->ev_seq - c->last_seq - 1);
    if (c->ev_seq > c->last_seq)
        c->last_seq = c->ev_seq;
    if (L->mode == M_SSE && c->ev_ts >= L->measure_from_us) {
        histo_add(L->h, now - c->ev_ts);
        if (L->kh && c->t_krx)
            histo_add(L->kh, c->t_krx - c->ev_ts);
    }
    if (!c->caught_up && L->target_seq >= 0 && c->last_seq >= L->target_seq) {
        c->caught_up = 1;
        c->t_done = now;
        L->caught++;
    }
}

/* One line (NUL-terminated in place, without its CR LF / LF). */
static void client_line(struct client *c, char *line, size_t n)
{
    struct load *L = c->L;
    if (c->state == C_HEADERS) {
        if (c->status == 0) {
            if (sscanf(line, "HTTP/1.%*c %d", &c->status) != 1)
                c->status = -1;
            c->answered = 1;
            c->t_answer = c->t_rx ? c->t_rx : now_us();
            L->answered++;
            return;
        }
        if (n > 0) {
            if (strncasecmp(line, "retry-after:", 12) == 0)
                c->retry_after = atoi(line + 12);
            else if (strncasecmp(line, "transfer-encoding:", 18) == 0)
                fprintf(stderr, "pc-load: chunked SSE responses are not supported\n");
            return;
        }
        /* End of the headers. */
        L->pending--;
        c->state = C_BODY;
        if (c->status == 503) {
            L->rejected++;
            if (c->retry_after >= 0)
                L->with_retry++;
        }
        if (c->probe || c->status != 200) {
            if (c->probe) {
                client_close(c);
                if (c->status == 200)
                    L->ready++;
            } else {
                client_fail(c);
            }
            return;
        }
        L->ready++;
        return;
    }
    /* SSE body: fields are "name: value" (one optional space), comments start with ':'. */
    if (n == 0) {
        client_event(c);
        return;
    }
    if (line[0] == ':')
        return;
    char *colon = memchr(line, ':', n);
    char *val = colon ? colon + 1 : line + n;
    size_t nl = colon ? (size_t)(colon - line) : n;
    if (*val == ' ')
        val++;
    if (nl == 4 && memcmp(line, "data", 4) == 0) {
        char *end;
        c->ev_ts = strtoll(val, &end, 10);
        c->ev_seq = strtoll(end, NULL, 10);
        c->ev_has_data = 1;
    } else if (nl == 2 && memcmp(line, "id", 2) == 0) {
        size_t vl = (size_t)(line + n - val);
        if (vl >= sizeof(c->cur_id))
            vl = sizeof(c->cur_id) - 1;
        memcpy(c->cur_id, val, vl);
        c->cur_id[vl] = '\0';
        c->has_cur_id = 1;
    } else if (nl == 5 && memcmp(line, "event", 5) == 0) {
        if (strcmp(val, "gap") == 0)
            c->gaps++;
    }
}

/* Watch fd for @p what (EV_READ or EV_WRITE), persistently. @return 0 or -1. */
static int client_watch(struct client *c, short what);

static void client_io_cb(evutil_socket_t fd, short what, void *arg);

/* Every complete line of the buffer; the rest moves to its start. */
static void client_parse(struct client *c)
{
    unsigned gen = c->gen;
    size_t pos = 0;
    while (pos < c->rlen) {
        char *line = c->rbuf + pos;
        char *nl = memchr(line, '\n', c->rlen - pos);
        if (!nl)
            break;
        size_t n = (size_t)(nl - line);
        pos += n + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        line[n] = '\0';
        client_line(c, line, n);
        if (c->gen != gen)
            return; /* closed: the buffer was emptied */
    }
    if (pos > 0) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
}

/* Kernel receive time of what recvmsg() read, on the CLOCK_MONOTONIC scale in µs (0: none). */
static long long cmsg_rx_us(struct load *L, struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            return ((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec + L->real_to_mono_ns) / 1000;
        }
    }
    return 0;
}

/* Read what the socket has (level-triggered: what is left calls again), parse it. */
static void client_readable(struct client *c)
{
    struct load *L = c->L;
    unsigned gen = c->gen;
    for (int rounds = 0; rounds < 8 && c->gen == gen; rounds++) {
        if (c->rcap - c->rlen < 512) {
            size_t ncap = c->rcap ? c->rcap * 2 : LOAD_RBUF_MIN;
            char *nb;
            if (ncap > LOAD_RESP_MAX || !(nb = realloc(c->rbuf, ncap))) {
                fprintf(stderr, "pc-load: client %d: a line longer than %u bytes\n", c->idx,
                        LOAD_RESP_MAX);
                client_fail(c);
                return;
            }
            c->rbuf = nb;
            c->rcap = ncap;
        }
        size_t room = c->rcap - c->rlen - 1; /* a NUL fits after the last line */
        ssize_t k;
        c->t_krx = 0;
        if (L->kh) {
            union {
                char buf[CMSG_SPACE(sizeof(struct timespec))];
                struct cmsghdr align;
            } cb;
            struct iovec iov = {c->rbuf + c->rlen, room};
            struct msghdr mh;
            memset(&mh, 0, sizeof(mh));
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cb.buf;
            mh.msg_controllen = sizeof(cb.buf);
            k = recvmsg(c->fd, &mh, MSG_DONTWAIT);
            if (k > 0)
                c->t_krx = cmsg_rx_us(L, &mh);
        } else {
            k = recv(c->fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
        }
        if (k > 0) {
            c->t_rx = now_us();
            c->rlen += (size_t)k;
            client_parse(c);
            if ((size_t)k < room)
                return; /* the socket is empty */
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        client_fail(c); /* EOF or an error */
        return;
    }
}

/* Send what is left of the request; then read. */
static void client_writable(struct client *c)
{
    while (c->woff < c->wlen) {
        ssize_t k = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* EV_WRITE calls again */
        if (k <= 0) {
            client_fail(c);
            return;
        }
        c->woff += (size_t)k;
    }
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = c->woff = 0;
    if (client_watch(c, EV_READ) != 0)
        client_fail(c);
}

/* The connection is up: send the request (a silent client only reads). */
static void client_connected(struct client *c)
{
    struct load *L = c->L;
    int err = 0;
    socklen_t el = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        client_fail(c);
        return;
    }
    c->state = C_HEADERS;
    if (c->silent) {
        if (client_watch(c, EV_READ) != 0)
            client_fail(c);
        return;
    }
    char path[LOAD_PATH_MAX], ch[256];
    channel_name(ch, sizeof(ch), L->chan_prefix, L->nchannels, c->ch);
    url_expand(L->u.path, ch, path, sizeof(path));
    size_t cap = strlen(path) + strlen(L->u.host) + strlen(c->last_id) + 256;
    c->wbuf = malloc(cap);
    if (!c->wbuf) {
        client_fail(c);
        return;
    }
    int n = snprintf(c->wbuf, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n%s%s%s\r\n",
                     path, L->u.host, L->u.port, c->last_id[0] ? "Last-Event-ID: " : "", c->last_id,
                     c->last_id[0] ? "\r\n" : "");
    c->wlen = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    c->woff = 0;
    client_writable(c);
}

static void client_io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    if (c->state == C_CONNECTING) {
        if (what & EV_WRITE)
            client_connected(c);
        return;
    }
    if (c->wbuf) {
        if (what & EV_WRITE)
            client_writable(c);
        return;
    }
    if (what & EV_READ)
        client_readable(c);
}

static int client_watch(struct client *c, short what)
{
    if (c->ev) {
        event_del(c->ev);
        if (event_assign(c->ev, c->L->base, c->fd, what | EV_PERSIST, client_io_cb, c) != 0)
            return -1;
    } else {
        c->ev = event_new(c->L->base, c->fd, what | EV_PERSIST, client_io_cb, c);
        if (!c->ev)
            return -1;
    }
    return event_add(c->ev, NULL);
}

static void client_start(struct client *c)
{
    struct load *L = c->L;
    int one = 1;
    c->fd = socket(L->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        L->failed++;
        c->state = C_CLOSED;
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (L->kh)
        setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    c->state = C_CONNECTING;
    c->status = 0;
    c->retry_after = -1;
    c->answered = 0;
    c->has_cur_id = 0;
    c->ev_has_data = 0;
    c->rlen = 0;
    c->t_rx = c->t_krx = 0;
    c->t_connect = now_us();
    L->pending++;
    if (connect(c->fd, (struct sockaddr *)&L->addr, L->addr_len) != 0 && errno != EINPROGRESS) {
        client_fail(c);
        return;
    }
    if (client_watch(c, EV_WRITE) != 0)
        client_fail(c);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until cond(L) holds or timeout_ms passes; 1 if cond held. */
static int run_until(struct load *L, int (*cond)(struct load *), long long timeout_ms)
{
    long long end = now_us() + timeout_ms * 1000;
    while (!cond(L)) {
        if (now_us() >= end)
            return 0;
        event_base_loop(L->base, EVLOOP_ONCE);
    }
    return 1;
}

static int cond_never(struct load *L)
{
    (void)L;
    return 0;
}

static int cond_all_answered(struct load *L)
{
    return L->pending == 0;
}

static int cond_all_caught(struct load *L)
{
    return L->caught >= L->nclients;
}

static void run_for(struct load *L, long long ms)
{
    run_until(L, cond_never, ms);
}

/* Starts clients [from, to) keeping at most L->window of them waiting for an answer. */
static void connect_clients(struct load *L, int from, int to)
{
    for (int i = from; i < to; i++) {
        while (L->pending >= L->window)
            event_base_loop(L->base, EVLOOP_ONCE);
        client_start(&L->clients[i]);
    }
    run_until(L, cond_all_answered, 60000);
}

/* ------------------------------------------------------------------ modes */

static void *sse_publisher(void *arg)
{
    struct load *L = arg;
    struct pub p;
    char ch[256];
    if (pub_open(&p, L->pub_spec, L->key_prefix) != 0) {
        snprintf(L->pub_err, sizeof(L->pub_err), "%s", p.err);
        pub_close(&p);
        atomic_store(&L->pub_running, 0);
        return NULL;
    }
    long long start = now_us();
    double total_rate = L->rate * L->nchannels;
    long long total = (long long)(total_rate * L->duration + 0.5);
    /* A publish path that cannot keep the rate gets twice the duration (at least 5 s more),
     * then the run reports what it published. */
    long long extra = L->duration > 5 ? (long long)(L->duration * 1e6) : 5000000;
    long long deadline = start + (long long)(L->duration * 1e6) + extra;
    for (long long i = 0; i < total; i++) {
        long long due = start + (long long)((double)i * 1e6 / total_rate);
        long long now = now_us(), ts = 0;
        if (now > deadline)
            break;
        if (due > now) {
            sleep_us(due - now);
        } else if (now - due > 1000) {
            /* Over 1 ms late (the previous publish was slow to answer): stamp the event with
             * its scheduled time, so that the wait counts in its latency (no coordinated
             * omission). Within 1 ms, the send time, so that sleep overshoot does not. */
            ts = due;
            if (now - due > atomic_load(&L->pub_behind_max_us))
                atomic_store(&L->pub_behind_max_us, now - due);
        }
        int c = (int)(i % L->nchannels);
        channel_name(ch, sizeof(ch), L->chan_prefix, L->nchannels, c);
        if (pub_one(&p, ch, i / L->nchannels, ts) != 0) {
            snprintf(L->pub_err, sizeof(L->pub_err), "%s", p.err);
            break;
        }
        atomic_fetch_add(&L->published, 1);
    }
    L->pub_errors = p.errors;
    pub_close(&p);
    atomic_store(&L->pub_running, 0);
    return NULL;
}

static int cond_pub_done(struct load *L)
{
    return !atomic_load(&L->pub_running);
}

static int cond_all_delivered(struct load *L)
{
    unsigned long long want = (unsigned long long)atomic_load(&L->published) *
                              (unsigned long long)L->nclients / (unsigned long long)L->nchannels;
    return L->delivered >= want;
}

static void client_totals(struct load *L, int *alive, unsigned long long *min_ev,
                          unsigned long long *dups, unsigned long long *missing,
                          unsigned long long *gaps)
{
    *alive = 0;
    *min_ev = ~0ULL;
    *dups = *missing = *gaps = 0;
    for (int i = 0; i < L->nclients; i++) {
        struct client *c = &L->clients[i];
        if (c->state == C_BODY)
            (*alive)++;
        if (c->events < *min_ev)
            *min_ev = c->events;
        *dups += c->dups;
        *missing += c->missing;
        *gaps += c->gaps;
    }
}

static int mode_sse(struct load *L)
{
    long rss_before = pidset_rss_kb(&L->srv);
    long long t_conn = now_us();
    connect_clients(L, 0, L->nclients);
    long long connect_ms = (now_us() - t_conn) / 1000;
    run_for(L, 1000); /* let every subscription settle before the measurement */
    long rss_conn = pidset_rss_kb(&L->srv);

    double srv0 = pidset_cpu_s(&L->srv), red0 = pidset_cpu_s(&L->redis), me0 = self_cpu_s();
    long long w0 = now_us();
    L->measure_from_us = w0;
    atomic_store(&L->pub_running, 1);
    pthread_t th;
    pthread_create(&th, NULL, sse_publisher, L);
    run_until(L, cond_pub_done, (long long)(L->duration * 1000) + 600000);
    pthread_join(th, NULL);
    /* Let the last events land: until all are delivered, at most 5 s. */
    run_until(L, cond_all_delivered, 5000);
    double win = (double)(now_us() - w0) / 1e6;
    double srv_cpu = pidset_cpu_s(&L->srv) - srv0, red_cpu = pidset_cpu_s(&L->redis) - red0;
    double me_cpu = self_cpu_s() - me0;
    long rss_end = pidset_rss_kb(&L->srv);

    int alive;
    unsigned long long min_ev, dups, missing, gaps;
    client_totals(L, &alive, &min_ev, &dups, &missing, &gaps);
    long long published = atomic_load(&L->published);
    unsigned long long expected =
        (unsigned long long)published * (unsigned long long)L->nclients / (unsigned)L->nchannels;
    printf("mode=sse clients=%d channels=%d ready=%d alive=%d failed=%d rejected=%d "
           "connect_ms=%lld planned=%lld published=%lld pub_errors=%lld pub_behind_max_us=%lld "
           "delivered=%llu expected=%llu min_per_client=%llu dups=%llu missing=%llu gaps=%llu "
           "p50_us=%lld p90_us=%lld p99_us=%lld p999_us=%lld max_us=%lld "
           "rss_before_kb=%ld rss_connected_kb=%ld rss_end_kb=%ld window_s=%.3f "
           "server_cpu_s=%.3f redis_cpu_s=%.3f tool_cpu_s=%.3f",
           L->nclients, L->nchannels, L->ready, alive, L->failed, L->rejected, connect_ms,
           (long long)(L->rate * L->nchannels * L->duration + 0.5), published, L->pub_errors,
           (long long)atomic_load(&L->pub_behind_max_us), L->delivered, expected,
           min_ev == ~0ULL ? 0 : min_ev, dups, missing, gaps, histo_q(L->h, 0.5),
           histo_q(L->h, 0.9), histo_q(L->h, 0.99), histo_q(L->h, 0.999), histo_q(L->h, 1.0),
           rss_before, rss_conn, rss_end, win, srv_cpu, red_cpu, me_cpu);
    if (L->kh) /* --kstamp: the same events, timed at the kernel's receive */
        printf(" k_p50_us=%lld k_p90_us=%lld k_p99_us=%lld k_max_us=%lld", histo_q(L->kh, 0.5),
               histo_q(L->kh, 0.9), histo_q(L->kh, 0.99), histo_q(L->kh, 1.0));
    printf("%s%s\n", L->pub_err[0] ? " pub_error=" : "", L->pub_err[0] ? L->pub_err : "");
    for (int i = 0; i < L->nclients; i++)
        client_close(&L->clients[i]);
    return L->pub_err[0] ? 1 : 0;
}

static int cond_all_marked(struct load *L)
{
    return L->caught >= L->ready;
}

static int cond_storm_caught(struct load *L)
{
    return L->caught >= L->storm_clients;
}

static int mode_storm(struct load *L, long long missed)
{
    char ch[256];
    struct pub p;
    channel_name(ch, sizeof(ch), L->chan_prefix, 1, 0);
    if (pub_open(&p, L->pub_spec, L->key_prefix) != 0) {
        fprintf(stderr, "pc-load: %s\n", p.err);
        return 1;
    }
    connect_clients(L, 0, L->nclients);
    run_for(L, 1000);
    int first_ready = L->ready;

    /* A marker (seq 0) gives every client an id to resume from. */
    L->target_seq = 0;
    if (pub_one(&p, ch, 0, 0) != 0) {
        fprintf(stderr, "pc-load: %s\n", p.err);
        return 1;
    }
    run_until(L, cond_all_marked, 30000);
    int marked = L->caught;

    /* Everyone drops; the events they miss are published; all reconnect at once. A client
     * that never got the marker (no id to resume from) sits the storm out. */
    for (int i = 0; i < L->nclients; i++)
        client_close(&L->clients[i]);
    run_for(L, 500);
    if (pub_many(&p, ch, 1, missed, 64) != 0) {
        fprintf(stderr, "pc-load: %s\n", p.err);
        return 1;
    }
    run_for(L, 200);
    L->failed = L->rejected = L->with_retry = 0;
    L->caught = L->ready = L->answered = 0;
    L->target_seq = missed;
    L->reconnect_on_fail = 1;
    L->window = L->nclients; /* at once */
    L->storm_clients = 0;
    for (int i = 0; i < L->nclients; i++) {
        struct client *c = &L->clients[i];
        c->caught_up = 0;
        c->events = c->dups = c->missing = c->gaps = 0;
        c->last_seq = 0;
        c->sits_out = c->last_id[0] == '\0';
        L->storm_clients += !c->sits_out;
    }
    double srv0 = pidset_cpu_s(&L->srv), red0 = pidset_cpu_s(&L->redis);
    long long t0 = now_us();
    for (int i = 0; i < L->nclients; i++)
        if (!L->clients[i].sits_out)
            client_start(&L->clients[i]);
    int all = run_until(L, cond_storm_caught, 120000);
    long long all_ms = (now_us() - t0) / 1000;
    double srv_cpu = pidset_cpu_s(&L->srv) - srv0, red_cpu = pidset_cpu_s(&L->redis) - red0;

    struct histo *h = L->h;
    memset(h, 0, sizeof(*h));
    int complete = 0;
    for (int i = 0; i < L->nclients; i++) {
        struct client *c = &L->clients[i];
        if (c->caught_up)
            histo_add(h, c->t_done - t0);
        if (c->caught_up && c->events == (unsigned long long)missed && !c->dups && !c->missing)
            complete++;
    }
    int alive;
    unsigned long long min_ev, dups, missing, gaps;
    client_totals(L, &alive, &min_ev, &dups, &missing, &gaps);
    printf("mode=storm clients=%d first_ready=%d marked=%d storm_clients=%d missed=%lld "
           "caught_up=%d complete=%d "
           "all_caught_up=%d all_ms=%lld p50_ms=%.1f p99_ms=%.1f max_ms=%.1f reconnects=%d "
           "rejected=%d failed=%d dups=%llu missing=%llu gaps=%llu server_cpu_s=%.3f "
           "redis_cpu_s=%.3f\n",
           L->nclients, first_ready, marked, L->storm_clients, missed, L->caught, complete, all,
           all ? all_ms : -1, (double)histo_q(h, 0.5) / 1000, (double)histo_q(h, 0.99) / 1000,
           (double)histo_q(h, 1.0) / 1000, L->reconnects, L->rejected, L->failed, dups, missing,
           gaps, srv_cpu, red_cpu);
    for (int i = 0; i < L->nclients; i++)
        client_close(&L->clients[i]);
    pub_close(&p);
    return 0;
}

static int mode_replay(struct load *L, long long entries)
{
    char ch[256];
    struct pub p;
    channel_name(ch, sizeof(ch), L->chan_prefix, 1, 0);
    if (pub_open(&p, L->pub_spec, L->key_prefix) != 0) {
        fprintf(stderr, "pc-load: %s\n", p.err);
        return 1;
    }
    long long t = now_us();
    if (pub_many(&p, ch, 0, entries, 64) != 0) {
        fprintf(stderr, "pc-load: %s\n", p.err);
        return 1;
    }
    double prefill_s = (double)(now_us() - t) / 1e6;
    pub_close(&p);

    L->nclients = 1;
    L->target_seq = entries - 1;
    struct client *c = &L->clients[0];
    double srv0 = pidset_cpu_s(&L->srv), red0 = pidset_cpu_s(&L->redis);
    long long t0 = now_us();
    client_start(c);
    int all = run_until(L, cond_all_caught, 120000);
    double srv_cpu = pidset_cpu_s(&L->srv) - srv0, red_cpu = pidset_cpu_s(&L->redis) - red0;
    printf("mode=replay entries=%lld prefill_s=%.2f pub_errors=%lld status=%d complete=%d "
           "events=%llu dups=%llu missing=%llu gaps=%llu first_ms=%.1f all_s=%.3f "
           "server_cpu_s=%.3f redis_cpu_s=%.3f\n",
           entries, prefill_s, p.errors, c->status,
           all && c->events == (unsigned long long)entries && !c->dups && !c->missing, c->events,
           c->dups, c->missing, c->gaps, c->answered ? (double)(c->t_answer - t0) / 1000 : -1.0,
           all ? (double)(c->t_done - t0) / 1e6 : -1.0, srv_cpu, red_cpu);
    client_close(c);
    return 0;
}

static int mode_pubrate(struct load *L)
{
    char ch[256];
    struct pub p;
    channel_name(ch, sizeof(ch), L->chan_prefix, 1, 0);
    if (pub_open(&p, L->pub_spec, L->key_prefix) != 0) {
        fprintf(stderr, "pc-load: %s\n", p.err);
        return 1;
    }
    /* Warm the connection up, then measure. */
    for (int i = 0; i < 100; i++)
        if (pub_one(&p, ch, i, 0) != 0)
            break;
    double srv0 = pidset_cpu_s(&L->srv), red0 = pidset_cpu_s(&L->redis), me0 = self_cpu_s();
    long long t0 = now_us(), end = t0 + (long long)(L->duration * 1e6), n = 0, t;
    int broken = 0;
    while ((t = now_us()) < end) {
        if (pub_one(&p, ch, 100 + n, 0) != 0) {
            broken = 1;
            break;
        }
        histo_add(L->h, now_us() - t);
        n++;
    }
    double secs = (double)(now_us() - t0) / 1e6;
    printf("mode=pubrate requests=%lld seconds=%.3f rps=%.0f errors=%lld last_status=%d "
           "p50_us=%lld p99_us=%lld max_us=%lld server_cpu_s=%.3f redis_cpu_s=%.3f "
           "tool_cpu_s=%.3f%s%s\n",
           n, secs, (double)n / secs, p.errors, p.last_status, histo_q(L->h, 0.5),
           histo_q(L->h, 0.99), histo_q(L->h, 1.0), pidset_cpu_s(&L->srv) - srv0,
           pidset_cpu_s(&L->redis) - red0, self_cpu_s() - me0, broken ? " error=" : "",
           broken ? p.err : "");
    pub_close(&p);
    return broken;
}

static int cond_probes_done(struct load *L)
{
    for (int i = L->probe_from; i < L->nclients; i++)
        if (!L->clients[i].answered && L->clients[i].state != C_CLOSED)
            return 0;
    return 1;
}

static int mode_overload(struct load *L, int hold, int silent, int probes, long long timeout_ms)
{
    /* clients: [0, hold) streams, [hold, hold+silent) idle sockets, then the probes. */
    connect_clients(L, 0, hold);
    run_for(L, 500);
    int held_ok = L->ready, held_rejected = L->rejected;
    for (int i = hold; i < hold + silent; i++) {
        L->clients[i].silent = 1;
        client_start(&L->clients[i]);
    }
    run_for(L, 300);
    L->ready = L->rejected = L->with_retry = L->answered = 0;
    L->probe_from = hold + silent;
    long long t0 = now_us();
    for (int i = L->probe_from; i < L->nclients; i++) {
        L->clients[i].probe = 1;
        client_start(&L->clients[i]);
    }
    run_until(L, cond_probes_done, timeout_ms);
    long long waited_ms = (now_us() - t0) / 1000;
    int answered = 0, n200 = 0, n503 = 0, nother = 0, noanswer = 0, closed = 0;
    for (int i = L->probe_from; i < L->nclients; i++) {
        struct client *c = &L->clients[i];
        if (c->answered) {
            answered++;
            histo_add(L->h, c->t_answer - t0);
            if (c->status == 200)
                n200++;
            else if (c->status == 503)
                n503++;
            else
                nother++;
        } else if (c->state == C_CLOSED) {
            closed++;
        } else {
            noanswer++;
        }
    }
    printf("mode=overload hold=%d held_ok=%d held_rejected=%d silent=%d probes=%d answered=%d "
           "s200=%d s503=%d s503_retry_after=%d sother=%d noanswer=%d closed_unanswered=%d "
           "p50_ms=%.1f p99_ms=%.1f max_ms=%.1f waited_ms=%lld\n",
           hold, held_ok, held_rejected, silent, probes, answered, n200, n503, L->with_retry,
           nother, noanswer, closed, (double)histo_q(L->h, 0.5) / 1000,
           (double)histo_q(L->h, 0.99) / 1000, (double)histo_q(L->h, 1.0) / 1000, waited_ms);
    for (int i = 0; i < L->nclients; i++)
        client_close(&L->clients[i]);
    return 0;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(
        stderr,
        "usage: pc-load MODE [options]\n"
        "  sse      --url T --pub SPEC --clients N [--channels C] --rate R --duration S\n"
        "  storm    --url T --pub SPEC --clients N --missed M\n"
        "  replay   --url T --pub SPEC --entries E\n"
        "  pubrate  --pub http://H:P/path/{ch} --duration S\n"
        "  overload --url T --hold H [--silent S] --probes K [--timeout-ms MS]\n"
        "common: --channel NAME (prefix when --channels > 1), --key-prefix pc:ch:,\n"
        "        --pids P,P (server: RSS, CPU), --redis-pid P, --window N (connects in\n"
        "        flight; default 200), --kstamp (sse: also time events at the kernel's\n"
        "        receive, SO_TIMESTAMPNS: k_p99_us leaves out the tool's own delay)\n"
        "T: http://HOST:PORT/path with {ch}; SPEC: redis://HOST:PORT or http://HOST:PORT/p/{ch}\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct load L;
    const char *pids = NULL, *redis_pid = NULL;
    long long missed = 1000, entries = 100000, timeout_ms = 15000;
    int hold = 0, silent = 0, probes = 0, kstamp = 0;
    static const struct option opts[] = {{"url", required_argument, 0, 'u'},
                                         {"pub", required_argument, 0, 'P'},
                                         {"clients", required_argument, 0, 'n'},
                                         {"channels", required_argument, 0, 'C'},
                                         {"channel", required_argument, 0, 'c'},
                                         {"key-prefix", required_argument, 0, 'k'},
                                         {"rate", required_argument, 0, 'R'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"missed", required_argument, 0, 'm'},
                                         {"entries", required_argument, 0, 'e'},
                                         {"hold", required_argument, 0, 'H'},
                                         {"silent", required_argument, 0, 's'},
                                         {"probes", required_argument, 0, 'K'},
                                         {"timeout-ms", required_argument, 0, 't'},
                                         {"pids", required_argument, 0, 'p'},
                                         {"redis-pid", required_argument, 0, 'r'},
                                         {"window", required_argument, 0, 'w'},
                                         {"kstamp", no_argument, 0, 'T'},
                                         {0, 0, 0, 0}};
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    if (strcmp(mode, "sse") == 0)
        L.mode = M_SSE;
    else if (strcmp(mode, "storm") == 0)
        L.mode = M_STORM;
    else if (strcmp(mode, "replay") == 0)
        L.mode = M_REPLAY;
    else if (strcmp(mode, "pubrate") == 0)
        L.mode = M_PUBRATE;
    else if (strcmp(mode, "overload") == 0)
        L.mode = M_OVERLOAD;
    else
        usage();
    L.nclients = 1;
    L.nchannels = 1;
    L.rate = 10;
    L.duration = 10;
    L.window = 200;
    L.chan_prefix = "bench";
    L.key_prefix = "pc:ch:";
    L.target_seq = -1;
    int o;
    optind = 2;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'u':
            L.url_tmpl = optarg;
            break;
        case 'P':
            L.pub_spec = optarg;
            break;
        case 'n':
            L.nclients = atoi(optarg);
            break;
        case 'C':
            L.nchannels = atoi(optarg);
            break;
        case 'c':
            L.chan_prefix = optarg;
            break;
        case 'k':
            L.key_prefix = optarg;
            break;
        case 'R':
            L.rate = atof(optarg);
            break;
        case 'd':
            L.duration = atof(optarg);
            break;
        case 'm':
            missed = atoll(optarg);
            break;
        case 'e':
            entries = atoll(optarg);
            break;
        case 'H':
            hold = atoi(optarg);
            break;
        case 's':
            silent = atoi(optarg);
            break;
        case 'K':
            probes = atoi(optarg);
            break;
        case 't':
            timeout_ms = atoll(optarg);
            break;
        case 'p':
            pids = optarg;
            break;
        case 'r':
            redis_pid = optarg;
            break;
        case 'w':
            L.window = atoi(optarg);
            break;
        case 'T':
            kstamp = 1;
            break;
        default:
            usage();
        }
    }
    if (L.nclients < 1 || L.nchannels < 1 || L.rate <= 0 || L.duration <= 0 || L.window < 1 ||
        missed < 1 || entries < 1 || hold < 0 || silent < 0 || probes < 0)
        usage();
    if (L.mode != M_PUBRATE && !L.url_tmpl)
        usage();
    if ((L.mode == M_SSE || L.mode == M_STORM || L.mode == M_REPLAY || L.mode == M_PUBRATE) &&
        !L.pub_spec)
        usage();
    if (L.mode == M_PUBRATE && strncmp(L.pub_spec, "http://", 7) != 0)
        usage();
    pidset_parse(&L.srv, pids);
    pidset_parse(&L.redis, redis_pid);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (L.mode == M_SSE && L.nclients % L.nchannels != 0) {
        fprintf(stderr, "pc-load: --clients must be a multiple of --channels\n");
        return 2;
    }
    if (L.mode == M_OVERLOAD)
        L.nclients = hold + silent + probes;
    if (L.mode == M_REPLAY)
        L.nclients = 1;
    L.h = calloc(1, sizeof(*L.h));
    if (kstamp && L.mode == M_SSE) {
        struct timespec mono, real;
        L.kh = calloc(1, sizeof(*L.kh));
        clock_gettime(CLOCK_MONOTONIC, &mono);
        clock_gettime(CLOCK_REALTIME, &real);
        L.real_to_mono_ns = ((long long)mono.tv_sec - (long long)real.tv_sec) * 1000000000LL +
                            (mono.tv_nsec - real.tv_nsec);
    }
    L.clients = calloc((size_t)L.nclients, sizeof(*L.clients));
    L.base = event_base_new();
    if (!L.h || !L.clients || !L.base) {
        fprintf(stderr, "pc-load: out of memory\n");
        return 1;
    }
    /* A periodic wake-up, so that run_until notices its deadline on an idle loop. */
    L.tick = event_new(L.base, -1, EV_PERSIST, tick_cb, &L);
    event_add(L.tick, &(struct timeval){0, 10000});
    if (L.url_tmpl) {
        if (url_parse(L.url_tmpl, "http", &L.u) != 0 || resolve(&L.u, &L.addr, &L.addr_len)) {
            fprintf(stderr, "pc-load: bad URL %s\n", L.url_tmpl);
            return 2;
        }
    }
    int per_ch = L.nclients / L.nchannels;
    for (int i = 0; i < L.nclients; i++) {
        struct client *c = &L.clients[i];
        c->L = &L;
        c->idx = i;
        c->ch = L.mode == M_SSE ? i / per_ch : 0;
        c->fd = -1;
        c->last_seq = -1;
    }

    int rc = 0;
    switch (L.mode) {
    case M_SSE:
        rc = mode_sse(&L);
        break;
    case M_STORM:
        rc = mode_storm(&L, missed);
        break;
    case M_REPLAY:
        rc = mode_replay(&L, entries);
        break;
    case M_PUBRATE:
        rc = mode_pubrate(&L);
        break;
    case M_OVERLOAD:
        rc = mode_overload(&L, hold, silent, probes, timeout_ms);
        break;
    }
    fflush(stdout);
    for (int i = 0; i < L.nclients; i++) {
        client_close(&L.clients[i]);
        if (L.clients[i].retry_ev)
            event_free(L.clients[i].retry_ev);
        free(L.clients[i].rbuf);
    }
    event_free(L.tick);
    event_base_free(L.base);
    free(L.clients);
    free(L.h);
    free(L.kh);
    return rc;
}
