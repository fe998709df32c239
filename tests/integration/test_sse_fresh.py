#!/usr/bin/env python3
"""Regression: a new subscriber on a channel nobody follows yet replays its history from Redis while
the hub's reader sets up the channel's ring; the first live entry after that must arrive at once.
(A lost wakeup once made such a stream sleep until its next ping, 15 s.) Many fresh channels, each
with --ping-interval 30, each requiring the live entry within 2 s."""
import time

import pctest
from pctest import check, check_eq


def test():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port, ["--ping-interval", "30"])
    worst = 0.0
    for i in range(60):
        ch = pctest.uniq("fresh%d" % i)
        key = "pc:ch:" + ch
        pctest.on_exit(lambda k=key: r.delete(k))
        ids = [r.xadd(key, {"data": "h%d" % k}) for k in range(5)]
        c = pctest.sse_open(gw, ch)
        got = c.read_events(5, 5)
        check_eq([e.id for e in got], ids, "channel %d: history" % i)
        t0 = time.monotonic()
        lid = r.xadd(key, {"data": "live"})
        e = c.next_event(2)
        worst = max(worst, time.monotonic() - t0)
        check_eq((e.id, e.data), (lid, "live"), "channel %d: first live entry" % i)
        c.close()
    pctest.log("worst first-live latency over 60 fresh channels: %.1f ms" % (worst * 1000))
    check(worst < 2.0, "worst latency %.3f s" % worst)


pctest.main(test)
