// Where the database lives (issue 35): `status.storage` says it, and a browser without OPFS sync access handles
// is found out at once: `open` fails with STORAGE_UNAVAILABLE naming what is missing (it retried for ~20 s), or,
// asked for `storage: 'best'`, runs in memory and says so. Firefox can switch OPFS off (`dom.fs.enabled`), which
// gives a real engine without it; the same path is what WebKitGTK takes (no sync access handles off Apple's builds).

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cleanup, eventually, launch, only } from './browser.mjs';
import { root, startOrigin, startSyncServer } from './stack.mjs';

let sync;
let web;

before(async () => {
  sync = await startSyncServer();
  web = await startOrigin(sync.url, { '/oversync-web/': path.join(root, 'npm/dist'), '/': path.join(root, 'tests/browser/pages') });
});

after(async () => {
  await cleanup();
  await web?.stop();
  await sync?.stop();
});

async function loadPage(context) {
  const page = await context.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  return page;
}

const tryOpen = (page, user, extra) =>
  page.evaluate(
    ([u, x]) => window.openDb(u, x).then((s) => ({ storage: s.storage }), (e) => ({ code: e.code, message: e.message })),
    [user, extra],
  );

test('status.storage says where the database lives: opfs by default, memory when asked', async () => {
  const ctx = await launch();
  const page = await loadPage(ctx);
  assert.deepEqual(await tryOpen(page, 'kept', {}), { storage: 'opfs' });
  await page.evaluate(() => window.db.close());
  assert.deepEqual(await tryOpen(page, 'kept', { storage: 'memory' }), { storage: 'memory' });
  await page.evaluate(() => window.db.close());
  assert.equal((await tryOpen(page, 'kept', { storage: 'disk' })).code, 'BAD_ARGUMENT');
  await ctx.close();
});

test(
  'without OPFS, open fails at once naming what is missing; storage: best runs in memory, syncs, and says so',
  { skip: only('firefox', 'Firefox switches OPFS off with a preference (dom.fs.enabled): a real engine without it') },
  async () => {
    const ctx = await launch(undefined, { prefs: { 'dom.fs.enabled': false } });
    const page = await loadPage(ctx);
    const started = Date.now();
    const refused = await tryOpen(page, 'nostore', {});
    const ms = Date.now() - started;
    assert.equal(refused.code, 'STORAGE_UNAVAILABLE', JSON.stringify(refused));
    assert.match(refused.message, /Origin Private File System|sync access handles/);
    assert.match(refused.message, /storage: 'best'/, 'says what to do');
    assert.ok(ms < 5_000, `failed in ${ms} ms, not after the retries for a busy file`);

    assert.deepEqual(await tryOpen(page, 'nostore', { storage: 'best' }), { storage: 'memory' });
    await page.evaluate(async () => {
      await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), 'Mo', 'm@x']);
      await window.db.sync();
    });
    await eventually(async () => (await page.evaluate(() => window.db.status.pending)) === 0, 10_000, 'uploaded from memory');
    await ctx.close();
  },
);
