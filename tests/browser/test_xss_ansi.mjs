// Issue 4, browser test 5: a line containing `<img src=x onerror=alert(1)>` and ANSI SGR escapes
// renders as text with colours: no element made of server text, no dialog, a red span and a bold
// one, the literal `<img` visible, no raw escape codes shown. Checked on a channel view (entries
// published straight to Redis) and on a job view (the same text as a job argument and output).
import {
  check, checkEq, jobSetup, main, newPage, openPage, publish, short, sleep, submitJob, tid, waitFor,
  waitJob,
} from './lib.mjs';

const IMG = '<img src=x onerror=alert(1)>';
const LINE = `${IMG} \x1b[31mred\x1b[0m \x1b[1mbold\x1b[0m`;

/** What the output shows, computed in the page. */
function inspect(page) {
  return page.evaluate(() => {
    const out = document.querySelector('[data-testid="output"]');
    if (!out) return { error: 'no [data-testid=output]' };
    const rgb = (c) => (c.match(/\d+(\.\d+)?/g) || []).map(Number);
    const els = [...out.querySelectorAll('*')];
    const red = els.filter((e) => {
      if (e.textContent.trim() !== 'red') return false;
      const [r, g, b] = rgb(getComputedStyle(e).color);
      return r >= 120 && r > g + 50 && r > b + 50;
    }).map((e) => ({ tag: e.tagName, color: getComputedStyle(e).color, cls: e.className }));
    const bold = els.filter((e) => e.textContent.trim() === 'bold' && (Number(getComputedStyle(e).fontWeight) >= 600
      || getComputedStyle(e).fontWeight === 'bold')).map((e) => ({ tag: e.tagName, weight: getComputedStyle(e).fontWeight }));
    const colorOf = (word) => {
      const e = els.filter((x) => x.textContent.trim() === word)[0];
      return e ? getComputedStyle(e).color : null;
    };
    return {
      text: out.innerText,
      rows: [...out.querySelectorAll('[data-testid="line"]')].map((e) => ({ event: e.getAttribute('data-event'), text: e.textContent })),
      imgInOutput: out.querySelectorAll('img, script, iframe, svg, object, embed').length,
      imgX: document.querySelectorAll('img[src="x"]').length,
      scripts: [...document.scripts].filter((s) => /alert\(/.test(s.textContent)).length,
      onerror: document.querySelectorAll('[onerror]').length,
      red,
      bold,
      redColor: colorOf('red'),
      boldColor: colorOf('bold'),
      lineColor: getComputedStyle(out).color,
      xssFired: window.__xss || 0,
    };
  });
}

function checkRendered(s, where) {
  check(!s.error, () => `${where}: ${s.error}`);
  check(s.imgInOutput === 0, () => `${where}: ${s.imgInOutput} img/script/iframe/svg element(s) inside the output`);
  checkEq(s.imgX, 0, `${where}: img[src=x] elements in the document`);
  checkEq(s.onerror, 0, `${where}: elements with an onerror attribute`);
  checkEq(s.xssFired, 0, `${where}: injected handlers that ran`);
  check(s.text.includes(IMG), () => `${where}: the visible text lacks the literal ${IMG}: ${short(s.text, 400)}`);
  // the row of the coloured line (not the job's start row, which may show the argv's own text)
  const rows = s.rows.filter((r) => r.text.includes(IMG) && !['start', 'stderr'].includes(r.event));
  check(rows.length > 0, () => `${where}: no rendered row holds the line: ${short(s.rows)}`);
  for (const r of rows) {
    check(!/\x1b|\[31m|\[0m|\[1m/.test(r.text), () => `${where}: raw escape codes are visible in the row: ${short(r.text)}`);
    check(r.text.includes(`${IMG} red bold`), () => `${where}: the row should read ${short(`${IMG} red bold`)}, reads ${short(r.text)}`);
  }
  check(s.red.length > 0, () => `${where}: no element with the text "red" in a red colour (its colour: ${s.redColor})`);
  check(s.bold.length > 0, () => `${where}: no element with the text "bold" in a bold weight`);
}

await main('test_xss_ansi', async (t) => {
  const { rds, runner, gw } = await jobSetup();
  t.diag(() => `gateway log:\n${gw.logTail()}\nrunner log:\n${runner.logTail()}`);

  const newXssPage = async () => {
    const page = await newPage(t);
    // alert/confirm/prompt must never run; count it in-page too (a dialog event is the main check)
    await page.addInitScript(() => {
      window.__xss = 0;
      for (const f of ['alert', 'confirm', 'prompt']) {
        const orig = window[f];
        window[f] = function (...a) {
          window.__xss++;
          return orig.apply(this, a);
        };
      }
    });
    return page;
  };

  await t.subtest('channel_view', async () => {
    const ch = `xss-${process.pid}`;
    await publish(rds, ch, [
      LINE,
      '<script>alert(2)</script><b>not bold</b> &amp; &lt;',
      'other escapes shown harmlessly: \x1b]0;title\x07 \x1b[2J \x1b[?25l done',
      'after',
    ]);
    const page = await newXssPage();
    await openPage(page, gw.url(`#/channel/${ch}`));
    await waitFor(async () => (await page.evaluate(() => window.pipecast.lineCount())) >= 4, 10000, '4 lines on the page');
    await sleep(300); // a handler would fire on image error by now
    const s = await inspect(page);
    checkRendered(s, 'channel view');
    check(s.text.includes('<script>alert(2)</script><b>not bold</b> &amp; &lt;'),
      () => `channel view: the <script> line is not shown literally: ${short(s.text, 400)}`);
    check(s.text.includes('after'), 'channel view: the line after the other escape sequences is not shown');
    check(page.rec.dialogs.length === 0, () => `dialogs fired: ${short(page.rec.dialogs)}`);
    const texts = await page.evaluate(() => window.pipecast.lines().map((l) => l.text));
    check(texts.some((x) => x.includes(IMG)), () => `window.pipecast.lines() lacks the <img line: ${short(texts)}`);
    t.note(`red span colour ${s.redColor}, bold ${short(s.bold[0])}`);
  });

  await t.subtest('job_view', async () => {
    const job = await submitJob(gw, { template: 'color', args: { msg: IMG } });
    await waitJob(gw, job.id, ['exited']);
    const page = await newXssPage();
    await openPage(page, gw.url(`#/job/${job.id}`));
    await waitFor(async () => /\bexited\b/i.test((await tid(page, 'job-status').first().textContent().catch(() => '')) || ''),
      10000, 'job-status "exited"');
    await waitFor(async () => (await page.evaluate(() => window.pipecast.lines().filter((l) => l.event === 'stderr').length)) >= 1,
      10000, 'the stderr line');
    await sleep(300);
    checkRendered(await inspect(page), 'job view');
    // the stderr line is told apart from stdout: its row says data-event=stderr
    const ev = await page.$$eval('[data-testid="line"]', (es) => es.map((e) => e.getAttribute('data-event')));
    check(ev.includes('stderr') && ev.includes('stdout'), () => `rows should carry data-event stdout and stderr, got ${short(ev)}`);
    // the job list (argv shown there or not) must not turn the argument into markup either
    await openPage(page, gw.url('#/'));
    await page.locator(`[data-testid="job-row"][data-job="${job.id}"]`).first().waitFor({ state: 'visible' });
    await sleep(300);
    checkEq(await page.evaluate(() => document.querySelectorAll('img[src="x"], [onerror]').length), 0, 'job list: elements made of the argument');
    check(page.rec.dialogs.length === 0, () => `dialogs fired: ${short(page.rec.dialogs)}`);
  });
}, { timeoutMs: 90000 });
