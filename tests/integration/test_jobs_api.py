#!/usr/bin/env python3
"""The gateway's job API on its own (docs/jobs.md "Gateway job API"), against a private
redis-server with fake runner heartbeats (SET pc:runner:<id> ... EX 60): no runner process is
involved, so this checks the gateway's own behaviour, byte for byte in Redis.

- POST /api/jobs: 503 + Retry-After with no live runner; strict body validation (400: bad
  JSON, unknown / duplicate keys, types, ranges, NUL, invalid UTF-8, names); template and params
  checked against the heartbeats (unknown template / param, missing required, pattern, int
  range, bool, leading '-', '..' segments, injection text); 403 for argv unless a live runner
  allows any command; 201 writes hash + index + session set + queue entry (+ "entry" field).
- GET /api/jobs: newest first, pagination walks everything once (index and session paths),
  status filter, bad query values -> 400.
- GET / DELETE /api/jobs/<id>, POST .../stdin: 400 bad id, 404 unknown, 409 ended / not
  running / after eof, 413 body too large; kill and stdin become entries of pc:ctl:<runner>
  (stdin with its credit and attempt, counted in stdin_accepted).
- DELETE /api/sessions/<s>: cancels queued jobs, sends kill for running ones, {"killed": N}.
- GET /api/runners (+ "free"), GET /api/templates merged across two runners.
- 405 / 404 / OPTIONS, per-endpoint request metrics, clean gateway exit."""

import json
import random

import pctest
from pctest import check, check_eq, check_json_error

JSON_HDR = {"Content-Type": "application/json"}
MAX_BODY = 65536

HB_A = {
    "host": "host-a", "pid": 101, "slots": 4, "running": 1, "version": "0.1.0",
    "started_ms": 1, "allow_any_command": False,
    "templates": {
        "build": {"description": "Build a directory (A)",
                  "params": {"dir": {"type": "string", "pattern": "^[A-Za-z0-9_./-]+$",
                                     "default": "."}}},
        "worker": {"description": "A worker", "request_cwd": True,
                   "request_env": ["LANG", "X_1"],
                   "params": {"queue": {"type": "string", "pattern": "^[a-z]+$",
                                        "required": True},
                              "n": {"type": "int", "min": 1, "max": 10},
                              "off": {"type": "int", "min": -5, "max": 5},
                              "verbose": {"type": "bool"},
                              "path": {"type": "string", "allow_dotdot": True},
                              "flag": {"type": "string", "pattern": "^-[a-z]$",
                                       "allow_dash": True},
                              "text": {"type": "string"}}},
    },
}
HB_B = {
    "host": "host-b", "pid": 202, "slots": 2, "running": 2, "version": "0.1.0",
    "started_ms": 2, "allow_any_command": True,
    "templates": {
        "build": {"description": "Build a directory (B)",
                  "params": {"dir": {"type": "string", "pattern": "^[A-Za-z0-9_./-]+$",
                                     "default": "."}}},
        "other": {"description": "Only on B", "params": {}},
    },
}


def main():
    redis = pctest.PrivateRedis()
    r = redis.client()
    gw = pctest.Gateway(redis.port, args=["--max-body", MAX_BODY])
    tag = "%06x" % random.getrandbits(24)
    ra, rb = "ra-%s:1" % tag, "rb-%s:2" % tag

    def post(spec=None, raw=None, path="/api/jobs"):
        body = raw if raw is not None else json.dumps(spec).encode()
        return gw.request("POST", path, body, JSON_HDR)

    def submit(spec):
        res = post(spec)
        check_eq(res.status, 201, "POST %s (%r)" % (spec, res))
        j = res.json()
        check(set(j) == {"id", "channel", "status"} and j["status"] == "queued",
              "POST /api/jobs answer %r" % j)
        return j

    def hb(rid, obj):
        o = dict(obj)
        o["id"] = rid
        r.execute("SET", "pc:runner:" + rid, json.dumps(o), "EX", 60)

    def ctl(rid):
        return [(i, {k.decode(): v for k, v in f.items()}) for i, f in r.xrange("pc:ctl:" + rid)]

    # ---- no live runner: validation first (400), then 503 -----------------------------------
    res = post({"template": "build"})
    check_json_error(res, 503, "POST with no runner alive")
    check(res.header("retry-after"), "503 without Retry-After: %r" % res.headers)
    check_eq(gw.get("/api/runners").json(), {"runners": []}, "GET /api/runners, none alive")
    check_eq(gw.get("/api/templates").json(), {"templates": {}}, "GET /api/templates, none")

    bad = [
        (b"", "empty body"), (b"{", "truncated JSON"), (b"[1]", "an array"),
        (b'"x"', "a string"), (b'{"template":"build"} x', "trailing data"),
        (b'{"template":"build","foo":1}', "unknown key"),
        (b'{"template":"build","template":"build"}', "duplicate key"),
        (b'{"template":"build","argv":["ls"]}', "template and argv"),
        (b'{"channel":"c"}', "neither template nor argv"),
        (b'{"template":""}', "empty template name"), (b'{"template":5}', "template not a string"),
        (b'{"argv":[]}', "empty argv"), (b'{"argv":"ls"}', "argv not an array"),
        (b'{"argv":["ls",1]}', "argv element not a string"), (b'{"argv":[""]}', "empty argv[0]"),
        (json.dumps({"argv": ["x"] * 257}).encode(), "257 argv elements"),
        (json.dumps({"argv": ["x" * 4097]}).encode(), "argv element of 4097 bytes"),
        (b'{"argv":["a\\u0000b"]}', "NUL escape in argv"),
        (b'{"argv":["a\x00b"]}', "raw NUL byte"), (b'{"argv":["a\x01b"]}', "raw control char"),
        (b'{"argv":["\xff\xfe"]}', "invalid UTF-8"),
        (b'{"argv":["ls"],"args":{"a":"b"}}', "args with argv"),
        (b'{"template":"build","args":5}', "args not an object/array"),
        (b'{"template":"build","args":["nodelim"]}', "args element without ="),
        (b'{"template":"build","args":["=v"]}', "args element with empty name"),
        (b'{"template":"build","args":["a=1","a=2"]}', "args name twice (array)"),
        (b'{"template":"build","args":{"a":1,"a":2}}', "args name twice (object)"),
        (b'{"template":"build","args":{"a":null}}', "args value null"),
        (b'{"template":"build","args":{"a":1.5}}', "args value not an integer"),
        (b'{"template":"build","args":{"a":{}}}', "args value an object"),
        (b'{"template":"build","channel":"a b"}', "bad channel"),
        (b'{"template":"build","channel":""}', "empty channel"),
        (json.dumps({"template": "build", "channel": "c" * 201}).encode(), "channel 201 bytes"),
        (b'{"template":"build","session":"a/b"}', "bad session"),
        (json.dumps({"template": "build", "session": "s" * 65}).encode(), "session 65 bytes"),
        (b'{"template":"build","session":7}', "session not a string"),
        (b'{"template":"build","env":{"1A":"x"}}', "env name starting with a digit"),
        (b'{"template":"build","env":{"A-B":"x"}}', "env name with -"),
        (b'{"template":"build","env":{"A":1}}', "env value not a string"),
        (b'{"template":"build","env":{"A":"1","A":"2"}}', "env name twice"),
        (b'{"template":"build","env":[]}', "env not an object"),
        (b'{"template":"build","cwd":""}', "empty cwd"),
        (b'{"template":"build","timeout_s":0}', "timeout 0"),
        (b'{"template":"build","timeout_s":604801}', "timeout too large"),
        (b'{"template":"build","timeout_s":1.5}', "timeout not an integer"),
        (b'{"template":"build","timeout_s":"5"}', "timeout a string"),
        (b'{"template":"build","stdin":5}', "stdin not a string"),
        (b'{"template":"build","pty":1}', "pty not a bool"),
        (b'{"template":"build","limits":{"cpu_s":0}}', "limit 0"),
        (b'{"template":"build","limits":{"as_mb":-1}}', "negative limit"),
        (b'{"template":"build","limits":{"cpu_s":1.5}}', "limit not an integer"),
        (b'{"template":"build","limits":{"stack":1}}', "unknown limit"),
        (b'{"template":"build","limits":{"nproc":1,"nproc":2}}', "limit twice"),
        (b'{"template":"build","limits":[]}', "limits not an object"),
    ]
    for raw, what in bad:
        check_json_error(post(raw=raw), 400, "POST /api/jobs with %s" % what)
    res = gw.request("POST", "/api/jobs", b"x" * (MAX_BODY + 1), JSON_HDR)
    check_json_error(res, 413, "POST /api/jobs larger than max-body")

    # ---- one runner (A): templates and params against its heartbeat --------------------------
    hb(ra, HB_A)
    check_json_error(post({"argv": ["ls", "-l"]}), 403, "argv with no runner allowing it")
    check_json_error(post({"template": "nosuch"}), 400, "unknown template")
    check_json_error(post({"template": "other"}), 400, "template only runner B has (B is down)")
    param_bad = [
        ({"template": "build", "args": {"nope": "x"}}, "unknown param"),
        ({"template": "worker"}, "missing required param"),
        ({"template": "worker", "args": {"queue": "ABC"}}, "pattern mismatch"),
        ({"template": "worker", "args": {"queue": "abc", "n": 11}}, "int above max"),
        ({"template": "worker", "args": {"queue": "abc", "n": 0}}, "int below min"),
        ({"template": "worker", "args": {"queue": "abc", "off": -6}}, "negative int below min"),
        ({"template": "worker", "args": ["queue=abc", "n=1x"]}, "int not a number"),
        ({"template": "worker", "args": {"queue": "abc", "verbose": "yes"}}, "bool not a bool"),
        ({"template": "build", "args": {"dir": "-rf"}}, "leading -"),
        ({"template": "build", "args": {"dir": "../etc"}}, ".. segment at the start"),
        ({"template": "build", "args": {"dir": "a/../../etc"}}, ".. segment in the middle"),
        ({"template": "build", "args": {"dir": "a/.."}}, ".. segment at the end"),
        ({"template": "build", "args": {"dir": "; rm -rf /"}}, "shell text"),
        ({"template": "build", "args": {"dir": "$(id)"}}, "command substitution"),
        ({"template": "build", "args": {"dir": "a\nb"}}, "newline"),
        ({"template": "worker", "args": {"queue": "abc", "text": "a b"}}, "default pattern"),
        ({"template": "worker", "args": {"queue": "abc", "flag": "--x"}}, "dash pattern"),
    ]
    for spec, what in param_bad:
        j = check_json_error(post(spec), 400, "template params: %s" % what)
    check("worker" in j["error"] and "flag" in j["error"], "param errors name the template "
          "and the param: %r" % j)

    ok = [
        {"template": "build"},
        {"template": "build", "args": {"dir": "src/sub..dir/x.y"}},
        {"template": "worker", "args": {"queue": "abc", "n": 10, "verbose": True,
                                        "path": "../up", "flag": "-v", "text": "k=v,a:b@c+d"}},
        {"template": "worker", "args": ["queue=abc", "n=1", "verbose=false", "off=-5"]},
    ]
    for spec in ok:
        submit(spec)

    # cwd / env only where the template opts in (the heartbeat says so)
    for spec, what in (({"template": "build", "cwd": "/tmp"}, "cwd: no request_cwd"),
                       ({"template": "build", "env": {"A": "1"}}, "env: no request_env"),
                       ({"template": "worker", "args": {"queue": "abc"},
                         "env": {"MAKEFLAGS": "x"}}, "env: name not in request_env")):
        j = check_json_error(post(spec), 400, what)
        check(("cwd" in j["error"]) if "cwd" in spec else ("env" in j["error"]),
              "%s: error names the field: %r" % (what, j))

    # a full request: everything lands in Redis as docs/jobs.md says
    spec = {"template": "worker", "args": ["queue=abc", "n=3"], "env": {"LANG": "C", "X_1": ""},
            "cwd": "/tmp", "timeout_s": 60, "stdin": "hello\n", "pty": False,
            "limits": {"cpu_s": 10, "as_mb": 512, "nofile": 256, "nproc": 64}}
    j = submit(spec)
    jid = j["id"]
    check_eq(j["channel"], "job:" + jid, "default channel without a session")
    h = pctest.job_hash(r, jid)
    check_eq((h.get("id"), h.get("status"), h.get("channel")), (jid, "queued", "job:" + jid),
             "job hash id/status/channel")
    norm = json.loads(h["spec"])
    want = dict(spec)
    want["args"] = {"queue": "abc", "n": "3"}
    check_eq(norm, want, "normalized spec (args as an object of strings)")
    entries = r.xrange("pc:jobs")
    mine = [(i, f) for i, f in entries if f.get(b"job") == jid.encode()]
    check_eq(len(mine), 1, "one pc:jobs entry for the job")
    check_eq(h.get("entry"), mine[0][0], "hash field entry = the pc:jobs entry id")
    score = r.execute("ZSCORE", "pc:jobs:index", jid)
    check_eq(int(float(score)), int(h["created_ms"]), "index score = created_ms")
    check("session" not in h, "no session field without a session: %r" % h)

    # session and explicit channel
    sess = "user@web:" + tag
    j = submit({"template": "build", "session": sess})
    check_eq(j["channel"], "%s:%s" % (sess, j["id"]), "default channel of a session job")
    check_eq(pctest.job_hash(r, j["id"]).get("session"), sess, "session field")
    check(r.execute("SISMEMBER", "pc:session:" + sess, j["id"]) == 1, "session set membership")
    j = submit({"template": "build", "session": sess, "channel": "my.chan-" + tag})
    check_eq(j["channel"], "my.chan-" + tag, "explicit channel wins")

    # ---- two runners: argv allowed, templates merged -----------------------------------------
    hb(rb, HB_B)
    submit({"argv": ["ls", "-l", "; rm -rf / $(id)"]})
    submit({"template": "other"})
    runners = gw.get("/api/runners").json()["runners"]
    check_eq(sorted((x["id"], x["free"], x["host"]) for x in runners),
             sorted([(ra, 3, "host-a"), (rb, 0, "host-b")]), "GET /api/runners (id, free, host)")
    t = gw.get("/api/templates").json()["templates"]
    check_eq(sorted(t), ["build", "other", "worker"], "merged template names")
    check_eq(t["build"]["runners"], sorted([ra, rb]), "build is offered by both runners")
    check_eq(t["other"]["runners"], [rb], "other only by B")
    check_eq(t["worker"]["runners"], [ra], "worker only by A")
    check_eq(t["build"]["description"], HB_A["templates"]["build"]["description"]
             if ra < rb else HB_B["templates"]["build"]["description"],
             "description from the first runner by id")
    check_eq(t["worker"]["params"], HB_A["templates"]["worker"]["params"], "worker params")

    # ---- GET one job, ids ----------------------------------------------------------------------
    job = pctest.job_get(gw, jid)
    for k in ("id", "status", "channel", "runner", "pid", "argv", "code", "signal", "reason",
              "created_ms", "started_ms", "ended_ms", "duration_ms", "session", "template",
              "attempt"):
        check(k in job, "job object lacks %r: %r" % (k, job))
    check_eq((job["id"], job["status"], job["template"], job["runner"], job["code"]),
             (jid, "queued", "worker", None, None), "job object of a queued job")
    for bad_id in ("0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "zz", "%30" * 16):
        check_json_error(gw.get("/api/jobs/" + bad_id), 400, "GET job id %r" % bad_id)
        check_json_error(gw.request("DELETE", "/api/jobs/" + bad_id), 400, "DELETE %r" % bad_id)
        check_json_error(post(raw=b"x", path="/api/jobs/%s/stdin" % bad_id), 400,
                         "stdin of %r" % bad_id)
    unknown = "0123456789abcdef"
    check_json_error(gw.get("/api/jobs/" + unknown), 404, "GET unknown job")
    check_json_error(gw.request("DELETE", "/api/jobs/" + unknown), 404, "DELETE unknown job")
    check_json_error(post(raw=b"x", path="/api/jobs/%s/stdin" % unknown), 404, "stdin unknown")

    # ---- listing ------------------------------------------------------------------------------
    everything = r.execute("ZREVRANGE", "pc:jobs:index", 0, -1, "WITHSCORES")
    order = [m.decode() for m, s in sorted(zip(everything[0::2], everything[1::2]),
                                           key=lambda p: (-int(float(p[1])), [-c for c in p[0]]))]

    def walk(query, limit):
        got, cursor, pages = [], None, 0
        while True:
            q = "%s%slimit=%d" % (query, "&" if query else "", limit)
            if cursor:
                q += "&cursor=" + cursor
            res = gw.get("/api/jobs?" + q)
            check_eq(res.status, 200, "GET /api/jobs?%s (%r)" % (q, res))
            body = res.json()
            check(len(body["jobs"]) <= limit, "page larger than limit %d" % limit)
            got += [x["id"] for x in body["jobs"]]
            cursor = body["next_cursor"]
            pages += 1
            check(pages < 100, "pagination does not end")
            if cursor is None:
                return got

    check_eq(walk("", 100), order, "GET /api/jobs: every job, newest first")
    check_eq(walk("", 3), order, "GET /api/jobs walked with limit=3")
    check_eq(walk("", 1), order, "GET /api/jobs walked with limit=1")
    sess_ids = [x for x in order if pctest.job_hash(r, x).get("session") == sess]
    check_eq(len(sess_ids), 2, "two jobs in the session")
    check_eq(walk("session=" + sess.replace("@", "%40"), 1), sess_ids, "session walk, limit 1")
    check_eq(walk("session=nosuch-" + tag, 5), [], "unknown session lists nothing")

    # status filter: make one running (as a runner would), one exited
    run_id, end_id = order[0], order[1]
    r.execute("HSET", "pc:job:" + run_id, "status", "running", "runner", ra, "pid", "4242",
              "started_ms", "1000", "attempt", "1", "argv", '["make","-C","."]')
    r.execute("HSET", "pc:job:" + end_id, "status", "exited", "runner", ra, "code", "0",
              "signal", "", "reason", "exited", "started_ms", "1000", "ended_ms", "1500")
    check_eq(walk("status=running", 2), [run_id], "status=running")
    check_eq(walk("status=exited", 2), [end_id], "status=exited")
    check_eq(walk("status=queued", 2), [x for x in order if x not in (run_id, end_id)],
             "status=queued")
    e = pctest.job_get(gw, end_id)
    check_eq((e["code"], e["signal"], e["duration_ms"], e["runner"]), (0, None, 500, ra),
             "an ended job: code, empty signal -> null, duration")
    rj = pctest.job_get(gw, run_id)
    check_eq((rj["pid"], rj["argv"], rj["attempt"]), (4242, ["make", "-C", "."], 1),
             "a running job: pid, argv as JSON, attempt")
    for q in ("status=nope", "limit=0", "limit=1001", "limit=x", "cursor=abc",
              "cursor=1.0123456789ABCDEF", "session=a%20b", "session=" + "s" * 65):
        check_json_error(gw.get("/api/jobs?" + q), 400, "GET /api/jobs?%s" % q)
    # an expired job hash disappears from the listing (and from the index)
    gone = order[-1]
    r.delete("pc:job:" + gone)
    check(gone not in walk("", 100), "a job whose hash is gone is not listed")
    check_eq(r.execute("ZSCORE", "pc:jobs:index", gone), None, "... and left the index")
    order.remove(gone)

    # ---- kill -----------------------------------------------------------------------------------
    queued_id = [x for x in order if x not in (run_id, end_id)][0]
    res = gw.request("DELETE", "/api/jobs/" + queued_id)
    check_eq((res.status, res.json()), (202, {"id": queued_id, "status": "killing"}),
             "DELETE a queued job")
    check_eq(pctest.job_hash(r, queued_id).get("cancel"), "1", "queued job marked cancel=1")
    res = gw.request("DELETE", "/api/jobs/" + run_id)
    check_eq((res.status, res.json()), (202, {"id": run_id, "status": "killing"}),
             "DELETE a running job")
    res = gw.request("DELETE", "/api/jobs/%s?signal=KILL" % run_id)
    check_eq(res.status, 202, "DELETE ?signal=KILL (%r)" % res)
    c = ctl(ra)
    check_eq([f for _, f in c], [{"type": b"kill", "job": run_id.encode()},
                                 {"type": b"kill", "job": run_id.encode(), "signal": b"KILL"}],
             "kill control messages to the job's runner")
    check_json_error(gw.request("DELETE", "/api/jobs/%s?signal=STOP" % run_id), 400,
                     "DELETE ?signal=STOP")
    check_json_error(gw.request("DELETE", "/api/jobs/" + end_id), 409, "DELETE an ended job")
    check("cancel" not in pctest.job_hash(r, end_id), "an ended job is left alone")

    # ---- stdin ----------------------------------------------------------------------------------
    r.delete("pc:ctl:" + ra)
    data = b"line 1\n\x00\xff binary\r\n"
    res = post(raw=data, path="/api/jobs/%s/stdin" % run_id)
    check_eq((res.status, res.json()), (202, {"written": len(data)}), "POST stdin")
    res = post(raw=b"last", path="/api/jobs/%s/stdin?eof=1" % run_id)
    check_eq((res.status, res.json()), (202, {"written": 4}), "POST stdin?eof=1")
    check_json_error(post(raw=b"", path="/api/jobs/%s/stdin?eof=1" % run_id), 409,
                     "POST stdin?eof=1 after eof")
    check_json_error(post(raw=b"x", path="/api/jobs/%s/stdin" % run_id), 409,
                     "POST stdin after eof")
    # data carries its credit (reserved in the hash: docs/jobs.md "Stdin flow control") and its
    # seq (the eof: that of the last data message); writers do not trim, they set an expiry
    check_eq([f for _, f in ctl(ra)],
             [{"type": b"stdin", "job": run_id.encode(), "data": data,
               "credit": b"%d" % len(data), "attempt": b"1", "seq": b"1"},
              {"type": b"stdin", "job": run_id.encode(), "data": b"last", "credit": b"4",
               "attempt": b"1", "seq": b"2"},
              {"type": b"eof", "job": run_id.encode(), "attempt": b"1", "seq": b"2"}],
             "stdin / eof control messages")
    ttl = r.execute("TTL", "pc:ctl:" + ra)
    check(80000 < ttl <= 86400, "TTL of the control stream after a write: %r" % ttl)
    h = pctest.job_hash(r, run_id)
    check_eq((h.get("stdin_accepted"), h.get("stdin_closed"), h.get("stdin_seq")),
             (str(len(data) + 4), "eof", "2"),
             "stdin_accepted / stdin_closed / stdin_seq in the job hash")
    check_json_error(post(raw=b"x", path="/api/jobs/%s/stdin" % queued_id), 409,
                     "stdin of a queued job")
    check_json_error(post(raw=b"x", path="/api/jobs/%s/stdin" % end_id), 409,
                     "stdin of an ended job")
    check_json_error(post(raw=b"x", path="/api/jobs/%s/stdin?eof=2" % run_id), 400, "eof=2")
    res = gw.request("POST", "/api/jobs/%s/stdin" % run_id, b"y" * (MAX_BODY + 1))
    check_json_error(res, 413, "stdin larger than max-body")

    # ---- sessions -------------------------------------------------------------------------------
    s2 = "kill-" + tag
    js = [submit({"template": "build", "session": s2})["id"] for _ in range(4)]
    r.execute("HSET", "pc:job:" + js[0], "status", "running", "runner", rb)
    r.execute("HSET", "pc:job:" + js[1], "status", "exited")
    r.execute("HSET", "pc:job:" + js[2], "status", "running", "runner", ra)
    r.delete("pc:ctl:" + ra, "pc:ctl:" + rb)
    res = gw.request("DELETE", "/api/sessions/" + s2)
    check_eq((res.status, res.json()), (200, {"killed": 3}), "DELETE /api/sessions/<s>")
    check_eq([f for _, f in ctl(rb)], [{"type": b"kill", "job": js[0].encode()}], "kill to B")
    check_eq([f for _, f in ctl(ra)], [{"type": b"kill", "job": js[2].encode()}], "kill to A")
    check_eq(pctest.job_hash(r, js[3]).get("cancel"), "1", "queued session job cancelled")
    check("cancel" not in pctest.job_hash(r, js[1]), "ended session job left alone")
    res = gw.request("DELETE", "/api/sessions/nosuch-" + tag)
    check_eq((res.status, res.json()), (200, {"killed": 0}), "DELETE an unknown session")
    check_json_error(gw.request("DELETE", "/api/sessions/a%20b"), 400, "DELETE a bad session")
    check_json_error(gw.request("DELETE", "/api/sessions/" + "s" * 65), 400, "session 65 bytes")

    # ---- methods, unknown paths, preflight, metrics ------------------------------------------
    for method, path in (("PUT", "/api/jobs"), ("DELETE", "/api/jobs"),
                         ("POST", "/api/jobs/" + jid), ("GET", "/api/jobs/%s/stdin" % jid),
                         ("POST", "/api/runners"), ("DELETE", "/api/templates"),
                         ("POST", "/api/sessions/" + s2), ("GET", "/api/sessions/%s/touch" % s2)):
        res = gw.request(method, path)
        check_json_error(res, 405, "%s %s" % (method, path))
        check(res.header("allow"), "405 without Allow: %r" % res.headers)
    for path in ("/api/jobs/%s/nope" % jid, "/api/runners/x", "/api/templates/x",
                 "/api/sessions", "/api/jobsx"):
        check_json_error(gw.get(path), 404, "GET " + path)
    res = gw.request("OPTIONS", "/api/jobs")
    check_eq(res.status, 204, "OPTIONS /api/jobs")
    check("POST" in res.header("access-control-allow-methods", ""), "preflight methods %r"
          % res.headers)
    m = gw.metrics()
    for ep in ("jobs", "job", "sessions", "runners", "templates"):
        k = 'pipecast_http_requests_total{endpoint="%s"}' % ep
        check(m.get(k, 0) > 0, "metric %s should count requests: %r" % (k, m.get(k)))

    # ---- runners leave: answers follow at once (no stale acceptance) -----------------------
    submit({"argv": ["true"]})  # B is alive (and the gateway may keep a snapshot of it)
    r.delete("pc:runner:" + rb)
    check_json_error(post({"argv": ["true"]}), 403, "argv right after the only any-command "
                     "runner left")
    check_json_error(post({"template": "other"}), 400, "B's template right after B left")
    submit({"template": "build"})
    r.delete("pc:runner:" + ra)
    check_json_error(post({"template": "build"}), 503, "POST right after the last runner left")
    gw.check_alive("after the job API checks")
    gw.stop()


if __name__ == "__main__":
    pctest.main(main)
