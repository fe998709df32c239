#!/usr/bin/env python3
"""REST: POST publish (counts, last_id, ?event=, CRLF, binary bytes, long lines), GET
/api/channels (pagination with limit=1 walks all), GET/DELETE one channel (404 after delete)."""

import json
import time

import pctest
from pctest import check, check_eq, check_json_error


def post(gw, ch, body, query=""):
    return gw.request("POST", "/api/channels/%s%s" % (ch, ("?" + query) if query else ""),
                      body=body, headers={"Content-Type": "text/plain"})


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port)
    base = pctest.uniq("rest")
    chans = [base + ":a", base + ":b", base + ":c"]
    keys = ["pc:ch:" + c for c in chans]
    pctest.on_exit(lambda: r.delete(*keys))

    # publish: one entry per line, CRLF stripped, final line without \n counts
    res = post(gw, chans[0], b"a\nb\r\nc")
    check_eq(res.status, 200, "POST status (%r)" % res)
    check("application/json" in res.header("content-type", ""), "POST Content-Type")
    j = res.json()
    ents = r.xrange(keys[0])
    check_eq(j, {"published": 3, "last_id": ents[-1][0]}, "POST response")
    check_eq([f[b"data"] for _, f in ents], [b"a", b"b", b"c"], "published entries")
    check(all(b"event" not in f for _, f in ents), "entries without ?event= have no event")

    # ?event=
    res = post(gw, chans[0], b"built foo.o\n", "event=build")
    check_eq(res.status, 200, "POST ?event=build (%r)" % res)
    e = r.xrange(keys[0])[-1]
    check_eq((e[0], e[1].get(b"event"), e[1].get(b"data")),
             (res.json()["last_id"], b"build", b"built foo.o"), "entry published with ?event=")
    check_json_error(post(gw, chans[0], b"x\n", "event=bad%20name"), 400, "?event=bad name")

    # empty body: nothing published, last_id null
    res = post(gw, chans[1], b"")
    check_eq((res.status, res.json()), (200, {"published": 0, "last_id": None}), "empty POST")

    # bytes kept exactly: NUL, invalid UTF-8, empty line
    res = post(gw, chans[1], b"n\x00ul\n\xff\xfebad\n\nend\n")
    check_eq(res.json().get("published"), 4, "binary POST count")
    check_eq([f[b"data"] for _, f in r.xrange(keys[1])], [b"n\x00ul", b"\xff\xfebad", b"", b"end"],
             "binary POST entries")

    # a 200 KB line: split into partial chunks like pipe does
    line = b"L" * 200000
    res = post(gw, chans[2], line + b"\n")
    check_eq(res.status, 200, "200 KB line POST (%r)" % res)
    ents = r.xrange(keys[2])
    check_eq(res.json()["published"], len(ents), "published == entries for a long line")
    check(len(ents) >= 4, "200 KB line: %d entries" % len(ents))
    check_eq(b"".join(f[b"data"] for _, f in ents), line, "long line reassembled")
    check_eq([f.get(b"partial", b"0") for _, f in ents], [b"1"] * (len(ents) - 1) + [b"0"],
             "partial flags")

    # channel info
    res = gw.get("/api/channels/" + chans[0])
    check_eq(res.status, 200, "GET channel (%r)" % res)
    info = res.json()
    ents = r.xrange(keys[0])
    for k in ("name", "length", "first_id", "last_id", "last_activity_ms"):
        check(k in info, "channel info lacks %r: %r" % (k, info))
    check_eq((info["name"], info["length"], info["first_id"], info["last_id"]),
             (chans[0], len(ents), ents[0][0], ents[-1][0]), "channel info")
    now = time.time() * 1000
    check(isinstance(info["last_activity_ms"], int)
          and abs(info["last_activity_ms"] - now) < 60000,
          "last_activity_ms %r not close to now" % info["last_activity_ms"])

    # list: default page, then walk everything with limit=1 (match restricts to this test)
    res = gw.get("/api/channels")
    check_eq(res.status, 200, "GET /api/channels (%r)" % res)
    j = res.json()
    check(isinstance(j.get("channels"), list) and "next_cursor" in j, "list shape %r" % j)
    names, objs, cursor, pages = [], {}, None, 0
    while True:
        q = "limit=1&match=%s:*" % base
        if cursor is not None:
            q += "&cursor=" + cursor
        res = gw.get("/api/channels?" + q)
        check_eq(res.status, 200, "GET /api/channels?%s (%r)" % (q, res))
        j = res.json()
        check(len(j["channels"]) <= 1, "limit=1 returned %d channels" % len(j["channels"]))
        for o in j["channels"]:
            names.append(o["name"])
            objs[o["name"]] = o
        pages += 1
        cursor = j["next_cursor"]
        if cursor is None:
            break
        check(isinstance(cursor, str), "next_cursor %r" % cursor)
        check(pages < 5000, "pagination does not end")
    check_eq(sorted(set(names)), sorted(chans), "channels found by walking limit=1 pages")
    for c, k in zip(chans, keys):
        check_eq(objs[c]["length"], r.xlen(k), "length of %s in the list" % c)
    # a match that finds nothing
    j = gw.get("/api/channels?match=%s:zzz*" % base).json()
    check_eq(j["channels"], [], "match with no hits")
    for q in ["limit=0", "limit=1001", "limit=abc", "limit=-1"]:
        check_json_error(gw.get("/api/channels?" + q), 400, "GET /api/channels?" + q)

    # absent channel -> 404 naming it
    absent = base + ":absent"
    j = check_json_error(gw.get("/api/channels/" + absent), 404, "GET absent channel")
    check(absent in j["error"] and "not found" in j["error"], "404 message %r" % j["error"])

    # delete -> gone
    res = gw.request("DELETE", "/api/channels/" + chans[1])
    check_eq((res.status, res.json()), (200, {"deleted": True}), "DELETE channel")
    check_eq(r.execute("EXISTS", keys[1]), 0, "stream key after DELETE")
    check_json_error(gw.get("/api/channels/" + chans[1]), 404, "GET after DELETE")
    check_json_error(gw.request("DELETE", "/api/channels/" + chans[1]), 404, "DELETE again")
    check_json_error(gw.request("DELETE", "/api/channels/" + absent), 404, "DELETE absent")

    # a POSTed entry reaches an SSE subscriber
    c = pctest.sse_open(gw, chans[2], "from=end")
    c.expect_quiet(0.3)
    res = post(gw, chans[2], b"to the browser\n", "event=note")
    e = c.next_event(5)
    check_eq((e.id, e.event, e.data), (res.json()["last_id"], "note", "to the browser"),
             "POST -> SSE")
    c.close()

    gw.check_alive()
    gw.stop()


pctest.main(main)
