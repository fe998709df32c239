#!/usr/bin/env python3
"""pipecast -- a dependency-free Python client (stdlib only, Python 3.8+; tested on 3.11).

Publish lines into a pipecast channel and subscribe to it over Server-Sent Events::

    import pipecast
    pipecast.publish_redis("127.0.0.1", 6379, "build-42", ["compiling foo.c", "done"])
    pipecast.publish_http("http://127.0.0.1:8080", "build-42", "one\\ntwo\\n", event="log")
    for ev in pipecast.subscribe("http://127.0.0.1:8080", "build-42", tail=10):
        print(ev.id, ev.event, ev.data)

- ``publish_redis`` speaks RESP over a plain socket: pipelined ``XADD pc:ch:<channel> MAXLEN ~ N *
  [event E] data D``, binary safe, every reply checked (the producer contract of DESIGN.md).
- ``publish_http`` posts text to the gateway (``POST /api/channels/<channel>``).
- ``subscribe`` parses text/event-stream exactly as the WHATWG HTML standard does and, like a
  browser's EventSource, reconnects after a dropped connection with ``Last-Event-ID`` after the
  server's ``retry:`` delay, so the stream continues with every entry exactly once, on the same
  gateway or any other (a list of URLs is tried in turn). ``gap`` events are yielded like any other.

CLI::

    python3 pipecast.py sub URL CHANNEL [--from start|end] [--tail N] [--last-event-id ID]
                                        [--event NAME]... [--count N] [--timeout S] [--json]
    python3 pipecast.py pub URL CHANNEL [--event NAME] [--maxlen N] [--prefix P] < file

``URL`` is a gateway (``http://host:port``; for ``sub`` also a comma-separated list, tried in
turn) or, for ``pub``, ``redis://[user:pass@]host:port[/db]``.
"""

import codecs
import http.client
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
from typing import NamedTuple, Optional

__all__ = ["Event", "PipecastError", "PublishError", "SubscribeError", "Subscription",
           "SSEParser", "publish_redis", "publish_http", "subscribe", "validate_channel"]

_CHANNEL_RE = re.compile(rb"[A-Za-z0-9._:@-]{1,200}\Z")
_EVENT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


class PipecastError(Exception):
    """Any error of this client. ``status`` is the HTTP status when there was one."""

    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.status = status


class PublishError(PipecastError):
    """Publishing stopped; ``ids`` holds the ids of the entries that *were* published."""

    def __init__(self, msg, ids=(), status=None):
        super().__init__(msg, status)
        self.ids = list(ids)


class SubscribeError(PipecastError):
    pass


def validate_channel(channel):
    """Return the channel name as str, or raise ValueError (same rule as the gateway and CLI)."""
    raw = channel.encode("utf-8", "surrogateescape") if isinstance(channel, str) else channel
    if not isinstance(raw, bytes) or not _CHANNEL_RE.match(raw):
        raise ValueError("channel %r: invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)"
                         % (channel,))
    return raw.decode("ascii")


def _validate_event(event):
    if event is None:
        return None
    if not isinstance(event, str) or not _EVENT_RE.match(event):
        raise ValueError("event %r: invalid event name (allowed: 1-64 bytes of A-Z a-z 0-9 _ -)"
                         % (event,))
    return event


def _b(v):
    if isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    raise TypeError("expected str or bytes, got %s" % type(v).__name__)


def _split_text(text):
    """Text -> lines the way `pipecast pipe` splits them: on \\n, one trailing \\r removed, a
    final line without \\n is a line, nothing after a final \\n."""
    raw = _b(text)
    if not raw:
        return []
    parts = raw.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return [p[:-1] if p.endswith(b"\r") else p for p in parts]


# ---------------------------------------------------------------------------------------------
# Redis (RESP2 over a socket)
# ---------------------------------------------------------------------------------------------


class _RedisError(Exception):
    pass


class _Resp:
    """Just enough RESP2 for pipelined commands. Replies: bytes, int, str, list, _RedisError."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb")

    def close(self):
        for c in (self.rf, self.sock):
            try:
                c.close()
            except OSError:
                pass

    @staticmethod
    def pack(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = _b(a) if not isinstance(a, int) else str(a).encode()
            out += [b"$%d\r\n" % len(a), a, b"\r\n"]
        return b"".join(out)

    def send(self, cmds):
        self.sock.sendall(b"".join(self.pack(c) for c in cmds))

    def read(self):
        line = self.rf.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode("utf-8", "replace")
        if t == b"-":
            return _RedisError(rest.decode("utf-8", "replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("redis closed the connection")
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("bad RESP reply %r" % line[:80])

    def call(self, *args):
        self.send([args])
        r = self.read()
        if isinstance(r, _RedisError):
            raise r
        return r


def publish_redis(host, port, channel, lines, event=None, maxlen=100000, prefix="pc",
                  password=None, username=None, db=0, timeout=10.0, batch=1000):
    """XADD each line to ``<prefix>:ch:<channel>``; return the list of new entry ids.

    ``lines``: an iterable of str/bytes, each item one entry's ``data`` exactly as given (any
    bytes, newlines included); or a single str/bytes, split into lines like ``pipecast pipe``
    does. ``maxlen`` > 0 adds ``MAXLEN ~ maxlen``; 0/None: no trimming. Commands are pipelined in
    batches of ``batch`` and every reply is checked: on an error reply or a lost connection
    PublishError is raised with ``.ids`` of the entries that are in Redis."""
    channel = validate_channel(channel)
    event = _validate_event(event)
    if isinstance(lines, (str, bytes, bytearray)):
        lines = _split_text(lines)
    key = b"%s:ch:%s" % (_b(prefix), channel.encode())
    head = [b"XADD", key]
    if maxlen:
        head += [b"MAXLEN", b"~", int(maxlen)]
    head.append(b"*")
    if event is not None:
        head += [b"event", event.encode()]
    ids = []
    try:
        r = _Resp(host, port, timeout)
    except OSError as e:
        raise PublishError("redis %s:%s: %s" % (host, port, e)) from e
    try:
        if password is not None:
            r.call(*([b"AUTH"] + ([username] if username else []) + [password]))
        if db:
            r.call(b"SELECT", int(db))
        it = iter(lines)
        while True:
            cmds = []
            for line in it:
                cmds.append(head + [b"data", _b(line)])
                if len(cmds) >= batch:
                    break
            if not cmds:
                return ids
            r.send(cmds)
            err = None
            for _ in cmds:  # read every reply, even after an error: keep the connection in sync
                rep = r.read()
                if isinstance(rep, bytes) and err is None:
                    ids.append(rep.decode())
                elif err is None:
                    err = rep if isinstance(rep, _RedisError) else "unexpected reply %r" % (rep,)
            if err is not None:
                raise PublishError("redis XADD %s: %s (%d entries published)"
                                   % (key.decode(), err, len(ids)), ids)
    except PublishError:
        raise
    except (OSError, ConnectionError, _RedisError) as e:
        raise PublishError("redis %s:%s: %s (%d entries published)"
                           % (host, port, e, len(ids)), ids) from e
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def _connect(url, timeout):
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError("gateway URL %r: expected http://host[:port][/prefix]" % (url,))
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    return cls(u.hostname, u.port, timeout=timeout), u.path.rstrip("/")


def _error_message(body, status, reason):
    try:
        return json.loads(body.decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "HTTP %d %s" % (status, reason)


def publish_http(gateway_url, channel, text, event=None, timeout=30.0):
    """POST ``text`` (str or bytes; one entry per line) to the gateway.

    Returns the gateway's answer ``{"published": N, "last_id": "<id>" or None}``; raises
    PublishError (with ``.status``) on any non-200 answer."""
    channel = validate_channel(channel)
    event = _validate_event(event)
    conn, base = _connect(gateway_url, timeout)
    path = "%s/api/channels/%s" % (base, channel)
    if event is not None:
        path += "?" + urllib.parse.urlencode({"event": event})
    try:
        conn.request("POST", path, body=_b(text),
                     headers={"Content-Type": "text/plain; charset=utf-8"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise PublishError("POST %s%s: %s" % (gateway_url, path, e)) from e
    finally:
        conn.close()
    if resp.status != 200:
        raise PublishError("POST %s: %s" % (path, _error_message(body, resp.status, resp.reason)),
                           status=resp.status)
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise PublishError("POST %s: answer is not JSON: %r" % (path, body[:200])) from e


# ---------------------------------------------------------------------------------------------
# Server-Sent Events
# ---------------------------------------------------------------------------------------------


class Event(NamedTuple):
    """One dispatched SSE event.

    ``id``: the ``id:`` field of this very event (for pipecast, the Redis stream id), None when
    the event had none (``gap`` events); ``event``: the event type, ``"message"`` when absent;
    ``data``: the ``data:`` lines joined with ``\\n``."""

    id: Optional[str]
    event: str
    data: str

    def json(self):
        return json.loads(self.data)


_LINE_END = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """Incremental text/event-stream parser, exactly the WHATWG HTML algorithm.

    Feed bytes with ``feed()``; it returns the events they complete. The stream is decoded as
    UTF-8 (invalid sequences become U+FFFD, a leading BOM is dropped); lines end with CRLF, LF
    or CR; ``:`` lines are comments; one space after the colon is removed; ``data`` lines are
    joined with ``\\n``; ``id`` containing NUL is ignored; ``retry`` counts only when all ASCII
    digits; a block with no data is not dispatched (but its ``id`` still counts); an
    unterminated block at the end of the stream is dropped."""

    def __init__(self, last_event_id=""):
        self.last_event_id = last_event_id  # the source's "last event ID string"
        self.retry = None  # last valid retry: value (ms)
        self.comments = 0
        self.reset()

    def reset(self):
        """Start a new connection's stream (keeps last_event_id and retry)."""
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._text = ""
        self._bom_checked = False
        self._data = []
        self._event = ""
        self._id_buf = self.last_event_id
        self._block_id = None

    def feed(self, chunk):
        text = self._dec.decode(chunk)
        if not self._bom_checked:
            self._text += text
            if not self._text:
                return []
            self._bom_checked = True
            text, self._text = self._text[1:] if self._text[0] == "\ufeff" else self._text, ""
        buf = self._text + text if self._text else text
        out = []
        pos, n = 0, len(buf)
        for m in _LINE_END.finditer(buf):
            if m.group() == "\r" and m.end() == n:
                break  # maybe the first half of a CRLF: wait for the next byte
            self._line(buf[pos:m.start()], out)
            pos = m.end()
        self._text = buf[pos:]
        return out

    def _line(self, line, out):
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            self.comments += 1
            return
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id_buf = value
                self._block_id = value
        elif field == "retry":
            if value and value.isascii() and value.isdigit():
                self.retry = int(value)

    def _dispatch(self, out):
        self.last_event_id = self._id_buf
        if self._data:
            out.append(Event(self._block_id, self._event or "message", "\n".join(self._data)))
        self._data, self._event, self._block_id = [], "", None


class Subscription:
    """An iterator of Event over one SSE channel, reconnecting like EventSource.

    Attributes: ``last_event_id`` (where a reconnect resumes), ``retry_ms`` (the current
    reconnection delay), ``reconnects`` (how many times it reconnected), ``url`` (the gateway in
    use). ``close()`` ends the iteration, also from another thread."""

    def __init__(self, gateway_url, channel, last_event_id=None, from_=None, tail=None,
                 events=None, reconnect=True, retry_ms=2000, idle_timeout=60.0,
                 connect_timeout=10.0, max_reconnects=None):
        self.urls = [gateway_url] if isinstance(gateway_url, str) else list(gateway_url)
        if not self.urls:
            raise ValueError("no gateway URL")
        for u in self.urls:
            _connect(u, 1)[0].close()  # validates the URL
        self.channel = validate_channel(channel)
        if from_ not in (None, "start", "end"):
            raise ValueError("from_ %r: expected 'start' or 'end'" % (from_,))
        if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int)
                                 or not 0 <= tail <= 100000):
            raise ValueError("tail %r: expected an integer 0..100000" % (tail,))
        if isinstance(events, str):
            events = [events]
        self.events = [_validate_event(e) for e in (events or [])]
        if last_event_id is not None and (not isinstance(last_event_id, str)
                                          or re.search(r"[\r\n\0]", last_event_id)):
            raise ValueError("last_event_id %r: not a valid header value" % (last_event_id,))
        self.from_, self.tail = from_, tail
        self.reconnect, self.retry_ms = reconnect, retry_ms
        self.idle_timeout, self.connect_timeout = idle_timeout, connect_timeout
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self.error = None  # why the last connection ended, when it failed
        self.parser = SSEParser(last_event_id or "")
        self._url_index = 0
        self._sock = None
        self._closed = threading.Event()
        self._gen = self._run()

    @property
    def last_event_id(self):
        return self.parser.last_event_id

    @property
    def url(self):
        return self.urls[self._url_index]

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self):
        self._closed.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        self._gen.close()

    def _path(self, base):
        q = []
        if not self.parser.last_event_id:  # a resume position goes in Last-Event-ID
            if self.tail is not None:
                q.append(("tail", str(self.tail)))
            elif self.from_ is not None:
                q.append(("from", self.from_))
        q += [("event", e) for e in self.events]
        return "%s/api/channels/%s/events%s" % (base, self.channel,
                                                "?" + urllib.parse.urlencode(q) if q else "")

    def _run(self):
        while not self._closed.is_set():
            wait = None
            try:
                wait = yield from self._connection()
            except (OSError, http.client.HTTPException) as e:
                self.error = e
            if self._closed.is_set() or not self.reconnect or wait is False:
                return
            if self.max_reconnects is not None and self.reconnects >= self.max_reconnects:
                raise SubscribeError("%s: gave up after %d reconnects" % (self.channel,
                                                                          self.reconnects))
            # the next URL after a failure (any gateway can resume any client)
            self._url_index = (self._url_index + 1) % len(self.urls)
            delay = self.retry_ms / 1000.0
            if wait:
                delay = max(delay, wait)
            if self._closed.wait(delay):
                return
            self.reconnects += 1

    def _connection(self):
        """One connection: yields its events. Returns None to reconnect, a number of seconds to
        wait at least before reconnecting, or False to stop; raises for fatal answers."""
        conn, base = _connect(self.url, self.connect_timeout)
        resp = None
        try:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if self.parser.last_event_id:
                headers["Last-Event-ID"] = self.parser.last_event_id
            conn.connect()
            self._sock = sock = conn.sock  # http.client drops it after a Connection: close answer
            if self._closed.is_set():
                return False
            conn.request("GET", self._path(base), headers=headers)
            if self._closed.is_set():
                return False
            resp = conn.getresponse()
            if resp.status == 204:
                return False  # the server says: stop reconnecting
            if resp.status != 200:
                body = resp.read(65536)
                msg = "GET %s: %s" % (self._path(base), _error_message(body, resp.status,
                                                                     resp.reason))
                if resp.status in (408, 429) or resp.status >= 500:
                    ra = resp.getheader("Retry-After", "")
                    self.error = PipecastError(msg, resp.status)
                    return float(ra) if ra.isdigit() else None
                raise SubscribeError(msg, resp.status)
            ctype = resp.getheader("Content-Type", "")
            if ctype.split(";")[0].strip().lower() != "text/event-stream":
                raise SubscribeError("GET %s: Content-Type %r is not text/event-stream"
                                     % (self._path(base), ctype), resp.status)
            sock.settimeout(self.idle_timeout)  # pings come every 15 s
            self.parser.reset()
            while not self._closed.is_set():
                chunk = resp.read1(65536)
                if not chunk:
                    return None  # closed by the server: reconnect
                evs = self.parser.feed(chunk)
                if self.parser.retry is not None:
                    self.retry_ms = self.parser.retry
                for ev in evs:
                    if self._closed.is_set():
                        return False
                    yield ev
            return False
        finally:
            self._sock = None
            conn.close()
            if resp is not None:
                resp.close()


def subscribe(gateway_url, channel, last_event_id=None, from_=None, tail=None, events=None,
              **kw):
    """Follow a channel: an iterator (Subscription) of Event(id, event, data).

    ``gateway_url``: ``http://host:port`` or a list of them (after a failure the next one is
    tried). Where to start: ``last_event_id`` (exclusive), else ``from_`` ("start"/"end"), else
    ``tail`` (the last N entries); then live. ``events``: keep only these event names. After a
    dropped connection it waits the server's ``retry:`` delay and reconnects with
    ``Last-Event-ID``; 5xx/429 answers are retried too (at least ``Retry-After``), other HTTP
    errors raise SubscribeError, 204 ends the iteration. Keyword options: ``reconnect``,
    ``retry_ms``, ``idle_timeout``, ``connect_timeout``, ``max_reconnects``."""
    return Subscription(gateway_url, channel, last_event_id, from_, tail, events, **kw)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

_USAGE = """usage: pipecast.py sub URL CHANNEL [--from start|end] [--tail N] [--last-event-id ID]
                           [--event NAME]... [--count N] [--timeout S] [--json]
       pipecast.py pub URL CHANNEL [--event NAME] [--maxlen N] [--prefix P] < file
URL: a gateway http://host:port (sub: or a comma-separated list of them);
     for pub also redis://[user:pass@]host:port[/db]"""


def _parse_args(argv):
    opts = {"event": []}
    pos = []
    flags = {"--json"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(_USAGE)
            sys.exit(0)
        if a in flags:
            opts[a[2:]] = True
        elif a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            if not eq:
                i += 1
                if i >= len(argv):
                    raise ValueError("option %s needs a value" % a)
                val = argv[i]
            if name == "event":
                opts["event"].append(val)
            elif name in ("from", "tail", "last-event-id", "count", "timeout", "maxlen",
                          "prefix"):
                opts[name] = val
            else:
                raise ValueError("unknown option %s" % a)
        else:
            pos.append(a)
        i += 1
    return pos, opts


def _cli(argv):
    try:
        pos, o = _parse_args(argv)
        if len(pos) != 3 or pos[0] not in ("sub", "pub"):
            raise ValueError("expected: sub|pub URL CHANNEL")
        cmd, url, channel = pos
        validate_channel(channel)
    except ValueError as e:
        sys.stderr.write("pipecast: %s\n%s\n" % (e, _USAGE))
        return 2
    try:
        if cmd == "pub":
            if len(o["event"]) > 1:
                raise ValueError("pub takes one --event")
            ev = o["event"][0] if o["event"] else None
            data = sys.stdin.buffer.read()
            if url.startswith("redis://"):
                u = urllib.parse.urlsplit(url)
                db = int(u.path.strip("/") or 0)
                ids = publish_redis(u.hostname or "127.0.0.1", u.port or 6379, channel, data,
                                    event=ev, maxlen=int(o.get("maxlen", 100000)),
                                    prefix=o.get("prefix", "pc"), password=u.password,
                                    username=u.username, db=db)
                res = {"published": len(ids), "last_id": ids[-1] if ids else None}
            else:
                res = publish_http(url, channel, data, event=ev)
            print(json.dumps(res))
            return 0
        count = int(o["count"]) if "count" in o else None
        timeout = float(o["timeout"]) if "timeout" in o else None
        sub = subscribe(url.split(",") if "," in url else url, channel,
                        last_event_id=o.get("last-event-id"), from_=o.get("from"),
                        tail=int(o["tail"]) if "tail" in o else None, events=o["event"] or None)
    except ValueError as e:
        sys.stderr.write("pipecast: %s\n" % e)
        return 2
    except PipecastError as e:
        sys.stderr.write("pipecast: %s\n" % e)
        return 1
    timer = None
    if timeout:
        timer = threading.Timer(timeout, sub.close)
        timer.daemon = True
        timer.start()
    n = 0
    out = sys.stdout
    try:
        if count == 0:
            return 0
        for ev in sub:
            if o.get("json"):
                out.write(json.dumps({"id": ev.id, "event": ev.event, "data": ev.data}) + "\n")
            else:
                out.write(ev.data + "\n")
            out.flush()
            n += 1
            if count is not None and n >= count:
                return 0
        if count is not None:
            sys.stderr.write("pipecast: timed out after %d of %d events\n" % (n, count))
            return 1
        return 0
    except PipecastError as e:
        sys.stderr.write("pipecast: %s\n" % e)
        return 1
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    finally:
        sub.close()
        if timer:
            timer.cancel()


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
