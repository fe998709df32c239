#!/usr/bin/env python3
"""Authentication and cross-site protection of the gateway: --tokens FILE (scopes subscribe,
publish, run, admin; Authorization: Bearer or ?access_token=) on REST, SSE and /metrics;
/healthz and static files open; bad token files and a non-loopback --listen without tokens
exit 2 (--insecure-no-auth overrides); Origin mismatch on writes -> 403; POST /api/jobs with a
non-JSON Content-Type -> 415; a non-loopback Host without tokens -> 403 (DNS rebinding)."""

import os
import shutil
import subprocess
import tempfile

import pctest
from pctest import check, check_eq, check_json_error

TOK = {
    "sub": "sub-0123456789abcdef",
    "pub": "pub-0123456789abcdef",
    "run": "run-0123456789abcdef",
    "adm": "adm-0123456789abcdef",
    "multi": "mul-0123456789abcdef",
}
JOB_ID = "0123456789abcdef"


def bearer(name):
    return {"Authorization": "Bearer " + TOK[name]}


def write(dirname, name, text):
    p = os.path.join(dirname, name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, 0o600)
    return p


def clean_env(extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PIPECAST_")}
    e.update(extra or {})
    return e


def run_gateway_expect_exit(args, env=None, what=""):
    """Run the gateway expecting it to refuse to start: returns its stderr (exit status 2)."""
    p = subprocess.run([pctest.binary("pipecast-gateway")] + args, env=clean_env(env),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15 * pctest.SLOW)
    err = p.stderr.decode("utf-8", "replace")
    check_eq(p.returncode, 2, "%s: exit status (stderr %r)" % (what, err))
    return err


def start_gateway_on(listen_host, args, redis_port):
    """Start the gateway on listen_host:<free port>; wait for /healthz on 127.0.0.1."""
    port = pctest.free_port()
    p = subprocess.Popen([pctest.binary("pipecast-gateway"), "--listen",
                          "%s:%d" % (listen_host, port), "--redis",
                          "redis://127.0.0.1:%d" % redis_port] + args,
                         env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def cleanup():
        if p.poll() is None:
            p.kill()
            p.wait()
    pctest.on_exit(cleanup)

    def up():
        if p.poll() is not None:
            pctest.fail("gateway on %s exited (%s): %s" % (listen_host, p.returncode,
                                                          p.stderr.read().decode()))
        try:
            return pctest.http_request(port, "GET", "/healthz", timeout=2).status == 200
        except OSError:
            return False
    pctest.wait_for(up, 15 * pctest.SLOW, "gateway on %s" % listen_host)
    return p, port


def expect(res, status, what):
    if status in (401, 403, 415):
        return check_json_error(res, status, what)
    check(res.status == status, "%s: expected %d, got %r" % (what, status, res))


def authorized(res, what):
    """Passed the auth layer: any answer but 401/403/415."""
    check(res.status not in (401, 403, 415), "%s: refused: %r" % (what, res))


def test_tokens(port, r, d):
    path = write(d, "tokens", "# pipecast tokens\n\n%s subscribe\n  %s publish   # comment\n"
                 "%s run\n%s admin\n%s subscribe,publish\n"
                 % (TOK["sub"], TOK["pub"], TOK["run"], TOK["adm"], TOK["multi"]))
    gw = pctest.Gateway(port, ["--tokens", path])
    ch = pctest.uniq("auth")
    pctest.on_exit(lambda: r.delete("pc:ch:" + ch))

    # open: /healthz, static files, CORS preflight
    check_eq(gw.healthz().status, 200, "/healthz without a token")
    res = gw.get("/")
    check(res.status not in (401, 403), "static / without a token: %r" % res)
    check_eq(gw.request("OPTIONS", "/api/jobs").status, 204, "OPTIONS /api/jobs without a token")

    # 401: missing, unknown, malformed
    res = expect(gw.get("/api/channels"), 401, "GET /api/channels without a token")
    res = gw.get("/api/channels")
    check(res.header("www-authenticate", "").startswith("Bearer"),
          "401 without WWW-Authenticate: Bearer: %r" % res.headers)
    expect(gw.get("/api/channels", headers={"Authorization": "Bearer " + "x" * 20}), 401,
           "unknown token")
    expect(gw.get("/api/channels", headers={"Authorization": "Bearer " + TOK["sub"][:-1]}),
           401, "token prefix")
    expect(gw.get("/api/channels", headers={"Authorization": "Bearer " + TOK["sub"] + "x"}),
           401, "token + 1 char")
    expect(gw.get("/api/channels", headers={"Authorization": "Basic " + TOK["sub"]}), 401,
           "Basic scheme")
    expect(gw.get("/api/channels?access_token=" + "y" * 400), 401, "very long access_token")
    expect(gw.get("/api/nope"), 401, "unknown /api path without a token")

    # subscribe: GET channels/events/jobs/runners/templates
    for p in ["/api/channels", "/api/channels/" + ch, "/api/jobs", "/api/runners",
              "/api/templates", "/api/jobs/" + JOB_ID]:
        expect(gw.get(p), 401, "GET %s without a token" % p)
        for t in ("sub", "adm", "multi"):
            authorized(gw.get(p, headers=bearer(t)), "GET %s as %s" % (p, t))
        authorized(gw.get(p + "?access_token=" + TOK["sub"]), "GET %s ?access_token" % p)
        for t in ("pub", "run"):
            expect(gw.get(p, headers=bearer(t)), 403, "GET %s as %s" % (p, t))
    check_eq(gw.get("/api/channels", headers=bearer("sub")).status, 200, "GET as sub")

    # publish: POST/DELETE channels
    post = "/api/channels/" + ch
    for t in ("sub", "run"):
        expect(gw.request("POST", post, b"x\n", bearer(t)), 403, "POST channel as " + t)
    expect(gw.request("POST", post, b"x\n"), 401, "POST channel without a token")
    for t in ("pub", "adm", "multi"):
        check_eq(gw.request("POST", post, b"hello\n", bearer(t)).status, 200,
                 "POST channel as " + t)
    check_eq(gw.request("POST", post + "?access_token=" + TOK["pub"], b"q\n").status, 200,
             "POST channel ?access_token=publish")
    expect(gw.request("DELETE", post, headers=bearer("sub")), 403, "DELETE channel as sub")

    # SSE: header and ?access_token= (EventSource cannot set headers)
    c = pctest.sse_open(gw, ch, headers=bearer("sub"))
    ev = c.next_event()
    check_eq(ev.data, "hello", "first SSE event with a Bearer header")
    c.close()
    c = pctest.sse_open(gw, ch, query="access_token=" + TOK["sub"])
    c.close()
    c = pctest.sse_open(gw, ch, query="access_token=" + TOK["adm"] + "&from=end")
    c.close()
    for q, hdr, st in (("", None, 401), ("access_token=" + TOK["pub"], None, 403),
                       ("", bearer("run"), 403), ("access_token=zzzzzzzzzzzzzzzzzzzz", None, 401)):
        c = gw.sse(ch, q, hdr)
        c.read_head()
        check_eq(c.status, st, "SSE %r %r" % (q, hdr))
        c.close()
    c = gw.sse(path="/api/events?channel=%s&access_token=%s" % (ch, TOK["multi"]))
    c.read_head()
    check_eq(c.status, 200, "multi-channel SSE ?access_token=")
    c.close()
    c = gw.sse(path="/api/events?channel=%s" % ch)
    c.read_head()
    check_eq(c.status, 401, "multi-channel SSE without a token")
    c.close()

    # run: POST/DELETE jobs, stdin, DELETE sessions
    runs = [("POST", "/api/jobs", b'{"template": "nope-auth-test"}'),
            ("DELETE", "/api/jobs/" + JOB_ID, None),
            ("POST", "/api/jobs/%s/stdin" % JOB_ID, b"x"),
            ("DELETE", "/api/sessions/auth-test-session", None)]
    for m, p, body in runs:
        hdr = dict(pctest.JSON_HDR)
        expect(gw.request(m, p, body, hdr), 401, "%s %s without a token" % (m, p))
        for t in ("sub", "pub", "multi"):
            h = dict(hdr, **bearer(t))
            expect(gw.request(m, p, body, h), 403, "%s %s as %s" % (m, p, t))
        for t in ("run", "adm"):
            authorized(gw.request(m, p, body, dict(hdr, **bearer(t))), "%s %s as %s" % (m, p, t))

    # admin: /metrics only
    expect(gw.get("/metrics"), 401, "/metrics without a token")
    for t in ("sub", "pub", "run", "multi"):
        expect(gw.get("/metrics", headers=bearer(t)), 403, "/metrics as " + t)
    res = gw.get("/metrics", headers=bearer("adm"))
    check_eq(res.status, 200, "/metrics as admin")
    check("pipecast_http_requests_total" in res.body.decode(), "/metrics body")
    check_eq(gw.get("/metrics?access_token=" + TOK["adm"]).status, 200, "/metrics ?access_token")

    # with tokens, other Host names are fine (the token protects), cross-site writes still not
    res = pctest.raw_request(gw.port, ("GET /api/channels HTTP/1.1\r\nHost: pipecast.example\r\n"
                                       "Authorization: Bearer %s\r\nConnection: close\r\n\r\n"
                                       % TOK["sub"]).encode())
    check(res is not None and res.status == 200, "tokens + other Host: %r" % res)
    h = dict(bearer("pub"), Origin="http://evil.example")
    expect(gw.request("POST", post, b"x\n", h), 403, "POST with a foreign Origin and a token")
    gw.check_alive()
    gw.stop()

    # PIPECAST_TOKENS_FILE
    gw = pctest.Gateway(port, env={"PIPECAST_TOKENS_FILE": path})
    expect(gw.get("/api/channels"), 401, "PIPECAST_TOKENS_FILE: no token")
    check_eq(gw.get("/api/channels", headers=bearer("sub")).status, 200,
             "PIPECAST_TOKENS_FILE: sub")
    gw.stop()


def test_bad_token_files(port, r, d):
    redis = ["--redis", "redis://127.0.0.1:%d" % port, "--listen", "127.0.0.1:0"]
    cases = [
        ("missing", None, "No such file"),
        ("empty", "# nothing\n\n", "no tokens"),
        ("short", "shorttoken subscribe\n", "16"),
        ("scope", "%s subscribe,root\n" % TOK["sub"], "unknown scope"),
        ("noscope", "%s\n" % TOK["sub"], "scope"),
        ("extra", "%s run extra\n" % TOK["sub"], "unexpected"),
        ("dup", "%s run\n%s admin\n" % (TOK["sub"], TOK["sub"]), "duplicate"),
    ]
    for name, text, want in cases:
        p = os.path.join(d, "bad-" + name)
        if text is not None:
            write(d, "bad-" + name, text)
        err = run_gateway_expect_exit(redis + ["--tokens", p], what="token file " + name)
        check(want in err, "token file %s: message %r lacks %r" % (name, err, want))
        check(TOK["sub"] not in err, "token file %s: the token is echoed: %r" % (name, err))
    err = run_gateway_expect_exit(redis, env={"PIPECAST_TOKENS_FILE": os.path.join(d, "nope")},
                                  what="PIPECAST_TOKENS_FILE missing")
    check("tokens file" in err, "PIPECAST_TOKENS_FILE missing: %r" % err)


def test_listen(port, r, d):
    redis = ["--redis", "redis://127.0.0.1:%d" % port]
    err = run_gateway_expect_exit(redis + ["--listen", "0.0.0.0:0"], what="0.0.0.0 no tokens")
    check("listening on 0.0.0.0 exposes the API" in err and "--insecure-no-auth" in err
          and "--tokens" in err, "0.0.0.0 message: %r" % err)
    run_gateway_expect_exit(redis, env={"PIPECAST_LISTEN": "0.0.0.0:0"},
                            what="PIPECAST_LISTEN=0.0.0.0 no tokens")
    p, gport = start_gateway_on("0.0.0.0", ["--insecure-no-auth"], port)
    check_eq(pctest.http_request(gport, "GET", "/api/channels").status, 200,
             "0.0.0.0 --insecure-no-auth: open API")
    p.terminate()
    p.wait(15)
    path = write(d, "tokens-listen", "%s admin\n" % TOK["adm"])
    p, gport = start_gateway_on("0.0.0.0", ["--tokens", path], port)
    check_eq(pctest.http_request(gport, "GET", "/api/channels").status, 401,
             "0.0.0.0 --tokens: no token")
    check_eq(pctest.http_request(gport, "GET", "/api/channels", headers=bearer("adm")).status,
             200, "0.0.0.0 --tokens: admin")
    p.terminate()
    p.wait(15)
    # loopback stays the default and needs nothing
    p, gport = start_gateway_on("127.0.0.1", [], port)
    p.terminate()
    p.wait(15)


def test_cross_site(port, r, d):
    gw = pctest.Gateway(port)
    ch = pctest.uniq("xsite")
    pctest.on_exit(lambda: r.delete("pc:ch:" + ch))
    post = "/api/channels/" + ch
    own = "http://127.0.0.1:%d" % gw.port

    check_eq(gw.request("POST", post, b"a\n").status, 200, "POST without Origin")
    check_eq(gw.request("POST", post, b"a\n", {"Origin": own}).status, 200, "same-origin POST")
    for o in ("http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1:%d"
              % gw.port):
        expect(gw.request("POST", post, b"a\n", {"Origin": o}), 403, "POST with Origin " + o)
        expect(gw.request("DELETE", post, headers={"Origin": o}), 403, "DELETE with Origin " + o)
        expect(gw.request("POST", "/api/jobs", b"{}", dict(pctest.JSON_HDR, Origin=o)), 403,
               "POST /api/jobs with Origin " + o)
    # reads are not refused by Origin (CORS decides what the page may see)
    check_eq(gw.get("/api/channels", headers={"Origin": "http://evil.example"}).status, 200,
             "GET with a foreign Origin")
    check_eq(r.xlen("pc:ch:" + ch), 2, "entries after refused POSTs")

    # POST /api/jobs needs application/json
    for ct in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
               "application/jsonx", None):
        h = {"Content-Type": ct} if ct else {}
        expect(gw.request("POST", "/api/jobs", b'{"template": "x"}', h), 415,
               "POST /api/jobs Content-Type %r" % ct)
    for ct in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        authorized(gw.request("POST", "/api/jobs", b'{"template": "nope"}',
                              {"Content-Type": ct}), "POST /api/jobs Content-Type %r" % ct)

    # DNS rebinding: without tokens, only loopback Host names reach the API
    def raw(path, host, extra=""):
        return pctest.raw_request(gw.port, ("GET %s HTTP/1.1\r\nHost: %s\r\n%s"
                                            "Connection: close\r\n\r\n"
                                            % (path, host, extra)).encode())
    for host in ("evil.example", "evil.example:%d" % gw.port, "10.0.0.1", "localhost.evil.example"):
        res = raw("/api/channels", host)
        check(res is not None, "no answer for Host %s" % host)
        expect(res, 403, "GET /api/channels with Host %s" % host)
        expect(raw("/metrics", host), 403, "GET /metrics with Host %s" % host)
        check_eq(raw("/healthz", host).status, 200, "/healthz with Host %s" % host)
    for host in ("localhost:%d" % gw.port, "127.0.0.1:%d" % gw.port, "LOCALHOST", "127.0.0.2",
                 "[::1]:%d" % gw.port):
        check_eq(raw("/api/channels", host).status, 200, "GET /api/channels with Host %s" % host)
    # same-origin through localhost
    o = "http://localhost:%d" % gw.port
    res = pctest.raw_request(gw.port, ("POST %s HTTP/1.1\r\nHost: localhost:%d\r\nOrigin: %s\r\n"
                                       "Content-Length: 2\r\nConnection: close\r\n\r\nb\n"
                                       % (post, gw.port, o)).encode())
    check(res is not None and res.status == 200, "same-origin POST via localhost: %r" % res)
    gw.check_alive()
    gw.stop()

    # --cors-origin: that origin may write too
    gw = pctest.Gateway(port, ["--cors-origin", "http://app.example"])
    check_eq(gw.request("POST", post, b"c\n", {"Origin": "http://app.example"}).status, 200,
             "POST from --cors-origin")
    expect(gw.request("POST", post, b"c\n", {"Origin": "http://other.example"}), 403,
           "POST from another origin with --cors-origin")
    gw.stop()


def test_cli_token(port, r, d):
    """`pipecast jobs` sends $PIPECAST_TOKEN as a Bearer token."""
    path = write(d, "tokens-cli", "%s subscribe\n" % TOK["sub"])
    gw = pctest.Gateway(port, ["--tokens", path])
    url = "http://127.0.0.1:%d" % gw.port
    p = pctest.pipecast(["jobs", "ls", "--gateway", url], env={"PIPECAST_TOKEN": ""})
    check(p.returncode == 1 and b"401" in p.stderr, "jobs ls without a token: %r" % (p,))
    p = pctest.pipecast(["jobs", "ls", "--gateway", url, "--json"],
                        env={"PIPECAST_TOKEN": TOK["sub"]})
    check(p.returncode == 0 and b'"jobs"' in p.stdout, "jobs ls with a token: %r" % (p,))
    p = pctest.pipecast(["jobs", "ls", "--gateway", url], env={"PIPECAST_TOKEN": "a b"})
    check(p.returncode == 2 and b"PIPECAST_TOKEN" in p.stderr, "bad PIPECAST_TOKEN: %r" % (p,))
    gw.stop()


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    d = tempfile.mkdtemp(prefix="pc-auth-")
    pctest.on_exit(lambda: shutil.rmtree(d, ignore_errors=True))
    pctest.run_subtests([test_tokens, test_bad_token_files, test_listen, test_cross_site,
                         test_cli_token],
                        port, r, d)


if __name__ == "__main__":
    pctest.main(main)
