#!/usr/bin/env python3
"""pipecast run: a local command's output and lifecycle in its channel, its exit code kept.

start / stdout / stderr / exit entries (order within each stream, separation by event, exit last);
exit codes and signals (3, 143, 130 after Ctrl-C); 20000 lines printed in the last millisecond all
in Redis before `exit`; a missing executable (127, `failed to start`); --pty makes a
block-buffering program's lines visible as they are printed (and without --pty they only come at
exit), without a trailing CR; stdin passed through; a partial line published before exit; an
invalid channel (exit 2) and an unreachable Redis (exit 1) never run the command; Redis lost for
longer than --retry-timeout: the command is killed and run exits 1 with the count."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pctest
from pctest import check, check_eq

PY = sys.executable or "python3"


class Ctx:
    def __init__(self, port):
        self.port = port
        self.r = pctest.Redis(port)
        self.keys = []
        pctest.on_exit(lambda: self.r.delete(*self.keys) if self.keys else None)

    def channel(self, name):
        ch = pctest.uniq("run-" + name)
        self.keys.append("pc:ch:" + ch)
        return ch, "pc:ch:" + ch

    def run(self, ch, cmd, opts=(), input=b"", timeout=60):
        return pctest.pipecast(["run", "--channel", ch] + list(opts) + ["--"] + list(cmd),
                               input=input, redis_port=self.port, timeout=timeout)

    def popen(self, ch, cmd, opts=(), **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return pctest.pipecast_popen(["run", "--channel", ch] + list(opts) + ["--"] + list(cmd),
                                     redis_port=self.port, **kw)

    def entries(self, key):
        """[(event str, data bytes, partial bool)]"""
        out = []
        for _, f in self.r.xrange_all(key):
            out.append((f.get(b"event", b"").decode(), f.get(b"data"), f.get(b"partial") == b"1"))
        return out


def events_of(ents, name):
    return [d for e, d, _ in ents if e == name]


def check_lifecycle(ents, what):
    """start first, exit last, exactly one of each; returns (start JSON, exit JSON)."""
    check(len(ents) >= 2, "%s: at least start and exit, got %r" % (what, ents[:5]))
    check_eq(ents[0][0], "start", "%s: first entry's event" % what)
    check_eq(ents[-1][0], "exit", "%s: last entry's event" % what)
    check_eq(len(events_of(ents, "start")), 1, "%s: number of start entries" % what)
    check_eq(len(events_of(ents, "exit")), 1, "%s: number of exit entries" % what)
    start = json.loads(ents[0][1].decode("utf-8"))
    ex = json.loads(ents[-1][1].decode("utf-8"))
    return start, ex


def test_order_and_separation(c):
    ch, key = c.channel("order")
    script = "i=1; while [ $i -le 50 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
    p = c.run(ch, ["sh", "-c", script])
    check_eq(p.returncode, 0, "order: exit status (stderr %r)" % p.stderr[-300:])
    ents = c.entries(key)
    start, ex = check_lifecycle(ents, "order")
    check_eq(events_of(ents, "stdout"), [b"out%d" % i for i in range(1, 51)], "stdout entries")
    check_eq(events_of(ents, "stderr"), [b"err%d" % i for i in range(1, 51)], "stderr entries")
    check_eq(set(e for e, _, _ in ents), {"start", "stdout", "stderr", "exit"}, "event names")
    # start: {"job", "pid", "argv", "runner", "host", "attempt"}
    check_eq(start.get("job"), None, "start.job")
    check(isinstance(start.get("pid"), int) and start["pid"] > 0, "start.pid: %r" % start)
    check_eq(start.get("argv"), ["sh", "-c", script], "start.argv")
    check(isinstance(start.get("host"), str) and start["host"], "start.host: %r" % start)
    # exit: {"job", "code", "signal", "reason", "duration_ms"}
    check_eq((ex.get("code"), ex.get("signal"), ex.get("reason")), (0, None, "exited"),
             "exit code/signal/reason")
    check(isinstance(ex.get("duration_ms"), int) and ex["duration_ms"] >= 0, "exit: %r" % ex)
    # output passed through, separately; the channel name on stderr first
    check_eq(p.stdout, b"".join(b"out%d\n" % i for i in range(1, 51)), "stdout passed through")
    err = p.stderr.decode()
    check(err.startswith("pipecast: channel %s\n" % ch), "stderr starts with the channel: %r"
          % err[:200])
    check_eq(err[len("pipecast: channel %s\n" % ch):],
             "".join("err%d\n" % i for i in range(1, 51)), "stderr passed through")

    # --quiet: nothing passed through, the channel still printed, entries the same
    ch, key = c.channel("quiet")
    p = c.run(ch, ["sh", "-c", "echo o; echo e >&2"], opts=["--quiet"])
    check_eq((p.returncode, p.stdout), (0, b""), "--quiet: status and stdout")
    check_eq(p.stderr, b"pipecast: channel %s\n" % ch.encode(), "--quiet: stderr")
    ents = c.entries(key)
    check_eq((events_of(ents, "stdout"), events_of(ents, "stderr")), ([b"o"], [b"e"]),
             "--quiet: entries")


def test_exit_codes(c):
    ch, key = c.channel("code3")
    p = c.run(ch, ["sh", "-c", "echo bye; exit 3"])
    check_eq(p.returncode, 3, "exit 3 passed through (stderr %r)" % p.stderr)
    _, ex = check_lifecycle(c.entries(key), "exit 3")
    check_eq((ex["code"], ex["signal"], ex["reason"]), (3, None, "exited"), "exit event of exit 3")

    ch, key = c.channel("sigterm")
    p = c.run(ch, ["sh", "-c", "echo before; kill -TERM $$; echo after"])
    check_eq(p.returncode, 143, "killed by SIGTERM: 128+15 (stderr %r)" % p.stderr)
    ents = c.entries(key)
    _, ex = check_lifecycle(ents, "SIGTERM")
    check_eq((ex["code"], ex["signal"], ex["reason"]), (None, 15, "killed"), "exit event of TERM")
    check_eq(events_of(ents, "stdout"), [b"before"], "output before the signal")


def test_flood_at_exit(c):
    # 20000 lines on each stream written in one go right before exiting
    ch, key = c.channel("flood")
    n = 20000
    prog = ("import os\n"
            "os.write(2, b''.join(b'e%%d\\n' %% i for i in range(%d)))\n"
            "os.write(1, b''.join(b'o%%d\\n' %% i for i in range(%d)))\n"
            "os._exit(0)\n" % (n, n))
    p = c.run(ch, [PY, "-c", prog], opts=["--quiet"], timeout=120)
    check_eq(p.returncode, 0, "flood: exit status (stderr %r)" % p.stderr[-300:])
    ents = c.entries(key)
    check_lifecycle(ents, "flood")
    check_eq(len(ents), 2 * n + 2, "flood: entries (start + lines + exit)")
    check(events_of(ents, "stdout") == [b"o%d" % i for i in range(n)], "flood: stdout in order")
    check(events_of(ents, "stderr") == [b"e%d" % i for i in range(n)], "flood: stderr in order")
    check(not any(pa for _, _, pa in ents), "flood: no partial entries")


def test_missing_executable(c):
    ch, key = c.channel("missing")
    p = c.run(ch, ["pc-no-such-command-xyz", "arg"])
    err = p.stderr.decode("utf-8", "replace")
    check_eq(p.returncode, 127, "missing executable: exit status (stderr %r)" % err)
    check("pc-no-such-command-xyz" in err and "No such file" in err,
          "the error is on stderr: %r" % err)
    ents = c.entries(key)
    check_eq([e for e, _, _ in ents], ["exit"], "missing executable: entries")
    ex = json.loads(ents[0][1])
    check_eq((ex["code"], ex["signal"], ex["reason"]), (None, None, "failed to start"),
             "exit event of a missing executable")
    check("pc-no-such-command-xyz" in ex.get("error", ""), "exit.error: %r" % ex)


def stdout_times(c, key):
    """(start ms, [(data, ms) of stdout entries], exit ms): Redis' own clock, from the ids."""
    start = end = None
    lines = []
    for eid, f in c.r.xrange_all(key):
        ms = pctest.id_key(eid)[0]
        ev = f.get(b"event")
        if ev == b"start":
            start = ms
        elif ev == b"exit":
            end = ms
        elif ev == b"stdout":
            lines.append((f[b"data"], ms))
    check(start is not None and end is not None, "start and exit entries in %s" % key)
    return start, lines, end


def test_pty(c):
    # Python block-buffers stdout on a pipe; on a pty it line-buffers. The lines are printed
    # 600 ms apart: with --pty they reach Redis 600 ms apart, the last one 600 ms before the
    # exit; without, all of them together when the program exits, 1.8 s after its start.
    prog = ("import time\n"
            "for i in range(3):\n"
            "    print('line%d' % i)\n"
            "    time.sleep(0.6)\n")
    want = [b"line0", b"line1", b"line2"]
    # ctest sets PYTHONUNBUFFERED for the tests themselves: not for this program
    py = ["env", "-u", "PYTHONUNBUFFERED", PY, "-c", prog]

    ch, key = c.channel("pty")
    p = c.run(ch, py, opts=["--pty"])
    check_eq(p.returncode, 0, "--pty: exit status (stderr %r)" % p.stderr)
    ents = c.entries(key)
    check_lifecycle(ents, "--pty")
    check_eq(events_of(ents, "stdout"), want, "--pty: stdout entries (no trailing CR)")
    check_eq(p.stdout, b"line0\nline1\nline2\n", "--pty: output passed through without CR")
    _, lines, end = stdout_times(c, key)
    times = [ms for _, ms in lines] + [end]
    gaps = [b - a for a, b in zip(times, times[1:])]
    check(min(gaps) >= 300, "--pty: each line must reach Redis when printed, 600 ms apart "
          "(gaps line0-line1-line2-exit: %r ms)" % gaps)

    ch, key = c.channel("nopty")
    p = c.run(ch, py)
    check_eq(p.returncode, 0, "without --pty: exit status (stderr %r)" % p.stderr)
    start, lines, end = stdout_times(c, key)
    check_eq([d for d, _ in lines], want, "without --pty: stdout entries")
    first, last = lines[0][1], lines[-1][1]
    check(first - start >= 1500 and last - first < 300,
          "without --pty the block-buffered lines come only at the exit: %r ms after start, "
          "within %r ms" % (first - start, last - first))

    # stderr goes through the pty too: merged into `stdout`
    ch, key = c.channel("ptyerr")
    p = c.run(ch, ["sh", "-c", "echo a; echo b >&2"], opts=["--pty"])
    check_eq(p.returncode, 0, "--pty stderr: exit status")
    check_eq(events_of(c.entries(key), "stdout"), [b"a", b"b"], "--pty: stderr merged")


def test_stdin(c):
    ch, key = c.channel("stdin")
    p = c.run(ch, ["cat"], input=b"hi\n")
    check_eq((p.returncode, p.stdout), (0, b"hi\n"), "echo hi | run -- cat: status and output")
    check_eq(events_of(c.entries(key), "stdout"), [b"hi"], "cat: entries")

    # EOF reaches the command (sort prints only then), and a larger input goes through whole
    ch, key = c.channel("sort")
    data = b"".join(b"%06d\n" % i for i in range(50000, 0, -1))
    p = c.run(ch, ["sort"], input=data, opts=["--quiet"])
    check_eq(p.returncode, 0, "sort: exit status (stderr %r)" % p.stderr)
    got = events_of(c.entries(key), "stdout")
    check_eq(len(got), 50000, "sort: lines")
    check(got == [b"%06d" % i for i in range(1, 50001)], "sort: output sorted and complete")

    # a command that never reads its stdin does not hang run
    ch, key = c.channel("noread")
    p = c.run(ch, ["true"], input=b"x" * 300000)
    check_eq(p.returncode, 0, "a command that ignores its stdin")


def test_partial(c):
    ch, key = c.channel("partial")
    p = c.popen(ch, ["sh", "-c", "printf 'Downloading...'; sleep 1"])
    pctest.wait_for(lambda: events_of(c.entries(key), "stdout") or p.poll() is not None, 10,
                    "the partial entry")
    check(p.poll() is None, "run exited before the fragment was in Redis")
    ents = c.entries(key)
    check_eq([e for e, _, _ in ents], ["start", "stdout"], "entries while the command sleeps")
    check_eq(ents[1][1:], (b"Downloading...", True), "partial entry data and flag")
    out, _ = p.communicate(timeout=10 * pctest.SLOW)
    check_eq((p.returncode, out), (0, b"Downloading..."), "partial: status and output")
    ents = c.entries(key)
    check_lifecycle(ents, "partial")
    check_eq(b"".join(events_of(ents, "stdout")), b"Downloading...", "partial: all data")


def test_refusals(c, marker_dir):
    marker = os.path.join(marker_dir, "ran")
    cmd = ["sh", "-c", "touch %s" % marker]

    for bad in ["a b", "", "x/y", "n" * 201]:
        p = pctest.pipecast(["run", "--channel", bad, "--"] + cmd, redis_port=c.port)
        check_eq(p.returncode, 2, "invalid channel %r: exit status (stderr %r)" % (bad[:20],
                                                                                    p.stderr))
        check(p.stderr.startswith(b"pipecast: "), "invalid channel: message %r" % p.stderr)
        check(not os.path.exists(marker), "the command ran despite the invalid channel")

    p = pctest.pipecast(["run", "--channel", "ok"], redis_port=c.port)
    check_eq(p.returncode, 2, "run without a command: exit status")
    p = pctest.pipecast(["run", "--bogus", "--", "true"], redis_port=c.port)
    check_eq(p.returncode, 2, "run with an unknown option: exit status")
    p = pctest.pipecast(["run", "--help"])
    check_eq(p.returncode, 0, "run --help")
    check(b"--pty" in p.stdout, "run --help mentions --pty")

    dead = pctest.free_port()
    t0 = time.monotonic()
    p = pctest.pipecast(["run", "--redis", "redis://127.0.0.1:%d" % dead, "--"] + cmd)
    err = p.stderr.decode("utf-8", "replace")
    check_eq(p.returncode, 1, "Redis unreachable: exit status (stderr %r)" % err)
    check("127.0.0.1:%d" % dead in err and "not running" in err, "Redis unreachable: %r" % err)
    check(not os.path.exists(marker), "the command ran although Redis is unreachable")
    check(time.monotonic() - t0 < 10 * pctest.SLOW, "Redis unreachable: not failing fast")

    # the command's own options are not ours
    ch, key = c.channel("opts")
    p = c.run(ch, ["sh", "-c", "echo \"$@\"", "sh", "--channel", "-q"])
    check_eq((p.returncode, p.stdout), (0, b"--channel -q\n"), "options after the command")


def test_default_channel_and_sigint(c):
    p = pctest.pipecast_popen(["run", "--redis", "redis://127.0.0.1:%d" % c.port, "--",
                               "sleep", "30"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stderr.readline().decode()
    m = re.match(r"pipecast: channel (run:[A-Za-z0-9._:@-]+:(\d+))\n$", line)
    check(m, "default channel line: %r" % line)
    check_eq(int(m.group(2)), p.pid, "default channel ends with run's pid")
    key = "pc:ch:" + m.group(1)
    c.keys.append(key)
    pctest.wait_for(lambda: c.entries(key), 10, "the start entry")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)  # what Ctrl-C does: passed on to the command
    p.communicate(timeout=10 * pctest.SLOW)
    check_eq(p.returncode, 130, "Ctrl-C: 128+2")
    check(time.monotonic() - t0 < 5 * pctest.SLOW, "SIGINT was not passed on promptly")
    _, ex = check_lifecycle(c.entries(key), "SIGINT")
    check_eq((ex["code"], ex["signal"], ex["reason"]), (None, 2, "killed"), "exit event of INT")


def test_redis_lost(marker_dir):
    """Redis gone for longer than --retry-timeout while the command floods: the command blocks
    (bounded memory), then is killed; run exits 1 and says how much was not published."""
    priv = pctest.PrivateRedis()
    pidfile = os.path.join(marker_dir, "yes.pid")
    p = pctest.pipecast_popen(["run", "--redis", priv.url(), "--channel", "lost", "--quiet",
                               "--retry-timeout", "1", "--buffer-lines", "1000", "--",
                               "sh", "-c", "echo $$ > %s; exec yes" % pidfile],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    pctest.wait_for(lambda: priv.client().xlen("pc:ch:lost") > 1000, 10, "the flood in Redis")
    priv.stop(signal.SIGKILL)
    time.sleep(0.5)
    if p.poll() is None and pctest.SLOW == 1.0:
        with open("/proc/%d/status" % p.pid) as f:
            rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS:")][0]
        check(rss < 100 * 1024, "run's RSS while Redis is away: %d KB" % rss)
    out, err = p.communicate(timeout=30 * pctest.SLOW)
    err = err.decode("utf-8", "replace")
    check_eq(p.returncode, 1, "Redis lost: exit status (stderr %r)" % err)
    check(re.search(r"\b\d+ entries not published", err), "Redis lost: the count: %r" % err)
    with open(pidfile) as f:
        child = int(f.read())
    check(not os.path.exists("/proc/%d" % child), "the command still runs after the give-up")


def main():
    port = pctest.fixture_redis()
    c = Ctx(port)
    marker_dir = tempfile.mkdtemp(prefix="pc-run-")
    pctest.on_exit(lambda: subprocess.call(["rm", "-rf", marker_dir]))
    test_order_and_separation(c)
    test_exit_codes(c)
    test_flood_at_exit(c)
    test_missing_executable(c)
    test_pty(c)
    test_stdin(c)
    test_partial(c)
    test_refusals(c, marker_dir)
    test_default_channel_and_sigint(c)
    test_redis_lost(marker_dir)


pctest.main(main)
