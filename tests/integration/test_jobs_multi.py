#!/usr/bin/env python3
"""Several runners on one queue, a runner crash, and Redis restarting under a running job
(docs/jobs.md "Runner lifecycle"). Each mode uses a private redis-server.

  spread    two runners (--slots 2 each), 20 short jobs: each ran exactly once (one `start` per
            channel, entries all acknowledged), both runners took some, neither ever held more
            than its slots at a time.
  lost      a runner is killed with SIGKILL while it runs a job: the other runner marks the job
            `lost` and publishes `exit` reason `lost` within ~40 s (heartbeat EX 15 + idle 10 s +
            5 s scan); before that, a live runner's long job (pending > 10 s) is never taken.
  redis     redis-server (appendonly, appendfsync always) is SIGKILLed while a job prints
            numbered lines slowly, then restarted on the same port: no line is lost, `exit` is
            published, the job ends `exited` 0, and the runner takes new jobs afterwards."""

import json
import signal
import sys
import time

import pctest
from pctest import check, check_eq, as_int

NUMBERS = ("import time\n"
           "for i in range(1, 401):\n"
           "    print('n-%d' % i, flush=True)\n"
           "    time.sleep(0.01)\n")

TEMPLATES = {
    "short": {"argv": ["sh", "-c", "sleep 0.3; echo done-$PIPECAST_JOB_ID"], "shell": True},
    "long": {"argv": ["sleep", "300"]},
    "numbers": {"argv": ["python3", "-c", NUMBERS]},
}


def runners_listed(gw):
    r = gw.get("/api/runners")
    check_eq(r.status, 200, "GET /api/runners (%r)" % r)
    return {x.get("id"): x for x in r.json().get("runners", [])}


def spread():
    red = pctest.PrivateRedis()
    r = red.client()
    a = pctest.Runner(red.port, TEMPLATES, ["--slots", "2"], id="rA-%d" % red.port)
    b = pctest.Runner(red.port, TEMPLATES, ["--slots", "2"], id="rB-%d" % red.port)
    gw = pctest.Gateway(red.port)
    pctest.wait_runners(gw, [a.id, b.id])
    rs = runners_listed(gw)
    for x in (a, b):
        check_eq(rs[x.id].get("slots"), 2, "GET /api/runners slots of %s" % x.id)
        check("free" in rs[x.id], "GET /api/runners: no `free` for %s: %r" % (x.id, rs[x.id]))

    r_t = gw.get("/api/templates")
    check_eq(r_t.status, 200, "GET /api/templates (%r)" % r_t)
    tpl = r_t.json().get("templates", {})
    check_eq(set(tpl), set(TEMPLATES), "GET /api/templates names")
    check_eq(sorted(tpl["short"].get("runners") or []), sorted([a.id, b.id]),
             "GET /api/templates: runners offering `short` (merged across runners)")

    jobs = [pctest.job_submit(gw, {"template": "short"}) for _ in range(20)]
    pctest.wait_for(lambda: all(pctest.job_hash(r, j["id"]).get("status") in pctest.JOB_ENDED
                                for j in jobs), 30 * pctest.SLOW, "the 20 jobs to end", 0.1)
    time.sleep(0.5)  # a second run of some job would show up here
    per_runner = {a.id: [], b.id: []}
    problems = []
    for j in jobs:
        job = pctest.job_get(gw, j["id"])
        es = pctest.channel_entries(r, j["channel"])
        starts = pctest.events_of(es, "start")
        exits = pctest.events_of(es, "exit")
        if (job["status"], as_int(job.get("code"))) != ("exited", 0):
            problems.append("%s ended %s code %r" % (j["id"], job["status"], job.get("code")))
        if len(starts) != 1 or len(exits) != 1:
            problems.append("%s: %d start and %d exit events (ran more than once?)"
                            % (j["id"], len(starts), len(exits)))
            continue
        who = starts[0].json().get("runner")
        if who not in per_runner:
            problems.append("%s: start.runner %r is neither runner" % (j["id"], who))
            continue
        if job.get("runner") != who:
            problems.append("%s: job.runner %r != start.runner %r" % (j["id"], job.get("runner"),
                                                                     who))
        if pctest.output_lines(es) != ["done-%s" % j["id"]]:
            problems.append("%s: output %r" % (j["id"], pctest.output_lines(es)))
        per_runner[who].append((pctest.id_key(starts[0].id)[0], pctest.id_key(exits[0].id)[0]))
    check(not problems, "jobs sharing the queue:\n  " + "\n  ".join(problems))
    counts = {k: len(v) for k, v in per_runner.items()}
    pctest.log("jobs per runner: %r" % counts)
    check(all(counts.values()), "both runners should have taken jobs: %r" % counts)
    for rid, iv in per_runner.items():
        peak = max(sum(1 for s0, e0 in iv if s0 <= t < e0) for t, _ in iv)
        check(peak <= 2, "runner %s ran %d jobs at once with --slots 2" % (rid, peak))
    check_eq(pctest.xpending_count(r), 0, "pending pc:jobs entries (every job acknowledged)")
    for x in (a, b):
        x.stop()
    gw.stop()


def lost():
    red = pctest.PrivateRedis()
    r = red.client()
    a = pctest.Runner(red.port, TEMPLATES, id="rA-%d" % red.port)
    gw = pctest.Gateway(red.port)
    pctest.wait_runners(gw, [a.id])
    j = pctest.job_submit(gw, {"template": "long"})
    job = pctest.job_wait(gw, j["id"], ("running",), 10)
    check_eq(job.get("runner"), a.id, "runner of the long job")
    pgid = as_int(job["pid"])
    pctest.kill_group_at_exit(pgid)
    t_run = time.monotonic()
    b = pctest.Runner(red.port, TEMPLATES, id="rB-%d" % red.port)
    pctest.wait_runners(gw, [a.id, b.id])

    # a live runner's job stays its own even when its queue entry has been pending > 10 s
    time.sleep(max(0.0, 13.0 - (time.monotonic() - t_run)))
    check_eq(pctest.job_get(gw, j["id"]).get("status"), "running",
             "a live runner's long job after 13 s (another runner must not take it)")
    es = pctest.channel_entries(r, j["channel"])
    check(not pctest.events_of(es, "exit"), "exit published for a live job: %r" % es)

    a.kill9()
    t0 = time.monotonic()
    pctest.log("runner %s killed with SIGKILL" % a.id)
    job = pctest.job_wait(gw, j["id"], timeout=45)
    took = time.monotonic() - t0
    pctest.log("job marked %s %.1f s after the runner died" % (job["status"], took))
    check_eq(job["status"], "lost", "status of the dead runner's job")
    check(took <= 40 * pctest.SLOW, "the job was reported lost only after %.1f s" % took)
    check_eq(job.get("reason"), "lost", "job reason")
    es = pctest.wait_exit_event(r, j["channel"], 5)
    ex = pctest.events_of(es, "exit")
    check_eq(len(ex), 1, "exit events of the lost job")
    exd = ex[0].json()
    check_eq((exd.get("job"), exd.get("reason"), exd.get("code")), (j["id"], "lost", None),
             "exit event of the lost job")
    check_eq(es[-1].event, "exit", "last entry of the lost job's channel")
    pctest.wait_for(lambda: pctest.xpending_count(r) == 0, 10 * pctest.SLOW,
                    "the lost job's queue entry to be acknowledged")
    rs = runners_listed(gw)
    check(a.id not in rs and b.id in rs, "GET /api/runners after the crash: %r" % sorted(rs))
    # the surviving runner still works
    j2 = pctest.job_submit(gw, {"template": "short"})
    job2 = pctest.job_wait(gw, j2["id"], timeout=15)
    check_eq((job2["status"], job2.get("runner")), ("exited", b.id), "a new job after the crash")
    b.stop()
    gw.stop()


def redis_restart():
    red = pctest.PrivateRedis(["--appendonly", "yes", "--appendfsync", "always"])
    r = red.client()
    run = pctest.Runner(red.port, TEMPLATES)
    gw = pctest.Gateway(red.port)
    pctest.wait_runners(gw, [run.id])
    j = pctest.job_submit(gw, {"template": "numbers"})
    ch = j["channel"]
    pctest.wait_channel(r, ch, lambda es: len(pctest.output_lines(es)) >= 50, 15,
                        "50 lines before the crash")
    r.close()
    red.stop(signal.SIGKILL)
    pctest.log("redis killed with SIGKILL")
    check(not pctest.redis_ping(red.port), "redis still answers after SIGKILL")
    time.sleep(1.5)
    check(run.alive(), "runner died while Redis was down:\n%s" % run.log_tail())
    red.start()
    pctest.log("redis restarted")
    r = red.client()
    es = pctest.wait_exit_event(r, ch, 40)
    lines = pctest.output_lines(es)
    seen, order = set(), []
    for l in lines:
        if l not in seen:
            seen.add(l)
            order.append(l)
    want = ["n-%d" % i for i in range(1, 401)]
    missing = [x for x in want if x not in seen]
    check(not missing, "%d lines lost across the Redis restart, e.g. %r"
          % (len(missing), missing[:10]))
    check_eq(order, want, "order of first appearance of the lines")
    dups = len(lines) - len(order)
    pctest.log("%d lines, %d duplicates (at-least-once resend)" % (len(lines), dups))
    check_eq(len(pctest.events_of(es, "start")), 1, "start events")
    check_eq(len(pctest.events_of(es, "exit")), 1, "exit events")
    check_eq(es[-1].event, "exit", "last entry")
    ex = es[-1].json()
    check_eq((ex.get("code"), ex.get("reason")), (0, "exited"), "exit event")
    pctest.wait_for(lambda: pctest.job_hash(r, j["id"]).get("status") in pctest.JOB_ENDED,
                    10 * pctest.SLOW, "the job hash to record the end")
    h = pctest.job_hash(r, j["id"])
    check_eq((h.get("status"), h.get("code")), ("exited", "0"), "job hash after the restart")
    pctest.wait_for(lambda: pctest.xpending_count(r) == 0, 10 * pctest.SLOW,
                    "the job's queue entry to be acknowledged")
    run.check_alive("after the Redis restart")
    # the runner reconnected its queue reader and heartbeat
    pctest.wait_for(lambda: run.heartbeat() is not None, 10 * pctest.SLOW, "a fresh heartbeat")
    pctest.wait_for(lambda: gw.healthz().status == 200, 10 * pctest.SLOW, "gateway /healthz 200")
    j2 = pctest.job_submit(gw, {"template": "short"})
    job2 = pctest.job_wait(gw, j2["id"], timeout=20)
    check_eq((job2["status"], as_int(job2.get("code"))), ("exited", 0),
             "a job submitted after the Redis restart")
    run.stop()
    gw.stop()


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "spread"
    fn = {"spread": spread, "lost": lost, "redis": redis_restart}.get(mode)
    check(fn is not None, "usage: test_jobs_multi.py spread|lost|redis")
    fn()


if __name__ == "__main__":
    pctest.main(main)
