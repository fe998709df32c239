#!/usr/bin/env python3
"""Session idle expiry (docs/jobs.md "Sessions", issue 3) with a real runner, two real gateways
and a private redis-server.

A session with idle_s=2 and nothing going on: its running job is killed (status killed, exit
event reason killed, its processes gone from /proc) between 2 s and a few seconds after the last
activity, exactly once across both gateways; its channel stream, job set and meta hash get a TTL
(--session-channel-grace); a touch then answers 409. During the same time, sessions kept active
by POST /touch, by GET /api/jobs?session=, by an open SSE stream on the job's default channel
(on the other gateway) and by an open multi-channel SSE stream on a job's custom channel are not
expired -- and each of them is expired once its activity stops (so it was the activity that kept
it). A submit revives an expired session, PUT {"idle_s": null} turns the expiry off. Redis
frozen for 7 s: the housekeeping pauses without spinning and expires the idle session after.
Invalid requests are 400s with JSON errors.

A half-done expiry (a gateway died between the mark and the finish: the mark's state written
directly, as its script does) is completed by another gateway as a first pass -- counted and
logged once, the sweep scheduled and run one grace later -- and kills only the jobs of the
mark's snapshot, not one that joined the session after the mark."""

import json
import os
import random
import re
import signal
import time

import pctest
from pctest import check, check_eq, as_int

TEMPLATES = {"long": {"argv": ["sleep", "300"]}}
IDLE = 2
GRACE = 40
GW_ARGS = ["--session-channel-grace", str(GRACE), "--ping-interval", "1"]


def put(gw, session, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    return gw.request("PUT", "/api/sessions/" + session, data, pctest.JSON_HDR)


def touch(gw, session):
    return gw.request("POST", "/api/sessions/%s/touch" % session)


def session_get(gw, session):
    r = gw.get("/api/sessions/" + session)
    check_eq(r.status, 200, "GET /api/sessions/%s (%r)" % (session, r))
    return r.json()


def ttl(r, key):
    return r.execute("TTL", key)


def validation(s, tag):
    gw = s.gw
    sess = "val-" + tag
    for spec, what in (
            ({"template": "long", "session_idle_s": 5}, "session_idle_s without session"),
            ({"template": "long", "session": sess, "session_idle_s": 0}, "session_idle_s 0"),
            ({"template": "long", "session": sess, "session_idle_s": 604801}, "too large"),
            ({"template": "long", "session": sess, "session_idle_s": "5"}, "a string"),
            ({"template": "long", "session": sess, "session_idle_s": 1.5}, "not an integer"),
            ({"template": "long", "session": sess, "session_idle_s": True}, "a boolean")):
        pctest.check_json_error(pctest.job_post(gw, spec), 400, "POST /api/jobs: " + what)
    for body, raw, what in (
            ({"idle_s": 0}, None, "idle_s 0"), ({"idle_s": -3}, None, "negative"),
            ({"idle_s": 604801}, None, "idle_s too large"), ({"idle_s": "5"}, None, "a string"),
            ({"idle_s": 2.5}, None, "not an integer"), ({}, None, "no idle_s"),
            ({"idle_s": 5, "x": 1}, None, "unknown key"), ([5], None, "an array"),
            (None, b'{"idle_s": 5', "broken JSON"),
            (None, b'{"idle_s": 5, "idle_s": 6}', "idle_s twice"),
            (None, b'{"idle_s": 5} x', "trailing data")):
        pctest.check_json_error(put(gw, sess, body, raw), 400, "PUT /api/sessions: " + what)
    pctest.check_json_error(put(gw, "a%20b", {"idle_s": 5}), 400, "PUT: invalid session name")
    pctest.check_json_error(put(gw, "x" * 65, {"idle_s": 5}), 400, "PUT: 65-byte session name")
    pctest.check_json_error(touch(gw, "a%2Fb"), 400, "touch: invalid session name")
    pctest.check_json_error(gw.get("/api/sessions/" + sess), 404, "GET of an unknown session")
    pctest.check_json_error(touch(gw, sess), 404, "touch of an unknown session")
    pctest.check_json_error(gw.request("POST", "/api/sessions/" + sess), 405,
                            "POST /api/sessions/S")
    pctest.check_json_error(gw.get("/api/sessions/%s/touch" % sess), 405, "GET .../touch")
    pctest.check_json_error(gw.get("/api/sessions/%s/other" % sess), 404, "GET .../other")
    check_eq(s.r.execute("EXISTS", "pc:sessions:meta:" + sess), 0,
             "refused requests wrote no session meta")
    check_eq(s.r.execute("ZSCORE", "pc:sessions:expiry", sess), None,
             "refused requests scheduled no expiry")

    # pipecast jobs submit --session-idle: refused without --session or out of range, else sent
    url = "http://127.0.0.1:%d" % gw.port
    for args, msg in ((["--session-idle", "5"], b"needs --session"),
                      (["--session", sess, "--session-idle", "0"], b"--session-idle"),
                      (["--session", sess, "--session-idle", "604801"], b"--session-idle")):
        p = pctest.pipecast(["jobs", "submit", "long", "--gateway", url] + args)
        check_eq(p.returncode, 2, "pipecast jobs submit %s: exit status (%r)" % (args, p.stderr))
        check(msg in p.stderr, "pipecast jobs submit %s: message %r" % (args, p.stderr))
    cli = "cli-" + tag
    p = pctest.pipecast(["jobs", "submit", "long", "--gateway", url, "--session", cli,
                         "--session-idle", "600", "--json"])
    check_eq(p.returncode, 0, "pipecast jobs submit --session-idle 600 (%r)" % p.stderr)
    info = session_get(gw, cli)
    check_eq((info["idle_s"], info["jobs"]["total"]), (600, 1),
             "session of pipecast jobs submit --session-idle 600")
    # killing one of its jobs is activity of the session
    time.sleep(0.05)
    jid = json.loads(p.stdout)["id"]
    check_eq(gw.request("DELETE", "/api/jobs/" + jid).status, 202, "DELETE the CLI's job")
    after = session_get(gw, cli)["last_active_ms"]
    check(after > info["last_active_ms"], "a kill is activity of the job's session: "
          "last_active_ms %r -> %r" % (info["last_active_ms"], after))
    check_eq(gw.request("DELETE", "/api/sessions/" + cli).status, 200, "DELETE session " + cli)


def submit(gw, session, idle=None, channel=None):
    spec = {"template": "long", "session": session}
    if idle is not None:
        spec["session_idle_s"] = idle
    if channel:
        spec["channel"] = channel
    j = pctest.job_submit(gw, spec)
    return j, time.monotonic()


def running(s, j):
    job = pctest.job_wait(s.gw, j["id"], ("running",), 15)
    pg = as_int(job["pid"])
    pctest.kill_group_at_exit(pg)
    pctest.wait_channel(s.r, j["channel"], lambda es: pctest.events_of(es, "start"), 10,
                        "the start event of " + j["id"])
    return pg


def expired_log_lines(gws, session):
    pat = re.compile(r'session "%s": idle for [0-9.]+s' % re.escape(session))
    n = 0
    for gw in gws:
        with open(gw.logpath, "rb") as f:
            n += len(pat.findall(f.read().decode("utf-8", "replace")))
    return n


def cpu_s(pid):
    """User + system CPU seconds of process @pid so far."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_killed(s, j, pg, what):
    job = pctest.job_get(s.gw, j["id"])
    check_eq(job["status"], "killed", "%s: job status" % what)
    pctest.wait_for(lambda: not pctest.group_members(pg), 5 * pctest.SLOW,
                    "%s: the job's processes (group %d) to be gone from /proc" % (what, pg))
    ex = pctest.events_of(pctest.wait_exit_event(s.r, j["channel"]), "exit")[0].json()
    check_eq(ex.get("reason"), "killed", "%s: exit event reason" % what)


def check_alive(s, j, pg, what):
    check_eq(pctest.job_get(s.gw, j["id"])["status"], "running", "%s: job status" % what)
    check(pctest.group_members(pg), "%s: the job's processes are gone" % what)
    check_eq(ttl(s.r, pctest.channel_key(j["channel"])), -1, "%s: channel stream TTL" % what)


def main():
    s = pctest.JobSetup(TEMPLATES, runner_args=["--slots", "16"], gw_args=GW_ARGS)
    gw2 = pctest.Gateway(s.redis.port, GW_ARGS)  # a second gateway: both run housekeeping
    gws = [s.gw, gw2]
    tag = "%06x" % random.getrandbits(24)
    validation(s, tag)

    sa, sb, sc, sd, sf = ("%s-%s" % (n, tag) for n in ("idle", "touched", "watched", "multi",
                                                       "listed"))
    a, t_a = submit(s.gw, sa, IDLE)
    b, _ = submit(s.gw, sb)
    r = put(s.gw, sb, {"idle_s": IDLE})
    check_eq(r.status, 200, "PUT /api/sessions/%s (%r)" % (sb, r))
    check_eq(r.json().get("idle_s"), IDLE, "PUT answer idle_s")
    c, _ = submit(s.gw, sc, IDLE)
    d, _ = submit(s.gw, sd, IDLE, channel="custom-" + tag)
    check_eq(d["channel"], "custom-" + tag, "the recorded custom channel")
    f, _ = submit(s.gw, sf, IDLE)
    pg = {x["id"]: running(s, x) for x in (a, b, c, d, f)}

    info = session_get(s.gw, sa)
    check_eq((info["session"], info["idle_s"], info["expired_ms"], info["watched"]),
             (sa, IDLE, None, False), "GET /api/sessions/%s" % sa)
    check_eq(info["expires_ms"] - info["last_active_ms"], IDLE * 1000, "expires_ms - last_active")
    check_eq((info["jobs"]["total"], info["jobs"]["running"]), (1, 1), "job counts of " + sa)

    # C: an open stream on its default channel, on the *other* gateway; D: a multi-channel
    # stream on its custom channel. Neither session is touched by any request.
    sse_c = pctest.sse_open(gw2, c["channel"])
    sse_d = gw2.sse(path="/api/events?channel=%s&channel=unrelated-%s" % (d["channel"], tag))
    sse_d.read_head()
    check_eq(sse_d.status, 200, "multi-channel stream (%s)" % sse_d.body)

    # 8 s: B touched, F listed every 0.5 s; A left alone
    killed_at, t_end, next_act = None, time.monotonic() + 8 * pctest.SLOW, 0
    while time.monotonic() < t_end:
        now = time.monotonic()
        if now >= next_act:
            check_eq(touch(s.gw, sb).status, 200, "POST /api/sessions/%s/touch" % sb)
            check_eq(gw2.get("/api/jobs?session=" + sf).status, 200, "listing of " + sf)
            next_act = now + 0.5
        if killed_at is None and pctest.job_get(s.gw, a["id"])["status"] != "running":
            killed_at = time.monotonic()
        time.sleep(0.05)
    check(killed_at is not None, "idle session %s: its job was not killed within %.0f s of the "
          "last activity" % (sa, 8 * pctest.SLOW))
    after = killed_at - t_a
    check(after >= IDLE - 0.2, "idle session %s: job killed %.2f s after the last activity, "
          "before idle_s=%d" % (sa, after, IDLE))
    check(after <= (IDLE + 4) * pctest.SLOW, "idle session %s: job killed only %.2f s after the "
          "last activity (expected within idle_s + a pass + a few seconds)" % (sa, after))
    check_killed(s, a, pg[a["id"]], "idle session " + sa)
    t = ttl(s.r, pctest.channel_key(a["channel"]))
    check(0 < t <= GRACE, "idle session %s: channel stream TTL %r, expected 1..%d"
          % (sa, t, GRACE))
    for key in ("pc:session:" + sa, "pc:sessions:meta:" + sa):
        t = ttl(s.r, key)
        check(GRACE < t <= 2 * GRACE + 60, "%s: TTL %r after the expiry" % (key, t))
    info = session_get(s.gw, sa)
    check(isinstance(info["expired_ms"], int) and info["expires_ms"] is None,
          "GET of the expired session %s: %r" % (sa, info))
    check_eq(info["jobs"]["killed"], 1, "killed count of " + sa)
    r = touch(s.gw, sa)
    pctest.check_json_error(r, 409, "touch of the expired session " + sa)
    check_eq(expired_log_lines(gws, sa), 1, "gateways that expired %s (log lines over both)" % sa)

    for x, what in ((b, "touched " + sb), (c, "watched " + sc), (d, "multi-watched " + sd),
                    (f, "listed " + sf)):
        check_alive(s, x, pg[x["id"]], what)
    check_eq(session_get(s.gw, sc)["watched"], True, "GET /api/sessions/%s: watched" % sc)
    check_eq(session_get(s.gw, sd)["watched"], True, "GET /api/sessions/%s: watched" % sd)

    # the activity stops: each of them expires now
    sse_c.close()
    sse_d.close()
    t_stop = time.monotonic()
    # B: idle_s; C, D: the gateway sees the closed socket at its next ping (1 s), a stream
    # counts as open for GW_SESSION_WATCH_FRESH_MS (5 s) after it was last seen; a pass is 1 s
    bound = IDLE + 14
    for x, what in ((b, sb), (c, sc), (d, sd), (f, sf)):
        pctest.job_wait(s.gw, x["id"], pctest.JOB_ENDED, bound)
        check_killed(s, x, pg[x["id"]], "session %s once its activity stopped" % what)
        check_eq(expired_log_lines(gws, what), 1, "gateways that expired " + what)
    log_dt = time.monotonic() - t_stop
    pctest.log("sessions expired %.1f s after their activity stopped" % log_dt)
    t = ttl(s.r, pctest.channel_key(d["channel"]))
    check(0 < t <= GRACE, "custom channel %s: TTL %r after the expiry" % (d["channel"], t))

    # a submit revives the expired session A (the set and meta lose their TTL) ...
    a2, _ = submit(s.gw, sa)
    pg2 = running(s, a2)
    check_eq(ttl(s.r, "pc:session:" + sa), -1, "the revived session's set TTL")
    check_eq(ttl(s.r, "pc:sessions:meta:" + sa), -1, "the revived session's meta TTL")
    info = session_get(s.gw, sa)
    check(info["expired_ms"] is None and info["idle_s"] == IDLE and info["expires_ms"],
          "GET of the revived session %s: %r" % (sa, info))
    # ... and PUT {"idle_s": null} turns the expiry off: the new job outlives idle_s
    r = put(s.gw, sa, {"idle_s": None})
    check_eq((r.status, r.json().get("idle_s"), r.json().get("expires_ms")), (200, None, None),
             "PUT {idle_s: null} (%r)" % r)
    check_eq(s.r.execute("ZSCORE", "pc:sessions:expiry", sa), None, "expiry entry after null")
    time.sleep(IDLE + 2.5)
    check_alive(s, a2, pg2, "session %s without idle expiry" % sa)
    check_eq(s.gw.request("DELETE", "/api/sessions/" + sa).json(), {"killed": 1},
             "DELETE /api/sessions/%s" % sa)
    pctest.job_wait(s.gw, a2["id"], timeout=15)

    # Redis frozen (SIGSTOP) for 7 s while session G goes idle: the housekeeping pauses (its
    # commands time out after 5 s; logged, no busy loop) and expires G once Redis answers again
    sg = "outage-" + tag
    g, _ = submit(s.gw, sg, 4)
    pgg = running(s, g)
    check_eq(pctest.job_get(s.gw, g["id"])["status"], "running", "G before the outage")
    cpu0 = [cpu_s(x.proc.pid) for x in gws]
    s.redis.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(7)
    finally:
        s.redis.proc.send_signal(signal.SIGCONT)
    t_back = time.monotonic()
    for x, c0 in zip(gws, cpu0):
        used = cpu_s(x.proc.pid) - c0
        check(used < 1.0 * pctest.SLOW, "a gateway used %.2f s of CPU during 7 s of Redis "
              "outage (busy loop?)" % used)
    pctest.job_wait(s.gw, g["id"], pctest.JOB_ENDED, 20)
    check(time.monotonic() - t_back > 1, "G expired before the gateways could judge it")
    check_killed(s, g, pgg, "session %s, idle during a Redis outage" % sg)
    check_eq(expired_log_lines(gws, sg), 1, "gateways that expired " + sg)
    for x in gws:
        with open(x.logpath, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        check("housekeeping paused" in text and "housekeeping resumed" in text,
              "gateway log should tell the housekeeping paused and resumed:\n%s"
              % x.log_tail(15))
    for x in gws:
        x.check_alive("after the Redis outage")

    m = [x.metrics().get("pipecast_sessions_expired_total", 0) for x in gws]
    check_eq(sum(m), 6, "pipecast_sessions_expired_total over both gateways (%r)" % m)
    gw2.stop()
    half_done(s, tag)
    s.runner.stop()
    s.gw.stop()


def half_done(s, tag):
    """A gateway died after marking session H expired, before its finish: another completes it."""
    grace = 6
    s.gw.stop()
    s.gw = gw = pctest.Gateway(s.redis.port, ["--session-channel-grace", str(grace),
                                              "--ping-interval", "1"])
    sh = "half-" + tag
    a, _ = submit(gw, sh, 600)  # never due by itself
    b, _ = submit(gw, sh)
    pa, pb = running(s, a), running(s, b)
    # MARK_LUA's writes: expired_ms, the snapshot of the session's job ids -- without B, as if B
    # was submitted right after the mark, while the kill walk ran -- and the claim's lease
    # (already run out). No finished_ms: the finish never came.
    now_ms = int(time.time() * 1000)
    meta, snap = "pc:sessions:meta:" + sh, "pc:sessions:snap:" + sh
    s.r.execute("HSET", meta, "expired_ms", str(now_ms), "expired_snap", "1")
    s.r.execute("SADD", snap, a["id"])
    s.r.execute("EXPIRE", snap, str(2 * grace + 60))
    s.r.execute("ZADD", "pc:sessions:expiry", str(now_ms), sh)
    pctest.job_wait(gw, a["id"], pctest.JOB_ENDED, 10)
    check_killed(s, a, pa, "the snapshot's job of the half-expired session " + sh)
    t = ttl(s.r, pctest.channel_key(a["channel"]))
    check(0 < t <= grace, "%s: channel stream TTL %r after the completed expiry" % (sh, t))
    check_alive(s, b, pb, "a job of %s not in the mark's snapshot" % sh)
    pctest.wait_for(lambda: s.r.execute("HGET", meta, "finished_ms"), 5,
                    "the completed first pass to set finished_ms")
    check(grace < ttl(s.r, meta) <= 2 * grace + 60, "%s: meta TTL after the first pass" % sh)
    sc = float(s.r.execute("ZSCORE", "pc:sessions:expiry", sh) or 0)
    check(sc > time.time() * 1000, "the completed first pass schedules the sweep (score %r)" % sc)
    check_eq(expired_log_lines([gw], sh), 1, "log lines of the completed expiry of " + sh)
    check_eq(gw.metrics().get("pipecast_sessions_expired_total", 0), 1,
             "pipecast_sessions_expired_total after the completed expiry")
    # the sweep, one grace later: done (the entry and the snapshot gone), nothing counted again
    pctest.wait_for(lambda: s.r.execute("ZSCORE", "pc:sessions:expiry", sh) is None,
                    grace + 5, "the sweep of %s to run" % sh)
    check_eq(s.r.execute("EXISTS", snap), 0, "the snapshot after the sweep")
    check_alive(s, b, pb, "the job of %s not in the snapshot, after the sweep" % sh)
    check_eq(expired_log_lines([gw], sh), 1, "log lines of %s after the sweep" % sh)
    check_eq(gw.metrics().get("pipecast_sessions_expired_total", 0), 1,
             "pipecast_sessions_expired_total after the sweep")


if __name__ == "__main__":
    pctest.main(main)
