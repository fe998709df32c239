// Issue 4, browser test 2: while a job prints numbered lines (20 a second), the gateway is
// SIGKILLed and started again on the same port -- and, second case, a gateway on another port
// takes over behind a reverse proxy while the first one is SIGKILLed. The page must reconnect by
// itself (with Last-Event-ID), come back to "live", and show every number exactly once, in order.
import {
  Gateway, SwitchProxy, apiLines, check, checkIds, checkNumbered, jobGet, jobSetup, main, newPage,
  openPage, short, sleep, stdoutTexts, submitJob, textOf, waitConn, waitFor, waitJob, waitText,
} from './lib.mjs';

const N = 140; // lines of the job: 7 s at 20 lines/s
const DELAY = '0.05';

/** Wait for the page to show at least @n stdout lines; returns how many it shows. */
async function waitLines(page, n, timeoutMs = 15000) {
  return waitFor(async () => {
    const c = (await stdoutTexts(page)).length;
    return c >= n ? c : null;
  }, timeoutMs, `at least ${n} stdout lines on the page`);
}

/** Record conn-state every 50 ms while @p runs; returns the states seen, in order, deduplicated. */
async function watchConn(page, p) {
  const seen = [];
  let done = false;
  const poll = (async () => {
    while (!done) {
      const s = await textOf(page, 'conn-state').catch(() => null);
      if (s !== null && seen[seen.length - 1] !== s) seen.push(s);
      await sleep(50);
    }
  })();
  try {
    await p;
  } finally {
    done = true;
    await poll;
  }
  return seen;
}

async function finish(t, page, gw, jobId) {
  await waitConn(page, 'live', 15000);
  await waitJob(gw, jobId, ['exited'], 30000);
  await waitText(page, 'job-status', /\bexited\b/i, 15000, 'job-status "exited" after the reconnect');
  await waitFor(async () => (await stdoutTexts(page)).length >= N, 10000, `${N} stdout lines on the page`)
    .catch(() => {}); // checkNumbered below says exactly what is missing
  const lines = await apiLines(page);
  checkNumbered(lines.filter((l) => l.event === 'stdout').map((l) => l.text), N, 'line ');
  checkIds(lines);
}

await main('test_reconnect', async (t) => {
  const { rds, runner, gw } = await jobSetup();
  t.diag(() => `gateway log:\n${gw.logTail()}\nrunner log:\n${runner.logTail()}`);

  await t.subtest('gateway_sigkill_and_restart_same_port', async () => {
    const job = await submitJob(gw, { template: 'count', args: { n: N, delay: DELAY } });
    const page = await newPage(t);
    await openPage(page, gw.url(`#/job/${job.id}`));
    await waitConn(page, 'live');
    const before = await waitLines(page, 20);
    check(before < N, 'the job ended before the gateway could be killed (the test needs it mid-output)');
    const states = await watchConn(page, (async () => {
      await gw.kill9();
      await sleep(1500); // lines keep going into Redis meanwhile
      await gw.start(); // same port
    })());
    const j = await jobGet(gw, job.id);
    check(j.status === 'running', () => `the job should still run when the gateway is back (status ${j.status}): the test lost its point`);
    const during = await rds.cmd('XLEN', `pc:ch:${job.channel}`);
    t.note(`same port: the page had ${before} lines when the gateway was killed; ${during} entries in the channel when it came back; conn-state went ${short(states)}`);
    check(states.some((s) => s !== 'live'), () => `conn-state stayed "live" while the gateway was dead for 1.5 s (seen: ${short(states)})`);
    check(states.every((s) => ['connecting', 'live', 'reconnecting', 'replaying'].includes(s)),
      () => `conn-state shows text outside connecting|live|reconnecting|replaying: ${short(states)}`);
    await finish(t, page, gw, job.id);
  });

  await t.subtest('second_gateway_takes_over_behind_proxy', async () => {
    const gwB = await new Gateway(rds.port).start();
    t.diag(() => `gateway B log:\n${gwB.logTail()}`);
    const proxy = await new SwitchProxy(gw.port).start();
    const job = await submitJob(gw, { template: 'count', args: { n: N, delay: DELAY } });
    const page = await newPage(t);
    await openPage(page, proxy.url(`#/job/${job.id}`));
    await waitConn(page, 'live');
    const before = await waitLines(page, 20);
    check(before < N, 'the job ended before the takeover (the test needs it mid-output)');
    const switchedAt = Date.now();
    const states = await watchConn(page, (async () => {
      proxy.upstream = gwB.port; // new connections go to B ...
      await gw.kill9(); // ... and A dies with the page's stream on it
      await sleep(1000);
    })());
    await waitConn(page, 'live', 15000);
    const resumed = proxy.requests.filter((r) => r.t >= switchedAt && r.upstream === gwB.port && /events/.test(r.url));
    t.note(`takeover: the page had ${before} lines when A was killed; conn-state went ${short(states)}; ` +
      `event-stream requests to B: ${short(resumed.map((r) => ({ url: r.url, lastEventId: r.lastEventId })))}`);
    check(resumed.length > 0, () => `the page opened no event stream through the proxy after A died (requests: ${short(proxy.requests.slice(-5))})`);
    check(resumed.some((r) => r.lastEventId || /[?&]lastEventId=/.test(r.url)),
      () => `the page's new event stream on B carries no Last-Event-ID header nor lastEventId= (requests: ${short(resumed)})`);
    await finish(t, page, gwB, job.id);
    await gw.start(); // back for later subtests (its port may be another one: a fresh start)
  });
}, { timeoutMs: 120000 });
