#!/usr/bin/env python3
"""pipecast pipe options and failures: --event, --maxlen, --ttl, --tee, --prefix,
PIPECAST_REDIS_URL, invalid names/options (exit 2), Redis unreachable (exit 1, "not published")."""

import re
import time

import pctest
from pctest import check, check_eq


def check_usage_error(p, what, name=None):
    check_eq(p.returncode, 2, "%s: exit status (stderr %r)" % (what, p.stderr))
    err = p.stderr.decode("utf-8", "replace")
    check(err.startswith("pipecast: "), "%s: stderr should start with 'pipecast: ', got %r"
          % (what, err))
    if name is not None:
        check('channel "%s"' % name in err or name in err,
              "%s: the message should name the channel %r: %r" % (what, name, err))
        check("invalid" in err.lower(), "%s: the message should say 'invalid': %r" % (what, err))


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    keys = []

    def new(tag):
        ch = pctest.uniq(tag)
        keys.append("pc:ch:" + ch)
        return ch, "pc:ch:" + ch

    pctest.on_exit(lambda: r.delete(*keys) if keys else None)

    # --event: every entry carries the event name
    ch, key = new("event")
    p = pctest.pipecast(["pipe", "--event", "build_step-1", ch], input=b"one\ntwo\n",
                        redis_port=port)
    check_eq(p.returncode, 0, "pipe --event exit (stderr %r)" % p.stderr)
    ents = r.xrange(key)
    check_eq([(f.get(b"event"), f.get(b"data")) for _, f in ents],
             [(b"build_step-1", b"one"), (b"build_step-1", b"two")], "entries with --event")
    for bad in ["bad name", "x" * 65, "", "é"]:
        ch2, key2 = new("badevent")
        p = pctest.pipecast(["pipe", "--event", bad, ch2], input=b"x\n", redis_port=port)
        check_usage_error(p, "--event %r" % bad)
        check_eq(r.execute("EXISTS", key2), 0, "stream created despite bad --event %r" % bad)

    # --maxlen: approximate trimming keeps at least N and not much more
    ch, key = new("maxlen")
    data = b"".join(b"%d\n" % i for i in range(1, 5001))
    p = pctest.pipecast(["pipe", "--maxlen", "1000", ch], input=data, redis_port=port)
    check_eq(p.returncode, 0, "pipe --maxlen exit (stderr %r)" % p.stderr)
    n = r.xlen(key)
    check(1000 <= n <= 1200, "--maxlen 1000 after 5000 lines: XLEN %d not in [1000, 1200]" % n)
    check_eq(r.execute("XREVRANGE", key, "+", "-", "COUNT", 1)[0][1][1], b"5000", "last entry")
    info = r.execute("XINFO", "STREAM", key)
    added = dict(zip(info[0::2], info[1::2])).get(b"entries-added")
    check_eq(added, 5000, "entries-added (every line was XADDed)")

    # --maxlen 0: no trimming at all
    ch, key = new("maxlen0")
    p = pctest.pipecast(["pipe", "--maxlen", "0", ch], input=data, redis_port=port)
    check_eq(p.returncode, 0, "pipe --maxlen 0 exit (stderr %r)" % p.stderr)
    check_eq(r.xlen(key), 5000, "XLEN with --maxlen 0")

    # --ttl sets an expiry; without it the key is persistent
    ch, key = new("ttl")
    p = pctest.pipecast(["pipe", "--ttl", "100", ch], input=b"a\nb\n", redis_port=port)
    check_eq(p.returncode, 0, "pipe --ttl exit (stderr %r)" % p.stderr)
    ttl = r.execute("TTL", key)
    check(0 < ttl <= 100, "--ttl 100: TTL is %d" % ttl)
    ch, key = new("nottl")
    pctest.pipecast(["pipe", ch], input=b"a\n", redis_port=port)
    check_eq(r.execute("TTL", key), -1, "TTL without --ttl")

    # --tee: stdout is exactly stdin (binary, no final newline); Redis has the lines too
    ch, key = new("tee")
    raw = b"first\r\n\x00bin\xff\n\nlast-no-newline"
    p = pctest.pipecast(["pipe", "--tee", ch], input=raw, redis_port=port)
    check_eq(p.returncode, 0, "pipe --tee exit (stderr %r)" % p.stderr)
    check_eq(p.stdout, raw, "--tee stdout")
    check_eq([f[b"data"] for _, f in r.xrange(key)],
             [b"first", b"\x00bin\xff", b"", b"last-no-newline"], "--tee entries")

    # success is silent
    ch, key = new("quiet")
    p = pctest.pipecast(["pipe", ch], input=b"q\n", redis_port=port)
    check_eq((p.returncode, p.stdout, p.stderr), (0, b"", b""), "pipe on success: status/out/err")

    # --prefix and PIPECAST_REDIS_URL
    ch = pctest.uniq("prefix")
    keys.append("pcx:ch:" + ch)
    p = pctest.pipecast(["pipe", "--prefix", "pcx", ch], input=b"p\n",
                        env={"PIPECAST_REDIS_URL": "redis://127.0.0.1:%d/0" % port})
    check_eq(p.returncode, 0, "pipe --prefix with PIPECAST_REDIS_URL (stderr %r)" % p.stderr)
    check_eq(r.xlen("pcx:ch:" + ch), 1, "XLEN of pcx:ch:<channel>")

    # channel names: valid edge cases
    for name in ["a", "sess:1234:stderr", "A-Z.a_z:0@9", "n" * 200]:
        keys.append("pc:ch:" + name)
        r.delete("pc:ch:" + name)
        p = pctest.pipecast(["pipe", name], input=b"ok\n", redis_port=port)
        check_eq(p.returncode, 0, "pipe to valid channel %r (stderr %r)" % (name[:40], p.stderr))
        check_eq(r.xlen("pc:ch:" + name), 1, "XLEN of valid channel %r" % name[:40])
        r.delete("pc:ch:" + name)

    # invalid names: exit 2, a clear message, nothing written
    # (the keys they would have made, not DBSIZE: other tests write to this Redis in parallel)
    invalid = ["a b", "x" * 201, "a/b", "", "é", "a*b", "new\nline"]
    for name in invalid:
        p = pctest.pipecast(["pipe", name], input=b"x\n", redis_port=port)
        check_usage_error(p, "pipe to %r" % name[:40], name if name == "a b" else None)
    check_eq(r.execute("EXISTS", *["pc:ch:" + n for n in invalid]), 0,
             "keys created by invalid channel names")
    p = pctest.pipecast(["pipe", "a b"], input=b"x\n", redis_port=port)
    check('channel "a b"' in p.stderr.decode(), "message should quote the name: %r" % p.stderr)

    # bad option values and usage
    ch, key = new("badopt")
    for args in (["--maxlen", "abc"], ["--maxlen", "-5"], ["--max-line", "8"], ["--ttl", "x"],
                 ["--flush-ms", "abc"], ["--no-such-option"]):
        p = pctest.pipecast(["pipe"] + args + [ch], input=b"x\n", redis_port=port)
        check_usage_error(p, "pipe %s" % " ".join(args))
    p = pctest.pipecast(["pipe"], input=b"x\n", redis_port=port)
    check_usage_error(p, "pipe without a channel")
    p = pctest.pipecast(["--help"])
    check_eq(p.returncode, 0, "pipecast --help exit")
    check(b"pipe" in p.stdout + p.stderr, "--help should mention pipe")
    p = pctest.pipecast(["--version"])
    check_eq(p.returncode, 0, "pipecast --version exit")
    check(re.match(rb"pipecast \d+\.\d+", p.stdout), "--version output: %r" % p.stdout)

    # Redis unreachable: gives up after --retry-timeout, exit 1, says what was lost
    dead = pctest.free_port()
    ch, key = new("unreachable")
    t0 = time.monotonic()
    p = pctest.pipecast(["pipe", "--redis", "redis://127.0.0.1:%d" % dead, "--retry-timeout", "1",
                         ch], input=b"l1\nl2\nl3\n", timeout=30)
    took = time.monotonic() - t0
    err = p.stderr.decode("utf-8", "replace")
    check_eq(p.returncode, 1, "pipe to an unreachable Redis: exit status (stderr %r)" % err)
    check(err.startswith("pipecast: "), "error should start with 'pipecast: ': %r" % err)
    check("not published" in err, "error should say 'not published': %r" % err)
    check(re.search(r"\b3 lines not published", err),
          "error should count the 3 lines not published: %r" % err)
    check(took < 15 * pctest.SLOW, "--retry-timeout 1 took %.1f s to give up" % took)
    p = pctest.pipecast(["pipe", "--redis", "redis://127.0.0.1:%d" % dead, "--retry-timeout",
                         "1", ch], input=b"", timeout=30)
    check(p.returncode in (0, 1), "empty stdin with Redis down: exit %d" % p.returncode)


pctest.main(main)
