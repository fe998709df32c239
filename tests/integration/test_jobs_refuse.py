#!/usr/bin/env python3
"""A job's end must reach Redis before its queue entry is acknowledged, and lost-job detection
must see every pending entry. Each mode uses a private redis-server.

  oom       Redis refuses writes (CONFIG SET maxmemory, noeviction) while a job ends: the
            runner keeps retrying the `exit` event and the final HSET until Redis accepts them
            again (maxmemory reset after a few seconds), and only then XACKs. Output lines it
            had to drop are counted in the exit JSON (`lines_dropped`) and told on `stderr`.
  pending   more than 100 entries pending (runner A: 105 long jobs, all its slots), runner B
            takes the 106th and is killed with SIGKILL: A pages through XPENDING and reports
            B's job `lost` within ~40 s."""

import sys
import time

import pctest
from pctest import check, check_eq, as_int

TEMPLATES = {
    "ending": {"argv": ["sh", "-c", "sleep 2; echo line-a; echo line-b; exit 3"], "shell": True},
    "short": {"argv": ["sh", "-c", "echo ok"], "shell": True},
    "long": {"argv": ["sleep", "300"]},
}


def oom():
    s = pctest.JobSetup(TEMPLATES)
    j = pctest.job_submit(s.gw, {"template": "ending"})
    job = pctest.job_wait(s.gw, j["id"], ("running",), 10)
    pctest.kill_group_at_exit(as_int(job["pid"]))
    time.sleep(0.5)
    s.r.execute("CONFIG", "SET", "maxmemory", "1")
    t0 = time.monotonic()
    try:
        # the job ends (at ~2 s) while Redis refuses every write
        time.sleep(6)
        h = pctest.job_hash(s.r, j["id"])
        check_eq(h.get("status"), "running", "job status while Redis refuses writes")
        check_eq(pctest.xpending_count(s.r), 1,
                 "the queue entry must stay pending while the job's end is not in Redis")
        check(not pctest.events_of(pctest.channel_entries(s.r, j["channel"]), "exit"),
              "an exit event while Redis refused writes?")
    finally:
        s.r.execute("CONFIG", "SET", "maxmemory", "0")
    pctest.log("maxmemory reset after %.1f s" % (time.monotonic() - t0))

    job = pctest.job_wait(s.gw, j["id"], timeout=30)
    check_eq((job["status"], as_int(job.get("code")), job.get("reason")), ("exited", 3, "exited"),
             "job status once Redis accepts writes again")
    es = pctest.wait_exit_event(s.r, j["channel"], 10)
    ex = pctest.events_of(es, "exit")
    check_eq(len(ex), 1, "exit events")
    check_eq(es[-1].event, "exit", "last entry of the channel")
    exd = ex[0].json()
    check_eq((exd.get("code"), exd.get("reason")), (3, "exited"), "exit event")
    out = pctest.output_lines(es)
    dropped = exd.get("lines_dropped", 0)
    pctest.log("stdout %r, lines_dropped %r" % (out, dropped))
    check(set(out) <= {"line-a", "line-b"}, "stdout %r" % out)
    check(len(set(out)) + dropped >= 2, "lines neither published nor counted: stdout %r, "
          "lines_dropped %r" % (out, dropped))
    notes = [l for l in pctest.output_lines(es, "stderr") if "dropped" in l]
    if dropped:
        check(notes, "lines_dropped %d but no stderr notice: %r" % (dropped, es))
    pctest.wait_for(lambda: pctest.xpending_count(s.r) == 0, 10 * pctest.SLOW,
                    "the queue entry to be acknowledged")
    # the runner still works
    job, es = s.run({"template": "short"})
    check_eq((job["status"], pctest.output_lines(es)), ("exited", ["ok"]), "a job afterwards")
    s.runner.stop()
    s.gw.stop()


def pending():
    n = 105
    red = pctest.PrivateRedis()
    r = red.client()
    a = pctest.Runner(red.port, TEMPLATES, ["--slots", str(n)], id="rA-%d" % red.port)
    gw = pctest.Gateway(red.port)
    pctest.wait_runners(gw, [a.id])
    ids = [pctest.job_submit(gw, {"template": "long"})["id"] for _ in range(n)]
    for jid in ids:
        job = pctest.job_wait(gw, jid, ("running",), 30)
        pctest.kill_group_at_exit(as_int(job["pid"]))
    b = pctest.Runner(red.port, TEMPLATES, ["--slots", "1"], id="rB-%d" % red.port)
    pctest.wait_runners(gw, [a.id, b.id])
    j = pctest.job_submit(gw, {"template": "long"})
    job = pctest.job_wait(gw, j["id"], ("running",), 10)
    check_eq(job.get("runner"), b.id, "runner of the 106th job (A has all slots busy)")
    pctest.kill_group_at_exit(as_int(job["pid"]))
    check_eq(pctest.xpending_count(r), n + 1, "pending entries")

    b.kill9()
    t0 = time.monotonic()
    pctest.log("runner %s killed with SIGKILL" % b.id)
    job = pctest.job_wait(gw, j["id"], timeout=60)
    took = time.monotonic() - t0
    pctest.log("job marked %s %.1f s after the runner died" % (job["status"], took))
    check_eq((job["status"], job.get("reason")), ("lost", "lost"), "the dead runner's job")
    check(took <= 40 * pctest.SLOW, "the job was reported lost only after %.1f s" % took)
    ex = pctest.events_of(pctest.wait_exit_event(r, j["channel"], 5), "exit")
    check_eq([e.json().get("reason") for e in ex], ["lost"], "exit event of the lost job")
    pctest.wait_for(lambda: pctest.xpending_count(r) == n, 10 * pctest.SLOW,
                    "the lost job's queue entry to be acknowledged")
    for jid in ids[:3] + ids[-3:]:
        check_eq(pctest.job_get(gw, jid).get("status"), "running", "A's job %s" % jid)
    a.stop()
    gw.stop()


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "oom"
    fn = {"oom": oom, "pending": pending}.get(mode)
    check(fn is not None, "usage: test_jobs_refuse.py oom|pending")
    fn()


if __name__ == "__main__":
    pctest.main(main)
