#!/usr/bin/env python3
"""A trim while a client replays from Redis pages: 2000 entries of 8 KB (XADD MAXLEN = 2000), a
client on from=start that stops reading for a while, then 3000 more XADDs. The entries trimmed
away between two of its pages must be announced with `event: gap` (requested = the client's
cursor, first_available = the next entry it gets); a client is never silently given less.
Single channel and several channels (the merged path)."""

import json
import time

import pctest
from pctest import check, check_eq

PAD = "x" * 8192
FIRST, MORE, MAXLEN = 2000, 3000, 2000


def add(r, key, start, n):
    ids = []
    for base in range(start, start + n, 250):
        cmds = [["XADD", key, "MAXLEN", "=", MAXLEN, "*", "data", "n%d %s" % (i, PAD)]
                for i in range(base, min(base + 250, start + n))]
        ids += [x.decode() for x in r.pipeline(cmds)]
    return ids


def check_sequence(what, all_ids, got, gaps):
    """@got: entry ids received in order; @gaps: {index in got: gap data} (gap before got[i])."""
    pos = {i: n for n, i in enumerate(all_ids)}
    check(got and got[-1] == all_ids[-1], "%s: did not reach the last entry" % what)
    prev = -1
    for k, eid in enumerate(got):
        n = pos.get(eid)
        check(n is not None, "%s: unknown id %s" % (what, eid))
        if n != prev + 1:
            g = gaps.get(k)
            check(g is not None, "%s: entries %d..%d (%s..) lost without a gap event"
                  % (what, prev + 1, n - 1, all_ids[prev + 1]))
            want_req = all_ids[prev] if prev >= 0 else None
            check_eq(g.get("requested"), want_req, "%s: gap requested" % what)
            check_eq(g.get("first_available"), eid, "%s: gap first_available" % what)
        prev = n
    check(gaps, "%s: the client was not behind the trim (no gap at all): test is void" % what)


def run(r, gw, multi):
    what = "multi" if multi else "single"
    ch = pctest.uniq("trimrep")
    key = "pc:ch:" + ch
    other = pctest.uniq("trimrep-b")
    okey = "pc:ch:" + other
    pctest.on_exit(lambda: r.delete(key, okey))
    ids = add(r, key, 0, FIRST)
    if multi:
        oids = [r.xadd(okey, {"data": "b%d" % i}) for i in range(3)]
        path = "/api/events?channel=%s&channel=%s" % (ch, other)
    else:
        path = "/api/channels/%s/events?from=start" % ch
    c = pctest.SSEClient(gw.port, path, rcvbuf=16384, timeout=20)
    c.read_head()
    check_eq(c.status, 200, what + ": status")
    c.read_events(50, 10)
    time.sleep(0.5)  # the gateway fills the socket buffers and blocks in a write
    ids += add(r, key, FIRST, MORE)
    time.sleep(3)
    got, gaps, ogot = [], {}, []
    deadline = time.monotonic() + 60 * pctest.SLOW
    evs = list(c.events)  # everything so far, read or not
    c.pending = []
    while True:
        for e in evs:
            if e.event == "gap":
                d = json.loads(e.data)
                if multi:
                    check_eq(d.pop("channel", None), ch, what + ": gap channel")
                gaps[len(got)] = d
                continue
            if multi:
                idx, _, cursors = e.id.partition(":")
                eid = cursors.split(",")[int(idx)]
                if int(idx) == 1:
                    ogot.append(eid)
                    continue
            else:
                eid = e.id
            got.append(eid)
        if got and got[-1] == ids[-1]:
            break
        check(time.monotonic() < deadline, "%s: timed out; got %d entries" % (what, len(got)))
        evs = [c.next_event(20)]
    check_sequence(what, ids, got, gaps)
    if multi:
        check_eq(ogot, oids, what + ": the other channel's entries")
    c.close()
    pctest.log("%s: %d entries received, gaps %s" % (what, len(got), list(gaps.values())))


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port, timeout=30)
    gw = pctest.Gateway(port)
    run(r, gw, False)
    run(r, gw, True)
    gw.check_alive()
    gw.stop()


pctest.main(main)
