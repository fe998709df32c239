// pipecast web UI: hash routing (#/, #/channel/<name>, #/job/<id>), the home page (channels,
// jobs, start a job), channel and job views, theme, keyboard shortcuts, and the test API
// window.pipecast. All server text goes into the page as text (textContent / text nodes).

import * as api from "./rest.js";
import { initAuth, onTokenChange } from "./auth.js";
import { OutputView } from "./view.js";
import { h, setText, fmtAgo, fmtDuration, fmtDateTime, argvText, toast, isTyping } from "./util.js";

const POLL_MS = 2000;
const TEMPLATES_MS = 10000;
const ENDED = new Set(["exited", "killed", "timeout", "failed", "lost"]);
const CHANNEL_RE = /^[A-Za-z0-9._:@-]{1,200}$/;

const main = document.getElementById("main");
const crumb = document.getElementById("crumb");
const connEl = document.getElementById("conn-state");
const connDetail = document.getElementById("conn-detail");
const connBox = document.getElementById("conn");

let current = null; // { kind, key, view (object with unmount), outview? }
let connState = "connecting";

function setConn(state, n) {
  connState = state;
  setText(connEl, state);
  connBox.dataset.state = state;
  setText(connDetail, state === "replaying" && n ? n.toLocaleString() : "");
  connBox.title = state === "replaying" ? "replaying " + (n || 0) + " missed lines" : "connection: " + state;
}

// ---------------------------------------------------------------- routing

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch (err) { return s; }
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const qi = raw.indexOf("?");
  const path = qi >= 0 ? raw.slice(0, qi) : raw;
  const query = new URLSearchParams(qi >= 0 ? raw.slice(qi + 1) : "");
  const parts = path.split("/").filter(Boolean).map(safeDecode);
  const line = query.get("line");
  if (parts[0] === "channel" && parts[1]) return { kind: "channel", name: parts[1], key: "channel/" + parts[1], line };
  if (parts[0] === "job" && parts[1]) return { kind: "job", id: parts[1], key: "job/" + parts[1], line };
  return { kind: "home", key: "home" };
}

export function channelHref(name) {
  return "#/channel/" + (CHANNEL_RE.test(name) ? name : encodeURIComponent(name));
}

export function jobHref(id) {
  return "#/job/" + encodeURIComponent(id);
}

function route() {
  const r = parseHash();
  if (current && current.key === r.key) {
    if (r.line && current.outview) current.outview.highlightId(r.line);
    return;
  }
  if (current) current.unmount();
  main.replaceChildren();
  crumb.replaceChildren();
  if (r.kind === "channel") current = mountChannel(r);
  else if (r.kind === "job") current = mountJob(r);
  else current = mountHome();
  current.key = r.key;
}

// ---------------------------------------------------------------- lists

// Keyed update of a list: rows are reused (focus and scroll are kept), reordered only when
// the order changed.
function syncList(container, items, keyOf, build, update) {
  const old = new Map();
  for (const el of container.children) if (el.dataset.key !== undefined) old.set(el.dataset.key, el);
  const want = [];
  for (const it of items) {
    const k = keyOf(it);
    let el = old.get(k);
    if (!el) { el = build(it); el.dataset.key = k; }
    update(el, it);
    want.push(el);
  }
  const kids = Array.from(container.children);
  let same = kids.length === want.length;
  for (let i = 0; same && i < want.length; i++) if (kids[i] !== want[i]) same = false;
  if (!same) container.replaceChildren(...want);
}

function cell(cls, label) {
  return h("span", { class: "c " + cls, "data-label": label });
}

function channelRow(ch) {
  return h("a", { class: "row", "data-testid": "channel-row", "data-channel": ch.name, href: channelHref(ch.name) },
    cell("name", "channel"), cell("num", "entries"), cell("ago", "last activity"));
}

function updateChannelRow(el, ch) {
  const [name, num, ago] = el.children;
  setText(name, ch.name);
  setText(num, (ch.length ?? 0).toLocaleString());
  setText(ago, fmtAgo(ch.last_activity_ms));
  ago.title = fmtDateTime(ch.last_activity_ms);
}

function jobRow(job) {
  return h("a", { class: "row", "data-testid": "job-row", "data-job": job.id, href: jobHref(job.id) },
    cell("status", "status"), cell("id mono", "job"), cell("what", "command"), cell("runner", "runner"),
    cell("code num", "exit"), cell("dur num", "duration"), cell("ago", "created"));
}

function jobWhat(job) {
  return job.template ? job.template + (job.argv ? "  \u2014  " + argvText(job.argv) : "") : argvText(job.argv);
}

function jobDuration(job, now) {
  if (job.duration_ms !== null && job.duration_ms !== undefined) return job.duration_ms;
  if (job.started_ms && !ENDED.has(job.status)) return now - job.started_ms;
  return null;
}

function exitText(job) {
  if (job.code !== null && job.code !== undefined) return String(job.code);
  if (job.signal !== null && job.signal !== undefined) return "signal " + job.signal;
  return "";
}

function updateJobRow(el, job) {
  const now = Date.now();
  const [status, id, what, runner, code, dur, ago] = el.children;
  setText(status, job.status || "");
  status.dataset.status = job.status || "";
  setText(id, job.id);
  setText(what, jobWhat(job));
  what.title = argvText(job.argv);
  setText(runner, job.runner || "");
  setText(code, exitText(job));
  setText(dur, fmtDuration(jobDuration(job, now)));
  setText(ago, fmtAgo(job.created_ms, now));
  ago.title = fmtDateTime(job.created_ms);
}

function filterBox(testid, label, onInput) {
  const input = h("input", {
    type: "search", "data-testid": testid, placeholder: "Filter", "aria-label": label,
    autocomplete: "off", spellcheck: "false", oninput: onInput,
    onkeydown: (e) => { if (e.key === "Escape" && input.value) { e.preventDefault(); input.value = ""; onInput(); } },
  });
  return input;
}

function matches(filter, ...fields) {
  if (!filter) return true;
  const f = filter.toLowerCase();
  return fields.some((x) => x !== null && x !== undefined && String(x).toLowerCase().includes(f));
}

// ---------------------------------------------------------------- start-job form

// A runner's pattern is a POSIX extended regex matched against the whole value. The HTML
// pattern attribute is compiled with the "v" flag, where a bracket expression such as
// [A-Za-z0-9_./-] is a syntax error (the browser then logs an error and ignores it). Rewrite
// bracket expressions with every punctuation character escaped (and POSIX semantics: a
// backslash inside brackets is literal, [:alpha:] classes expanded). null: not expressible.
const POSIX_CLASSES = {
  alnum: "A-Za-z0-9", alpha: "A-Za-z", digit: "0-9", lower: "a-z", upper: "A-Z", xdigit: "0-9A-Fa-f",
  space: " \\t\\n\\r\\f\\v", blank: " \\t", cntrl: "\\x00-\\x1f\\x7f",
  punct: "\\!-\\/\\:-\\@\\[-\\`\\{-\\~", print: " -\\~", graph: "\\!-\\~",
};
function escClassChar(c) {
  return /[A-Za-z0-9_\s"']/.test(c) || c.charCodeAt(0) > 127 ? c : "\\" + c;
}
export function htmlPattern(posix) {
  let out = "";
  let i = 0;
  const n = posix.length;
  while (i < n) {
    const c = posix[i];
    if (c === "\\" && i + 1 < n) { out += posix.slice(i, i + 2); i += 2; continue; }
    if (c !== "[") { out += c; i++; continue; }
    // bracket expression
    let j = i + 1;
    let cls = "[";
    if (posix[j] === "^") { cls += "^"; j++; }
    const items = [];
    let first = true;
    while (j < n && (posix[j] !== "]" || first)) {
      first = false;
      if (posix[j] === "[" && posix[j + 1] === ":") {
        const e = posix.indexOf(":]", j + 2);
        if (e < 0) return null;
        const name = posix.slice(j + 2, e);
        if (!POSIX_CLASSES[name]) return null;
        items.push({ raw: POSIX_CLASSES[name] });
        j = e + 2;
        continue;
      }
      items.push({ ch: posix[j] });
      j++;
    }
    if (j >= n) return null; // unterminated
    for (let k = 0; k < items.length; k++) {
      const it = items[k];
      if (it.raw) { cls += it.raw; continue; }
      const next = items[k + 1], after = items[k + 2];
      if (next && next.ch === "-" && after && after.ch !== undefined) {
        cls += escClassChar(it.ch) + "-" + escClassChar(after.ch);
        k += 2;
      } else {
        cls += escClassChar(it.ch);
      }
    }
    out += cls + "]";
    i = j + 1;
  }
  try { new RegExp("^(?:" + out + ")$", "v"); } catch (err) { return null; }
  return out;
}

function paramInput(name, p) {
  const type = p.type || "string";
  const attrs = { "data-testid": "param-" + name, name, autocomplete: "off", spellcheck: "false" };
  let input;
  if (type === "bool") {
    input = h("input", { ...attrs, type: "checkbox" });
    input.checked = p.default === true || p.default === "true";
  } else if (type === "int") {
    input = h("input", { ...attrs, type: "number", step: "1", inputmode: "numeric" });
    if (p.min !== undefined) input.min = String(p.min);
    if (p.max !== undefined) input.max = String(p.max);
  } else {
    input = h("input", { ...attrs, type: "text" });
    const html = typeof p.pattern === "string" ? htmlPattern(p.pattern) : null;
    if (html !== null) input.setAttribute("pattern", html);
    if (typeof p.pattern === "string") input.title = "must match " + p.pattern;
  }
  if (type !== "bool" && p.default !== undefined && p.default !== null) input.value = String(p.default);
  if (p.required) input.required = true;
  const help = [type, p.pattern ? "pattern " + p.pattern : "", p.min !== undefined ? "min " + p.min : "",
    p.max !== undefined ? "max " + p.max : "", p.required ? "required" : ""].filter(Boolean).join(", ");
  return h("label", { class: "field" + (type === "bool" ? " check" : "") },
    h("span", { class: "lbl" }, name + (p.required ? " *" : "")),
    input,
    h("span", { class: "help" }, (p.description ? p.description + " \u2014 " : "") + help));
}

function startForm() {
  let templates = {};
  let sig = "";
  const select = h("select", { "data-testid": "template-select", "aria-label": "Template", onchange: () => buildParams() });
  const desc = h("p", { class: "desc" });
  const params = h("div", { class: "params" });
  const channel = h("input", {
    type: "text", "data-testid": "job-channel-input", placeholder: "default: job:<id>", pattern: "[A-Za-z0-9._:@\\-]{1,200}",
    autocomplete: "off", spellcheck: "false", title: "1-200 of A-Z a-z 0-9 . _ : @ -",
  });
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "start-job-error" });
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "start-job" }, "Start job");
  const form = h("form", { class: "startform", onsubmit: (e) => onSubmit(e) },
    h("label", { class: "field" }, h("span", { class: "lbl" }, "Template"), select),
    desc, params,
    h("label", { class: "field" }, h("span", { class: "lbl" }, "Channel (optional)"), channel),
    h("div", { class: "actions" }, submit), error);

  let builtFor = null;
  function buildParams() {
    const name = select.value;
    const t = templates[name];
    builtFor = name + "\u0000" + JSON.stringify(t ? t.params || {} : {});
    setText(desc, t && t.description ? t.description : "");
    const p = (t && t.params) || {};
    params.replaceChildren(...Object.keys(p).map((k) => paramInput(k, p[k] || {})));
    setText(error, "");
  }

  async function refresh() {
    let t;
    try { t = await api.listTemplates(); } catch (err) { return; }
    const s = JSON.stringify(t);
    if (s === sig) return;
    sig = s;
    templates = t;
    const names = Object.keys(t).sort();
    const sel = select.value;
    if (names.join("\u0000") !== Array.from(select.options).map((o) => o.value).join("\u0000")) {
      select.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
      if (names.includes(sel)) select.value = sel;
    }
    const want = select.value + "\u0000" + JSON.stringify(t[select.value] ? t[select.value].params || {} : {});
    if (want !== builtFor) buildParams();
    submit.disabled = names.length === 0;
    if (names.length === 0) setText(desc, "No live runner offers templates (start pipecast-runner --config FILE).");
  }

  async function onSubmit(e) {
    e.preventDefault();
    if (!form.reportValidity()) return;
    const name = select.value;
    const t = templates[name];
    if (!t) return;
    const args = {};
    for (const input of params.querySelectorAll("input")) {
      const p = (t.params || {})[input.name] || {};
      if (input.type === "checkbox") args[input.name] = input.checked ? "true" : "false";
      else if (input.value !== "" || p.required) args[input.name] = input.value;
    }
    const spec = { template: name, args };
    if (channel.value) spec.channel = channel.value;
    submit.disabled = true;
    setText(error, "");
    try {
      const r = await api.startJob(spec);
      toast("Job " + r.id + " queued");
      location.hash = jobHref(r.id);
    } catch (err) {
      setText(error, "Could not start the job: " + err.message);
    } finally {
      submit.disabled = false;
    }
  }

  return { el: form, refresh };
}

// ---------------------------------------------------------------- home

function mountHome() {
  setConn("connecting");
  document.title = "pipecast";
  let channels = [];
  let jobs = [];
  let alive = true;
  let pollTimer = null;
  let tplTimer = null;

  const chFilter = filterBox("channel-filter", "Filter channels", () => renderChannels());
  const jobFilter = filterBox("job-filter", "Filter jobs", () => renderJobs());
  const chList = h("div", { class: "list channels", "data-testid": "channel-list", role: "list" });
  const jobList = h("div", { class: "list jobs", "data-testid": "job-list", role: "list" });
  const chEmpty = h("p", { class: "empty-list", hidden: true });
  const jobEmpty = h("p", { class: "empty-list", hidden: true });
  const form = startForm();

  const el = h("div", { class: "home" },
    h("section", { class: "panel start", "aria-labelledby": "h-start" },
      h("h2", { id: "h-start" }, "Start a job"), form.el),
    h("section", { class: "panel chans", "aria-labelledby": "h-ch" },
      h("div", { class: "panel-head" }, h("h2", { id: "h-ch" }, "Channels"), chFilter),
      h("div", { class: "thead ch" }, h("span", null, "channel"), h("span", { class: "num" }, "entries"), h("span", null, "last activity")),
      chList, chEmpty),
    h("section", { class: "panel jobsp", "aria-labelledby": "h-jobs" },
      h("div", { class: "panel-head" }, h("h2", { id: "h-jobs" }, "Jobs"), jobFilter),
      h("div", { class: "thead jb" }, h("span", null, "status"), h("span", null, "job"), h("span", null, "command"),
        h("span", null, "runner"), h("span", { class: "num" }, "exit"), h("span", { class: "num" }, "duration"), h("span", null, "created")),
      jobList, jobEmpty));
  main.appendChild(el);

  function renderChannels() {
    const f = chFilter.value.trim();
    const items = channels.filter((c) => matches(f, c.name)).sort((a, b) => (b.last_activity_ms || 0) - (a.last_activity_ms || 0));
    syncList(chList, items, (c) => c.name, channelRow, updateChannelRow);
    chEmpty.hidden = items.length > 0;
    setText(chEmpty, channels.length ? "No channel matches the filter." : "No channels yet. Publish one: seq 1 100 | pipecast pipe demo");
  }

  function renderJobs() {
    const f = jobFilter.value.trim();
    const items = jobs.filter((j) => matches(f, j.id, j.status, j.template, argvText(j.argv), j.runner, j.channel, exitText(j)));
    syncList(jobList, items, (j) => j.id, jobRow, updateJobRow);
    jobEmpty.hidden = items.length > 0;
    setText(jobEmpty, jobs.length ? "No job matches the filter." : "No jobs yet.");
  }

  async function poll() {
    if (!alive) return;
    try {
      const [c, j] = await Promise.all([api.listChannels(), api.listJobs()]);
      if (!alive) return;
      channels = c; jobs = j;
      renderChannels(); renderJobs();
      setConn("live");
    } catch (err) {
      if (!alive) return;
      setConn("reconnecting");
    }
    if (alive) pollTimer = setTimeout(poll, POLL_MS);
  }
  async function pollTemplates() {
    if (!alive) return;
    await form.refresh();
    if (alive) tplTimer = setTimeout(pollTemplates, TEMPLATES_MS);
  }
  poll();
  pollTemplates();
  return {
    kind: "home",
    focusSearch: () => chFilter.focus(),
    unmount() { alive = false; clearTimeout(pollTimer); clearTimeout(tplTimer); },
  };
}

// ---------------------------------------------------------------- channel view

function crumbs(...items) {
  crumb.replaceChildren(h("a", { href: "#/" }, "home"), ...items.flatMap((x) => [h("span", { class: "sep", "aria-hidden": "true" }, "/"), x]));
}

function makeOutput(channel, linkBase, onEvent) {
  const ov = new OutputView({ channel, linkBase, onState: (s, n) => setConn(s, n), onEvent });
  return ov;
}

function mountChannel(r) {
  setConn("connecting");
  document.title = r.name + " \u2014 pipecast";
  crumbs(h("span", { class: "cur" }, "channel"), h("span", { class: "cur mono" }, r.name));
  const ov = makeOutput(r.name, channelHref(r.name));
  const info = h("span", { class: "info" });
  main.appendChild(h("div", { class: "chanview" },
    h("div", { class: "viewhead" }, h("h1", { class: "mono" }, r.name), info), ov.el));
  ov.start();
  if (r.line) ov.highlightId(r.line);
  return {
    kind: "channel", outview: ov,
    focusSearch: () => ov.focusSearch(),
    unmount() { ov.destroy(); },
  };
}

// ---------------------------------------------------------------- job view

function mountJob(r) {
  setConn("connecting");
  document.title = "job " + r.id + " \u2014 pipecast";
  crumbs(h("span", { class: "cur" }, "job"), h("span", { class: "cur mono" }, r.id));
  let alive = true;
  let job = null;
  let ov = null;
  let pollTimer = null;
  let tick = null;
  const self = { kind: "job", outview: null, jobId: r.id };

  const status = h("span", { class: "status", "data-testid": "job-status" }, "");
  const exitLabel = h("span", { class: "exit-label" }, "exit code");
  const exitCode = h("span", { class: "exit-code", "data-testid": "job-exit-code" });
  const facts = h("dl", { class: "facts" });
  const durEl = h("span");
  let factsSig = "";
  const stdinInput = h("input", {
    type: "text", "data-testid": "stdin-input", placeholder: "Type a line for stdin, Enter sends it", "aria-label": "stdin",
    autocomplete: "off", spellcheck: "false",
  });
  const sendBtn = h("button", { type: "submit", "data-testid": "stdin-send" }, "Send");
  const eofBtn = h("button", { type: "button", "data-testid": "stdin-eof", title: "Close the job's stdin", onclick: () => eof() }, "EOF");
  const killBtn = h("button", { type: "button", class: "danger", "data-testid": "kill-job", onclick: () => kill() }, "Kill");
  const stdinForm = h("form", { class: "stdin", onsubmit: (e) => { e.preventDefault(); send(); } }, stdinInput, sendBtn, eofBtn);
  const msg = h("p", { class: "jobmsg", role: "status" });
  const head = h("section", { class: "jobhead", "aria-label": "Job" },
    h("div", { class: "jobtitle" },
      h("h1", null, "Job ", h("span", { class: "mono" }, r.id)),
      status,
      h("span", { class: "exit" }, exitLabel, " ", exitCode)),
    facts,
    h("div", { class: "controls" }, stdinForm, killBtn),
    msg);
  const wrap = h("div", { class: "jobview" }, head);
  main.appendChild(wrap);

  function fact(k, v, cls) {
    return h("div", { class: "fact " + (cls || "") }, h("dt", null, k), h("dd", null, v));
  }

  function show() {
    if (!job) return;
    const st = job.status || "";
    setText(status, st);
    status.dataset.status = st;
    const ended = ENDED.has(st);
    if (job.code !== null && job.code !== undefined) { setText(exitLabel, "exit code"); setText(exitCode, String(job.code)); }
    else if (job.signal !== null && job.signal !== undefined) { setText(exitLabel, "signal"); setText(exitCode, String(job.signal)); }
    else { setText(exitLabel, "exit code"); setText(exitCode, ""); }
    exitCode.dataset.ok = job.code === 0 ? "1" : ended ? "0" : "";
    const sig = JSON.stringify([job.argv, job.template, job.channel, job.runner, job.pid, job.created_ms, job.reason, job.error, job.attempt]);
    if (sig !== factsSig) {
      factsSig = sig;
      const chLink = h("a", { href: channelHref(job.channel || "") }, job.channel || "");
      const items = [
        fact("command", argvText(job.argv) || "(not started yet)", "cmd mono"),
        job.template ? fact("template", job.template) : [],
        fact("channel", chLink, "mono"),
        fact("runner", job.runner ? job.runner + (job.pid ? "  (pid " + job.pid + ")" : "") : "\u2014"),
        fact("created", fmtDateTime(job.created_ms)),
        fact("duration", durEl),
        job.reason ? fact("reason", job.reason + (job.error ? ": " + job.error : "")) : [],
        job.attempt > 1 ? fact("attempt", String(job.attempt)) : [],
      ];
      facts.replaceChildren(...items.flat());
    }
    setText(durEl, fmtDuration(jobDuration(job, Date.now())) || "\u2014");
    killBtn.disabled = ended;
    stdinInput.disabled = ended;
    sendBtn.disabled = ended;
    eofBtn.disabled = ended;
  }

  async function load() {
    if (!alive) return;
    clearTimeout(pollTimer);
    try {
      job = await api.getJob(r.id);
      if (!alive) return;
      show();
      if (!ov && job.channel) {
        ov = makeOutput(job.channel, jobHref(r.id), onEvent);
        self.outview = ov;
        wrap.appendChild(ov.el);
        ov.start();
        if (r.line) ov.highlightId(r.line);
      }
      if (!ENDED.has(job.status)) pollTimer = setTimeout(load, POLL_MS);
    } catch (err) {
      if (!alive) return;
      if (err.status === 404) {
        setText(msg, "No job " + r.id + " (unknown, or expired).");
        setText(status, "unknown");
        setConn("live");
        return;
      }
      if (!ov) setConn("reconnecting");
      pollTimer = setTimeout(load, POLL_MS);
    }
  }

  function onEvent(event, data) {
    if (event === "start" || event === "exit" || event === "restart") {
      if (event === "exit" && job && !ENDED.has(job.status)) {
        setText(msg, "");
      }
      // the job hash is updated right after the event: ask again shortly
      setTimeout(load, 100);
      setTimeout(load, 600);
    }
  }

  // stdin: a job that is still queued answers 409 (keep trying until it runs); a full stdin
  // buffer answers 429 with nothing taken (send the same bytes again once the job has read).
  async function post(text, isEof) {
    for (let attempt = 0; ; attempt++) {
      try {
        await api.sendStdin(r.id, text, isEof);
        return true;
      } catch (err) {
        if (err.status === 429 && attempt < 120) {
          await new Promise((res) => setTimeout(res, Math.min(1000, 50 * (attempt + 1))));
          continue;
        }
        if (err.status === 409 && attempt < 40) {
          try { job = await api.getJob(r.id); show(); } catch (e2) { /* keep trying */ }
          if (job && job.status === "queued") {
            await new Promise((res) => setTimeout(res, 250));
            continue;
          }
        }
        toast((isEof ? "EOF" : "stdin") + ": " + err.message, "error");
        return false;
      }
    }
  }

  async function send() {
    const text = stdinInput.value + "\n";
    stdinInput.value = "";
    if (await post(text, false)) setText(msg, "");
  }

  async function eof() {
    if (await post("", true)) toast("stdin closed (EOF sent)");
  }

  async function kill() {
    killBtn.disabled = true;
    try {
      await api.killJob(r.id);
      toast("Kill sent");
      setTimeout(load, 300);
    } catch (err) {
      toast("kill: " + err.message, "error");
      killBtn.disabled = false;
      load();
    }
  }

  tick = setInterval(() => { if (job && !ENDED.has(job.status)) show(); }, 1000);
  load();
  self.focusSearch = () => { if (ov) ov.focusSearch(); };
  self.unmount = () => { alive = false; clearTimeout(pollTimer); clearInterval(tick); if (ov) ov.destroy(); };
  return self;
}

// ---------------------------------------------------------------- theme

const themeBtn = document.getElementById("theme-toggle");
const darkMq = window.matchMedia("(prefers-color-scheme: dark)");

function effectiveTheme() {
  const t = localStorage.getItem("pipecast.theme");
  return t === "dark" || t === "light" ? t : darkMq.matches ? "dark" : "light";
}

function applyTheme() {
  const t = localStorage.getItem("pipecast.theme");
  if (t === "dark" || t === "light") document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
  const eff = effectiveTheme();
  setText(themeBtn, eff === "dark" ? "\u2600 Light" : "\u263e Dark");
  themeBtn.setAttribute("aria-label", "Switch to " + (eff === "dark" ? "light" : "dark") + " theme");
  themeBtn.dataset.theme = eff;
}

themeBtn.addEventListener("click", () => {
  localStorage.setItem("pipecast.theme", effectiveTheme() === "dark" ? "light" : "dark");
  applyTheme();
});
darkMq.addEventListener("change", applyTheme);
applyTheme();

// ---------------------------------------------------------------- keyboard

document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/" && !isTyping(e.target)) {
    if (current && current.focusSearch) { e.preventDefault(); current.focusSearch(); }
  } else if (e.key === "Escape" && !isTyping(e.target)) {
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  }
});

// ---------------------------------------------------------------- test API

window.pipecast = {
  lines: () => (current && current.outview ? current.outview.lines() : []),
  lineCount: () => (current && current.outview ? current.outview.store.length : 0),
  connState: () => connState,
  lastEventId: () => (current && current.outview ? current.outview.store.lastId : null),
  jobId: () => (current && current.kind === "job" ? current.jobId : null),
};

// "Forget token": the open streams and polls still use the old token; start the view again
// without it (the gateway then asks for one)
initAuth();
onTokenChange((why) => {
  if (why !== "forget") return;
  if (current) current.unmount();
  current = null;
  route();
});

window.addEventListener("hashchange", route);
route();
