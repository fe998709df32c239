#!/usr/bin/env python3
"""Sessions (docs/jobs.md, DESIGN "Jobs", issue 3) with the real gateway + runner: a session
job's default channel is `<session>:<id>`, `GET /api/jobs?session=S` lists only that session's
jobs (newest first; status filter and pagination too), `DELETE /api/sessions/S` kills exactly
that session's running jobs (their process groups die) and answers {"killed": N}."""

import random
import time

import pctest
from pctest import check, check_eq, as_int

TEMPLATES = {
    "long": {"argv": ["sleep", "300"]},
    "short": {"argv": ["echo", "hi"]},
}


def listing(gw, query):
    r = gw.get("/api/jobs?" + query)
    check_eq(r.status, 200, "GET /api/jobs?%s (%r)" % (query, r))
    j = r.json()
    check(isinstance(j.get("jobs"), list) and "next_cursor" in j,
          "GET /api/jobs?%s: expected {jobs: [...], next_cursor}, got %r" % (query, j))
    return j


def main():
    s = pctest.JobSetup(TEMPLATES)
    tag = "%06x" % random.getrandbits(24)
    s1, s2 = "sess-a-" + tag, "user@host.b:" + tag

    def submit(tpl, session=None):
        spec = {"template": tpl}
        if session:
            spec["session"] = session
        j = pctest.job_submit(s.gw, spec)
        want = ("%s:%s" % (session, j["id"])) if session else "job:" + j["id"]
        check_eq(j["channel"], want, "default channel of a job %s" %
                 ("in session %r" % session if session else "without a session"))
        time.sleep(0.005)  # distinct created_ms: "newest first" is then well defined
        return j

    a1 = submit("long", s1)
    a_short = submit("short", s1)
    a2 = submit("long", s1)
    b1 = submit("long", s2)
    n1 = submit("long")
    pgids = {}
    for j in (a1, a2, b1, n1):
        job = pctest.job_wait(s.gw, j["id"], ("running",), 10)
        pgids[j["id"]] = as_int(job["pid"])
        pctest.kill_group_at_exit(pgids[j["id"]])
        check_eq(job.get("session"), {a1["id"]: s1, a2["id"]: s1, b1["id"]: s2}.get(j["id"]),
                 "session field of job %s" % j["id"])
    short = pctest.job_wait(s.gw, a_short["id"], timeout=10)
    check_eq(short["status"], "exited", "the short session job")
    es = pctest.wait_exit_event(s.r, a_short["channel"])
    check_eq(pctest.output_lines(es), ["hi"], "output in the session channel %s"
             % a_short["channel"])

    got = listing(s.gw, "session=" + s1)
    check_eq([x.get("id") for x in got["jobs"]], [a2["id"], a_short["id"], a1["id"]],
             "GET /api/jobs?session=S1 (exactly its jobs, newest first)")
    check(all(x.get("session") == s1 for x in got["jobs"]), "session field in the listing")
    got = listing(s.gw, "session=" + s2)
    check_eq([x.get("id") for x in got["jobs"]], [b1["id"]], "GET /api/jobs?session=S2")
    got = listing(s.gw, "session=%s&status=running" % s1)
    check_eq([x.get("id") for x in got["jobs"]], [a2["id"], a1["id"]],
             "GET /api/jobs?session=S1&status=running")
    got = listing(s.gw, "session=nobody-" + tag)
    check_eq(got["jobs"], [], "GET /api/jobs for an unknown session")
    members = {m.decode() for m in s.r.execute("SMEMBERS", "pc:session:" + s1)}
    check_eq(members, {a1["id"], a2["id"], a_short["id"]}, "pc:session:S1 members")

    # pagination over all five jobs, two per page
    seen, cursor, pages = [], None, 0
    while True:
        q = "limit=2" + ("&cursor=" + cursor if cursor else "")
        page = listing(s.gw, q)
        check(len(page["jobs"]) <= 2, "limit=2 returned %d jobs" % len(page["jobs"]))
        seen += [x.get("id") for x in page["jobs"]]
        cursor = page["next_cursor"]
        pages += 1
        check(pages <= 10, "pagination does not end: %r" % seen)
        if not cursor:
            break
    check_eq(seen, [n1["id"], b1["id"], a2["id"], a_short["id"], a1["id"]],
             "all jobs through limit=2 pages, newest first, each once")

    for bad in ("a b", "a/b", "x" * 65, ""):
        r = pctest.job_post(s.gw, {"template": "short", "session": bad})
        pctest.check_json_error(r, 400, "session %r" % bad)

    r = s.gw.request("DELETE", "/api/sessions/" + s1)
    check_eq(r.status, 200, "DELETE /api/sessions/S1 (%r)" % r)
    check_eq(r.json(), {"killed": 2}, "DELETE /api/sessions/S1 answer")
    for j in (a1, a2):
        job = pctest.job_wait(s.gw, j["id"], timeout=15)
        check_eq(job["status"], "killed", "session job %s after DELETE /api/sessions" % j["id"])
        pg = pgids[j["id"]]
        pctest.wait_for(lambda: not pctest.group_members(pg), 3 * pctest.SLOW,
                        "the killed session job's processes to be gone")
        ex = pctest.events_of(pctest.wait_exit_event(s.r, j["channel"]), "exit")[0].json()
        check_eq(ex.get("reason"), "killed", "exit reason of a killed session job")
    time.sleep(0.5)
    for j in (b1, n1):
        check_eq(pctest.job_get(s.gw, j["id"])["status"], "running",
                 "a job outside the killed session")
        check(pctest.group_members(pgids[j["id"]]), "job %s outside the session lost its "
              "processes" % j["id"])
    check_eq(pctest.job_get(s.gw, a_short["id"])["status"], "exited",
             "an ended session job stays as it was")
    r = s.gw.request("DELETE", "/api/sessions/" + s1)
    check_eq((r.status, r.json()), (200, {"killed": 0}), "DELETE /api/sessions/S1 again")
    r = s.gw.request("DELETE", "/api/sessions/nobody-" + tag)
    check_eq((r.status, r.json()), (200, {"killed": 0}), "DELETE of an unknown session")
    r = s.gw.request("DELETE", "/api/sessions/" + s2)
    check_eq((r.status, r.json()), (200, {"killed": 1}), "DELETE /api/sessions/S2")
    check_eq(pctest.job_wait(s.gw, b1["id"], timeout=15)["status"], "killed", "S2 job")
    check_eq(pctest.job_kill(s.gw, n1["id"]).status, 202, "DELETE of the session-less job")
    pctest.job_wait(s.gw, n1["id"], timeout=15)
    s.runner.stop()
    s.gw.stop()


if __name__ == "__main__":
    pctest.main(main)
