// In-memory lines of one view, in compact parallel arrays, bounded in count and characters.
// A line is one stream entry, or several when entries are marked partial (chunks of one line):
// partial entries are appended to the open line of their event, the next non-partial entry of
// that event ends it.

import { needsParse, parse, strip } from "./ansi.js";

// Stream ids "<ms>-<seq>": compare numerically (decimal, no leading zeros in Redis ids).
export function cmpId(a, b) {
  const da = a.indexOf("-"), db = b.indexOf("-");
  const c = cmpNum(a.slice(0, da), b.slice(0, db));
  return c !== 0 ? c : cmpNum(a.slice(da + 1), b.slice(db + 1));
}

function cmpNum(x, y) {
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}

export function idMs(id) {
  return Number(id.slice(0, id.indexOf("-")));
}

export const DEFAULT_MAX_LINES = 1000000;
export const DEFAULT_MAX_CHARS = 256 * 1024 * 1024;

export class LineStore {
  constructor(maxLines = DEFAULT_MAX_LINES, maxChars = DEFAULT_MAX_CHARS) {
    this.maxLines = maxLines;
    this.maxChars = maxChars;
    this.base = 0; // absolute index (0-based) of ids[0]; line number = absolute index + 1
    this.ids = []; // id of the entry that started the line
    this.evs = []; // index into evNames
    this.raw = []; // data as received (chunks joined), ANSI included
    this.disp = []; // cached parse result's plain text, or undefined (not parsed / not needed)
    this.evNames = [];
    this.evIndex = new Map();
    this.open = new Map(); // event index -> absolute index of its unfinished line
    this.chars = 0;
    this.dropped = 0; // lines dropped from the front (memory cap)
    this.lastId = null;
    this.changedFrom = Infinity; // lowest absolute index added or modified since takeChanges()
  }

  get length() { return this.ids.length; }
  get end() { return this.base + this.ids.length; } // absolute index after the last line

  eventIndex(name) {
    let i = this.evIndex.get(name);
    if (i === undefined) {
      i = this.evNames.length;
      this.evNames.push(name);
      this.evIndex.set(name, i);
    }
    return i;
  }

  // Returns false when the id was already seen (duplicate after a reconnect).
  isNew(id) {
    return this.lastId === null || cmpId(id, this.lastId) > 0;
  }

  // Add one entry. partial: this entry does not end its line.
  add(id, event, data, partial) {
    this.lastId = id;
    const ev = this.eventIndex(event);
    const openAt = this.open.get(ev);
    if (openAt !== undefined && openAt >= this.base) {
      const k = openAt - this.base;
      this.raw[k] += data;
      this.disp[k] = undefined;
      this.chars += data.length;
      if (!partial) this.open.delete(ev);
      if (openAt < this.changedFrom) this.changedFrom = openAt;
    } else {
      const abs = this.end;
      this.ids.push(id);
      this.evs.push(ev);
      this.raw.push(data);
      this.disp.push(undefined);
      this.chars += data.length;
      if (partial) this.open.set(ev, abs);
      else this.open.delete(ev);
      if (abs < this.changedFrom) this.changedFrom = abs;
    }
    this.trim();
  }

  trim() {
    if (this.ids.length <= this.maxLines && this.chars <= this.maxChars) return 0;
    // drop in batches (10% of the cap) so that the arrays are not shifted for every line
    let k = Math.max(this.ids.length - this.maxLines, 0);
    if (k > 0) k = Math.min(this.ids.length, k + Math.floor(this.maxLines / 10));
    if (this.chars > this.maxChars) {
      let c = this.chars, j = 0;
      const goal = this.maxChars * 0.9;
      while (j < this.raw.length && c > goal) { c -= this.raw[j].length; j++; }
      k = Math.max(k, j);
    }
    if (k <= 0) return 0;
    for (let j = 0; j < k; j++) this.chars -= this.raw[j].length;
    this.ids.splice(0, k);
    this.evs.splice(0, k);
    this.raw.splice(0, k);
    this.disp.splice(0, k);
    this.base += k;
    this.dropped += k;
    for (const [ev, at] of this.open) if (at < this.base) this.open.delete(ev);
    if (this.changedFrom < this.base) this.changedFrom = this.base;
    if (this.onDrop) this.onDrop(k);
    return k;
  }

  takeChanges() {
    const c = this.changedFrom;
    this.changedFrom = Infinity;
    return c;
  }

  // Accessors by absolute index
  id(abs) { return this.ids[abs - this.base]; }
  event(abs) { return this.evNames[this.evs[abs - this.base]]; }
  rawText(abs) { return this.raw[abs - this.base]; }

  // Displayed text (ANSI applied, controls as symbols): what search matches.
  plain(abs) {
    const k = abs - this.base;
    const r = this.raw[k];
    if (!needsParse(r)) return r;
    let d = this.disp[k];
    if (d === undefined) { d = parse(r).plain; this.disp[k] = d; }
    return d;
  }

  // Text without escape sequences (download, test API).
  text(abs) { return strip(this.raw[abs - this.base]); }

  // Absolute index of the line that contains entry `id` (the line started at or before it).
  find(id) {
    let lo = 0, hi = this.ids.length - 1, ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const c = cmpId(this.ids[mid], id);
      if (c === 0) return this.base + mid;
      if (c < 0) { ans = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return ans < 0 ? -1 : this.base + ans;
  }
}
