#!/usr/bin/env python3
"""SSE basics over a real HTTP connection: pipe -> SSE; redis-cli style XADD with event and
multi-line data; entries without data skipped; invalid UTF-8 replaced by U+FFFD; empty data;
response headers, retry hint, ping comments; event filter; a channel that does not exist yet."""

import subprocess
import time

import pctest
from pctest import check, check_eq


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port, ["--ping-interval", "1", "--retry-ms", "1500"])
    keys = []
    pctest.on_exit(lambda: r.delete(*keys) if keys else None)

    def new(tag):
        ch = pctest.uniq(tag)
        keys.append("pc:ch:" + ch)
        return ch, "pc:ch:" + ch

    # 1. pipe -> SSE, live: the stream is opened on a channel that does not exist yet
    ch, key = new("pipe")
    c = pctest.sse_open(gw, ch)
    check_eq(c.headers.get("content-type"), "text/event-stream; charset=utf-8", "Content-Type")
    check("no-cache" in c.headers.get("cache-control", ""), "Cache-Control: %r"
          % c.headers.get("cache-control"))
    check_eq(c.headers.get("x-accel-buffering"), "no", "X-Accel-Buffering")
    payload = "one\ntwo\n\nhéllo ✓\n".encode()
    p = pctest.pipecast(["pipe", ch], input=payload, redis_port=port)
    check_eq(p.returncode, 0, "pipe exit (stderr %r)" % p.stderr)
    evs = c.read_events(4, timeout=5)
    ents = r.xrange(key)
    check_eq([e.id for e in evs], [i for i, _ in ents], "SSE ids == stream ids")
    check_eq([e.data for e in evs], ["one", "two", "", "héllo ✓"], "SSE data")
    check_eq([e.event for e in evs], [None] * 4, "no event: field without an event name")
    check(c.raw_first.startswith(b"retry: 1500\n"),
          "the first bytes should be 'retry: 1500\\n\\n', got %r" % c.raw_first[:60])
    check_eq(c.parser.retry, 1500, "retry hint (--retry-ms 1500)")

    # 2. XADD like redis-cli: event name, JSON data, multi-line data, trailing newline
    t0 = time.monotonic()
    r.xadd(key, [("event", "progress"), ("data", '{"pct":40}')])
    e = c.next_event(3)
    lat = time.monotonic() - t0
    check(lat < 1.0 * pctest.SLOW, "live latency %.2f s" % lat)
    check_eq((e.event, e.data), ("progress", '{"pct":40}'), "event + data")
    # the README's producer example, through redis-cli itself
    for args in (["MAXLEN", "~", "100000", "*", "data", "compiling foo.c"],
                 ["*", "event", "progress", "data", '{"pct":41}']):
        cp = subprocess.run(["redis-cli", "-p", str(port), "XADD", key] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        check_eq(cp.returncode, 0, "redis-cli XADD (%r)" % cp.stderr)
    e1, e2 = c.read_events(2, 3)
    check_eq((e1.event, e1.data, e2.event, e2.data),
             (None, "compiling foo.c", "progress", '{"pct":41}'), "redis-cli XADD -> SSE")
    r.xadd(key, {"data": "line1\nline2\n\nline4"})
    check_eq(c.next_event(3).data, "line1\nline2\n\nline4", "multi-line data")
    r.xadd(key, {"data": "ends with newline\n"})
    check_eq(c.next_event(3).data, "ends with newline\n", "data with a trailing newline")
    r.xadd(key, {"data": "\n"})
    check_eq(c.next_event(3).data, "\n", "data that is only a newline")
    r.xadd(key, {"data": ""})
    check_eq(c.next_event(3).data, "", "empty data (an empty line must still be an event)")

    # 3. entries without data are skipped (and the next one still arrives)
    r.xadd(key, {"foo": "bar"})
    r.xadd(key, {"event": "stderr"})
    last = r.xadd(key, {"data": "after skipped"})
    e = c.next_event(3)
    check_eq((e.id, e.data), (last, "after skipped"), "event after entries without data")

    # 4. bytes that are not UTF-8 -> U+FFFD, never dropped; the stream stays valid UTF-8
    r.xadd(key, {"data": b"bad \xff\xfe end \xe2\x82"})
    e = c.next_event(3)
    check(e.data.startswith("bad \ufffd") and "end" in e.data and e.data.endswith("\ufffd"),
          "invalid UTF-8 should become U+FFFD: %r" % e.data)
    check_eq(e.data.replace("\ufffd", ""), "bad  end ", "valid bytes around invalid ones")
    r.xadd(key, {"data": "a\x00b"})
    e = c.next_event(3)
    check(e.data in ("a\x00b", "a\ufffdb"), "NUL byte: %r" % e.data)
    # a bare CR inside data must not make a browser drop the rest of the payload
    r.xadd(key, {"data": "cr\rinside"})
    e = c.next_event(3)
    check("cr" in e.data and "inside" in e.data and e.data.index("inside") > e.data.index("cr"),
          "data with a bare CR lost bytes as seen by an SSE parser: %r" % e.data)
    # a large entry (200 KB line via pipe -> 64 KiB partial chunks) arrives whole
    big = ("x" + "é" * 100000).encode()
    p = pctest.pipecast(["pipe", ch], input=big + b"\n", redis_port=port)
    check_eq(p.returncode, 0, "pipe of a 200 KB line")
    n = len(r.xrange(key, "(" + e.id))
    evs = c.read_events(n, 5)
    check_eq("".join(x.data for x in evs).encode(), big, "200 KB line via SSE, joined")

    # 5. ping comments on an idle stream (--ping-interval 1)
    nc = len(c.parser.comments)
    c.expect_quiet(2.5)
    check(len(c.parser.comments) > nc, "no ': ping' comment within 2.5 s (--ping-interval 1)")
    c.close()

    # 6. event filter: ?event=stderr&event=exit keeps only those, ids are the stream ids
    ch, key = new("filter")
    ids = {}
    for ev, d in [("stdout", "o1"), ("stderr", "e1"), (None, "plain"), ("stdout", "o2"),
                  ("exit", '{"code":0}'), ("stderr", "e2")]:
        f = [("data", d)] if ev is None else [("event", ev), ("data", d)]
        ids[d] = r.xadd(key, f)
    c = pctest.sse_open(gw, ch, "event=stderr&event=exit")
    evs = c.read_events(3, 5)
    check_eq([(e.id, e.event, e.data) for e in evs],
             [(ids["e1"], "stderr", "e1"), (ids['{"code":0}'], "exit", '{"code":0}'),
              (ids["e2"], "stderr", "e2")], "filtered events")
    r.xadd(key, [("event", "stdout"), ("data", "o3")])
    live = r.xadd(key, [("event", "stderr"), ("data", "e3")])
    e = c.next_event(3)
    check_eq((e.id, e.data), (live, "e3"), "filtered live event")
    c.close()

    # 7. a second client on the same channel gets the same ids; curl works too
    ch, key = new("curl")
    r.xadd(key, {"data": "for curl"})
    cp = subprocess.run(["curl", "-sN", "--max-time", str(2 * pctest.SLOW),
                         "http://127.0.0.1:%d/api/channels/%s/events" % (gw.port, ch)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(b"data: for curl\n" in cp.stdout, "curl -N output: %r" % cp.stdout[:300])

    gw.check_alive()
    gw.stop()


pctest.main(main)
