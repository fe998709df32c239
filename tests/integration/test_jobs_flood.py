#!/usr/bin/env python3
"""Job output floods through the real runner (private Redis, jobs submitted via the gateway).

  big [LINES]   one job prints LINES (default 2,000,000) 100-byte lines (~200 MB) as fast as it
                can: all of them reach Redis (XINFO STREAM entries-added = LINES + start + exit,
                the retained tail is consecutive and ends with the last line, then `exit`), the
                job exits 0, and the runner's peak RSS (VmHWM) stays under 64 MB: backpressure,
                not buffering. The test trims the stream as it goes (XTRIM MAXLEN ~) to keep
                Redis small; entries-added is not affected by trimming.
  concurrent    50 jobs each print 16 lines per ms for 2 s (32,000 lines each) at the same time:
                every line of every job is in its channel, in order, once; one start, one exit."""

import sys
import threading
import time

import pctest
from pctest import check, check_eq, as_int

RSS_LIMIT_KB = 64 * 1024

# awk -v: a BEGIN-only program never reads operands, so N=... must come through -v
FLOOD = ("awk -v N=\"$1\" 'BEGIN{p=sprintf(\"%90s\",\"\"); gsub(/ /,\"x\",p); "
         "for(i=1;i<=N;i++) printf \"%s %09d\\n\", p, i}'")

BURST = r"""
import os, sys, time
tag = os.environ["PIPECAST_JOB_ID"]
ms_total, per_ms = int(sys.argv[1]), int(sys.argv[2])
w, fl = sys.stdout.write, sys.stdout.flush
t0 = time.monotonic()
k = 0
for ms in range(ms_total):
    w("".join(["%s %d\n" % (tag, k + i) for i in range(per_ms)]))
    fl()
    k += per_ms
    d = t0 + (ms + 1) / 1000.0 - time.monotonic()
    if d > 0:
        time.sleep(d)
"""

TEMPLATES = {
    "flood": {"argv": ["sh", "-c", FLOOD, "sh", "{lines}"], "shell": True,
              "params": {"lines": {"type": "int", "min": 1, "max": 100000000, "required": True}}},
    "burst": {"argv": ["python3", "-c", BURST, "{ms}", "{per_ms}"],
              "params": {"ms": {"type": "int", "min": 1, "max": 100000, "required": True},
                         "per_ms": {"type": "int", "min": 1, "max": 1000, "required": True}}},
}


def big(n):
    # awk writes 4 KiB blocks that split lines; a runner starved of CPU for more than --flush-ms
    # would publish the half line as a `partial` entry (correct, but then entries-added is not
    # n + 2). A long idle flush keeps this test exact on a loaded machine.
    s = pctest.JobSetup(TEMPLATES, ["--flush-ms", "5000"])
    ch = pctest.uniq("flood")
    key = pctest.channel_key(ch)
    tag = "x" * 90
    t0 = time.monotonic()
    j = pctest.job_submit(s.gw, {"template": "flood", "args": {"lines": str(n)}, "channel": ch})

    stop = threading.Event()
    trim = {"n": 0, "err": None}

    def trimmer():
        r = s.redis.client()
        try:
            while not stop.wait(0.3):
                trim["n"] += r.execute("XTRIM", key, "MAXLEN", "~", 200000)
        except Exception as e:
            trim["err"] = repr(e)
    th = threading.Thread(target=trimmer, daemon=True)
    th.start()
    hwm = [0]

    def ended():
        k = s.runner.vm_hwm_kb()
        if k:
            hwm[0] = max(hwm[0], k)
        j2 = pctest.job_get(s.gw, j["id"])
        return j2 if j2.get("status") in pctest.JOB_ENDED else None
    job = pctest.wait_for(ended, 90 * pctest.SLOW, "the %d-line flood job to end" % n, 0.25)
    took = time.monotonic() - t0
    stop.set()
    th.join(5)
    check(trim["err"] is None, "trimmer: %s" % trim["err"])
    s.runner.check_alive("after the flood")
    hwm[0] = max(hwm[0], s.runner.vm_hwm_kb() or 0)
    mb = n * 101 / 1e6
    pctest.log("flood: %d lines (%.0f MB) in %.1f s = %.1f MB/s; runner VmHWM %d kB; trimmed %d"
               % (n, mb, took, mb / took, hwm[0], trim["n"]))

    check_eq((job["status"], as_int(job.get("code"))), ("exited", 0), "flood job status, code")
    es_tail = pctest.wait_exit_event(s.r, ch, 10)
    info = pctest.xinfo_stream(s.r, key)
    added = info.get("entries-added")
    res = pctest.check_numbered_channel(s.r, key, tag)
    check_eq(res["bad"], "", "retained flood lines (consecutive, exact text)")
    check_eq(res["last"], n, "last retained line number")
    check_eq(res["last_event"], "exit", "last entry of the channel")
    check_eq(res["exits"], 1, "exit events")
    check_eq(res["others"], 0, "entries other than start/stdout/exit (stderr?)")
    check_eq(added, n + 2, "XINFO STREAM entries-added (= %d lines + start + exit; retained tail "
             "had %d partial chunks)" % (n, res["partials"]))
    check(hwm[0] and hwm[0] < RSS_LIMIT_KB * pctest.SLOW,
          "runner peak RSS (VmHWM) %d kB, limit %d kB: output is buffered instead of "
          "back-pressured" % (hwm[0], RSS_LIMIT_KB * pctest.SLOW))
    ex = es_tail[-1].json()
    check_eq((ex.get("code"), ex.get("reason")), (0, "exited"), "exit event")
    s.runner.stop()
    s.gw.stop()


def concurrent(njobs=50, ms=2000, per_ms=16):
    s = pctest.JobSetup(TEMPLATES, ["--slots", str(njobs + 14)])
    t0 = time.monotonic()
    jobs = [pctest.job_submit(s.gw, {"template": "burst",
                                     "args": {"ms": str(ms), "per_ms": str(per_ms)}})
            for _ in range(njobs)]
    pctest.log("submitted %d jobs in %.2f s" % (njobs, time.monotonic() - t0))
    ends = {}
    hwm = [0]

    def all_ended():
        k = s.runner.vm_hwm_kb()
        if k:
            hwm[0] = max(hwm[0], k)
        for j in jobs:
            if j["id"] not in ends:
                st = pctest.job_hash(s.r, j["id"]).get("status")
                if st in pctest.JOB_ENDED:
                    ends[j["id"]] = st
        return len(ends) == njobs
    pctest.wait_for(all_ended, 90 * pctest.SLOW, "all %d burst jobs to end" % njobs, 0.25)
    took = time.monotonic() - t0
    total = njobs * ms * per_ms
    pctest.log("%d jobs x %d lines in %.1f s (%.0f lines/s); runner VmHWM %d kB"
               % (njobs, ms * per_ms, took, total / took, hwm[0]))
    s.runner.check_alive("after the bursts")

    intervals = []
    bad = []
    for j in jobs:
        job = pctest.job_get(s.gw, j["id"])
        if (job["status"], as_int(job.get("code"))) != ("exited", 0):
            bad.append("%s: %s code %s" % (j["id"], job["status"], job.get("code")))
            continue
        key = pctest.channel_key(j["channel"])
        res = pctest.check_numbered_channel(s.r, key, j["id"], 0)
        want = {"lines": ms * per_ms, "first": 0, "last": ms * per_ms - 1, "starts": 1,
                "exits": 1, "others": 0, "bad": "", "last_event": "exit"}
        got = {k: res[k] for k in want}
        if got != want:
            bad.append("%s: %r" % (j["id"], {k: v for k, v in got.items() if want[k] != v}))
        first = s.r.xrange(key, "-", "+", 1)
        last = s.r.execute("XREVRANGE", key, "+", "-", "COUNT", 1)
        if first and last:
            intervals.append((pctest.id_key(first[0][0])[0], pctest.id_key(last[0][0])[0]))
    check(not bad, "%d of %d jobs lost, reordered or mangled lines:\n  %s"
          % (len(bad), njobs, "\n  ".join(bad[:10])))
    # were they really concurrent? (start ms vs exit ms)
    peak = max(sum(1 for a, b in intervals if a <= t < b) for t, _ in intervals)
    pctest.log("peak concurrency %d of %d" % (peak, njobs))
    check(peak >= njobs // 2, "only %d of %d jobs ran at the same time" % (peak, njobs))
    check(hwm[0] < 2 * RSS_LIMIT_KB * pctest.SLOW,
          "runner peak RSS %d kB with %d flooding jobs" % (hwm[0], njobs))
    check_eq(pctest.xpending_count(s.r), 0, "pending pc:jobs entries")
    s.runner.stop()
    s.gw.stop()


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "big"
    if mode == "big":
        big(int(sys.argv[2]) if len(sys.argv) > 2 else 2000000)
    elif mode == "concurrent":
        concurrent()
    else:
        pctest.fail("usage: test_jobs_flood.py big [LINES] | concurrent")


if __name__ == "__main__":
    pctest.main(main)
