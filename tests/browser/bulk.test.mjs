// Bulk writes (issue 34 item 12): `execMany` runs one statement for many parameter sets in one worker message,
// all or nothing, inside or outside a transaction; the rows are captured and synced like any write. Its speed is
// P12 in bench/browser/run.mjs (bench/results/browser-bulk.md).

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cleanup, eventually, launch } from './browser.mjs';
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

async function openPage(username) {
  const ctx = await launch();
  const page = await ctx.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  await page.evaluate((u) => window.openDb(u), username);
  await page.evaluate(() => window.db.waitForFirstSync());
  return { ctx, page };
}

const count = (page) => page.evaluate(async () => (await window.db.query('SELECT count(*) AS n FROM users'))[0].n);

test('execMany writes many rows in one call, all or nothing, and they sync', async () => {
  const a = await openPage('bulk');
  const r = await a.page.evaluate(async () => {
    const sql = 'INSERT INTO users (id, name, email) VALUES (?, ?, ?)';
    const rows = Array.from({ length: 2000 }, (_, i) => [crypto.randomUUID(), `u${i}`, 'e']);
    const done = await window.db.execMany(sql, rows);
    // Named parameters too.
    const named = await window.db.execMany('INSERT INTO users (id, name, email) VALUES (:id, :name, :email)', [
      { ':id': crypto.randomUUID(), ':name': 'n1', ':email': 'e' },
      { ':id': crypto.randomUUID(), ':name': 'n2', ':email': 'e' },
    ]);
    // Row 3 repeats row 0's key: nothing of the call is kept, and the error names the row.
    const dup = crypto.randomUUID();
    let failed = null;
    try {
      await window.db.execMany(sql, [[dup, 'a', 'e'], [crypto.randomUUID(), 'b', 'e'], [crypto.randomUUID(), 'c', 'e'], [dup, 'd', 'e']]);
    } catch (e) {
      failed = { code: e.code, message: e.message };
    }
    let bad = null;
    try {
      await window.db.execMany(sql, 'not rows');
    } catch (e) {
      bad = e.code;
    }
    // Inside a transaction: rolled back with it.
    let rolledBack = null;
    try {
      await window.db.transaction(async (tx) => {
        await tx.execMany(sql, [[crypto.randomUUID(), 'x', 'e'], [crypto.randomUUID(), 'y', 'e']]);
        throw new Error('changed my mind');
      });
    } catch (e) {
      rolledBack = e.message;
    }
    return { changes: done.changes, named: named.changes, failed, bad, rolledBack };
  });
  assert.equal(r.changes, 2000);
  assert.equal(r.named, 2);
  assert.equal(r.failed?.code, 'SQLITE_CONSTRAINT', JSON.stringify(r));
  assert.match(r.failed.message, /execMany row 3/);
  assert.equal(r.bad, 'BAD_ARGUMENT');
  assert.equal(r.rolledBack, 'changed my mind');
  assert.equal(await count(a.page), 2002, 'the failed call and the rolled-back transaction left nothing');
  await eventually(async () => (await a.page.evaluate(() => window.db.status.pending)) === 0, 20_000, 'uploaded');
  // Another device of the user gets them all.
  const b = await openPage('bulk');
  await eventually(async () => (await count(b.page)) === 2002, 20_000, 'B has every row');
  await Promise.all([a.ctx.close(), b.ctx.close()]);
});

test('a schema without init creates its tables, defaults, indexes and local-only tables; local ones never sync', async () => {
  // Issue 34 item 10 (its client half): the columns are written once, in defineSchema.
  const ctx = await launch();
  const page = await ctx.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  const r = await page.evaluate(async () => {
    const { defineSchema, schemaSql } = await import('/oversync-web/index.js');
    const schema = defineSchema(
      {
        users: { id: 'text', name: 'text', email: 'text', created_at: 'text?', updated_at: 'text?' },
        posts: { id: 'text', title: 'text', content: 'text', author_id: 'text?', created_at: 'text?', updated_at: 'text?' },
        ui_state: { id: 'text', open: 'integer' },
      },
      { local: ['ui_state'], defaults: { ui_state: { open: '0' } }, indexes: { posts: [['author_id'], ['title', 'created_at']] } },
    );
    const token = async ({ deviceId }) => {
      const res = await fetch('/signin', { method: 'POST', body: JSON.stringify({ username: 'schema', device_id: deviceId }) });
      return (await res.json()).token;
    };
    const db = await window.SyncClient.open({ name: 'schema', user: 'user-schema', url: location.origin, serverSchema: 'business', schema, auth: token });
    await db.waitForFirstSync();
    await db.exec('INSERT INTO ui_state (id) VALUES (?)', ['sidebar']);
    await db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), 'n', 'e']);
    await db.sync();
    const out = {
      sql: schemaSql(schema),
      open: (await db.query('SELECT open FROM ui_state'))[0].open,
      indexes: (await db.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'posts' AND sql IS NOT NULL ORDER BY name")).map((x) => x.name),
      pending: db.status.pending,
      rejections: (await db.rejections()).length,
    };
    let nullName = null;
    try {
      await db.exec('INSERT INTO users (id, name, email) VALUES (?, NULL, ?)', [crypto.randomUUID(), 'e']);
    } catch (e) {
      nullName = e.code;
    }
    await db.close();
    return { ...out, nullName };
  });
  assert.match(r.sql, /CREATE TABLE IF NOT EXISTS "users" \("id" TEXT PRIMARY KEY NOT NULL, "name" TEXT NOT NULL, /);
  assert.equal(r.open, 0, 'the default');
  assert.deepEqual(r.indexes, ['posts_author_id_idx', 'posts_title_created_at_idx']);
  assert.equal(r.pending, 0, 'the synced row uploaded; the local table has no pending changes');
  assert.equal(r.rejections, 0, 'the local table was never sent');
  assert.equal(r.nullName, 'SQLITE_CONSTRAINT', 'NOT NULL where the schema says so');
  await ctx.close();
});
