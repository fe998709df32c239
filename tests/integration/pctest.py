"""pctest -- shared helpers for the pipecast integration tests (Python 3 stdlib only).

Every test is a script: it calls ``pctest.main(test_fn)``; an AssertionError (or any exception)
prints a clear FAIL line and exits 1. Helpers:

- ``Redis``: a tiny RESP2 client over a socket (binary safe, fast, no redis-cli round trips).
- ``fixture_redis()``: the ctest fixture's redis-server (``PC_REDIS_FIXTURE/port``); when the
  tests are run by hand without the fixture, a private server is started instead.
- ``PrivateRedis``: a redis-server of the test's own (temp dir, free port) that it may kill and
  restart on the same port and directory; always stopped at exit.
- ``Gateway``: ``pipecast-gateway`` on a free port; waits for /healthz; ``stop()`` asserts a clean
  exit (status 0, so ASan/LSan reports fail the test).
- ``SSEClient``/``SSEParser``: Server-Sent Events exactly as the WHATWG spec parses them (CR, LF,
  CRLF line ends; strict UTF-8 checking), over a raw socket, chunked or not.
- ``pipecast()``: runs the CLI.
- Jobs (docs/jobs.md): ``Runner`` (pipecast-runner with a temp ``--config``), ``JobSetup``
  (private redis + runner + gateway), ``job_submit``/``job_get``/``job_wait``/``job_kill``/
  ``job_stdin`` (REST job API), ``channel_entries``/``wait_exit_event``/``output_lines`` (a job
  channel read straight from Redis), ``group_members`` (processes of a process group).

Environment (set by tests/integration/CMakeLists.txt): PC_BIN (directory of the binaries),
PC_PIPECAST / PC_GATEWAY / PC_RUNNER (exact binaries, optional), PC_REDIS_FIXTURE, PC_SRC.
"""

import atexit
import http.client
import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# Sanitizer builds are several times slower: scale waits, never the assertions' meaning.
SLOW = 3.0 if os.environ.get("ASAN_OPTIONS") or os.environ.get("TSAN_OPTIONS") else 1.0

_cleanups = []
_cleanup_lock = threading.Lock()


def on_exit(fn):
    """Register @fn to run once at exit (LIFO), also when the test fails."""
    with _cleanup_lock:
        _cleanups.append(fn)
    return fn


def run_cleanups():
    while True:
        with _cleanup_lock:
            if not _cleanups:
                return
            fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # cleanup must not hide the real failure
            log("cleanup error: %r" % (e,))


atexit.register(run_cleanups)


def _on_sigterm(signum, frame):
    raise SystemExit("terminated by signal %d" % signum)


signal.signal(signal.SIGTERM, _on_sigterm)


def die_with_parent():
    """preexec_fn for children: SIGKILL them if the test process dies (ctest timeout)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def check_eq(got, want, what):
    if got != want:
        fail("%s: expected %s, got %s" % (what, _short(want), _short(got)))


def _short(v, n=400):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "...(%d chars)" % len(r)


def main(fn):
    """Run a test function; exit 0 on success, 1 with a clear message on failure."""
    name = os.path.basename(sys.argv[0])
    t0 = time.monotonic()
    try:
        fn()
    except TestFailure as e:
        log("FAIL %s: %s" % (name, e))
        traceback.print_exc(limit=4)
        run_cleanups()
        sys.stderr.flush()
        os._exit(1)
    except BaseException as e:
        log("FAIL %s: unexpected %s: %s" % (name, type(e).__name__, e))
        traceback.print_exc()
        run_cleanups()
        sys.stderr.flush()
        os._exit(1)
    run_cleanups()
    log("PASS %s (%.1f s)" % (name, time.monotonic() - t0))
    sys.stderr.flush()
    os._exit(0)


def wait_for(pred, timeout, what, interval=0.02):
    """Poll @pred until it returns a true value; fail with @what after @timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def uniq(test):
    """A channel name unique to this run: t:<test>:<random>."""
    return "t:%s:%08x" % (test, random.getrandbits(32))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def id_key(i):
    """Sort key of a stream id string/bytes "<ms>-<seq>"."""
    if isinstance(i, bytes):
        i = i.decode()
    ms, _, seq = i.partition("-")
    return (int(ms), int(seq or 0))


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def binary(name):
    env = {"pipecast": "PC_PIPECAST", "pipecast-gateway": "PC_GATEWAY",
           "pipecast-runner": "PC_RUNNER"}.get(name)
    if env and os.environ.get(env) and os.path.exists(os.environ[env]):
        return os.environ[env]
    d = os.environ.get("PC_BIN")
    cands = []
    if d:
        cands.append(os.path.join(d, name))
    src = os.environ.get("PC_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
    for preset in ("debug", "release", "asan"):
        cands.append(os.path.join(src, "build", preset, "bin", name))
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    if found:
        return found
    fail("binary %r not found (PC_BIN=%r); build it first" % (name, d))


def pipecast(args, input=b"", timeout=30, env=None, redis_port=None):
    """Run `pipecast <args>`; returns CompletedProcess with bytes stdout/stderr.

    When @redis_port is given, `--redis redis://127.0.0.1:<port>` is inserted after the
    subcommand."""
    args = [str(a) for a in args]
    if redis_port is not None:
        args = args[:1] + ["--redis", "redis://127.0.0.1:%d" % redis_port] + args[1:]
    e = dict(os.environ)
    e.pop("PIPECAST_REDIS_URL", None)
    if env:
        e.update(env)
    try:
        return subprocess.run(
            [binary("pipecast")] + args,
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout * SLOW,
            env=e,
            preexec_fn=die_with_parent,
        )
    except subprocess.TimeoutExpired as te:
        fail("pipecast %s did not finish within %.0f s (stderr: %s)"
             % (" ".join(args), timeout * SLOW, _short(te.stderr)))


def pipecast_popen(args, redis_port=None, **kw):
    args = [str(a) for a in args]
    if redis_port is not None:
        args = args[:1] + ["--redis", "redis://127.0.0.1:%d" % redis_port] + args[1:]
    e = dict(os.environ)
    e.pop("PIPECAST_REDIS_URL", None)
    e.update(kw.pop("env", None) or {})
    kw.setdefault("preexec_fn", die_with_parent)
    p = subprocess.Popen([binary("pipecast")] + args, env=e, **kw)

    def _kill():
        if p.poll() is None:
            p.kill()
            p.wait()

    on_exit(_kill)
    return p


# --------------------------------------------------------------------------------------------
# RESP client
# --------------------------------------------------------------------------------------------


class RedisError(Exception):
    pass


def _enc(a):
    if isinstance(a, bytes):
        return a
    if isinstance(a, str):
        return a.encode()
    if isinstance(a, (int, float)):
        return str(a).encode()
    raise TypeError("bad redis argument %r" % (a,))


class Redis:
    """Minimal RESP2 client. Bulk strings come back as bytes, status replies as str."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb")

    def close(self):
        try:
            self.rf.close()
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def _pack(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = _enc(a)
            out.append(b"$%d\r\n" % len(b))
            out.append(b)
            out.append(b"\r\n")
        return b"".join(out)

    def _read(self):
        line = self.rf.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RedisError("bad RESP reply %r" % line)

    def execute(self, *args):
        self.sock.sendall(self._pack(args))
        r = self._read()
        if isinstance(r, RedisError):
            raise r
        return r

    def pipeline(self, cmds):
        """Send many commands at once; returns the replies (errors as RedisError objects)."""
        self.sock.sendall(b"".join(self._pack(c) for c in cmds))
        return [self._read() for _ in cmds]

    # conveniences
    def xadd(self, key, fields, id="*", maxlen=None):
        args = ["XADD", key]
        if maxlen is not None:
            args += ["MAXLEN", "~", maxlen]
        args.append(id)
        for k, v in (fields.items() if isinstance(fields, dict) else fields):
            args += [k, v]
        return self.execute(*args).decode()

    def xrange(self, key, start="-", end="+", count=None):
        """[(id str, {field bytes: value bytes})]"""
        args = ["XRANGE", key, start, end]
        if count:
            args += ["COUNT", count]
        out = []
        for eid, kv in self.execute(*args):
            out.append((eid.decode(), dict(zip(kv[0::2], kv[1::2]))))
        return out

    def xrange_all(self, key):
        out, start = [], "-"
        while True:
            page = self.xrange(key, start, "+", 10000)
            out += page
            if len(page) < 10000:
                return out
            start = "(" + page[-1][0]

    def xlen(self, key):
        return self.execute("XLEN", key)

    def delete(self, *keys):
        return self.execute("DEL", *keys)

    def ping(self):
        return self.execute("PING") == "PONG"


def redis_ping(port, timeout=0.5):
    try:
        r = Redis(port, timeout=timeout)
        try:
            return r.ping()
        finally:
            r.close()
    except (OSError, RedisError, ConnectionError):
        return False


# --------------------------------------------------------------------------------------------
# redis-server processes
# --------------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server owned by one test: temp dir, free port, killable, restartable."""

    def __init__(self, extra_args=(), port=None):
        self.dir = tempfile.mkdtemp(prefix="pc-redis-")
        self.extra = list(extra_args)
        self.port = port or free_port()
        self.proc = None
        on_exit(self._cleanup)
        self.start()

    def start(self, attempts=5):
        for attempt in range(attempts):
            args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--dir", self.dir, "--save", "", "--appendonly", "no",
                    "--logfile", os.path.join(self.dir, "redis.log")] + self.extra
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if redis_ping(self.port):
                    return self
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            time.sleep(0.2)  # the port may still be held (restart on the same port)
        fail("private redis-server did not start on port %d:\n%s" % (self.port, self.log_tail()))

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stop with @sig (SIGTERM: clean shutdown; SIGKILL: crash) and wait until gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def client(self, timeout=10.0):
        return Redis(self.port, timeout=timeout)

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def log_tail(self, n=20):
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def _cleanup(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


_fixture_private = None


def fixture_redis():
    """Port of the shared redis-server (ctest fixture), or of a private one when run by hand."""
    global _fixture_private
    d = os.environ.get("PC_REDIS_FIXTURE")
    if d and os.path.exists(os.path.join(d, "port")):
        with open(os.path.join(d, "port")) as f:
            port = int(f.read().strip())
        check(redis_ping(port, 2.0), "the fixture redis-server on port %d does not answer" % port)
        return port
    if _fixture_private is None:
        log("PC_REDIS_FIXTURE not set up: starting a private redis-server")
        _fixture_private = PrivateRedis()
    return _fixture_private.port


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            fail("response body is not JSON (%s): %s" % (e, _short(self.body)))

    def __repr__(self):
        return "<HTTP %d %s %s>" % (self.status, self.headers.get("content-type"),
                                    _short(self.body, 300))


def http_request(port, method, path, body=None, headers=None, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        return Response(r.status, r.reason, hdrs, data)
    finally:
        conn.close()


def raw_request(port, payload, timeout=10.0):
    """Send raw bytes (from a thread: the server may answer and close before reading them all,
    e.g. 413 on Content-Length) and parse the response. Returns a Response, or None when the
    connection ended without any response bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)

    def send():
        try:
            s.sendall(payload)
        except OSError:
            pass

    t = threading.Thread(target=send, daemon=True)
    t.start()
    buf = b""
    deadline = time.monotonic() + timeout * SLOW
    try:
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in buf:
                head = buf.split(b"\r\n\r\n", 1)[0]
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(buf) >= len(head) + 4 + int(m.group(1)):
                    break
            try:
                d = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                break
            buf += d
    finally:
        s.close()
    if not buf.startswith(b"HTTP/1."):
        return None if not buf else Response(0, "not HTTP", {}, buf)
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    hdrs = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        body = _Chunked().feed(body)
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", hdrs, body)


def check_json_error(r, status, what):
    """Assert an error response: @status, JSON body with a non-empty "error" string."""
    check(r.status == status, "%s: expected HTTP %d, got %r" % (what, status, r))
    ct = r.header("content-type", "")
    check("application/json" in ct, "%s: error Content-Type should be JSON, got %r" % (what, ct))
    j = r.json()
    check(isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"],
          "%s: body should be {\"error\": \"...\"}, got %r" % (what, j))
    return j


def parse_metrics(text):
    """Prometheus text -> {"name{labels}": value}; also fills {"name": value} for unlabelled."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*(\{[^}]*\})?)\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(3))
            except ValueError:
                pass
    return out


class Gateway:
    """pipecast-gateway on a free loopback port, its stderr in a log file."""

    def __init__(self, redis_port=None, args=(), redis_url=None, env=None, wait=True):
        self.redis_port = redis_port
        self.redis_url = redis_url or "redis://127.0.0.1:%d" % redis_port
        self.args = [str(a) for a in args]
        self.env = env or {}
        self.dir = tempfile.mkdtemp(prefix="pc-gw-")
        self.logpath = os.path.join(self.dir, "gateway.log")
        self.proc = None
        self.port = None
        on_exit(self._cleanup)
        self._start(wait)

    def _start(self, wait):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("PIPECAST_"):
                del e[k]
        e.update(self.env)
        for attempt in range(3):
            self.port = free_port()
            self.logf = open(self.logpath, "ab")
            cmd = [binary("pipecast-gateway"), "--listen", "127.0.0.1:%d" % self.port,
                   "--redis", self.redis_url] + self.args
            self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=self.logf, env=e,
                                         preexec_fn=die_with_parent)
            if not wait:
                return
            deadline = time.monotonic() + 15 * SLOW
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    http_request(self.port, "GET", "/healthz", timeout=2)
                    return
                except (OSError, http.client.HTTPException):
                    time.sleep(0.03)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                fail("gateway did not answer /healthz within %.0f s:\n%s"
                     % (15 * SLOW, self.log_tail()))
            log("gateway exited early (status %s), retrying on another port"
                % self.proc.returncode)
        fail("gateway failed to start (%s):\n%s" % (" ".join(cmd), self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, what=""):
        check(self.alive(), "gateway died %s(status %s):\n%s"
              % (what + " " if what else "", self.proc.returncode, self.log_tail()))

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        return http_request(self.port, method, path, body, headers, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def healthz(self):
        return self.get("/healthz")

    def metrics(self):
        r = self.get("/metrics")
        check(r.status == 200, "/metrics: expected 200, got %r" % r)
        return parse_metrics(r.body.decode("utf-8", "replace"))

    def sse(self, channel=None, query="", headers=None, path=None, timeout=10.0):
        if path is None:
            path = "/api/channels/%s/events%s" % (channel, ("?" + query) if query else "")
        return SSEClient(self.port, path, headers=headers, timeout=timeout)

    def log_tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                return b"".join(f.read().splitlines(True)[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self, check_exit=True):
        """SIGTERM, wait; with @check_exit, a non-zero status (crash, sanitizer report) fails."""
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15 * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                if check_exit:
                    fail("gateway did not stop within %.0f s of SIGTERM:\n%s"
                         % (15 * SLOW, self.log_tail()))
        self.logf.close()
        if check_exit and p.returncode != 0:
            fail("gateway exited with status %s on SIGTERM (crash or sanitizer report):\n%s"
                 % (p.returncode, self.log_tail(60)))

    def _cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Server-Sent Events
# --------------------------------------------------------------------------------------------


class Event:
    __slots__ = ("id", "event", "data", "last_event_id", "t")

    def __init__(self, id, event, data, last_event_id):
        self.id = id  # the id: field of this very block, or None
        self.event = event  # None when no event: field (default "message")
        self.data = data  # str, data: lines joined with "\n"
        self.last_event_id = last_event_id
        self.t = time.monotonic()

    def __repr__(self):
        return "Event(id=%r, event=%r, data=%s)" % (self.id, self.event, _short(self.data, 120))


_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """Incremental text/event-stream parser following the WHATWG algorithm.

    Also insists that every byte of the stream is valid UTF-8 (DESIGN: SSE output is always
    valid UTF-8)."""

    def __init__(self):
        self.buf = b""
        self.data = []
        self.event = None
        self.block_id = None
        self.last_event_id = ""
        self.retry = None
        self.comments = []
        self.fields_seen = []  # (field, value) in order, for protocol checks
        self.record_fields = False

    def feed(self, chunk):
        """Feed bytes; returns the list of events completed by them."""
        out = []
        buf = self.buf + chunk if self.buf else chunk
        pos = 0
        n = len(buf)
        for m in _LINE_END.finditer(buf):
            if m.group() == b"\r" and m.end() == n:
                break  # maybe the first half of CRLF: wait for more
            self._line(buf[pos:m.start()], out)
            pos = m.end()
        self.buf = buf[pos:]
        return out

    def _line(self, raw, out):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            fail("SSE stream is not valid UTF-8 (%s): %s" % (e, _short(raw)))
        if line == "":
            if self.data:
                out.append(Event(self.block_id, self.event, "\n".join(self.data),
                                 self.last_event_id))
            self.data, self.event, self.block_id = [], None, None
            return
        if line.startswith(":"):
            self.comments.append(line[1:])
            return
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if self.record_fields:
            self.fields_seen.append((field, value))
        if field == "data":
            self.data.append(value)
        elif field == "event":
            self.event = value
        elif field == "id":
            if "\0" not in value:
                self.block_id = value
                self.last_event_id = value
        elif field == "retry":
            if value.isdigit():
                self.retry = int(value)


class _Chunked:
    """Incremental decoder of HTTP/1.1 chunked transfer coding."""

    def __init__(self):
        self.buf = b""
        self.left = 0  # bytes left in the current chunk (+2 for its CRLF when > 0)
        self.state = "size"
        self.done = False

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            if self.state == "size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(self.buf[:i].split(b";")[0].strip() or b"0", 16)
                self.buf = self.buf[i + 2:]
                if size == 0:
                    self.done = True
                    self.state = "trailer"
                    break
                self.left = size
                self.state = "data"
            elif self.state == "data":
                if not self.buf:
                    break
                take = self.buf[:self.left]
                out.append(take)
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                if self.left == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(self.buf) < 2:
                    break
                self.buf = self.buf[2:]
                self.state = "size"
            else:
                break
        return b"".join(out)


class SSETimeout(TestFailure):
    pass


class SSEClosed(TestFailure):
    pass


class SSEClient:
    """One SSE connection over a raw socket.

    The request is sent and the response head read in the constructor. ``status``/``headers``
    describe the response; for non-200 responses ``body`` holds the (error) body."""

    def __init__(self, port, path, headers=None, timeout=10.0, connect=True, rcvbuf=None):
        self.port, self.path = port, path
        self.req_headers = dict(headers or {})
        self.timeout = timeout * SLOW
        self.parser = SSEParser()
        self.events = []
        self.pending = []
        self.closed = False
        self.status = None
        self.headers = {}
        self.body = b""
        self.raw_first = b""  # first body bytes, for "retry comes first" checks
        self._chunked = None
        self._left = None  # Content-Length remaining, when given
        self.sock = None
        if connect:
            self.connect(rcvbuf)

    def connect(self, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(self.timeout)
        s.connect(("127.0.0.1", self.port))
        self.sock = s
        req = ["GET %s HTTP/1.1" % self.path, "Host: 127.0.0.1:%d" % self.port,
               "Accept: text/event-stream", "Cache-Control: no-cache"]
        for k, v in self.req_headers.items():
            req.append("%s: %s" % (k, v))
        s.sendall(("\r\n".join(req) + "\r\n\r\n").encode())

    def read_head(self):
        """Read the status line and headers (call once, after connect)."""
        buf = b""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise SSETimeout("no response head from %s within %.1f s" % (self.path,
                                                                            self.timeout))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                d = b""
            if not d:
                fail("connection closed before a response head (%s); got %r" % (self.path, buf))
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1])
        for h in lines[1:]:
            k, _, v = h.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._chunked = _Chunked()
        if "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
        if self.status != 200:
            self.body = self._decode(rest)
            while not self._body_complete():
                try:
                    d = self.sock.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not d:
                    break
                self.body += self._decode(d)
            self.close()
            return self
        self._feed(rest)
        return self

    def _body_complete(self):
        if self._chunked is not None:
            return self._chunked.done
        if self._left is not None:
            return self._left <= 0
        return False

    def _decode(self, data):
        if self._chunked is not None:
            return self._chunked.feed(data)
        if self._left is not None:
            self._left -= len(data)
        return data

    def _feed(self, data):
        body = self._decode(data)
        if len(self.raw_first) < 256:
            self.raw_first += body[:256 - len(self.raw_first)]
        evs = self.parser.feed(body)
        self.events += evs
        self.pending += evs

    def recv_once(self, timeout):
        """Read what is available (waiting at most @timeout s). False once the stream closed."""
        if self.closed:
            return False
        self.sock.settimeout(max(0.001, timeout))
        try:
            d = self.sock.recv(262144)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.closed = True
            return False
        self._feed(d)
        if self._chunked is not None and self._chunked.done:
            self.closed = True
        return True

    def json_body(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            fail("%s: response body is not JSON: %s" % (self.path, _short(self.body)))

    def next_event(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout * SLOW
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SSETimeout("%s: no event within %.1f s (got %d so far, last %r)"
                                 % (self.path, timeout, len(self.events),
                                    self.events[-1:] or None))
            if not self.recv_once(min(left, 0.5)):
                raise SSEClosed("%s: stream closed by the server after %d events"
                                % (self.path, len(self.events)))
        return self.pending.pop(0)

    def read_events(self, n, timeout=None):
        return [self.next_event(timeout) for _ in range(n)]

    def read_until(self, pred, timeout=None):
        """Return events up to and including the first for which pred(event) is true."""
        timeout = self.timeout if timeout is None else timeout * SLOW
        deadline = time.monotonic() + timeout
        out = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SSETimeout("%s: condition not met within %.1f s (%d events, last %r)"
                                 % (self.path, timeout, len(out), out[-1:] or None))
            ev = self.next_event(left / SLOW)
            out.append(ev)
            if pred(ev):
                return out

    def expect_quiet(self, seconds):
        """Assert that no event arrives within @seconds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.pending:
            if not self.recv_once(deadline - time.monotonic()):
                break
        check(not self.pending, "%s: unexpected event %r" % (self.path, self.pending[:1]))

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.closed = True


def sse_open_many(gw, channel, n, timeout=30):
    """Open @n streams on @channel's events and read their heads; each must answer 200."""
    t0 = time.monotonic()
    clients = [gw.sse(channel, timeout=timeout) for _ in range(n)]
    for i, c in enumerate(clients):
        c.read_head()
        check(c.status == 200, "client %d: HTTP %d %r" % (i, c.status, c.body[:200]))
    log("%d streams open in %.2f s" % (n, time.monotonic() - t0))
    return clients


class SSEPump:
    """Reads many SSE clients from one selector: pump(until, timeout) reads until until() holds
    (True) or timeout * SLOW seconds pass (False); a closed client stops being read."""

    def __init__(self, clients):
        self.sel = selectors.DefaultSelector()
        for c in clients:
            self.sel.register(c.sock, selectors.EVENT_READ, c)

    def __call__(self, until, timeout):
        deadline = time.monotonic() + timeout * SLOW
        while not until():
            if time.monotonic() > deadline:
                return False
            for k, _ in self.sel.select(0.2):
                c = k.data
                if not c.recv_once(0):
                    self.sel.unregister(c.sock)
        return True

    def forget(self, c):
        self.sel.unregister(c.sock)

    def close(self):
        self.sel.close()


def sse_open(gw, channel, query="", headers=None, timeout=10.0):
    """Open an SSE stream and assert it starts correctly (200, content type)."""
    c = gw.sse(channel, query, headers, timeout=timeout)
    c.read_head()
    check(c.status == 200, "GET %s: expected 200, got %d %s" % (c.path, c.status,
                                                                 _short(c.body)))
    ct = c.headers.get("content-type", "")
    check(ct.startswith("text/event-stream"), "%s: Content-Type %r" % (c.path, ct))
    return c


# --------------------------------------------------------------------------------------------
# Jobs: pipecast-runner processes, the gateway's job API, job channels (docs/jobs.md)
# --------------------------------------------------------------------------------------------

JOB_ENDED = ("exited", "killed", "timeout", "failed", "lost")
JSON_HDR = {"Content-Type": "application/json"}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def proc_status(pid):
    """/proc/<pid>/status as {field: value str}; {} when the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
    except (OSError, ValueError):
        return {}


def proc_kb(pid, field):
    """A "<n> kB" field of /proc/<pid>/status (VmHWM, VmRSS, ...) in kB, or None."""
    v = proc_status(pid).get(field)
    return int(v.split()[0]) if v else None


def group_members(pgid, include_zombies=False):
    """[(pid, state, comm)] of the live processes whose process group is @pgid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        rp = st.rfind(")")
        comm = st[st.find("(") + 1:rp]
        fields = st[rp + 2:].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and (include_zombies or state != "Z"):
            out.append((int(d), state, comm))
    return out


def kill_group_at_exit(pgid):
    """Make sure no process of group @pgid outlives the test (jobs orphaned by a killed runner)."""
    def _kill():
        if pgid and pgid > 1 and group_members(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
    on_exit(_kill)


class Runner:
    """pipecast-runner with its own temp --config file (templates) and a log file.

    ``templates`` is the "templates" object of the config; ``limits_max`` optional. The runner
    id is given with ``--id`` (unique per test). ``start()`` waits for the heartbeat key
    ``<prefix>:runner:<id>``. ``stop()`` (SIGTERM) asserts a clean exit 0; ``kill9()`` crashes it."""

    def __init__(self, redis_port, templates=None, args=(), id=None, limits_max=None,
                 config=None, prefix="pc", env=None, wait=True):
        self.redis_port = redis_port
        self.redis_url = "redis://127.0.0.1:%d" % redis_port
        self.prefix = prefix
        self.id = id or "rn-%08x" % random.getrandbits(32)
        self.args = [str(a) for a in args]
        self.env = env or {}
        self.dir = tempfile.mkdtemp(prefix="pc-runner-")
        self.config_path = os.path.join(self.dir, "runner.json")
        if config is None:
            config = {"templates": templates or {}}
            if limits_max:
                config["limits_max"] = limits_max
        write_json(self.config_path, config)
        self.logpath = os.path.join(self.dir, "runner.log")
        self.logf = None
        self.proc = None
        on_exit(self._cleanup)
        self.start(wait)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def heartbeat_key(self):
        return "%s:runner:%s" % (self.prefix, self.id)

    def heartbeat(self):
        """The heartbeat JSON (dict) or None."""
        r = Redis(self.redis_port)
        try:
            v = r.execute("GET", self.heartbeat_key())
        finally:
            r.close()
        if v is None:
            return None
        try:
            return json.loads(v.decode())
        except ValueError:
            fail("runner %s: heartbeat is not JSON: %s" % (self.id, _short(v)))

    def start(self, wait=True):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("PIPECAST_"):
                del e[k]
        e.update(self.env)
        self.logf = open(self.logpath, "ab")
        cmd = [binary("pipecast-runner"), "--redis", self.redis_url, "--config", self.config_path,
               "--id", self.id] + (["--prefix", self.prefix] if self.prefix != "pc" else []) \
            + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=e, preexec_fn=die_with_parent)
        if not wait:
            return self
        deadline = time.monotonic() + 15 * SLOW
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail("runner %s exited at start with status %s (%s):\n%s"
                     % (self.id, self.proc.returncode, " ".join(cmd), self.log_tail()))
            try:
                if self.heartbeat() is not None:
                    return self
            except (OSError, ConnectionError, RedisError):
                pass
            time.sleep(0.03)
        fail("runner %s wrote no heartbeat (%s) within %.0f s:\n%s"
             % (self.id, self.heartbeat_key(), 15 * SLOW, self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, what=""):
        check(self.alive(), "runner %s died %s(status %s):\n%s"
              % (self.id, what + " " if what else "",
                 self.proc.returncode if self.proc else None, self.log_tail()))

    def vm_hwm_kb(self):
        """Peak resident set size of the runner process (VmHWM, kB)."""
        return proc_kb(self.proc.pid, "VmHWM")

    def log_tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                return b"".join(f.read().splitlines(True)[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def kill9(self):
        """SIGKILL the runner (a crash: no cleanup, its jobs stay pending)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None

    def stop(self, check_exit=True, timeout=20):
        """SIGTERM and wait; with @check_exit a non-zero status or a hang fails the test."""
        if self.proc is None:
            return None
        p = self.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                if check_exit:
                    fail("runner %s did not stop within %.0f s of SIGTERM:\n%s"
                         % (self.id, timeout * SLOW, self.log_tail()))
        if self.logf:
            self.logf.close()
            self.logf = None
        if check_exit and p.returncode != 0:
            fail("runner %s exited with status %s on SIGTERM (crash or sanitizer report):\n%s"
                 % (self.id, p.returncode, self.log_tail(60)))
        return p.returncode

    def _cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_runners(gw, ids, timeout=10):
    """Wait until GET /api/runners lists every runner id in @ids; returns the runner objects."""
    want = set(ids)

    def ok():
        r = gw.get("/api/runners")
        if r.status != 200:
            return None
        rs = r.json().get("runners") or []
        got = {x.get("id") for x in rs if isinstance(x, dict)}
        return rs if want <= got else None
    return wait_for(ok, timeout * SLOW, "GET /api/runners to list %s" % sorted(want), 0.05)


# ---- the REST job API ----------------------------------------------------------------------


def job_post(gw, spec, raw=None):
    """POST /api/jobs with @spec as JSON (or the @raw bytes); returns the Response."""
    body = raw if raw is not None else json.dumps(spec).encode()
    return gw.request("POST", "/api/jobs", body, JSON_HDR)


def job_submit(gw, spec):
    """POST /api/jobs expecting 201 {"id","channel","status":"queued"}; returns that dict."""
    r = job_post(gw, spec)
    check(r.status == 201, "POST /api/jobs %s: expected 201, got %r" % (_short(spec, 200), r))
    j = r.json()
    check(isinstance(j, dict) and re.match(r"^[0-9a-f]{16}$", str(j.get("id"))),
          "POST /api/jobs: id should be 16 lowercase hex chars, got %r" % (j,))
    check(isinstance(j.get("channel"), str) and j["channel"], "POST /api/jobs: no channel: %r" % j)
    check_eq(j.get("status"), "queued", "POST /api/jobs status")
    return j


def job_get(gw, job_id):
    r = gw.get("/api/jobs/%s" % job_id)
    check(r.status == 200, "GET /api/jobs/%s: expected 200, got %r" % (job_id, r))
    return r.json()


def job_wait(gw, job_id, statuses=JOB_ENDED, timeout=30):
    """Poll GET /api/jobs/<id> until its status is one of @statuses; returns the job object."""
    if isinstance(statuses, str):
        statuses = (statuses,)
    last = {}

    def ok():
        last["j"] = job_get(gw, job_id)
        return last["j"] if last["j"].get("status") in statuses else None
    deadline = time.monotonic() + timeout * SLOW
    while True:
        j = ok()
        if j:
            return j
        if time.monotonic() >= deadline:
            fail("job %s: status not in %s within %.0f s; last state %s"
                 % (job_id, statuses, timeout * SLOW, _short(last.get("j"), 600)))
        time.sleep(0.03)


def job_kill(gw, job_id):
    return gw.request("DELETE", "/api/jobs/%s" % job_id)


def job_stdin(gw, job_id, data, eof=False):
    return gw.request("POST", "/api/jobs/%s/stdin%s" % (job_id, "?eof=1" if eof else ""), data,
                      {"Content-Type": "application/octet-stream"})


def job_hash(r, job_id, prefix="pc"):
    """The job hash pc:job:<id> as {str: str}."""
    v = r.execute("HGETALL", "%s:job:%s" % (prefix, job_id)) or []
    return {k.decode(): x.decode("utf-8", "replace") for k, x in zip(v[0::2], v[1::2])}


def as_int(v):
    """A job-object number that may be given as an int or a decimal string; None for null/""."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        fail("expected a number, got %r" % (v,))
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.match(r"^-?\d+$", v):
        return int(v)
    fail("expected a number, got %r" % (v,))


# ---- job channels --------------------------------------------------------------------------


class Entry:
    """One channel entry: id, event (str or None), data (bytes), partial (bool), fields."""
    __slots__ = ("id", "event", "data", "partial", "fields")

    def __init__(self, eid, fields):
        self.id = eid
        self.fields = fields
        ev = fields.get(b"event")
        self.event = ev.decode() if ev is not None else None
        self.data = fields.get(b"data", b"")
        self.partial = fields.get(b"partial") == b"1"

    def json(self):
        try:
            return json.loads(self.data.decode())
        except (ValueError, UnicodeDecodeError):
            fail("%s event %s: data is not JSON: %s" % (self.event, self.id, _short(self.data)))

    def __repr__(self):
        return "Entry(%s %s %s%s)" % (self.id, self.event, _short(self.data, 120),
                                      " partial" if self.partial else "")


def channel_key(channel, prefix="pc"):
    return "%s:ch:%s" % (prefix, channel)


def channel_entries(r, channel, prefix="pc"):
    """Every retained entry of a channel, in order, as Entry objects."""
    return [Entry(i, f) for i, f in r.xrange_all(channel_key(channel, prefix))]


def wait_channel(r, channel, pred, timeout=30, what=None, prefix="pc"):
    """Poll the channel until pred(entries) is true; returns the entries."""
    last = {"e": []}

    def ok():
        last["e"] = channel_entries(r, channel, prefix)
        return pred(last["e"])
    deadline = time.monotonic() + timeout * SLOW
    while True:
        if ok():
            return last["e"]
        if time.monotonic() >= deadline:
            fail("channel %s: timed out after %.0f s waiting for %s; last entries: %s"
                 % (channel, timeout * SLOW, what or "a condition", _short(last["e"][-8:], 1200)))
        time.sleep(0.05)


def wait_exit_event(r, channel, timeout=30, count=1, prefix="pc"):
    """Wait until the channel holds @count `exit` events; returns all entries."""
    return wait_channel(r, channel, lambda es: sum(e.event == "exit" for e in es) >= count,
                        timeout, "%d exit event(s)" % count, prefix)


def events_of(entries, name):
    return [e for e in entries if e.event == name]


def output_lines(entries, event="stdout"):
    """The lines of one output event (partial chunks joined), as str."""
    out, cur = [], b""
    for e in entries:
        if e.event != event:
            continue
        cur += e.data
        if not e.partial:
            out.append(cur.decode("utf-8", "replace"))
            cur = b""
    if cur:
        out.append(cur.decode("utf-8", "replace"))
    return out


def xinfo_stream(r, key):
    """XINFO STREAM as {field str: value} (first/last entries left raw)."""
    v = r.execute("XINFO", "STREAM", key)
    return {k.decode() if isinstance(k, bytes) else k: x for k, x in zip(v[0::2], v[1::2])}


def xpending_count(r, key="pc:jobs", group="runners"):
    v = r.execute("XPENDING", key, group)
    return v[0]


def job_env_config(templates, limits_max=None):
    c = {"templates": templates}
    if limits_max:
        c["limits_max"] = limits_max
    return c


class JobSetup:
    """A private redis-server + one runner (templates) + a gateway: the usual job test bed.

    Private Redis: runners share the queue of their Redis, so tests must not see each
    other's runners."""

    def __init__(self, templates, runner_args=(), redis_args=(), gw_args=(), runner_id=None,
                 limits_max=None, runner_env=None):
        self.redis = PrivateRedis(redis_args)
        self.r = self.redis.client()
        self.runner = Runner(self.redis.port, templates, runner_args, id=runner_id,
                             limits_max=limits_max, env=runner_env)
        self.gw = Gateway(self.redis.port, gw_args)
        wait_runners(self.gw, [self.runner.id])

    def run(self, spec, timeout=30, statuses=JOB_ENDED):
        """Submit @spec, wait for it to end; returns (job object, channel entries up to exit)."""
        j = job_submit(self.gw, spec)
        job = job_wait(self.gw, j["id"], statuses, timeout)
        es = wait_exit_event(self.r, j["channel"], 10)
        return job, es


def run_subtests(fns, *args):
    """Run each fn(*args) in turn, continuing after a failure so that one run reports every
    broken behaviour; then fail listing them all."""
    failures = []
    for fn in fns:
        t = time.monotonic()
        try:
            fn(*args)
            log("ok   %s (%.1f s)" % (fn.__name__, time.monotonic() - t))
        except Exception as e:
            kind = "" if isinstance(e, TestFailure) else type(e).__name__ + ": "
            log("FAIL %s (%.1f s): %s%s" % (fn.__name__, time.monotonic() - t, kind, e))
            traceback.print_exc(limit=6)
            failures.append("%s: %s%s" % (fn.__name__, kind, _short(str(e), 300)))
    if failures:
        fail("%d of %d subtests failed:\n  %s" % (len(failures), len(fns),
                                                   "\n  ".join(failures)))


# Walks a job channel inside Redis (fast: no million-entry round trip through Python). stdout
# lines (partial chunks joined) must read "<tag> <number>", numbers consecutive from the first
# retained one (or from ARGV[2] when given). Returns {lines, first, last, starts, exits,
# partials, others, bad, last_event}.
_CHECK_NUMBERED_LUA = r"""
local key, tag, want_first = KEYS[1], ARGV[1], ARGV[2]
local lines, first, last, starts, exits, partials, others = 0, -1, -1, 0, 0, 0, 0
local bad, cur, expect, last_event = '', '', nil, ''
if want_first ~= '' then expect = tonumber(want_first) end
local start = '-'
while true do
  local page = redis.call('XRANGE', key, start, '+', 'COUNT', 10000)
  if #page == 0 then break end
  for _, e in ipairs(page) do
    local f = e[2]
    local ev, data, partial = '', '', false
    for i = 1, #f, 2 do
      if f[i] == 'event' then ev = f[i + 1]
      elseif f[i] == 'data' then data = f[i + 1]
      elseif f[i] == 'partial' then partial = (f[i + 1] == '1') end
    end
    last_event = ev
    if ev == 'stdout' then
      if partial then partials = partials + 1 end
      cur = cur .. data
      if not partial then
        local t, num = string.match(cur, '^(%S+) (%d+)$')
        num = tonumber(num)
        if bad == '' then
          if t ~= tag or num == nil then
            bad = 'line #' .. lines .. ' (' .. e[1] .. ') is ' .. string.sub(cur, 1, 200)
          elseif expect ~= nil and num ~= expect then
            bad = 'line #' .. lines .. ' (' .. e[1] .. '): expected number ' .. expect ..
                  ', got ' .. num
          end
        end
        if num ~= nil then
          if first < 0 then first = num end
          last = num
          expect = num + 1
        end
        lines = lines + 1
        cur = ''
      end
    elseif ev == 'start' then starts = starts + 1
    elseif ev == 'exit' then exits = exits + 1
    else others = others + 1 end
  end
  start = '(' .. page[#page][1]
end
return {lines, first, last, starts, exits, partials, others, bad, last_event}
"""


def check_numbered_channel(r, key, tag, first=None):
    v = r.execute("EVAL", _CHECK_NUMBERED_LUA, 1, key, tag, "" if first is None else first)
    names = ("lines", "first", "last", "starts", "exits", "partials", "others", "bad",
             "last_event")
    d = dict(zip(names, v))
    d["bad"] = d["bad"].decode("utf-8", "replace")
    d["last_event"] = d["last_event"].decode("utf-8", "replace")
    return d
