#!/usr/bin/env python3
"""?partial=mark on GET /api/channels/<ch>/events and GET /api/events (docs/interfaces.md).

With the option an entry whose `partial` field is "1" is sent as event "<event>.partial"
("message.partial" without an event name); without it nothing changes, byte for byte. Checked
on the exact bytes: replay from Redis pages and from the ring (--ring 4: the newest entries are
in the ring, the older ones are read from Redis), live entries, resume, the event= filter
(matches the base name), the multi-channel endpoint (one channel and several), 400 for any other
value. Then `pipecast jobs submit --follow` (which asks for partial=mark) against a real runner:
a partial chunk is printed without its newline, per stream."""

import os
import urllib.parse

import pctest
from pctest import check, check_eq

RETRY = b"retry: 2000\n\n"

# (event, data, partial field or None). The last four end up in the ring; the others are replayed
# from Redis pages. Partial is only "1"; "0" and "yes" are not partial.
BEFORE = [
    (None, "a1", None),
    (None, "p1", "1"),
    ("stdout", "Down", "1"),
    ("stdout", "load", "1"),
    ("stdout", "ed", None),
    ("stderr", "e1", "1"),
    ("stderr", "e2", "0"),
    ("stdout", "x", "yes"),
    ("progress", "{}", None),
    (None, "multi\nline", "1"),
]
AFTER = [
    ("stdout", "live1", "1"),
    (None, "live2", None),
    ("stderr", "live3", "1"),
    ("stdout", "live4", None),
    ("stdout", "ring1", None),
    (None, "ring2\r\nx", "1"),  # a multi-line partial entry in the ring
    ("stdout", "ring3", "1"),
    ("stderr", "ring4", None),
]


def publish(r, key, spec):
    ev, data, partial = spec
    f = []
    if ev:
        f.append(("event", ev))
    f.append(("data", data))
    if partial is not None:
        f.append(("partial", partial))
    return r.xadd(key, f)


def shown_name(spec, mark):
    """The event name a client sees (None: no event: line)."""
    ev, _, partial = spec
    if mark and partial == "1":
        return (ev or "message") + ".partial"
    return ev


def encode(eid, spec, mark):
    """The exact SSE bytes of one entry (the data here is ASCII)."""
    name = shown_name(spec, mark)
    out = "id: %s\n" % eid
    if name:
        out += "event: %s\n" % name
    for line in spec[1].replace("\r\n", "\n").split("\n"):
        out += "data: %s\n" % line if line else "data:\n"
    return (out + "\n").encode()


def base_name(spec):
    return spec[0] or "message"


class RawSSE(pctest.SSEClient):
    """An SSEClient that also keeps every body byte."""

    def __init__(self, *a, **kw):
        self.raw = b""
        super().__init__(*a, **kw)

    def _decode(self, data):
        body = super()._decode(data)
        self.raw += body
        return body


def open_raw(gw, path, headers=None):
    c = RawSSE(gw.port, path, headers=headers, timeout=10.0)
    c.read_head()
    check(c.status == 200, "GET %s: expected 200, got %d %s" % (path, c.status, c.body))
    return c


def read_raw(c, n, what):
    """Read @n events; return the body bytes without the ping comments."""
    c.read_events(n, 10)
    return c.raw.replace(b": ping\n\n", b"")


def check_single(gw, chan, entries, query, mark, filt=None, what=""):
    """Replay from the start: the exact bytes of the entries that pass @filt."""
    want = [(i, s) for i, s in entries if filt is None or base_name(s) in filt]
    c = open_raw(gw, "/api/channels/%s/events%s" % (chan, "?" + query if query else ""))
    got = read_raw(c, len(want), what)
    exp = RETRY + b"".join(encode(i, s, mark) for i, s in want)
    check_eq(got, exp, "%s (?%s): the stream's bytes" % (what, query))
    c.expect_quiet(0.3)
    check_eq(c.raw.replace(b": ping\n\n", b""), exp, "%s (?%s): nothing more" % (what, query))
    c.close()


def multi_path(chans, query=""):
    q = "&".join("channel=" + urllib.parse.quote(c, safe="") for c in chans)
    return "/api/events?" + q + ("&" + query if query else "")


def test_sse(gw, r, chan, key, chan2, key2):
    entries = [(publish(r, key, s), s) for s in BEFORE]
    # a subscriber from the end holds the channel: from now on the hub's ring follows it
    hold = open_raw(gw, "/api/channels/%s/events?from=end&partial=mark" % chan)
    hold_plain = open_raw(gw, "/api/channels/%s/events?from=end" % chan)
    hold.expect_quiet(0.3)
    # live: each entry reaches the holders as it is published
    live = []
    for s in AFTER:
        eid = publish(r, key, s)
        live.append((eid, s))
        for c, mark in ((hold, True), (hold_plain, False)):
            e = c.next_event(5)
            check_eq((e.id, e.event, e.data), (eid, shown_name(s, mark),
                                               s[1].replace("\r\n", "\n")),
                     "live entry %r, mark=%s" % (s, mark))
    check_eq(hold.raw, RETRY + b"".join(encode(i, s, True) for i, s in live),
             "live bytes with partial=mark")
    check_eq(hold_plain.raw, RETRY + b"".join(encode(i, s, False) for i, s in live),
             "live bytes without the option")
    entries += live
    pctest.log("live: ok")

    # replay: Redis pages up to the ring's base, then the ring (4 entries)
    check_single(gw, chan, entries, "", False, what="replay")
    check_single(gw, chan, entries, "partial=mark", True, what="replay marked")
    check_single(gw, chan, entries, "from=start&partial=mark", True, what="replay marked")
    check_single(gw, chan, entries, "event=stdout&partial=mark", True, {"stdout"},
                 "filter stdout marked")
    check_single(gw, chan, entries, "partial=mark&event=message&event=stderr", True,
                 {"message", "stderr"}, "filter message+stderr marked")
    check_single(gw, chan, entries, "event=stdout", False, {"stdout"}, "filter stdout")
    # tail=6: only ring entries and a few from Redis
    check_single(gw, chan, entries[-6:], "tail=6&partial=mark", True, what="tail marked")
    # resume after an entry in the middle (header and query)
    mid = entries[6][0]
    check_single(gw, chan, entries[7:], "lastEventId=%s&partial=mark" % mid, True,
                 what="resume marked")
    c = open_raw(gw, "/api/channels/%s/events?partial=mark" % chan, {"Last-Event-ID": mid})
    check_eq(read_raw(c, len(entries) - 7, "resume"),
             RETRY + b"".join(encode(i, s, True) for i, s in entries[7:]), "resume by header")
    c.close()
    pctest.log("replay, filters, resume: ok")

    # /api/events with one channel: ids "0:<id>", names as on the single-channel endpoint
    for mark in (False, True):
        c = open_raw(gw, multi_path([chan], "partial=mark" if mark else ""))
        evs = c.read_events(len(entries), 10)
        check_eq([(e.id, e.event, e.data) for e in evs],
                 [("0:" + i, shown_name(s, mark), s[1].replace("\r\n", "\n"))
                  for i, s in entries], "/api/events, one channel, mark=%s" % mark)
        c.close()

    # /api/events with two channels: merged replay (pages and ring), then live
    ents2 = [(publish(r, key2, s), s) for s in [("stdout", "two-a", "1"), (None, "two-b", "1"),
                                                 ("stdout", "two-c", None)]]
    for mark in (False, True):
        for query in (["partial=mark"] if mark else [""]) + (
                ["event=stdout&partial=mark"] if mark else ["event=stdout"]):
            filt = {"stdout"} if "event=" in query else None
            want = sorted([(i, 0, s) for i, s in entries] + [(i, 1, s) for i, s in ents2],
                          key=lambda t: (pctest.id_key(t[0]), t[1]))
            want = [(k, shown_name(s, mark), s[1].replace("\r\n", "\n")) for i, k, s in want
                    if filt is None or base_name(s) in filt]
            c = open_raw(gw, multi_path([chan, chan2], query))
            evs = c.read_events(len(want), 10)
            check_eq([(int(e.id.partition(":")[0]), e.event, e.data) for e in evs], want,
                     "/api/events, two channels, ?%s" % query)
            if not filt:
                # live on both channels
                spec = ("stderr", "merged-live", "1")
                publish(r, key2, spec)
                e = c.next_event(5)
                check_eq((e.id.partition(":")[0], e.event, e.data),
                         ("1", shown_name(spec, mark), "merged-live"), "merged live, ?" + query)
                ents2.append((e.id.split(",")[-1], spec))
            c.close()
    pctest.log("/api/events: ok")

    # any other value: 400 JSON before any SSE byte, on both endpoints
    for bad in ("yes", "", "MARK", "1", "mark%00", "mark&partial=no", "marks"):
        for path in ("/api/channels/%s/events?partial=%s" % (chan, bad),
                     multi_path([chan, chan2], "partial=" + bad)):
            resp = gw.get(path)
            pctest.check_json_error(resp, 400, "GET " + path)
            check(b"partial" in resp.body, "GET %s: the error should name the parameter: %r"
                  % (path, resp.body))
    hold.close()
    hold_plain.close()
    gw.check_alive("after the partial=mark checks")


def test_jobs_follow():
    templates = {
        "dl": {"argv": ["sh", "-c", "printf 'Downloading...'; sleep 1; echo done"],
               "shell": True},
        "both": {"argv": ["sh", "-c", "printf 'Down'; printf 'err-' >&2; sleep 1; "
                          "echo 'load'; echo 'x' >&2"], "shell": True},
    }
    s = pctest.JobSetup(templates)
    env = {"PIPECAST_GATEWAY": "http://127.0.0.1:%d" % s.gw.port}

    def follow(name):
        p = pctest.pipecast(["jobs", "submit", name, "--follow"], env=env, timeout=30)
        check_eq(p.returncode, 0, "jobs submit %s --follow: exit status (stderr %r)"
                 % (name, p.stderr))
        return p

    p = follow("dl")
    check_eq(p.stdout, b"Downloading...done\n", "jobs submit dl --follow: stdout")
    # Each stream goes on with its own line, whatever comes in between on the other one.
    p = follow("both")
    check_eq(p.stdout, b"Download\n", "jobs submit both --follow: stdout")
    check(b"err-x\n" in p.stderr, "jobs submit both --follow: stderr should hold the job's "
          "line err-x: %r" % p.stderr)
    s.gw.check_alive("after jobs --follow")


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    chan, chan2 = pctest.uniq("partial"), pctest.uniq("partial2")
    key, key2 = "pc:ch:" + chan, "pc:ch:" + chan2
    pctest.on_exit(lambda: r.delete(key, key2))
    gw = pctest.Gateway(port, ["--ring", "4"])
    test_sse(gw, r, chan, key, chan2, key2)
    gw.stop()

    have_runner = os.environ.get("PC_RUNNER") and os.path.exists(os.environ["PC_RUNNER"])
    if have_runner:
        test_jobs_follow()
        pctest.log("jobs --follow: ok")
    else:
        pctest.log("no pipecast-runner built: jobs --follow check skipped")


if __name__ == "__main__":
    pctest.main(main)
