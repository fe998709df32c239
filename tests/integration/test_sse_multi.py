#!/usr/bin/env python3
"""Several channels on one SSE connection: GET /api/events?channel=a&channel=b.

Event ids are "<index>:<cursor 0>,<cursor 1>,..." (docs/interfaces.md): the index of the
channel the event comes from, then the position of every channel in the order of the request's
channel list ("" for 0-0). Checked here: replay interleaved by stream id across channels, live
entries of any channel, resume with one multi-channel Last-Event-ID (every missed entry of every
channel exactly once), start points per channel, filters, gap per channel (with "channel" in its
data), 400 for bad channels and ids, and the replay/live seam while two channels are published
concurrently (small ring, so that clients cross between Redis pages and the rings)."""

import json
import random
import threading
import time
import urllib.parse

import pctest
from pctest import check, check_eq


def path_of(chans, query=""):
    q = "&".join("channel=" + urllib.parse.quote(c, safe="") for c in chans)
    return "/api/events?" + q + ("&" + query if query else "")


def multi_open(gw, chans, query="", headers=None, timeout=10.0):
    c = gw.sse(path=path_of(chans, query), headers=headers, timeout=timeout)
    c.read_head()
    check(c.status == 200, "GET %s: expected 200, got %d %s" % (c.path, c.status, c.body))
    check(c.headers.get("content-type", "").startswith("text/event-stream"),
          "%s: Content-Type %r" % (c.path, c.headers.get("content-type")))
    return c


def parse_id(eid, n):
    """"<index>:<c0>,..." -> (index, [cursor or None]); fails on anything else."""
    check(eid is not None and ":" in eid, "event id %r is not a multi-channel id" % eid)
    idx, _, rest = eid.partition(":")
    parts = rest.split(",")
    check(idx.isdigit() and int(idx) < n and len(parts) == n,
          "event id %r: expected <index below %d>:<%d parts>" % (eid, n, n))
    return int(idx), [p or None for p in parts]


class Tracker:
    """Follows one client's view: checks every event's id against what it was sent before."""

    def __init__(self, chans, start=None):
        self.chans = chans
        self.pos = list(start) if start else [None] * len(chans)  # cursor per channel
        self.got = [[] for _ in chans]  # (id, data) per channel, in arrival order

    def feed(self, ev, what):
        idx, cur = parse_id(ev.id, len(self.chans))
        check(cur[idx] is not None, "%s: event %r names no id for its own channel" % (what, ev))
        for j, c in enumerate(cur):
            if j != idx:
                check_eq(c, self.pos[j], "%s: cursor of channel %d in %s" % (what, j, ev.id))
        if self.pos[idx] is not None:
            check(pctest.id_key(cur[idx]) > pctest.id_key(self.pos[idx]),
                  "%s: channel %d went back from %s to %s" % (what, idx, self.pos[idx], cur[idx]))
        self.pos[idx] = cur[idx]
        self.got[idx].append((cur[idx], ev.data))
        return idx, cur[idx]


def publish(r, key, data, event=None):
    f = [("event", event)] if event else []
    return r.xadd(key, f + [("data", data)])


def want_after(entries, cursor):
    """(id, data) of @entries after @cursor (None = all)."""
    k = pctest.id_key(cursor) if cursor else (-1, -1)
    return [(i, f[b"data"].decode()) for i, f in entries if pctest.id_key(i) > k]


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    keys = []
    pctest.on_exit(lambda: r.delete(*keys) if keys else None)
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    pctest.log("seed %d" % seed)
    gw = pctest.Gateway(port, ["--ring", "64", "--max-clients", "100", "--ping-interval", "1"])

    def chans_of(tag, n):
        cs = [pctest.uniq("%s%d" % (tag, i)) for i in range(n)]
        keys.extend("pc:ch:" + c for c in cs)
        return cs

    # ---- replay interleaved by id across three channels, then live --------------------------
    chans = chans_of("mix", 3)
    ks = ["pc:ch:" + c for c in chans]
    order = []  # (id, index) in publishing order
    for i in range(300):
        j = rnd.randrange(3)
        order.append((publish(r, ks[j], "%d:%d" % (j, i)), j))
    want = sorted(order, key=lambda t: (pctest.id_key(t[0]), t[1]))
    c = multi_open(gw, chans)
    tr = Tracker(chans)
    evs = c.read_events(len(want), 10)
    got = [tr.feed(e, "replay") for e in evs]
    check_eq([(i, j) for j, i in got], [(i, j) for i, j in want], "replay order (id, channel)")
    for e, (i, j) in zip(evs, want):
        check(e.data.startswith("%d:" % j), "replay: data %r from channel %d" % (e.data, j))
    # live: any channel wakes the stream, in publishing order
    for i in range(30):
        j = rnd.randrange(3)
        eid = publish(r, ks[j], "live%d" % i, event="ev" if i % 2 else None)
        e = c.next_event(5)
        idx, cur = tr.feed(e, "live")
        check_eq((idx, cur, e.data, e.event), (j, eid, "live%d" % i, "ev" if i % 2 else None),
                 "live event %d" % i)
    last_id = e.id
    # only the third channel moves: it alone must wake the stream, promptly
    t0 = time.monotonic()
    eid = publish(r, ks[2], "third")
    e = c.next_event(5)
    check_eq(tr.feed(e, "third")[1], eid, "third channel's entry")
    check(time.monotonic() - t0 < 2 * pctest.SLOW, "third channel's entry took too long")
    c.close()

    pctest.log("replay and live: ok")
    # ---- resume with one multi-channel Last-Event-ID: every missed entry once ---------------
    missed = []
    for i in range(40):
        j = rnd.randrange(3)
        missed.append((publish(r, ks[j], "missed%d" % i), j))
    missed.insert(0, (eid, 2))  # the "third" entry came after last_id
    for how in ("header", "query"):
        if how == "header":
            c = multi_open(gw, chans, "", {"Last-Event-ID": last_id})
        else:
            c = multi_open(gw, chans, "lastEventId=" + urllib.parse.quote(last_id, safe=""))
        tr2 = Tracker(chans, parse_id(last_id, 3)[1])
        evs = c.read_events(len(missed), 10)
        got = [tr2.feed(ev, "resume/" + how) for ev in evs]
        want = sorted(missed, key=lambda t: (pctest.id_key(t[0]), t[1]))
        check_eq([(i, j) for j, i in got], [(i, j) for i, j in want], "resume (%s)" % how)
        c.expect_quiet(0.5)
        c.close()
    # an empty part starts that channel from its beginning; the header wins over the query
    _, cur = parse_id(last_id, 3)
    hdr = "0:%s,,%s" % (cur[0], cur[2])
    c = multi_open(gw, chans, "lastEventId=0:,,", {"Last-Event-ID": hdr})
    entries = [r.xrange_all(k) for k in ks]
    exp = sorted([(i, 0) for i, _ in want_after(entries[0], cur[0])] +
                 [(i, 1) for i, _ in want_after(entries[1], None)] +
                 [(i, 2) for i, _ in want_after(entries[2], cur[2])],
                 key=lambda t: (pctest.id_key(t[0]), t[1]))
    tr3 = Tracker(chans, [cur[0], None, cur[2]])
    got = [tr3.feed(ev, "empty part") for ev in c.read_events(len(exp), 10)]
    check_eq([(i, j) for j, i in got], exp, "resume with an empty part")
    c.close()

    pctest.log("resume: ok")
    # ---- start points per channel, filters ----------------------------------------------------
    c = multi_open(gw, chans, "tail=2")
    exp = sorted([(i, j) for j in range(3) for i, _ in entries[j][-2:]],
                 key=lambda t: (pctest.id_key(t[0]), t[1]))
    got = []
    for ev in c.read_events(6, 5):
        idx, cur = parse_id(ev.id, 3)
        got.append((cur[idx], idx))
    check_eq(got, exp, "tail=2 on each channel, merged by id")
    c.expect_quiet(0.3)
    c.close()
    c = multi_open(gw, chans, "from=end")
    c.expect_quiet(0.5)
    a = publish(r, ks[1], "after-end")
    e = c.next_event(5)
    idx, cur = parse_id(e.id, 3)
    check_eq((idx, cur[1], e.data), (1, a, "after-end"), "from=end: the first new entry")
    check(cur[0] == entries[0][-1][0] and cur[2] == entries[2][-1][0],
          "from=end: the untouched channels' cursors are their last ids: %r" % e.id)
    c.close()
    # event=ev keeps only those; cursors still name every channel's position
    c = multi_open(gw, chans, "event=ev&from=end")
    c.expect_quiet(0.5)  # the start points are resolved after the response head
    publish(r, ks[0], "plain")
    b = publish(r, ks[2], "evented", event="ev")
    e = c.next_event(5)
    check_eq((e.event, e.data, parse_id(e.id, 3)[1][2]), ("ev", "evented", b), "event filter")
    c.close()
    # one channel on /api/events: the id is "0:<id>"
    c = multi_open(gw, chans[:1], "tail=1")
    e = c.next_event(5)
    check_eq(e.id, "0:" + r.xrange_all(ks[0])[-1][0], "single channel on /api/events")
    c.close()

    pctest.log("start points and filters: ok")
    # ---- gap per channel ----------------------------------------------------------------------
    g = chans_of("gap", 2)
    gk = ["pc:ch:" + x for x in g]
    ga = [publish(r, gk[0], "a%d" % i) for i in range(5)]
    gb = [publish(r, gk[1], "b%d" % i) for i in range(30)]
    r.execute("XTRIM", gk[1], "MAXLEN", "10")
    c = multi_open(gw, g, "", {"Last-Event-ID": "0:%s,%s" % (ga[1], gb[3])})
    e = c.next_event(5)
    check_eq(e.event, "gap", "gap: first event")
    check_eq(e.id, None, "gap: no id")
    check_eq(json.loads(e.data), {"channel": g[1], "requested": gb[3], "first_available": gb[20]},
             "gap data")
    evs = c.read_events(3 + 10, 5)
    tr = Tracker(g, [ga[1], gb[3]])
    got = [tr.feed(ev, "after gap") for ev in evs]
    exp = sorted([(i, 0) for i in ga[2:]] + [(i, 1) for i in gb[20:]],
                 key=lambda t: (pctest.id_key(t[0]), t[1]))
    check_eq([(i, j) for j, i in got], exp, "entries after the gap, merged by id")
    c.close()

    pctest.log("gap: ok")
    # ---- bad input: 400 before any SSE byte --------------------------------------------------
    def bad(path, headers=None, what=""):
        resp = gw.get(path, headers=headers or {})
        pctest.check_json_error(resp, 400, what or path)
        return resp.json()["error"]

    two = chans[:2]
    bad("/api/events", what="no channel")
    bad("/api/events?from=end", what="no channel parameter")
    bad("/api/events?channel=", what="empty channel")
    bad("/api/events?channel=a%20b", what="invalid channel name")
    bad("/api/events?channel=a%2Fb", what="slash in a channel name")
    bad("/api/events?channel=" + "x" * 201, what="channel name too long")
    msg = bad(path_of([chans[0], chans[1], chans[0]]), what="duplicate channel")
    check(chans[0] in msg, "duplicate: the message names the channel: %r" % msg)
    bad(path_of(["c%d" % i for i in range(65)]), what="65 channels")
    ok64 = multi_open(gw, ["%s-%d" % (chans[0], i) for i in range(64)], "from=end")
    ok64.close()
    for v in ["1-0", "abc", "0:1-0", "2:1-0,2-0", "00:1-0,", "01:1-0,", "0:1-0,2-0,3-0",
              "0:1-x,", "0:1-0, 2-0", "0:1-0,+2-0", "-1:1-0,", "0;1-0,", ":1-0,", "0:1,2-0",
              "0:18446744073709551616-0,", "0:1-0,2-0 ", "0:,,"]:
        bad(path_of(two), {"Last-Event-ID": v}, "Last-Event-ID %r" % v)
        bad(path_of(two, "lastEventId=" + urllib.parse.quote(v, safe="")), None,
            "lastEventId %r" % v)
    # (HTTP strips the spaces around a header value, the query keeps them)
    bad(path_of(two, "lastEventId=%200:1-0,"), None, "lastEventId with a leading space")
    bad(path_of(two, "tail=x"), what="bad tail")
    bad(path_of(two, "from=middle"), what="bad from")
    bad(path_of(two, "event=a%20b"), what="bad event")
    r405 = gw.request("POST", path_of(two), body=b"x")
    check_eq(r405.status, 405, "POST /api/events")
    gw.check_alive()

    pctest.log("bad input: ok")
    seam(gw, r, rnd, chans_of("seam", 2))
    # closed streams notice at their next write (pings every second here)
    pctest.wait_for(lambda: gw.metrics().get("pipecast_sse_clients") == 0.0, 10 * pctest.SLOW,
                    "pipecast_sse_clients back to 0")
    gw.check_alive()
    gw.stop()


def seam(gw, r, rnd, chans):
    """Two channels published concurrently; clients connect at random moments with a
    Last-Event-ID that puts each channel at an independent random earlier position (or none)
    and must receive every later entry of both channels exactly once, in order."""
    ks = ["pc:ch:" + c for c in chans]
    published = [[], []]
    lock = threading.Lock()
    stop = threading.Event()
    errors = []
    pub = pctest.Redis(r.port)
    for i in range(150):
        for j in range(2):
            published[j].append(pub.xadd(ks[j], {"data": "%d:%d" % (j, i)}))

    def publisher():
        try:
            n = 150
            while not stop.is_set():
                burst = rnd.randint(1, 15)
                cmds = [["XADD", ks[rnd.randrange(2)], "*", "data", "n=%d" % (n + k)]
                        for k in range(burst)]
                reps = pub.pipeline(cmds)
                with lock:
                    for cmd, rep in zip(cmds, reps):
                        published[ks.index(cmd[1])].append(rep.decode())
                n += burst
                time.sleep(rnd.uniform(0, 0.004))
        except Exception as e:  # reported below
            errors.append("publisher: %r" % e)

    n_clients = 16
    results = [None] * n_clients

    def client(k, delay):
        try:
            time.sleep(delay)
            with lock:
                snap = [list(p) for p in published]
            start = []
            for j in range(2):
                x = rnd.random()
                if x < 0.15:
                    start.append(None)  # from the start of that channel
                elif x < 0.7:
                    start.append(snap[j][-rnd.randint(1, min(120, len(snap[j])))])
                else:
                    start.append(rnd.choice(snap[j]))
            # the index part only names the event's channel: any valid one will do
            hdr = {"Last-Event-ID": "%d:%s" % (rnd.randrange(2), ",".join(s or "" for s in start))}
            c = multi_open(gw, chans, "", hdr, timeout=30)
            tr = Tracker(chans, start)
            ends = set()
            while len(ends) < 2:
                e = c.next_event(40)
                j, _ = tr.feed(e, "seam client %d" % k)
                if e.data == "END":
                    ends.add(j)
            c.close()
            results[k] = (start, tr)
        except Exception as e:
            errors.append("client %d: %s" % (k, e))

    t_pub = threading.Thread(target=publisher)
    t_pub.start()
    threads = []
    for k in range(n_clients):
        t = threading.Thread(target=client, args=(k, rnd.uniform(0.1, 2.7)), daemon=True)
        t.start()
        threads.append(t)
    time.sleep(3.0)
    stop.set()
    t_pub.join()
    for j in range(2):
        pub.xadd(ks[j], {"data": "END"})
    for t in threads:
        t.join(60 * pctest.SLOW)
    check(not errors, "seam errors: %s" % "; ".join(errors[:5]))
    check(all(x is not None for x in results), "seam: some clients did not finish")
    entries = [r.xrange_all(k) for k in ks]
    pctest.log("seam: %d + %d entries, %d clients" % (len(entries[0]), len(entries[1]), n_clients))
    for k, (start, tr) in enumerate(results):
        for j in range(2):
            want = want_after(entries[j], start[j])
            got = tr.got[j]
            if got != want:
                ids = [g[0] for g in got]
                dups = len(ids) - len(set(ids))
                missing = [w for w in want if w not in set(got)]
                pctest.fail("seam client %d channel %d (start %s): got %d events, want %d; "
                            "%d missing (e.g. %s), %d duplicates"
                            % (k, j, start[j], len(got), len(want), len(missing), missing[:3],
                               dups))


pctest.main(main)
