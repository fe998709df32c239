#!/usr/bin/env python3
"""DELETE /api/channels/<ch> while another subscriber holds the channel: the hub's ring must not
keep the deleted entries. A new subscriber on from=start gets only what was published after the
delete; the subscriber that stayed connected keeps receiving new entries."""

import pctest
from pctest import check_eq


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port)
    ch = pctest.uniq("del")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))
    seed = r.xadd(key, {"data": "seed"})
    holder = pctest.sse_open(gw, ch, "from=start")
    check_eq(holder.next_event(5).id, seed, "holder: the seed entry")
    old = [r.xadd(key, {"data": "old %d" % i}) for i in range(5)]
    check_eq([e.id for e in holder.read_events(5, 5)], old, "holder: live entries (in the ring)")

    d = gw.request("DELETE", "/api/channels/%s" % ch)
    check_eq(d.status, 200, "DELETE status")
    check_eq(r.execute("EXISTS", key), 0, "key deleted")

    new = [r.xadd(key, {"data": "new %d" % i}) for i in range(3)]
    c = pctest.sse_open(gw, ch, "from=start")
    evs = c.read_events(3, 5)
    check_eq([(e.id, e.data) for e in evs], [(i, "new %d" % n) for n, i in enumerate(new)],
             "new subscriber after DELETE: only the entries published since")
    c.expect_quiet(0.5)
    check_eq([e.data for e in holder.read_events(3, 5)], ["new 0", "new 1", "new 2"],
             "the subscriber that stayed: entries published after DELETE")
    more = r.xadd(key, {"data": "more"})
    check_eq(c.next_event(5).id, more, "new subscriber: live entry")
    check_eq(holder.next_event(5).id, more, "holder: live entry")

    # deleting again and publishing with explicit ids lower than the old ones
    check_eq(gw.request("DELETE", "/api/channels/%s" % ch).status, 200, "second DELETE")
    low = r.xadd(key, {"data": "low"}, id="5-1")
    c2 = pctest.sse_open(gw, ch, "from=start")
    e = c2.next_event(5)
    check_eq((e.id, e.data), (low, "low"), "from=start after DELETE: a low explicit id")
    c2.expect_quiet(0.5)
    for x in (c, c2, holder):
        x.close()
    gw.check_alive()
    gw.stop()


pctest.main(main)
