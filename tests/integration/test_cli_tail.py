#!/usr/bin/env python3
"""pipecast tail: start points (--from, -n), --events, --event filter, -f follow, a missing
channel, entries without data, SIGTERM and a closed stdout end it with exit 0."""

import os
import select
import signal
import subprocess
import time

import pctest
from pctest import check, check_eq


_stash = {}


def read_line(p, timeout):
    """One line from a running tail's stdout, or what came before @timeout seconds passed."""
    fd = p.stdout.fileno()
    buf = _stash.pop(fd, b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        rl, _, _ = select.select([fd], [], [], left)
        if not rl:
            break
        c = os.read(fd, 65536)
        if not c:
            break
        buf += c
    line, nl, rest = buf.partition(b"\n")
    if rest:
        _stash[fd] = rest
    return (line + nl) or None


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    ch = pctest.uniq("tail")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))

    ids = []
    for i in range(1, 11):
        ids.append(r.xadd(key, {"data": "l%d" % i}))
    ids.append(r.xadd(key, [("event", "build"), ("data", "b1")]))
    r.xadd(key, {"foo": "no data field"})  # skipped by consumers
    ids.append(r.xadd(key, [("event", "build"), ("data", "b2")]))
    all_lines = b"".join(b"l%d\n" % i for i in range(1, 11)) + b"b1\nb2\n"

    def tail(*args):
        p = pctest.pipecast(["tail"] + list(args) + [ch], redis_port=port)
        check_eq(p.returncode, 0, "tail %s exit (stderr %r)" % (" ".join(args), p.stderr))
        return p.stdout

    check_eq(tail(), all_lines, "tail (from start)")
    check_eq(tail("--from", "start"), all_lines, "tail --from start")
    check_eq(tail("-n", "3"), b"l10\nb1\nb2\n", "tail -n 3")
    check_eq(tail("-n", "0"), b"", "tail -n 0")
    check_eq(tail("--from", ids[4]), b"l6\nl7\nl8\nl9\nl10\nb1\nb2\n", "tail --from <id of l5>")
    check_eq(tail("--from", "end"), b"", "tail --from end without -f")
    check_eq(tail("--event", "build"), b"b1\nb2\n", "tail --event build")
    ev = tail("--events", "-n", "2").split(b"\n")
    check_eq(ev, [b"%s build b1" % ids[10].encode(), b"%s build b2" % ids[11].encode(), b""],
             "tail --events -n 2")
    ev = tail("--events", "--from", ids[8]).split(b"\n")
    check_eq(ev[0], b"%s - l10" % ids[9].encode(), "tail --events (no event name -> '-')")

    # missing channel without -f: nothing, exit 0
    p = pctest.pipecast(["tail", pctest.uniq("missing")], redis_port=port)
    check_eq((p.returncode, p.stdout), (0, b""), "tail of a missing channel")

    # bad input: exit 2
    for args in (["tail", "a b"], ["tail", "--from", "abc", ch], ["tail", "-n", "-1", ch],
                 ["tail", "--from", "1-2-3", ch]):
        p = pctest.pipecast(args, redis_port=port)
        check_eq(p.returncode, 2, "%s: exit (stderr %r)" % (args, p.stderr))
        check(p.stderr.startswith(b"pipecast: "), "%s: stderr %r" % (args, p.stderr))

    # -f follows new entries; SIGTERM ends it with 0
    p = pctest.pipecast_popen(["tail", "-f", "--from", "end", ch], redis_port=port,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5 * pctest.SLOW)
    t0 = time.monotonic()
    r.xadd(key, {"data": "live-1"})
    line = read_line(p, 3 * pctest.SLOW)
    check_eq(line, b"live-1\n", "tail -f: the new entry")
    check(time.monotonic() - t0 < 2 * pctest.SLOW, "tail -f latency")
    r.xadd(key, {"data": "live-2"})
    check_eq(read_line(p, 3 * pctest.SLOW), b"live-2\n", "tail -f: the second new entry")
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5 * pctest.SLOW)
    except subprocess.TimeoutExpired:
        pctest.fail("tail -f did not stop within 5 s of SIGTERM")
    check_eq(p.returncode, 0, "tail -f exit on SIGTERM (stderr %r)" % p.stderr.read())

    # -f on a channel that does not exist yet waits for it
    ch2 = pctest.uniq("later")
    key2 = "pc:ch:" + ch2
    pctest.on_exit(lambda: r.delete(key2))
    p = pctest.pipecast_popen(["tail", "-f", ch2], redis_port=port, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    time.sleep(0.5 * pctest.SLOW)
    check(p.poll() is None, "tail -f of a missing channel exited (status %s)" % p.returncode)
    r.xadd(key2, {"data": "born"})
    check_eq(read_line(p, 3 * pctest.SLOW), b"born\n", "tail -f of a channel created later")
    p.send_signal(signal.SIGINT)
    p.wait(5 * pctest.SLOW)
    check_eq(p.returncode, 0, "tail -f exit on SIGINT")

    # closed stdout (EPIPE): `pipecast tail big | head -1` ends with 0
    ch3 = pctest.uniq("epipe")
    key3 = "pc:ch:" + ch3
    pctest.on_exit(lambda: r.delete(key3))
    r.pipeline([["XADD", key3, "*", "data", "line %d" % i] for i in range(20000)])
    p = pctest.pipecast_popen(["tail", "-f", ch3], redis_port=port, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    check_eq(read_line(p, 3 * pctest.SLOW), b"line 0\n", "first line before closing the pipe")
    p.stdout.close()
    try:
        p.wait(5 * pctest.SLOW)
    except subprocess.TimeoutExpired:
        pctest.fail("tail did not exit within 5 s after its stdout was closed")
    check_eq(p.returncode, 0, "tail exit status on EPIPE (stderr %r)" % p.stderr.read())


pctest.main(main)
