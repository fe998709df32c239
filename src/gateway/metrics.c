/* metrics.c -- counters and their Prometheus text form. */
#include "metrics.h"

#include <stdatomic.h>

#include "pipecast/error.h"

static const char *const endpoint_names[GW_EP_COUNT] = {
    "events", "publish", "channels", "channel",  "health",  "metrics",
    "static", "jobs",    "job",      "sessions", "runners", "templates",
};

void gw_metrics_init(struct gw_metrics *m)
{
    atomic_init(&m->sse_clients, 0);
    atomic_init(&m->sse_events_sent, 0);
    atomic_init(&m->sse_events_replayed, 0);
    atomic_init(&m->sse_events_dropped, 0);
    atomic_init(&m->sse_rejected, 0);
    atomic_init(&m->redis_errors, 0);
    atomic_init(&m->redis_reconnects, 0);
    atomic_init(&m->published, 0);
    for (int i = 0; i < GW_EP_COUNT; i++)
        atomic_init(&m->http_requests[i], 0);
    atomic_init(&m->hub_channels, 0);
    atomic_init(&m->sessions_expired, 0);
}

void gw_metrics_add(atomic_ullong *c, unsigned long long n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void gw_metrics_request(struct gw_metrics *m, enum gw_endpoint ep)
{
    if ((unsigned)ep < (unsigned)GW_EP_COUNT)
        gw_metrics_add(&m->http_requests[ep], 1);
}

static unsigned long long load(atomic_ullong *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static int counter(struct pc_buf *out, const char *name, const char *help, atomic_ullong *c)
{
    return pc_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                         load(c));
}

static int gauge(struct pc_buf *out, const char *name, const char *help, atomic_long *g)
{
    return pc_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %ld\n", name, help, name, name,
                         atomic_load_explicit(g, memory_order_relaxed));
}

int gw_metrics_render(struct gw_metrics *m, struct pc_buf *out)
{
    int rc = 0;

    rc |= gauge(out, "pipecast_sse_clients", "Open SSE streams.", &m->sse_clients);
    rc |= counter(out, "pipecast_sse_events_sent_total",
                  "Entries sent to SSE clients (live and replayed).", &m->sse_events_sent);
    rc |= counter(out, "pipecast_sse_events_replayed_total",
                  "Entries sent to SSE clients from Redis pages (replay, or behind the ring).",
                  &m->sse_events_replayed);
    rc |= counter(out, "pipecast_sse_events_dropped_total",
                  "Stream entries skipped: no data field, invalid event name, or too large.",
                  &m->sse_events_dropped);
    rc |= counter(out, "pipecast_sse_rejected_total",
                  "SSE requests answered 503 because max-clients streams were open.",
                  &m->sse_rejected);
    rc |= counter(out, "pipecast_redis_errors_total",
                  "Redis failures: refused connections, I/O errors, error replies.",
                  &m->redis_errors);
    rc |= counter(out, "pipecast_redis_reconnects_total",
                  "Redis connections re-established after a failure.", &m->redis_reconnects);
    rc |=
        counter(out, "pipecast_published_total", "Entries published through POST.", &m->published);
    rc |= pc_buf_printf(out, "# HELP pipecast_http_requests_total HTTP requests by endpoint.\n"
                             "# TYPE pipecast_http_requests_total counter\n");
    for (int i = 0; i < GW_EP_COUNT; i++)
        rc |= pc_buf_printf(out, "pipecast_http_requests_total{endpoint=\"%s\"} %llu\n",
                            endpoint_names[i], load(&m->http_requests[i]));
    rc |= gauge(out, "pipecast_hub_channels", "Channels the hub reader follows.", &m->hub_channels);
    rc |= counter(out, "pipecast_sessions_expired_total",
                  "Idle sessions expired by this gateway (jobs killed, channels given a TTL).",
                  &m->sessions_expired);
    return rc ? PC_ETOOBIG : 0;
}
