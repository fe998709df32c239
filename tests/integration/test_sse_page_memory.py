#!/usr/bin/env python3
"""Replay pages are bounded by bytes, not only by count: 600 entries of 60 KB, 10 clients on
from=start that read nothing after the response head. With 500-entry pages each stalled client
held ~30 MB; the gateway's resident memory must now grow by well under 60 MB. A client that
then reads everything still gets every entry, in order."""

import time

import pctest
from pctest import check, check_eq

N, SIZE, CLIENTS = 600, 60 * 1024, 10


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port, timeout=30)
    gw = pctest.Gateway(port)
    ch = pctest.uniq("pagemem")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))
    ids = []
    for base in range(0, N, 50):
        ids += [x.decode() for x in r.pipeline(
            [["XADD", key, "*", "data", "%d " % i + "y" * SIZE] for i in range(base, base + 50)])]
    pid = gw.proc.pid
    path = "/api/channels/%s/events?from=start" % ch
    # one warm-up stream: thread stacks, buffers and the like are not what is measured
    w = pctest.SSEClient(gw.port, path)
    w.read_head()
    w.read_events(N, 30)
    w.close()
    time.sleep(0.5)
    before = pctest.proc_kb(pid, "VmRSS")
    clients = []
    for _ in range(CLIENTS):
        c = pctest.SSEClient(gw.port, path, rcvbuf=4096, timeout=20)
        c.read_head()
        check_eq(c.status, 200, "status")
        clients.append(c)
    time.sleep(3 * pctest.SLOW)
    after = pctest.proc_kb(pid, "VmRSS")
    growth_mb = (after - before) / 1024.0
    pctest.log("gateway VmRSS %d kB -> %d kB (+%.1f MB) with %d stalled clients"
               % (before, after, growth_mb, CLIENTS))
    if pctest.SLOW == 1.0:  # sanitizers keep freed memory in quarantine
        check(growth_mb < 60, "gateway RSS grew by %.1f MB with %d stalled replay clients"
              % (growth_mb, CLIENTS))
    # a stalled client resumes reading: every entry, in order
    evs = clients[0].read_events(N, 30)
    check_eq([e.id for e in evs], ids, "entries after the stall")
    check(all(e.data.startswith("%d " % i) and len(e.data) == len("%d " % i) + SIZE
              for i, e in enumerate(evs)), "entry payloads")
    for c in clients:
        c.close()
    gw.check_alive()
    gw.stop()


pctest.main(main)
