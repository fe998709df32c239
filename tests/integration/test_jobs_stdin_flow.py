#!/usr/bin/env python3
"""Job stdin flow control end to end (docs/jobs.md "Stdin flow control"): a real gateway (two
for one subtest) + runner + private redis-server.

- backpressure: a job that does not read for a while gets 64 KiB POSTs until the gateway answers
  429 with Retry-After and {"error": "stdin buffer full: N bytes waiting, max M", "pending",
  "max"} (the runner's stdin_max, 1 MiB, in the job hash); the refused chunk is sent again once
  the job reads; the job's sha256 is exactly that of the bytes answered 202, in order (the old
  runner dropped what did not fit in its 1 MiB buffer while the gateway said 202).
- cli: `pipecast jobs stdin ID --eof < 20 MB file` to a job that starts reading late: the CLI
  waits out the 429s (seen in its debug log) and the job's sha256 is the file's.
- refusals: 413 for a body larger than the job's buffer (gateway --max-body above it), 409 after
  eof (data and a second eof), 409 after the job ended; a job that closes its stdin: the bytes it
  never read are counted (stdin_dropped), told in a `stderr` entry, then 409.
- accounting: at the end of every job stdin_accepted = stdin_written + stdin_dropped (nothing
  left pending); a job killed with unread stdin tells how many bytes were dropped, before `exit`.
- restart: an on-failure restart reopens stdin for the next attempt (409 in between is allowed).
- uncredited: control messages XADDed by another producer (no credit) still reach the job; what
  does not fit in the runner's 1 MiB for them is told in a `stderr` entry.
- two gateways posting concurrently never together exceed the buffer, and `wc -c` counts
  exactly the bytes they accepted.
- stalled runner: 12000 one-byte POSTs while the runner is SIGSTOPped (its control stream grows
  past 10000 entries): nothing is trimmed from the control stream, and once the runner goes on
  `wc -c` counts exactly the bytes answered 202 (the old gateway's MAXLEN ~ 10000 cut unread
  entries: the job printed about 10010); a 429 is allowed (each message is charged).
- trimmed control stream: entries cut from the stream before the runner read them (a gap in
  their `seq`) end the job's stdin as `lost`: the bytes are counted dropped and told, none of the
  later ones is written.
- uncredited flood: many uncredited messages for a job whose stdin is closed are told in a few
  `stderr` entries (their total), not one entry per message."""

import hashlib
import json
import os
import random
import re
import signal
import threading
import time

import pctest
from pctest import check, check_eq, job_submit, job_wait

MIB = 1024 * 1024
CHUNK = 65536
PIPE_MAX = 1024 * 1024  # generous bound on what a pipe (or a pty) absorbs from the runner

TEMPLATES = {
    "late_sha": {"argv": ["sh", "-c", 'sleep "$1"; exec sha256sum', "sh", "{delay}"],
                 "shell": True,
                 "params": {"delay": {"type": "int", "min": 0, "max": 60, "default": "0"}}},
    "late_wc": {"argv": ["sh", "-c", 'sleep "$1"; exec wc -c', "sh", "{delay}"], "shell": True,
                "params": {"delay": {"type": "int", "min": 0, "max": 60, "default": "0"}}},
    "wc": {"argv": ["wc", "-c"]},
    "sleeper": {"argv": ["sleep", "60"]},
    "closer": {"argv": ["sh", "-c", "exec 0<&-; echo closed; exec sleep 60"], "shell": True},
    "once": {"argv": ["sh", "-c", 'read x; echo "got $x"; exit 1'], "shell": True,
             "restart": {"policy": "on-failure", "max_attempts": 2, "backoff_ms": 300}},
}

FULL_RE = re.compile(r"^stdin buffer full: (\d+) bytes waiting, max (\d+)$")


def post(gw, jid, data, eof=False):
    return pctest.job_stdin(gw, jid, data, eof)


def post_until_taken(gw, jid, data, eof=False, timeout=30):
    """POST until it is not 429 (the job reads meanwhile); returns the final Response."""
    deadline = time.monotonic() + timeout * pctest.SLOW
    while True:
        r = post(gw, jid, data, eof)
        if r.status != 429 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def stdin_fields(r, jid):
    h = pctest.job_hash(r, jid)
    return {k: h.get(k) for k in ("stdin_max", "stdin_accepted", "stdin_written",
                                  "stdin_dropped", "stdin_closed")}


def num(v):
    return int(v) if v not in (None, "") else 0


def api_stdin(gw, jid):
    """The "stdin" object of GET /api/jobs/<id>."""
    res = gw.get("/api/jobs/" + jid)
    check_eq(res.status, 200, "GET /api/jobs/%s" % jid)
    return res.json().get("stdin")


def check_settled(s, jid, accepted, what, dropped=0):
    """At the job's end: every accepted byte is written or counted dropped; none pending; the
    job object's "stdin" says the same as the hash."""
    f = stdin_fields(s.r, jid)
    check_eq((num(f["stdin_accepted"]), num(f["stdin_written"]) + num(f["stdin_dropped"]),
              num(f["stdin_dropped"])), (accepted, accepted, dropped),
             "%s: stdin_accepted, stdin_written + stdin_dropped, stdin_dropped at the end (%r)"
             % (what, f))
    check_eq(api_stdin(s.gw, jid),
             {"max": int(f["stdin_max"]) if f["stdin_max"] else None, "accepted": accepted,
              "written": accepted - dropped, "dropped": dropped, "pending": 0,
              "closed": f["stdin_closed"] or None},
             "%s: \"stdin\" of GET /api/jobs/<id> at the end" % what)
    return f


def sha_line(es):
    lines = pctest.output_lines(es)
    check(len(lines) == 1 and re.match(r"^[0-9a-f]{64}  -$", lines[0]),
          "sha256sum output: %r" % lines[:5])
    return lines[0][:64]


def wait_end(s, j, timeout=60):
    job = job_wait(s.gw, j["id"], timeout=timeout)
    es = pctest.wait_exit_event(s.r, j["channel"], 15)
    return job, es


def check_error(res, status, pattern, what):
    pctest.check_json_error(res, status, what)
    msg = res.json().get("error", "")
    check(re.search(pattern, msg), "%s: error %r should match %r" % (what, msg, pattern))


def backpressure(s):
    j = job_submit(s.gw, {"template": "late_sha", "args": {"delay": "4"}})
    jid = j["id"]
    job_wait(s.gw, jid, ("running",), 15)
    rnd = random.Random(1)
    accepted, refused = [], None
    for _ in range(64):  # 4 MiB: far beyond the buffer; the old gateway said 202 to all of it
        chunk = rnd.randbytes(CHUNK)
        res = post(s.gw, jid, chunk)
        if res.status == 202:
            check_eq(res.json(), {"written": CHUNK}, "202 answer")
            accepted.append(chunk)
            continue
        refused = (res, chunk)
        break
    f = stdin_fields(s.r, jid)
    pending = num(f["stdin_accepted"]) - num(f["stdin_written"]) - num(f["stdin_dropped"])
    st = api_stdin(s.gw, jid)
    check(st["max"] == MIB and st["closed"] is None and st["accepted"] >= num(f["stdin_accepted"])
          and 0 <= st["pending"] <= MIB, "\"stdin\" of a job with a full buffer: %r (hash %r)"
          % (st, f))
    if refused is not None:
        res, chunk = refused
        check_eq(res.status, 429, "the POST that did not fit: status (%r)" % res)
        ra = res.header("Retry-After")
        check(ra is not None and ra.isdigit() and int(ra) >= 1,
              "429 without a valid Retry-After: %r" % ra)
        body = res.json()
        m = FULL_RE.match(body.get("error", ""))
        check(m, "429 error text: %r" % body)
        check_eq((int(m.group(1)), int(m.group(2))), (body.get("pending"), body.get("max")),
                 "429 pending / max fields match the text")
        check_eq(body["max"], MIB, "429 max: the runner's stdin_max")
        check(body["pending"] + CHUNK > body["max"], "429 although %d + %d fits in %d"
              % (body["pending"], CHUNK, body["max"]))
        check_eq(f["stdin_max"], str(MIB), "stdin_max in the job hash")
        check(0 <= pending <= MIB, "pending stdin %d outside 0..%d (%r)" % (pending, MIB, f))
        check(MIB - CHUNK <= sum(map(len, accepted)) <= MIB + PIPE_MAX,
              "bytes accepted before the 429: %d" % sum(map(len, accepted)))
        # the refused chunk goes through once the job reads: none of it went in before
        res = post_until_taken(s.gw, jid, chunk)
        check_eq(res.status, 202, "the refused chunk, sent again once the job reads (%r)" % res)
        accepted.append(chunk)
    tail = rnd.randbytes(1000)
    res = post_until_taken(s.gw, jid, tail, eof=True)
    check_eq(res.status, 202, "last piece with eof (%r)" % res)
    accepted.append(tail)
    job, es = wait_end(s, j)
    check_eq((job["status"], pctest.as_int(job.get("code"))), ("exited", 0), "late_sha status")
    want = hashlib.sha256(b"".join(accepted)).hexdigest()
    check_eq(sha_line(es), want, "sha256 of every byte answered 202 (%d bytes), in order"
             % sum(map(len, accepted)))
    check(refused is not None, "no 429 after %d bytes to a job that does not read: the gateway "
          "accepts what the runner cannot hold" % sum(map(len, accepted)))
    f = check_settled(s, jid, sum(map(len, accepted)), "late_sha")
    check_eq(f["stdin_closed"], "eof", "stdin_closed after eof")
    check_eq(pctest.events_of(es, "stderr"), [], "no stderr entries (nothing dropped)")


def cli_big(s):
    size = 20 * MIB
    data = random.Random(2).randbytes(size)
    j = job_submit(s.gw, {"template": "late_sha", "args": {"delay": "2"}})
    job_wait(s.gw, j["id"], ("running",), 15)
    url = "http://127.0.0.1:%d" % s.gw.port
    t = time.monotonic()
    p = pctest.pipecast(["jobs", "stdin", j["id"], "--eof", "--json", "--log-level", "debug"],
                        input=data, timeout=120, env={"PIPECAST_GATEWAY": url})
    took = time.monotonic() - t
    err = p.stderr.decode("utf-8", "replace")
    check_eq(p.returncode, 0, "pipecast jobs stdin of 20 MB (stderr %s)" % err[-800:])
    check_eq(json.loads(p.stdout), {"written": size}, "--json written")
    check("stdin buffer full" in err, "the CLI should have met a full buffer (429) while the "
          "job was not reading yet: %s" % err[-600:])
    job, es = wait_end(s, j)
    check_eq((job["status"], pctest.as_int(job.get("code"))), ("exited", 0), "status")
    check_eq(sha_line(es), hashlib.sha256(data).hexdigest(), "sha256 of the 20 MB sent by the CLI")
    check_settled(s, j["id"], size, "cli 20 MB")
    pctest.log("     20 MB through `pipecast jobs stdin` in %.1f s" % took)

    # a job that reads at once: the same path without waiting
    data = data[:5 * MIB]
    j = job_submit(s.gw, {"template": "late_sha"})
    job_wait(s.gw, j["id"], ("running",), 15)
    p = pctest.pipecast(["jobs", "stdin", j["id"], "--eof"], input=data, timeout=60,
                        env={"PIPECAST_GATEWAY": url})
    check_eq(p.returncode, 0, "jobs stdin of 5 MB (%r)" % p.stderr[-400:])
    job, es = wait_end(s, j)
    check_eq(sha_line(es), hashlib.sha256(data).hexdigest(), "sha256 of 5 MB")
    check_settled(s, j["id"], len(data), "cli 5 MB")

    # a gateway whose --max-body is below the CLI's 64 KiB pieces: 413, smaller pieces
    gw3 = pctest.Gateway(s.redis.port, ["--max-body", "20000"])
    data = data[:300000]
    j = job_submit(gw3, {"template": "wc"})
    job_wait(gw3, j["id"], ("running",), 15)
    p = pctest.pipecast(["jobs", "stdin", j["id"], "--eof", "--json"], input=data, timeout=60,
                        env={"PIPECAST_GATEWAY": "http://127.0.0.1:%d" % gw3.port})
    check_eq((p.returncode, p.stdout), (0, b'{"written":300000}\n'),
             "jobs stdin through a gateway with --max-body 20000 (%r)" % p.stderr[-400:])
    job, es = wait_end(s, j)
    check_eq(pctest.output_lines(es), ["300000"], "wc -c after pieces cut to --max-body")
    gw3.stop()


def refusals(s):
    # 413: larger than the job's stdin buffer (this gateway takes bodies up to 4 MiB; above
    # --max-body is test_jobs_api's)
    j = job_submit(s.gw, {"template": "sleeper"})
    jid = j["id"]
    job_wait(s.gw, jid, ("running",), 15)
    check_error(post(s.gw, jid, b"z" * (MIB + 1)), 413,
                r"larger than the job's stdin buffer \(1048576 bytes\)", "body above stdin_max")
    check_eq(num(stdin_fields(s.r, jid)["stdin_accepted"]), 0, "nothing accepted by the 413s")
    # exactly the buffer fits; then nothing more while the job does not read
    check_eq(post(s.gw, jid, b"b" * MIB).status, 202, "a body of exactly stdin_max")
    total = MIB
    for _ in range(PIPE_MAX // CHUNK + 1):  # the pipe takes some; then the buffer is full
        res = post(s.gw, jid, b"x" * CHUNK)
        if res.status != 202:
            break
        total += CHUNK
    check_eq(res.status, 429, "more while the job does not read (%r)" % res)
    # eof: later data and a second eof are refused
    check_eq(post(s.gw, jid, b"", eof=True).status, 202, "eof")
    check_error(post(s.gw, jid, b"more"), 409, r"stdin is closed \(eof was sent\)",
                "data after eof")
    check_error(post(s.gw, jid, b"", eof=True), 409, r"stdin is closed", "a second eof")
    # kill: the bytes the job never read are told, before `exit`, and counted
    check_eq(pctest.job_kill(s.gw, jid).status, 202, "kill")
    job, es = wait_end(s, j)
    f = stdin_fields(s.r, jid)
    dropped = num(f["stdin_dropped"])
    check(total - PIPE_MAX <= dropped <= total and dropped > 0,
          "stdin_dropped after a kill with unread stdin: %r" % f)
    check_settled(s, jid, total, "sleeper", dropped)
    notes = [e for e in pctest.events_of(es, "stderr") if b"bytes of stdin" in e.data]
    check_eq([e.data for e in notes],
             [b"pipecast: %d bytes of stdin were not written: the job ended first" % dropped],
             "the stderr entry telling the dropped bytes")
    check(es.index(notes[0]) < es.index(pctest.events_of(es, "exit")[0]),
          "the dropped-bytes entry comes before `exit`")
    check_error(post(s.gw, jid, b"late"), 409, r"not running", "stdin after the end")

    # a job that closes its stdin and keeps running
    j = job_submit(s.gw, {"template": "closer"})
    jid = j["id"]
    pctest.wait_channel(s.r, j["channel"], lambda es: "closed" in pctest.output_lines(es), 15,
                        "the job to close its stdin")
    check_eq(post(s.gw, jid, b"abc").status, 202, "POST before the runner knows")
    es = pctest.wait_channel(s.r, j["channel"],
                             lambda es: any(b"bytes of stdin" in e.data for e in es), 15,
                             "the dropped-bytes entry")
    check_eq([e.data for e in pctest.events_of(es, "stderr")],
             [b"pipecast: 3 bytes of stdin were not written: the job closed its stdin"],
             "stderr entry for a closed stdin")
    f = stdin_fields(s.r, jid)
    check_eq((f["stdin_closed"], f["stdin_dropped"], f["stdin_accepted"]), ("closed", "3", "3"),
             "hash after the job closed its stdin")
    check_error(post(s.gw, jid, b"again"), 409, r"stdin is closed \(the job closed it\)",
                "POST after the job closed its stdin")
    pctest.job_kill(s.gw, jid)
    wait_end(s, j)
    check_settled(s, jid, 3, "closer", 3)

    # ended: a short job
    j = job_submit(s.gw, {"template": "wc"})
    job_wait(s.gw, j["id"], ("running",), 15)
    check_eq(post(s.gw, j["id"], b"12345", eof=True).status, 202, "wc: data + eof")
    job, es = wait_end(s, j)
    check_eq(pctest.output_lines(es), ["5"], "wc -c")
    check_settled(s, j["id"], 5, "wc")
    check_error(post(s.gw, j["id"], b"x"), 409, r"not running", "POST after exit")


def restart(s):
    j = job_submit(s.gw, {"template": "once"})
    jid = j["id"]
    job_wait(s.gw, jid, ("running",), 15)
    check_eq(post(s.gw, jid, b"one\n").status, 202, "stdin of attempt 1")
    pctest.wait_channel(s.r, j["channel"], lambda es: len(pctest.events_of(es, "start")) == 2,
                        20, "the second attempt")
    deadline = time.monotonic() + 10 * pctest.SLOW
    while True:  # 409 until the second attempt's running transition reopened stdin
        res = post(s.gw, jid, b"two\n")
        if res.status == 202:
            break
        check_error(res, 409, r"stdin is closed|not running", "between attempts")
        check(time.monotonic() < deadline, "stdin not reopened for attempt 2: %r" % res)
        time.sleep(0.05)
    job, es = wait_end(s, j)
    check_eq(pctest.output_lines(es), ["got one", "got two"], "each attempt read its own stdin")
    check_settled(s, jid, 8, "restarted job")


def uncredited(s):
    """Control messages written by other producers (no credit): still delivered, and bytes that
    do not fit are told in the channel."""
    ctl = "pc:ctl:" + s.runner.id
    j = job_submit(s.gw, {"template": "late_wc", "args": {"delay": "3"}})
    jid = j["id"]
    job_wait(s.gw, jid, ("running",), 15)
    s.r.xadd(ctl, {"type": "stdin", "job": jid, "data": b"h" * 600000})
    s.r.xadd(ctl, {"type": "stdin", "job": jid, "data": b"i" * 600000})  # 1 MiB apart: refused
    check_eq(post(s.gw, jid, b"12345").status, 202, "credited bytes next to uncredited ones")
    es = pctest.wait_channel(s.r, j["channel"],
                             lambda es: any(b"bytes of stdin" in e.data for e in es), 15,
                             "the refused uncredited bytes to be told")
    check_eq([e.data for e in pctest.events_of(es, "stderr")],
             [b"pipecast: 600000 bytes of stdin were not written: the runner's buffer for stdin "
              b"without credit is full"], "stderr entry for refused uncredited bytes")
    s.r.xadd(ctl, {"type": "eof", "job": jid})
    job, es = wait_end(s, j)
    check_eq(pctest.output_lines(es, "stdout"), ["600005"], "wc -c: uncredited + credited bytes")
    f = check_settled(s, jid, 5, "uncredited")
    check_eq(f["stdin_closed"], "eof", "stdin_closed after an eof written by another producer")


def two_gateways(s):
    gw2 = pctest.Gateway(s.redis.port)
    j = job_submit(s.gw, {"template": "late_wc", "args": {"delay": "6"}})
    jid = j["id"]
    job_wait(s.gw, jid, ("running",), 15)
    lock = threading.Lock()
    got = {"accepted": 0, "refused": 0, "other": []}

    def worker(gw, seed):
        rnd = random.Random(seed)
        for _ in range(40):
            res = post(gw, jid, rnd.randbytes(CHUNK))
            with lock:
                if res.status == 202:
                    got["accepted"] += CHUNK
                elif res.status == 429:
                    got["refused"] += 1
                    return
                else:
                    got["other"].append(res)
                    return

    ts = [threading.Thread(target=worker, args=(g, i)) for i, g in
          enumerate([s.gw, gw2, s.gw, gw2])]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check_eq(got["other"], [], "answers other than 202 / 429")
    check(got["refused"] == 4, "every poster should end on a 429: %r" % got)
    check(got["accepted"] <= MIB + PIPE_MAX,
          "two gateways together accepted %d bytes for a job that does not read" % got["accepted"])
    check_eq(post_until_taken(gw2, jid, b"", eof=True).status, 202, "eof")
    job, es = wait_end(s, j)
    check_eq(pctest.output_lines(es), [str(got["accepted"])], "wc -c of what both accepted")
    check_settled(s, jid, got["accepted"], "two gateways")
    gw2.stop()


def stalled_runner(s):
    """More small POSTs than the old MAXLEN (10000) while the runner does not read."""
    ctl = "pc:ctl:" + s.runner.id
    j = job_submit(s.gw, {"template": "wc"})
    jid = j["id"]
    job_wait(s.gw, jid, ("running",), 15)
    n, nthreads = 12000, 4
    lock = threading.Lock()
    got = {"accepted": 0, "refused": 0, "other": []}

    def worker():
        for _ in range(n // nthreads):
            res = post(s.gw, jid, b"x")
            with lock:
                if res.status == 202:
                    got["accepted"] += 1
                elif res.status == 429:
                    got["refused"] += 1
                else:
                    got["other"].append(res)
                    return

    pid = s.runner.proc.pid
    os.kill(pid, signal.SIGSTOP)
    t = time.monotonic()
    try:
        ts = [threading.Thread(target=worker) for _ in range(nthreads)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        xlen = s.r.xlen(ctl)
    finally:
        os.kill(pid, signal.SIGCONT)
    pctest.log("     %d POSTs in %.1f s while the runner was stopped: %r, control stream %d"
               % (n, time.monotonic() - t, got, xlen))
    check_eq(got["other"], [], "answers other than 202 / 429")
    check(got["accepted"] > 10000, "fewer than 10001 one-byte POSTs accepted: %r" % got)
    check(xlen >= got["accepted"], "the control stream holds %d entries for %d accepted POSTs: "
          "unread entries were trimmed" % (xlen, got["accepted"]))
    check_eq(post_until_taken(s.gw, jid, b"", eof=True).status, 202, "eof")
    job, es = wait_end(s, j)
    check_eq(pctest.output_lines(es, "stdout"), [str(got["accepted"])],
             "wc -c: every byte answered 202 while the runner was stopped")
    check_settled(s, jid, got["accepted"], "stalled runner")
    check_eq(pctest.events_of(es, "stderr"), [], "no stderr entries (nothing dropped)")


def trimmed_ctl(s):
    """Entries cut from the control stream before the runner read them: stdin ends as lost."""
    ctl = "pc:ctl:" + s.runner.id
    j = job_submit(s.gw, {"template": "wc"})
    jid = j["id"]
    job_wait(s.gw, jid, ("running",), 15)
    check_eq(post(s.gw, jid, b"ab").status, 202, "first piece")
    pctest.wait_for(lambda: num(stdin_fields(s.r, jid)["stdin_written"]) == 2, 10 * pctest.SLOW,
                    "the first piece written")
    pid = s.runner.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for piece in (b"cde", b"fgh", b"ijk"):
            check_eq(post(s.gw, jid, piece).status, 202, "piece %r" % piece)
        s.r.execute("XTRIM", ctl, "MAXLEN", "1")  # only "ijk" is left unread
    finally:
        os.kill(pid, signal.SIGCONT)
    es = pctest.wait_channel(s.r, j["channel"],
                             lambda es: any(b"bytes of stdin" in e.data for e in es), 15,
                             "the lost bytes to be told")
    f = stdin_fields(s.r, jid)
    dropped = num(f["stdin_dropped"])
    # the runner's blocked XREAD may have taken "cde" before the trim
    check(dropped in (6, 9), "stdin_dropped after a gap: %r" % f)
    check_eq(f["stdin_closed"], "lost", "stdin_closed after a gap in the control stream")
    check_eq([e.data for e in pctest.events_of(es, "stderr")],
             [b"pipecast: %d bytes of stdin were not written: control messages for the job were "
              b"lost before the runner read them" % dropped], "stderr entry for the gap")
    check_error(post(s.gw, jid, b"more"), 409, r"stdin is closed|not running",
                "POST after the gap")
    job, es = wait_end(s, j)
    check_eq(pctest.output_lines(es, "stdout"), [str(11 - dropped)],
             "wc -c: only the bytes before the gap")
    check_settled(s, jid, 11, "trimmed control stream", dropped)


def uncredited_flood(s):
    """Uncredited messages for a job whose stdin is closed: told as a total, not one by one."""
    ctl = "pc:ctl:" + s.runner.id
    j = job_submit(s.gw, {"template": "closer"})
    jid = j["id"]
    pctest.wait_channel(s.r, j["channel"], lambda es: "closed" in pctest.output_lines(es), 15,
                        "the job to close its stdin")
    check_eq(post(s.gw, jid, b"abc").status, 202, "POST before the runner knows")
    pctest.wait_channel(s.r, j["channel"],
                        lambda es: any(b"bytes of stdin" in e.data for e in es), 15,
                        "the dropped-bytes entry")
    s.r.pipeline([["XADD", ctl, "*", "type", "stdin", "job", jid, "data", b"u" * 10]] * 200)
    told_re = re.compile(rb"^pipecast: (\d+) bytes of stdin were not written: its stdin is closed$")

    def told(es):
        return [int(m.group(1)) for m in (told_re.match(e.data) for e in
                                          pctest.events_of(es, "stderr")) if m]

    es = pctest.wait_channel(s.r, j["channel"], lambda es: sum(told(es)) >= 2000, 15,
                             "the 2000 uncredited bytes to be told")
    check_eq(sum(told(es)), 2000, "uncredited bytes told")
    check(len(told(es)) <= 3, "one stderr entry per message instead of a total: %d entries"
          % len(told(es)))
    pctest.job_kill(s.gw, jid)
    wait_end(s, j)


def main():
    only = os.environ.get("PC_SUBTESTS")  # e.g. PC_SUBTESTS=stalled_runner,trimmed_ctl
    s = pctest.JobSetup(TEMPLATES, gw_args=["--max-body", str(4 * MIB)])
    subtests = [backpressure, cli_big, refusals, restart, uncredited, two_gateways,
                stalled_runner, trimmed_ctl, uncredited_flood]
    if only:
        subtests = [f for f in subtests if f.__name__ in only.split(",")]
    pctest.run_subtests(subtests, s)
    s.gw.check_alive("after the stdin tests")
    s.runner.check_alive("after the stdin tests")
    s.gw.stop()
    s.runner.stop()


if __name__ == "__main__":
    pctest.main(main)
