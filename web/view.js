// The output view of one channel: live stream into a LineStore, virtualised rendering (fixed row
// height, only the visible rows in the DOM, a spacer for the scroll height), follow-the-tail,
// search, timestamps, download, links to lines, gap notices.

import { parse, needsParse, render as renderAnsi } from "./ansi.js";
import { ChannelStream } from "./sse.js";
import { LineStore, idMs } from "./store.js";
import { h, setText, fmtTime, fmtDuration, argvText, toast } from "./util.js";

export const ROW_H = 20; // px; must match .line height in style.css
const OVERSCAN = 8;
const MAX_SPACER = 8000000; // px; above this the scroll position is scaled onto the lines
const MAX_RENDER_CHARS = 8000; // characters of one line put into the DOM (the rest: download)
const META_EVENTS = new Set(["start", "exit", "restart"]);

// Readable text for the runner's lifecycle events (their data is JSON).
function metaText(event, data) {
  let o;
  try { o = JSON.parse(data); } catch (err) { return data; }
  if (!o || typeof o !== "object") return data;
  if (event === "start") {
    const where = [o.pid ? "pid " + o.pid : "", o.runner ? "runner " + o.runner : "",
      o.attempt > 1 ? "attempt " + o.attempt : ""].filter(Boolean).join(", ");
    return "\u25b6 started " + argvText(o.argv) + (where ? "  (" + where + ")" : "");
  }
  if (event === "exit") {
    let what;
    if (o.reason === "exited") what = "exited with code " + o.code;
    else if (o.reason === "killed") what = "killed" + (o.signal ? " by signal " + o.signal : "");
    else if (o.reason === "timeout") what = "timed out" + (o.signal ? " (signal " + o.signal + ")" : "");
    else if (o.reason === "failed to start") what = "failed to start" + (o.error ? ": " + o.error : "");
    else if (o.reason === "lost") what = "lost (its runner went away)";
    else what = String(o.reason || "ended") + (o.code !== null && o.code !== undefined ? " code " + o.code : "");
    return "\u25a0 " + what + (o.duration_ms !== undefined ? " after " + fmtDuration(o.duration_ms) : "");
  }
  if (event === "restart") {
    return "\u21bb restarting (attempt " + o.attempt + ")" + (o.backoff_ms ? " in " + fmtDuration(o.backoff_ms) : "");
  }
  return data;
}

export class OutputView {
  // opts: channel, linkBase ("#/channel/x"), onState(state, n), onEvent(event, data)
  constructor(opts) {
    this.opts = opts;
    this.channel = opts.channel;
    this.store = new LineStore(opts.maxLines, opts.maxChars);
    this.store.onDrop = (k) => this.onDrop(k);
    this.follow = true;
    this.timestamps = localStorage.getItem("pipecast.timestamps") === "1";
    this.cache = new Map(); // absolute index -> row element
    this.rafPending = false;
    this.progTarget = null;
    this.spacerH = -1;
    this.hlIndex = -1; // highlighted line (link target)
    this.pendingLine = null; // ?line=<id> not loaded yet
    this.newSinceUnfollow = 0;
    this.connState = "connecting";
    this.gaps = 0;
    this.gapAt = new Set();
    // search state
    this.re = null;
    this.mLine = []; this.mStart = []; this.mEnd = [];
    this.cur = -1;
    this.scanTo = 0; // absolute index up to which the search has scanned
    this.scanTimer = null;
    this.searchTimer = null;
    this.build();
  }

  build() {
    const b = (testid, label, onclick, extra = {}) =>
      h("button", { type: "button", "data-testid": testid, onclick, ...extra }, label);
    this.searchInput = h("input", {
      type: "search", "data-testid": "search-input", placeholder: "Search  /", "aria-label": "Search in output",
      autocomplete: "off", spellcheck: "false",
      oninput: () => this.onSearchInput(),
      onkeydown: (e) => {
        if (e.key === "Enter") { e.preventDefault(); this.flushSearch(); this.step(e.shiftKey ? -1 : 1); }
        else if (e.key === "Escape") {
          e.preventDefault();
          if (this.searchInput.value) { this.searchInput.value = ""; this.setQuery(""); }
          else this.output.focus();
        }
      },
    });
    this.searchCount = h("span", { class: "search-count", "data-testid": "search-count", "aria-live": "polite" });
    this.followBtn = b("follow-toggle", "Follow", () => this.setFollow(!this.follow, true),
      { "aria-pressed": "true", title: "Follow the end of the output" });
    this.tsBtn = b("timestamps-toggle", "Time", () => this.setTimestamps(!this.timestamps),
      { "aria-pressed": String(this.timestamps), title: "Show timestamps (from the stream ids)" });
    this.countEl = h("span", { class: "linecount", "aria-live": "off" });
    this.toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Output tools" },
      h("div", { class: "searchbox" },
        this.searchInput, this.searchCount,
        b("search-prev", "\u2191", () => { this.flushSearch(); this.step(-1); }, { "aria-label": "Previous match", title: "Previous match (Shift+Enter)" }),
        b("search-next", "\u2193", () => { this.flushSearch(); this.step(1); }, { "aria-label": "Next match", title: "Next match (Enter)" })),
      h("div", { class: "tools" },
        this.followBtn, this.tsBtn,
        b("download", "Download", () => this.download(), { title: "Download the whole output as text" }),
        this.countEl));
    this.notices = h("div", { class: "notices" });
    this.rows = h("div", { class: "rows" });
    this.spacer = h("div", { class: "spacer" }, this.rows);
    this.empty = h("div", { class: "empty" }, "Waiting for output\u2026");
    this.output = h("div", {
      class: "output" + (this.timestamps ? " with-ts" : ""), "data-testid": "output", tabindex: "0",
      role: "region", "aria-label": "Output of " + this.channel,
    }, this.spacer);
    this.output.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.output.addEventListener("click", (e) => this.onClick(e));
    this.jumpBtn = h("button", { type: "button", class: "jump", hidden: true, onclick: () => this.setFollow(true, true) }, "Jump to live \u2193");
    this.el = h("section", { class: "outview" }, this.toolbar, this.notices,
      h("div", { class: "outwrap" }, this.output, this.empty, this.jumpBtn));
    this.ro = new ResizeObserver(() => this.schedule());
    this.ro.observe(this.output);
    this.updateCount();
  }

  start() {
    this.stream = new ChannelStream(this.channel, {
      lastId: () => this.store.lastId,
      isNew: (id) => this.store.isNew(id),
      onEntry: (id, event, data, partial) => this.onEntry(id, event, data, partial),
      onGap: (g) => this.onGap(g),
      onOverflow: (d) => this.notice("overflow-notice", "warn",
        "The server reported an overflow: some lines were skipped" + (d ? " (" + d + ")" : "") + "."),
      onState: (s, n) => {
        this.connState = s;
        if (this.opts.onState) this.opts.onState(s, n);
      },
    });
    this.stream.start();
  }

  destroy() {
    if (this.stream) this.stream.close();
    this.ro.disconnect();
    clearTimeout(this.scanTimer);
    clearTimeout(this.searchTimer);
    this.destroyed = true;
  }

  // ---- data in ----

  onEntry(id, event, data, partial) {
    if (META_EVENTS.has(event) && !partial) data = metaText(event, data);
    const before = this.store.end;
    this.store.add(id, event, data, partial);
    if (!this.follow) this.newSinceUnfollow += this.store.end - before;
    if (this.opts.onEvent && !partial) this.opts.onEvent(event, data, id);
    this.schedule();
  }

  onGap(g) {
    this.gaps++;
    this.gapAt.add(this.store.end); // the next line comes after the gap: marked in the view
    this.cache.delete(this.store.end);
    let text = "Gap: some entries were trimmed from the stream before they could be shown";
    if (g && g.requested !== undefined) {
      text += " (asked for entries after " + g.requested + ", the oldest still kept is " + g.first_available + ")";
    }
    if (this.gaps > 1) text += " \u2014 " + this.gaps + " gaps so far";
    this.notice("gap-notice", "warn", text + ".");
  }

  onDrop(k) {
    this.cache.clear();
    // search matches below the new base go away
    if (this.mLine.length) {
      let r = 0;
      while (r < this.mLine.length && this.mLine[r] < this.store.base) r++;
      if (r) {
        this.mLine.splice(0, r); this.mStart.splice(0, r); this.mEnd.splice(0, r);
        this.cur = this.cur >= r ? this.cur - r : -1;
      }
    }
    if (this.hlIndex >= 0 && this.hlIndex < this.store.base) this.hlIndex = -1;
    this.notice("drop-notice", "info", this.store.dropped.toLocaleString() +
      " oldest lines were dropped from this page to bound its memory (download keeps what is still here).");
  }

  notice(testid, kind, text) {
    let el = this.notices.querySelector('[data-testid="' + testid + '"]');
    if (!el) {
      el = h("div", { class: "notice " + kind, "data-testid": testid, role: kind === "warn" ? "alert" : "status" },
        h("span", { class: "msg" }),
        h("button", { type: "button", class: "dismiss", "aria-label": "Dismiss", title: "Dismiss", onclick: () => el.remove() }));
      this.notices.appendChild(el);
    }
    setText(el.querySelector(".msg"), text);
  }

  // ---- rendering ----

  schedule() {
    if (this.rafPending || this.destroyed) return;
    this.rafPending = true;
    requestAnimationFrame(() => this.render());
  }

  metrics() {
    const n = this.store.length;
    const viewH = this.output.clientHeight;
    const spacerH = Math.min(n * ROW_H, MAX_SPACER);
    const maxScroll = Math.max(spacerH - viewH, 0);
    const maxFirst = Math.max(n - viewH / ROW_H, 0);
    const k = maxFirst > 0 && maxScroll > 0 ? maxScroll / maxFirst : ROW_H; // px of scroll per line
    return { n, viewH, spacerH, maxScroll, k };
  }

  render() {
    this.rafPending = false;
    if (this.destroyed) return;
    const st = this.store;
    const changed = st.takeChanges();
    if (changed !== Infinity) {
      for (const i of this.cache.keys()) if (i >= changed) this.cache.delete(i);
      if (this.re) this.scheduleScan(changed);
    }
    this.updateSpacer();
    if (changed !== Infinity && this.pendingLine) this.tryPendingLine();
    const m = this.metrics();
    this.output.style.setProperty("--gut", String(String(st.end).length));
    if (this.follow && m.maxScroll > 0) {
      this.output.scrollTop = this.output.scrollHeight;
      this.progTarget = this.output.scrollTop;
    }
    this.drawRows(m);
    this.empty.hidden = m.n > 0;
    this.jumpBtn.hidden = this.follow;
    if (!this.follow) setText(this.jumpBtn, "Jump to live \u2193" + (this.newSinceUnfollow ? "  (" + this.newSinceUnfollow.toLocaleString() + " new)" : ""));
    this.updateCount();
  }

  updateSpacer() {
    const h = Math.min(this.store.length * ROW_H, MAX_SPACER);
    if (h !== this.spacerH) {
      this.spacer.style.height = h + "px";
      this.spacerH = h;
    }
  }

  drawRows(m) {
    const st = this.store;
    const scrollTop = Math.min(this.output.scrollTop, m.maxScroll);
    const first = scrollTop / m.k; // fractional index of the line at the top (relative to base)
    const ifirst = Math.floor(first);
    const start = Math.max(0, ifirst - OVERSCAN);
    const end = Math.min(m.n, ifirst + Math.ceil(m.viewH / ROW_H) + 1 + OVERSCAN);
    this.rows.style.transform = "translateY(" + (scrollTop + (start - first) * ROW_H) + "px)";
    const want = [];
    const keep = new Map();
    for (let i = start; i < end; i++) {
      const abs = st.base + i;
      let row = this.cache.get(abs);
      if (!row) row = this.buildRow(abs);
      keep.set(abs, row);
      want.push(row);
    }
    this.cache = keep;
    // replace children only when the set changed
    const kids = this.rows.children;
    let same = kids.length === want.length;
    for (let i = 0; same && i < want.length; i++) if (kids[i] !== want[i]) same = false;
    if (!same) this.rows.replaceChildren(...want);
  }

  buildRow(abs) {
    const st = this.store;
    const id = st.id(abs);
    const event = st.event(abs);
    let cls = "line";
    if (event === "stderr") cls += " err";
    else if (META_EVENTS.has(event)) cls += " meta ev-" + event;
    if (abs === this.hlIndex) cls += " sel";
    if (this.gapAt.has(abs)) cls += " gapmark";
    const row = document.createElement("div");
    row.className = cls;
    row.setAttribute("data-testid", "line");
    row.setAttribute("data-id", id);
    row.setAttribute("data-event", event);
    row.setAttribute("data-n", String(abs + 1));
    const gut = document.createElement("a");
    gut.className = "gut";
    gut.href = this.opts.linkBase + "?line=" + encodeURIComponent(id);
    gut.tabIndex = -1;
    gut.setAttribute("data-n", String(abs + 1));
    gut.setAttribute("aria-label", "Link to line " + (abs + 1));
    gut.title = "Copy a link to line " + (abs + 1);
    row.appendChild(gut);
    if (this.timestamps) {
      const ts = document.createElement("span");
      ts.className = "ts";
      const ms = idMs(id);
      ts.setAttribute("data-ts", fmtTime(ms, Date.now() - ms > 20 * 3600 * 1000));
      row.appendChild(ts);
    }
    if (event !== "message" && event !== "stdout" && event !== "stderr" && !META_EVENTS.has(event)) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.setAttribute("data-tag", event);
      row.appendChild(tag);
    }
    const tx = document.createElement("span");
    tx.className = "tx";
    const raw = st.rawText(abs);
    const hits = this.hitsFor(abs);
    if (!needsParse(raw) && hits.length === 0 && raw.length <= MAX_RENDER_CHARS) {
      tx.appendChild(document.createTextNode(raw));
    } else {
      const segs = needsParse(raw) ? parse(raw).segs : [{ t: raw, s: { f: 0, fg: -1, bg: -1 } }];
      renderAnsi(tx, segs, hits, MAX_RENDER_CHARS);
    }
    row.appendChild(tx);
    return row;
  }

  invalidate() {
    this.cache.clear();
    this.schedule();
  }

  updateCount() {
    const st = this.store;
    let t = st.length.toLocaleString() + (st.length === 1 ? " line" : " lines");
    if (st.dropped) t += " (" + st.dropped.toLocaleString() + " dropped)";
    setText(this.countEl, t);
  }

  // ---- scrolling, follow ----

  onScroll() {
    const st = this.output.scrollTop;
    if (this.progTarget !== null && Math.abs(st - this.progTarget) <= 1) {
      this.progTarget = null;
    } else {
      this.progTarget = null;
      const atBottom = st + this.output.clientHeight >= this.output.scrollHeight - ROW_H / 2;
      if (atBottom && !this.follow) this.setFollow(true, false);
      else if (!atBottom && this.follow) this.setFollow(false, false);
    }
    this.schedule();
  }

  setFollow(on, scroll) {
    this.follow = on;
    this.followBtn.setAttribute("aria-pressed", String(on));
    this.output.classList.toggle("following", on);
    if (on) {
      this.newSinceUnfollow = 0;
      if (scroll) {
        this.output.scrollTop = this.output.scrollHeight;
        this.progTarget = this.output.scrollTop;
      }
    }
    this.schedule();
  }

  scrollToIndex(abs) {
    this.updateSpacer();
    const m = this.metrics();
    const rel = abs - this.store.base;
    const target = (rel - (m.viewH / ROW_H) / 2 + 0.5) * m.k;
    this.setFollow(false, false);
    this.output.scrollTop = Math.max(0, Math.min(m.maxScroll, target));
    this.progTarget = this.output.scrollTop;
    this.schedule();
  }

  // ---- links to lines ----

  onClick(e) {
    const gut = e.target.closest && e.target.closest("a.gut");
    if (!gut) return;
    e.preventDefault();
    const row = gut.parentElement;
    const id = row.getAttribute("data-id");
    // origin + path only: a query on the page URL (say ?access_token=) is not copied
    const url = location.origin + location.pathname + this.opts.linkBase + "?line=" + encodeURIComponent(id);
    const n = row.getAttribute("data-n");
    const done = () => toast("Link to line " + n + " copied");
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(url).then(done, () => toast("Link to line " + n + ": " + url));
    } else {
      toast("Link to line " + n + ": " + url);
    }
    history.replaceState(null, "", this.opts.linkBase + "?line=" + encodeURIComponent(id));
    this.highlightId(id);
  }

  // Scroll to and highlight the line with this id (waits for it if not loaded yet).
  highlightId(id) {
    this.pendingLine = id;
    this.tryPendingLine();
  }

  tryPendingLine() {
    const id = this.pendingLine;
    if (!id) return;
    const abs = this.store.find(id);
    if (abs < 0 || this.store.id(abs) !== id) {
      // not (yet) here: wait while the replay has not passed it
      const last = this.store.lastId;
      if (last === null || this.store.isNew(id)) return;
      if (abs < 0) { this.pendingLine = null; toast("Line " + id + " is not in this output (trimmed?)", "error"); return; }
    }
    this.pendingLine = null;
    this.hlIndex = abs;
    this.cache.clear();
    this.scrollToIndex(abs);
  }

  // ---- timestamps ----

  setTimestamps(on) {
    this.timestamps = on;
    localStorage.setItem("pipecast.timestamps", on ? "1" : "0");
    this.tsBtn.setAttribute("aria-pressed", String(on));
    this.output.classList.toggle("with-ts", on);
    this.invalidate();
  }

  // ---- search ----

  onSearchInput() {
    clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(() => this.flushSearch(), 150);
  }

  flushSearch() {
    clearTimeout(this.searchTimer);
    this.searchTimer = null;
    const q = this.searchInput.value;
    if (q !== this.query) this.setQuery(q);
  }

  setQuery(q) {
    this.query = q;
    this.re = null;
    this.mLine = []; this.mStart = []; this.mEnd = [];
    this.cur = -1;
    clearTimeout(this.scanTimer);
    this.scanTimer = null;
    this.searchInput.removeAttribute("aria-invalid");
    if (q) {
      const rx = /^\/(.+)\/([imsu]*)$/.exec(q);
      try {
        this.re = rx ? new RegExp(rx[1], "g" + rx[2].replace(/g/g, "")) : new RegExp(q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gi");
      } catch (err) {
        this.searchInput.setAttribute("aria-invalid", "true");
        setText(this.searchCount, "bad regex");
        return;
      }
      this.scanTo = this.store.base;
      this.scan();
    } else {
      setText(this.searchCount, "");
    }
    this.invalidate();
  }

  // Re-scan from absolute index `from` (lines added or changed).
  scheduleScan(from) {
    if (from < this.scanTo) {
      // drop matches at or after `from`
      let k = this.mLine.length;
      while (k > 0 && this.mLine[k - 1] >= from) k--;
      this.mLine.length = k; this.mStart.length = k; this.mEnd.length = k;
      if (this.cur >= k) this.cur = k - 1;
      this.scanTo = from;
    }
    if (!this.scanTimer) this.scanTimer = setTimeout(() => this.scan(), 100);
  }

  // Scan in slices of ~25 ms so that typing and scrolling stay responsive.
  scan() {
    this.scanTimer = null;
    if (!this.re) return;
    const st = this.store;
    const re = this.re;
    const t0 = performance.now();
    let i = Math.max(this.scanTo, st.base);
    const end = st.end;
    const firstNew = this.mLine.length;
    while (i < end) {
      const text = st.plain(i);
      re.lastIndex = 0;
      let m;
      while ((m = re.exec(text)) !== null) {
        if (m[0].length === 0) { re.lastIndex++; continue; }
        this.mLine.push(i); this.mStart.push(m.index); this.mEnd.push(m.index + m[0].length);
      }
      i++;
      if ((i & 1023) === 0 && performance.now() - t0 > 25) break;
    }
    this.scanTo = i;
    // matches found in lines on screen need those rows rebuilt
    if (this.mLine.length > firstNew) {
      for (let k = firstNew; k < this.mLine.length; k++) this.cache.delete(this.mLine[k]);
      this.schedule();
    }
    this.updateSearchCount();
    if (i < end) this.scanTimer = setTimeout(() => this.scan(), 0);
  }

  updateSearchCount() {
    const n = this.mLine.length;
    setText(this.searchCount, this.cur >= 0 ? (this.cur + 1) + "/" + n : n + " matches");
  }

  // Matches in one line as [start, end, isCurrent] ranges.
  hitsFor(abs) {
    const ml = this.mLine;
    if (!this.re || ml.length === 0) return [];
    let lo = 0, hi = ml.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (ml[mid] < abs) lo = mid + 1; else hi = mid; }
    const out = [];
    for (let k = lo; k < ml.length && ml[k] === abs; k++) out.push([this.mStart[k], this.mEnd[k], k === this.cur]);
    return out;
  }

  step(dir) {
    // An explicit "next match" must not depend on how far the background scan got:
    // finish it now (bounded by the store's line cap).
    if (this.re && this.scanTo < this.store.end) {
      if (this.scanTimer) { clearTimeout(this.scanTimer); this.scanTimer = null; }
      while (this.re && this.scanTo < this.store.end) this.scan();
      if (this.scanTimer) { clearTimeout(this.scanTimer); this.scanTimer = null; }
    }
    const n = this.mLine.length;
    if (!this.re || n === 0) { this.updateSearchCount(); return; }
    const prev = this.cur;
    if (this.cur < 0) {
      // start from the line at the top of the view
      const m = this.metrics();
      const top = this.store.base + Math.floor(Math.min(this.output.scrollTop, m.maxScroll) / m.k);
      let k = 0;
      while (k < n && this.mLine[k] < top) k++;
      this.cur = dir > 0 ? (k < n ? k : 0) : (k > 0 ? k - 1 : n - 1);
    } else {
      this.cur = (this.cur + dir + n) % n;
    }
    if (prev >= 0) this.cache.delete(this.mLine[prev]);
    this.cache.delete(this.mLine[this.cur]);
    this.updateSearchCount();
    this.scrollToIndex(this.mLine[this.cur]);
  }

  focusSearch() {
    this.searchInput.focus();
    this.searchInput.select();
  }

  // ---- download ----

  download() {
    const st = this.store;
    const parts = [];
    for (let i = st.base; i < st.end; i++) parts.push(st.text(i), "\n");
    const blob = new Blob(parts, { type: "text/plain;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: this.channel.replace(/[^A-Za-z0-9._@-]/g, "_") + ".txt" });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // ---- test API ----

  lines() {
    const st = this.store;
    const out = new Array(st.length);
    for (let i = st.base; i < st.end; i++) out[i - st.base] = { id: st.id(i), event: st.event(i), text: st.text(i) };
    return out;
  }
}
