// lib.mjs -- shared helpers of the browser tests (Node 20, playwright-core + Debian chromium).
//
// Every test_*.mjs is a plain Node script: it calls main(name, fn); fn gets a context `t` whose
// t.subtest(name, fn) runs one check and goes on after a failure, so one run reports every broken
// behaviour. The script prints "N passed, N failed" and exits 1 when anything failed.
//
// The processes a test needs are its own: redis-server (temp dir, free port), pipecast-gateway
// (free port, restartable on the same port), pipecast-runner (temp --config with TEMPLATES) and
// chromium (launched by playwright-core). All are killed when the script exits, also on failure,
// on an exception, on SIGTERM/SIGINT and on the script's own watchdog timeout.
//
// The UI is driven only through the test contract: data-testid attributes and window.pipecast
// ({lines(), lineCount(), connState(), lastEventId(), jobId()}); see tests/browser/README.md.
//
// Environment: PC_BIN (directory of the binaries; default <src>/build/debug/bin), PC_SRC (source
// tree), PC_CHROMIUM (default /usr/bin/chromium), PC_ARTIFACTS (failure screenshots and logs;
// default ./browser-artifacts), PC_WEB_ROOT (the UI to test; default <src>/web), PC_HEADED=1
// (show the browser), PC_KEEP=1 (keep temp dirs).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SRC = process.env.PC_SRC || path.resolve(HERE, '..', '..');
export const BIN = process.env.PC_BIN || path.join(SRC, 'build', 'debug', 'bin');
export const ARTIFACTS = process.env.PC_ARTIFACTS || path.join(process.cwd(), 'browser-artifacts');
// Sanitizer builds are several times slower: scale waits, never the assertions' meaning.
export const SLOW = process.env.ASAN_OPTIONS || process.env.TSAN_OPTIONS ? 3 : 1;

const T0 = Date.now();
export function log(msg) {
  const s = ((Date.now() - T0) / 1000).toFixed(2).padStart(7);
  process.stderr.write(`[${s}] ${msg}\n`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class TestFailure extends Error {}
export function fail(msg) {
  throw new TestFailure(msg);
}
export function check(cond, msg) {
  if (!cond) fail(typeof msg === 'function' ? msg() : msg);
}
export function short(v, n = 300) {
  const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v);
  return s.length <= n ? s : s.slice(0, n) + `...(${s.length} chars)`;
}
export function checkEq(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want))
    fail(`${what}: expected ${short(want)}, got ${short(got)}`);
}

/** Poll fn() (sync or async) until it returns a truthy value; returns it. On timeout fails with
 *  `what` and the last value (or error) seen. */
export async function waitFor(fn, timeoutMs, what, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs * SLOW;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (e) {
      if (e instanceof TestFailure) throw e;
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      const seen = lastErr ? `last error: ${lastErr.message}` : `last value: ${short(last)}`;
      fail(`timed out after ${((timeoutMs * SLOW) / 1000).toFixed(1)} s waiting for ${what} (${seen})`);
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// processes and temp dirs: all cleaned up at exit
// ---------------------------------------------------------------------------------------------

const children = new Set();
const tempDirs = [];
const exitHooks = [];
const stopHooks = []; // async, run by main() before it exits (e.g. runners end their jobs)

function killChildren() {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  children.clear();
  if (!process.env.PC_KEEP)
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}
process.on('exit', () => {
  for (const h of exitHooks) {
    try {
      h();
    } catch {
      /* best effort */
    }
  }
  killChildren();
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`terminated by ${sig}: stopping every process of the test`);
    process.exit(1);
  });
}

export function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

export function binary(name) {
  const env = { pipecast: 'PC_PIPECAST', 'pipecast-gateway': 'PC_GATEWAY', 'pipecast-runner': 'PC_RUNNER' }[name];
  const p = (env && process.env[env]) || path.join(BIN, name);
  check(fs.existsSync(p), `${name} not found at ${p} (build it: cmake --preset debug && cmake --build --preset debug; or set PC_BIN)`);
  return p;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function cleanEnv(extra = {}) {
  const e = { ...process.env };
  for (const k of Object.keys(e)) if (k.startsWith('PIPECAST_')) delete e[k];
  return { ...e, ...extra };
}

/** One child process with its output appended to a log file. start() may be called again after
 *  it exited (restart). */
export class Proc {
  constructor(name, cmd, args, { env, logPath }) {
    Object.assign(this, { name, cmd, args, env, logPath });
    this.p = null;
    this.exited = null;
  }

  start() {
    const fd = fs.openSync(this.logPath, 'a');
    const p = spawn(this.cmd, this.args, { stdio: ['ignore', fd, fd], env: this.env });
    fs.closeSync(fd);
    children.add(p);
    this.p = p;
    this.exited = new Promise((resolve) => {
      p.on('exit', (code, signal) => {
        children.delete(p);
        p.status = { code, signal };
        resolve(p.status);
      });
      p.on('error', (e) => {
        children.delete(p);
        p.status = { code: null, signal: null, error: e.message };
        resolve(p.status);
      });
    });
    return this;
  }

  alive() {
    return this.p !== null && !this.p.status;
  }

  get pid() {
    return this.p ? this.p.pid : null;
  }

  /** Send @sig and wait until the process is gone. */
  async kill(sig = 'SIGKILL', timeoutMs = 10000) {
    if (!this.alive()) return this.p ? this.p.status : null;
    this.p.kill(sig);
    const st = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
    if (st) return st;
    this.p.kill('SIGKILL');
    return this.exited;
  }

  logTail(n = 30) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-n - 1).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Redis: a tiny RESP2 client (one connection per command; enough for tests)
// ---------------------------------------------------------------------------------------------

function respEncode(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

function respParse(buf, off) {
  const nl = buf.indexOf('\r\n', off);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[off]);
  const head = buf.toString('utf8', off + 1, nl);
  const next = nl + 2;
  if (type === '+') return { value: head, off: next };
  if (type === '-') return { value: new Error(head), off: next };
  if (type === ':') return { value: Number(head), off: next };
  if (type === '$') {
    const n = Number(head);
    if (n < 0) return { value: null, off: next };
    if (buf.length < next + n + 2) return null;
    return { value: buf.toString('utf8', next, next + n), off: next + n + 2 };
  }
  if (type === '*') {
    const n = Number(head);
    if (n < 0) return { value: null, off: next };
    const out = [];
    let o = next;
    for (let i = 0; i < n; i++) {
      const r = respParse(buf, o);
      if (!r) return null;
      out.push(r.value);
      o = r.off;
    }
    return { value: out, off: o };
  }
  throw new Error(`bad RESP reply type ${JSON.stringify(type)}`);
}

/** Send several commands on one connection; returns their replies (errors as Error objects). */
export function redisPipeline(port, cmds, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`redis on port ${port}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const out = [];
      let off = 0;
      for (let i = 0; i < cmds.length; i++) {
        const r = respParse(buf, off);
        if (!r) return;
        out.push(r.value);
        off = r.off;
      }
      clearTimeout(timer);
      s.destroy();
      resolve(out);
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.write(Buffer.concat(cmds.map(respEncode)));
  });
}

export async function redis(port, ...args) {
  const [v] = await redisPipeline(port, [args]);
  if (v instanceof Error) throw new Error(`redis ${args[0]}: ${v.message}`);
  return v;
}

export class RedisServer {
  constructor() {
    this.dir = tempDir('pc-br-redis-');
    this.port = null;
  }

  async start() {
    for (let attempt = 0; attempt < 5; attempt++) {
      this.port = this.port && attempt === 0 ? this.port : await freePort();
      this.proc = new Proc('redis-server', 'redis-server', [
        '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '',
        '--appendonly', 'no', '--logfile', path.join(this.dir, 'redis.log'),
      ], { env: process.env, logPath: path.join(this.dir, 'stdout.log') }).start();
      const deadline = Date.now() + 10000;
      while (Date.now() < deadline && this.proc.alive()) {
        try {
          if ((await redis(this.port, 'PING')) === 'PONG') return this;
        } catch {
          /* not yet */
        }
        await sleep(20);
      }
      await this.proc.kill();
    }
    fail(`redis-server did not start:\n${this.proc.logTail()}`);
  }

  url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  cmd(...args) {
    return redis(this.port, ...args);
  }
}

// ---------------------------------------------------------------------------------------------
// pipecast-gateway and pipecast-runner
// ---------------------------------------------------------------------------------------------

export async function httpGet(port, p, timeoutMs = 5000) {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: r.status, text: await r.text() };
}

/** @token: sent as Authorization: Bearer (a gateway with --tokens). */
export async function httpJson(port, method, p, body, timeoutMs = 10000, token = null) {
  const init = { method, signal: AbortSignal.timeout(timeoutMs), headers: {} };
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] = typeof body === 'string' ? 'text/plain' : 'application/json';
  }
  const r = await fetch(`http://127.0.0.1:${port}${p}`, init);
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, json, text };
}

export class Gateway {
  /** @port: fixed port (restart on the same port), else a free one. @token: what json() sends
   *  (a gateway with --tokens: give the file in @args, see writeTokens). */
  constructor(redisPort, { port = null, args = [], token = null } = {}) {
    this.redisPort = redisPort;
    this.port = port;
    this.args = args;
    this.token = token;
    this.dir = tempDir('pc-br-gw-');
    this.logPath = path.join(this.dir, 'gateway.log');
    this.proc = null;
  }

  async start() {
    const fixed = this.port !== null;
    let lastTail = '';
    for (let attempt = 0; attempt < (fixed ? 40 : 3); attempt++) {
      if (!fixed) this.port = await freePort();
      this.proc = new Proc('gateway', binary('pipecast-gateway'), [
        '--listen', `127.0.0.1:${this.port}`, '--redis', `redis://127.0.0.1:${this.redisPort}`,
        '--web-root', process.env.PC_WEB_ROOT || path.join(SRC, 'web'), '--retry-ms', '500', ...this.args,
      ], { env: cleanEnv(), logPath: this.logPath }).start();
      const deadline = Date.now() + 15000 * SLOW;
      while (Date.now() < deadline && this.proc.alive()) {
        try {
          const r = await httpGet(this.port, '/healthz', 2000);
          if (r.status === 200) return this;
        } catch {
          /* not yet */
        }
        await sleep(30);
      }
      lastTail = this.proc.logTail();
      await this.proc.kill();
      if (fixed) await sleep(250); // the port may still be held: try again on the same port
    }
    fail(`gateway did not start on port ${this.port}:\n${lastTail}`);
  }

  /** SIGKILL (a crash) and wait until it is gone. */
  async kill9() {
    if (this.proc) await this.proc.kill('SIGKILL');
  }

  alive() {
    return this.proc && this.proc.alive();
  }

  url(hash = '#/') {
    return `http://127.0.0.1:${this.port}/${hash}`;
  }

  json(method, p, body) {
    return httpJson(this.port, method, p, body, 10000, this.token);
  }

  logTail(n = 30) {
    return this.proc ? this.proc.logTail(n) : '(not started)';
  }
}

/** A --tokens file (mode 600) with one "<token> <scope>[,<scope>]" line per [token, scopes];
 *  returns its path. */
export function writeTokens(entries) {
  const p = path.join(tempDir('pc-br-tokens-'), 'tokens');
  fs.writeFileSync(p, entries.map(([tok, scopes]) => `${tok} ${scopes}\n`).join(''), { mode: 0o600 });
  return p;
}

/** Job templates every browser test's runner offers (docs/jobs.md "Templates"). */
export const TEMPLATES = {
  count: {
    description: 'Print numbered lines ("line 1", "line 2", ...), one every {delay} s',
    argv: ['sh', '-c', 'i=1; while [ $i -le "$1" ]; do printf \'line %d\\n\' $i; i=$((i+1)); sleep "$2"; done', 'count', '{n}', '{delay}'],
    shell: true,
    params: {
      n: { type: 'int', min: 1, max: 1000000, default: 10 },
      delay: { type: 'string', pattern: '^[0-9]{1,3}([.][0-9]{1,3})?$', default: '0.01' },
    },
    timeout_s: 600,
  },
  exitcode: {
    description: 'Print one line and exit with {code}',
    argv: ['sh', '-c', 'echo "exiting with $1"; exit "$1"', 'exitcode', '{code}'],
    shell: true,
    params: { code: { type: 'int', min: 0, max: 255, required: true } },
  },
  cat: { description: 'Echo stdin back', argv: ['cat'], timeout_s: 600 },
  latecount: { description: 'Count stdin bytes, reading only after 3 s', argv: ['sh', '-c', 'sleep 3; wc -c'], shell: true, timeout_s: 600 },
  sleep: {
    description: 'Sleep (try the kill button)',
    argv: ['sleep', '{seconds}'],
    params: { seconds: { type: 'int', min: 1, max: 86400, default: 300 } },
  },
  color: {
    description: 'Print a message with ANSI colours and a warning on stderr',
    argv: ['sh', '-c', 'printf \'%s \\033[31mred\\033[0m \\033[1mbold\\033[0m\\n\' "$1"; echo "warning: $1" >&2', 'color', '{msg}'],
    shell: true,
    params: { msg: { type: 'string', pattern: '^[^[:cntrl:]]{1,200}$', default: 'hello', allow_dash: true } },
  },
  build: {
    // the script travels in the environment so that the job view shows a short command line
    description: 'A pretend build log (colours, stderr, progress)',
    argv: ['sh', '-c', 'eval "$BUILD_SCRIPT"', 'build', '{target}'],
    shell: true,
    params: { target: { type: 'string', pattern: '^[a-z][a-z0-9_-]*$', default: 'all' } },
    env: {
      BUILD_SCRIPT: [
        'printf \'\\033[1m==> configuring\\033[0m pipecast-demo (target %s)\\n\' "$1"',
        'for f in buf channel id redis splitter sse template utf8; do printf \'\\033[32m  CC\\033[0m    src/core/%s.c\\n\' $f; sleep 0.02; done',
        'echo "src/core/sse.c:118:9: warning: unused variable \'n\' [-Wunused-variable]" >&2',
        'printf \'\\033[32m  LD\\033[0m    pipecast-gateway\\n\'',
        'printf \'\\033[1m==> testing\\033[0m\\n\'',
        'for t in buf id channel utf8 splitter sse url redis; do printf \'  test_%-10s \\033[32mPASS\\033[0m\\n\' $t; sleep 0.02; done',
        'printf \'\\033[1;32m==> done\\033[0m: 8 passed, 0 failed\\n\'',
      ].join('\n'),
    },
  },
};

export class Runner {
  constructor(redisPort, { templates = TEMPLATES, id = null, args = [] } = {}) {
    this.redisPort = redisPort;
    this.id = id || `br-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    this.dir = tempDir('pc-br-runner-');
    this.configPath = path.join(this.dir, 'runner.json');
    fs.writeFileSync(this.configPath, JSON.stringify({ templates }, null, 2));
    this.proc = new Proc('runner', binary('pipecast-runner'), [
      '--redis', `redis://127.0.0.1:${redisPort}`, '--config', this.configPath, '--id', this.id,
      '--shutdown-grace', '0', ...args,
    ], { env: cleanEnv(), logPath: path.join(this.dir, 'runner.log') });
  }

  async start() {
    this.proc.start();
    // at the end: SIGTERM, so that the runner kills the jobs still running (a SIGKILLed runner
    // would leave them behind)
    if (!this.stopHook) {
      this.stopHook = () => this.proc.kill('SIGTERM', 3000);
      stopHooks.push(this.stopHook);
    }
    await waitFor(async () => {
      check(this.proc.alive(), () => `runner exited at start:\n${this.proc.logTail()}`);
      return (await redis(this.redisPort, 'GET', `pc:runner:${this.id}`)) !== null;
    }, 15000, `runner ${this.id} heartbeat`);
    return this;
  }

  logTail(n = 30) {
    return this.proc.logTail(n);
  }
}

/** redis + runner + gateway, ready for jobs (the gateway lists the runner). */
export async function jobSetup({ gatewayArgs = [], runnerId = null, token = null } = {}) {
  const rds = await new RedisServer().start();
  const runner = await new Runner(rds.port, { id: runnerId }).start();
  const gw = await new Gateway(rds.port, { args: gatewayArgs, token }).start();
  await waitRunners(gw, runner.id);
  return { rds, runner, gw };
}

export async function waitRunners(gw, id) {
  await waitFor(async () => {
    const r = await gw.json('GET', '/api/runners');
    return r.status === 200 && (r.json.runners || []).some((x) => x.id === id);
  }, 10000, `GET /api/runners to list ${id}`);
}

export async function submitJob(gw, spec) {
  const r = await gw.json('POST', '/api/jobs', spec);
  check(r.status === 201, () => `POST /api/jobs ${short(spec)}: expected 201, got ${r.status} ${short(r.text)}`);
  return r.json;
}

export async function jobGet(gw, id) {
  const r = await gw.json('GET', `/api/jobs/${id}`);
  check(r.status === 200, () => `GET /api/jobs/${id}: ${r.status} ${short(r.text)}`);
  return r.json;
}

export async function waitJob(gw, id, statuses, timeoutMs = 30000) {
  return waitFor(async () => {
    const j = await jobGet(gw, id);
    return statuses.includes(j.status) ? j : null;
  }, timeoutMs, `job ${id} to be ${statuses.join('|')}`);
}

/** XADD each line (event optional) to pc:ch:<channel>; returns the ids. */
export async function publish(rds, channel, lines, event = null) {
  const cmds = lines.map((l) => ['XADD', `pc:ch:${channel}`, '*', ...(event ? ['event', event] : []), 'data', l]);
  const out = await redisPipeline(rds.port, cmds);
  for (const v of out) if (v instanceof Error) fail(`XADD: ${v.message}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// A reverse proxy whose upstream the test switches (one gateway taking over from another)
// ---------------------------------------------------------------------------------------------

export class SwitchProxy {
  constructor(upstreamPort) {
    this.upstream = upstreamPort;
    this.requests = []; // {t, upstream, method, url, lastEventId}
  }

  async start() {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 1000;
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    exitHooks.push(() => this.server.close());
    return this;
  }

  url(hash = '#/') {
    return `http://127.0.0.1:${this.port}/${hash}`;
  }

  handle(req, res) {
    const port = this.upstream;
    this.requests.push({ t: Date.now(), upstream: port, method: req.method, url: req.url, lastEventId: req.headers['last-event-id'] ?? null });
    const headers = { ...req.headers, host: `127.0.0.1:${port}` };
    const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers, agent: false }, (ur) => {
      const h = { ...ur.headers };
      for (const k of ['connection', 'keep-alive', 'transfer-encoding']) delete h[k];
      res.writeHead(ur.statusCode, h);
      res.flushHeaders();
      // an event stream only ends when its server goes away: pass that on as a dropped
      // connection (as the browser sees it without a proxy), not as a clean end
      const stream = /event-stream/.test(ur.headers['content-type'] || '');
      ur.on('data', (d) => res.write(d));
      ur.on('end', () => (stream ? res.destroy() : res.end()));
      ur.on('error', () => res.destroy());
      ur.on('close', () => {
        if (!ur.complete) res.destroy(); // the upstream died mid-response: so does ours
      });
    });
    up.on('error', (e) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `proxy: ${e.message}` }));
      } else {
        res.destroy();
      }
    });
    req.pipe(up);
    res.on('close', () => up.destroy());
  }
}

// ---------------------------------------------------------------------------------------------
// the browser and the page's test contract
// ---------------------------------------------------------------------------------------------

let chromiumMod = null;
export async function launchBrowser() {
  if (!chromiumMod) {
    try {
      chromiumMod = (await import('playwright-core')).chromium;
    } catch (e) {
      fail(`playwright-core is not installed (${e.message}): run "npm ci" in tests/browser (scripts/install-deps.sh does)`);
    }
  }
  const exe = process.env.PC_CHROMIUM || '/usr/bin/chromium';
  check(fs.existsSync(exe), `${exe} not found: install Debian's chromium (scripts/install-deps.sh does) or set PC_CHROMIUM`);
  const headed = process.env.PC_HEADED === '1';
  return chromiumMod.launch({
    executablePath: exe,
    headless: !headed,
    args: [...(headed ? [] : ['--headless']), '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-dev-shm-usage'],
  });
}

/** A new page that records console messages, page errors and dialogs (dialogs: confirm is
 *  accepted, others dismissed; test_xss fails on any). With @keep it stays open after its subtest. */
export async function newPage(t, opts = {}, { keep = false } = {}) {
  const page = await t.browser.newPage({ viewport: { width: 1280, height: 800 }, ...opts });
  page.setDefaultTimeout(10000 * SLOW);
  const rec = { console: [], errors: [], dialogs: [] };
  page.rec = rec;
  page.on('console', (m) => {
    rec.console.push(`[${m.type()}] ${m.text()}`);
    if (rec.console.length > 200) rec.console.shift();
  });
  page.on('pageerror', (e) => rec.errors.push(String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e)));
  page.on('dialog', async (d) => {
    rec.dialogs.push({ type: d.type(), message: d.message() });
    try {
      if (d.type() === 'confirm') await d.accept();
      else await d.dismiss();
    } catch {
      /* page gone */
    }
  });
  page.keep = !!keep; // kept open after its subtest, for the next ones
  t.pages.push(page);
  return page;
}

export const tid = (page, id) => page.locator(`[data-testid="${id}"]`);

/** Open @url and wait for the window.pipecast test API. */
export async function openPage(page, url) {
  await page.goto(url, { waitUntil: 'load' });
  try {
    await page.waitForFunction(() => window.pipecast && typeof window.pipecast.lines === 'function'
      && typeof window.pipecast.lineCount === 'function', null, { timeout: 10000 * SLOW });
  } catch {
    fail(`${url}: the test API window.pipecast {lines(), lineCount(), connState(), lastEventId(), jobId()} is missing`);
  }
}

export const apiLines = (page) => page.evaluate(() => window.pipecast.lines().map((l) => ({ id: l.id, event: l.event, text: l.text })));
export const apiCount = (page) => page.evaluate(() => window.pipecast.lineCount());
export const apiConn = (page) => page.evaluate(() => window.pipecast.connState());

export async function textOf(page, testid) {
  const loc = tid(page, testid);
  if ((await loc.count()) === 0) return null;
  return ((await loc.first().textContent()) || '').trim();
}

/** Wait until the first [data-testid=@testid] text matches @re (RegExp or exact string). */
export async function waitText(page, testid, re, timeoutMs = 10000, what = null) {
  const ok = (s) => (re instanceof RegExp ? re.test(s) : s === re);
  return waitFor(async () => {
    const s = await textOf(page, testid);
    return s !== null && ok(s) ? s : null;
  }, timeoutMs, what || `[data-testid=${testid}] text to match ${re}`);
}

export async function waitConn(page, state, timeoutMs = 15000) {
  return waitText(page, 'conn-state', state, timeoutMs, `conn-state to be "${state}"`);
}

/** The stdout lines of the page, as texts. */
export async function stdoutTexts(page) {
  return (await apiLines(page)).filter((l) => l.event === 'stdout').map((l) => l.text);
}

/** Check that @texts is exactly "<prefix>1" ... "<prefix>n": every number once, in order. */
export function checkNumbered(texts, n, prefix = 'line ', what = 'page lines') {
  const nums = texts.map((s) => {
    const m = typeof s === 'string' && s.startsWith(prefix) ? /^\d+$/.exec(s.slice(prefix.length)) : null;
    return m ? Number(m[0]) : NaN;
  });
  const bad = texts.filter((s, i) => Number.isNaN(nums[i]));
  check(bad.length === 0, () => `${what}: ${bad.length} line(s) are not "${prefix}<n>": ${short(bad.slice(0, 5))}`);
  const seen = new Map();
  for (const x of nums) seen.set(x, (seen.get(x) || 0) + 1);
  const dups = [...seen].filter(([, c]) => c > 1).map(([x, c]) => `${x}x${c}`);
  const missing = [];
  for (let i = 1; i <= n; i++) if (!seen.has(i)) missing.push(i);
  const extra = nums.filter((x) => x < 1 || x > n);
  let order = -1;
  for (let i = 1; i < nums.length; i++) if (nums[i] <= nums[i - 1]) { order = i; break; }
  check(dups.length === 0 && missing.length === 0 && extra.length === 0 && order < 0 && nums.length === n,
    () => `${what}: expected numbers 1..${n} once each in order; got ${nums.length} lines; ` +
      `duplicates ${short(dups.slice(0, 10))}, missing ${short(missing.slice(0, 10))} (${missing.length}), ` +
      `out of range ${short(extra.slice(0, 10))}` +
      (order >= 0 ? `, out of order at #${order}: ${nums[order - 1]} then ${nums[order]}` : ''));
}

/** Stream ids of the page's lines: unique and increasing. */
export function checkIds(lines, what = 'page lines') {
  const key = (id) => {
    const m = /^(\d+)-(\d+)$/.exec(String(id));
    return m ? [BigInt(m[1]), BigInt(m[2])] : null;
  };
  let prev = null;
  for (let i = 0; i < lines.length; i++) {
    const k = key(lines[i].id);
    check(k, () => `${what}: line #${i + 1} has no stream id (id ${short(lines[i].id)})`);
    if (prev) check(k[0] > prev[0] || (k[0] === prev[0] && k[1] > prev[1]),
      () => `${what}: ids not strictly increasing at #${i + 1}: ${lines[i - 1].id} then ${lines[i].id}`);
    prev = k;
  }
}

// ---------------------------------------------------------------------------------------------
// the test harness
// ---------------------------------------------------------------------------------------------

/** Run one test script. @fn(t) uses t.subtest(name, fn); t.browser is a launched chromium;
 *  t.diag(fn) registers extra diagnostics (e.g. gateway log tails) printed on a failure. */
export async function main(name, fn, { timeoutMs = 150000 } = {}) {
  const t = {
    name,
    browser: null,
    pages: [],
    diags: [],
    results: [],
    notes: [],
    diag(f) {
      this.diags.push(f);
    },
    note(msg) {
      this.notes.push(msg);
      log(`note: ${msg}`);
    },
    async subtest(sname, sfn) {
      const t0 = Date.now();
      const before = this.pages.length;
      log(`---- ${sname}`);
      try {
        await sfn();
        this.results.push({ name: sname, ok: true });
        log(`ok   ${sname} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (e) {
        const msg = e instanceof TestFailure ? e.message : `${e && e.name}: ${e && e.message}\n${e && e.stack}`;
        this.results.push({ name: sname, ok: false, msg });
        log(`FAIL ${sname} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${msg}`);
        await this.dump(sname, this.pages.filter((p) => !p.isClosed()));
      } finally {
        for (const p of this.pages.slice(before)) if (!p.keep) await p.close().catch(() => {});
      }
    },
    async dump(sname, pages) {
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      for (const [i, p] of pages.entries()) {
        if (p.isClosed()) continue;
        const base = path.join(ARTIFACTS, `${name}-${sname}${i ? '-' + i : ''}`);
        await p.screenshot({ path: `${base}.png`, timeout: 5000 }).catch(() => {});
        const state = await p.evaluate(() => {
          const q = (id) => {
            const e = document.querySelector(`[data-testid="${id}"]`);
            return e ? e.textContent.trim().slice(0, 200) : null;
          };
          let api = null;
          try {
            const pc = window.pipecast;
            api = pc && { lineCount: pc.lineCount(), connState: pc.connState(), lastEventId: pc.lastEventId(), jobId: pc.jobId() };
          } catch (e) {
            api = String(e);
          }
          return { url: location.href, connState: q('conn-state'), jobStatus: q('job-status'), exitCode: q('job-exit-code'), api };
        }).catch((e) => `(page state unavailable: ${e.message})`);
        process.stderr.write(`  page ${i}: ${JSON.stringify(state)}\n  screenshot: ${base}.png\n`);
        if (p.rec.errors.length) process.stderr.write(`  page errors:\n    ${p.rec.errors.slice(-10).join('\n    ')}\n`);
        if (p.rec.console.length) process.stderr.write(`  console (last 15):\n    ${p.rec.console.slice(-15).join('\n    ')}\n`);
      }
      for (const d of this.diags) {
        try {
          process.stderr.write(`${await d()}\n`);
        } catch {
          /* best effort */
        }
      }
    },
  };

  const watchdog = setTimeout(() => {
    log(`FAIL ${name}: watchdog: the test did not finish within ${(timeoutMs * SLOW) / 1000} s`);
    process.exit(1);
  }, timeoutMs * SLOW);
  watchdog.unref();

  let fatal = null;
  try {
    t.browser = await launchBrowser();
    await fn(t);
  } catch (e) {
    fatal = e instanceof TestFailure ? e.message : `${e && e.stack}`;
    log(`FAIL ${name}: ${fatal}`);
  }
  if (t.browser) await t.browser.close().catch(() => {});
  await Promise.all(stopHooks.map((h) => h().catch(() => {})));
  const passed = t.results.filter((r) => r.ok).length;
  const failed = t.results.length - passed + (fatal ? 1 : 0);
  process.stderr.write(`\n${name}: ${t.results.map((r) => `${r.ok ? 'ok' : 'FAIL'} ${r.name}`).join(', ')}\n`);
  for (const r of t.results) if (!r.ok) process.stderr.write(`  FAIL ${r.name}: ${r.msg}\n`);
  for (const n of t.notes) process.stderr.write(`  note: ${n}\n`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

/** Is the element (locator) inside the output scroll container's visible box? */
export async function visibleInOutput(page, selector) {
  return page.evaluate((sel) => {
    const out = document.querySelector('[data-testid="output"]');
    const el = document.querySelector(sel);
    if (!out || !el) return false;
    const o = out.getBoundingClientRect();
    const r = el.getBoundingClientRect();
    return r.height > 0 && r.bottom > o.top + 1 && r.top < o.bottom - 1;
  }, selector);
}
