// Issue 4, browser test 7: a screenshot of a job view (a pretend build: colours, stderr, exit 0),
// for the README. Always written to <build>/tests/browser/screenshot-job.png; copied to
// docs/screenshot-job.png when that file is missing or PC_UPDATE_SCREENSHOT=1, and only when the
// view met the contract (so a half-drawn page never lands in docs/).
import fs from 'node:fs';
import path from 'node:path';
import {
  SRC, check, jobSetup, main, newPage, openPage, stdoutTexts, submitJob, tid, waitFor, waitJob,
  waitText,
} from './lib.mjs';

await main('test_screenshot', async (t) => {
  const { runner, gw } = await jobSetup({ runnerId: 'build-runner-1' });
  t.diag(() => `gateway log:\n${gw.logTail()}\nrunner log:\n${runner.logTail()}`);

  await t.subtest('job_view_screenshot', async () => {
    // a couple of earlier jobs so that the job list is not empty
    for (const n of [3, 5]) await waitJob(gw, (await submitJob(gw, { template: 'count', args: { n, delay: '0.01' } })).id, ['exited']);
    const job = await submitJob(gw, { template: 'build', args: { target: 'all' }, channel: 'build-42' });
    await waitJob(gw, job.id, ['exited']);
    const page = await newPage(t, { viewport: { width: 1280, height: 720 }, deviceScaleFactor: 1 });
    await openPage(page, gw.url(`#/job/${job.id}`));
    await waitText(page, 'job-status', /\bexited\b/i, 10000, 'job-status "exited"');
    await waitText(page, 'job-exit-code', /(^|\D)0(\D|$)/, 5000, 'job-exit-code 0');
    await waitFor(async () => (await stdoutTexts(page)).some((s) => s.includes('==> done')), 10000, 'the last build line');
    await tid(page, 'output').waitFor({ state: 'visible' });
    await page.evaluate(() => document.fonts && document.fonts.ready);
    const out = path.join(process.cwd(), 'screenshot-job.png');
    await page.screenshot({ path: out });
    const png = fs.readFileSync(out);
    check(png.subarray(1, 4).toString() === 'PNG' && png.length > 10000, `${out} is not a real screenshot (${png.length} bytes)`);
    const docs = path.join(SRC, 'docs', 'screenshot-job.png');
    if (!fs.existsSync(docs) || process.env.PC_UPDATE_SCREENSHOT === '1') {
      fs.copyFileSync(out, docs);
      t.note(`wrote ${docs} (${png.length} bytes)`);
    } else {
      t.note(`wrote ${out} (${png.length} bytes); ${docs} kept (PC_UPDATE_SCREENSHOT=1 replaces it)`);
    }
  });
}, { timeoutMs: 60000 });
