// Access tokens, for a gateway started with --tokens FILE.
//
// - The token is kept in sessionStorage ("pipecast.token"): this tab only, gone when the tab is
//   closed; never in the URL of the page, a link or a download (see README.md).
// - fetch() sends it as "Authorization: Bearer <token>" (authHeaders); EventSource cannot send
//   headers, so its URL gets "access_token=<token>" (withAccessToken).
// - A request answered 401 (no token, or a token the gateway does not know) or 403 with
//   error="insufficient_scope" waits in needToken(): the token form (data-testid="token-form")
//   says why (and which scope the gateway asked for), and every waiting request is sent again
//   once the user gave a token. Nothing is sent while the form waits: a wrong token costs one
//   retry per submit, never a loop. Cancel (scope refusals only) fails the waiting requests with
//   the gateway's message.
// - Without --tokens the gateway never answers 401/403-scope: no form, no extra request, no
//   header (there is no token).

import { h, setText } from "./util.js";

const KEY = "pipecast.token";
const TOKEN_RE = /^[\x21-\x7e]{16,256}$/; // the gateway's rule (docs/interfaces.md)

const SCOPE_WHAT = {
  subscribe: "read channels, jobs and templates",
  publish: "publish to or delete channels",
  run: "start and kill jobs, send stdin",
  admin: "metrics and everything else",
};

let waiters = []; // { resolve, reject, failure, err }
let memo = ""; // the token in memory too, for a tab where sessionStorage throws
const listeners = new Set();
let ui = null;

export function token() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch (err) {
    return ""; // storage disabled: no token
  }
}

function store(t) {
  try {
    if (t) sessionStorage.setItem(KEY, t);
    else sessionStorage.removeItem(KEY);
  } catch (err) {
    /* storage disabled: the token lives as long as the waiting requests */
  }
  memo = t;
  syncForget();
}

function current() {
  return token() || memo;
}

// headers (an object) with Authorization added when there is a token
export function authHeaders(headers = {}) {
  const t = current();
  if (t) headers.Authorization = "Bearer " + t;
  return headers;
}

// an EventSource URL with access_token=<token> when there is a token
export function withAccessToken(url) {
  const t = current();
  if (!t) return url;
  return url + (url.indexOf("?") >= 0 ? "&" : "?") + "access_token=" + encodeURIComponent(t);
}

// the token a request is sent with (to tell "refused" from "the token changed meanwhile")
export function sentToken() {
  return current();
}

// Is this answer an authentication failure? Returns { status, scope, message, sent } or null.
// 403s without error="insufficient_scope" (cross-site, DNS rebinding) are not.
export function authFailure(res, message, sent) {
  if (res.status === 401) return { status: 401, scope: null, message, sent };
  if (res.status !== 403) return null;
  const www = res.headers.get("WWW-Authenticate") || "";
  let scope = null;
  if (/insufficient_scope/.test(www)) {
    const m = /scope="([^"]*)"/.exec(www);
    scope = m ? m[1] : "";
  } else {
    const m = /lacks the "([a-z]+)" scope/.exec(message || "");
    if (!m) return null;
    scope = m[1];
  }
  return { status: 403, scope, message, sent };
}

// Wait until the user gives a token (resolves: send the request again) or cancels (rejects
// with err). When the token changed since the request was sent, resolves at once.
export function needToken(failure, err) {
  if (failure.sent !== current()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    waiters.push({ resolve, reject, failure, err });
    show();
  });
}

// Call fn() when the token is set or forgotten (fn(reason): "set" or "forget").
export function onTokenChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify(reason) {
  for (const fn of listeners) {
    try { fn(reason); } catch (err) { /* a listener's error is not ours */ }
  }
}

export function forgetToken() {
  store("");
  notify("forget");
}

// ---------------------------------------------------------------- the form

function explain(f) {
  if (f.status === 401 && !f.sent)
    return "This gateway needs an access token (it was started with --tokens). " +
      "Paste one of its tokens to continue.";
  if (f.status === 401)
    return "The gateway refused this token (" + (f.message || "invalid token") + "). " +
      "Check it and paste it again.";
  const what = SCOPE_WHAT[f.scope] ? " (" + SCOPE_WHAT[f.scope] + ")" : "";
  return (f.scope ? "This needs a token with the \u201c" + f.scope + "\u201d scope" + what + "; " : "This needs another token; ") +
    "the gateway said: " + (f.message || "insufficient scope") + ". Paste a token that has it, or cancel.";
}

function build() {
  const slot = document.getElementById("auth");
  const message = h("p", { class: "auth-msg", "data-testid": "token-message", role: "alert" });
  const input = h("input", {
    type: "password", "data-testid": "token-input", "aria-label": "Access token", name: "token",
    autocomplete: "off", spellcheck: "false", placeholder: "access token", required: true,
  });
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "token-submit" }, "Use token");
  const cancel = h("button", { type: "button", "data-testid": "token-cancel", onclick: () => onCancel() }, "Cancel");
  const error = h("p", { class: "form-error", "data-testid": "token-error" });
  const form = h("form", { class: "token-form", "data-testid": "token-form", "aria-labelledby": "h-token", onsubmit: (e) => onSubmit(e) },
    h("h2", { id: "h-token" }, "Access token"),
    message,
    h("div", { class: "token-row" }, input, submit, cancel),
    error,
    h("p", { class: "help" }, "Kept in this tab only (sessionStorage) until you close it or click \u201cForget token\u201d."));
  slot.appendChild(form);
  ui = { slot, form, message, input, cancel, error };
}

function show() {
  if (!ui) build();
  const f = waiters[waiters.length - 1].failure;
  setText(ui.message, explain(f));
  setText(ui.error, "");
  ui.cancel.hidden = !waiters.some((w) => w.failure.status === 403);
  const wasHidden = ui.slot.hidden;
  ui.slot.hidden = false;
  if (wasHidden) {
    ui.input.value = "";
    ui.input.focus();
  }
}

function hide() {
  if (!ui) return;
  ui.slot.hidden = true;
  ui.input.value = "";
}

function onSubmit(e) {
  e.preventDefault();
  const t = ui.input.value.trim();
  if (!TOKEN_RE.test(t)) {
    // not sent: the gateway would refuse it, and a header cannot carry every character
    setText(ui.error, "A token is 16\u2013256 printable ASCII characters without spaces.");
    ui.input.focus();
    return;
  }
  store(t);
  hide();
  const w = waiters;
  waiters = [];
  for (const x of w) x.resolve();
  notify("set");
}

function onCancel() {
  const scoped = waiters.filter((w) => w.failure.status === 403);
  waiters = waiters.filter((w) => w.failure.status !== 403);
  for (const x of scoped) x.reject(x.err);
  if (waiters.length) show();
  else hide();
}

// ---------------------------------------------------------------- "forget token"

function syncForget() {
  const b = document.getElementById("token-forget");
  if (b) b.hidden = !current();
}

export function initAuth() {
  const b = document.getElementById("token-forget");
  if (b) b.addEventListener("click", () => forgetToken());
  syncForget();
}
