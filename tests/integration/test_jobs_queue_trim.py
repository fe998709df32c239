#!/usr/bin/env python3
"""The queue stream `pc:jobs` does not grow forever (docs/jobs.md "Runner lifecycle"): a
runner's periodic cleanup trims acknowledged entries (XTRIM MINID below the oldest pending
entry and the group's last-delivered id), and never an entry a job still needs.

A private redis-server; a runner with --slots 1. 30 short jobs run and are acknowledged; then a
long job holds the only slot (its entry pending) and a second long job waits undelivered in the
queue. A fresh runner process does its first cleanup ~5 s after start: the 30 acknowledged
entries must be gone, both long jobs' entries must still be in the stream, and the queued job
must still start once the slot frees (it was not lost with the trim)."""

import time

import pctest
from pctest import check, check_eq

TEMPLATES = {
    "short": {"argv": ["true"]},
    "long": {"argv": ["sleep", "300"]},
}


def main():
    red = pctest.PrivateRedis()
    r = red.client()
    rn = pctest.Runner(red.port, TEMPLATES, ["--slots", "1"])
    gw = pctest.Gateway(red.port)
    pctest.wait_runners(gw, [rn.id])

    short = [pctest.job_submit(gw, {"template": "short"})["id"] for _ in range(30)]
    for jid in short:
        check_eq(pctest.job_wait(gw, jid)["status"], "exited", "short job %s" % jid)
    running = pctest.job_submit(gw, {"template": "long"})["id"]
    pctest.job_wait(gw, running, "running")
    queued = pctest.job_submit(gw, {"template": "long"})["id"]
    time.sleep(0.5)
    check_eq(pctest.job_get(gw, queued)["status"], "queued", "second long job with one slot")
    check(r.xlen("pc:jobs") >= 32, "pc:jobs holds every entry before a cleanup: XLEN %d"
          % r.xlen("pc:jobs"))

    # SIGTERM kills and acknowledges the running job; the queued one stays undelivered. A new
    # runner takes it (pending) and runs its cleanup at its first scan (~5 s); a third job
    # waits undelivered behind it. Both of their entries must survive the trim.
    rn.stop()
    check_eq(pctest.job_get(gw, running)["status"], "killed", "long job after runner SIGTERM")
    rn2 = pctest.Runner(red.port, TEMPLATES, ["--slots", "1"])
    pctest.job_wait(gw, queued, "running", timeout=20)
    third = pctest.job_submit(gw, {"template": "long"})["id"]

    def trimmed():
        ids = {e[0] for e in r.xrange_all("pc:jobs")}
        return ids if len(ids) <= 3 else None
    ids = pctest.wait_for(trimmed, 20 * pctest.SLOW, "the runner to trim pc:jobs to the "
                          "entries still needed (XLEN now %d)" % r.xlen("pc:jobs"), 0.2)
    need = {r.execute("HGET", "pc:job:" + j, "entry").decode() for j in (queued, third)}
    check(need <= ids, "entries still needed %s must survive the trim; stream has %s"
          % (sorted(need), sorted(ids)))
    # the job queued behind the running one still starts when the slot frees
    check_eq(pctest.job_get(gw, third)["status"], "queued", "third long job (slot taken)")
    check_eq(gw.request("DELETE", "/api/jobs/%s" % queued).status, 202, "DELETE running job")
    pctest.job_wait(gw, third, "running", timeout=20)
    rn2.check_alive("after the trim")
    rn2.stop()


if __name__ == "__main__":
    pctest.main(main)
