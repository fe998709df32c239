#!/usr/bin/env python3
"""Redis stops mid-stream and comes back (same port, same dir), while `pipecast pipe` publishes
from a slow generator and an SSE client is connected through the gateway:
  term: SIGTERM, --appendonly yes
  kill: SIGKILL, --appendonly yes --appendfsync always
The pipe must finish with exit 0 and every line 1..N must be in the stream (at least once, in
order of first appearance); the SSE client (same connection, or reconnecting with Last-Event-ID
when the gateway closed it) must see every entry of the stream exactly once, in order."""

import signal
import subprocess
import sys
import threading
import time

import pctest
from pctest import check, check_eq

N = 300
GEN_SLEEP = 0.01


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "term"
    check(mode in ("term", "kill"), "usage: test_redis_restart.py term|kill")
    extra = ["--appendonly", "yes"]
    if mode == "kill":
        extra += ["--appendfsync", "always"]
    red = pctest.PrivateRedis(extra)
    gw = pctest.Gateway(red.port, ["--ping-interval", "1"])
    ch = pctest.uniq("restart-" + mode)
    key = "pc:ch:" + ch

    # SSE client first, from the start of a channel that does not exist yet
    seen = []  # (id, data) in arrival order, across reconnects
    state = {"reconnects": 0, "err": None, "done": False}

    def sse_reader():
        deadline = time.monotonic() + 60 * pctest.SLOW
        c = None
        try:
            while time.monotonic() < deadline:
                if c is None:
                    hdr = {"Last-Event-ID": seen[-1][0]} if seen else None
                    try:
                        c = gw.sse(ch, headers=hdr, timeout=10)
                        c.read_head()
                    except (OSError, pctest.TestFailure):
                        c = None
                        time.sleep(0.3)
                        continue
                    if c.status != 200:
                        c = None
                        time.sleep(0.3)
                        continue
                try:
                    e = c.next_event(1)
                except pctest.SSETimeout:
                    continue
                except pctest.SSEClosed:
                    c.close()
                    c = None
                    state["reconnects"] += 1
                    time.sleep(0.2)
                    continue
                seen.append((e.id, e.data))
                if e.data == "line-%d" % N:
                    state["done"] = True
                    return
            state["err"] = "SSE client did not see line-%d within the time limit" % N
        except Exception as ex:
            state["err"] = "SSE client: %r" % ex
        finally:
            if c is not None:
                c.close()

    th = threading.Thread(target=sse_reader, daemon=True)
    th.start()

    pipe = pctest.pipecast_popen(["pipe", "--retry-timeout", "30", ch], redis_port=red.port,
                                 stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def generator():
        try:
            for i in range(1, N + 1):
                pipe.stdin.write(b"line-%d\n" % i)
                pipe.stdin.flush()
                time.sleep(GEN_SLEEP)
            pipe.stdin.close()
        except BrokenPipeError:
            pass

    gen = threading.Thread(target=generator, daemon=True)
    gen.start()

    time.sleep(1.0)
    sig = signal.SIGTERM if mode == "term" else signal.SIGKILL
    pctest.log("stopping redis with %s" % sig.name)
    red.stop(sig)
    check(not pctest.redis_ping(red.port), "redis still answers after %s" % sig.name)
    # while Redis is down: the gateway says so, nobody crashes
    pctest.wait_for(lambda: gw.healthz().status == 503, 5 * pctest.SLOW,
                    "/healthz to report 503 while Redis is down")
    check(pipe.poll() is None, "pipe exited while Redis was down (status %s, stderr %r)"
          % (pipe.returncode, pipe.stderr.read() if pipe.poll() is not None else b""))
    time.sleep(0.5)
    red.start()
    pctest.log("redis restarted")

    gen.join(30)
    check(not gen.is_alive(), "the generator is stuck writing to pipe's stdin")
    try:
        pipe.wait(timeout=40 * pctest.SLOW)
    except subprocess.TimeoutExpired:
        pctest.fail("pipe did not finish within 40 s after Redis came back")
    err = pipe.stderr.read()
    check_eq(pipe.returncode, 0, "pipe exit status after the Redis restart (stderr %r)" % err)

    r = red.client()
    entries = r.xrange_all(key)
    datas = [f[b"data"].decode() for _, f in entries]
    first = []
    have = set()
    for d in datas:
        if d not in have:
            have.add(d)
            first.append(d)
    want = ["line-%d" % i for i in range(1, N + 1)]
    missing = [w for w in want if w not in have]
    check(not missing, "lines lost across the Redis restart: %d (e.g. %s)"
          % (len(missing), missing[:5]))
    check_eq(first, want, "lines in order of first appearance")
    dups = len(datas) - len(first)
    pctest.log("%d entries, %d duplicates (at-least-once)" % (len(datas), dups))

    th.join(30 * pctest.SLOW)
    check(state["err"] is None, state["err"] or "")
    check(state["done"], "SSE client did not finish")
    got_ids = [i for i, _ in seen]
    want_ids = [i for i, _ in entries]
    if got_ids != want_ids:
        s = set(got_ids)
        miss = [i for i in want_ids if i not in s]
        pctest.fail("SSE client saw %d events (%d reconnects), stream has %d; missing %d "
                    "(e.g. %s), duplicates %d" % (len(got_ids), state["reconnects"],
                                                  len(want_ids), len(miss), miss[:3],
                                                  len(got_ids) - len(s)))
    pctest.log("SSE client saw every entry (%d reconnects)" % state["reconnects"])
    pctest.wait_for(lambda: gw.healthz().status == 200, 10 * pctest.SLOW,
                    "/healthz to be 200 again after Redis came back")
    gw.stop()


pctest.main(main)
