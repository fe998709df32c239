// The web UI against a gateway started with --tokens: without a token the page asks for one in
// its own form (no window.prompt) and sends nothing while it waits; a wrong token is refused with
// a message and no retry loop; the right (subscribe-only) token shows a channel's lines, also
// those published while the page is open, with the token sent as Authorization: Bearer (fetch)
// and access_token= (EventSource only), never in the page URL, the DOM or the gateway log; the
// subscribe-only token cannot start a job (the form names the "run" scope; cancel → the start
// form's error names it too; a token with "run" given in the form → the job starts); "forget
// token" brings the form back, and a publish+run token (no "subscribe") is asked to be replaced
// naming "subscribe". Without --tokens: no form, no token, no Authorization header.
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  apiConn, apiLines, check, checkEq, Gateway, jobSetup, main, newPage, openPage, publish, short, sleep, tid,
  waitFor, waitText, writeTokens,
} from './lib.mjs';

const rnd = (p) => `${p}-${crypto.randomBytes(16).toString('hex')}`;
const SUB = rnd('sub');        // subscribe
const PUBRUN = rnd('pubrun');  // publish,run (cannot read)
const FULL = rnd('full');      // subscribe,publish,run
const WRONG = rnd('wrong');    // not in the file
const CH = 'tok-demo';

/** Record every request of @page to the gateway's API: {t, url, type, auth}. */
function recordApi(page) {
  const reqs = [];
  page.on('request', async (r) => {
    if (!new URL(r.url()).pathname.startsWith('/api')) return;
    const e = { t: Date.now(), url: r.url(), type: r.resourceType(), auth: null };
    reqs.push(e);
    try {
      e.auth = (await r.allHeaders()).authorization ?? null;
    } catch {
      e.auth = r.headers().authorization ?? null;
    }
  });
  return reqs;
}

const formVisible = (page) => tid(page, 'token-form').isVisible().catch(() => false);
async function waitForm(page, what, timeoutMs = 10000) {
  await waitFor(() => formVisible(page), timeoutMs, `the token form (data-testid="token-form") to show: ${what}`);
}
async function waitNoForm(page, what, timeoutMs = 10000) {
  await waitFor(async () => !(await formVisible(page)), timeoutMs, `the token form to go away: ${what}`);
}
async function giveToken(page, tok) {
  await tid(page, 'token-input').fill(tok);
  await tid(page, 'token-submit').click();
}
const texts = async (page) => (await apiLines(page)).map((l) => l.text);

await main('test_tokens', async (t) => {
  const tokens = writeTokens([[SUB, 'subscribe'], [PUBRUN, 'publish,run'], [FULL, 'subscribe,publish,run']]);
  const { rds, runner, gw } = await jobSetup({ gatewayArgs: ['--tokens', tokens], token: FULL });
  t.diag(() => `gateway log:\n${gw.logTail()}\nrunner log:\n${runner.logTail()}`);
  // the gateway really wants tokens (else this test proves nothing)
  const r401 = await fetch(`http://127.0.0.1:${gw.port}/api/channels`);
  checkEq(r401.status, 401, 'GET /api/channels without a token');
  await publish(rds, CH, ['before 1', 'before 2', 'before 3']);

  const page = await newPage(t, {}, { keep: true });
  const reqs = recordApi(page);
  const since = (t0) => reqs.filter((r) => r.t >= t0);

  await t.subtest('form_without_token', async () => {
    await openPage(page, gw.url(`#/channel/${CH}`));
    await waitForm(page, 'the gateway answered 401');
    await waitText(page, 'token-message', /token/i, 5000, 'token-message to ask for a token');
    checkEq(await texts(page), [], 'lines shown without a token');
    // nothing is sent while the form waits (no retry loop behind it)
    await sleep(500);
    const t0 = Date.now();
    await sleep(3000);
    const during = since(t0);
    check(during.length === 0, () => `API requests while the token form waits: ${short(during.map((r) => r.url))}`);
    check(page.rec.dialogs.length === 0, () => `dialogs (window.prompt?): ${short(page.rec.dialogs)}`);
  });

  await t.subtest('wrong_token_refused', async () => {
    const t0 = Date.now();
    await giveToken(page, WRONG);
    await waitText(page, 'token-message', /refused|invalid/i, 10000, 'token-message to say the token was refused');
    await waitForm(page, 'after a wrong token');
    const tries = since(t0);
    check(tries.length > 0 && tries.every((r) => r.auth === `Bearer ${WRONG}`),
      () => `requests after the wrong token must carry it as Authorization: Bearer: ${short(tries)}`);
    check(tries.length <= 4, () => `${tries.length} requests for one wrong token: ${short(tries.map((r) => r.url))}`);
    const t1 = Date.now();
    await sleep(3000);
    const later = since(t1);
    check(later.length === 0, () => `API requests after the refusal (a loop?): ${short(later.map((r) => r.url))}`);
    checkEq(await texts(page), [], 'lines shown with a wrong token');
  });

  await t.subtest('right_token_live_lines', async () => {
    const t0 = Date.now();
    await giveToken(page, SUB);
    await waitNoForm(page, 'after the subscribe token');
    await waitFor(async () => (await texts(page)).length === 3, 10000, 'the 3 lines published before');
    await waitFor(async () => (await apiConn(page)) === 'live', 15000, 'conn-state live');
    await publish(rds, CH, ['live 1', 'live 2', 'live 3']);
    await waitFor(async () => (await texts(page)).length === 6, 10000,
      `the 3 lines published while the page is open (page: ${short(await texts(page).catch(() => []))})`);
    checkEq(await texts(page), ['before 1', 'before 2', 'before 3', 'live 1', 'live 2', 'live 3'], 'page lines');
    // where the token went
    const after = since(t0);
    const es = after.filter((r) => r.type === 'eventsource');
    check(es.length > 0 && es.every((r) => new URL(r.url).searchParams.get('access_token') === SUB),
      () => `EventSource requests must carry access_token=<token>: ${short(es.map((r) => r.url))}`);
    const fetches = after.filter((r) => r.type !== 'eventsource');
    check(fetches.length > 0 && fetches.every((r) => r.auth === `Bearer ${SUB}` && !r.url.includes('access_token')),
      () => `fetch requests must send Authorization: Bearer <token> and no access_token: ${short(fetches)}`);
    check(!page.url().includes(SUB), () => `the token is in the page URL: ${page.url()}`);
    const html = await page.evaluate(() => document.documentElement.outerHTML);
    check(!html.includes(SUB), 'the token is in the DOM (a link, an attribute?)');
    checkEq(await page.evaluate(() => sessionStorage.getItem('pipecast.token')), SUB, 'sessionStorage pipecast.token');
    checkEq(await page.evaluate(() => localStorage.getItem('pipecast.token')), null, 'localStorage pipecast.token');
    check(await tid(page, 'token-forget').isVisible(), 'the "forget token" control is visible');
    const log = fs.readFileSync(gw.logPath, 'utf8');
    check(!log.includes(SUB) && !log.includes(WRONG), 'the gateway log has a token in it');
  });

  await t.subtest('subscribe_only_cannot_start_job', async () => {
    await page.evaluate(() => { location.hash = '#/'; });
    await waitFor(async () => (await tid(page, 'template-select').locator('option[value="count"]').count()) > 0, 15000,
      'the template form to list "count"');
    await tid(page, 'template-select').selectOption('count');
    await tid(page, 'start-job').click();
    await waitForm(page, 'POST /api/jobs refused for lack of the "run" scope');
    await waitText(page, 'token-message', /\brun\b.*scope|scope.*\brun\b/i, 5000, 'token-message to name the "run" scope');
    const jobs = await gw.json('GET', '/api/jobs');
    checkEq(jobs.json && jobs.json.jobs.length, 0, 'jobs after a start with the subscribe-only token');
    await tid(page, 'token-cancel').click();
    await waitNoForm(page, 'after cancel');
    await waitText(page, 'start-job-error', /\brun\b.*scope|scope.*\brun\b/i, 5000, 'start-job-error to name the "run" scope');
    // again, and this time give a token that has "run": the same request goes through
    await tid(page, 'start-job').click();
    await waitForm(page, 'the second start');
    await giveToken(page, FULL);
    await waitNoForm(page, 'after the full token');
    await waitFor(() => /#\/job\/[0-9a-f]+/.test(page.url()), 10000, `the job view (url ${page.url()})`);
    await waitText(page, 'job-status', /queued|running|exited/, 10000, 'job-status');
    const jobs2 = await gw.json('GET', '/api/jobs');
    checkEq(jobs2.json && jobs2.json.jobs.length, 1, 'jobs after the start with the full token');
  });

  await t.subtest('forget_token', async () => {
    await tid(page, 'token-forget').click();
    await waitForm(page, 'after "forget token"');
    checkEq(await page.evaluate(() => sessionStorage.getItem('pipecast.token')), null, 'sessionStorage after forget');
    check(!(await tid(page, 'token-forget').isVisible()), '"forget token" is still visible without a token');
    // a token without "subscribe": the page says which scope the reads need
    await giveToken(page, PUBRUN);
    await waitText(page, 'token-message', /subscribe/i, 10000, 'token-message to name the "subscribe" scope');
    await waitForm(page, 'with the publish+run token');
    await giveToken(page, SUB);
    await waitNoForm(page, 'with the subscribe token again');
    await waitText(page, 'job-status', /queued|running|exited/, 10000, 'job-status with the subscribe token');
  });

  await t.subtest('no_tokens_no_form', async () => {
    const gw2 = await new Gateway(rds.port).start();
    const p2 = await newPage(t);
    const r2 = recordApi(p2);
    await openPage(p2, gw2.url(`#/channel/${CH}`));
    const n = await rds.cmd('XLEN', `pc:ch:${CH}`);
    await waitFor(async () => (await texts(p2)).length === n, 10000, `the channel's ${n} lines without tokens`);
    await publish(rds, CH, ['open 1']);
    await waitFor(async () => (await texts(p2)).length === n + 1, 10000, 'a line published while the page is open');
    await waitFor(async () => (await apiConn(p2)) === 'live', 15000, 'conn-state live');
    check((await tid(p2, 'token-form').count()) === 0 || !(await formVisible(p2)), 'a token form without --tokens');
    check((await tid(p2, 'token-forget').count()) === 0 || !(await tid(p2, 'token-forget').isVisible()),
      '"forget token" visible without --tokens');
    check(r2.length > 0 && r2.every((r) => r.auth === null && !r.url.includes('access_token')),
      () => `requests with a token without --tokens: ${short(r2.filter((r) => r.auth || r.url.includes('access_token')))}`);
    await gw2.kill9();
  });
}, { timeoutMs: 100000 });
