#!/usr/bin/env python3
"""Live SSE streams do not hold a civetweb worker, and past --max-clients a stream gets a fast 503.

- 600 streams on one channel with --http-threads 8: all open, the gateway has far fewer threads
  than streams, and every stream receives every one of 50 live events, in order, exactly once.
- Past the limit: 40 more connections at once each get 503 with Retry-After within 1 s (and the
  rejections are counted); the 600 streams are unharmed.
- Clients that close are noticed without a write: their slots come back, and a new stream is
  admitted again.
"""

import os
import resource
import threading
import time

import pctest
from pctest import check, check_eq

N = 600
OVER = 40
EVENTS = 50


def threads_of(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return -1


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = N + OVER + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        soft = min(want, hard)
    check(soft >= want, "open files limit %d < %d needed by this test" % (soft, want))

    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port, ["--max-clients", str(N), "--http-threads", "8",
                               "--sse-writers", "2", "--ping-interval", "30"])
    ch = pctest.uniq("limits")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))
    r.xadd(key, {"data": "history"})

    clients = pctest.sse_open_many(gw, ch, N)
    pump = pctest.SSEPump(clients)

    ok = pump(lambda: all(len(c.events) >= 1 for c in clients), 30)
    check(ok, "%d streams did not get the history entry"
          % sum(1 for c in clients if not c.events))
    # a stream's thread ends once the stream is live (it may take a moment on a busy machine)
    deadline = time.monotonic() + 10 * pctest.SLOW
    while True:
        nthreads = threads_of(gw.proc.pid)
        if 0 < nthreads < 64 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    pctest.log("gateway threads with %d live streams: %d" % (N, nthreads))
    check(0 < nthreads < 64, "gateway has %d threads for %d live streams: streams hold threads"
          % (nthreads, N))
    check_eq(gw.metrics().get("pipecast_sse_clients"), float(N), "pipecast_sse_clients")

    # past the limit: each extra connection gets a fast 503 with Retry-After
    results = [None] * OVER

    def over(i):
        t = time.monotonic()
        try:
            c = pctest.SSEClient(gw.port, "/api/channels/%s/events" % ch, timeout=10)
            c.read_head()
            results[i] = (c.status, c.headers.get("retry-after"), time.monotonic() - t)
            c.close()
        except Exception as e:  # a hang shows as a timeout here
            results[i] = ("error %s" % e, None, time.monotonic() - t)

    ths = [threading.Thread(target=over, args=(i,)) for i in range(OVER)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(30)
    worst = max(x[2] for x in results if x)
    pctest.log("%d connections past the limit: slowest answer %.3f s" % (OVER, worst))
    for i, res in enumerate(results):
        check(res is not None, "connection %d past the limit: no answer" % i)
        check_eq(res[0], 503, "connection %d past the limit: status" % i)
        check(res[1] is not None and res[1].strip().isdigit(),
              "connection %d: 503 without Retry-After (%r)" % (i, res[1]))
        check(res[2] < 1.0 * pctest.SLOW, "connection %d: 503 took %.2f s" % (i, res[2]))
    m = gw.metrics()
    check(m.get("pipecast_sse_rejected_total", 0) >= OVER,
          "pipecast_sse_rejected_total %r < %d" % (m.get("pipecast_sse_rejected_total"), OVER))

    # live events reach every stream, in order, exactly once
    pub = pctest.Redis(port)
    for i in range(EVENTS):
        pub.xadd(key, {"data": "live %d" % i})
        if i % 10 == 9:
            time.sleep(0.05)
    want = [i for i, _ in r.xrange_all(key)]
    check_eq(len(want), EVENTS + 1, "entries in the stream")
    ok = pump(lambda: all(len(c.events) >= len(want) for c in clients), 30)
    counts = sorted(len(c.events) for c in clients)
    check(ok, "not every stream got all %d events: min %d, median %d"
          % (len(want), counts[0], counts[len(counts) // 2]))
    for i, c in enumerate(clients):
        got = [e.id for e in c.events]
        if got != want:
            pctest.fail("stream %d: ids differ from XRANGE (%d events, first difference %s)"
                        % (i, len(got), next(((a, b) for a, b in zip(got, want) if a != b),
                                             "length")))
        check_eq(c.events[-1].data, "live %d" % (EVENTS - 1), "stream %d: last data" % i)
    closed = [i for i, c in enumerate(clients) if c.closed]
    check(not closed, "the gateway closed %d streams (e.g. #%s)" % (len(closed), closed[:5]))

    # clients that leave are noticed at once (no write needed): the slots come back
    for c in clients[:100]:
        pump.forget(c)
        c.close()
    pctest.wait_for(lambda: gw.metrics().get("pipecast_sse_clients") == float(N - 100),
                    5 * pctest.SLOW, "pipecast_sse_clients to drop by the 100 closed streams")
    # (resume from the last id: from=end is resolved after the headers, racing the XADD below)
    again = pctest.SSEClient(gw.port, "/api/channels/%s/events?lastEventId=%s" % (ch, want[-1]),
                             timeout=10)
    again.read_head()
    check_eq(again.status, 200, "a stream after slots came back")
    pub.xadd(key, {"data": "after"})
    e = again.next_event(10)
    check_eq(e.data, "after", "the new stream's first event")

    for c in clients[100:]:
        c.close()
    again.close()
    pump.close()
    pctest.wait_for(lambda: gw.metrics().get("pipecast_sse_clients") == 0.0, 10 * pctest.SLOW,
                    "pipecast_sse_clients back to 0")
    gw.check_alive()
    gw.stop()


pctest.main(main)
