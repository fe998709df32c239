#!/usr/bin/env python3
"""clients/: the Python, Node and shell clients against a real gateway and Redis.

1. SSE parsing (WHATWG): the Python and Node parsers on a crafted stream, fed whole and byte
   by byte (BOM, CR/LF/CRLF, comments, retry, NUL in id, fields without colon, split UTF-8).
2. Reconnect semantics against a scripted server: retry: honored, Last-Event-ID is the last
   *dispatched* id, 5xx retried after Retry-After, chunked bodies, gap events, 204 stops.
3. Python publish_redis -> Python / Node subscribe: exact entries (multi-line data, invalid
   UTF-8 shown as U+FFFD, NUL, 100 KB line), filters, tail, Last-Event-ID, gap; publish_http
   and Node publish; client-side channel validation; errors reported, not swallowed.
4. pipecast-publish.sh: XLEN and the exact bytes; errors give exit 1/2.
5. Resume: Python, Node and pipecast-follow.sh subscribed at once; the gateway is stopped
   mid-stream, entries are published meanwhile, a gateway is started on another port (the
   Python and Node clients were given both URLs) and one on the first port again (the shell
   follower); every client ends with every id exactly once, in order.
"""

import base64
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pctest
from pctest import SLOW, check, check_eq, log

SRC = os.path.abspath(os.environ.get("PC_SRC")
                      or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "clients", "python"))
import pipecast as pc  # noqa: E402

NODE = shutil.which("node")
NODE_CLIENT = os.path.join(SRC, "clients", "node", "pipecast.mjs")
SH_PUBLISH = os.path.join(SRC, "clients", "sh", "pipecast-publish.sh")
SH_FOLLOW = os.path.join(SRC, "clients", "sh", "pipecast-follow.sh")
PY_CLIENT = os.path.join(SRC, "clients", "python", "pipecast.py")


def run(cmd, input=b"", timeout=20):
    try:
        return subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout * SLOW, preexec_fn=pctest.die_with_parent)
    except subprocess.TimeoutExpired as e:
        pctest.fail("%s did not finish within %.0f s (stderr: %r)"
                    % (" ".join(cmd), timeout * SLOW, e.stderr))


def json_lines(out):
    return [json.loads(line) for line in out.decode("utf-8").splitlines() if line]


def as_tuples(evs):
    return [(e["id"], e["event"], e["data"]) if isinstance(e, dict) else tuple(e) for e in evs]


class LineReader:
    """A subprocess whose stdout lines are collected by a thread."""

    def __init__(self, cmd, name):
        self.name = name
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=pctest.die_with_parent)
        self.lines = queue.Queue()
        self.got = []
        self.err = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

        def _kill():
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        pctest.on_exit(_kill)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8").rstrip("\n"))

    def _read_err(self):
        for line in self.proc.stderr:
            self.err += line

    def wait_lines(self, n, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        while len(self.got) < n:
            try:
                self.got.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                pctest.fail("%s: %d of %d lines within %.0f s; stderr: %s"
                            % (self.name, len(self.got), n, timeout * SLOW,
                               self.err.decode("utf-8", "replace")[-2000:]))
        return self.got

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            pctest.fail("%s did not exit within %.0f s" % (self.name, timeout * SLOW))


class PySub:
    """pipecast.subscribe() consumed by a thread."""

    def __init__(self, *a, **kw):
        self.sub = pc.subscribe(*a, **kw)
        self.q = queue.Queue()
        self.got = []
        self.error = None
        threading.Thread(target=self._run, daemon=True).start()
        pctest.on_exit(self.sub.close)

    def _run(self):
        try:
            for ev in self.sub:
                self.q.put(ev)
        except Exception as e:  # reported by wait()
            self.error = e
        self.q.put(None)

    def wait(self, n, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        while len(self.got) < n:
            try:
                ev = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pctest.fail("python subscriber: %d of %d events within %.0f s (last %r)"
                            % (len(self.got), n, timeout * SLOW, self.got[-1:]))
            check(ev is not None, "python subscriber ended after %d of %d events: %r"
                  % (len(self.got), n, self.error))
            self.got.append(ev)
        return self.got

    def quiet(self, seconds):
        try:
            ev = self.q.get(timeout=seconds)
        except queue.Empty:
            return
        pctest.fail("python subscriber: unexpected event %r" % (ev,))


class FixedGateway:
    """pipecast-gateway on a given port (pctest.Gateway picks a new port on each start)."""

    def __init__(self, port, redis_port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="pc-gw-")
        self.logpath = os.path.join(self.dir, "gateway.log")
        self.proc = None
        pctest.on_exit(self._cleanup)
        for attempt in range(20):
            logf = open(self.logpath, "ab")
            self.proc = subprocess.Popen(
                [pctest.binary("pipecast-gateway"), "--listen", "127.0.0.1:%d" % port,
                 "--redis", "redis://127.0.0.1:%d" % redis_port, "--retry-ms", "200"],
                stdout=logf, stderr=logf, preexec_fn=pctest.die_with_parent,
                env={k: v for k, v in os.environ.items() if not k.startswith("PIPECAST_")})
            logf.close()
            deadline = time.monotonic() + 10 * SLOW
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if pctest.http_request(port, "GET", "/healthz", timeout=2).status == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.02)
            if self.proc.poll() is None:
                pctest.fail("gateway on port %d: no /healthz:\n%s" % (port, self.log()))
            time.sleep(0.1)  # the port may still be held: try again
        pctest.fail("gateway did not start on port %d:\n%s" % (port, self.log()))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def stop(self):
        p, self.proc = self.proc, None
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pctest.fail("gateway on port %d ignored SIGTERM" % self.port)
        check_eq(p.returncode, 0, "gateway exit status on SIGTERM (log: %s)" % self.log())

    def _cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def node_sub(url, channel, *args, timeout=10):
    r = run(["node", NODE_CLIENT, "sub", url, channel, "--json", "--timeout", str(timeout * SLOW)]
            + [str(a) for a in args], timeout=timeout + 10)
    check_eq(r.returncode, 0, "node sub %s exit status (stderr %r)" % (channel, r.stderr))
    return as_tuples(json_lines(r.stdout))


# ---------------------------------------------------------------------------------------------
# 1. parsing
# ---------------------------------------------------------------------------------------------

PARSER_INPUT = (
    b"\xef\xbb\xbf"  # one leading BOM is dropped
    b"retry: 1234\r\n"
    b": a comment\r"
    b"retry: 12x\n"  # not all digits: ignored
    b"\n"  # blank line, no data: nothing dispatched
    b"id: 1\r\nevent: first\r\ndata: a\r\ndata:b\r\ndata\r\n\r\n"  # "a\nb\n"
    b"data:  two spaces\n\n"  # one space removed
    b"id: 2\rdata: caf\xc3\xa9 \xef\xbb\xbfkept \xe2\x9c\x93\r\r"  # BOM inside data is kept
    b"event: named\nunknown: x\nid: bad\x00id\ndata: {\"k\": 1}\n\n"  # id with NUL ignored
    b"id\ndata:x:y\n\n"  # "id" without colon: empty id
    b"id: 3\n\n"  # id only: last id 3, no event
    b"data: bad \xff end\n\n"
    b"data: unterminated"  # dropped at end of stream
)
PARSER_EXPECT = [
    ("1", "first", "a\nb\n"),
    (None, "message", " two spaces"),
    ("2", "message", "caf\u00e9 \ufeffkept \u2713"),
    (None, "named", "{\"k\": 1}"),
    ("", "message", "x:y"),
    (None, "message", "bad \ufffd end"),
]


def test_parser():
    for chunking in ("whole", "bytes"):
        p = pc.SSEParser()
        evs = []
        if chunking == "whole":
            evs = p.feed(PARSER_INPUT)
        else:
            for i in range(len(PARSER_INPUT)):
                evs += p.feed(PARSER_INPUT[i:i + 1])
        check_eq(as_tuples(evs), PARSER_EXPECT, "python parser events (%s)" % chunking)
        check_eq(p.retry, 1234, "python parser retry (%s)" % chunking)
        check_eq(p.last_event_id, "3", "python parser last event id (%s)" % chunking)
        check_eq(p.comments, 1, "python parser comments (%s)" % chunking)
    if not NODE:
        return
    script = """
import { SSEParser } from %s;
const input = Buffer.from(%s, 'base64');
const out = {};
for (const mode of ['whole', 'bytes']) {
  const p = new SSEParser();
  let evs = [];
  if (mode === 'whole') evs = p.feed(input);
  else for (let i = 0; i < input.length; i++) evs.push(...p.feed(input.subarray(i, i + 1)));
  out[mode] = { evs, retry: p.retry, last: p.lastEventId, comments: p.comments };
}
console.log(JSON.stringify(out));
""" % (json.dumps("file://" + NODE_CLIENT), json.dumps(base64.b64encode(PARSER_INPUT).decode()))
    r = run(["node", "--input-type=module", "-e", script])
    check_eq(r.returncode, 0, "node parser script (stderr %r)" % r.stderr)
    res = json.loads(r.stdout)
    for mode in ("whole", "bytes"):
        check_eq(as_tuples(res[mode]["evs"]), PARSER_EXPECT, "node parser events (%s)" % mode)
        check_eq((res[mode]["retry"], res[mode]["last"], res[mode]["comments"]), (1234, "3", 1),
                 "node parser retry / last id / comments (%s)" % mode)


# ---------------------------------------------------------------------------------------------
# 2. reconnect semantics against a scripted server
# ---------------------------------------------------------------------------------------------

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
SCRIPT = [
    # 1: plain body, pieces split inside the BOM, a CRLF and a UTF-8 sequence; ends mid-event
    (SSE_HEAD + b"\r\n", [b"\xef\xbb", b"\xbfretry: 300\r", b"\n\r\n: hi\n",
                          b"id: 1\nevent: a\ndata: x\r", b"\ndata:y\r\n\r\n",
                          b"id: 2\rdata: caf\xc3", b"\xa9\r\r", b"id: 3\ndata: lost"]),
    # 2: chunked; Last-Event-ID must be "2" (3 was never dispatched); a gap event (no id)
    (SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
     [b"id: 4\ndata: z\n\n", b"event: gap\ndata: {\"requested\":\"2\"}\n\n"]),
    # 3: 503 with Retry-After: retried, not fatal
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
     b"Content-Length: 17\r\nConnection: close\r\n\r\n{\"error\":\"busy\"}\n", []),
    # 4: 204: the client stops
    (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", []),
]
SCRIPT_EXPECT = [("1", "a", "x\ny"), ("2", "message", "caf\u00e9"), ("4", "message", "z"),
                 (None, "gap", "{\"requested\":\"2\"}")]


class ScriptedServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # (accepted at, request head, closed at)
        threading.Thread(target=self._serve, daemon=True).start()
        pctest.on_exit(self.sock.close)

    def _serve(self):
        n = 0
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            t0 = time.monotonic()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(4096)
                if not d:
                    break
                head += d
            status, pieces = SCRIPT[n % len(SCRIPT)]
            n += 1
            c.sendall(status)
            chunked = b"chunked" in status
            for p in pieces:
                time.sleep(0.02)
                c.sendall(b"%x\r\n%s\r\n" % (len(p), p) if chunked else p)
            if chunked:
                c.sendall(b"0\r\n\r\n")
            time.sleep(0.02)
            c.close()
            self.conns.append((t0, head.decode("iso-8859-1"), time.monotonic()))

    def check_client(self, name, first):
        pctest.wait_for(lambda: len(self.conns) >= first + 4, 5 * SLOW,
                        "%s: 4 connections to the scripted server" % name)
        conns = self.conns[first:first + 4]

        def last_id(head):
            for line in head.split("\r\n"):
                k, _, v = line.partition(":")
                if k.lower() == "last-event-id":
                    return v.strip()
            return None
        check_eq([last_id(h) for _, h, _ in conns], [None, "2", "4", "4"],
                 "%s: Last-Event-ID header on each connection" % name)
        wait1 = conns[1][0] - conns[0][2]
        check(0.25 < wait1 < 1.8, "%s: reconnected %.2f s after the stream ended; the server "
              "said retry: 300 (ms)" % (name, wait1))
        wait3 = conns[3][0] - conns[2][2]
        check(wait3 > 0.9, "%s: retried %.2f s after a 503 with Retry-After: 1" % (name, wait3))
        check(conns[0][1].startswith("GET /api/channels/scripted:ch/events?event=a&event=message ")
              , "%s: request line %r" % (name, conns[0][1].split("\r\n")[0]))


def test_scripted():
    srv = ScriptedServer()
    url = "http://127.0.0.1:%d" % srv.port
    sub = pc.subscribe(url, "scripted:ch", events=["a", "message"])
    evs = list(sub)  # ends with the 204
    check_eq(as_tuples(evs), SCRIPT_EXPECT, "python: events from the scripted server")
    check_eq(sub.reconnects, 3, "python: reconnects")
    check_eq(sub.retry_ms, 300, "python: retry from the stream")
    srv.check_client("python", 0)
    if NODE:
        got = node_sub(url, "scripted:ch", "--event", "a", "--event", "message")
        check_eq(got, SCRIPT_EXPECT, "node: events from the scripted server")
        srv.check_client("node", 4)


# ---------------------------------------------------------------------------------------------
# 3. publish and subscribe through the real gateway
# ---------------------------------------------------------------------------------------------

ENTRIES = [  # (event, data bytes, what SSE delivers)
    (None, b"plain line", "plain line"),
    (None, b" leading space", " leading space"),
    (None, b"key: value", "key: value"),
    (None, b"multi\nline\ndata", "multi\nline\ndata"),
    (None, b"", ""),
    (None, b"ends with newline\n", "ends with newline\n"),
    (None, b"crlf\r\ninside and lone\rcr", "crlf\ninside and lone\ncr"),
    ("stderr", "h\u00e9llo \u2713 \u65e5\u672c".encode(), "h\u00e9llo \u2713 \u65e5\u672c"),
    ("stderr", b"bad \xff\xfe end \xe2\x82", "bad \ufffd\ufffd end \ufffd"),
    ("stderr", b"nul\x00byte", "nul\x00byte"),
    ("stderr", b"x" * 100000, "x" * 100000),
    ("stderr", b"last", "last"),
]


def test_gateway(redis_port, gw):
    r = pctest.Redis(redis_port)
    ch = pctest.uniq("clients")
    key = "pc:ch:" + ch
    ids = pc.publish_redis("127.0.0.1", redis_port, ch, [e[1] for e in ENTRIES if not e[0]])
    ids += pc.publish_redis("127.0.0.1", redis_port, ch, [e[1] for e in ENTRIES if e[0]],
                            event="stderr", maxlen=0)
    check_eq(len(ids), len(ENTRIES), "publish_redis: ids returned")
    stored = r.xrange_all(key)
    check_eq([i for i, _ in stored], ids, "publish_redis: ids in Redis")
    check_eq([f.get(b"data") for _, f in stored], [e[1] for e in ENTRIES],
             "publish_redis: exact bytes in Redis")
    check_eq([f.get(b"event") for _, f in stored],
             [e[0].encode() if e[0] else None for e in ENTRIES], "publish_redis: event fields")

    want = [(i, e[0] or "message", e[2]) for i, e in zip(ids, ENTRIES)]
    with pc.subscribe(gw.url, ch) as sub:
        got = [next(sub) for _ in ENTRIES]
    check_eq(as_tuples(got), want, "python subscribe: events")
    with pc.subscribe(gw.url, ch, last_event_id=ids[3], events="stderr") as sub:
        got = [next(sub) for _ in range(5)]
    check_eq(as_tuples(got), want[7:], "python subscribe: Last-Event-ID + event filter")
    with pc.subscribe(gw.url, ch, tail=2) as sub:
        got = [next(sub) for _ in range(2)]
    check_eq(as_tuples(got), want[-2:], "python subscribe: tail=2")

    res = pc.publish_http(gw.url, ch, "h1\nh2\r\nh3", event="http")
    check_eq(res.get("published"), 3, "publish_http: published")
    stored = r.xrange_all(key)
    check_eq(res.get("last_id"), stored[-1][0], "publish_http: last_id")
    check_eq([(f[b"event"], f[b"data"]) for _, f in stored[-3:]],
             [(b"http", b"h1"), (b"http", b"h2"), (b"http", b"h3")], "publish_http: entries")
    want += [(i, "http", f[b"data"].decode()) for i, f in stored[-3:]]

    if NODE:
        check_eq(node_sub(gw.url, ch, "--count", len(want)), want, "node subscribe: events")
        check_eq(node_sub(gw.url, ch, "--count", 2, "--last-event-id", ids[-1]), want[-3:-1],
                 "node subscribe: --last-event-id")
        p = run(["node", NODE_CLIENT, "pub", gw.url, ch, "--event", "node"],
                input=b"n1\nn\xc3\xa92\n")
        check_eq(p.returncode, 0, "node pub exit status (stderr %r)" % p.stderr)
        res = json.loads(p.stdout)
        stored = r.xrange_all(key)
        check_eq(res, {"published": 2, "last_id": stored[-1][0]}, "node pub: answer")
        check_eq([(f[b"event"], f[b"data"]) for _, f in stored[-2:]],
                 [(b"node", b"n1"), (b"node", "n\u00e92".encode())], "node pub: entries")
        p = run(["node", NODE_CLIENT, "sub", gw.url, "bad/name"])
        check_eq(p.returncode, 2, "node sub with a bad channel: exit status")
        check(b"invalid name" in p.stderr, "node sub bad channel: stderr %r" % p.stderr)
        p = run(["node", NODE_CLIENT, "sub", gw.url, ch, "--last-event-id", "nope"])
        check_eq(p.returncode, 1, "node sub with an id the gateway refuses: exit status")
        check(b"invalid stream id" in p.stderr, "node sub 400: stderr %r" % p.stderr)

    # the Python CLI, both directions
    p = run([sys.executable, PY_CLIENT, "pub", "redis://127.0.0.1:%d" % redis_port, ch,
             "--event", "cli"], input=b"c1\r\nc2")
    check_eq(p.returncode, 0, "python pub redis:// exit status (stderr %r)" % p.stderr)
    stored = r.xrange_all(key)
    check_eq([(f[b"event"], f[b"data"]) for _, f in stored[-2:]],
             [(b"cli", b"c1"), (b"cli", b"c2")], "python pub: entries")
    p = run([sys.executable, PY_CLIENT, "sub", gw.url, ch, "--json", "--tail", "2",
             "--count", "2", "--timeout", str(10 * SLOW)])
    check_eq(p.returncode, 0, "python sub CLI exit status (stderr %r)" % p.stderr)
    check_eq(as_tuples(json_lines(p.stdout)), [(i, "cli", d) for (i, _), d
                                               in zip(stored[-2:], ["c1", "c2"])],
             "python sub CLI: events")

    # validation and errors
    for bad in ["", "a b", "a/b", "x" * 201, "caf\u00e9", "nl\n"]:
        try:
            pc.publish_redis("127.0.0.1", redis_port, bad, ["x"])
            pctest.fail("publish_redis accepted channel %r" % bad)
        except ValueError:
            pass
        try:
            pc.subscribe(gw.url, bad)
            pctest.fail("subscribe accepted channel %r" % bad)
        except ValueError:
            pass
    pc.validate_channel("sess:123:stdout@host-1.a_b")
    pc.validate_channel("x" * 200)
    try:
        next(iter(pc.subscribe(gw.url, ch, last_event_id="nope")))
        pctest.fail("subscribe with an invalid id did not fail")
    except pc.SubscribeError as e:
        check_eq(e.status, 400, "subscribe with an invalid id: status")
    wrong = pctest.uniq("clients-wrongtype")
    r.execute("SET", "pc:ch:" + wrong, "not a stream")
    try:
        pc.publish_redis("127.0.0.1", redis_port, wrong, ["a", "b"])
        pctest.fail("publish_redis to a non-stream key did not fail")
    except pc.PublishError as e:
        check("WRONGTYPE" in str(e) and e.ids == [], "publish_redis WRONGTYPE: %s %r"
              % (e, e.ids))
    try:
        pc.publish_redis("127.0.0.1", pctest.free_port(), ch, ["a"])
        pctest.fail("publish_redis to a closed port did not fail")
    except pc.PublishError:
        pass
    try:
        pc.publish_http(gw.url, ch, "x", event="bad event!")
        pctest.fail("publish_http accepted a bad event name")
    except ValueError:
        pass
    r.delete("pc:ch:" + wrong)

    # gap: the requested id was trimmed away
    gch = pctest.uniq("clients-gap")
    gids = pc.publish_redis("127.0.0.1", redis_port, gch, ["g%d" % i for i in range(10)])
    r.execute("XTRIM", "pc:ch:" + gch, "MAXLEN", "3")
    gwant = [(None, "gap", {"requested": gids[1], "first_available": gids[7]})] + \
        [(gids[i], "message", "g%d" % i) for i in range(7, 10)]
    with pc.subscribe(gw.url, gch, last_event_id=gids[1]) as sub:
        got = [next(sub) for _ in range(4)]
    got = as_tuples(got)
    check_eq([got[0][:2] + (json.loads(got[0][2]),)] + got[1:], gwant, "python: gap then replay")
    if NODE:
        got = node_sub(gw.url, gch, "--count", 4, "--last-event-id", gids[1])
        check_eq([got[0][:2] + (json.loads(got[0][2]),)] + got[1:], gwant, "node: gap then replay")
    r.delete(key, "pc:ch:" + gch)
    r.close()


# ---------------------------------------------------------------------------------------------
# 4. pipecast-publish.sh
# ---------------------------------------------------------------------------------------------


def test_sh_publish(redis_port):
    r = pctest.Redis(redis_port)
    ch = pctest.uniq("clients-sh")
    key = "pc:ch:" + ch
    lines = [b"one", b"two words", b"-n", b"--help", b"*", b"'quoted' \"double\" \\n $HOME `x`",
             b"", b"  spaces  ", b"bad \xff utf8", "\u00e9\u2713".encode(), b"tab\tx",
             b"cr\rinside", b"with crlf\r", b"x" * 70000, b"no final newline"]
    stdin = b"\n".join(lines)
    want = [l[:-1] if l.endswith(b"\r") else l for l in lines]
    url = "redis://127.0.0.1:%d" % redis_port
    p = run(["sh", SH_PUBLISH, "--redis", url, "--event", "sh", ch], input=stdin)
    check_eq(p.returncode, 0, "pipecast-publish.sh exit status (stderr %r)" % p.stderr)
    check_eq(r.xlen(key), len(lines), "pipecast-publish.sh: XLEN")
    stored = r.xrange_all(key)
    check_eq([f.get(b"data") for _, f in stored], want, "pipecast-publish.sh: exact bytes")
    check(all(f.get(b"event") == b"sh" for _, f in stored), "pipecast-publish.sh: event field")
    p = run(["sh", SH_PUBLISH, "--redis", url, "-q", ch], input=b"a\nb\n")
    check_eq((p.returncode, p.stderr), (0, b""), "pipecast-publish.sh -q")
    check_eq(r.xlen(key), len(lines) + 2, "pipecast-publish.sh: XLEN after a second run")
    p = run(["sh", SH_PUBLISH, "--redis", url, "a b"], input=b"x\n")
    check_eq(p.returncode, 2, "pipecast-publish.sh bad channel: exit status")
    check(b"invalid name" in p.stderr, "pipecast-publish.sh bad channel: %r" % p.stderr)
    r.execute("SET", "pc:ch:" + ch + "-str", "x")
    p = run(["sh", SH_PUBLISH, "--redis", url, ch + "-str"], input=b"x\ny\n")
    check_eq(p.returncode, 1, "pipecast-publish.sh to a non-stream key: exit status")
    check(b"2 of 2 lines not published" in p.stderr, "pipecast-publish.sh error: %r" % p.stderr)
    p = run(["sh", SH_PUBLISH, "--redis", "redis://127.0.0.1:%d" % pctest.free_port(), ch],
            input=b"x\n")
    check_eq(p.returncode, 1, "pipecast-publish.sh, Redis unreachable: exit status")
    r.delete(key, "pc:ch:" + ch + "-str")
    r.close()


# ---------------------------------------------------------------------------------------------
# 5. resume across gateway restarts
# ---------------------------------------------------------------------------------------------


def test_resume(redis_port):
    r = pctest.Redis(redis_port)
    ch = pctest.uniq("clients-resume")
    p1, p2 = pctest.free_port(), pctest.free_port()
    url1, url2 = "http://127.0.0.1:%d" % p1, "http://127.0.0.1:%d" % p2
    total = 13
    gw_a = FixedGateway(p1, redis_port)

    py = PySub([url1, url2], ch)
    node = None
    if NODE:
        node = LineReader(["node", NODE_CLIENT, "sub", url1 + "," + url2, ch, "--json",
                           "--count", str(total), "--timeout", str(30 * SLOW)], "node sub")
    sh = LineReader(["sh", SH_FOLLOW, "--events", "--count", str(total), url1, ch],
                    "pipecast-follow.sh")

    pc.publish_redis("127.0.0.1", redis_port, ch, ["a%d" % i for i in range(5)])
    py.wait(5)
    if node:
        node.wait_lines(5)
    sh.wait_lines(5)

    gw_a.stop()
    pc.publish_redis("127.0.0.1", redis_port, ch, ["b%d" % i for i in range(5)])
    py.quiet(0.4)  # no gateway: nothing, while the clients retry against closed ports
    gw_b = FixedGateway(p2, redis_port)  # another port: the clients given both URLs find it
    py.wait(10)
    check_eq(py.sub.url, url2, "python subscriber: gateway in use after the restart")
    check(py.sub.reconnects >= 1, "python subscriber: reconnects %d" % py.sub.reconnects)
    if node:
        node.wait_lines(10)
    gw_c = FixedGateway(p1, redis_port)  # the first port again, for the shell follower
    sh.wait_lines(10)

    res = pc.publish_http(gw_b.url, ch, "c0\nc1\nc2\n")
    check_eq(res.get("published"), 3, "publish_http during the resume test")
    py.wait(total)
    ids = [i for i, _ in r.xrange_all("pc:ch:" + ch)]
    check_eq(len(ids), total, "entries in the channel")
    datas = ["a%d" % i for i in range(5)] + ["b%d" % i for i in range(5)] + \
        ["c%d" % i for i in range(3)]
    check_eq([(e.id, e.data) for e in py.got], list(zip(ids, datas)),
             "python subscriber: every entry exactly once across the restart")
    py.quiet(0.2)
    py.sub.close()
    if node:
        got = [json.loads(line) for line in node.wait_lines(total)]
        check_eq([(e["id"], e["data"]) for e in got], list(zip(ids, datas)),
                 "node subscriber: every entry exactly once across the restart")
        check_eq(node.wait_exit(), 0, "node sub exit status after --count")
    got = sh.wait_lines(total)
    check_eq(got, ["%s - %s" % x for x in zip(ids, datas)],
             "pipecast-follow.sh: every entry exactly once across the restart")
    check_eq(sh.wait_exit(), 0, "pipecast-follow.sh exit status after --count")
    gw_b.stop()
    gw_c.stop()
    r.delete("pc:ch:" + ch)
    r.close()


def main():
    if not NODE:
        log("SKIP node parts: `node` is not installed (the Node client needs Node >= 18)")
    test_parser()
    test_scripted()
    redis_port = pctest.fixture_redis()
    gw = pctest.Gateway(redis_port)
    gw.url = "http://127.0.0.1:%d" % gw.port
    test_gateway(redis_port, gw)
    test_sh_publish(redis_port)
    test_resume(redis_port)
    gw.check_alive("after the client tests")
    gw.stop()


pctest.main(main)
