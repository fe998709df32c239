#!/usr/bin/env python3
"""Bad input gets a clear error and costs nothing else: malformed ids, bad channel names,
bad from/tail -> 400 JSON before any SSE byte; unknown /api paths -> 404 JSON; wrong method ->
405; a 100 KB request line or header -> 4xx (no hang, no crash); a 10 MB body -> 413 and
nothing published; --max-clients 2 -> the 3rd stream gets 503 + Retry-After. The gateway stays
healthy throughout and exits cleanly."""

import socket

import pctest
from pctest import check, check_eq, check_json_error


def raw_exchange(port, payload, timeout=10.0):
    """The status of the response to raw bytes @payload; fails when there is none."""
    r = pctest.raw_request(port, payload, timeout)
    if r is None or r.status == 0:
        pctest.fail("no HTTP response to a %d-byte request (got %r)"
                    % (len(payload), r.body[:100] if r else b""))
    return r.status


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port)
    ch = pctest.uniq("bad")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))
    r.xadd(key, {"data": "x"})
    ev = "/api/channels/%s/events" % ch

    def bad_sse(path, headers, what, status=400):
        c = pctest.SSEClient(gw.port, path, headers=headers, timeout=5)
        c.read_head()
        check(c.status == status, "%s: expected %d, got %d (%r)" % (what, status, c.status,
                                                                     c.body[:200]))
        ct = c.headers.get("content-type", "")
        check(ct.startswith("application/json"), "%s: Content-Type %r (must not be SSE)"
              % (what, ct))
        j = c.json_body()
        check(isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"],
              "%s: body %r" % (what, j))
        return c

    # malformed ids, in the header and in the query
    for bad in ["abc", "1-", "-1", "1-2-3", "123456789012345678901-0", "0-123456789012345678901",
                "18446744073709551616-0", "+1-0", "1-+2", "1 -2", "0x10-0"]:
        q = bad.replace(" ", "%20").replace("+", "%2B")
        bad_sse(ev, {"Last-Event-ID": bad}, "Last-Event-ID %r" % bad)
        bad_sse(ev + "?lastEventId=" + q, None, "?lastEventId=%r" % bad)

    # bad channel names on every channel endpoint
    for name in ["a%20b", "n" * 201, "..%2F", "a%2Fb", "%C3%A9", "a*b", "a%00b"]:
        bad_sse("/api/channels/%s/events" % name, None, "SSE name %r" % name[:30])
        check_json_error(gw.get("/api/channels/" + name), 400, "GET name %r" % name[:30])
        check_json_error(gw.request("POST", "/api/channels/" + name, body=b"x\n"), 400,
                         "POST name %r" % name[:30])
        check_json_error(gw.request("DELETE", "/api/channels/" + name), 400,
                         "DELETE name %r" % name[:30])

    # bad start points
    for q in ["tail=-1", "tail=abc", "tail=100001", "tail=", "tail=1.5", "from=middle", "from="]:
        bad_sse(ev + "?" + q, None, "?" + q)
    # a valid request still works (the checks above did not wedge anything)
    c = pctest.sse_open(gw, ch, "tail=1")
    check_eq(c.next_event(5).data, "x", "valid stream after the bad ones")
    c.close()

    # unknown API paths and methods
    for path in ["/api/foo", "/api/channels/%s/bogus" % ch, "/api/", "/api/channels/%s/events/x"
                 % ch]:
        check_json_error(gw.get(path), 404, "GET %s" % path)
    check_json_error(gw.request("PUT", "/api/channels/" + ch, body=b"x"), 405,
                     "PUT /api/channels/<ch>")

    # huge request line and huge header: a 4xx, not a hang, not a crash
    st = raw_exchange(gw.port, b"GET /api/channels/" + b"a" * 100000 + b" HTTP/1.1\r\n"
                      b"Host: localhost\r\n\r\n")
    check(400 <= st < 500, "100 KB request line: status %d" % st)
    gw.check_alive("after a 100 KB request line")
    st = raw_exchange(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100000
                      + b"\r\n\r\n")
    check(400 <= st < 500, "100 KB header: status %d" % st)
    gw.check_alive("after a 100 KB header")
    st = raw_exchange(gw.port, b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n")
    check(400 <= st < 500 or st == 200, "2000 headers: status %d" % st)
    st = raw_exchange(gw.port, b"HELLO\r\n\r\n")
    check(400 <= st < 500, "garbage request line: status %d" % st)
    # a request cut off half-way, then the connection dropped
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"GET /api/chan")
    s.close()
    check_eq(gw.healthz().status, 200, "healthz after oversized and broken requests")

    # 10 MB body -> 413 JSON, nothing published
    big_ch = pctest.uniq("bigbody")
    pctest.on_exit(lambda: r.delete("pc:ch:" + big_ch))
    body = (b"y" * 1023 + b"\n") * (10 * 1024)
    head = ("POST /api/channels/%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
            "Content-Length: %d\r\n\r\n" % (big_ch, len(body))).encode()
    rr = pctest.raw_request(gw.port, head + body, timeout=20)
    check(rr is not None, "no response to a 10 MB POST")
    check_json_error(rr, 413, "10 MB POST")
    check_eq(r.execute("EXISTS", "pc:ch:" + big_ch), 0, "stream created by a rejected 10 MB POST")
    body = b"z" * (1024 * 1024 + 1)
    head = ("POST /api/channels/%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
            % (big_ch, len(body))).encode()
    check_json_error(pctest.raw_request(gw.port, head + body), 413, "POST of 1 MiB + 1 byte")
    body = (b"z" * 1023 + b"\n") * 1024
    head = ("POST /api/channels/%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
            % (big_ch, len(body))).encode()
    rr = pctest.raw_request(gw.port, head + body)
    check(rr is not None and rr.status == 200, "POST of exactly 1 MiB (--max-body): %r" % rr)
    r.delete("pc:ch:" + big_ch)
    check_eq(gw.healthz().status, 200, "healthz after the big bodies")
    gw.check_alive()
    gw.stop()

    # --max-clients 2: the third concurrent stream gets 503 with Retry-After
    gw2 = pctest.Gateway(port, ["--max-clients", "2", "--ping-interval", "1"])
    a = pctest.sse_open(gw2, ch)
    b = pctest.sse_open(gw2, ch)
    m0 = gw2.metrics().get("pipecast_sse_rejected_total", 0.0)
    c = pctest.SSEClient(gw2.port, ev, timeout=5)
    c.read_head()
    check_eq(c.status, 503, "third stream with --max-clients 2")
    check(c.headers.get("retry-after", "").strip().isdigit(),
          "503 without a numeric Retry-After header: %r" % c.headers)
    check("application/json" in c.headers.get("content-type", ""), "503 Content-Type")
    check("error" in c.json_body(), "503 body %r" % c.body)
    check(gw2.metrics().get("pipecast_sse_rejected_total", 0.0) >= m0 + 1,
          "pipecast_sse_rejected_total did not move")
    # other endpoints still work while the streams are full
    check_eq(gw2.healthz().status, 200, "healthz while the streams are full")
    check_eq(a.next_event(5).data, "x", "first stream still works")
    # a slot frees up when a client leaves
    a.close()

    def third_ok():
        t = pctest.SSEClient(gw2.port, ev, timeout=5)
        t.read_head()
        if t.status == 200:
            return t
        t.close()
        return None

    t = pctest.wait_for(third_ok, 10 * pctest.SLOW, "a free stream slot after a client left",
                        interval=0.3)
    check_eq(t.next_event(5).data, "x", "stream in the freed slot")
    t.close()
    b.close()
    gw2.check_alive()
    gw2.stop()


pctest.main(main)
