#!/usr/bin/env python3
"""No process of a job's process group outlives its runner, however the runner dies, nor the job
itself (docs/jobs.md "Runner lifecycle": the runner's guard process). Each mode uses a private
redis-server; pids are checked in /proc together with their start time (no false "alive" from a
reused pid; a zombie counts as gone).

  kill9     jobs whose shell leaves children and grandchildren running in the background (on pipes,
            and on a pty with SIGHUP ignored) print their pids; the runner is killed with SIGKILL:
            every process of their groups is gone within 3 s, and so is the guard. A child that
            escaped into a session of its own (setsid) is only reported: without cgroups nothing
            can find it.
  end       --slots 1 (a guard table of one group), jobs one after the other: a background child
            that does not hold the job's output is killed when the job ends (also at the end of
            each attempt of an on-failure restart); one that holds the output still gets to print
            its last line first. The guard never reports a full table; a SIGKILL of the runner
            afterwards still takes the group of the job then running.
  shutdown  the guard ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT and lives in a process group of
            its own; Ctrl-C (SIGINT to the runner's process group) still gives the graceful
            shutdown: the job ends `killed` after --shutdown-grace, nothing of its group survives,
            the runner exits 0 and the guard is gone.
  guard     the guard is killed with SIGKILL: the runner logs an error, starts a new guard and
            registers the running job with it; a SIGKILL of the runner then still takes the job's
            whole group.
  stuck     the guard is SIGSTOPped (it reads no more records) and 320 short jobs run: the runner
            never blocks on the full socket (all jobs end, its heartbeat stays fresh), logs an
            error, SIGKILLs the stopped guard and starts a new one, which then guards a job's
            whole group against a SIGKILL of the runner.
  cli       `pipecast run` killed with SIGKILL while its command runs: the command's whole process
            group is gone within 3 s."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pctest
from pctest import check, check_eq, as_int, job_submit, job_wait

# The leader prints its pid and those of: a background sleep (child), a background shell and
# its own background sleep (grandchild), and a sleep that does not hold the output.
TREE = ('echo "pid $$"; sleep 1000 & echo "pid $!"; '
        'sh -c \'sleep 1000 & echo "pid $!"; wait\' & echo "pid $!"; '
        'sleep 1000 >/dev/null 2>&1 & echo "pid $!"; wait')
TREE_PIDS = 5
# Double fork into a new session: not in the job's process group any more.
ESCAPE = ('setsid -f sh -c \'echo "escaped $$"; exec sleep 1000 >/dev/null 2>&1\'; '
          'echo "pid $$"; sleep 1000 & echo "pid $!"; wait')
# These wait for the file $1 (the test creates it once it has seen their pids alive).
WAIT_GO = 'while [ ! -e "$f" ]; do sleep 0.02; done'
LEFTOVER = ('sleep 1000 >/dev/null 2>&1 & echo "pid $!"; echo "pid $$"; f="$1"; ' + WAIT_GO +
            '; echo bye')
# attempt 1 waits for $1, attempt 2 for $1.2
RETRY = ('sleep 1000 >/dev/null 2>&1 & echo "pid $!"; f="$1"; [ -e "$f" ] && f="$1.2"; ' +
         WAIT_GO + '; exit 3')
LINGER = '(sleep 0.5; echo late) & echo early'
GO = {"go": {"type": "string", "required": True}}

TEMPLATES = {
    "tree": {"argv": ["sh", "-c", TREE], "shell": True},
    # the pty's session leader dying sends SIGHUP to the job: ignore it, so only a kill helps
    "tree_pty": {"argv": ["sh", "-c", "trap '' HUP; " + TREE], "shell": True, "pty": True},
    "escape": {"argv": ["sh", "-c", ESCAPE], "shell": True},
    "leftover": {"argv": ["sh", "-c", LEFTOVER, "sh", "{go}"], "shell": True, "params": GO},
    "linger": {"argv": ["sh", "-c", LINGER], "shell": True},
    "quick": {"argv": ["true"]},
    "retry": {"argv": ["sh", "-c", RETRY, "sh", "{go}"], "shell": True, "params": GO,
              "restart": {"policy": "on-failure", "max_attempts": 2, "backoff_ms": 100}},
}
GONE_S = 3.0  # "within a couple of seconds"


# ---- processes -------------------------------------------------------------------------------


def stat(pid):
    """(state, ppid, pgrp, starttime, comm) of /proc/<pid>/stat, or None when there is none."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    rp = st.rfind(")")
    f = st[rp + 2:].split()
    return f[0], int(f[1]), int(f[2]), int(f[19]), st[st.find("(") + 1:rp]


class Proc:
    """A pid seen alive, with its start time: alive() stays false once it is gone even if the
    kernel hands the pid to another process."""

    def __init__(self, pid, what):
        self.pid, self.what = pid, what
        s = stat(pid)
        check(s is not None and s[0] not in "ZX", "%s (pid %d) should be running" % (what, pid))
        self.start = s[3]

    def alive(self):
        s = stat(self.pid)
        return s is not None and s[0] not in "ZX" and s[3] == self.start

    def __repr__(self):
        return "%s %d" % (self.what, self.pid)


def lines_with(entries, word):
    out = []
    for line in pctest.output_lines(entries):
        m = re.match(r"^%s (\d+)$" % word, line.strip())
        if m:
            out.append(int(m.group(1)))
    return out


def job_procs(s, spec, n, word="pid"):
    """Submit @spec, wait until it runs and printed @n "<word> <pid>" lines; returns
    (job id, channel, pgid, [Proc])."""
    j = job_submit(s.gw, spec)
    job = job_wait(s.gw, j["id"], ("running",), 10)
    pgid = as_int(job["pid"])
    pctest.kill_group_at_exit(pgid)
    es = pctest.wait_channel(s.r, j["channel"], lambda es: len(lines_with(es, word)) >= n, 10,
                             "%d '%s <pid>' lines" % (n, word))
    pids = lines_with(es, word)
    return j["id"], j["channel"], pgid, [Proc(p, "%s %s" % (spec["template"], word)) for p in pids]


def check_all_gone(procs, pgids, what, timeout=GONE_S):
    """Every process in @procs and every member of the groups @pgids gone within @timeout s."""
    t0 = time.monotonic()

    def left():
        return [p for p in procs if p.alive()] + \
            [m for g in pgids for m in pctest.group_members(g)]
    deadline = t0 + timeout * pctest.SLOW
    while left() and time.monotonic() < deadline:
        time.sleep(0.02)
    rest = left()
    check(not rest, "%s: still alive after %.1f s: %r" % (what, timeout * pctest.SLOW, rest))
    took = time.monotonic() - t0
    pctest.log("%s: %d processes gone after %.2f s" % (what, len(procs), took))
    return took


def guard_pids(runner):
    """Pids of the guards the runner's log announced, oldest first."""
    try:
        with open(runner.logpath, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [int(m) for m in re.findall(r"\bguard pid (\d+)", text)]


def guard_of(runner):
    """The runner's current guard as a Proc, checked: a child of the runner, named
    pipecast-guard, in a process group of its own."""
    gs = pctest.wait_for(lambda: guard_pids(runner), 5 * pctest.SLOW,
                         "the runner to log its guard's pid ('guard pid N'):\n" + runner.log_tail())
    g = Proc(gs[-1], "guard")
    # the name and the group are set by the guard itself, right after the fork
    pctest.wait_for(lambda: (stat(g.pid) or "")[4:] == ("pipecast-guard",), 3 * pctest.SLOW,
                    "guard %d to be named pipecast-guard (%r)" % (g.pid, stat(g.pid)))
    st = stat(g.pid)
    check_eq(st[1], runner.pid, "parent of the guard")
    check(st[2] != os.getpgid(runner.pid), "the guard must not share the runner's process group "
          "(a signal to that group would reach it)")
    return g


# ---- modes ---------------------------------------------------------------------------------


def kill9():
    s = pctest.JobSetup(TEMPLATES)
    guard = guard_of(s.runner)
    procs, pgids = [], []
    for name in ("tree", "tree_pty"):
        _, _, pgid, ps = job_procs(s, {"template": name}, TREE_PIDS)
        check_eq(len({p.pid for p in ps}), TREE_PIDS, "%s: distinct pids" % name)
        procs += ps
        pgids.append(pgid)
    _, ch, pgid, ps = job_procs(s, {"template": "escape"}, 2)
    procs += ps
    pgids.append(pgid)
    es = pctest.wait_channel(s.r, ch, lambda es: lines_with(es, "escaped"), 10, "'escaped <pid>'")
    esc = Proc(lines_with(es, "escaped")[0], "escaped double fork")
    pctest.kill_group_at_exit(esc.pid)  # its own session and group
    check(all(pctest.group_members(g) for g in pgids), "every job group should have members")

    s.runner.kill9()
    pctest.log("runner killed with SIGKILL")
    check_all_gone(procs, pgids, "job groups of a runner killed with SIGKILL")
    pctest.wait_for(lambda: not guard.alive(), GONE_S * pctest.SLOW,
                    "the guard to exit after its runner died")
    pctest.log("the setsid'ed double fork (own session, outside the job's group) is %s after "
               "the runner died: only a cgroup could find it"
               % ("still ALIVE" if esc.alive() else "gone"))
    s.gw.stop()


def end():
    s = pctest.JobSetup(TEMPLATES, ["--slots", "1", "--kill-grace", "5"])
    guard = guard_of(s.runner)
    tmp = tempfile.mkdtemp(prefix="pc-orphans-")
    pctest.on_exit(lambda: shutil.rmtree(tmp, ignore_errors=True))

    # a leftover that does not hold the output: killed when the leader has exited
    go = os.path.join(tmp, "leftover")
    jid, ch, pgid, ps = job_procs(s, {"template": "leftover", "args": {"go": go}}, 2)
    open(go, "w").close()
    job = job_wait(s.gw, jid, timeout=10)
    check_eq((job["status"], as_int(job.get("code"))), ("exited", 0), "leftover job: status, code")
    t = check_all_gone(ps, [pgid], "leftover of a job that exited")
    check(t < 2.0 * pctest.SLOW, "the leftover was killed only %.1f s after the job ended" % t)
    es = pctest.wait_exit_event(s.r, ch)
    check_eq(pctest.output_lines(es)[-1], "bye", "leftover job: last output line")

    # a leftover that holds the output: its last line is still published, then it is gone
    j = job_submit(s.gw, {"template": "linger"})
    job = job_wait(s.gw, j["id"], timeout=10)
    pgid = as_int(job["pid"])
    pctest.kill_group_at_exit(pgid)
    check_eq((job["status"], as_int(job.get("code"))), ("exited", 0), "linger job: status, code")
    out = pctest.output_lines(pctest.wait_exit_event(s.r, j["channel"]))
    check_eq(out, ["early", "late"], "linger job: output (late line of the background child)")
    check_all_gone([], [pgid], "group of the linger job")

    # on-failure restart: each attempt's leftover is killed at the end of that attempt
    go = os.path.join(tmp, "retry")
    j = job_submit(s.gw, {"template": "retry", "args": {"go": go}})
    ps = []
    for n, f in ((1, go), (2, go + ".2")):
        es = pctest.wait_channel(s.r, j["channel"], lambda es: len(lines_with(es, "pid")) >= n,
                                 10, "attempt %d's pid" % n)
        ps.append(Proc(lines_with(es, "pid")[n - 1], "leftover of attempt %d" % n))
        open(f, "w").close()
        if n == 1:
            check_all_gone(ps, [], "the leftover of attempt 1, at its end")
    job = job_wait(s.gw, j["id"], timeout=15)
    check_eq((job["status"], as_int(job.get("code")), as_int(job.get("attempt"))),
             ("exited", 3, 2), "retry job: status, code, attempts")
    check_all_gone(ps, [], "the leftovers of both attempts")

    # the table of one group was freed each time: the guard still takes the running job's group
    check(guard.alive(), "the guard should still run")
    _, _, pgid, ps = job_procs(s, {"template": "tree"}, TREE_PIDS)
    log = s.runner.log_tail(400)
    check("ERROR guard" not in log and "not guarded" not in log,
          "the guard reported an error:\n%s" % log)
    s.runner.kill9()
    check_all_gone(ps, [pgid], "a job group after many jobs on a one-group guard table")
    s.gw.stop()


def _own_group_preexec(orig):
    def f():
        os.setpgid(0, 0)  # like a runner started from an interactive shell: its own job group
        orig()
    return f


def shutdown():
    orig = pctest.die_with_parent
    pctest.die_with_parent = _own_group_preexec(orig)
    try:
        s = pctest.JobSetup(TEMPLATES, ["--shutdown-grace", "1", "--kill-grace", "1"])
    finally:
        pctest.die_with_parent = orig
    check_eq(os.getpgid(s.runner.pid), s.runner.pid, "the runner leads its own process group")
    guard = guard_of(s.runner)
    jid, ch, pgid, ps = job_procs(s, {"template": "tree"}, TREE_PIDS)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        os.kill(guard.pid, sig)
    time.sleep(0.3)
    check(guard.alive(), "the guard died of SIGINT/SIGTERM/SIGHUP/SIGQUIT (it must ignore them)")
    check(all(p.alive() for p in ps), "signals to the guard must not touch the job: %r"
          % [p for p in ps if not p.alive()])
    s.runner.check_alive("after signals to its guard")

    os.killpg(s.runner.pid, signal.SIGINT)  # Ctrl-C on the runner's terminal
    t0 = time.monotonic()
    try:
        rc = s.runner.proc.wait(15 * pctest.SLOW)
    except subprocess.TimeoutExpired:
        pctest.fail("the runner did not stop within 15 s of SIGINT:\n" + s.runner.log_tail())
    check_eq(rc, 0, "runner exit status after SIGINT (log:\n%s)" % s.runner.log_tail())
    pctest.log("runner stopped %.1f s after SIGINT" % (time.monotonic() - t0))
    job = job_wait(s.gw, jid, timeout=5)
    check_eq((job["status"], job.get("reason")), ("killed", "killed"),
             "the job running at Ctrl-C, after --shutdown-grace 1")
    ex = pctest.events_of(pctest.wait_exit_event(s.r, ch), "exit")[0].json()
    check_eq(ex.get("reason"), "killed", "exit event of the job killed at shutdown")
    check_all_gone(ps, [pgid], "the job group after a graceful stop")
    pctest.wait_for(lambda: not guard.alive(), GONE_S * pctest.SLOW,
                    "the guard to exit with its runner")
    s.gw.stop()


def new_guard(runner, g1, why_re, what, lines):
    """The guard the runner started after @g1 (checked as guard_of does); its log names g1's
    end with an error matching @why_re."""
    pctest.wait_for(lambda: len(guard_pids(runner)) >= 2, 5 * pctest.SLOW,
                    "the runner to start a new guard:\n" + runner.log_tail())
    g2 = guard_of(runner)
    check(g2.pid != g1.pid, "a new guard pid")
    log = runner.log_tail(lines)
    check(re.search(r"ERROR runner: guard pid %d .*%s" % (g1.pid, why_re), log),
          "the runner should log an error naming the %s guard %d:\n%s" % (what, g1.pid, log))
    return g2


def guard_lost():
    s = pctest.JobSetup(TEMPLATES)
    g1 = guard_of(s.runner)
    jid, _, pgid, ps = job_procs(s, {"template": "tree"}, TREE_PIDS)
    os.kill(g1.pid, signal.SIGKILL)
    g2 = new_guard(s.runner, g1, r"(killed|signal)", "dead", 100)
    s.runner.check_alive("after its guard was killed")
    check_eq(job_wait(s.gw, jid, ("running",), 2)["status"], "running", "the job after the guard "
             "was replaced")
    check(all(p.alive() for p in ps), "the job's processes after the guard was replaced")

    s.runner.kill9()
    check_all_gone(ps, [pgid], "job group of a runner killed after its guard was replaced")
    pctest.wait_for(lambda: not g2.alive(), GONE_S * pctest.SLOW, "the new guard to exit")
    s.gw.stop()


def guard_stuck():
    s = pctest.JobSetup(TEMPLATES, ["--slots", "16"])
    g1 = guard_of(s.runner)
    os.kill(g1.pid, signal.SIGSTOP)
    pctest.on_exit(lambda: g1.alive() and os.kill(g1.pid, signal.SIGKILL))
    # each job is an "add" (its child) and a "del" (the runner): far more than the socket holds
    n = 320
    ids = [job_submit(s.gw, {"template": "quick"})["id"] for _ in range(n)]
    t_end = time.monotonic() + 30 * pctest.SLOW
    for jid in ids:
        left = t_end - time.monotonic()
        check(left > 0, "%d short jobs did not all end within 30 s with the guard stopped (the "
              "runner blocked on its guard?):\n%s" % (n, s.runner.log_tail()))
        check_eq(job_wait(s.gw, jid, timeout=left)["status"], "exited", "a short job's status")
    s.runner.check_alive("after %d jobs with a stopped guard" % n)
    # the heartbeat (SET EX 15 every 3 s) is refreshed: the event loop runs
    ttls = []
    for _ in range(9):
        ttls.append(s.r.execute("TTL", s.runner.heartbeat_key()))
        time.sleep(0.5)
    check(max(ttls) >= 12, "the runner's heartbeat is not refreshed (TTLs %r)" % ttls)
    pctest.wait_for(lambda: not g1.alive(), 5 * pctest.SLOW,
                    "the stopped guard %d to be killed:\n%s" % (g1.pid, s.runner.log_tail()))
    g2 = new_guard(s.runner, g1, r"(stopped or stuck)", "stuck", 400)
    # the new guard works
    _, _, pgid, ps = job_procs(s, {"template": "tree"}, TREE_PIDS)
    s.runner.kill9()
    check_all_gone(ps, [pgid], "job group of a runner killed after its stuck guard was replaced")
    pctest.wait_for(lambda: not g2.alive(), GONE_S * pctest.SLOW, "the new guard to exit")
    s.gw.stop()


def cli():
    red = pctest.PrivateRedis()
    r = red.client()
    ch = pctest.uniq("orphans-run")
    errf = tempfile.TemporaryFile()
    p = pctest.pipecast_popen(["run", "--redis", red.url(), "--channel", ch, "--quiet", "--",
                               "sh", "-c", TREE], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=errf)
    es = pctest.wait_channel(r, ch, lambda es: len(lines_with(es, "pid")) >= TREE_PIDS, 10,
                             "%d pid lines" % TREE_PIDS)
    pids = lines_with(es, "pid")
    pgid = pids[0]
    pctest.kill_group_at_exit(pgid)
    ps = [Proc(x, "run tree pid") for x in pids]
    check_eq(os.getpgid(pgid), pgid, "the command leads its own process group")
    p.kill()
    p.wait()
    check_all_gone(ps, [pgid], "the command group of `pipecast run` killed with SIGKILL")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    modes = {"kill9": kill9, "end": end, "shutdown": shutdown, "guard": guard_lost,
             "stuck": guard_stuck, "cli": cli}
    fn = modes.get(mode)
    check(fn is not None, "usage: test_jobs_orphans.py kill9|end|shutdown|guard|stuck|cli")
    fn()


if __name__ == "__main__":
    pctest.main(main)
