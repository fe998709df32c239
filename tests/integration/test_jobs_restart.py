#!/usr/bin/env python3
"""Restart policy `on-failure` (docs/jobs.md "Templates", "Events") with the real runner:
  - a template that fails twice then succeeds (a counter file in a temp dir) runs 3 attempts:
    start/exit per attempt with `attempt` 1..3, a `restart` event (attempt, backoff_ms) before
    each new start, the backoff respected, every attempt's output before its exit; final state
    exited 0 with attempt 3; the command ran exactly 3 times;
  - max_attempts bounds the attempts (a job that always fails: 2 attempts, final code 7);
  - a killed job is not restarted; policy `never` runs once."""

import os
import shutil
import tempfile
import time

import pctest
from pctest import check, check_eq, as_int

TMP = tempfile.mkdtemp(prefix="pc-restart-")
pctest.on_exit(lambda: shutil.rmtree(TMP, ignore_errors=True))
COUNTER = os.path.join(TMP, "counter")
FLAKY = ('n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; '
         'echo attempt-$n; echo oops-$n >&2; [ "$n" -ge 3 ]')
BACKOFF = 300

TEMPLATES = {
    "flaky": {"argv": ["sh", "-c", FLAKY, "sh", COUNTER], "shell": True,
              "restart": {"policy": "on-failure", "max_attempts": 5, "backoff_ms": BACKOFF}},
    "alwaysfail": {"argv": ["sh", "-c", "echo try; exit 7"], "shell": True,
                   "restart": {"policy": "on-failure", "max_attempts": 2, "backoff_ms": 100}},
    "worker": {"argv": ["sleep", "300"],
               "restart": {"policy": "on-failure", "max_attempts": 5, "backoff_ms": 100}},
    "never": {"argv": ["sh", "-c", "exit 4"], "shell": True, "restart": {"policy": "never"}},
}


def lifecycle(es):
    return [e for e in es if e.event in ("start", "exit", "restart")]


def final_job(s, jid, attempts):
    """The job object once it has ended with its last attempt."""
    def ok():
        j = pctest.job_get(s.gw, jid)
        return j if (j.get("status") in pctest.JOB_ENDED and
                     as_int(j.get("attempt")) == attempts) else None
    return pctest.wait_for(ok, 15 * pctest.SLOW, "job %s to end at attempt %d (now %r)"
                           % (jid, attempts, pctest.job_get(s.gw, jid)), 0.05)


def t_flaky(s):
    j = pctest.job_submit(s.gw, {"template": "flaky"})
    es = pctest.wait_exit_event(s.r, j["channel"], 30, count=3)
    job = final_job(s, j["id"], 3)
    time.sleep(BACKOFF / 1000.0 + 0.5)  # no 4th attempt
    es = pctest.channel_entries(s.r, j["channel"])
    lc = lifecycle(es)
    check_eq([e.event for e in lc],
             ["start", "exit", "restart", "start", "exit", "restart", "start", "exit"],
             "lifecycle events of a job failing twice")
    data = [e.json() for e in lc]
    check_eq([d.get("attempt") for d in data], [1, 1, 2, 2, 2, 3, 3, 3], "attempt fields")
    check(all(d.get("job") == j["id"] for d in data), "job field of every event: %r" % data)
    ex = [d for e, d in zip(lc, data) if e.event == "exit"]
    check_eq([(d.get("code"), d.get("reason")) for d in ex],
             [(1, "exited"), (1, "exited"), (0, "exited")], "exit events code/reason")
    rs = [(e, d) for e, d in zip(lc, data) if e.event == "restart"]
    for i, (e, d) in enumerate(rs):
        bo = d.get("backoff_ms")
        check(isinstance(bo, int) and bo >= BACKOFF, "restart.backoff_ms %r (template %d)"
              % (bo, BACKOFF))
        nxt = lc[lc.index(e) + 1]
        gap = pctest.id_key(nxt.id)[0] - pctest.id_key(e.id)[0]
        check(gap >= bo - 20, "attempt %d started %d ms after its restart event (backoff %d)"
              % (d.get("attempt"), gap, bo))
    check_eq(pctest.output_lines(es), ["attempt-1", "attempt-2", "attempt-3"], "stdout")
    check_eq(pctest.output_lines(es, "stderr"), ["oops-1", "oops-2", "oops-3"], "stderr")
    # every attempt's output is in the channel before that attempt's exit
    pos = {e.data.decode(): i for i, e in enumerate(es) if e.event in ("stdout", "stderr")}
    exits = [i for i, e in enumerate(es) if e.event == "exit"]
    for n in (1, 2, 3):
        check(pos["attempt-%d" % n] < exits[n - 1] and pos["oops-%d" % n] < exits[n - 1],
              "output of attempt %d after its exit event" % n)
        if n > 1:
            check(pos["attempt-%d" % n] > exits[n - 2], "attempt %d output before the previous "
                  "exit" % n)
    check_eq((job["status"], as_int(job.get("code")), as_int(job.get("attempt"))),
             ("exited", 0, 3), "final job state")
    check_eq(pctest.job_hash(s.r, j["id"]).get("attempt"), "3", "hash attempt")
    with open(COUNTER) as f:
        check_eq(f.read().strip(), "3", "the command ran exactly 3 times")
    pids = [d.get("pid") for e, d in zip(lc, data) if e.event == "start"]
    check(len(set(pids)) == 3, "each attempt is a new process: pids %r" % pids)


def t_max_attempts(s):
    j = pctest.job_submit(s.gw, {"template": "alwaysfail"})
    pctest.wait_exit_event(s.r, j["channel"], 20, count=2)
    job = final_job(s, j["id"], 2)
    time.sleep(1.0)
    es = pctest.channel_entries(s.r, j["channel"])
    check_eq([e.event for e in lifecycle(es)], ["start", "exit", "restart", "start", "exit"],
             "lifecycle with max_attempts 2 (attempts in total)")
    check_eq((job["status"], as_int(job.get("code")), as_int(job.get("attempt"))),
             ("exited", 7, 2), "final state after the attempts ran out")
    check_eq(pctest.output_lines(es), ["try", "try"], "stdout")


def t_killed_not_restarted(s):
    j = pctest.job_submit(s.gw, {"template": "worker"})
    job = pctest.job_wait(s.gw, j["id"], ("running",), 10)
    pctest.kill_group_at_exit(as_int(job["pid"]))
    check_eq(pctest.job_kill(s.gw, j["id"]).status, 202, "DELETE of the worker")
    job = pctest.job_wait(s.gw, j["id"], timeout=15)
    time.sleep(1.0)  # backoff 100 ms: a restart would have happened by now
    job = pctest.job_get(s.gw, j["id"])
    es = pctest.channel_entries(s.r, j["channel"])
    check_eq([e.event for e in lifecycle(es)], ["start", "exit"], "a killed on-failure job")
    check_eq((job["status"], as_int(job.get("attempt"))), ("killed", 1), "killed job state")


def t_never(s):
    j = pctest.job_submit(s.gw, {"template": "never"})
    pctest.wait_exit_event(s.r, j["channel"], 10)
    time.sleep(0.5)
    job = pctest.job_wait(s.gw, j["id"], timeout=10)
    es = pctest.channel_entries(s.r, j["channel"])
    check_eq([e.event for e in lifecycle(es)], ["start", "exit"], "policy never")
    check_eq((job["status"], as_int(job.get("code")), as_int(job.get("attempt"))),
             ("exited", 4, 1), "policy never: state")


def main():
    s = pctest.JobSetup(TEMPLATES)
    pctest.run_subtests([t_flaky, t_max_attempts, t_killed_not_restarted, t_never], s)
    s.runner.stop()
    s.gw.stop()


if __name__ == "__main__":
    pctest.main(main)
