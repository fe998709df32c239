#!/usr/bin/env python3
"""The gap event: asking for an id older than the oldest retained entry of a trimmed stream
first yields `event: gap` with {"requested", "first_available"}, then the oldest retained entry
onwards. No gap for a stream that was never trimmed, for an id inside the retained range, or
for from=start."""

import json

import pctest
from pctest import check, check_eq


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port)
    keys = []
    pctest.on_exit(lambda: r.delete(*keys) if keys else None)

    ch = pctest.uniq("gap")
    key = "pc:ch:" + ch
    keys.append(key)
    reps = r.pipeline([["XADD", key, "*", "data", "n%d" % i] for i in range(100)])
    ids = [x.decode() for x in reps]
    check_eq(r.execute("XTRIM", key, "MAXLEN", "50"), 50, "XTRIM removed")
    retained = ids[50:]

    def expect_gap(query, headers, requested, what):
        c = pctest.sse_open(gw, ch, query, headers)
        g = c.next_event(5)
        check_eq(g.event, "gap", what + ": first event name")
        try:
            d = json.loads(g.data)
        except ValueError:
            pctest.fail("%s: gap data is not JSON: %r" % (what, g.data))
        check_eq(d, {"requested": requested, "first_available": retained[0]}, what + ": gap data")
        evs = c.read_events(len(retained), 5)
        check_eq([e.id for e in evs], retained, what + ": events after the gap")
        check(all(e.event is None for e in evs), what + ": retained entries are plain events")
        live = r.xadd(key, {"data": "live"})
        retained.append(live)
        e = c.next_event(5)
        check_eq((e.id, e.data), (live, "live"), what + ": live event after the replay")
        c.close()

    expect_gap("", {"Last-Event-ID": ids[9]}, ids[9], "Last-Event-ID older than retained")
    expect_gap("lastEventId=" + ids[0], None, ids[0], "?lastEventId older than retained")
    expect_gap("", {"Last-Event-ID": "1-0"}, "1-0", "Last-Event-ID 1-0 on a trimmed stream")

    # an id inside the retained range: no gap
    c = pctest.sse_open(gw, ch, "", {"Last-Event-ID": retained[10]})
    e = c.next_event(5)
    check_eq((e.event, e.id), (None, retained[11]), "resume inside the retained range")
    c.close()

    # from=start on a trimmed stream: the whole retained history, no gap
    c = pctest.sse_open(gw, ch, "from=start")
    e = c.next_event(5)
    check_eq((e.event, e.id), (None, retained[0]), "from=start on a trimmed stream")
    c.close()

    # never trimmed: an id before its first entry is not a gap (entries-added == length)
    ch2 = pctest.uniq("nogap")
    key2 = "pc:ch:" + ch2
    keys.append(key2)
    a = r.xadd(key2, {"data": "a"}, id="5-0")
    b = r.xadd(key2, {"data": "b"}, id="6-0")
    c = pctest.sse_open(gw, ch2, "", {"Last-Event-ID": "1-0"})
    evs = c.read_events(2, 5)
    check_eq([(e.event, e.id) for e in evs], [(None, a), (None, b)],
             "an old id on an untrimmed stream")
    c.close()

    # trimmed with XADD MAXLEN (the way pipe trims) -> gap as well
    ch3 = pctest.uniq("gap-maxlen")
    key3 = "pc:ch:" + ch3
    keys.append(key3)
    reps = r.pipeline([["XADD", key3, "MAXLEN", "10", "*", "data", "m%d" % i] for i in range(30)])
    ids3 = [x.decode() for x in reps]
    c = pctest.sse_open(gw, ch3, "", {"Last-Event-ID": ids3[2]})
    g = c.next_event(5)
    check_eq(g.event, "gap", "XADD MAXLEN trim: first event")
    check_eq(json.loads(g.data), {"requested": ids3[2], "first_available": ids3[20]},
             "XADD MAXLEN trim: gap data")
    check_eq([e.id for e in c.read_events(10, 5)], ids3[20:], "XADD MAXLEN trim: entries")
    c.close()

    gw.check_alive()
    gw.stop()


pctest.main(main)
