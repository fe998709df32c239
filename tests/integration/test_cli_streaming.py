#!/usr/bin/env python3
"""pipecast pipe publishes as it reads: a line is in Redis long before the next one is written;
output without a newline shows up as a partial entry after the idle flush, before EOF; a big
input goes through completely."""

import shlex
import subprocess
import time

import pctest
from pctest import check, check_eq


def run_shell(cmd):
    p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=pctest.die_with_parent)
    pctest.on_exit(lambda: p.poll() is None and (p.kill(), p.wait()))
    return p


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    pc = shlex.quote(pctest.binary("pipecast"))
    keys = []
    pctest.on_exit(lambda: r.delete(*keys) if keys else None)

    # 1. slow producer: "a" must be in Redis well before "b" is written (2 s later)
    ch = pctest.uniq("slow")
    key = "pc:ch:" + ch
    keys.append(key)
    t0 = time.monotonic()
    p = run_shell("(echo a; sleep 2; echo b) | %s pipe --redis redis://127.0.0.1:%d %s"
                  % (pc, port, shlex.quote(ch)))
    pctest.wait_for(lambda: r.xlen(key) >= 1 or p.poll() is not None, 5, "first line in Redis")
    seen = time.monotonic() - t0
    if p.poll() is not None:
        pctest.fail("pipe exited early (status %s, stderr %r)"
                    % (p.returncode, p.stderr.read()))
    check_eq(r.xlen(key), 1, "XLEN while the producer sleeps")
    check(seen < 1.5, "line 'a' reached Redis only after %.2f s (b is written at 2 s)" % seen)
    check_eq(r.xrange(key)[0][1][b"data"], b"a", "first entry")
    out, err = p.communicate(timeout=10 * pctest.SLOW)
    check_eq(p.returncode, 0, "slow producer pipe exit (stderr %r)" % err)
    check_eq([f[b"data"] for _, f in r.xrange(key)], [b"a", b"b"], "entries after EOF")

    # 2. output without a newline: published as partial=1 after the idle flush, before EOF
    ch = pctest.uniq("partial")
    key = "pc:ch:" + ch
    keys.append(key)
    t0 = time.monotonic()
    p = run_shell("(printf 'Downloading...'; sleep 1.5; printf ' done\\n') | "
                  "%s pipe --redis redis://127.0.0.1:%d %s" % (pc, port, shlex.quote(ch)))
    pctest.wait_for(lambda: r.xlen(key) >= 1 or p.poll() is not None, 5, "the partial entry")
    seen = time.monotonic() - t0
    if p.poll() is not None:
        pctest.fail("pipe exited before publishing the fragment (status %s, stderr %r)"
                    % (p.returncode, p.stderr.read()))
    check(seen < 1.2, "the fragment appeared only after %.2f s (flush-ms is 50)" % seen)
    eid, f = r.xrange(key)[0]
    check_eq(f.get(b"data"), b"Downloading...", "partial entry data")
    check_eq(f.get(b"partial"), b"1", "partial flag of the flushed fragment")
    out, err = p.communicate(timeout=10 * pctest.SLOW)
    check_eq(p.returncode, 0, "partial pipe exit (stderr %r)" % err)
    ents = r.xrange(key)
    check_eq(b"".join(f[b"data"] for _, f in ents), b"Downloading... done", "joined entries")
    check_eq(ents[-1][1].get(b"partial", b"0"), b"0", "the entry that ends the line")
    for _, f in ents[:-1]:
        check_eq(f.get(b"partial"), b"1", "entries before the end of the line")
    t = pctest.pipecast(["tail", ch], redis_port=port)
    check_eq(t.stdout, b"Downloading... done\n", "tail of the partial line")

    # exactly the brief's case: printf 'Downloading...'; sleep 1 (then EOF)
    ch = pctest.uniq("partial2")
    key = "pc:ch:" + ch
    keys.append(key)
    p = run_shell("(printf 'Downloading...'; sleep 1) | %s pipe --redis redis://127.0.0.1:%d %s"
                  % (pc, port, shlex.quote(ch)))
    pctest.wait_for(lambda: r.xlen(key) >= 1 or p.poll() is not None, 5, "the partial entry")
    check(p.poll() is None, "pipe exited before the fragment was in Redis")
    check_eq(r.xrange(key)[0][1].get(b"partial"), b"1", "partial flag before EOF")
    p.communicate(timeout=10 * pctest.SLOW)
    check_eq(p.returncode, 0, "pipe exit")
    check_eq(b"".join(f[b"data"] for _, f in r.xrange(key)), b"Downloading...", "all data")

    # 3. volume: 100000 short lines, all of them, in order
    ch = pctest.uniq("volume")
    key = "pc:ch:" + ch
    keys.append(key)
    data = b"".join(b"%d\n" % i for i in range(1, 100001))
    t0 = time.monotonic()
    p = pctest.pipecast(["pipe", ch], input=data, redis_port=port, timeout=60)
    took = time.monotonic() - t0
    check_eq(p.returncode, 0, "pipe of 100000 lines (stderr %r)" % p.stderr)
    ents = r.xrange_all(key)
    check_eq(len(ents), 100000, "XLEN after 100000 lines (pipe stderr %r)" % p.stderr)
    bad = [i for i, (_, f) in enumerate(ents) if f[b"data"] != b"%d" % (i + 1)]
    check(not bad, "entries out of order / wrong at %s" % bad[:5])
    pctest.log("100000 lines piped in %.2f s" % took)
    check(took < 20 * pctest.SLOW, "100000 lines took %.1f s" % took)


pctest.main(main)
