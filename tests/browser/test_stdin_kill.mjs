// Issue 4, browser test 4: text typed into the page's stdin box reaches the job (`cat`) and its
// echo comes back as a line; the EOF button ends it (exited 0); the kill button ends a `sleep`
// job as `killed`.
import {
  check, checkEq, jobGet, jobSetup, main, newPage, openPage, short, stdoutTexts, submitJob, tid,
  waitFor, waitJob, waitText,
} from './lib.mjs';

await main('test_stdin_kill', async (t) => {
  const { rds, runner, gw } = await jobSetup();
  t.diag(() => `gateway log:\n${gw.logTail()}\nrunner log:\n${runner.logTail()}`);

  await t.subtest('stdin_echo_and_eof', async () => {
    const job = await submitJob(gw, { template: 'cat' });
    await waitJob(gw, job.id, ['running']);
    const page = await newPage(t);
    await openPage(page, gw.url(`#/job/${job.id}`));
    await waitText(page, 'job-status', /\brunning\b/i, 10000, 'job-status "running"');
    const msgs = ['hello from the browser 4711', 'second line <b>ü</b>'];
    for (const m of msgs) {
      await tid(page, 'stdin-input').fill(m);
      await tid(page, 'stdin-send').click();
      await waitFor(async () => (await stdoutTexts(page)).includes(m), 10000,
        `the echo of ${short(m)} as a stdout line (page stdout: ${short(await stdoutTexts(page).catch(() => []))})`);
    }
    checkEq(await stdoutTexts(page), msgs, 'stdout lines of the cat job');
    // and it is what the job really read: Redis has the same lines
    const entries = await rds.cmd('XRANGE', `pc:ch:${job.channel}`, '-', '+');
    const out = entries.filter((e) => e[1][e[1].indexOf('event') + 1] === 'stdout').map((e) => e[1][e[1].indexOf('data') + 1]);
    checkEq(out, msgs, 'stdout entries of the job channel in Redis');
    await tid(page, 'stdin-eof').click();
    await waitText(page, 'job-status', /\bexited\b/i, 10000, 'job-status "exited" after stdin-eof');
    await waitText(page, 'job-exit-code', /(^|\D)0(\D|$)/, 5000, 'job-exit-code 0');
    const j = await jobGet(gw, job.id);
    checkEq([j.status, j.code], ['exited', 0], 'REST status and code after EOF');
  });

  await t.subtest('stdin_full_buffer_resends', async () => {
    // two 700 KB lines to a job that reads nothing for 3 s: the second does not fit the job's
    // 1 MiB stdin buffer (429 + Retry-After, nothing taken); the page must send it again
    // until it fits, so the job counts every byte of both lines
    const job = await submitJob(gw, { template: 'latecount' });
    await waitJob(gw, job.id, ['running']);
    const page = await newPage(t);
    await openPage(page, gw.url(`#/job/${job.id}`));
    await waitText(page, 'job-status', /\brunning\b/i, 10000, 'job-status "running"');
    const big = 'x'.repeat(700000);
    for (let i = 0; i < 2; i++) {
      await tid(page, 'stdin-input').fill(big);
      await tid(page, 'stdin-send').click();
      await waitFor(async () => (await tid(page, 'stdin-input').inputValue()) === '', 5000, 'the stdin box to clear');
    }
    // the second line is only taken once the job reads (3 s): then EOF
    await waitFor(async () => {
      const h = await rds.cmd('HGET', `pc:job:${job.id}`, 'stdin_accepted');
      return Number(h) === 2 * 700001;
    }, 20000, 'the job hash to count both lines as accepted (the page resends after 429)');
    await tid(page, 'stdin-eof').click();
    await waitText(page, 'job-status', /\bexited\b/i, 15000, 'job-status "exited" after EOF');
    await waitFor(async () => (await stdoutTexts(page)).some((l) => l.trim() === String(2 * 700001)), 10000,
      `wc -c to print ${2 * 700001} (page stdout: ${short(await stdoutTexts(page).catch(() => []))})`);
    const toasts = await page.evaluate(() => document.body.innerText);
    check(!/stdin buffer full/.test(toasts), 'no "stdin buffer full" error shown: the page should resend');
  });

  await t.subtest('kill_button', async () => {
    const job = await submitJob(gw, { template: 'sleep', args: { seconds: 300 } });
    await waitJob(gw, job.id, ['running']);
    const page = await newPage(t);
    await openPage(page, gw.url(`#/job/${job.id}`));
    await waitText(page, 'job-status', /\brunning\b/i, 10000, 'job-status "running"');
    const t0 = Date.now();
    await tid(page, 'kill-job').click();
    await waitText(page, 'job-status', /\bkilled\b/i, 15000, 'job-status "killed" after kill-job');
    const j = await jobGet(gw, job.id);
    checkEq(j.status, 'killed', 'REST status after the kill button');
    t.note(`kill button -> job-status "killed" in ${Date.now() - t0} ms`);
    const confirms = page.rec.dialogs.filter((d) => d.type !== 'confirm');
    check(confirms.length === 0, () => `unexpected dialogs: ${short(page.rec.dialogs)}`);
  });
}, { timeoutMs: 90000 });
