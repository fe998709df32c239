#!/usr/bin/env python3
"""/healthz (200, and 503 when Redis is down or not there yet, recovering when it comes back)
and /metrics (content type, every documented metric name, counters that move)."""

import signal
import time

import pctest
from pctest import check, check_eq, check_json_error

NAMES = ["pipecast_sse_clients", "pipecast_sse_events_sent_total",
         "pipecast_sse_events_replayed_total", "pipecast_sse_events_dropped_total",
         "pipecast_sse_rejected_total", "pipecast_redis_errors_total",
         "pipecast_redis_reconnects_total", "pipecast_published_total",
         "pipecast_http_requests_total", "pipecast_hub_channels"]


def val(m, name):
    return m.get(name, 0.0)


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port, ["--ping-interval", "1"])
    ch = pctest.uniq("metrics")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))

    h = gw.healthz()
    check_eq((h.status, h.json()), (200, {"status": "ok", "redis": "ok"}), "/healthz")

    res = gw.get("/metrics")
    check_eq(res.status, 200, "/metrics status")
    ct = res.header("content-type", "")
    check(ct.startswith("text/plain") and "version=0.0.4" in ct, "/metrics Content-Type %r" % ct)
    text = res.body.decode()
    for n in NAMES:
        check(n in text, "/metrics lacks %s" % n)
    for ep in ["health", "metrics"]:
        check('endpoint="%s"' % ep in text, "/metrics lacks endpoint=%r" % ep)

    m0 = gw.metrics()
    gw.healthz()
    gw.healthz()
    m1 = gw.metrics()
    k = 'pipecast_http_requests_total{endpoint="health"}'
    check(val(m1, k) >= val(m0, k) + 2, "%s: %s -> %s" % (k, val(m0, k), val(m1, k)))

    # published_total counts entries published through the gateway
    res = gw.request("POST", "/api/channels/" + ch, body=b"1\n2\n3\n")
    check_eq(res.status, 200, "POST (%r)" % res)
    m2 = gw.metrics()
    check(val(m2, "pipecast_published_total") >= val(m1, "pipecast_published_total") + 3,
          "pipecast_published_total did not grow by 3")
    k = 'pipecast_http_requests_total{endpoint="publish"}'
    check(val(m2, k) >= val(m1, k) + 1, "%s did not move" % k)

    # SSE: clients gauge, replayed, sent, dropped, hub channels
    c = pctest.sse_open(gw, ch)
    c.read_events(3, 5)
    m3 = gw.metrics()
    check_eq(val(m3, "pipecast_sse_clients"), val(m0, "pipecast_sse_clients") + 1,
             "pipecast_sse_clients with one stream open")
    check(val(m3, "pipecast_sse_events_replayed_total")
          >= val(m2, "pipecast_sse_events_replayed_total") + 3, "replayed_total did not grow by 3")
    check(val(m3, "pipecast_hub_channels") >= 1, "pipecast_hub_channels with a subscriber")
    k = 'pipecast_http_requests_total{endpoint="events"}'
    check(val(m3, k) >= val(m2, k) + 1, "%s did not move" % k)
    r.xadd(key, {"nodata": "1"})
    r.xadd(key, {"data": "live"})
    check_eq(c.next_event(5).data, "live", "live event")
    m4 = gw.metrics()
    check(val(m4, "pipecast_sse_events_sent_total") >= val(m3, "pipecast_sse_events_sent_total")
          + 1, "pipecast_sse_events_sent_total did not move")
    check(val(m4, "pipecast_sse_events_dropped_total")
          >= val(m3, "pipecast_sse_events_dropped_total") + 1,
          "pipecast_sse_events_dropped_total did not count the entry without data")
    c.close()
    pctest.wait_for(lambda: val(gw.metrics(), "pipecast_sse_clients")
                    == val(m0, "pipecast_sse_clients"), 5 * pctest.SLOW,
                    "pipecast_sse_clients to drop after the client left")
    gw.get("/api/channels")
    gw.get("/api/channels/" + ch)
    m5 = gw.metrics()
    for ep in ["channels", "channel"]:
        k = 'pipecast_http_requests_total{endpoint="%s"}' % ep
        check(val(m5, k) >= 1, "%s is %s" % (k, val(m5, k)))
    gw.stop()

    # Redis going away and coming back, on a private server
    red = pctest.PrivateRedis()
    gw2 = pctest.Gateway(red.port)
    check_eq(gw2.healthz().status, 200, "/healthz with a private Redis")
    red.stop(signal.SIGKILL)
    h = pctest.wait_for(lambda: (lambda x: x if x.status == 503 else None)(gw2.healthz()),
                        5 * pctest.SLOW, "/healthz 503 after Redis died")
    j = h.json()
    check(j.get("status") == "error" and isinstance(j.get("redis"), str) and j["redis"]
          and j["redis"] != "ok", "/healthz body while Redis is down: %r" % j)
    res = gw2.request("POST", "/api/channels/" + ch, body=b"lost?\n")
    check_json_error(res, 503, "POST while Redis is down")
    check(res.header("retry-after") is not None, "503 without Retry-After: %r" % res.headers)
    red.start()
    pctest.wait_for(lambda: gw2.healthz().status == 200, 10 * pctest.SLOW,
                    "/healthz back to 200 after Redis restarted")
    res = gw2.request("POST", "/api/channels/" + ch, body=b"back\n")
    check_eq(res.status, 200, "POST after Redis came back (%r)" % res)
    m = gw2.metrics()
    check(val(m, "pipecast_redis_errors_total") >= 1, "pipecast_redis_errors_total stayed 0")
    check(val(m, "pipecast_redis_reconnects_total") >= 1,
          "pipecast_redis_reconnects_total stayed 0")
    gw2.stop()

    # the gateway starts before Redis exists (compose, systemd ordering) and recovers
    dead = pctest.free_port()
    gw3 = pctest.Gateway(redis_url="redis://127.0.0.1:%d" % dead)
    check_eq(gw3.healthz().status, 503, "/healthz with no Redis at all")
    gw3.check_alive("with no Redis")
    red2 = pctest.PrivateRedis(port=dead)
    pctest.wait_for(lambda: gw3.healthz().status == 200, 10 * pctest.SLOW,
                    "/healthz to turn 200 once Redis appears")
    gw3.stop()
    red2.stop()


pctest.main(main)
