// Where the database lives (issue 35): `status.storage` says it, and a browser without OPFS sync access handles
// is found out at once: `open` fails with STORAGE_UNAVAILABLE naming what is missing (it retried for ~20 s), or,
// asked for `storage: 'best'`, keeps it in IndexedDB (or memory where that is missing too) and says so. Firefox
// can switch OPFS off (`dom.fs.enabled`) and block site storage (cookies blocked), which gives a real engine
// without them; the IndexedDB path is what WebKitGTK takes (no sync access handles off Apple's builds).

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cleanup, engine, eventually, launch, only, opfsFiles } from './browser.mjs';
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

test('status.storage says where the database lives: opfs by default (WebKitGTK: refused at once), idb or memory when asked; persist() asks to keep it', async () => {
  // Firefox asks the user for persistent storage: its preference answers "allow" here.
  const ctx = await launch(undefined, engine === 'firefox' ? { prefs: { 'permissions.default.persistent-storage': 1 } } : {});
  const page = await loadPage(ctx);
  if (engine === 'webkit') {
    // WebKitGTK: no OPFS sync access handles off Apple's builds (nor navigator.storage): OPFS fails at once
    // naming them, `best` settles on IndexedDB, and there is no persistence to ask for.
    const started = Date.now();
    const refused = await tryOpen(page, 'kept', { storage: 'opfs' });
    assert.equal(refused.code, 'STORAGE_UNAVAILABLE', JSON.stringify(refused));
    assert.match(refused.message, /Origin Private File System|sync access handles/);
    assert.ok(Date.now() - started < 5_000, 'at once');
    assert.deepEqual(await tryOpen(page, 'kept', { storage: 'best' }), { storage: 'idb' });
    assert.equal(await page.evaluate(() => window.db.persist()), false);
  } else {
    assert.deepEqual(await tryOpen(page, 'kept', {}), { storage: 'opfs' });
    const persisted = await page.evaluate(async () => [await window.db.persist(), await navigator.storage.persisted()]);
    assert.equal(persisted[0], persisted[1], 'persist() says what the browser decided');
    if (engine === 'firefox') assert.deepEqual(persisted, [true, true]);
  }
  await page.evaluate(() => window.db.close());
  assert.deepEqual(await tryOpen(page, 'kept', { storage: 'memory' }), { storage: 'memory' });
  assert.equal(await page.evaluate(() => window.db.persist()), false, 'nothing to keep in memory');
  await page.evaluate(() => window.db.close());
  assert.deepEqual(await tryOpen(page, 'kept', { storage: 'idb' }), { storage: 'idb' });
  await page.evaluate(() => window.db.close());
  assert.equal((await tryOpen(page, 'kept', { storage: 'disk' })).code, 'BAD_ARGUMENT');
  await ctx.close();
});

test(
  'without OPFS, open fails at once naming what is missing; storage: best keeps it in IndexedDB; blocked site data fails at once; memory syncs',
  { skip: only('firefox', 'Firefox switches OPFS off with a preference (dom.fs.enabled): a real engine without it') },
  async () => {
    let ctx = await launch(undefined, { prefs: { 'dom.fs.enabled': false } });
    let page = await loadPage(ctx);
    const started = Date.now();
    const refused = await tryOpen(page, 'nostore', {});
    const ms = Date.now() - started;
    assert.equal(refused.code, 'STORAGE_UNAVAILABLE', JSON.stringify(refused));
    assert.match(refused.message, /Origin Private File System|sync access handles/);
    assert.match(refused.message, /storage: 'best'/, 'says what to do');
    assert.ok(ms < 5_000, `failed in ${ms} ms, not after the retries for a busy file`);

    assert.deepEqual(await tryOpen(page, 'nostore', { storage: 'best' }), { storage: 'idb' });
    await page.evaluate(() => window.db.close());
    // Asked for memory, a browser without OPFS runs and syncs.
    assert.deepEqual(await tryOpen(page, 'nostore', { storage: 'memory' }), { storage: 'memory' });
    await page.evaluate(async () => {
      await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), 'Mo', 'm@x']);
      await window.db.sync();
    });
    await eventually(async () => (await page.evaluate(() => window.db.status.pending)) === 0, 10_000, 'uploaded from memory');
    await ctx.close();

    // Site data blocked (cookies blocked), a user's setting: Firefox then refuses the worker, Web Locks and
    // BroadcastChannel too, so nothing runs, in memory either; said at once.
    ctx = await launch(undefined, { prefs: { 'network.cookie.cookieBehavior': 2 } });
    page = await loadPage(ctx);
    for (const storage of ['best', 'idb', 'memory']) {
      const blocked = await tryOpen(page, 'nostore', { storage });
      assert.equal(blocked.code, 'STORAGE_UNAVAILABLE', JSON.stringify(blocked));
      assert.match(blocked.message, /blocks site data/);
    }
    await ctx.close();
  },
);

const count = (page) => page.evaluate(async () => (await window.db.query('SELECT count(*) AS n FROM users'))[0].n);
const addUser = (page, name) =>
  page.evaluate((n) => window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), n, `${n}@x`]), name);
/** Whether `user`'s database has pages in IndexedDB (read straight from IndexedDB). */
const inIdb = async (page, user) => (await opfsFiles(page)).includes(`idb:oversync-journal.user-${user}.sqlite3`);

test('storage: idb keeps every answered write through a killed tab, hands over between tabs, and a sign-out deletes it', async () => {
  const ctx = await launch();
  const first = await loadPage(ctx);
  assert.deepEqual(await tryOpen(first, 'idb', { storage: 'idb', autoSync: false }), { storage: 'idb' });
  await addUser(first, 'a');
  await first.evaluate(() =>
    window.db.execMany('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [[window.uuid(), 'b', 'b@x'], [window.uuid(), 'c', 'c@x']]),
  );
  await first.evaluate(() => window.db.transaction(async (tx) => tx.exec('UPDATE users SET name = ? WHERE name = ?', ['B', 'b'])));
  // A second tab writes through the first (the owner); then the owner's tab is killed, without a close.
  const second = await loadPage(ctx);
  assert.deepEqual(await tryOpen(second, 'idb', { storage: 'idb', autoSync: false }), { storage: 'idb' });
  assert.equal(await second.evaluate(() => window.db.status.owner), false);
  await addUser(second, 'd');
  await first.close();
  // The second tab takes over, loading the database from IndexedDB: every answered write is there, unsent.
  await eventually(() => second.evaluate(() => window.db.status.owner), 15_000, 'the second tab owns the database');
  assert.equal(await count(second), 4);
  assert.deepEqual(await second.evaluate(() => window.db.query('SELECT name FROM users ORDER BY name')), [{ name: 'B' }, { name: 'a' }, { name: 'c' }, { name: 'd' }]);
  assert.equal(await second.evaluate(() => window.db.status.pending), 4);
  assert.equal(await second.evaluate(() => window.db.status.storage), 'idb');
  // Uploaded from IndexedDB; a reload reads the acknowledged state, with nothing left to send.
  const synced = await second.evaluate(() => window.db.sync());
  assert.equal(synced.pending, 0, JSON.stringify(synced));
  await second.reload();
  await second.waitForFunction(() => window.ready);
  await tryOpen(second, 'idb', { storage: 'idb', autoSync: false });
  assert.equal(await count(second), 4);
  assert.equal(await second.evaluate(() => window.db.status.pending), 0);
  assert.ok(await inIdb(second, 'idb'), 'the pages are in IndexedDB');
  await second.evaluate(() => window.db.signOut());
  assert.equal(await inIdb(second, 'idb'), false, 'a sign-out leaves nothing in IndexedDB');
  assert.deepEqual(await second.evaluate(() => window.log.errors), []);
  await ctx.close();
});

test(
  'a full quota fails the write that did not fit with STORAGE_FULL, closes the database, and loses nothing answered before it',
  {
    skip: only(
      'firefox',
      'a small quota is a Firefox preference (dom.quotaManager.temporaryStorage.fixedLimit); Chromium ignored the DevTools override (Storage.overrideQuotaForOrigin) here',
    ),
  },
  async () => {
    const ctx = await launch(undefined, { prefs: { 'dom.quotaManager.temporaryStorage.fixedLimit': 8192 } });
    const page = await loadPage(ctx);
    await tryOpen(page, 'full', { storage: 'idb', autoSync: false });
    // Random bytes as base64 (IndexedDB compresses its values, so a repeated letter would hardly count).
    let answered = 0;
    let failure;
    for (let i = 0; i < 60 && !failure; i++) {
      failure = await page.evaluate(
        (n) =>
          window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), `big${n}`, btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(60_000))))]).then(
            () => undefined,
            (e) => ({ code: e.code, message: e.message }),
          ),
        i,
      );
      if (!failure) answered++;
    }
    assert.equal(failure?.code, 'STORAGE_FULL', JSON.stringify(failure));
    assert.match(failure.message, /not kept/);
    assert.ok(answered > 3, `${answered} writes fitted`);
    const after = await page.evaluate(() => window.db.query('SELECT 1').then(() => 'ran', (e) => e.code));
    assert.equal(after, 'STORAGE_FULL', 'the database is closed to every operation');
    assert.ok((await page.evaluate(() => window.log.errors)).some((e) => e.startsWith('STORAGE_FULL')), 'onError heard it');
    await page.evaluate(() => window.db.close());
    await page.close();
    // Opened again (reading needs no room): every answered write is there and queued, the refused one is not.
    const again = await loadPage(ctx);
    assert.deepEqual(await tryOpen(again, 'full', { storage: 'idb', autoSync: false }), { storage: 'idb' });
    assert.equal(await count(again), answered);
    assert.equal(await again.evaluate(() => window.db.status.pending), answered);
    await ctx.close();
  },
);
