// Issue 4, browser test 1: start a job from the UI's template form; its lines appear in order;
// its exit status is shown. Also: the job and channel lists show it, filter it, refresh live.
import {
  apiLines, check, checkEq, checkIds, checkNumbered, jobGet, jobSetup, main, newPage, openPage,
  short, stdoutTexts, submitJob, tid, waitFor, waitJob, waitText,
} from './lib.mjs';

/** Fill the template form on #/ and press start-job; returns the job id from the #/job/<id> route. */
async function startFromForm(page, template, params, channel = null) {
  const sel = tid(page, 'template-select');
  await sel.waitFor({ state: 'visible' });
  // the options come from GET /api/templates: wait for ours
  await waitFor(() => sel.evaluate((e, name) => [...(e.options || [])].some((o) => o.value === name || o.textContent.trim() === name), template),
    10000, `template-select to offer "${template}"`);
  const tag = await sel.evaluate((e) => e.tagName);
  check(tag === 'SELECT', `template-select should be a <select>, is <${tag.toLowerCase()}>`);
  const values = await sel.evaluate((e) => [...e.options].map((o) => o.value));
  await sel.selectOption(values.includes(template) ? { value: template } : { label: template });
  for (const [k, v] of Object.entries(params)) {
    const inp = tid(page, `param-${k}`);
    await inp.waitFor({ state: 'visible', timeout: 5000 }).catch(() => {
      throw new Error(`[data-testid=param-${k}] not shown after selecting template "${template}"`);
    });
    await inp.fill(String(v));
  }
  if (channel !== null) await tid(page, 'job-channel-input').fill(channel);
  const before = page.url();
  await tid(page, 'start-job').click();
  const url = await waitFor(() => {
    const u = page.url();
    return /#\/job\/[0-9a-f]{16}$/.test(u) && u !== before ? u : null;
  }, 10000, 'the page to navigate to #/job/<id> after start-job');
  return /#\/job\/([0-9a-f]{16})$/.exec(url)[1];
}

await main('test_job_form', async (t) => {
  const { rds, runner, gw } = await jobSetup();
  t.diag(() => `gateway log:\n${gw.logTail()}\nrunner log:\n${runner.logTail()}`);
  const ids = {};

  await t.subtest('count_job_from_form', async () => {
    const page = await newPage(t);
    await openPage(page, gw.url('#/'));
    const id = await startFromForm(page, 'count', { n: 40, delay: '0.02' });
    ids.count = id;
    checkEq(await page.evaluate(() => window.pipecast.jobId()), id, 'window.pipecast.jobId()');
    await waitText(page, 'job-status', /\bexited\b/i, 20000, 'job-status "exited"');
    const job = await jobGet(gw, id);
    checkEq(job.template, 'count', 'GET /api/jobs/<id> template of the job the form started');
    const argv = typeof job.argv === 'string' ? JSON.parse(job.argv) : job.argv || [];
    check(argv.includes('40') && argv.includes('0.02'), () => `the form's n=40 delay=0.02 did not reach the job: argv ${short(job.argv)}`);
    await waitText(page, 'job-exit-code', /(^|\D)0(\D|$)/, 5000, 'job-exit-code 0');
    const texts = await waitFor(async () => {
      const s = await stdoutTexts(page);
      return s.length >= 40 ? s : null;
    }, 10000, '40 stdout lines in window.pipecast.lines()');
    checkNumbered(texts, 40, 'line ');
    const lines = await apiLines(page);
    checkIds(lines);
    // every id is the stream id of that line in Redis
    const entries = await rds.cmd('XRANGE', `pc:ch:${job.channel}`, '-', '+');
    const redisIds = new Set(entries.map((e) => e[0]));
    const foreign = lines.filter((l) => !redisIds.has(l.id));
    check(foreign.length === 0, () => `page lines whose id is not in the job channel: ${short(foreign.slice(0, 3))}`);
    // the rendered rows agree with the test API: data-n is the 1-based index in lines()
    const rows = await page.$$eval('[data-testid="output"] [data-testid="line"]', (es) => es.map((e) => ({
      id: e.getAttribute('data-id'), n: Number(e.getAttribute('data-n')), event: e.getAttribute('data-event'), text: e.textContent,
    })));
    check(rows.length > 0, 'no [data-testid=line] rows rendered in [data-testid=output]');
    for (const r of rows) {
      const l = lines[r.n - 1];
      check(l && l.id === r.id, () => `row data-n=${r.n} data-id=${r.id}: lines()[${r.n - 1}] is ${short(l)}`);
      checkEq(r.event, l.event, `row data-n=${r.n} data-event`);
      check(r.text.includes(l.text), () => `row data-n=${r.n} text ${short(r.text)} does not show ${short(l.text)}`);
    }
    const st = await jobGet(gw, id);
    checkEq([st.status, st.code], ['exited', 0], 'REST status and code of the job');
  });

  await t.subtest('exit_code_from_form', async () => {
    const page = await newPage(t);
    await openPage(page, gw.url('#/'));
    const id = await startFromForm(page, 'exitcode', { code: 3 });
    ids.exit3 = id;
    await waitText(page, 'job-status', /\bexited\b/i, 20000, 'job-status "exited"');
    await waitText(page, 'job-exit-code', /(^|\D)3(\D|$)/, 5000, 'job-exit-code 3');
    const texts = await waitFor(async () => {
      const s = await stdoutTexts(page);
      return s.length ? s : null;
    }, 5000, 'the stdout line');
    checkEq(texts, ['exiting with 3'], 'stdout lines');
    const j = await jobGet(gw, id);
    checkEq([j.status, j.code], ['exited', 3], 'REST status and code');
  });

  await t.subtest('lists_filter_and_live_refresh', async () => {
    check(ids.count && ids.exit3, 'needs the jobs of the two subtests above');
    const page = await newPage(t);
    await openPage(page, gw.url('#/'));
    const row = (id) => page.locator(`[data-testid="job-list"] [data-testid="job-row"][data-job="${id}"]`);
    await row(ids.count).first().waitFor({ state: 'visible' });
    await row(ids.exit3).first().waitFor({ state: 'visible' });
    const chName = (await jobGet(gw, ids.count)).channel;
    await page.locator(`[data-testid="channel-list"] [data-testid="channel-row"][data-channel="${chName}"]`).first()
      .waitFor({ state: 'visible' });
    // filter the jobs by one id: the other row goes away
    await tid(page, 'job-filter').fill(ids.exit3);
    await waitFor(async () => !(await row(ids.count).first().isVisible().catch(() => false)), 5000,
      `job ${ids.count} to be filtered out by job-filter "${ids.exit3}"`);
    check(await row(ids.exit3).first().isVisible(), 'the matching job row is hidden by the filter');
    await tid(page, 'job-filter').fill('');
    await row(ids.count).first().waitFor({ state: 'visible', timeout: 5000 });
    // channel filter
    await tid(page, 'channel-filter').fill(`job:${ids.exit3}`);
    const other = (await jobGet(gw, ids.exit3)).channel;
    await waitFor(async () => !(await page.locator(`[data-testid="channel-row"][data-channel="${chName}"]`).first().isVisible().catch(() => false)),
      5000, `channel ${chName} to be filtered out by channel-filter`);
    check(await page.locator(`[data-testid="channel-row"][data-channel="${other}"]`).first().isVisible(),
      `channel ${other} is hidden by a filter that matches it`);
    await tid(page, 'channel-filter').fill('');
    // a job started elsewhere shows up without a reload, and its status follows
    const j = await submitJob(gw, { template: 'count', args: { n: 3, delay: '0.01' } });
    await row(j.id).first().waitFor({ state: 'visible', timeout: 10000 });
    await waitJob(gw, j.id, ['exited']);
    await waitFor(async () => {
      const x = ((await row(j.id).first().textContent()) || '').toLowerCase(); // cells run together
      return x.includes('exited') && !x.includes('running') && !x.includes('queued');
    }, 10000, `job-row ${j.id} to show "exited" without a reload`);
  });
}, { timeoutMs: 120000 });
