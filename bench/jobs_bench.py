#!/usr/bin/env python3
"""bench/jobs_bench.py -- the job-path benchmarks of issue #3, run by hand (never by CI):

  1. job request -> first output line on an SSE client (POST /api/jobs, then the first `stdout` event
     on a stream opened before the POST), N rounds: p50 / p90 / max;
  2. one runner, 200 concurrent jobs each printing 100 lines/s for 10 s: every line published, in
     order per job; runner CPU and peak RSS;
  3. single job output throughput into Redis (`cat` of a 100-byte-line file) vs `pipecast pipe` of the
     same file: MB/s and the ratio, medians of several rounds.

Uses the real binaries of a release build (bench/run-core.sh builds it) and the integration test
helpers (private redis-server, gateway, runner). Prints a Markdown section; with --write it is
appended to docs/benchmarks.md.

    python3 bench/jobs_bench.py [--rounds 5] [--jobs 200] [--write]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("PC_BIN", os.path.join(ROOT, "build", "release", "bin"))
import pctest  # noqa: E402

TEMPLATES = {
    "hello": {"argv": ["echo", "hello"]},
    "ticker": {"argv": ["python3", "-u", "-c",
                        "import sys,time\n"
                        "n=int(sys.argv[1]); t0=time.monotonic()\n"
                        "for i in range(n):\n"
                        "    d=t0+i*0.01-time.monotonic()\n"
                        "    d>0 and time.sleep(d)\n"
                        "    print(i, flush=True)\n", "{n}"],
               "params": {"n": {"type": "int", "min": 1, "max": 1000000}}},
    "cat": {"argv": ["cat", "{path}"],
            "params": {"path": {"type": "string", "pattern": "^/tmp/[A-Za-z0-9_./-]+$"}}},
}


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def bench_first_line(setup, rounds):
    lat = []
    for i in range(rounds):
        ch = "bench-first-%d-%d" % (os.getpid(), i)
        sse = pctest.sse_open(setup.gw, ch)
        t0 = time.monotonic()
        pctest.job_submit(setup.gw, {"template": "hello", "channel": ch})
        while True:
            ev = sse.next_event(timeout=10)
            if ev.event == "stdout":
                lat.append((time.monotonic() - t0) * 1000)
                break
        sse.close()
    return lat


def bench_concurrent(setup, njobs, seconds):
    n = seconds * 100
    pid = setup.runner.pid
    c0 = cpu_seconds(pid)
    t0 = time.monotonic()
    jobs = [pctest.job_submit(setup.gw, {"template": "ticker", "args": {"n": str(n)},
                                         "channel": "bench-conc-%d-%d" % (os.getpid(), k)})
            for k in range(njobs)]
    for j in jobs:
        pctest.job_wait(setup.gw, j["id"], timeout=seconds * 10 + 60)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pid) - c0
    bad = 0
    for j in jobs:
        es = setup.r.xrange_all("pc:ch:" + j["channel"])
        got = [int(e[1][b"data"]) for e in es if e[1].get(b"event") == b"stdout"]
        if got != list(range(n)):
            bad += 1
    return {"jobs": njobs, "lines_per_job": n, "wall_s": wall, "runner_cpu_s": cpu,
            "runner_cpu_pct": 100 * cpu / wall, "bad_jobs": bad,
            "lines_per_s": njobs * n / wall, "runner_hwm_kb": setup.runner.vm_hwm_kb()}


def bench_throughput(setup, rounds, mb):
    path = tempfile.mktemp(prefix="pc-bench-", dir="/tmp")
    line = b"x" * 99 + b"\n"
    with open(path, "wb") as f:
        f.write(line * (mb * 10000))
    size = os.path.getsize(path)
    job_rates, pipe_rates = [], []
    try:
        for i in range(rounds):
            ch = "bench-tp-%d-%d" % (os.getpid(), i)
            t0 = time.monotonic()
            j = pctest.job_submit(setup.gw, {"template": "cat", "args": {"path": path},
                                             "channel": ch})
            pctest.job_wait(setup.gw, j["id"], timeout=600)
            job_rates.append(size / (time.monotonic() - t0) / 1e6)
            setup.r.delete("pc:ch:" + ch)
            t0 = time.monotonic()
            with open(path, "rb") as f:
                subprocess.run([pctest.binary("pipecast"), "pipe", "--redis", setup.redis.url(),
                                ch + "-pipe"], stdin=f, check=True)
            pipe_rates.append(size / (time.monotonic() - t0) / 1e6)
            setup.r.delete("pc:ch:" + ch + "-pipe")
    finally:
        os.unlink(path)
    return job_rates, pipe_rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    subprocess.run(["cmake", "--preset", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", "--preset", "release"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)

    setup = pctest.JobSetup(TEMPLATES, runner_args=["--slots", str(max(8, a.jobs + 8))],
                            gw_args=["--log-level", "warn"])
    lat = bench_first_line(setup, max(20, a.rounds * 10))
    conc = bench_concurrent(setup, a.jobs, a.seconds)
    job_rates, pipe_rates = bench_throughput(setup, a.rounds, a.mb)
    jm, pm = statistics.median(job_rates), statistics.median(pipe_rates)

    cmd = "python3 bench/jobs_bench.py --rounds %d --jobs %d --seconds %d --mb %d%s" % (
        a.rounds, a.jobs, a.seconds, a.mb, " --write" if a.write else "")
    out = []
    out.append("")
    out.append("## Jobs — %s" % time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()))
    out.append("")
    out.append("Machine: %d cores, %s %s; load generators and jobs on the same cores."
               % (os.cpu_count(), platform.system(), platform.release()))
    out.append("Command: `%s` (release build, loopback, private redis-server, one runner, one gateway)." % cmd)
    out.append("")
    out.append("| measure | result | goal |")
    out.append("|---|---|---|")
    out.append("| job request → first output line on an SSE client (%d jobs) | p50 %.1f ms, p90 %.1f ms, max %.1f ms | p50 ≤ 10 ms |"
               % (len(lat), statistics.median(lat), pct(lat, 0.9), max(lat)))
    out.append("| %d concurrent jobs × 100 lines/s × %d s | %d of %d jobs complete and in order; %.0f lines/s; runner CPU %.0f%% of one core; runner peak RSS %d KB | every line, in order |"
               % (conc["jobs"], a.seconds, conc["jobs"] - conc["bad_jobs"], conc["jobs"],
                  conc["lines_per_s"], conc["runner_cpu_pct"], conc["runner_hwm_kb"]))
    out.append("| single job output into Redis (`cat` of %d MB of 100-byte lines), median of %d | %.1f MB/s | `pipecast pipe` same file: %.1f MB/s → ratio %.2f |"
               % (a.mb, a.rounds, jm, pm, jm / pm))
    out.append("")
    out.append("Rounds: first-line ms %s; job MB/s %s; pipe MB/s %s."
               % (" ".join("%.1f" % x for x in lat), " ".join("%.1f" % x for x in job_rates),
                  " ".join("%.1f" % x for x in pipe_rates)))
    text = "\n".join(out) + "\n"
    print(text)
    if a.write:
        with open(os.path.join(ROOT, "docs", "benchmarks.md"), "a") as f:
            f.write(text)
    pctest.run_cleanups()


if __name__ == "__main__":
    main()
