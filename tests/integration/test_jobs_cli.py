#!/usr/bin/env python3
"""`pipecast jobs` against a real gateway + runner (private Redis), docs/jobs.md "CLI":
submit (with k=v params, --follow printing stdout/stderr and exiting with the job's code:
128+signal, 1 for failed), ls (--status), show, kill, stdin --eof, runners, templates,
submit --argv refused by default, --json output, --gateway / PIPECAST_GATEWAY."""

import json
import re
import time

import pctest
from pctest import check, check_eq, as_int

SAY = 'echo out-1; echo err-1 >&2; sleep 0.1; echo out-2; echo err-2 >&2; exit "$1"'
TEMPLATES = {
    "say": {"argv": ["sh", "-c", SAY, "sh", "{code}"], "shell": True,
            "description": "prints two lines on each stream and exits with {code}",
            "params": {"code": {"type": "int", "min": 0, "max": 255, "default": "0"}}},
    "many": {"argv": ["seq", "1", "{n}"],
             "params": {"n": {"type": "int", "min": 1, "max": 1000000, "required": True}}},
    "selfterm": {"argv": ["sh", "-c", "echo before; kill -TERM $$"], "shell": True},
    "missing": {"argv": ["/nonexistent/pc-no-such-cmd"]},
    "long": {"argv": ["sleep", "300"]},
    "sort": {"argv": ["sort"]},
}
ID_RE = re.compile(r"\b[0-9a-f]{16}\b")


def main():
    s = pctest.JobSetup(TEMPLATES)
    url = "http://127.0.0.1:%d" % s.gw.port
    env = {"PIPECAST_GATEWAY": url}

    def jobs(*args, **kw):
        kw.setdefault("env", env)
        return pctest.pipecast(["jobs"] + list(args), **kw)

    def txt(p):
        return "exit %s, stdout %r, stderr %r" % (p.returncode, p.stdout[-600:], p.stderr[-600:])

    def check_err(p, what):
        check(p.returncode != 0, "%s: expected a non-zero exit (%s)" % (what, txt(p)))
        check(p.stderr.startswith(b"pipecast: "), "%s: the error should be a `pipecast: ` line "
              "on stderr (%s)" % (what, txt(p)))

    failures = []

    def sub(fn):
        try:
            fn()
            pctest.log("ok   %s" % fn.__name__)
        except Exception as e:
            pctest.log("FAIL %s: %s" % (fn.__name__, e))
            failures.append("%s: %s" % (fn.__name__, e))
        return fn

    state = {}

    @sub
    def follow_codes():
        p = jobs("submit", "say", "code=3", "--follow", timeout=30)
        check_eq(p.returncode, 3, "submit say code=3 --follow: exit status (%s)" % txt(p))
        check_eq(p.stdout, b"out-1\nout-2\n", "--follow stdout: the job's stdout exactly")
        err_lines = p.stderr.decode("utf-8", "replace").splitlines()
        check([l for l in err_lines if l.startswith("err-")] == ["err-1", "err-2"],
              "--follow stderr should carry the job's stderr lines in order: %r" % err_lines)
        m = ID_RE.search(p.stderr.decode("utf-8", "replace"))
        state["say3"] = m.group(0) if m else None
        p = jobs("submit", "say", "--follow", timeout=30)
        check_eq(p.returncode, 0, "submit say (default code 0) --follow (%s)" % txt(p))
        p = jobs("submit", "selfterm", "--follow", timeout=30)
        check_eq(p.returncode, 128 + 15, "--follow of a job killed by SIGTERM (%s)" % txt(p))
        check_eq(p.stdout, b"before\n", "selfterm stdout")
        p = jobs("submit", "missing", "--follow", timeout=30)
        check_eq(p.returncode, 1, "--follow of a job that failed to start (%s)" % txt(p))
        p = jobs("submit", "many", "n=20000", "--follow", timeout=60)
        check_eq(p.returncode, 0, "--follow of 20000 lines (%s)" % txt(p))
        check(p.stdout == b"".join(b"%d\n" % i for i in range(1, 20001)),
              "--follow of `seq 1 20000`: %d bytes, head %r tail %r"
              % (len(p.stdout), p.stdout[:40], p.stdout[-40:]))

    @sub
    def submit_ls_show():
        p = jobs("submit", "say", "code=4", "--json")
        check_eq(p.returncode, 0, "submit --json (%s)" % txt(p))
        try:
            j = json.loads(p.stdout)
        except ValueError:
            pctest.fail("submit --json: stdout is not JSON: %s" % txt(p))
        check_eq(j.get("status"), "queued", "submit --json status")
        jid = j.get("id")
        check(jid and ID_RE.fullmatch(jid), "submit --json id: %r" % j)
        check_eq(j.get("channel"), "job:" + jid, "submit --json channel")
        job = pctest.job_wait(s.gw, jid, timeout=15)
        check_eq(as_int(job.get("code")), 4, "code of the submitted job")

        p = jobs("submit", "say", "code=0")
        check_eq(p.returncode, 0, "submit without --follow (%s)" % txt(p))
        m = ID_RE.search((p.stdout + p.stderr).decode("utf-8", "replace"))
        check(m, "submit should print the job id: %s" % txt(p))
        jid2 = m.group(0)
        pctest.job_wait(s.gw, jid2, timeout=15)

        p = jobs("ls")
        check_eq(p.returncode, 0, "jobs ls (%s)" % txt(p))
        out = p.stdout.decode("utf-8", "replace")
        check(jid in out and jid2 in out, "jobs ls should list %s and %s: %r" % (jid, jid2, out))
        p = jobs("ls", "--json")
        check_eq(p.returncode, 0, "jobs ls --json (%s)" % txt(p))
        lst = json.loads(p.stdout)
        ids = [x.get("id") for x in lst.get("jobs", [])]
        check(jid in ids and jid2 in ids, "jobs ls --json ids %r" % ids)

        p = jobs("show", jid)
        check_eq(p.returncode, 0, "jobs show (%s)" % txt(p))
        out = p.stdout.decode("utf-8", "replace")
        check("exited" in out and jid in out, "jobs show should name the id and status: %r" % out)
        p = jobs("show", jid, "--json")
        check_eq(p.returncode, 0, "jobs show --json (%s)" % txt(p))
        sj = json.loads(p.stdout)
        check_eq((sj.get("id"), sj.get("status"), as_int(sj.get("code")), sj.get("template")),
                 (jid, "exited", 4, "say"), "jobs show --json")
        p = jobs("show", "0123456789abcdef")
        check_err(p, "jobs show of an unknown id")
        p = jobs("submit", "say", "code=abc")
        check_err(p, "submit with a bad int param")
        p = jobs("submit", "nosuchtemplate")
        check_err(p, "submit of an unknown template")
        p = jobs("submit", "--argv", "--", "echo", "hi")
        check_err(p, "submit --argv with no runner allowing any command")

    @sub
    def kill_and_status_filter():
        p = jobs("submit", "long", "--json")
        check_eq(p.returncode, 0, "submit long (%s)" % txt(p))
        jid = json.loads(p.stdout)["id"]
        job = pctest.job_wait(s.gw, jid, ("running",), 10)
        pctest.kill_group_at_exit(as_int(job["pid"]))
        p = jobs("ls", "--status", "running", "--json")
        check_eq(p.returncode, 0, "jobs ls --status running (%s)" % txt(p))
        got = json.loads(p.stdout).get("jobs", [])
        check([x.get("id") for x in got] == [jid],
              "jobs ls --status running should list only %s: %r" % (jid, got))
        p = jobs("kill", jid)
        check_eq(p.returncode, 0, "jobs kill (%s)" % txt(p))
        job = pctest.job_wait(s.gw, jid, timeout=15)
        check_eq(job["status"], "killed", "status after jobs kill")
        p = jobs("kill", jid)
        check_err(p, "jobs kill of an ended job")
        p = jobs("kill", "0123456789abcdef")
        check_err(p, "jobs kill of an unknown job")

    @sub
    def stdin_eof():
        p = jobs("submit", "sort", "--json")
        jid = json.loads(p.stdout)["id"]
        pctest.job_wait(s.gw, jid, ("running",), 10)
        p = jobs("stdin", jid, "--eof", input=b"pear\napple\nfig\n")
        check_eq(p.returncode, 0, "jobs stdin --eof (%s)" % txt(p))
        job = pctest.job_wait(s.gw, jid, timeout=15)
        check_eq((job["status"], as_int(job.get("code"))), ("exited", 0), "sort after jobs stdin")
        es = pctest.wait_exit_event(s.r, job["channel"])
        check_eq(pctest.output_lines(es), ["apple", "fig", "pear"], "sort output")
        p = jobs("stdin", jid, input=b"late\n")
        check_err(p, "jobs stdin to an ended job")

    @sub
    def runners_templates_gateway_flag():
        p = jobs("runners")
        check_eq(p.returncode, 0, "jobs runners (%s)" % txt(p))
        check(s.runner.id.encode() in p.stdout, "jobs runners should list %s: %s"
              % (s.runner.id, txt(p)))
        p = jobs("templates")
        check_eq(p.returncode, 0, "jobs templates (%s)" % txt(p))
        for name in TEMPLATES:
            check(name.encode() in p.stdout, "jobs templates should list %s: %s" % (name, txt(p)))
        bad = {"PIPECAST_GATEWAY": "http://127.0.0.1:%d" % pctest.free_port()}
        p = jobs("ls", env=bad)
        check_err(p, "jobs ls with an unreachable gateway")
        p = jobs("ls", "--gateway", url, env=bad)
        check_eq(p.returncode, 0, "--gateway overrides PIPECAST_GATEWAY (%s)" % txt(p))

    check(not failures, "%d subtests failed:\n  %s" % (len(failures), "\n  ".join(failures)))
    s.runner.stop()
    s.gw.stop()


if __name__ == "__main__":
    pctest.main(main)
