/* pc_bench_sse.c -- load generator for the SSE path: N EventSource-like
 * clients on one channel (libevent), one publisher at a fixed rate (hiredis,
 * its own thread), and the publish -> client delivery latency of every event.
 *
 * Each published entry's data is "<wall clock µs at XADD>"; a client that
 * receives it records now - that. Client and publisher share the machine's
 * clock, so the latency is exact to the clock's resolution.
 *
 *   pc-bench-sse --port 8080 --redis redis://127.0.0.1:6379 --channel bench \
 *                --clients 1000 --rate 10 --duration 20 [--gateway-pid PID]
 *                [--channels N]     clients spread over channels <channel>-0..N-1, each
 *                                   channel gets --rate entries/s (one pipelined batch per tick)
 *   pc-bench-sse --port 8080 --channel bench --post N [--post-lines L]
 *                                   HTTP publish: N sequential POSTs of L lines on one
 *                                   keep-alive connection; prints posts_per_s
 *
 * With --gateway-pid the gateway's RSS and its CPU time during the publishing
 * window (gw_cpu_pct: percent of one core) are reported too.
 *
 * Prints one line of key=value results (parsed by bench/run-core.sh).
 * Bench tool, run by hand: not part of the test suite.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pipecast/channel.h"
#include "pipecast/redis.h"
#include "pipecast/url.h"

/* Latency histogram: 1 µs buckets up to 10 ms, then 100 µs buckets to 10 s. */
#define FINE_US 10000
#define COARSE_N 100000
struct histo {
    unsigned long long fine[FINE_US];
    unsigned long long coarse[COARSE_N];
    unsigned long long over;
    unsigned long long n;
};

static void histo_add(struct histo *h, long long us)
{
    if (us < 0)
        us = 0;
    if (us < FINE_US)
        h->fine[us]++;
    else if ((us - FINE_US) / 100 < COARSE_N)
        h->coarse[(us - FINE_US) / 100]++;
    else
        h->over++;
    h->n++;
}

/* The latency at quantile q (0..1), in µs. */
static long long histo_q(const struct histo *h, double q)
{
    unsigned long long want = (unsigned long long)(q * (double)h->n);
    unsigned long long seen = 0;
    if (want >= h->n && h->n > 0)
        want = h->n - 1;
    for (long long i = 0; i < FINE_US; i++) {
        seen += h->fine[i];
        if (seen > want)
            return i;
    }
    for (long long i = 0; i < COARSE_N; i++) {
        seen += h->coarse[i];
        if (seen > want)
            return FINE_US + i * 100;
    }
    return -1;
}

struct bench;

struct client {
    struct bench *b;
    char path[300];
    struct bufferevent *bev;
    int connected;
    int in_body;
    unsigned long long events;
    unsigned long long marks; /* "data: 0" markers: the stream is set up */
};

struct bench {
    struct event_base *base;
    struct sockaddr_in addr;
    const char *path;
    int nchannels;
    char (*keys)[PC_KEY_MAX];
    int nclients;
    struct client *clients;
    int connected;
    int failed;
    struct histo *h;
    atomic_int publishing;
    atomic_llong published;
    struct pc_redis_url url;
    double rate;
    double duration;
    int burst;
    long long warm_until_us;
};

static long long wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Parse whole lines in place (no allocation per line: with thousands of clients the load
 * generator must not be what is measured). */
static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in), used = 0;
    char *p = (char *)evbuffer_pullup(in, -1);
    long long now = 0;

    while (used < len) {
        char *line = p + used;
        char *nl = memchr(line, '\n', len - used);
        size_t n;
        if (!nl)
            break;
        n = (size_t)(nl - line);
        used += n + 1;
        if (!c->in_body) {
            if (n == 0 || (n == 1 && line[0] == '\r'))
                c->in_body = 1;
        } else if (n > 6 && memcmp(line, "data: ", 6) == 0) {
            long long t = strtoll(line + 6, NULL, 10);
            if (!now)
                now = wall_us();
            if (t == 0) {
                c->marks++;
                continue;
            }
            c->events++;
            if (t > c->b->warm_until_us)
                histo_add(c->b->h, now - t);
        }
    }
    evbuffer_drain(in, used);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->connected = 1;
        c->b->connected++;
        evbuffer_add_printf(
            bufferevent_get_output(bev),
            "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", c->path);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        if (c->connected)
            c->b->connected--;
        c->connected = 0;
        c->b->failed++;
        bufferevent_free(bev);
        c->bev = NULL;
    }
}

/* The publisher: XADD at a fixed rate, "burst" entries per tick. */
static void *publisher_main(void *arg)
{
    struct bench *b = arg;
    char err[256];
    redisContext *rc = pc_redis_connect(&b->url, 2000, 5000, err, sizeof(err));
    if (!rc) {
        fprintf(stderr, "pc-bench-sse: %s\n", err);
        atomic_store(&b->publishing, 0);
        return NULL;
    }
    long long start = pc_now_us();
    long long interval = (long long)(1e6 / b->rate);
    long long total = (long long)(b->rate * b->duration);
    for (long long i = 0; i < total && atomic_load(&b->publishing); i++) {
        long long due = start + i * interval;
        long long now = pc_now_us();
        if (due > now) {
            struct timespec ts = {(due - now) / 1000000, ((due - now) % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
        for (int k = 0; k < b->nchannels; k++)
            redisAppendCommand(rc, "XADD %s MAXLEN ~ 100000 * data %lld", b->keys[k], wall_us());
        int ok = 1;
        for (int k = 0; k < b->nchannels; k++) {
            void *r = NULL;
            if (redisGetReply(rc, &r) != REDIS_OK) {
                fprintf(stderr, "pc-bench-sse: XADD: %s\n", rc->errstr);
                ok = 0;
                break;
            }
            freeReplyObject(r);
        }
        if (!ok)
            break;
        atomic_fetch_add(&b->published, 1);
    }
    redisFree(rc);
    atomic_store(&b->publishing, 0);
    return NULL;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    (void)fd;
    (void)what;
    if (!atomic_load(&b->publishing))
        event_base_loopexit(b->base, &(struct timeval){1, 0}); /* let the last events land */
}

static long rss_kb(int pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* utime + stime of process @p pid, in ms (-1 when unknown). */
static long long cpu_ms(int pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    long tck = sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)((ut + st) * 1000 / (unsigned long long)tck);
}

/* HTTP publish: @p n sequential POSTs of @p lines lines each on one keep-alive connection. */
static int post_bench(const struct sockaddr_in *addr, const char *channel, long n, int lines)
{
    char body[8192], req[9000], resp[4096];
    size_t bl = 0;
    for (int i = 0; i < lines && bl + 64 < sizeof(body); i++)
        bl += (size_t)snprintf(body + bl, sizeof(body) - bl, "line %d of a published body\n", i);
    int rl = snprintf(req, sizeof(req),
                      "POST /api/channels/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                      channel, bl, body);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0) {
        perror("pc-bench-sse: connect");
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    long long t0 = pc_now_us(), worst = 0;
    long ok = 0;
    for (long i = 0; i < n; i++) {
        long long s0 = pc_now_us();
        if (write(fd, req, (size_t)rl) != rl) {
            perror("pc-bench-sse: write");
            break;
        }
        /* read one response: headers, then Content-Length bytes */
        size_t got = 0;
        long clen = -1;
        char *hend = NULL;
        for (;;) {
            ssize_t k = read(fd, resp + got, sizeof(resp) - 1 - got);
            if (k <= 0) {
                fprintf(stderr, "pc-bench-sse: connection closed after %ld posts\n", i);
                goto out;
            }
            got += (size_t)k;
            resp[got] = '\0';
            if (!hend && (hend = strstr(resp, "\r\n\r\n")) != NULL) {
                char *cl = strstr(resp, "Content-Length:");
                clen = cl ? strtol(cl + 15, NULL, 10) : 0;
            }
            if (hend && (long)(got - (size_t)(hend + 4 - resp)) >= clen)
                break;
        }
        if (strncmp(resp, "HTTP/1.1 200", 12) != 0) {
            fprintf(stderr, "pc-bench-sse: POST %ld: %.200s\n", i, resp);
            break;
        }
        ok++;
        if (pc_now_us() - s0 > worst)
            worst = pc_now_us() - s0;
    }
out:;
    double secs = (double)(pc_now_us() - t0) / 1e6;
    printf("posts=%ld lines_per_post=%d seconds=%.3f posts_per_s=%.0f max_us=%lld\n", ok, lines,
           secs, (double)ok / secs, worst);
    close(fd);
    return ok == n ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: pc-bench-sse --port P [--host 127.0.0.1] --redis URL --channel C\n"
            "                    --clients N --rate EV_PER_S --duration S [--gateway-pid PID]\n"
            "                    [--connect-per-ms N] [--channels N]\n"
            "       pc-bench-sse --port P --channel C --post N [--post-lines L]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct bench b;
    const char *host = "127.0.0.1", *redis = NULL, *channel = "bench";
    int port = 8080, gw_pid = 0, per_ms = 50, post_lines = 1;
    long post_n = 0;
    static const struct option opts[] = {{"port", required_argument, 0, 'p'},
                                         {"host", required_argument, 0, 'H'},
                                         {"redis", required_argument, 0, 'r'},
                                         {"channel", required_argument, 0, 'c'},
                                         {"clients", required_argument, 0, 'n'},
                                         {"rate", required_argument, 0, 'R'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"gateway-pid", required_argument, 0, 'g'},
                                         {"connect-per-ms", required_argument, 0, 'k'},
                                         {"channels", required_argument, 0, 'C'},
                                         {"post", required_argument, 0, 'P'},
                                         {"post-lines", required_argument, 0, 'L'},
                                         {0, 0, 0, 0}};
    int o;
    b.nclients = 1;
    b.nchannels = 1;
    b.rate = 1000;
    b.duration = 10;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'H':
            host = optarg;
            break;
        case 'r':
            redis = optarg;
            break;
        case 'c':
            channel = optarg;
            break;
        case 'n':
            b.nclients = atoi(optarg);
            break;
        case 'R':
            b.rate = atof(optarg);
            break;
        case 'd':
            b.duration = atof(optarg);
            break;
        case 'g':
            gw_pid = atoi(optarg);
            break;
        case 'k':
            per_ms = atoi(optarg);
            break;
        case 'C':
            b.nchannels = atoi(optarg);
            break;
        case 'P':
            post_n = atol(optarg);
            break;
        case 'L':
            post_lines = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (b.nclients < 1 || b.rate <= 0 || b.duration <= 0 || per_ms < 1 || b.nchannels < 1 ||
        post_n < 0 || post_lines < 1)
        usage();
    if (post_n > 0) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, host, &a.sin_addr);
        return post_bench(&a, channel, post_n, post_lines);
    }
    char err[256];
    if (pc_redis_url_parse(pc_redis_url_choose(redis), &b.url, err, sizeof(err)) != 0) {
        fprintf(stderr, "pc-bench-sse: %s\n", err);
        return 2;
    }
    b.keys = calloc((size_t)b.nchannels, sizeof(*b.keys));
    if (!b.keys)
        return 1;
    for (int k = 0; k < b.nchannels; k++) {
        char name[PC_CHANNEL_MAX + 1];
        if (b.nchannels == 1)
            snprintf(name, sizeof(name), "%s", channel);
        else
            snprintf(name, sizeof(name), "%.180s-%d", channel, k);
        if (pc_key_channel(b.keys[k], sizeof(b.keys[k]), PC_PREFIX_DEFAULT, name) < 0) {
            fprintf(stderr, "pc-bench-sse: bad channel\n");
            return 2;
        }
    }
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);

    b.h = calloc(1, sizeof(*b.h));
    b.clients = calloc((size_t)b.nclients, sizeof(*b.clients));
    b.base = event_base_new();
    if (!b.h || !b.clients || !b.base)
        return 1;
    b.addr.sin_family = AF_INET;
    b.addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &b.addr.sin_addr);

    long rss_before = gw_pid ? rss_kb(gw_pid) : -1;
    /* Connect in waves so the listen backlog is not overrun. */
    for (int i = 0; i < b.nclients; i++) {
        struct client *c = &b.clients[i];
        c->b = &b;
        if (b.nchannels == 1)
            snprintf(c->path, sizeof(c->path), "/api/channels/%s/events?from=end", channel);
        else
            snprintf(c->path, sizeof(c->path), "/api/channels/%.180s-%d/events?from=end", channel,
                     i % b.nchannels);
        c->bev = bufferevent_socket_new(b.base, -1, BEV_OPT_CLOSE_ON_FREE);
        bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        bufferevent_socket_connect(c->bev, (struct sockaddr *)&b.addr, sizeof(b.addr));
        if (i % per_ms == per_ms - 1)
            event_base_loop(b.base, EVLOOP_NONBLOCK);
    }
    /* Let every stream be set up (subscribed) before the measurement. */
    long long t0 = pc_now_ms();
    while (b.connected + b.failed < b.nclients && pc_now_ms() - t0 < 30000)
        event_base_loop(b.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    /* ?from=end is resolved when the stream is set up, which may be after the connect: send
     * "0" markers (not counted) until every client has one, so that no measured event is
     * published before its stream started. */
    {
        char merr[256];
        redisContext *mc = pc_redis_connect(&b.url, 2000, 5000, merr, sizeof(merr));
        long long last_mark = 0;
        int ready = 0;
        t0 = pc_now_ms();
        while (mc && !ready && pc_now_ms() - t0 < 60000) {
            if (pc_now_ms() - last_mark >= 500) {
                for (int k = 0; k < b.nchannels; k++)
                    redisAppendCommand(mc, "XADD %s MAXLEN ~ 100000 * data 0", b.keys[k]);
                for (int k = 0; k < b.nchannels; k++) {
                    void *r = NULL;
                    if (redisGetReply(mc, &r) == REDIS_OK)
                        freeReplyObject(r);
                }
                last_mark = pc_now_ms();
            }
            event_base_loopexit(b.base, &(struct timeval){0, 20000}); /* no busy wait */
            event_base_loop(b.base, EVLOOP_ONCE);
            ready = 1;
            for (int i = 0; i < b.nclients && ready; i++)
                ready = b.clients[i].marks > 0 || !b.clients[i].bev;
        }
        if (mc)
            redisFree(mc);
        if (!ready)
            fprintf(stderr, "pc-bench-sse: not every stream got a marker within 60 s\n");
    }
    t0 = pc_now_ms();
    while (pc_now_ms() - t0 < 500)
        event_base_loop(b.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    long rss_conn = gw_pid ? rss_kb(gw_pid) : -1;

    b.warm_until_us = wall_us(); /* only events published from now on count */
    long long cpu0 = gw_pid ? cpu_ms(gw_pid) : -1, wall0 = pc_now_ms();
    atomic_store(&b.publishing, 1);
    pthread_t pub;
    pthread_create(&pub, NULL, publisher_main, &b);
    struct event *tick = event_new(b.base, -1, EV_PERSIST, tick_cb, &b);
    event_add(tick, &(struct timeval){0, 100000});
    event_base_dispatch(b.base);
    pthread_join(pub, NULL);
    long long cpu1 = gw_pid ? cpu_ms(gw_pid) : -1, wall1 = pc_now_ms();
    long rss_end = gw_pid ? rss_kb(gw_pid) : -1;

    unsigned long long min_ev = ~0ULL, total_ev = 0;
    int alive = 0;
    for (int i = 0; i < b.nclients; i++) {
        struct client *c = &b.clients[i];
        if (c->events < min_ev)
            min_ev = c->events;
        total_ev += c->events;
        if (c->bev) {
            alive++;
            bufferevent_free(c->bev);
        }
    }
    long long published = atomic_load(&b.published);
    printf("clients=%d channels=%d alive=%d failed=%d published=%lld delivered=%llu "
           "expected=%llu min_per_client=%llu p50_us=%lld p90_us=%lld p99_us=%lld p999_us=%lld "
           "max_us=%lld rss_before_kb=%ld rss_connected_kb=%ld rss_end_kb=%ld gw_cpu_pct=%.1f\n",
           b.nclients, b.nchannels, alive, b.failed, published, total_ev,
           (unsigned long long)published * (unsigned long long)b.nclients, min_ev,
           histo_q(b.h, 0.50), histo_q(b.h, 0.90), histo_q(b.h, 0.99), histo_q(b.h, 0.999),
           histo_q(b.h, 1.0), rss_before, rss_conn, rss_end,
           cpu0 >= 0 && cpu1 >= 0 && wall1 > wall0
               ? 100.0 * (double)(cpu1 - cpu0) / (double)(wall1 - wall0)
               : -1.0);
    event_free(tick);
    event_base_free(b.base);
    free(b.clients);
    free(b.keys);
    free(b.h);
    return 0;
}
