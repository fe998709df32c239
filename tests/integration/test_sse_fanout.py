#!/usr/bin/env python3
"""200 concurrent SSE clients on one channel all receive everything, in order (one selector
loop drives all sockets); the sse_clients gauge follows them."""

import time

import pctest
from pctest import check, check_eq

N = 200
ENTRIES = 200


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port, ["--max-clients", "300", "--ping-interval", "1"])
    ch = pctest.uniq("fanout")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))
    r.xadd(key, {"data": "before anyone"})

    clients = pctest.sse_open_many(gw, ch, N)
    pump = pctest.SSEPump(clients)

    # everyone gets the history entry first
    ok = pump(lambda: all(len(c.events) >= 1 for c in clients), 20)
    slow = [i for i, c in enumerate(clients) if not c.events]
    check(ok, "%d clients did not get the replayed entry (e.g. #%s)" % (len(slow), slow[:5]))
    m = gw.metrics()
    check_eq(m.get("pipecast_sse_clients"), float(N), "pipecast_sse_clients with %d open" % N)

    # then live entries: one pipe process publishes ENTRIES lines
    data = b"".join(b"live %d\n" % i for i in range(ENTRIES))
    p = pctest.pipecast(["pipe", ch], input=data, redis_port=port)
    check_eq(p.returncode, 0, "pipe exit (stderr %r)" % p.stderr)
    want = [i for i, _ in r.xrange_all(key)]
    check_eq(len(want), ENTRIES + 1, "entries in the stream")
    t1 = time.monotonic()
    ok = pump(lambda: all(len(c.events) >= len(want) for c in clients), 30)
    counts = sorted(len(c.events) for c in clients)
    check(ok, "not all clients got all %d events; counts min %d, median %d"
          % (len(want), counts[0], counts[len(counts) // 2]))
    pctest.log("%d x %d live events delivered in %.2f s" % (N, ENTRIES, time.monotonic() - t1))
    for i, c in enumerate(clients):
        got = [e.id for e in c.events]
        if got != want:
            pctest.fail("client %d: ids differ from XRANGE (got %d, first diff %s)"
                        % (i, len(got), next((a, b) for a, b in zip(got, want) if a != b)))
        check(c.events[1].data == "live 0" and c.events[-1].data == "live %d" % (ENTRIES - 1),
              "client %d: data" % i)
    closed = [i for i, c in enumerate(clients) if c.closed]
    check(not closed, "the gateway closed %d streams (e.g. #%s)" % (len(closed), closed[:5]))

    for c in clients:
        c.close()
    pump.close()
    pctest.wait_for(lambda: gw.metrics().get("pipecast_sse_clients") == 0.0, 10 * pctest.SLOW,
                    "pipecast_sse_clients back to 0 after the clients left")
    gw.check_alive()
    gw.stop()


pctest.main(main)
