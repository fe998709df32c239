// Small DOM helpers. Text is always set with textContent / text nodes, never parsed as HTML.

// h("div", {class: "x", "data-testid": "y", onclick: fn}, child, "text", ...)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k === "hidden") el.hidden = !!v;
      else if (k === "disabled") el.disabled = !!v;
      else if (k === "value") el.value = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children) append(el, c);
  return el;
}

function append(el, c) {
  if (c === null || c === undefined || c === false) return;
  if (Array.isArray(c)) { for (const x of c) append(el, x); return; }
  el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
}

export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return "";
  if (ms < 1000) return Math.round(ms) + " ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
  const hr = Math.floor(m / 60);
  return hr + " h " + (m % 60) + " min";
}

export function fmtAgo(ms, now = Date.now()) {
  if (!ms) return "";
  const d = Math.max(0, now - ms);
  if (d < 5000) return "just now";
  if (d < 60000) return Math.floor(d / 1000) + " s ago";
  if (d < 3600000) return Math.floor(d / 60000) + " min ago";
  if (d < 86400000) return Math.floor(d / 3600000) + " h ago";
  return Math.floor(d / 86400000) + " d ago";
}

function pad(n, w = 2) {
  return String(n).padStart(w, "0");
}

export function fmtTime(ms, withDate) {
  const d = new Date(ms);
  const t = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  return withDate ? d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + t : t;
}

export function fmtDateTime(ms) {
  return ms ? fmtTime(ms, true) : "";
}

// Quote an argv for display (shell-like, for reading only).
export function argvText(argv) {
  if (!Array.isArray(argv)) return "";
  return argv.map((a) => {
    const s = String(a);
    return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'";
  }).join(" ");
}

// A status message at the bottom of the page (role=status), for API errors and confirmations.
let toastTimer = null;
export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 8000 : 3000);
}

export function isTyping(target) {
  if (!target || !target.tagName) return false;
  const t = target.tagName;
  return t === "INPUT" || t === "TEXTAREA" || t === "SELECT" || target.isContentEditable;
}
