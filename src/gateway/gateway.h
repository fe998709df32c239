/* gateway.h -- the context every request handler of pipecast-gateway shares.
 *
 * One struct gw_ctx is built by main() and handed to civetweb as user data.
 * Handlers only read it; what changes lives behind the pointers (hub, pool,
 * atomics in metrics).
 */
#ifndef PC_GW_GATEWAY_H
#define PC_GW_GATEWAY_H

#include <stdatomic.h>

#include "config.h"
#include "fanout.h"
#include "hub.h"
#include "jobs_api.h"
#include "metrics.h"
#include "rpool.h"

struct mg_connection;
struct gw_auth;
struct gw_sessions;

struct gw_ctx {
    const struct gw_config *cfg;
    struct gw_metrics *metrics;
    struct gw_hub *hub;
    struct gw_rpool *pool;
    struct gw_jobs *jobs;         /* job API state (jobs_api.c); may be NULL */
    struct gw_auth *auth;         /* tokens (auth.c); NULL without --tokens */
    struct gw_sessions *sessions; /* session idle expiry (sessions.c); may be NULL */
    atomic_int routes_ready;      /* the civetweb request handlers are registered */
    struct gw_fanout *fanout;     /* live SSE streams (fanout.h); set before requests are served */
    atomic_int sse_on_workers;    /* SSE streams that hold a civetweb worker (socket not taken) */
    int worker_streams_max;       /* ... at most this many: the other workers serve the rest */
};

/* Checkout timeout for the pool, in milliseconds. */
#define GW_POOL_WAIT_MS 2000
/* civetweb's request_timeout_ms, and how long an SSE stream may take nothing before it is
 * dropped (it resumes with its Last-Event-ID) */
#define GW_WRITE_TIMEOUT_MS 10000

/* The SSE endpoint, GET /api/channels/<channel>/events (sse_handler.c). @return the status. */
int gw_sse_handle(struct gw_ctx *gw, struct mg_connection *conn, const char *channel);

/* Several channels on one stream, GET /api/events?channel=a&channel=b (sse_handler.c). */
int gw_sse_handle_multi(struct gw_ctx *gw, struct mg_connection *conn);

/* civetweb request handlers (api.c); cbdata is the struct gw_ctx. */
int gw_api_handler(struct mg_connection *conn, void *cbdata);
int gw_api_health_handler(struct mg_connection *conn, void *cbdata);
int gw_api_metrics_handler(struct mg_connection *conn, void *cbdata);

#endif
