#!/usr/bin/env python3
"""End to end: jobs through the real gateway REST API, a real pipecast-runner and a private Redis
(docs/jobs.md is the spec). Covers: output events (order, separation, `start` first, `exit` last,
the job object and hash), SSE of a job channel, env/cwd, exit codes and signals, stdin round trips,
kill of a process tree (none survive, SIGKILL after the grace when SIGTERM is ignored), timeouts,
rlimits (memory, CPU, capped by limits_max), missing executables, argv refused by default (also
when injected straight into the queue) and allowed with --allow-any-command, template parameter
injection, and a clean SIGTERM of the runner."""

import json
import os
import random
import re
import shutil
import tempfile
import time

import pctest
from pctest import check, check_eq, as_int, job_post, job_submit, job_wait, job_get

RAND = "%08x" % random.getrandbits(32)
PWNED = "/tmp/pc-pwned-%s" % RAND
DATA_DIR = tempfile.mkdtemp(prefix="pc-jobdata-")
pctest.on_exit(lambda: shutil.rmtree(DATA_DIR, ignore_errors=True))

OUTERR = ("echo out-1; sleep 0.1; echo err-1 >&2; sleep 0.1; echo out-2; sleep 0.1; "
          "echo err-2 >&2; sleep 0.1; i=1; while [ $i -le 300 ]; do echo o$i; echo e$i >&2; "
          "i=$((i+1)); done; sleep 0.1; echo last-out; exit 5")
ANY = {"type": "string", "pattern": "^.*$", "required": True}

TEMPLATES = {
    "outerr": {"argv": ["sh", "-c", OUTERR], "shell": True, "description": "stdout + stderr"},
    "code": {"argv": ["sh", "-c", 'exit "$1"', "sh", "{code}"], "shell": True,
             "params": {"code": {"type": "int", "min": 0, "max": 255, "required": True}}},
    "selfterm": {"argv": ["sh", "-c", "echo before; kill -TERM $$; echo after"], "shell": True},
    "env": {"argv": ["env"], "env": {"TPL_VAR": "from-template"}, "request_env": ["REQ_VAR"]},
    "env_any": {"argv": ["env"], "request_env": True},
    "env_none": {"argv": ["env"]},
    "pwd": {"argv": ["pwd"], "request_cwd": True},
    "pwd_fixed": {"argv": ["pwd"], "cwd": "/"},
    "cat": {"argv": ["cat"]},
    "sort": {"argv": ["sort"]},
    "tree": {"argv": ["sh", "-c", "sleep 300 & sleep 300 & wait"], "shell": True},
    "tree_noterm": {"argv": ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & wait"],
                    "shell": True},
    "sleeper": {"argv": ["sleep", "{secs}"],
                "params": {"secs": {"type": "int", "min": 0, "max": 1000, "required": True}}},
    "sleeper_t1": {"argv": ["sleep", "30"], "timeout_s": 1},
    "alloc": {"argv": ["python3", "-c",
                       "import sys; b = bytearray(int(sys.argv[1]) * 1048576); "
                       "print('allocated', len(b))", "{mb}"],
              "params": {"mb": {"type": "int", "min": 1, "max": 100000, "required": True}}},
    "spin": {"argv": ["sh", "-c", "while :; do :; done"], "shell": True},
    "tty": {"argv": ["sh", "-c", "if [ -t 1 ]; then echo tty; else echo notty; fi; "
                     "echo err-line >&2; printf 'a\\nb\\n'"], "shell": True},
    "prompt": {"argv": ["sh", "-c", "printf 'prompt> '; sleep 1; echo done"], "shell": True},
    "id": {"argv": ["id", "-u"]},
    "wc": {"argv": ["wc", "-c"]},
    "longline": {"argv": ["python3", "-c",
                          "import sys; o = sys.stdout.buffer; o.write(b'y' * 200000 + b'\\n'); "
                          "o.write('\u00e9'.encode() * 100000 + b'\\n'); "
                          "o.write(b'\\xff\\xfe bad utf-8\\n')"]},
    "limits": {"argv": ["cat", "/proc/self/limits"], "limits": {"nofile": 300}},
    "missing": {"argv": ["/nonexistent/pc-no-such-cmd"]},
    "missing_path": {"argv": ["pc-no-such-cmd-in-path"]},
    # injection targets
    "echo": {"argv": ["printf", "%s\\n", "{msg}"], "params": {"msg": {"type": "string",
                                                                       "required": True}}},
    "echo_any": {"argv": ["printf", "%s\\n", "{msg}"], "params": {"msg": ANY}},
    "echo_dash": {"argv": ["printf", "%s\\n", "{msg}"],
                  "params": {"msg": dict(ANY, allow_dash=True)}},
    "echo_two": {"argv": ["printf", "%s|%s\\n", "{a}", "{b}"], "params": {"a": ANY, "b": ANY}},
    "cat_file": {"argv": ["cat", DATA_DIR + "/{name}"], "params": {"name": ANY}},
}
LIMITS_MAX = {"cpu_s": 2, "as_mb": 4096, "nofile": 4096, "nproc": 512, "timeout_s": 86400}


def inject_and_wait(r, spec, what):
    """Write a job straight into the queue, as a submitter other than the gateway would (no
    gateway validation), and wait for the runner to end it. Returns (job id, channel)."""
    jid = "%016x" % random.getrandbits(64)
    ch = "job:" + jid
    now = int(time.time() * 1000)
    r.execute("HSET", "pc:job:" + jid, "id", jid, "status", "queued", "channel", ch,
              "spec", json.dumps(spec), "created_ms", now)
    r.execute("ZADD", "pc:jobs:index", now, jid)
    eid = r.xadd("pc:jobs", {"job": jid})
    r.execute("HSET", "pc:job:" + jid, "entry", eid)
    pctest.wait_for(lambda: pctest.job_hash(r, jid).get("status") in pctest.JOB_ENDED,
                    10 * pctest.SLOW, "the runner to end queue-injected job (%s)" % what)
    return jid, ch


def start_of(entries):
    return [e for e in entries if e.event == "start"]


def exit_json(entries):
    ex = pctest.events_of(entries, "exit")
    check(len(ex) == 1, "expected exactly one exit event, got %r" % (ex,))
    return ex[0].json()


def check_frame(entries, what):
    """`start` first, `exit` last (nothing after it), exactly one of each."""
    check(entries and entries[0].event == "start",
          "%s: the first entry should be `start`, got %r" % (what, entries[:2]))
    check(entries[-1].event == "exit", "%s: the last entry should be `exit`, got %r"
          % (what, entries[-2:]))
    check_eq(len(start_of(entries)), 1, "%s: number of start events" % what)
    check_eq(len(pctest.events_of(entries, "exit")), 1, "%s: number of exit events" % what)


def settle(setup, channel, n):
    """After the job ended, nothing more is appended to its channel."""
    time.sleep(0.3)
    es = pctest.channel_entries(setup.r, channel)
    check_eq(len(es), n, "channel %s length after the exit event (entries after exit?)" % channel)
    return es


def refused(setup, spec, what, forbidden=None):
    """A request the spec refuses: 400 at the gateway, or accepted and then `failed` by the runner
    without running anything. Returns "400" or "failed"."""
    r = job_post(setup.gw, spec)
    if r.status == 400:
        pctest.check_json_error(r, 400, what)
        return "400"
    check(r.status == 201, "%s: expected 400 (or 201 then failed), got %r" % (what, r))
    j = r.json()
    job = job_wait(setup.gw, j["id"], timeout=15)
    check_eq(job.get("status"), "failed", "%s: status of a job the runner must refuse" % what)
    es = pctest.wait_exit_event(setup.r, j["channel"], 10)
    out = pctest.output_lines(es, "stdout")
    check(out == [], "%s: the refused job produced output %r" % (what, out))
    check(not start_of(es), "%s: a refused job must not start (start event %r)"
          % (what, start_of(es)))
    if forbidden:
        check(not os.path.exists(forbidden), "%s: %s was created" % (what, forbidden))
    return "failed"


# --------------------------------------------------------------------------------------------


def t_output(s):
    ch = pctest.uniq("jobs-outerr")
    sse = pctest.sse_open(s.gw, ch, timeout=20)
    t0 = time.time() * 1000
    j = job_submit(s.gw, {"template": "outerr", "channel": ch})
    check_eq(j["channel"], ch, "channel of a job submitted with an explicit channel")
    job = job_wait(s.gw, j["id"], timeout=20)
    es = pctest.wait_exit_event(s.r, ch, 10)
    es = settle(s, ch, len(es))
    check_frame(es, "outerr")

    out = pctest.output_lines(es, "stdout")
    err = pctest.output_lines(es, "stderr")
    check_eq(out, ["out-1", "out-2"] + ["o%d" % i for i in range(1, 301)] + ["last-out"],
             "stdout lines (order, no stderr mixed in)")
    check_eq(err, ["err-1", "err-2"] + ["e%d" % i for i in range(1, 301)],
             "stderr lines (order, no stdout mixed in)")
    check(not any(e.partial for e in es), "unexpected partial entries: %r"
          % [e for e in es if e.partial][:3])
    others = {e.event for e in es} - {"start", "stdout", "stderr", "exit"}
    check(not others, "unexpected event names %r" % others)
    # output separated in time by 100 ms keeps its global order across the two pipes
    pos = {}
    for i, e in enumerate(es):
        pos.setdefault(e.data.decode(), i)
    marks = ["out-1", "err-1", "out-2", "err-2", "o1", "last-out"]
    check(all(pos[a] < pos[b] for a, b in zip(marks, marks[1:])),
          "global order of %s across stdout/stderr: positions %r"
          % (marks, [pos[m] for m in marks]))

    st = es[0].json()
    check_eq(st.get("job"), j["id"], "start.job")
    check(isinstance(st.get("pid"), int) and st["pid"] > 1, "start.pid: %r" % st)
    check_eq(st.get("argv"), TEMPLATES["outerr"]["argv"], "start.argv")
    check_eq(st.get("runner"), s.runner.id, "start.runner")
    check(isinstance(st.get("host"), str) and st["host"], "start.host: %r" % st)
    check_eq(st.get("attempt"), 1, "start.attempt")

    ex = es[-1].json()
    check_eq(ex.get("job"), j["id"], "exit.job")
    check_eq(ex.get("code"), 5, "exit.code")
    check("signal" in ex and ex["signal"] is None, "exit.signal should be null: %r" % ex)
    check_eq(ex.get("reason"), "exited", "exit.reason")
    check_eq(ex.get("attempt"), 1, "exit.attempt")
    check(isinstance(ex.get("duration_ms"), int) and 400 <= ex["duration_ms"] < 15000,
          "exit.duration_ms should cover the job's 0.5 s of sleeps: %r" % ex)
    check("error" not in ex, "exit.error only when failed: %r" % ex)

    check_eq(job.get("status"), "exited", "job status")
    check_eq(job.get("id"), j["id"], "job id")
    check_eq(as_int(job.get("code")), 5, "job code")
    check_eq(as_int(job.get("signal")), None, "job signal")
    check_eq(job.get("reason"), "exited", "job reason")
    check_eq(job.get("runner"), s.runner.id, "job runner")
    check_eq(as_int(job.get("pid")), st["pid"], "job pid = start.pid")
    check_eq(job.get("argv"), TEMPLATES["outerr"]["argv"], "job argv")
    check_eq(job.get("template"), "outerr", "job template")
    check_eq(job.get("channel"), ch, "job channel")
    check_eq(as_int(job.get("attempt")), 1, "job attempt")
    c, b, e_ = (as_int(job.get(k)) for k in ("created_ms", "started_ms", "ended_ms"))
    check(c and b and e_ and t0 - 5000 <= c <= b <= e_ <= time.time() * 1000 + 5000,
          "created_ms <= started_ms <= ended_ms (epoch ms): %r" % job)
    check(as_int(job.get("duration_ms")) is not None and as_int(job["duration_ms"]) >= 400,
          "job duration_ms: %r" % job)

    h = pctest.job_hash(s.r, j["id"])
    for k, v in (("status", "exited"), ("code", "5"), ("reason", "exited"), ("channel", ch),
                 ("runner", s.runner.id), ("attempt", "1")):
        check_eq(h.get(k), v, "hash field %s" % k)
    check(h.get("signal", "") == "", "hash signal should be empty: %r" % h.get("signal"))
    check(h.get("entry"), "hash field entry (pc:jobs stream id) missing: %r" % h)
    check_eq(json.loads(h.get("argv", "null")), TEMPLATES["outerr"]["argv"], "hash argv")
    ttl = s.r.execute("TTL", "pc:job:%s" % j["id"])
    check(0 < ttl <= 7 * 86400, "an ended job's hash should expire (7 days): TTL %r" % ttl)

    # the same, live, through the gateway's SSE
    evs = sse.read_until(lambda e: e.event == "exit", timeout=15)
    sse.close()
    check_eq([(e.id, e.event, e.data) for e in evs],
             [(x.id, x.event, x.data.decode()) for x in es], "SSE events of the job channel")


def t_env_cwd(s):
    job, es = s.run({"template": "env", "env": {"REQ_VAR": "from-request"}})
    check_eq(job["status"], "exited", "env job status")
    env = dict(l.split("=", 1) for l in pctest.output_lines(es) if "=" in l)
    check_eq(env.get("PATH"), "/usr/local/bin:/usr/bin:/bin", "job PATH")
    check_eq(env.get("LANG"), "C.UTF-8", "job LANG")
    check_eq(env.get("TPL_VAR"), "from-template", "template env")
    check_eq(env.get("REQ_VAR"), "from-request", "request env")
    check_eq(env.get("PIPECAST_JOB_ID"), job["id"], "PIPECAST_JOB_ID")
    check_eq(env.get("PIPECAST_CHANNEL"), job["channel"], "PIPECAST_CHANNEL")
    extra = set(env) - {"PATH", "HOME", "LANG", "TPL_VAR", "REQ_VAR", "PIPECAST_JOB_ID",
                        "PIPECAST_CHANNEL"}
    check(not extra, "the job environment must be cleared; it also has %r" % sorted(extra))
    check("PC_TEST_SECRET" not in env, "the runner's environment leaked into the job")

    job, es = s.run({"template": "pwd", "cwd": DATA_DIR})
    check_eq(pctest.output_lines(es), [os.path.realpath(DATA_DIR)], "cwd of the job")


def t_pty(s):
    job, es = s.run({"template": "tty", "pty": True})
    check_eq((job["status"], as_int(job.get("code"))), ("exited", 0), "pty job")
    raw = [e.data for e in es if e.event in ("stdout", "stderr")]
    check(not any(b"\r" in d for d in raw), "pty output gained CRs (raw mode expected): %r" % raw)
    check_eq(pctest.output_lines(es), ["tty", "err-line", "a", "b"],
             "pty: stdout and stderr merged on the terminal, in order")
    check_eq(pctest.output_lines(es, "stderr"), [], "pty: no separate stderr")
    job, es = s.run({"template": "tty"})
    check_eq((pctest.output_lines(es), pctest.output_lines(es, "stderr")),
             (["notty", "a", "b"], ["err-line"]), "without pty: pipes")


def t_partial(s):
    """Output without a newline is published as `partial` after a short idle time, while the
    job is still running; the next chunk completes the line."""
    j = job_submit(s.gw, {"template": "prompt"})
    es = pctest.wait_channel(s.r, j["channel"],
                             lambda es: any(e.event == "stdout" for e in es), 5,
                             "the idle flush of a prompt without a newline")
    first = [e for e in es if e.event == "stdout"][0]
    check(first.partial and first.data == b"prompt> ",
          "first stdout entry should be the prompt flagged partial: %r" % first)
    check(not pctest.events_of(es, "exit"), "the prompt appeared only after the exit event")
    lag = pctest.id_key(first.id)[0] - pctest.id_key(es[0].id)[0]
    check(lag < 600, "the prompt was published %d ms after start (idle flush ~50 ms)" % lag)
    job = job_wait(s.gw, j["id"], timeout=10)
    es = pctest.wait_exit_event(s.r, j["channel"])
    check_eq(pctest.output_lines(es), ["prompt> done"], "the line completed after the partial")


def t_long_lines(s):
    """Lines longer than --max-line (65536) become partial chunks, never split inside a UTF-8
    sequence; bytes are kept exactly (invalid UTF-8 too)."""
    job, es = s.run({"template": "longline"})
    check_eq((job["status"], as_int(job.get("code"))), ("exited", 0), "longline job")
    out = [e for e in es if e.event == "stdout"]
    check(all(len(e.data) <= 65536 for e in out), "chunk sizes %r" % [len(e.data) for e in out])
    for e in out[:-1]:
        try:
            e.data.decode("utf-8")
        except UnicodeDecodeError as ex:
            pctest.fail("a chunk was cut inside a UTF-8 sequence (%s): %r" % (ex, e))
    lines, cur = [], b""
    for e in out:
        cur += e.data
        if not e.partial:
            lines.append(cur)
            cur = b""
    check_eq([len(l) for l in lines], [200000, 200000, 12], "line lengths after joining chunks")
    check(lines[0] == b"y" * 200000 and lines[1] == "\u00e9".encode() * 100000,
          "long lines joined from their chunks differ from what the job printed")
    check_eq(lines[2], b"\xff\xfe bad utf-8", "invalid UTF-8 kept byte for byte in Redis")
    check(sum(e.partial for e in out) >= 6, "expected >= 6 partial chunks, got %d"
          % sum(e.partial for e in out))


def t_codes(s):
    job, es = s.run({"template": "code", "args": {"code": "3"}})
    check_eq((job["status"], as_int(job["code"])), ("exited", 3), "exit 3: status, code")
    check_eq(exit_json(es).get("code"), 3, "exit 3: exit event code")
    job, es = s.run({"template": "code", "args": ["code=0"]})
    check_eq((job["status"], as_int(job["code"]), job.get("reason")), ("exited", 0, "exited"),
             "exit 0 (args as k=v array)")
    for bad in ("abc", "300", "-1", "3;4"):
        refused(s, {"template": "code", "args": {"code": bad}}, "int param code=%r" % bad)

    job, es = s.run({"template": "selfterm"})
    ex = exit_json(es)
    check_frame(es, "selfterm")
    check_eq(pctest.output_lines(es), ["before"], "selfterm stdout")
    check_eq((ex.get("code"), ex.get("signal")), (None, 15), "selfterm exit event code/signal")
    check_eq((as_int(job.get("code")), as_int(job.get("signal"))), (None, 15),
             "selfterm job code/signal")
    # docs/jobs.md leaves open whether a job that signals itself is `exited` or `killed`;
    # it is neither timeout nor failed, and status / reason / event agree
    check(job["status"] in ("exited", "killed"), "selfterm status %r" % job["status"])
    check_eq(ex.get("reason"), job["status"], "selfterm exit.reason vs status")
    check_eq(job.get("reason"), job["status"], "selfterm job reason vs status")
    pctest.log("a job killed by its own SIGTERM ends with status %r" % job["status"])


def t_stdin(s):
    # cat: line by line, live
    j = job_submit(s.gw, {"template": "cat"})
    job_wait(s.gw, j["id"], ("running",), 10)
    r = pctest.job_stdin(s.gw, j["id"], b"hello\n")
    check_eq(r.status, 202, "stdin write: status (%r)" % r)
    check_eq(r.json().get("written"), 6, "stdin write: written")
    pctest.wait_channel(s.r, j["channel"], lambda es: "hello" in pctest.output_lines(es), 10,
                        "cat to echo the first stdin line while stdin is still open")
    r = pctest.job_stdin(s.gw, j["id"], b"world\n", eof=True)
    check_eq(r.status, 202, "stdin write + eof: status (%r)" % r)
    job = job_wait(s.gw, j["id"], timeout=10)
    es = pctest.wait_exit_event(s.r, j["channel"])
    check_eq((job["status"], as_int(job["code"])), ("exited", 0), "cat after eof")
    check_eq(pctest.output_lines(es), ["hello", "world"], "cat output")
    check_frame(es, "cat")
    r = pctest.job_stdin(s.gw, j["id"], b"late\n")
    pctest.check_json_error(r, 409, "stdin to an ended job")
    r = pctest.job_kill(s.gw, j["id"])
    pctest.check_json_error(r, 409, "DELETE of an ended job")

    # request `stdin` text first, then more through the API, then eof with an empty body
    j = job_submit(s.gw, {"template": "cat", "stdin": "first\n"})
    job_wait(s.gw, j["id"], ("running",), 10)
    pctest.wait_channel(s.r, j["channel"], lambda es: "first" in pctest.output_lines(es), 10,
                        "the request's stdin text to reach cat")
    check_eq(pctest.job_stdin(s.gw, j["id"], b"second\n").status, 202, "stdin write")
    r = pctest.job_stdin(s.gw, j["id"], b"", eof=True)
    check_eq(r.status, 202, "eof with an empty body (%r)" % r)
    check_eq(r.json().get("written"), 0, "eof with an empty body: written")
    job = job_wait(s.gw, j["id"], timeout=10)
    es = pctest.wait_exit_event(s.r, j["channel"])
    check_eq(pctest.output_lines(es), ["first", "second"], "cat with request stdin")

    # more than a pipe buffer, in several writes, to a job that reads it all at the end
    j = job_submit(s.gw, {"template": "wc"})
    job_wait(s.gw, j["id"], ("running",), 10)
    for i in range(3):
        r = pctest.job_stdin(s.gw, j["id"], bytes([65 + i]) * 300000, eof=(i == 2))
        check_eq((r.status, r.json().get("written")), (202, 300000), "stdin write %d of 300000 "
                 "bytes" % i)
    job = job_wait(s.gw, j["id"], timeout=15)
    es = pctest.wait_exit_event(s.r, j["channel"])
    check_eq(pctest.output_lines(es), ["900000"], "wc -c of 3 x 300000 stdin bytes")

    # sort: nothing comes out before eof
    j = job_submit(s.gw, {"template": "sort"})
    job_wait(s.gw, j["id"], ("running",), 10)
    check_eq(pctest.job_stdin(s.gw, j["id"], b"pear\napple\n").status, 202, "stdin to sort")
    time.sleep(0.3)
    check_eq(pctest.output_lines(pctest.channel_entries(s.r, j["channel"])), [],
             "sort output before eof")
    check_eq(pctest.job_stdin(s.gw, j["id"], b"fig\n", eof=True).status, 202, "stdin + eof")
    job = job_wait(s.gw, j["id"], timeout=10)
    es = pctest.wait_exit_event(s.r, j["channel"])
    check_eq((job["status"], as_int(job["code"])), ("exited", 0), "sort after eof")
    check_eq(pctest.output_lines(es), ["apple", "fig", "pear"], "sort output")


def t_kill_tree(s):
    jobs = {}
    for name in ("tree", "tree_noterm"):
        j = job_submit(s.gw, {"template": name})
        job = job_wait(s.gw, j["id"], ("running",), 10)
        pgid = as_int(job["pid"])
        pctest.kill_group_at_exit(pgid)
        pctest.wait_for(lambda: len(pctest.group_members(pgid)) >= 3, 5 * pctest.SLOW,
                        "%s: sh and its two sleeps in process group %d" % (name, pgid))
        check_eq(os.getpgid(pgid), pgid, "%s: the job leads its own process group" % name)
        check(os.getpgid(pgid) != os.getpgid(s.runner.pid),
              "%s: the job must not share the runner's process group" % name)
        jobs[name] = (j, pgid)
    t0 = time.monotonic()
    for name, (j, _) in jobs.items():
        r = pctest.job_kill(s.gw, j["id"])
        check_eq(r.status, 202, "DELETE /api/jobs/<id> of a running job (%r)" % r)
        check_eq(r.json(), {"id": j["id"], "status": "killing"}, "DELETE answer")

    j, pgid = jobs["tree"]
    job = job_wait(s.gw, j["id"], timeout=10)
    check_eq(job["status"], "killed", "killed tree: status")
    pctest.wait_for(lambda: not pctest.group_members(pgid), 3 * pctest.SLOW,
                    "no process of the killed job's group %d to survive (left: %r)"
                    % (pgid, pctest.group_members(pgid)))
    es = pctest.wait_exit_event(s.r, j["channel"])
    ex = exit_json(es)
    check_eq((ex.get("reason"), ex.get("code"), ex.get("signal")), ("killed", None, 15),
             "killed tree: exit event reason/code/signal (SIGTERM)")

    j, pgid = jobs["tree_noterm"]
    job = job_wait(s.gw, j["id"], timeout=30)
    took = time.monotonic() - t0
    check_eq(job["status"], "killed", "TERM-ignoring tree: status")
    pctest.wait_for(lambda: not pctest.group_members(pgid), 3 * pctest.SLOW,
                    "no process of the TERM-ignoring group %d to survive (left: %r)"
                    % (pgid, pctest.group_members(pgid)))
    ex = exit_json(pctest.wait_exit_event(s.r, j["channel"]))
    check_eq((ex.get("reason"), ex.get("signal")), ("killed", 9),
             "TERM-ignoring tree: killed by SIGKILL after the grace period")
    pctest.log("TERM-ignoring job killed after %.1f s (kill grace)" % took)


def t_timeout(s):
    t0 = time.monotonic()
    a = job_submit(s.gw, {"template": "sleeper", "args": {"secs": "30"}, "timeout_s": 1})
    b = job_submit(s.gw, {"template": "sleeper_t1", "timeout_s": 60})
    for j, what in ((a, "request timeout_s 1"),
                    (b, "template timeout_s 1 (a request cannot widen it)")):
        job = job_wait(s.gw, j["id"], timeout=15)
        check_eq(job["status"], "timeout", "%s: status" % what)
        check_eq(job.get("reason"), "timeout", "%s: reason" % what)
        ran = as_int(job["ended_ms"]) - as_int(job["started_ms"])
        check(900 <= ran <= 4000 * pctest.SLOW, "%s: ran %d ms (want ~1 s)" % (what, ran))
        ex = exit_json(pctest.wait_exit_event(s.r, j["channel"]))
        check_eq((ex.get("reason"), ex.get("code"), ex.get("signal")), ("timeout", None, 15),
                 "%s: exit event" % what)
    check(time.monotonic() - t0 < 8 * pctest.SLOW, "timeouts took %.1f s" % (time.monotonic() - t0))


def t_limits(s):
    job, es = s.run({"template": "alloc", "args": {"mb": "1"}, "limits": {"as_mb": 256}})
    check_eq((job["status"], as_int(job["code"])), ("exited", 0),
             "control: python3 allocating 1 MiB under as_mb 256 (stderr %r)"
             % pctest.output_lines(es, "stderr"))
    check_eq(pctest.output_lines(es), ["allocated 1048576"], "control output")
    job, es = s.run({"template": "alloc", "args": {"mb": "1024"}, "limits": {"as_mb": 256}})
    err = "\n".join(pctest.output_lines(es, "stderr"))
    check(job["status"] in ("exited", "killed") and
          (as_int(job.get("code")) or as_int(job.get("signal"))),
          "1 GiB allocation under as_mb 256 must fail: %r (stderr %r)" % (job, err))
    check_eq(pctest.output_lines(es), [], "the allocation must not have succeeded")
    check("MemoryError" in err or as_int(job.get("signal")),
          "expected a MemoryError on stderr, got %r" % err)

    t0 = time.monotonic()
    a = job_submit(s.gw, {"template": "spin", "limits": {"cpu_s": 1}, "timeout_s": 20})
    b = job_post(s.gw, {"template": "spin", "limits": {"cpu_s": 100}, "timeout_s": 20})
    check(b.status in (201, 400), "cpu_s above limits_max: expected 201 (capped) or 400, got %r"
          % b)
    todo = [(a, "cpu_s 1")] + ([(b.json(), "cpu_s 100 capped by limits_max cpu_s 2")]
                               if b.status == 201 else [])
    for j, what in todo:
        job = job_wait(s.gw, j["id"], timeout=25)
        ex = exit_json(pctest.wait_exit_event(s.r, j["channel"]))
        check(job["status"] != "timeout" and ex.get("reason") != "timeout",
              "%s: the busy loop ran until the timeout: the CPU limit was not applied (%r)"
              % (what, ex))
        if job["status"] == "failed":
            check("limits_max" not in what, "%s: failed instead of being capped: %r" % (what, ex))
        check(ex.get("signal") in (24, 9), "%s: expected death by SIGXCPU (24) or SIGKILL (9), "
              "got %r" % (what, ex))
        check(ex.get("duration_ms", 1e9) < 10000 * pctest.SLOW, "%s: took %r" % (what, ex))
    pctest.log("CPU limits: %.1f s" % (time.monotonic() - t0))


def t_rlimits_applied(s):
    """The four rlimits as the job sees them: request narrows the template, limits_max caps
    both, and the hard limit is finite (the job cannot lift its own limit)."""
    def limits_of(spec):
        job, es = s.run(spec)
        check_eq(job["status"], "exited", "cat /proc/self/limits")
        out = {}
        for l in pctest.output_lines(es):
            m = re.match(r"^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)", l)
            if m:
                out[m.group(1)] = (m.group(2), m.group(3))
        return out
    lim = limits_of({"template": "limits",
                     "limits": {"cpu_s": 100, "as_mb": 512, "nofile": 128, "nproc": 64}})
    want = {"Max cpu time": ("2", 2), "Max address space": (str(512 << 20), 4096 << 20),
            "Max open files": ("128", 4096), "Max processes": ("64", 512)}
    for k, (soft, cap) in want.items():
        got = lim.get(k)
        check(got is not None, "%s missing from /proc/self/limits: %r" % (k, lim))
        check_eq(got[0], soft, "%s soft limit (request / template / limits_max)" % k)
        check(got[1] != "unlimited" and int(got[1]) <= cap,
              "%s hard limit %s: must be finite and within limits_max (%d)" % (k, got[1], cap))
    lim = limits_of({"template": "limits", "limits": {"nofile": 1000}})
    check_eq(lim["Max open files"][0], "300", "a request cannot widen the template's nofile 300")


def t_missing(s):
    for name, needle in (("missing", "/nonexistent/pc-no-such-cmd"),
                         ("missing_path", "pc-no-such-cmd-in-path")):
        job, es = s.run({"template": name})
        check_eq(job["status"], "failed", "%s: status" % name)
        check_eq(job.get("reason"), "failed to start", "%s: reason" % name)
        ex = exit_json(es)
        check_eq(ex.get("reason"), "failed to start", "%s: exit event reason" % name)
        check_eq(ex.get("code"), None, "%s: exit event code" % name)
        msg = ex.get("error")
        check(isinstance(msg, str) and needle in msg,
              "%s: the exit event should carry an error naming %r, got %r" % (name, needle, ex))
        check(es[-1].event == "exit", "%s: exit must be the last entry: %r" % (name, es[-2:]))
        h = pctest.job_hash(s.r, job["id"])
        check(needle in h.get("error", ""), "%s: hash error field %r" % (name, h.get("error")))
        check_eq(h.get("status"), "failed", "%s: hash status" % name)


def t_injection(s):
    results = {}

    def literal(tpl, args, want, what):
        job, es = s.run({"template": tpl, "args": args})
        check_eq((job["status"], as_int(job.get("code"))), ("exited", 0), "%s: job" % what)
        check_eq(pctest.output_lines(es), want, "%s: output" % what)
        return job

    literal("echo_any", {"msg": "; rm -rf /"}, ["; rm -rf /"], "'; rm -rf /'")
    job = literal("echo_any", {"msg": "$(touch %s)" % PWNED}, ["$(touch %s)" % PWNED], "$(...)")
    check_eq(job.get("argv"), ["printf", "%s\\n", "$(touch %s)" % PWNED],
             "argv actually executed: one element per template element")
    literal("echo_any", {"msg": "`touch %s`" % PWNED}, ["`touch %s`" % PWNED], "backticks")
    literal("echo_any", {"msg": "a b  c\t*"}, ["a b  c\t*"], "spaces and a glob (no splitting)")
    literal("echo_any", {"msg": "{msg}"}, ["{msg}"], "a value that looks like a placeholder")
    literal("echo_two", {"a": "{b}", "b": "x"}, ["{b}|x"], "no re-substitution")
    literal("echo_any", ["msg=a=b; c"], ["a=b; c"], "k=v array form (split at the first =)")
    literal("echo_dash", {"msg": "-rf"}, ["-rf"], "-rf with allow_dash")

    for tpl, args, what in (
            ("echo_any", {"msg": "-rf"}, "-rf without allow_dash"),
            ("echo_any", {"msg": "--help"}, "--help without allow_dash"),
            ("echo_any", {"msg": "../../etc/passwd"}, "../ without allow_dotdot"),
            ("cat_file", {"name": "../../../../../../etc/passwd"}, "../ into a path"),
            ("cat_file", {"name": "a/../../x"}, "../ inside a path"),
            ("echo", {"msg": "; rm -rf /"}, "default string pattern vs ';'"),
            ("echo", {"msg": "$(touch %s)" % PWNED}, "default string pattern vs $(...)"),
            ("echo", {"msg": "a b"}, "default string pattern vs a space"),
            ("echo_any", {"msg": "hi", "evil": "x"}, "unknown param"),
            ("echo_any", {}, "missing required param"),
            ("no_such_template", {}, "unknown template")):
        results[what] = refused(s, {"template": tpl, "args": args}, what, PWNED)
    check(not os.path.exists(PWNED), "%s was created by an injected command" % PWNED)
    pctest.log("refusals: %s" % results)


def t_queue_injection(s):
    """The runner validates again: entries written straight into pc:jobs (no gateway)."""
    for spec, what in (({"argv": ["touch", PWNED]}, "argv without --allow-any-command"),
                       ({"template": "echo_any", "args": {"msg": "-rf"}}, "-rf via the queue"),
                       ({"template": "echo_any", "args": {"msg": "x"}, "shell": True},
                        "shell: true in a request"),
                       ({"template": "missing", "bogus": 1}, "unknown top-level key")):
        jid, ch = inject_and_wait(s.r, spec, what)
        h = pctest.job_hash(s.r, jid)
        check_eq(h.get("status"), "failed", "queue-injected %s: status" % what)
        es = pctest.wait_exit_event(s.r, ch, 5)
        check(not start_of(es) and not pctest.output_lines(es),
              "queue-injected %s: must not run: %r" % (what, es))
        check(not os.path.exists(PWNED), "queue-injected %s ran: %s exists" % (what, PWNED))


def t_request_opt_in(s):
    """Least privilege: a request sets `cwd` / `env` of a template job only where the template
    opts in ("request_cwd": true, "request_env": [names] or true minus the denylist)."""
    hb = s.runner.heartbeat().get("templates") or {}
    check_eq((hb["pwd"].get("request_cwd"), hb["pwd_fixed"].get("request_cwd"),
              hb["env"].get("request_env"), hb["env_any"].get("request_env"),
              hb["env_none"].get("request_env")), (True, False, ["REQ_VAR"], True, False),
             "heartbeat request_cwd / request_env")
    for spec, what in (({"template": "pwd_fixed", "cwd": DATA_DIR}, "cwd without request_cwd"),
                       ({"template": "id", "cwd": "/"}, "cwd without request_cwd (no cwd)"),
                       ({"template": "env_none", "env": {"X": "1"}}, "env without request_env"),
                       ({"template": "env", "env": {"MAKEFLAGS": "x"}}, "env not listed"),
                       ({"template": "pwd", "env": {"REQ_VAR": "x"}}, "env on a cwd-only tmpl")):
        check_eq(refused(s, spec, what), "400", "%s: refused at the gateway" % what)
    # "request_env": true: any name except the denylist, which the runner enforces
    for name in ("MAKEFLAGS", "MAKEFILES", "LD_PRELOAD", "PATH"):
        check_eq(refused(s, {"template": "env_any", "env": {name: "/tmp/x"}}, name), "failed",
                 "%s on a request_env: true template: failed by the runner" % name)
    job, es = s.run({"template": "env_any", "env": {"ANY_VAR": "1"}})
    check_eq(job["status"], "exited", "request_env: true with an ordinary name")
    check("ANY_VAR=1" in pctest.output_lines(es), "ANY_VAR in the job env")
    job, es = s.run({"template": "pwd_fixed"})
    check_eq(pctest.output_lines(es), ["/"], "a template's own cwd")
    # the runner checks again: requests written straight into the queue
    for spec, what in (({"template": "pwd_fixed", "cwd": DATA_DIR}, "queue: cwd"),
                       ({"template": "env_none", "env": {"X": "1"}}, "queue: env"),
                       ({"template": "env", "env": {"MAKEFILES": "/tmp/x"}}, "queue: env name")):
        jid, ch = inject_and_wait(s.r, spec, what)
        check_eq(pctest.job_hash(s.r, jid).get("status"), "failed", "%s: status" % what)
        es = pctest.wait_exit_event(s.r, ch, 5)
        check(not start_of(es), "%s: must not start: %r" % (what, es))


def t_argv_refused(s):
    hb = s.runner.heartbeat()
    check_eq(hb.get("allow_any_command"), False, "heartbeat allow_any_command")
    check_eq((hb.get("id"), hb.get("pid")), (s.runner.id, s.runner.pid), "heartbeat id, pid")
    for k in ("host", "slots", "running", "version", "started_ms"):
        check(k in hb, "heartbeat field %s missing: %r" % (k, sorted(hb)))
    ttl = s.r.execute("TTL", s.runner.heartbeat_key())
    check(0 < ttl <= 15, "heartbeat TTL %r (EX 15)" % ttl)
    check(set(TEMPLATES) <= set((hb.get("templates") or {})),
          "heartbeat templates: %r" % sorted(hb.get("templates") or {}))
    r = job_post(s.gw, {"argv": ["touch", PWNED]})
    pctest.check_json_error(r, 403, "argv job with no runner allowing any command")
    time.sleep(0.2)
    check(not os.path.exists(PWNED), "%s created by a refused argv job" % PWNED)


def t_argv_allowed(_s):
    s = pctest.JobSetup({"echo_any": TEMPLATES["echo_any"]}, ["--allow-any-command"])
    check_eq(s.runner.heartbeat().get("allow_any_command"), True,
             "heartbeat allow_any_command with --allow-any-command")
    job, es = s.run({"argv": ["printf", "%s\\n", "a b", "; rm -rf /", "$(touch %s)" % PWNED]})
    check_eq((job["status"], as_int(job["code"])), ("exited", 0), "argv job")
    check_eq(pctest.output_lines(es), ["a b", "; rm -rf /", "$(touch %s)" % PWNED],
             "argv job output (each element one argument, no shell)")
    check_eq(es[0].json().get("argv"), ["printf", "%s\\n", "a b", "; rm -rf /",
                                        "$(touch %s)" % PWNED], "start.argv")
    check_eq(job.get("template") in (None, ""), True, "template of an argv job: %r"
             % job.get("template"))
    job, es = s.run({"argv": ["pc-no-such-cmd-argv"]})
    check_eq((job["status"], job.get("reason")), ("failed", "failed to start"), "argv: missing")
    for spec, what in (({"argv": []}, "empty argv"),
                       ({"argv": ["echo", 1]}, "non-string argv element"),
                       ({"argv": ["echo"] * 257}, "257 argv elements"),
                       ({"argv": ["echo", "x" * 4097]}, "argv element > 4096 bytes"),
                       ({"argv": ["echo"], "template": "echo_any"}, "both argv and template"),
                       ({"argv": ["echo"], "bogus": 1}, "unknown top-level key"),
                       ({"argv": ["echo"], "env": {"1BAD": "x"}}, "bad env name"),
                       ({"argv": ["echo"], "timeout_s": 0}, "timeout_s 0"),
                       ({"argv": ["echo"], "limits": {"cpu_s": -1}}, "negative limit")):
        pctest.check_json_error(job_post(s.gw, spec), 400, what)
    check(not os.path.exists(PWNED), "%s was created" % PWNED)
    s.runner.stop()
    s.gw.stop()


def t_timeout_kill(_s):
    """Timeout of a job that ignores SIGTERM: SIGKILL after --kill-grace 1, status timeout."""
    s = pctest.JobSetup(TEMPLATES, ["--kill-grace", "1"])
    j = job_submit(s.gw, {"template": "tree_noterm", "timeout_s": 1})
    job = job_wait(s.gw, j["id"], ("running",), 10)
    pgid = as_int(job["pid"])
    pctest.kill_group_at_exit(pgid)
    job = job_wait(s.gw, j["id"], timeout=15)
    check_eq((job["status"], job.get("reason"), as_int(job.get("signal"))), ("timeout", "timeout", 9),
             "TERM-ignoring job past its timeout: status, reason, signal")
    ran = as_int(job["ended_ms"]) - as_int(job["started_ms"])
    check(1800 <= ran <= 5000 * pctest.SLOW, "ran %d ms (timeout 1 s + kill grace 1 s)" % ran)
    pctest.wait_for(lambda: not pctest.group_members(pgid), 3 * pctest.SLOW,
                    "the timed-out group %d to be gone (left %r)"
                    % (pgid, pctest.group_members(pgid)))
    s.runner.stop()
    s.gw.stop()


def t_cancel_and_shutdown(_s):
    """--slots 1: a second job stays queued; DELETE of a queued job cancels it (it never starts,
    `exit` reason killed once a runner picks it). SIGTERM of the runner with a job running past
    --shutdown-grace: the job is killed and reported, the runner takes no new job and exits 0."""
    s = pctest.JobSetup(TEMPLATES, ["--slots", "1", "--shutdown-grace", "1"])
    a = job_submit(s.gw, {"template": "sleeper", "args": {"secs": "300"}})
    ja = job_wait(s.gw, a["id"], ("running",), 10)
    pctest.kill_group_at_exit(as_int(ja["pid"]))
    b = job_submit(s.gw, {"template": "sleeper", "args": {"secs": "300"}})
    time.sleep(0.5)
    check_eq(job_get(s.gw, b["id"])["status"], "queued", "second job with --slots 1")
    r = pctest.job_kill(s.gw, b["id"])
    check_eq(r.status, 202, "DELETE of a queued job (%r)" % r)
    check_eq(pctest.job_kill(s.gw, a["id"]).status, 202, "DELETE of the running job")
    jb = job_wait(s.gw, b["id"], timeout=15)
    check_eq(jb["status"], "killed", "the cancelled queued job")
    es = pctest.wait_exit_event(s.r, b["channel"], 10)
    check(not start_of(es), "a job cancelled while queued must never start: %r" % es)
    check_eq(exit_json(es).get("reason"), "killed", "exit reason of the cancelled job")

    c = job_submit(s.gw, {"template": "sleeper", "args": {"secs": "300"}})
    jc = job_wait(s.gw, c["id"], ("running",), 10)
    pgid = as_int(jc["pid"])
    pctest.kill_group_at_exit(pgid)
    d = job_submit(s.gw, {"template": "sleeper", "args": {"secs": "1"}})
    time.sleep(0.3)
    t0 = time.monotonic()
    s.runner.stop(timeout=20)
    took = time.monotonic() - t0
    jc = job_get(s.gw, c["id"])
    check_eq((jc["status"], jc.get("reason")), ("killed", "killed"),
             "a job still running after --shutdown-grace 1")
    check(1.0 <= took <= 8 * pctest.SLOW, "runner stop took %.1f s (grace 1 s)" % took)
    check(not pctest.group_members(pgid), "the job's processes survived the runner's stop")
    ex = exit_json(pctest.wait_exit_event(s.r, c["channel"], 5))
    check_eq(ex.get("reason"), "killed", "exit event of the job killed at shutdown")
    jd = job_get(s.gw, d["id"])
    check_eq(jd["status"], "queued", "a queued job must not be taken by a stopping runner")
    check_eq(s.r.execute("EXISTS", s.runner.heartbeat_key()), 0, "heartbeat after stop")
    s.gw.stop()


def t_user(_s):
    import pwd
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pctest.log("no user nobody: skipping --user")
        return
    if os.geteuid() != 0:
        pctest.log("not root: skipping --user")
        return
    s = pctest.JobSetup({"id": dict(TEMPLATES["id"], cwd="/")}, ["--user", "nobody"])
    job, es = s.run({"template": "id"})
    check_eq((job["status"], pctest.output_lines(es)), ("exited", [str(uid)]),
             "a job of a runner started with --user nobody")
    s.runner.stop()
    s.gw.stop()


def t_runner_sigterm(s):
    """SIGTERM: running jobs may finish within the grace period; clean exit; heartbeat gone."""
    j = job_submit(s.gw, {"template": "sleeper", "args": {"secs": "1"}})
    job_wait(s.gw, j["id"], ("running",), 10)
    t0 = time.monotonic()
    s.runner.stop(timeout=15)
    job = job_get(s.gw, j["id"])
    check_eq((job["status"], as_int(job.get("code"))), ("exited", 0),
             "a 1 s job running when the runner got SIGTERM (shutdown grace 10 s)")
    check(time.monotonic() - t0 < 8 * pctest.SLOW, "runner took %.1f s to stop"
          % (time.monotonic() - t0))
    check_eq(s.r.execute("EXISTS", s.runner.heartbeat_key()), 0,
             "heartbeat key after a clean stop")
    check_eq(s.r.execute("EXISTS", "pc:ctl:" + s.runner.id), 0, "control stream after a clean stop")
    check_eq(pctest.xpending_count(s.r), 0, "pending pc:jobs entries after every job ended")


GROUPS = {
    "output": ["t_output", "t_env_cwd", "t_pty", "t_partial", "t_long_lines", "t_codes",
               "t_missing"],
    "control": ["t_stdin", "t_kill_tree", "t_timeout", "t_timeout_kill", "t_cancel_and_shutdown",
                "t_runner_sigterm"],
    "limits": ["t_rlimits_applied", "t_limits"],
    "security": ["t_injection", "t_queue_injection", "t_request_opt_in", "t_argv_refused", "t_argv_allowed",
                 "t_user"],
}


def main():
    import sys
    groups = sys.argv[1:] or list(GROUPS)
    for g in groups:
        check(g in GROUPS, "usage: test_jobs_runner.py [%s]..." % "|".join(GROUPS))
    names = [n for g in groups for n in GROUPS[g]]
    s = pctest.JobSetup(TEMPLATES, limits_max=LIMITS_MAX, runner_env={"PC_TEST_SECRET": "leak"})
    fns = []
    for n in names:
        fn = globals()[n]

        def sub(s, fn=fn):
            fn(s)
            if fn is not t_runner_sigterm:
                s.runner.check_alive("after %s" % fn.__name__)
        sub.__name__ = n
        fns.append(sub)
    pctest.run_subtests(fns, s)
    s.gw.stop()


if __name__ == "__main__":
    pctest.main(main)
