#!/usr/bin/env node
// pipecast -- a dependency-free Node.js client (Node 18+; node:http / node:https only).
//
//   import { subscribe, publish } from './pipecast.mjs';
//   await publish('http://127.0.0.1:8080', 'build-42', 'one\ntwo\n', { event: 'log' });
//   for await (const ev of subscribe('http://127.0.0.1:8080', 'build-42', { tail: 10 }))
//     console.log(ev.id, ev.event, ev.data);
//
// subscribe() parses text/event-stream exactly as the WHATWG HTML standard does and, like a
// browser's EventSource, reconnects after a dropped connection with Last-Event-ID after the
// server's retry: delay (a list of gateway URLs is tried in turn), so the stream continues with
// every entry exactly once. `gap` events are yielded like any other.
//
// CLI:
//   node pipecast.mjs sub URL CHANNEL [--from start|end] [--tail N] [--last-event-id ID]
//                                     [--event NAME]... [--count N] [--timeout S] [--json]
//   node pipecast.mjs pub URL CHANNEL [--event NAME] < file

import http from 'node:http';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';

const CHANNEL_RE = /^[A-Za-z0-9._:@-]{1,200}$/;
const EVENT_RE = /^[A-Za-z0-9_-]{1,64}$/;

export class PipecastError extends Error {
  constructor(message, status = null) {
    super(message);
    this.name = 'PipecastError';
    this.status = status;
  }
}

export function validateChannel(channel) {
  if (typeof channel !== 'string' || !CHANNEL_RE.test(channel)) {
    throw new PipecastError(
      `channel ${JSON.stringify(channel)}: invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)`);
  }
  return channel;
}

function validateEvent(event) {
  if (event == null) return null;
  if (typeof event !== 'string' || !EVENT_RE.test(event)) {
    throw new PipecastError(
      `event ${JSON.stringify(event)}: invalid event name (allowed: 1-64 bytes of A-Z a-z 0-9 _ -)`);
  }
  return event;
}

function parseBase(url) {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new PipecastError(`gateway URL ${url}: expected http://host[:port][/prefix]`);
  }
  return { mod: u.protocol === 'https:' ? https : http, u, base: u.pathname.replace(/\/+$/, '') };
}

function errorMessage(body, status, reason) {
  try {
    const j = JSON.parse(body.toString('utf8'));
    if (typeof j.error === 'string') return j.error;
  } catch { /* not JSON */ }
  return `HTTP ${status} ${reason || ''}`.trim();
}

// ------------------------------------------------------------------------------------------
// SSE parser (WHATWG HTML "event stream interpretation")
// ------------------------------------------------------------------------------------------

export class SSEParser {
  constructor(lastEventId = '') {
    this.lastEventId = lastEventId; // the source's "last event ID string"
    this.retry = null;
    this.comments = 0;
    this.reset();
  }

  // A new connection's stream: keeps lastEventId and retry.
  reset() {
    this.decoder = new TextDecoder('utf-8'); // replaces invalid sequences; drops one leading BOM
    this.buf = '';
    this.data = [];
    this.event = '';
    this.idBuf = this.lastEventId;
    this.blockId = null;
  }

  // Feed a Buffer/Uint8Array; returns the events it completes.
  feed(chunk) {
    const buf = this.buf + this.decoder.decode(chunk, { stream: true });
    const out = [];
    const re = /\r\n|\r|\n/g;
    let pos = 0;
    let m;
    while ((m = re.exec(buf)) !== null) {
      if (m[0] === '\r' && re.lastIndex === buf.length) break; // maybe half of a CRLF
      this.line(buf.slice(pos, m.index), out);
      pos = re.lastIndex;
    }
    this.buf = buf.slice(pos);
    return out;
  }

  line(line, out) {
    if (line === '') {
      this.lastEventId = this.idBuf;
      if (this.data.length) {
        out.push({ id: this.blockId, event: this.event || 'message', data: this.data.join('\n') });
      }
      this.data = [];
      this.event = '';
      this.blockId = null;
      return;
    }
    if (line[0] === ':') {
      this.comments++;
      return;
    }
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id') {
      if (!value.includes('\0')) {
        this.idBuf = value;
        this.blockId = value;
      }
    } else if (field === 'retry') {
      if (/^[0-9]+$/.test(value)) this.retry = parseInt(value, 10);
    }
  }
}

// ------------------------------------------------------------------------------------------
// subscribe
// ------------------------------------------------------------------------------------------

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

// One HTTP GET; resolves to the response (or rejects on a network error).
function get(url, path, headers, signal, connectTimeoutMs) {
  const { mod, u } = parseBase(url);
  return new Promise((resolve, reject) => {
    const req = mod.request({
      hostname: u.hostname.replace(/^\[|\]$/g, ''), port: u.port || undefined, path,
      method: 'GET', headers, agent: false, signal,
    });
    const t = setTimeout(() => req.destroy(new Error(`connect timeout after ${connectTimeoutMs} ms`)),
      connectTimeoutMs);
    req.on('response', (res) => { clearTimeout(t); resolve({ req, res }); });
    req.on('error', (e) => { clearTimeout(t); reject(e); });
    req.end();
  });
}

function readBody(res, limit = 65536) {
  return new Promise((resolve) => {
    const parts = [];
    let n = 0;
    res.on('data', (c) => { if (n < limit) { parts.push(c); n += c.length; } });
    res.on('end', () => resolve(Buffer.concat(parts)));
    res.on('error', () => resolve(Buffer.concat(parts)));
    res.on('close', () => resolve(Buffer.concat(parts)));
  });
}

/**
 * Follow a channel: an async iterable of {id, event, data}.
 *   id: this event's own id: field (the Redis stream id), null when it had none (gap events)
 *   event: the event type, 'message' when absent; data: the data: lines joined with '\n'.
 * gatewayUrl: 'http://host:port' or an array of them (after a failure the next one is tried).
 * opts: lastEventId | from ('start'|'end') | tail (N); events: [names]; signal (AbortSignal);
 *   reconnect (true); retryMs (2000, until the server's retry:); idleTimeoutMs (60000);
 *   connectTimeoutMs (10000); maxReconnects (unlimited); onReconnect(info) callback.
 * The returned object also has .state: {lastEventId, retryMs, reconnects, url}.
 */
export function subscribe(gatewayUrl, channel, opts = {}) {
  const urls = Array.isArray(gatewayUrl) ? [...gatewayUrl] : [gatewayUrl];
  if (!urls.length) throw new PipecastError('no gateway URL');
  urls.forEach(parseBase);
  validateChannel(channel);
  const events = (typeof opts.events === 'string' ? [opts.events] : opts.events || []).map(validateEvent);
  if (opts.from != null && opts.from !== 'start' && opts.from !== 'end') {
    throw new PipecastError(`from ${JSON.stringify(opts.from)}: expected 'start' or 'end'`);
  }
  if (opts.tail != null && !(Number.isInteger(opts.tail) && opts.tail >= 0 && opts.tail <= 100000)) {
    throw new PipecastError(`tail ${JSON.stringify(opts.tail)}: expected an integer 0..100000`);
  }
  const lid = opts.lastEventId;
  if (lid != null && (typeof lid !== 'string' || /[\r\n\0]/.test(lid))) {
    throw new PipecastError(`lastEventId ${JSON.stringify(opts.lastEventId)}: not a valid header value`);
  }
  const parser = new SSEParser(opts.lastEventId || '');
  const ctl = new AbortController();
  if (opts.signal) {
    if (opts.signal.aborted) ctl.abort();
    else opts.signal.addEventListener('abort', () => ctl.abort(), { once: true });
  }
  const state = {
    lastEventId: parser.lastEventId, retryMs: opts.retryMs ?? 2000, reconnects: 0,
    urlIndex: 0, error: null,
    get url() { return urls[this.urlIndex]; },
  };
  const reconnect = opts.reconnect ?? true;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 60000;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10000;

  function pathFor(base) {
    const q = new URLSearchParams();
    if (!parser.lastEventId) { // a resume position goes in Last-Event-ID
      if (opts.tail != null) q.append('tail', String(opts.tail));
      else if (opts.from != null) q.append('from', opts.from);
    }
    for (const e of events) q.append('event', e);
    const qs = q.toString();
    return `${base}/api/channels/${channel}/events${qs ? '?' + qs : ''}`;
  }

  // One connection: yields events; returns null (reconnect), a minimum wait in ms, or false (stop).
  async function* connection() {
    const url = state.url;
    const { base } = parseBase(url);
    const path = pathFor(base);
    const headers = { Accept: 'text/event-stream', 'Cache-Control': 'no-cache' };
    if (parser.lastEventId) headers['Last-Event-ID'] = parser.lastEventId;
    const { req, res } = await get(url, path, headers, ctl.signal, connectTimeoutMs);
    try {
      if (res.statusCode === 204) return false;
      if (res.statusCode !== 200) {
        const msg = `GET ${path}: ${errorMessage(await readBody(res), res.statusCode, res.statusMessage)}`;
        if (res.statusCode === 408 || res.statusCode === 429 || res.statusCode >= 500) {
          state.error = new PipecastError(msg, res.statusCode);
          const ra = res.headers['retry-after'];
          return ra && /^\d+$/.test(ra) ? Number(ra) * 1000 : null;
        }
        throw new PipecastError(msg, res.statusCode);
      }
      const ctype = (res.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
      if (ctype !== 'text/event-stream') {
        const ct = JSON.stringify(res.headers['content-type']);
        throw new PipecastError(`GET ${path}: Content-Type ${ct} is not text/event-stream`, 200);
      }
      res.setTimeout(idleTimeoutMs, () => res.destroy(new Error(`no data for ${idleTimeoutMs} ms`)));
      parser.reset();
      try {
        for await (const chunk of res) {
          const evs = parser.feed(chunk);
          if (parser.retry != null) state.retryMs = parser.retry;
          state.lastEventId = parser.lastEventId;
          for (const ev of evs) {
            if (ctl.signal.aborted) return false;
            yield ev;
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return false;
        state.error = e;
      }
      return null; // the server closed the stream: reconnect
    } finally {
      req.destroy();
    }
  }

  async function* run() {
    try {
      while (!ctl.signal.aborted) {
        let wait = null;
        try {
          wait = yield* connection();
        } catch (e) {
          if (e instanceof PipecastError || ctl.signal.aborted) {
            if (ctl.signal.aborted) return;
            throw e;
          }
          state.error = e; // network error: reconnect
        }
        if (ctl.signal.aborted || !reconnect || wait === false) return;
        if (opts.maxReconnects != null && state.reconnects >= opts.maxReconnects) {
          throw new PipecastError(
            `${channel}: gave up after ${state.reconnects} reconnects (${state.error?.message})`);
        }
        state.urlIndex = (state.urlIndex + 1) % urls.length; // any gateway can resume any client
        await sleep(Math.max(state.retryMs, wait || 0), ctl.signal);
        if (ctl.signal.aborted) return;
        state.reconnects++;
        if (opts.onReconnect) opts.onReconnect({ ...state, url: state.url });
      }
    } finally {
      ctl.abort();
    }
  }

  const it = run();
  it.state = state;
  it.close = () => ctl.abort();
  return it;
}

// ------------------------------------------------------------------------------------------
// publish
// ------------------------------------------------------------------------------------------

/** POST text (string or Buffer; one entry per line) -> {published, last_id}. */
export async function publish(gatewayUrl, channel, text, opts = {}) {
  validateChannel(channel);
  const event = validateEvent(opts.event);
  const { mod, u, base } = parseBase(gatewayUrl);
  const path = `${base}/api/channels/${channel}${event ? '?event=' + encodeURIComponent(event) : ''}`;
  const body = Buffer.isBuffer(text) ? text : Buffer.from(String(text), 'utf8');
  const { status, reason, data } = await new Promise((resolve, reject) => {
    const req = mod.request({
      hostname: u.hostname.replace(/^\[|\]$/g, ''), port: u.port || undefined, path, method: 'POST',
      agent: false,
      headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length },
      timeout: opts.timeoutMs ?? 30000,
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => reject(new PipecastError(`POST ${gatewayUrl}${path}: ${e.message}`)));
    req.on('response', async (res) => {
      resolve({ status: res.statusCode, reason: res.statusMessage, data: await readBody(res, 1 << 20) });
    });
    req.end(body);
  });
  if (status !== 200) throw new PipecastError(`POST ${path}: ${errorMessage(data, status, reason)}`, status);
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw new PipecastError(`POST ${path}: answer is not JSON`, status);
  }
}

// ------------------------------------------------------------------------------------------
// CLI
// ------------------------------------------------------------------------------------------

const USAGE = `usage: pipecast.mjs sub URL CHANNEL [--from start|end] [--tail N] [--last-event-id ID]
                            [--event NAME]... [--count N] [--timeout S] [--json]
       pipecast.mjs pub URL CHANNEL [--event NAME] < file
URL: a gateway http://host:port (sub: or a comma-separated list of them, tried in turn)`;

function parseArgs(argv) {
  const pos = [];
  const o = { event: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0); }
    if (a === '--json') { o.json = true; continue; }
    if (a.startsWith('--')) {
      let [name, val] = a.slice(2).split(/=(.*)/s);
      if (val === undefined) {
        if (++i >= argv.length) throw new PipecastError(`option ${a} needs a value`);
        val = argv[i];
      }
      if (name === 'event') o.event.push(val);
      else if (['from', 'tail', 'last-event-id', 'count', 'timeout'].includes(name)) o[name] = val;
      else throw new PipecastError(`unknown option ${a}`);
    } else pos.push(a);
  }
  return { pos, o };
}

function intOpt(v, what) {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new PipecastError(`${what} ${JSON.stringify(v)}: expected a number`);
  return Number(v);
}

async function readStdin() {
  const parts = [];
  for await (const c of process.stdin) parts.push(c);
  return Buffer.concat(parts);
}

function write(s) {
  return new Promise((resolve) => {
    if (process.stdout.write(s)) resolve();
    else process.stdout.once('drain', resolve);
  });
}

async function cli(argv) {
  let pos, o, it, count, timeout;
  try {
    ({ pos, o } = parseArgs(argv));
    if (pos.length !== 3 || !['sub', 'pub'].includes(pos[0])) {
      throw new PipecastError('expected: sub|pub URL CHANNEL');
    }
    validateChannel(pos[2]);
    count = intOpt(o.count, '--count');
    timeout = o.timeout === undefined ? undefined : Number(o.timeout);
    if (timeout !== undefined && !(timeout > 0)) {
      throw new PipecastError(`--timeout ${o.timeout}: expected seconds > 0`);
    }
    if (pos[0] === 'sub') {
      it = subscribe(pos[1].includes(',') ? pos[1].split(',') : pos[1], pos[2], {
        lastEventId: o['last-event-id'], from: o.from, tail: intOpt(o.tail, '--tail'),
        events: o.event,
      });
    } else if (o.event.length > 1) throw new PipecastError('pub takes one --event');
  } catch (e) {
    process.stderr.write(`pipecast: ${e.message}\n${USAGE}\n`);
    return 2;
  }
  const [cmd, url, channel] = pos;
  try {
    if (cmd === 'pub') {
      const res = await publish(url, channel, await readStdin(), { event: o.event[0] });
      await write(JSON.stringify(res) + '\n');
      return 0;
    }
    if (count === 0) return 0;
    let timer;
    if (timeout) timer = setTimeout(() => it.close(), timeout * 1000);
    let n = 0;
    try {
      for await (const ev of it) {
        await write(o.json ? JSON.stringify(ev) + '\n' : ev.data + '\n');
        if (count !== undefined && ++n >= count) return 0;
      }
    } finally {
      clearTimeout(timer);
      it.close();
    }
    if (count !== undefined) {
      process.stderr.write(`pipecast: timed out after ${n} of ${count} events\n`);
      return 1;
    }
    return 0;
  } catch (e) {
    process.stderr.write(`pipecast: ${e.message}\n`);
    return 1;
  }
}

function isMain() {
  try {
    return process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  process.stdout.on('error', (e) => { if (e.code === 'EPIPE') process.exit(0); });
  cli(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
