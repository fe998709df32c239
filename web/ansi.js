// ANSI escape handling for output lines: SGR (colours 16/256/truecolor, bold, dim, italic,
// underline, inverse, strike) becomes styled spans; every other escape sequence is removed;
// other control characters are shown as visible symbols. Output is DOM nodes built with
// createElement/createTextNode only: server text never goes through an HTML parser.

const ESC = 0x1b;

// Fast check: does the string need parsing at all (ESC, C0/C1 controls except TAB, DEL)?
// eslint-disable-next-line no-control-regex
const SPECIAL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
export function needsParse(s) {
  return SPECIAL.test(s);
}

// Style: a small integer bit set plus fg/bg colours. Colour encoding: -1 default,
// 0..255 palette index, >= 256: 256 + 0xRRGGBB (truecolor).
const BOLD = 1, DIM = 2, ITALIC = 4, UNDER = 8, INVERSE = 16, STRIKE = 32, HIDDEN = 64;

function newState() {
  return { f: 0, fg: -1, bg: -1 };
}

function sameStyle(a, b) {
  return a.f === b.f && a.fg === b.fg && a.bg === b.bg;
}

function copyState(s) {
  return { f: s.f, fg: s.fg, bg: s.bg };
}

// Read an extended colour (38/48/58) starting at params[i] (the 38 itself). Returns
// [colour or null, number of params consumed].
function extColour(params, i) {
  const mode = params[i + 1];
  if (mode === 5) {
    const n = params[i + 2];
    if (n === undefined) return [null, params.length - i];
    return [n >= 0 && n <= 255 ? n : null, 3];
  }
  if (mode === 2) {
    let r = params[i + 2], g = params[i + 3], b = params[i + 4];
    if (b === undefined) return [null, params.length - i];
    const ok = [r, g, b].every((v) => v >= 0 && v <= 255);
    return [ok ? 256 + ((r << 16) | (g << 8) | b) : null, 5];
  }
  return [null, 2];
}

// Apply one SGR parameter string ("1;31", "38;5;208", "38:2::10:20:30") to state s.
function applySgr(s, text) {
  if (text === "") { s.f = 0; s.fg = -1; s.bg = -1; return; }
  const groups = text.split(";");
  // Expand colon sub-parameters (ITU T.416) into a flat list understood by extColour.
  const params = [];
  for (const g of groups) {
    if (g.indexOf(":") >= 0) {
      const sub = g.split(":").map((x) => (x === "" ? 0 : parseInt(x, 10)));
      // 38:2:<colourspace>:r:g:b → drop the colour-space id
      if (sub[1] === 2 && sub.length >= 6) sub.splice(2, 1);
      for (const v of sub) params.push(v);
      params.push(NaN); // group boundary: extended colours never read past it
    } else {
      params.push(g === "" ? 0 : parseInt(g, 10));
    }
  }
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (Number.isNaN(p)) continue;
    if (p === 0) { s.f = 0; s.fg = -1; s.bg = -1; }
    else if (p === 1) s.f |= BOLD;
    else if (p === 2) s.f |= DIM;
    else if (p === 3) s.f |= ITALIC;
    else if (p === 4 || p === 21) s.f |= UNDER;
    else if (p === 7) s.f |= INVERSE;
    else if (p === 8) s.f |= HIDDEN;
    else if (p === 9) s.f |= STRIKE;
    else if (p === 22) s.f &= ~(BOLD | DIM);
    else if (p === 23) s.f &= ~ITALIC;
    else if (p === 24) s.f &= ~UNDER;
    else if (p === 27) s.f &= ~INVERSE;
    else if (p === 28) s.f &= ~HIDDEN;
    else if (p === 29) s.f &= ~STRIKE;
    else if (p >= 30 && p <= 37) s.fg = p - 30;
    else if (p === 39) s.fg = -1;
    else if (p >= 40 && p <= 47) s.bg = p - 40;
    else if (p === 49) s.bg = -1;
    else if (p >= 90 && p <= 97) s.fg = p - 90 + 8;
    else if (p >= 100 && p <= 107) s.bg = p - 100 + 8;
    else if (p === 38 || p === 48 || p === 58) {
      const [c, used] = extColour(params, i);
      if (c !== null) { if (p === 38) s.fg = c; else if (p === 48) s.bg = c; }
      i += used - 1;
    }
    // anything else (blink, fonts, frames, ...) is ignored
  }
}

// Control characters in caret notation (^G, ^[, ^?), C1 as <9B>: ASCII, so every font shows them.
function ctlPicture(code) {
  if (code === 0x7f) return "^?";
  if (code < 0x20) return "^" + String.fromCharCode(code + 64);
  return "<" + code.toString(16).toUpperCase() + ">"; // C1 controls
}

// Parse a line into segments [{t: text, s: state | null, c: "ctl" | undefined}].
// `plain` is the text as displayed (what search matches and highlights index into).
// A CR followed by more text starts the line over (a progress bar drawn with \r shows its
// last state); a trailing CR is dropped.
export function parse(str) {
  const segs = [];
  let st = newState();
  let cur = { t: "", s: copyState(st) };
  const flush = () => { if (cur.t !== "") segs.push(cur); };
  const setStyle = () => {
    if (!sameStyle(cur.s, st)) { flush(); cur = { t: "", s: copyState(st) }; }
  };
  const ctl = (text) => {
    flush();
    segs.push({ t: text, s: copyState(st), c: "ctl" });
    cur = { t: "", s: copyState(st) };
  };
  const n = str.length;
  let i = 0;
  let runStart = 0;
  const takeRun = (end) => { if (end > runStart) cur.t += str.slice(runStart, end); };
  while (i < n) {
    const c = str.charCodeAt(i);
    if (c >= 0x20 && c !== 0x7f && !(c >= 0x80 && c <= 0x9f)) { i++; continue; }
    if (c === 0x09) { i++; continue; } // TAB: kept, CSS tab-size renders it
    takeRun(i);
    if (c === ESC || c === 0x9b || c === 0x9d || c === 0x90 || c === 0x9e || c === 0x9f || c === 0x98) {
      // Introducer: ESC x, or 8-bit CSI/OSC/DCS/PM/APC/SOS
      let kind, j;
      if (c === ESC) {
        if (i + 1 >= n) { ctl("^["); i++; runStart = i; continue; }
        const d = str.charCodeAt(i + 1);
        kind = d === 0x5b ? "csi" : d === 0x5d ? "osc" : (d === 0x50 || d === 0x58 || d === 0x5e || d === 0x5f) ? "str" : "esc";
        j = i + 2;
        if (kind === "esc") {
          // ESC intermediates* final
          j = i + 1;
          while (j < n && str.charCodeAt(j) >= 0x20 && str.charCodeAt(j) <= 0x2f) j++;
          if (j < n && str.charCodeAt(j) >= 0x30 && str.charCodeAt(j) <= 0x7e) j++;
          else if (j === i + 1) { ctl("^["); i++; runStart = i; continue; }
          i = j; runStart = i; continue;
        }
      } else {
        kind = c === 0x9b ? "csi" : c === 0x9d ? "osc" : "str";
        j = i + 1;
      }
      if (kind === "csi") {
        const pStart = j;
        while (j < n && str.charCodeAt(j) >= 0x30 && str.charCodeAt(j) <= 0x3f) j++;
        const pEnd = j;
        while (j < n && str.charCodeAt(j) >= 0x20 && str.charCodeAt(j) <= 0x2f) j++;
        if (j < n && str.charCodeAt(j) >= 0x40 && str.charCodeAt(j) <= 0x7e) {
          const fin = str.charCodeAt(j);
          const params = str.slice(pStart, pEnd);
          if (fin === 0x6d && pEnd === j && !/[<=>?]/.test(params)) {
            applySgr(st, params);
            setStyle();
          }
          j++;
        }
        // incomplete CSI at end of line: dropped
        i = j; runStart = i; continue;
      }
      // OSC / DCS / SOS / PM / APC: up to BEL (OSC only) or ST (ESC \ or 0x9c); all removed
      while (j < n) {
        const e = str.charCodeAt(j);
        if (e === 0x07 && kind === "osc") { j++; break; }
        if (e === 0x9c) { j++; break; }
        if (e === ESC && j + 1 < n && str.charCodeAt(j + 1) === 0x5c) { j += 2; break; }
        j++;
      }
      i = j; runStart = i; continue;
    }
    if (c === 0x0d) { // CR
      if (i + 1 < n) {
        // more text follows: start the line over, keep the current style
        segs.length = 0;
        cur = { t: "", s: copyState(st) };
      }
      i++; runStart = i; continue;
    }
    if (c === 0x0a) { ctl("\u21b5"); i++; runStart = i; continue; } // newline inside an entry
    ctl(ctlPicture(c));
    i++; runStart = i;
  }
  takeRun(n);
  flush();
  let plain = "";
  for (const s of segs) plain += s.t;
  return { segs, plain };
}

// Text with every escape sequence removed (CR and other controls kept): what a download or
// the test API gives.
// eslint-disable-next-line no-control-regex
const STRIP = /\x1b\[[0-?]*[ -/]*[@-~]?|\x9b[0-?]*[ -/]*[@-~]?|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?|\x1b[ -/]*[0-~]|\x1b$/g;
export function strip(s) {
  if (s.indexOf("\x1b") < 0 && !/[\x90-\x9f]/.test(s)) return s;
  return s.replace(STRIP, "");
}

// xterm 256-colour palette entries 16..255 as "rgb(...)".
function paletteRgb(n) {
  if (n < 232) {
    n -= 16;
    const lv = [0, 95, 135, 175, 215, 255];
    return "rgb(" + lv[Math.floor(n / 36)] + "," + lv[Math.floor(n / 6) % 6] + "," + lv[n % 6] + ")";
  }
  const g = 8 + (n - 232) * 10;
  return "rgb(" + g + "," + g + "," + g + ")";
}

function colourCss(c) {
  if (c >= 256) {
    const v = c - 256;
    return "rgb(" + ((v >> 16) & 255) + "," + ((v >> 8) & 255) + "," + (v & 255) + ")";
  }
  return paletteRgb(c);
}

// Apply a segment's style to a span: classes for the 16 theme colours and attributes,
// inline colour (built from numbers only) for 256/truecolor.
function styleSpan(el, s, extra) {
  let fg = s.fg, bg = s.bg;
  let cls = extra || "";
  if (s.f & INVERSE) {
    const t = fg; fg = bg; bg = t;
    if (fg === -1) cls += " fgi";
    if (bg === -1) cls += " bgi";
  }
  if (s.f & BOLD) cls += " b";
  if (s.f & DIM) cls += " d";
  if (s.f & ITALIC) cls += " i";
  if (s.f & UNDER) cls += " u";
  if (s.f & STRIKE) cls += " s";
  if (s.f & HIDDEN) cls += " h";
  if (fg >= 0 && fg < 16) cls += " f" + fg;
  else if (fg >= 16) el.style.color = colourCss(fg);
  if (bg >= 0 && bg < 16) cls += " g" + bg;
  else if (bg >= 16) el.style.backgroundColor = colourCss(bg);
  cls = cls.trim();
  if (cls) el.className = cls;
}

function isPlainStyle(s) {
  return s.f === 0 && s.fg === -1 && s.bg === -1;
}

// Render segments into `parent`. `hits` is a sorted list of [start, end, isCurrent] ranges in
// the plain text to wrap in <mark>. `max` caps how many characters are rendered.
export function render(parent, segs, hits, max) {
  let pos = 0;
  let h = 0;
  const total = segs.reduce((a, s) => a + s.t.length, 0);
  for (const seg of segs) {
    if (pos >= max) break;
    let text = seg.t;
    if (pos + text.length > max) text = text.slice(0, max - pos);
    const plainStyle = isPlainStyle(seg.s) && !seg.c;
    let container;
    if (plainStyle) container = parent;
    else {
      container = document.createElement("span");
      styleSpan(container, seg.s, seg.c);
      parent.appendChild(container);
    }
    // split by highlight ranges
    let off = 0;
    while (off < text.length) {
      while (h < hits.length && hits[h][1] <= pos + off) h++;
      if (h >= hits.length || hits[h][0] >= pos + text.length) {
        container.appendChild(document.createTextNode(text.slice(off)));
        break;
      }
      const hs = Math.max(hits[h][0] - pos, off);
      if (hs > off) container.appendChild(document.createTextNode(text.slice(off, hs)));
      const he = Math.min(hits[h][1] - pos, text.length);
      const m = document.createElement("mark");
      m.className = hits[h][2] ? "hit cur" : "hit";
      m.appendChild(document.createTextNode(text.slice(hs, he)));
      container.appendChild(m);
      off = he;
    }
    pos += seg.t.length;
  }
  if (total > max) {
    const more = document.createElement("span");
    more.className = "more";
    more.appendChild(document.createTextNode(" \u2026 [" + (total - max) + " more characters; download to see all]"));
    parent.appendChild(more);
  }
}
