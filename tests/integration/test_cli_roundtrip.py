#!/usr/bin/env python3
"""pipe -> Redis -> tail: every byte survives (NUL, invalid UTF-8, empty lines, CRLF, a 200 KB
line split into partial chunks and reassembled by tail, a last line without newline)."""

import pctest
from pctest import check, check_eq

LONG = "x" + "é" * 100000  # 200001 bytes; odd offset so a 64 KiB cut falls inside "é"


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    ch = pctest.uniq("roundtrip")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))

    lines = [
        b"hello",
        b"a\x00b",  # NUL inside a line
        b"bad \xff\xfe utf8 \xc3",  # invalid UTF-8, truncated sequence at the end
        b"",  # an empty line
        LONG.encode(),
        b"crlf line",  # sent as "crlf line\r\n": the \r is removed
        b"cr kept\r",  # sent as "cr kept\r\r\n": only one trailing \r is removed
        "héllo ✓ 日本".encode(),
        b"last, no newline",
    ]
    stdin = (b"hello\n" + b"a\x00b\n" + b"bad \xff\xfe utf8 \xc3\n" + b"\n" + LONG.encode() + b"\n"
             + b"crlf line\r\n" + b"cr kept\r\r\n" + "héllo ✓ 日本\n".encode()
             + b"last, no newline")

    p = pctest.pipecast(["pipe", ch], input=stdin, redis_port=port)
    check_eq(p.returncode, 0, "pipecast pipe exit status (stderr: %r)" % p.stderr)
    check_eq(p.stdout, b"", "pipe stdout without --tee")

    entries = r.xrange_all(key)
    check(entries, "no entries in %s" % key)
    for eid, f in entries:
        check(b"data" in f, "entry %s has no data field: %r" % (eid, f))
        check(b"event" not in f, "entry %s has an event field without --event" % eid)
        check(f.get(b"partial", b"0") in (b"0", b"1"), "entry %s: partial=%r" % (eid, f))

    # Reassemble lines from entries: partial=1 entries continue into the next one.
    got, cur, chunks = [], b"", []
    for eid, f in entries:
        cur += f[b"data"]
        if f.get(b"partial") == b"1":
            chunks.append(f[b"data"])
            continue
        if chunks:
            chunks.append(f[b"data"])
            check(len(chunks) >= 4, "200 KB line: expected >= 4 chunks, got %d" % len(chunks))
            for c in chunks:
                check(len(c) <= 65536, "chunk of %d bytes > --max-line 65536" % len(c))
                try:
                    c.decode("utf-8")
                except UnicodeDecodeError:
                    pctest.fail("a chunk of the UTF-8 line was cut inside a sequence")
            for c in chunks[:-1]:
                check(len(c) >= 65536 - 3, "non-final chunk of only %d bytes" % len(c))
            chunks = []
        got.append(cur)
        cur = b""
    check_eq(cur, b"", "trailing partial data with no final entry")
    check_eq(len(got), len(lines), "number of lines in Redis")
    for i, (g, w) in enumerate(zip(got, lines)):
        check_eq(g, w, "line %d in Redis" % i)
    check_eq(entries[-1][1].get(b"partial", b"0"), b"0", "last line (EOF without newline) partial")

    # tail prints raw bytes, one line per entry, partial chunks joined.
    t = pctest.pipecast(["tail", ch], redis_port=port)
    check_eq(t.returncode, 0, "pipecast tail exit status (stderr: %r)" % t.stderr)
    want = b"".join(line + b"\n" for line in lines)
    if t.stdout != want:
        for i, (a, b) in enumerate(zip(t.stdout, want)):
            if a != b:
                break
        else:
            i = min(len(t.stdout), len(want))
        pctest.fail("tail output differs from the input at byte %d: got %r, want %r (lengths %d/%d)"
                    % (i, t.stdout[max(0, i - 20):i + 20], want[max(0, i - 20):i + 20],
                       len(t.stdout), len(want)))


pctest.main(main)
