#!/usr/bin/env python3
"""--redis unix:///path?db=N: the gateway reaches Redis over a unix socket. Live entries must
arrive (the hub's reader once enabled TCP keepalive on the unix socket, which failed and left
its connection unusable: CLIENT ID failed forever), replay works, REST publish and DELETE work."""

import os

import pctest
from pctest import check, check_eq


def main():
    d = pctest.tempfile.mkdtemp(prefix="pc-unix-")
    pctest.on_exit(lambda: pctest.shutil.rmtree(d, ignore_errors=True))
    sock = os.path.join(d, "redis.sock")
    red = pctest.PrivateRedis(["--unixsocket", sock, "--unixsocketperm", "700"])
    r = red.client()
    r.execute("SELECT", 3)
    gw = pctest.Gateway(redis_url="unix://%s?db=3" % sock)
    check_eq(gw.healthz().status, 200, "/healthz over a unix socket")

    ch = pctest.uniq("unix")
    key = "pc:ch:" + ch
    old = r.xadd(key, {"data": "before"})
    c = pctest.sse_open(gw, ch, "from=start")
    e = c.next_event(5)
    check_eq((e.id, e.data), (old, "before"), "replayed entry")
    for i in range(3):
        nid = r.xadd(key, {"data": "live %d" % i})
        e = c.next_event(5)
        check_eq((e.id, e.data), (nid, "live %d" % i), "live entry %d over a unix socket" % i)
    p = gw.request("POST", "/api/channels/%s" % ch, b"posted\n")
    check_eq(p.status, 200, "POST over a unix socket")
    e = c.next_event(5)
    check_eq(e.data, "posted", "live entry published through REST")
    check_eq(r.xlen(key), 5, "entries in db 3")
    c.close()
    check("CLIENT ID failed" not in gw.log_tail(200), "gateway log: " + gw.log_tail(20))
    gw.check_alive()
    gw.stop()


pctest.main(main)
