#!/usr/bin/env python3
"""A client that stops reading does not slow the others: two stalled clients (tiny receive
buffer, never read) sit on a channel while ~40 MB flows; a normal client gets everything, in
order, and fresh probe events reach it within 1 s during and after the flood. The gateway's
memory does not grow with what the stalled clients have not read."""

import os
import threading
import time

import pctest
from pctest import check, check_eq

ENTRY = 10000  # bytes per bulk entry
BULK = 4000  # 40 MB
BATCH = 50


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port, ["--ping-interval", "2"])
    ch = pctest.uniq("slow")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))
    r.xadd(key, {"data": "hello"})

    # the stalled clients: one never reads at all, one reads the head and stops
    stalled = [pctest.SSEClient(gw.port, "/api/channels/%s/events" % ch, rcvbuf=4096)
               for _ in range(2)]
    stalled[1].read_head()
    check_eq(stalled[1].status, 200, "stalled client status")

    normal = pctest.sse_open(gw, ch, timeout=30)
    check_eq(normal.next_event(5).data, "hello", "normal client first event")
    probes = {}  # name -> send time
    arrivals = {}
    got = []
    reader_err = []
    done = threading.Event()

    def reader():
        try:
            while not done.is_set():
                if not normal.recv_once(0.2):
                    reader_err.append("normal client: stream closed")
                    return
                while normal.pending:
                    e = normal.pending.pop(0)
                    got.append(e.id)
                    if e.data.startswith("probe-"):
                        arrivals[e.data] = time.monotonic()
        except Exception as e:
            reader_err.append("normal client: %s" % e)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    time.sleep(0.3)
    rss0 = rss_kb(gw.proc.pid)

    pub = pctest.Redis(port, timeout=30)
    filler = "x" * (ENTRY - 20)
    t0 = time.monotonic()
    k = 0
    for b in range(BULK // BATCH):
        pub.pipeline([["XADD", key, "*", "data", "bulk-%d-%s" % (b * BATCH + j, filler)]
                      for j in range(BATCH)])
        if b % 8 == 0:
            name = "probe-%d" % k
            k += 1
            probes[name] = time.monotonic()
            pub.xadd(key, {"data": name})
        time.sleep(0.01)
    flood = time.monotonic() - t0
    pctest.log("published %d MB in %.2f s" % (BULK * ENTRY // 1000000, flood))

    # after the flood, with the stalled clients still connected
    for _ in range(5):
        name = "probe-%d" % k
        k += 1
        probes[name] = time.monotonic()
        pub.xadd(key, {"data": name})
        time.sleep(0.2)

    want_n = r.xlen(key)
    pctest.wait_for(lambda: len(got) + 1 >= want_n or reader_err, 30 * pctest.SLOW,
                    "the normal client to receive all %d events (has %d)" % (want_n, len(got)))
    done.set()
    th.join(5)
    check(not reader_err, "; ".join(reader_err))
    all_ids = [i for i, _ in r.xrange_all(key)]
    check_eq(len(got) + 1, len(all_ids), "events received by the normal client")
    check(got == all_ids[1:], "normal client: ids differ from XRANGE")

    late = {}
    for name, t in probes.items():
        check(name in arrivals, "%s never arrived" % name)
        late[name] = arrivals[name] - t
    worst = max(late.values())
    pctest.log("probe latency: max %.3f s, after flood max %.3f s"
               % (worst, max(late["probe-%d" % i] for i in range(k - 5, k))))
    check(worst < 1.0 * pctest.SLOW, "a fresh event took %.2f s to reach the normal client "
          "(latencies: %s)" % (worst, sorted(late.items(), key=lambda x: -x[1])[:3]))

    rss1 = rss_kb(gw.proc.pid)
    if rss0 and rss1 and pctest.SLOW == 1.0:
        grow = (rss1 - rss0) / 1024.0
        pctest.log("gateway RSS %.1f -> %.1f MB" % (rss0 / 1024.0, rss1 / 1024.0))
        check(grow < 32, "gateway RSS grew by %.1f MB while stalled clients held back %d MB"
              % (grow, 2 * BULK * ENTRY // 1000000))

    gw.check_alive()
    h = gw.healthz()
    check_eq(h.status, 200, "healthz while stalled clients are connected")
    for c in stalled:
        c.close()
    normal.close()
    pctest.wait_for(lambda: gw.metrics().get("pipecast_sse_clients") == 0.0, 30 * pctest.SLOW,
                    "pipecast_sse_clients to return to 0 after stalled clients disconnect")
    gw.stop()


pctest.main(main)
