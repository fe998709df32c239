/* main.c -- pipecast-gateway: parse options, start the hub and civetweb, wait for a signal.
 *
 * Stop order: hub stop (every stream returns or is told to), mg_stop (waits for
 * the workers), fanout free (live streams end, stream threads are waited for),
 * then the reader thread is joined and everything is freed.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <civetweb.h>

#include "pipecast/log.h"
#include "pipecast/redis.h"

#include "auth.h"
#include "config.h"
#include "fanout.h"
#include "gateway.h"
#include "http_util.h"
#include "hub.h"
#include "jobs_api.h"
#include "metrics.h"
#include "rpool.h"
#include "sessions.h"

#define GW_POOL_SIZE 8
#define GW_REST_THREADS 8 /* workers never held by a stream (when civetweb keeps the socket) */
#define GW_SSE_BATCH_MAX (256u << 10) /* bytes one live stream takes from its ring at a time */
#define GW_STREAM_STACK (256u << 10)  /* stream threads; civetweb runs the same code on 100 KiB */
#define GW_LISTEN_BACKLOG "4096"  /* a burst of connects waits in the kernel, not in SYN retries */
#define GW_CONNECTION_QUEUE "256" /* accepted sockets waiting for a worker */

static struct gw_ctx *ctx_of(const struct mg_connection *conn)
{
    return mg_get_user_data(mg_get_context(conn));
}

static int on_log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    pc_warn("http", "%s", message);
    return 1;
}

/*
 * Called for every request before civetweb looks for a handler. Handlers can
 * only be registered after mg_start(), when the port already accepts: a
 * request that arrives in between is dispatched from here, so it never sees
 * civetweb's 404. Requests for anything else are static files: count them.
 */
static int on_begin_request(struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *u = ri && ri->local_uri ? ri->local_uri : "";
    struct gw_ctx *gw = ctx_of(conn);
    int ready;

    if (!gw)
        return 0;
    if ((ready = gw_auth_check(conn, gw)) != 0)
        return ready; /* refused, answered (auth.c) */
    ready = atomic_load(&gw->routes_ready);
    if (strcmp(u, "/api") == 0 || strncmp(u, "/api/", 5) == 0) {
        if (ready)
            return 0;
        mg_disable_connection_keep_alive(conn);
        return gw_api_handler(conn, gw);
    }
    if (strcmp(u, "/healthz") == 0) {
        if (ready)
            return 0;
        mg_disable_connection_keep_alive(conn);
        return gw_api_health_handler(conn, gw);
    }
    if (strcmp(u, "/metrics") == 0) {
        if (ready)
            return 0;
        mg_disable_connection_keep_alive(conn);
        return gw_api_metrics_handler(conn, gw);
    }
    gw_metrics_request(gw->metrics, GW_EP_STATIC);
    return 0;
}

/* civetweb's own errors (bad requests, too large headers, missing files) as JSON. */
static int on_http_error(struct mg_connection *conn, int status, const char *msg)
{
    char clean[256];
    const char *nl = msg ? strchr(msg, '\n') : NULL;
    size_t len = msg ? (nl ? (size_t)(nl - msg) : strlen(msg)) : 0;

    gw_http_quote(msg ? msg : "", len, clean, sizeof(clean));
    if (!clean[0])
        snprintf(clean, sizeof(clean), "%s", gw_http_status_text(status));
    if (status >= 400 && status != 404)
        mg_disable_connection_keep_alive(conn);
    gw_http_error(conn, ctx_of(conn), status,
                  status >= 400 && status != 404 ? "Connection: close\r\n" : NULL, "%s", clean);
    return 0;
}

int main(int argc, char **argv)
{
    struct gw_config cfg;
    struct gw_metrics metrics;
    struct gw_ctx gw;
    struct mg_callbacks cb;
    struct mg_init_data init;
    struct mg_error_data merr;
    struct mg_server_port ports[4];
    struct mg_context *mg;
    char err[512], threads[32], timeout[32], mgerr[256];
    const char *opts[32];
    unsigned mgcode = 0;
    sigset_t sigs;
    int nopt = 0, sig = 0, rc;

    rc = gw_config_parse(&cfg, argc, argv, err, sizeof(err));
    if (rc == GW_CONFIG_EXIT)
        return 0;
    if (rc != GW_CONFIG_OK) {
        fprintf(stderr, "pipecast-gateway: %s\n", err);
        return 2;
    }
    pc_log_init("pipecast-gateway", (enum pc_log_level)cfg.log_level);
    memset(&gw, 0, sizeof(gw));
    if (cfg.tokens_file[0]) {
        gw.auth = gw_auth_load(cfg.tokens_file, err, sizeof(err));
        if (!gw.auth) {
            fprintf(stderr, "pipecast-gateway: %s\n", err);
            return 2;
        }
        pc_info("auth", "%zu token(s) from %s", gw_auth_count(gw.auth), cfg.tokens_file);
    } else if (!gw_auth_listen_is_loopback(cfg.listen)) {
        pc_warn("auth",
                "listening on %s without tokens (--insecure-no-auth): anyone who can "
                "reach it can run jobs",
                cfg.listen);
    }

    /* Each SSE stream is a socket: allow as many as the hard limit does. */
    {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur < (rlim_t)cfg.max_clients + 64)
            pc_warn("main",
                    "open files limit %llu is below max-clients %d: streams past it fail (raise "
                    "ulimit -n)",
                    (unsigned long long)rl.rlim_cur, cfg.max_clients);
    }

    /* Every thread inherits this mask; only sigwait() below takes the signals. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    gw_metrics_init(&metrics);
    atomic_init(&gw.routes_ready, 0);
    gw.cfg = &cfg;
    gw.metrics = &metrics;
    gw.pool = gw_rpool_new(&cfg.redis, GW_POOL_SIZE, &metrics);
    gw.jobs = gw_jobs_new(); /* NULL: the job API works without its cache */
    gw.sessions = gw_sessions_new(&gw);
    gw.hub = gw_hub_new(&cfg.redis, cfg.prefix, (size_t)cfg.ring, GW_RING_BYTES_MAX,
                        (unsigned)cfg.hub_readers, &metrics, err, sizeof(err));
    if (gw.hub) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned writers = cfg.sse_writers > 0 ? (unsigned)cfg.sse_writers
                           : ncpu < 1          ? 1u
                           : ncpu > 4          ? 4u
                                               : (unsigned)ncpu;

        /* before the reader starts: it calls the fanout's listen callback */
        gw.fanout = gw_fanout_new(gw.hub, &metrics, writers, (long long)cfg.ping_interval_s * 1000,
                                  GW_WRITE_TIMEOUT_MS, GW_SSE_BATCH_MAX, GW_STREAM_STACK);
    }
    atomic_init(&gw.sse_on_workers, 0);
    gw.worker_streams_max = cfg.http_threads - GW_REST_THREADS;
    if (!gw.pool || !gw.hub || !gw.sessions || !gw.fanout || gw_hub_start(gw.hub) != 0) {
        fprintf(stderr, "pipecast-gateway: cannot start: %s\n", gw.hub ? "out of memory" : err);
        gw_fanout_free(gw.fanout);
        gw_hub_free(gw.hub);
        gw_sessions_free(gw.sessions);
        gw_rpool_free(gw.pool);
        gw_jobs_free(gw.jobs);
        gw_auth_free(gw.auth);
        return 1;
    }

    /* civetweb 1.15 starts every worker up front (100 KiB stacks): live streams hold none */
    snprintf(threads, sizeof(threads), "%d", cfg.http_threads);
    snprintf(timeout, sizeof(timeout), "%d", GW_WRITE_TIMEOUT_MS);
    opts[nopt++] = "listening_ports";
    opts[nopt++] = cfg.listen;
    opts[nopt++] = "num_threads";
    opts[nopt++] = threads;
    opts[nopt++] = "request_timeout_ms";
    opts[nopt++] = timeout;
    opts[nopt++] = "tcp_nodelay"; /* small SSE events and responses go out at once */
    opts[nopt++] = "1";
    opts[nopt++] = "listen_backlog";
    opts[nopt++] = GW_LISTEN_BACKLOG;
    opts[nopt++] = "connection_queue";
    opts[nopt++] = GW_CONNECTION_QUEUE;
    opts[nopt++] = "enable_keep_alive";
    opts[nopt++] = "yes";
    opts[nopt++] = "decode_url";
    opts[nopt++] = "no";
    opts[nopt++] = "enable_directory_listing";
    opts[nopt++] = "no";
    opts[nopt++] = "access_control_allow_origin";
    opts[nopt++] = cfg.cors_origin; /* "" = no header (civetweb's default would be "*") */
    opts[nopt++] = "additional_header";
    opts[nopt++] = "X-Content-Type-Options: nosniff";
    if (cfg.web_root[0]) {
        opts[nopt++] = "document_root";
        opts[nopt++] = cfg.web_root;
    } else {
        pc_warn("http", "no web root found (--web-root): only the API is served");
    }
    opts[nopt] = NULL;

    memset(&cb, 0, sizeof(cb));
    cb.log_message = on_log_message;
    cb.begin_request = on_begin_request;
    cb.http_error = on_http_error;
    memset(&init, 0, sizeof(init));
    init.callbacks = &cb;
    init.user_data = &gw;
    init.configuration_options = opts;
    memset(&merr, 0, sizeof(merr));
    mgerr[0] = '\0';
    merr.code = &mgcode;
    merr.text = mgerr;
    merr.text_buffer_size = sizeof(mgerr);

    mg_init_library(0);
    mg = mg_start2(&init, &merr);
    if (!mg) {
        fprintf(stderr, "pipecast-gateway: cannot listen on %s: %s\n", cfg.listen,
                mgerr[0] ? mgerr : "civetweb failed to start");
        gw_hub_stop(gw.hub);
        gw_fanout_free(gw.fanout);
        gw_sessions_free(gw.sessions);
        gw_hub_free(gw.hub);
        gw_rpool_free(gw.pool);
        gw_jobs_free(gw.jobs);
        gw_auth_free(gw.auth);
        mg_exit_library();
        return 1;
    }
    mg_set_request_handler(mg, "/api", gw_api_handler, &gw);
    mg_set_request_handler(mg, "/healthz", gw_api_health_handler, &gw);
    mg_set_request_handler(mg, "/metrics", gw_api_metrics_handler, &gw);
    atomic_store(&gw.routes_ready, 1);
    if (gw_sessions_start(gw.sessions) != 0)
        pc_error("sessions", "cannot start the housekeeping thread: idle sessions do not expire");

    memset(ports, 0, sizeof(ports));
    if (mg_get_server_ports(mg, 4, ports) > 0) {
        char host[128];
        char *colon;

        snprintf(host, sizeof(host), "%s", cfg.listen);
        colon = strrchr(host, ':');
        if (colon)
            *colon = '\0';
        fprintf(stderr, "pipecast-gateway: listening on http://%s:%d\n", host, ports[0].port);
    } else {
        fprintf(stderr, "pipecast-gateway: listening on http://%s\n", cfg.listen);
    }
    {
        char where[300];

        pc_redis_url_describe(&cfg.redis, where, sizeof(where));
        pc_info("main",
                "redis %s, prefix \"%s\", max-clients %d, http-threads %d, ring %d, web root %s",
                where, cfg.prefix, cfg.max_clients, cfg.http_threads, cfg.ring,
                cfg.web_root[0] ? cfg.web_root : "(none)");
    }

    while (sigwait(&sigs, &sig) != 0)
        ;
    pc_info("main", "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");

    gw_hub_stop(gw.hub);
    mg_stop(mg);
    gw_fanout_free(gw.fanout);     /* live streams end, stream threads are waited for */
    gw_sessions_free(gw.sessions); /* joins the housekeeping thread: before the hub and pool go */
    gw_hub_free(gw.hub);
    gw_rpool_free(gw.pool);
    gw_jobs_free(gw.jobs);
    gw_auth_free(gw.auth);
    mg_exit_library();
    pc_info("main", "stopped");
    return 0;
}
