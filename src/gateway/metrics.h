/* metrics.h -- process-wide counters of the gateway, exported as Prometheus text.
 *
 * Every field is a C11 atomic updated with relaxed ordering: the values are
 * statistics, never used to synchronise anything. One struct gw_metrics lives
 * in main() and is shared by pointer with every module.
 */
#ifndef PC_GW_METRICS_H
#define PC_GW_METRICS_H

#include <stdatomic.h>

#include "pipecast/buf.h"

/* The endpoint label of pipecast_http_requests_total. */
enum gw_endpoint {
    GW_EP_EVENTS = 0,
    GW_EP_PUBLISH,
    GW_EP_CHANNELS,
    GW_EP_CHANNEL,
    GW_EP_HEALTH,
    GW_EP_METRICS,
    GW_EP_STATIC,
    GW_EP_JOBS,      /* GET/POST /api/jobs */
    GW_EP_JOB,       /* /api/jobs/<id>[/stdin] */
    GW_EP_SESSIONS,  /* /api/sessions/<s>[/touch] */
    GW_EP_RUNNERS,   /* GET /api/runners */
    GW_EP_TEMPLATES, /* GET /api/templates */
    GW_EP_COUNT
};

struct gw_metrics {
    atomic_long sse_clients; /* gauge: open SSE streams */
    atomic_ullong sse_events_sent;
    atomic_ullong sse_events_replayed;
    atomic_ullong sse_events_dropped;
    atomic_ullong sse_rejected;
    atomic_ullong redis_errors;
    atomic_ullong redis_reconnects;
    atomic_ullong published;
    atomic_ullong http_requests[GW_EP_COUNT];
    atomic_long hub_channels;       /* gauge: channels the hub reads */
    atomic_ullong sessions_expired; /* sessions.c: idle sessions expired by this gateway */
};

void gw_metrics_init(struct gw_metrics *m);

/* Add @p n to the counter @p c (relaxed). */
void gw_metrics_add(atomic_ullong *c, unsigned long long n);

/* Count one request to endpoint @p ep. */
void gw_metrics_request(struct gw_metrics *m, enum gw_endpoint ep);

/* Append the Prometheus text exposition of @p m to @p out. @return 0 or a PC_E* code. */
int gw_metrics_render(struct gw_metrics *m, struct pc_buf *out);

#endif
