#!/usr/bin/env python3
"""SSE start points: from=start (default), from=end, tail=N, ?lastEventId, Last-Event-ID
(the header wins over the query); each replays exactly and then continues live."""

import time

import pctest
from pctest import check, check_eq


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port)
    ch = pctest.uniq("replay")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))

    # explicit ids, so that "between two entries" is well defined
    ids = [r.xadd(key, {"data": "e%d" % i}, id="%d-0" % (i * 1000)) for i in range(1, 11)]
    datas = ["e%d" % i for i in range(1, 11)]
    live_n = [0]

    def check_stream(query, headers, want_idx, what):
        c = pctest.sse_open(gw, ch, query, headers)
        evs = c.read_events(len(want_idx), 5) if want_idx else []
        check_eq([(e.id, e.data) for e in evs], [(ids[i], datas[i]) for i in want_idx],
                 what + ": replayed events")
        if not want_idx:
            # nothing must come before the live entry; make sure the stream is set up first
            c.expect_quiet(0.5)
        live_n[0] += 1
        lid = r.xadd(key, {"data": "live%d" % live_n[0]})
        ids.append(lid)
        datas.append("live%d" % live_n[0])
        e = c.next_event(5)
        check_eq((e.id, e.data), (lid, "live%d" % live_n[0]), what + ": first live event")
        c.close()
        return evs

    n0 = len(ids)
    check_stream("", None, list(range(n0)), "default (from=start)")
    n0 = len(ids)
    check_stream("from=start", None, list(range(n0)), "from=start")
    check_stream("from=end", None, [], "from=end")
    n0 = len(ids)
    check_stream("tail=3", None, [n0 - 3, n0 - 2, n0 - 1], "tail=3")
    check_stream("tail=0", None, [], "tail=0")
    n0 = len(ids)
    check_stream("tail=100000", None, list(range(n0)), "tail=100000 (more than there is)")
    n0 = len(ids)
    check_stream("lastEventId=" + ids[4], None, list(range(5, n0)), "?lastEventId=<5th>")
    n0 = len(ids)
    check_stream("lastEventId=5500-0", None, list(range(5, n0)),
                 "?lastEventId between two entries")
    n0 = len(ids)
    check_stream("", {"Last-Event-ID": ids[6]}, list(range(7, n0)), "Last-Event-ID header")
    n0 = len(ids)
    check_stream("lastEventId=" + ids[1], {"Last-Event-ID": ids[7]}, list(range(8, n0)),
                 "Last-Event-ID header over ?lastEventId")
    n0 = len(ids)
    check_stream("from=end", {"Last-Event-ID": ids[8]}, list(range(9, n0)),
                 "Last-Event-ID header over ?from=end")
    n0 = len(ids)
    check_stream("tail=1", {"Last-Event-ID": ids[2]}, list(range(3, n0)),
                 "Last-Event-ID header over ?tail=1")
    n0 = len(ids)
    check_stream("", {"Last-Event-ID": ids[-1]}, [], "Last-Event-ID = the newest entry")

    # resume after a disconnect, like EventSource: read some, drop, reconnect with the last id
    c = pctest.sse_open(gw, ch)
    got = c.read_events(4, 5)
    c.close()
    for i in range(3):
        r.xadd(key, {"data": "while away %d" % i})
    c = pctest.sse_open(gw, ch, "", {"Last-Event-ID": got[-1].id})
    rest = r.xrange(key, "(" + got[-1].id)
    evs = c.read_events(len(rest), 5)
    check_eq([e.id for e in got + evs], [i for i, _ in r.xrange(key)], "resume with Last-Event-ID")
    c.expect_quiet(0.3)
    c.close()

    # from=end on a stream that does not exist yet, then the stream is created
    ch2 = pctest.uniq("replay-new")
    pctest.on_exit(lambda: r.delete("pc:ch:" + ch2))
    c = pctest.sse_open(gw, ch2, "from=end")
    time.sleep(0.3)
    nid = r.xadd("pc:ch:" + ch2, {"data": "first ever"})
    e = c.next_event(5)
    check_eq((e.id, e.data), (nid, "first ever"), "from=end on a new channel")
    c.close()

    gw.check_alive()
    gw.stop()


pctest.main(main)
