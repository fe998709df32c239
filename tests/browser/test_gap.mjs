// Issue 4, browser test 3: the stream is trimmed below the page's last id while the page is
// disconnected (gateway SIGKILLed); when the gateway is back, the server sends `gap` and the page
// shows the gap notice -- and then the lines that are still there, once each.
import {
  Gateway, RedisServer, apiLines, check, checkEq, checkIds, main, newPage, openPage, publish, short,
  sleep, tid, waitConn, waitFor,
} from './lib.mjs';

const isVisible = (page) => tid(page, 'gap-notice').first().isVisible().catch(() => false);

await main('test_gap', async (t) => {
  const rds = await new RedisServer().start();
  const gw = await new Gateway(rds.port).start();
  t.diag(() => `gateway log:\n${gw.logTail()}`);

  await t.subtest('trimmed_below_last_id_shows_gap_notice', async () => {
    const ch = `gap-${process.pid}`;
    await publish(rds, ch, Array.from({ length: 10 }, (_, i) => `g ${i + 1}`));
    const page = await newPage(t);
    await openPage(page, gw.url(`#/channel/${ch}`));
    await waitConn(page, 'live');
    await waitFor(async () => (await apiLines(page)).length >= 10, 10000, '10 lines on the page');
    const last = await page.evaluate(() => window.pipecast.lastEventId());
    const ids = (await rds.cmd('XRANGE', `pc:ch:${ch}`, '-', '+')).map((e) => e[0]);
    checkEq(last, ids[9], 'window.pipecast.lastEventId() after 10 lines');
    check(!(await isVisible(page)), 'gap-notice is visible before any gap event');
    await sleep(300);
    check(!(await isVisible(page)), 'gap-notice is visible before any gap event');

    await gw.kill9();
    await publish(rds, ch, Array.from({ length: 20 }, (_, i) => `g ${i + 11}`));
    checkEq(await rds.cmd('XTRIM', `pc:ch:${ch}`, 'MAXLEN', '5'), 25, 'XTRIM MAXLEN 5 removed entries');
    const kept = (await rds.cmd('XRANGE', `pc:ch:${ch}`, '-', '+')).map((e) => e[0]);
    await gw.start();

    await waitFor(() => isVisible(page), 15000, 'gap-notice to become visible after the trimmed resume');
    await waitConn(page, 'live', 15000);
    const lines = await waitFor(async () => {
      const ls = (await apiLines(page)).filter((l) => l.event !== 'gap'); // a gap marker row is fine
      return ls.length >= 15 ? ls : null;
    }, 10000, '15 lines on the page (10 before, the 5 retained after the gap)');
    checkEq(lines.map((l) => l.text), [...Array.from({ length: 10 }, (_, i) => `g ${i + 1}`), 'g 26', 'g 27', 'g 28', 'g 29', 'g 30'],
      'page lines (a gap marker row aside)');
    checkEq(lines.slice(10).map((l) => l.id), kept, 'ids of the lines after the gap');
    checkIds(lines);
    const text = ((await tid(page, 'gap-notice').first().textContent()) || '').trim();
    t.note(`gap-notice text: ${short(text, 200)}`);
  });
}, { timeoutMs: 90000 });
