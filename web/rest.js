// REST calls to the gateway (same origin). Errors become ApiError with the gateway's message.

import * as auth from "./auth.js";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const seg = encodeURIComponent;

async function request(method, path, body, opts = {}) {
  for (;;) {
    const sent = auth.sentToken();
    const init = { method, headers: auth.authHeaders({}), cache: "no-store" };
    if (body !== undefined) {
      if (typeof body === "string") {
        init.body = body;
        init.headers["Content-Type"] = "text/plain; charset=utf-8";
      } else {
        init.body = JSON.stringify(body);
        init.headers["Content-Type"] = "application/json";
      }
    }
    // every request has a deadline: a hung gateway must not hang the page (the time a request
    // waits for the user to give a token is not part of it)
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), opts.timeoutMs || 10000);
    init.signal = ctrl.signal;
    let res, text;
    try {
      res = await fetch(path, init);
      text = await res.text();
    } catch (err) {
      throw new ApiError(0, ctrl.signal.aborted ? "gateway did not answer in time" : "gateway unreachable", null);
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = null; }
    }
    if (res.ok) return data;
    const msg = data && typeof data.error === "string" ? data.error : res.status + " " + res.statusText;
    const err = new ApiError(res.status, msg, data);
    const failure = auth.authFailure(res, msg, sent);
    if (!failure) throw err;
    err.scope = failure.scope;
    // 401 / missing scope: the token form asks for one; then the same request again
    await auth.needToken(failure, err);
  }
}

export function eventsUrl(channel, params) {
  const q = params.map(([k, v]) => seg(k) + "=" + seg(v)).join("&");
  return "/api/channels/" + seg(channel) + "/events" + (q ? "?" + q : "");
}

// Every page of the channel list (bounded: at most `max` channels).
export async function listChannels(max = 5000) {
  let out = [];
  let cursor = null;
  do {
    const q = "?limit=1000" + (cursor ? "&cursor=" + seg(cursor) : "");
    const r = await request("GET", "/api/channels" + q);
    out = out.concat(r.channels || []);
    cursor = r.next_cursor;
  } while (cursor && out.length < max);
  return out;
}

// Channel info, or null if it does not exist (yet).
export async function channelInfo(channel) {
  try {
    return await request("GET", "/api/channels/" + seg(channel));
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

export async function listJobs(limit = 200) {
  const r = await request("GET", "/api/jobs?limit=" + limit);
  return r.jobs || [];
}

export function getJob(id) {
  return request("GET", "/api/jobs/" + seg(id));
}

export function startJob(spec) {
  return request("POST", "/api/jobs", spec);
}

export function killJob(id) {
  return request("DELETE", "/api/jobs/" + seg(id));
}

export function sendStdin(id, text, eof) {
  return request("POST", "/api/jobs/" + seg(id) + "/stdin" + (eof ? "?eof=1" : ""), text);
}

export async function listTemplates() {
  const r = await request("GET", "/api/templates");
  return (r && r.templates) || {};
}
