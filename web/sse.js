// One channel's stream, with exact resume.
//
// - Live: an EventSource. The browser reconnects it by itself after the server closes the
//   stream, sending Last-Event-ID. When it gives up (CLOSED: a 5xx, or the gateway was down),
//   a new one is made with ?lastEventId=<last id seen> after an exponential backoff: the page
//   always recovers by itself.
// - Catching up (first load, and after a CLOSED EventSource): the retained history is read with
//   fetch() from the same SSE endpoint and parsed here, in slices that yield to the page, until
//   the channel's last id (asked first) is reached or the stream goes quiet; then the
//   EventSource takes over with ?lastEventId=. Chrome's EventSource dispatches a whole network
//   chunk of events in one task, which freezes the page for seconds on a 200,000-line replay;
//   this does not. If fetch fails, the EventSource path does everything.
// - Entries are deduplicated by stream id (ids <= the last one seen are ignored), so a line is
//   never shown twice, whatever the server replays.
// - ?partial=mark: chunks of a line arrive as "<event>.partial" ("message.partial" for entries
//   without event); the store joins them.
// - States: connecting, live, reconnecting, replaying (with a count of entries replayed).
// - Tokens (gateway --tokens): fetch sends Authorization: Bearer; the EventSource URL carries
//   access_token= (auth.js). A 401 is seen by channelInfo() (asked before every catch-up), which
//   waits for the token form: nothing is retried until the user gave a token.

import { authHeaders, withAccessToken } from "./auth.js";
import { channelInfo, eventsUrl } from "./rest.js";
import { cmpId } from "./store.js";

// EventSource has no catch-all listener: these event names are subscribed, plus every name
// seen while catching up with fetch.
export const EVENT_NAMES = [
  "message", "stdout", "stderr", "start", "exit", "restart",
  "progress", "log", "info", "notice", "warn", "warning", "error", "debug", "trace",
  "build", "test", "deploy", "status", "output", "result", "event", "data", "line",
];
const EVENT_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

const BACKOFF_MIN = 500;
const BACKOFF_MAX = 3000;
const FETCH_QUIET_MS = 400; // catching up ends when the stream sends nothing for this long
const SLICE_MS = 12;
const FETCH_HEADERS_MS = 5000; // no answer this long: give up catching up, the EventSource takes over
const BURST_WINDOW_MS = 250; // more than BURST_ENTRIES live entries in this time: catch up with fetch
const BURST_ENTRIES = 2000; // parse at most this long before yielding to the page

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

export class ChannelStream {
  // handlers: onEntry(id, event, data, partial) (only new ids), isNew(id), lastId(),
  // onGap(obj), onOverflow(data), onState(state, replayedCount)
  constructor(channel, handlers) {
    this.channel = channel;
    this.h = handlers;
    this.es = null;
    this.fetchCtrl = null;
    this.state = "connecting";
    this.everOpened = false;
    this.backoff = BACKOFF_MIN;
    this.timer = null;
    this.closed = false;
    this.replayTarget = null;
    this.replayed = 0;
    this.idleTimer = null;
    this.infoSeq = 0;
    this.names = new Set(EVENT_NAMES);
    this.winStart = 0;
    this.winCount = 0;
    this.useFetch = typeof ReadableStream !== "undefined" && typeof TextDecoderStream !== "undefined";
  }

  start() {
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    if (this.fetchCtrl) this.fetchCtrl.abort();
    if (this.es) this.es.close();
    this.es = null;
  }

  setState(s) {
    this.state = s;
    this.h.onState(s, this.replayed);
  }

  url() {
    const last = this.h.lastId();
    const params = [["partial", "mark"]];
    if (last) params.push(["lastEventId", last]);
    return eventsUrl(this.channel, params);
  }

  async connect(burst) {
    if (this.closed) return;
    if (!burst) this.setState(this.everOpened ? "reconnecting" : "connecting");
    if (this.useFetch) {
      try {
        await this.catchUp();
      } catch (err) {
        // fall through to the EventSource, which resumes after the last id seen
      }
      if (this.closed) return;
    } else if (this.esFailed) {
      // no fetch: the EventSource closed without a word (it cannot tell a 401); ask the channel's
      // info, which waits for a token when the gateway wants one
      try { await channelInfo(this.channel); } catch (err) { /* the EventSource retries */ }
      if (this.closed) return;
    }
    this.openEventSource();
  }

  // ---- one entry (from either path) ----

  entry(id, name, data, partial) {
    if (!id || !this.h.isNew(id)) return false; // duplicate (or no id): never shown twice
    this.h.onEntry(id, name, data, partial);
    if (this.state === "replaying") {
      this.replayed++;
      if (this.replayTarget !== null && cmpId(id, this.replayTarget) >= 0) this.setState("live");
      else {
        this.armIdle();
        if ((this.replayed & 1023) === 0) this.h.onState(this.state, this.replayed);
      }
    }
    return true;
  }

  gap(data) {
    let obj = null;
    try { obj = JSON.parse(data); } catch (err) { obj = { raw: data }; }
    this.h.onGap(obj);
  }

  // ---- catching up with fetch ----

  async catchUp() {
    const info = await channelInfo(this.channel);
    if (this.closed) return;
    const target = info && info.last_id ? info.last_id : null;
    const last = this.h.lastId();
    if (target === null || (last !== null && cmpId(last, target) >= 0)) return; // nothing to replay
    const ctrl = new AbortController();
    this.fetchCtrl = ctrl;
    try {
      const headersTimer = setTimeout(() => ctrl.abort(), FETCH_HEADERS_MS);
      let res;
      try {
        res = await fetch(this.url(), { signal: ctrl.signal, cache: "no-store", headers: authHeaders({ Accept: "text/event-stream" }) });
      } finally {
        clearTimeout(headersTimer);
      }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      this.everOpened = true;
      this.backoff = BACKOFF_MIN;
      this.replayed = 0;
      this.replayTarget = null; // the state is ended here, not by entry()
      this.setState("replaying");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const p = new SseParser((type, id, data) => this.dispatch(type, id, data));
      let sliceStart = performance.now();
      for (;;) {
        const read = reader.read();
        read.catch(() => {});
        const r = await Promise.race([read, sleep(FETCH_QUIET_MS).then(() => null)]);
        if (this.closed) return;
        if (r === null || r.done) break; // quiet (caught up) or closed by the server
        p.push(r.value);
        const lastNow = this.h.lastId();
        if (lastNow !== null && cmpId(lastNow, target) >= 0) break;
        this.h.onState(this.state, this.replayed);
        if (performance.now() - sliceStart > SLICE_MS) {
          await sleep(0);
          sliceStart = performance.now();
        }
      }
    } finally {
      ctrl.abort();
      if (this.fetchCtrl === ctrl) this.fetchCtrl = null;
    }
  }

  dispatch(type, id, data) {
    if (type === "gap") { this.gap(data); return; }
    if (type === "overflow") { this.h.onOverflow(data); return; }
    let name = type || "message";
    let partial = false;
    if (name.endsWith(".partial")) { name = name.slice(0, -8); partial = true; }
    if (!EVENT_NAME_RE.test(name)) return;
    this.names.add(name);
    this.entry(id, name, data, partial);
  }

  // ---- live: EventSource ----

  openEventSource() {
    if (this.closed) return;
    // EventSource cannot send headers: the token (if any) goes in the query (access_token)
    const es = new EventSource(withAccessToken(this.url()));
    this.es = es;
    if (this.state !== "replaying") this.setState(this.everOpened ? "reconnecting" : "connecting");

    es.onopen = () => {
      if (es !== this.es) return;
      this.everOpened = true;
      this.esFailed = false;
      this.backoff = BACKOFF_MIN;
      this.replayed = 0;
      this.replayTarget = null;
      this.setState("replaying");
      this.checkReplay();
    };
    es.onerror = () => {
      if (es !== this.es || this.closed) return;
      if (es.readyState === EventSource.CLOSED) {
        // EventSource gave up (e.g. 503 from the gateway): start again after a backoff,
        // resuming after the last id seen.
        es.close();
        this.es = null;
        this.esFailed = true;
        this.setState("reconnecting");
        const delay = this.backoff * (0.75 + Math.random() * 0.5);
        this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.connect(), delay);
      } else {
        // the browser reconnects by itself, sending Last-Event-ID
        this.setState(this.everOpened ? "reconnecting" : "connecting");
      }
    };
    for (const name of this.names) {
      es.addEventListener(name, (e) => this.esEntry(es, e, name, false));
      es.addEventListener(name + ".partial", (e) => this.esEntry(es, e, name, true));
    }
    es.addEventListener("gap", (e) => { if (es === this.es) this.gap(e.data); });
    es.addEventListener("overflow", (e) => { if (es === this.es) this.h.onOverflow(e.data); });
  }

  esEntry(es, e, name, partial) {
    if (es !== this.es) return;
    this.entry(e.lastEventId, name, e.data, partial);
    // A firehose (thousands of entries a second): Chrome dispatches a whole network chunk in
    // one task, which would freeze the page; close and catch up with fetch instead.
    const now = performance.now();
    if (now - this.winStart > BURST_WINDOW_MS) { this.winStart = now; this.winCount = 0; }
    if (++this.winCount > BURST_ENTRIES && this.useFetch) {
      es.close();
      this.es = null;
      this.winCount = 0;
      this.connect(true);
    }
  }

  // After the EventSource (re)opened: ask the channel's last id; until we have passed it we
  // are replaying.
  async checkReplay() {
    const seq = ++this.infoSeq;
    const es = this.es;
    let target = null;
    try {
      const info = await channelInfo(this.channel);
      target = info && info.last_id ? info.last_id : null;
    } catch (err) {
      target = null;
    }
    if (seq !== this.infoSeq || es !== this.es || this.state !== "replaying") return;
    const last = this.h.lastId();
    if (target === null || (last !== null && cmpId(last, target) >= 0)) this.setState("live");
    else { this.replayTarget = target; this.armIdle(); }
  }

  // Safety net: a replay that stops short of the target (entries deleted, filtered) ends
  // after a quiet second.
  armIdle() {
    this.lastActivity = performance.now();
    if (this.idleTimer) return;
    const tick = () => {
      this.idleTimer = null;
      if (this.closed || this.state !== "replaying" || !this.es) return;
      const quiet = performance.now() - this.lastActivity;
      if (quiet >= 1000) this.setState("live");
      else this.idleTimer = setTimeout(tick, 1000 - quiet + 10);
    };
    this.idleTimer = setTimeout(tick, 1000);
  }
}

// Server-Sent Events parser (the WHATWG algorithm): push() text as it arrives; calls
// onEvent(type, lastEventId, data) per dispatched event.
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = "";
    this.type = "";
    this.data = "";
    this.hasData = false;
    this.id = "";
  }

  push(text) {
    let buf = this.buf + text;
    let pos = 0;
    const n = buf.length;
    for (;;) {
      // find the next line end (\n, \r\n or \r)
      let i = pos;
      while (i < n) {
        const c = buf.charCodeAt(i);
        if (c === 10 || c === 13) break;
        i++;
      }
      if (i >= n) break;
      if (buf.charCodeAt(i) === 13 && i + 1 >= n) break; // \r at the end: maybe \r\n, wait
      const line = buf.slice(pos, i);
      pos = i + (buf.charCodeAt(i) === 13 && buf.charCodeAt(i + 1) === 10 ? 2 : 1);
      this.line(line);
    }
    this.buf = pos > 0 ? buf.slice(pos) : buf;
  }

  line(line) {
    if (line === "") {
      if (this.hasData) {
        let d = this.data;
        if (d.endsWith("\n")) d = d.slice(0, -1);
        const type = this.type;
        this.type = ""; this.data = ""; this.hasData = false;
        this.onEvent(type, this.id, d);
      } else {
        this.type = ""; this.data = "";
      }
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" comment (pings)
    const c = line.indexOf(":");
    let field, value;
    if (c < 0) { field = line; value = ""; }
    else {
      field = line.slice(0, c);
      value = line.slice(line.charCodeAt(c + 1) === 32 ? c + 2 : c + 1);
    }
    if (field === "data") { this.data += value + "\n"; this.hasData = true; }
    else if (field === "event") this.type = value;
    else if (field === "id") { if (value.indexOf("\0") < 0) this.id = value; }
    // "retry" and unknown fields: ignored
  }
}
