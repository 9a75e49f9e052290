// oversync-web in a real headless browser (Chromium; Firefox ESR with OVERSYNC_BROWSER=firefox) against the real server and PostgreSQL (issue 5).

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SAME_PROFILE, cleanup, eventually, except, launch, opfsFiles as opfs, profileDir } from './browser.mjs';
import { root, startOrigin, startSyncServer } from './stack.mjs';

let sync;
let web;

before(async () => {
  sync = await startSyncServer();
  web = await startOrigin(sync.url, {
    '/oversync-web/': path.join(root, 'npm/dist'),
    '/kysely/': path.join(root, 'npm/node_modules/kysely/dist'),
    '/': path.join(root, 'tests/browser/pages'),
  });
});

after(async () => {
  await cleanup();
  await web?.stop();
  await sync?.stop();
});

/** A page of `context` with the test app loaded (no database open yet). */
async function loadPage(context) {
  const page = await context.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  return page;
}

/** A page of `context` with the test app loaded and `username`'s database open. */
async function openPage(context, username, extra = {}) {
  const page = await loadPage(context);
  await page.evaluate(([u, x]) => window.openDb(u, x), [username, extra]);
  return page;
}

const addPost = (page, title) =>
  page.evaluate(async (title) => {
    const author = window.uuid();
    await window.db.transaction(async (tx) => {
      await tx.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [author, 'Ann', 'ann@example.com']);
      await tx.exec('INSERT INTO posts (id, title, content, author_id) VALUES (?, ?, ?, ?)', [window.uuid(), title, 'text', author]);
    });
  }, title);

/** Writes `n` users in one transaction on `page` and uploads them. */
const seedUsers = (page, n) =>
  page.evaluate(async (n) => {
    await window.db.transaction(async (tx) => {
      for (let i = 0; i < n; i++) {
        await tx.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), `u${i}`, 'e']);
      }
    });
    await window.db.sync();
  }, n);


const titles = (page) =>
  page.evaluate(async () => (await window.db.query('SELECT title FROM posts ORDER BY title')).map((r) => r.title));

test('data written in a page survives a reload of the same profile (OPFS)', { skip: except('webkit', SAME_PROFILE) }, async () => {
  const dir = profileDir();
  let ctx = await launch(dir);
  let page = await openPage(ctx, 'reload', { autoSync: false });
  await addPost(page, 'kept');
  await page.reload();
  await page.waitForFunction(() => window.ready);
  await page.evaluate(() => window.openDb('reload', { autoSync: false }));
  assert.deepEqual(await titles(page), ['kept']);
  await ctx.close();
  // A new browser process on the same profile directory still has it: it is on disk, not in memory.
  ctx = await launch(dir);
  page = await openPage(ctx, 'reload', { autoSync: false });
  assert.deepEqual(await titles(page), ['kept']);
  assert.equal((await page.evaluate(() => window.db.status)).pending, 2, 'the unsent changes are still queued');
  await ctx.close();
});

test('two profiles of one user sync through the server, and an unreachable server only delays', async () => {
  const [a, b] = [await launch(), await launch()];
  const pa = await openPage(a, 'two');
  const pb = await openPage(b, 'two');
  await addPost(pa, 'from A');
  await eventually(async () => (await titles(pb)).includes('from A'), 20_000, 'A → B');

  web.cut();
  await addPost(pb, 'while down');
  await eventually(async () => {
    const s = await pb.evaluate(() => window.db.status);
    return s.pending === 2 && s.lastError?.code === 'NETWORK' && s;
  }, 20_000, 'B queues while the server is unreachable');
  web.restore();
  await eventually(async () => (await titles(pa)).includes('while down'), 30_000, 'B → A after the server returns');
  // A can see the row before B's cycle (upload, then download) has ended and published its status.
  await eventually(async () => (await pb.evaluate(() => window.db.status)).pending === 0, 20_000, 'B drained');
  await a.close();
  await b.close();
});

test('a live query fires for local and for synced writes, and stops after unsubscribe', async () => {
  const [a, b] = [await launch(), await launch()];
  const pa = await openPage(a, 'live');
  const pb = await openPage(b, 'live');
  await pa.evaluate(() => {
    window.unsub = window.db.subscribe('SELECT title FROM posts ORDER BY title', [], (rows) =>
      window.log.live.push(rows.map((r) => r.title)),
    );
  });
  await eventually(() => pa.evaluate(() => window.log.live.length === 1), 5_000, 'first result');
  await addPost(pa, 'local');
  await eventually(() => pa.evaluate(() => window.log.live.at(-1).includes('local')), 5_000, 'local write');
  await addPost(pb, 'synced');
  await eventually(() => pa.evaluate(() => window.log.live.at(-1).includes('synced')), 20_000, 'synced write');
  const n = await pa.evaluate(() => {
    window.unsub();
    return window.log.live.length;
  });
  await addPost(pa, 'after');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await pa.evaluate(() => window.log.live.length), n);
  await a.close();
  await b.close();
});

test('a live query calls back only when its rows change; throttleMs folds a burst of writes into one re-run', async () => {
  const ctx = await launch();
  const page = await openPage(ctx, 'quiet');
  const r = await page.evaluate(async () => {
    const settle = () => new Promise((res) => setTimeout(res, 300));
    const seen = [];
    const unsub = window.db.subscribe('SELECT title FROM posts ORDER BY title', [], (rows) => seen.push(rows.map((x) => x.title)));
    await settle();
    const author = window.uuid();
    const post = window.uuid();
    await window.db.transaction(async (tx) => {
      await tx.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [author, 'Q', 'q@x']);
      await tx.exec('INSERT INTO posts (id, title, content, author_id) VALUES (?, ?, ?, ?)', [post, 'one', 'c', author]);
    });
    await settle();
    const afterInsert = seen.length;
    // Same table, same result: the query re-runs and calls nothing.
    await window.db.exec('UPDATE posts SET content = ? WHERE id = ?', ['edited', post]);
    await settle();
    const afterNoop = seen.length;
    await window.db.exec('UPDATE posts SET title = ? WHERE id = ?', ['two', post]);
    await settle();
    unsub();
    const throttled = [];
    const unsub2 = window.db.subscribe('SELECT count(*) AS n FROM posts', [], (rows) => throttled.push(rows[0].n), { throttleMs: 400 });
    await settle();
    for (let i = 0; i < 5; i++) {
      await window.db.exec('INSERT INTO posts (id, title, content, author_id) VALUES (?, ?, ?, ?)', [window.uuid(), `b${i}`, 'c', author]);
    }
    await new Promise((res) => setTimeout(res, 900));
    unsub2();
    return { seen, afterInsert, afterNoop, throttled };
  });
  assert.deepEqual(r.seen, [[], ['one'], ['two']], JSON.stringify(r));
  assert.equal(r.afterNoop, r.afterInsert, 'an update that leaves the rows as they were calls nothing');
  assert.equal(r.throttled.at(-1), 6, JSON.stringify(r.throttled));
  assert.ok(r.throttled.length <= 3, `five writes in a burst, ${r.throttled.length} callbacks: ${r.throttled}`);
  await ctx.close();
});

test('status: hasSynced and lastSyncedAt are kept in the database and survive a reload', { skip: except('webkit', SAME_PROFILE) }, async () => {
  const dir = profileDir();
  let ctx = await launch(dir);
  let page = await openPage(ctx, 'kept', { autoSync: false });
  const fresh = await page.evaluate(() => window.db.status);
  assert.deepEqual([fresh.hasSynced, fresh.lastSyncedAt], [false, null]);
  const synced = await page.evaluate(async () => (await window.db.sync()).lastSyncedAt);
  assert.ok(synced, 'a sync sets lastSyncedAt');
  await ctx.close();
  ctx = await launch(dir);
  page = await openPage(ctx, 'kept', { autoSync: false });
  const after = await eventually(
    () => page.evaluate(() => (window.db.status.hasSynced ? window.db.status : null)),
    10_000,
    'the kept status',
  );
  assert.equal(after.lastSyncedAt, synced, 'the same time, read from the database, before any new sync');
  await ctx.close();
});

test('waitForFirstSync resolves after hydration and a first cycle, and rejects with the code of a cycle that cannot succeed', async () => {
  const ctx = await launch();
  const page = await openPage(ctx, 'ready');
  const ok = await page.evaluate(async () => {
    const s = await window.db.waitForFirstSync();
    return [s.hydrated, s.hasSynced];
  });
  assert.deepEqual(ok, [true, true]);
  const refused = await page.evaluate(async () => {
    const { INIT } = await import('./app.js');
    const db = await window.SyncClient.open({ name: 'ready-forged', user: 'user-forged', url: location.origin,
      serverSchema: 'business', tables: ['users', 'posts'], init: INIT, auth: 'not-a-valid-token', syncIntervalMs: 200 });
    try {
      await db.waitForFirstSync();
      return 'resolved';
    } catch (e) {
      return e.code;
    } finally {
      await db.close();
    }
  });
  assert.equal(refused, 'UNAUTHORIZED');
  await ctx.close();
});

test('two tabs of one profile share the database; closing the owner hands over; a reload storm is harmless', async () => {
  const ctx = await launch();
  const t1 = await openPage(ctx, 'tabs');
  const t2 = await openPage(ctx, 'tabs');
  const owners = async (...pages) => Promise.all(pages.map((p) => p.evaluate(() => window.db.status.owner)));
  assert.deepEqual(await owners(t1, t2), [true, false]);
  await addPost(t1, 'tab 1');
  await addPost(t2, 'tab 2');
  assert.deepEqual(await titles(t1), ['tab 1', 'tab 2']);
  assert.deepEqual(await titles(t2), ['tab 1', 'tab 2']);

  await t1.close();
  await eventually(async () => (await owners(t2))[0], 20_000, 'tab 2 takes over');
  await addPost(t2, 'after handover');
  assert.deepEqual(await titles(t2), ['after handover', 'tab 1', 'tab 2']);

  const t3 = await openPage(ctx, 'tabs');
  // Ten rapid refreshes (from inside the page, like a user holding F5), the owner tab among them.
  const refresh = (p) => p.evaluate(() => location.reload()).catch(() => undefined);
  for (let i = 0; i < 10; i++) {
    await refresh(t3);
    if (i % 2) await refresh(t2);
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 80));
  }
  for (const p of [t2, t3]) {
    await p.waitForLoadState();
    await p.waitForFunction(() => window.ready);
    await p.evaluate(() => window.openDb('tabs'));
  }
  await addPost(t3, 'after storm');
  assert.deepEqual(await titles(t2), ['after handover', 'after storm', 'tab 1', 'tab 2']);
  await eventually(async () => (await t2.evaluate(() => window.db.sync())).pending === 0, 20_000, 'synced');
  await ctx.close();
});

test('errors carry stable codes; a throwing transaction rolls back', async () => {
  const ctx = await launch();
  const page = await openPage(ctx, 'errors', { autoSync: false });
  const codes = await page.evaluate(async () => {
    const code = (p) => p.then(() => 'ok', (e) => `${e.name}:${e.code}`);
    const id = window.uuid();
    const id2 = window.uuid();
    await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [id, 'a', 'b']);
    const rolledBack = await window.db
      .transaction(async (tx) => {
        await tx.exec('UPDATE users SET name = ? WHERE id = ?', ['changed', id]);
        throw new Error('app failure');
      })
      .catch((e) => e.message);
    return {
      constraint: await code(window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [id, 'a', 'b'])),
      syntax: await code(window.db.query('SELEC 1')),
      param: await code(window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [id, {}, 'b'])),
      rolledBack,
      name: (await window.db.query('SELECT name FROM users WHERE id = ?', [id]))[0].name,
      badOpen: await code(window.SyncClient.open({ name: 'x', user: '', url: 'http://x', tables: [], auth: 't' })),
      // A script that fails after its BEGIN must not leave a transaction open behind the app's back.
      script: await code(
        window.db.execScript(`BEGIN; INSERT INTO users (id, name, email) VALUES ('${id2}', 'x', 'y');
          INSERT INTO users (id, name, email) VALUES ('${id}', 'dup', 'b'); COMMIT;`),
      ),
      scriptRolledBack: (await window.db.query('SELECT count(*) AS n FROM users WHERE id = ?', [id2]))[0].n === 0,
      strayBegin: await code(window.db.exec('BEGIN')),
      stillWritable: await code(window.db.exec('UPDATE users SET name = ? WHERE id = ?', ['b', id])),
    };
  });
  assert.deepEqual(codes, {
    constraint: 'OversyncError:SQLITE_CONSTRAINT',
    syntax: 'OversyncError:SQLITE_ERROR',
    param: 'OversyncError:BAD_ARGUMENT',
    rolledBack: 'app failure',
    name: 'a',
    badOpen: 'OversyncError:BAD_ARGUMENT',
    script: 'OversyncError:SQLITE_CONSTRAINT',
    scriptRolledBack: true,
    strayBegin: 'OversyncError:BAD_ARGUMENT',
    stillWritable: 'ok',
  });
  await ctx.close();
});

test('errors keep sqliteCode in every tab; db.exec inside transaction() is refused at once, reads and live queries wait', async () => {
  const ctx = await launch();
  const owner = await openPage(ctx, 'codes', { autoSync: false });
  const other = await openPage(ctx, 'codes', { autoSync: false });
  const duplicate = (page) =>
    page.evaluate(async () => {
      const id = window.uuid();
      await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [id, 'a', 'b']);
      return window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [id, 'a', 'b']).then(
        () => 'ok',
        (e) => [e.code, e.sqliteCode],
      );
    });
  assert.equal((await other.evaluate(() => window.db.status)).owner, false);
  // 1555: SQLITE_CONSTRAINT_PRIMARYKEY, from the owner's worker and through it from another tab.
  assert.deepEqual(await duplicate(owner), ['SQLITE_CONSTRAINT', 1555]);
  assert.deepEqual(await duplicate(other), ['SQLITE_CONSTRAINT', 1555]);

  const r = await owner.evaluate(async () => {
    const id = window.uuid();
    const live = [];
    const unsub = window.db.subscribe('SELECT count(*) AS n FROM users WHERE name = ?', ['in tx'], (rows) => live.push(rows[0].n));
    await new Promise((res) => setTimeout(res, 300));
    let reading;
    const started = performance.now();
    const inside = await window.db.transaction(async (tx) => {
      await tx.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), 'in tx', 'e']);
      // A read from elsewhere in the page (not awaited here) is not refused: it waits for the commit.
      reading = window.db.query('SELECT count(*) AS n FROM users WHERE name = ?', ['in tx']);
      return window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [id, 'outside', 'e']).then(
        () => 'ran',
        (e) => [e.code, e.message.includes('tx.exec')],
      );
    });
    const ms = performance.now() - started;
    const read = (await reading)[0].n;
    await new Promise((res) => setTimeout(res, 500));
    unsub();
    const n = (await window.db.query('SELECT count(*) AS n FROM users WHERE id = ?', [id]))[0].n;
    const afterwards = await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), 'after', 'e']);
    return { inside, ms, n, afterwards: afterwards.changes, read, live };
  });
  assert.equal(r.read, 1, 'a read made during the transaction waited for it and saw its commit');
  assert.deepEqual(r.live, [0, 1], 'a live query open across the transaction re-ran after the commit');
  assert.deepEqual(r.inside, ['BAD_ARGUMENT', true]);
  assert.ok(r.ms < 2000, `refused at once, not after the 10 s rollback: ${r.ms} ms`);
  assert.equal(r.n, 0, 'the refused write never ran');
  assert.equal(r.afterwards, 1, 'the client works again after the transaction');
  await ctx.close();
});

test('signOut uploads what is pending, closes every tab and deletes the files; the next user of the profile finds nothing', async () => {
  const ctx = await launch();
  const owner = await openPage(ctx, 'leaver');
  const other = await openPage(ctx, 'leaver');
  assert.equal((await other.evaluate(() => window.db.status)).owner, false);
  await addPost(owner, 'sent');
  await owner.evaluate(() => window.db.sync());
  await owner.evaluate(() => window.db.simulateOffline(true));
  await addPost(other, 'queued');

  // Offline: the pending changes cannot be uploaded, so nothing happens and both tabs keep working.
  const refused = await other.evaluate(() => window.db.signOut().then(() => 'signed out', (e) => e.code));
  assert.equal(refused, 'NETWORK');
  assert.deepEqual(await titles(owner), ['queued', 'sent']);
  assert.ok((await opfs(owner)).some((f) => f.includes('leaver')), 'the files are still there');

  // Online again, from the tab that does not own the database: both changes go up, then everything goes.
  await owner.evaluate(() => window.db.simulateOffline(false));
  await other.evaluate(() => window.db.signOut());
  assert.deepEqual(await opfs(other), [], 'nothing of the user is left in OPFS');
  assert.equal(await owner.evaluate(() => window.log.signedOut), 1, "the owner tab's onSignedOut was called");
  assert.equal(await other.evaluate(() => window.log.signedOut), 0, 'the tab that signed out is not told again');
  assert.equal(await owner.evaluate(() => window.db.query('SELECT 1').then(() => 'open', (e) => e.code)), 'CLOSED');

  // Another user in the same profile sees nothing of the first; the first, back, gets both posts from the server.
  await owner.evaluate(() => window.openDb('stranger'));
  assert.deepEqual(await titles(owner), []);
  assert.ok((await opfs(owner)).every((f) => !f.includes('leaver')));
  await other.evaluate(() => window.openDb('leaver'));
  await eventually(async () => (await titles(other)).length === 2, 20_000, 'the uploaded posts, hydrated again');
  assert.deepEqual(await titles(other), ['queued', 'sent']);

  // keepPending: false discards what is pending, even offline; the server never sees it.
  await other.evaluate(() => window.db.simulateOffline(true));
  await addPost(other, 'discarded');
  await other.evaluate(() => window.db.signOut({ keepPending: false }));
  assert.ok((await opfs(other)).every((f) => !f.includes('leaver')));

  // deleteDatabase: refused while a tab has the database open, done once it is closed.
  const busy = await owner.evaluate(() => window.SyncClient.deleteDatabase('journal', 'user-stranger').then(() => 'deleted', (e) => e.code));
  assert.equal(busy, 'BUSY');
  await owner.evaluate(async () => {
    await window.db.close();
    await window.SyncClient.deleteDatabase('journal', 'user-stranger');
  });
  assert.deepEqual(await opfs(owner), []);
  await ctx.close();

  const fresh = await launch();
  const again = await openPage(fresh, 'leaver');
  await eventually(async () => (await titles(again)).length === 2, 20_000, 'hydrated on a new profile');
  assert.deepEqual(await titles(again), ['queued', 'sent'], 'the discarded post never reached the server');
  await fresh.close();
});

test('rejections: a change to a table the server does not sync is listed, can be discarded (gone locally) or retried', async () => {
  const ctx = await launch();
  const page = await loadPage(ctx);
  await page.evaluate(async () => {
    const { INIT } = await import('./app.js');
    // The database has synced before with the server's tables (a first sync naming a table the server does not
    // sync fails with CONFIG instead: status.test.mjs); then the app syncs a table the server does not.
    await window.openDb('rejected', { autoSync: false });
    await window.db.sync();
    await window.db.close();
    await window.openDb('rejected', {
      autoSync: false,
      tables: ['users', 'posts', 'notes'],
      init: `${INIT} CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, body TEXT);`,
    });
    await window.db.exec('INSERT INTO notes (id, body) VALUES (?, ?), (?, ?)', [window.uuid(), 'one', window.uuid(), 'two']);
    await window.db.sync();
  });
  const list = await page.evaluate(() => window.db.rejections());
  assert.deepEqual(list.map((r) => [r.table, r.reason]), [['notes', 'unregistered_table'], ['notes', 'unregistered_table']]);
  assert.deepEqual((await page.evaluate(() => window.db.status)).rejections.map((r) => r.id), list.map((r) => r.id));
  const r = await page.evaluate(async ([a, b]) => {
    const discarded = await window.db.discardRejected(a.id);
    const notes = (await window.db.query('SELECT body FROM notes')).map((n) => n.body);
    const retried = await window.db.retryRejected(b.id);
    const pending = window.db.status.pending;
    await window.db.sync();
    return { discarded, notes, retried, pending, again: await window.db.retryRejected(a.id), left: await window.db.rejections() };
  }, list);
  assert.equal(r.discarded, true);
  assert.equal(r.notes.length, 1, 'the discarded note is gone locally (the server never had it)');
  assert.equal(r.retried, true);
  assert.equal(r.pending, 1, 'the retried row is queued again');
  assert.equal(r.again, false, 'an id already handled');
  assert.deepEqual(r.left.map((x) => x.pk), [list[1].pk], 'sent again, and rejected again by this server');
  await ctx.close();
});

test('logger: sync cycles with timings in every tab, filtered by the logLevel of each tab; failures carry their code', async () => {
  const ctx = await launch();
  const open = async (level) => {
    const page = await loadPage(ctx);
    await page.evaluate((logLevel) => {
      window.log.lines = [];
      return window.openDb('logged', { autoSync: false, logLevel, logger: (e) => window.log.lines.push(e) });
    }, level);
    return page;
  };
  const owner = await open('debug');
  const other = await open(undefined);
  await addPost(other, 'logged');
  await other.evaluate(() => window.db.sync());
  await owner.evaluate(() => window.db.simulateOffline(true));
  await other.evaluate(() => window.db.sync().catch(() => undefined));
  const lines = (page) => page.evaluate(() => window.log.lines.map(({ level, message, data, at }) => ({ level, message, data, at })));
  await eventually(async () => (await lines(other)).some((l) => l.message === 'sync cycle failed'), 5_000, 'the failure line');
  const mine = await lines(owner);
  const theirs = await lines(other);
  assert.ok(mine.some((l) => l.level === 'debug' && l.message === 'sync cycle start'), 'debug lines at debug level');
  assert.ok(theirs.every((l) => l.level !== 'debug'), 'the default level is info');
  const done = theirs.find((l) => l.message.endsWith('sync cycle done'));
  assert.ok(done && done.level === 'info' && typeof done.data.ms === 'number' && done.data.uploaded === 2 && done.data.pending === 0, JSON.stringify(done));
  const failed = theirs.find((l) => l.message === 'sync cycle failed');
  assert.equal(failed.data.code, 'NETWORK');
  assert.ok(theirs.every((l) => typeof l.at === 'number'));
  const bad = await owner.evaluate(() => window.openDb('logged', { logLevel: 'loud' }).then(() => 'opened', (e) => e.code));
  assert.equal(bad, 'BAD_ARGUMENT');
  await ctx.close();
});

test('Kysely dialect and defineSchema: typed queries, RETURNING, transactions, live queries through one worker; a schema that does not match SQLite is refused', async () => {
  const ctx = await launch();
  const page = await loadPage(ctx);
  const r = await page.evaluate(async () => {
    const { Kysely } = await import('kysely');
    const { OversyncDialect, liveQuery } = await import('/oversync-web/kysely.js');
    const { defineSchema } = await import('/oversync-web/index.js');
    const schema = defineSchema({
      users: { id: 'text', name: 'text', email: 'text', created_at: 'text?', updated_at: 'text?' },
      posts: { id: 'text', title: 'text', content: 'text', author_id: 'text?', created_at: 'text?', updated_at: 'text?' },
    });
    await window.openDb('kysely', { tables: undefined, schema, autoSync: false });
    const client = window.db;
    const db = new Kysely({ dialect: new OversyncDialect({ client }) });
    const live = [];
    const stop = liveQuery(client, db.selectFrom('posts').select('title').orderBy('title'), (rows) => live.push(rows.map((x) => x.title)));
    const author = crypto.randomUUID();
    const inserted = await db.insertInto('users').values({ id: author, name: 'Kim', email: 'k@x' }).returning(['id', 'name']).executeTakeFirstOrThrow();
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('posts').values({ id: crypto.randomUUID(), title: 'b', content: 'c', author_id: author }).execute();
      await trx.insertInto('posts').values({ id: crypto.randomUUID(), title: 'a', content: 'c', author_id: author }).execute();
    });
    const failed = await db.transaction().execute(async (trx) => {
      await trx.insertInto('posts').values({ id: crypto.randomUUID(), title: 'rolled back', content: 'c' }).execute();
      throw new Error('no');
    }).then(() => 'committed', (e) => e.message);
    const updated = await db.updateTable('posts').set({ content: 'edited' }).where('title', '=', 'a').executeTakeFirst();
    const joined = await db.selectFrom('posts').innerJoin('users', 'users.id', 'posts.author_id')
      .select(['posts.title', 'users.name']).orderBy('posts.title').execute();
    await new Promise((res) => setTimeout(res, 300));
    stop();
    const status = { ...client.status, queued: (await client.query('SELECT count(*) AS n FROM _sync_pending'))[0].n };
    await client.close();
    // The same schema with a column SQLite does not have: the open fails and names it.
    const wrong = defineSchema({ posts: { id: 'text', title: 'text', summary: 'text?', content: 'integer' } });
    const refused = await window.SyncClient.open({ name: 'journal', user: 'user-kysely', url: location.origin, serverSchema: 'business',
      schema: wrong, init: '', auth: 'unused', autoSync: false }).then(() => 'opened', (e) => [e.code, e.message]);
    return { inserted, failed, updated: Number(updated.numUpdatedRows), joined, live, pending: status.pending, status, refused };
  });
  assert.equal(r.inserted.name, 'Kim');
  assert.equal(r.failed, 'no');
  assert.equal(r.updated, 1);
  assert.deepEqual(r.joined, [{ title: 'a', name: 'Kim' }, { title: 'b', name: 'Kim' }]);
  assert.deepEqual(r.live.at(-1), ['a', 'b'], 'the live query saw the committed transaction, not the rolled-back one');
  assert.equal(r.pending, 3, `every write went through capture (1 user, 2 posts), and autoSync: false synced nothing: ${JSON.stringify(r.status)}`);
  assert.equal(r.refused[0], 'CONFIG');
  assert.match(r.refused[1], /posts\.summary: no such column/);
  assert.match(r.refused[1], /posts\.content: declared TEXT \(text\), the schema says integer/);
  await ctx.close();
});

test('conflict option: a JS resolver merges fields from both sides; both profiles converge on the merge', async () => {
  const [a, b] = [await launch(), await launch()];
  const pa = await openPage(a, 'merger', { autoSync: false });
  const pb = await loadPage(b);
  await pb.evaluate(() => {
    window.log.asked = [];
    return window.openDb('merger', {
      autoSync: false,
      conflict: async (ctx) => {
        window.log.asked.push(ctx);
        // Keep the local title and everything else from the server.
        return { ...ctx.server.payload, title: ctx.local.payload.title };
      },
    });
  });
  const row = (page) => page.evaluate(async () => (await window.db.query('SELECT title, content FROM posts'))[0]);
  await addPost(pa, 'original');
  await pa.evaluate(() => window.db.sync());
  await pb.evaluate(() => window.db.sync());
  await pa.evaluate(() => window.db.exec("UPDATE posts SET content = 'from A'"));
  await pa.evaluate(() => window.db.sync());
  await pb.evaluate(() => window.db.exec("UPDATE posts SET title = 'from B'"));
  const status = await pb.evaluate(() => window.db.sync());
  assert.equal(status.pending, 0, 'sync() ends with the decided conflict applied');
  assert.deepEqual(await row(pb), { title: 'from B', content: 'from A' });
  const asked = await pb.evaluate(() => window.log.asked);
  assert.equal(asked.length, 1);
  assert.equal(asked[0].table, 'posts');
  assert.equal(asked[0].server.payload.content, 'from A');
  assert.equal(asked[0].local.op, 'UPDATE');
  assert.equal(asked[0].local.payload.title, 'from B');
  assert.equal(typeof asked[0].local.baseVersion, 'number');
  assert.deepEqual((await pb.evaluate(() => window.db.status)).conflicts.map((c) => c.resolution), ['merge']);
  await pa.evaluate(() => window.db.sync());
  assert.deepEqual(await row(pa), { title: 'from B', content: 'from A' }, 'A converges on the merged row');
  const bad = await pa.evaluate(() => window.SyncClient.open({ name: 'x', user: 'u', url: location.origin, tables: ['users'],
    auth: 't', resolver: 'client-wins', conflict: () => 'server' }).then(() => 'opened', (e) => e.code));
  assert.equal(bad, 'BAD_ARGUMENT');
  await Promise.all([a.close(), b.close()]);
});

test('a tab reloaded in the middle of hydration loses nothing and finishes on the next open', async () => {
  const [a, b] = [await launch(), await launch()];
  const pa = await openPage(a, 'hydrate', { autoSync: false });
  await seedUsers(pa, 3000);
  const pb = await loadPage(b);
  // Start hydrating, and reload as soon as some rows have landed.
  await pb.evaluate(() => window.openDb('hydrate', { autoSync: false }).then(() => void window.db.sync().catch(() => {})));
  await eventually(() => pb.evaluate(async () => (await window.db.query('SELECT count(*) AS n FROM users'))[0].n > 0), 20_000, 'rows arriving');
  await pb.reload();
  await pb.waitForFunction(() => window.ready);
  const n = await pb.evaluate(async () => {
    await window.openDb('hydrate', { autoSync: false });
    await window.db.sync();
    return (await window.db.query('SELECT count(*) AS n FROM users'))[0].n;
  });
  assert.equal(n, 3000);
  await a.close();
  await b.close();
});

/** Starts recording the page's status progress fields at every status event. */
const trackProgress = (page) =>
  page.evaluate(() => {
    window.log.progress = [];
    window.db.onStatus(() => {
      const s = window.db.status;
      window.log.progress.push({ uploading: s.uploading, uploaded: s.uploaded, downloading: s.downloading, hydration: s.hydration });
    });
  });

test('hydration pages start small and grow in the browser (hydrationPageBudgetMs: 0 keeps them at 1000 rows); status reports upload and hydration progress', async () => {
  const [a, b, c] = [await launch(), await launch(), await launch()];
  const pa = await openPage(a, 'paced', { autoSync: false });
  await trackProgress(pa);
  await seedUsers(pa, 3000);
  const up = await pa.evaluate(() => window.log.progress);
  assert.ok(up.some((p) => p.uploading && p.uploaded > 0 && p.uploaded < 3000), `upload progress shown mid-way: ${JSON.stringify(up.slice(0, 5))}`);
  assert.deepEqual(up.at(-1), { uploading: false, uploaded: 0, downloading: false, hydration: null });
  // The limits the database worker asked for, as the origin forwarded them (since `from`).
  const limits = (from) =>
    web.requests.slice(from).flatMap((u) => (u.startsWith('/sync/snapshot?') ? [Number(new URL(u, web.origin).searchParams.get('limit'))] : []));
  const hydrate = async (context, extra) => {
    const from = web.requests.length;
    const page = await openPage(context, 'paced', { autoSync: false, ...extra });
    await trackProgress(page);
    await page.evaluate(() => window.db.sync());
    const seen = await page.evaluate(() => window.log.progress);
    const counts = seen.flatMap((p) => (p.hydration ? [p.hydration.downloaded] : []));
    assert.ok(counts.some((n) => n > 0 && n < 3000), `hydration progress shown mid-way: ${counts}`);
    assert.ok(seen.filter((p) => p.hydration).every((p) => p.downloading), 'a hydration is downloading');
    assert.equal(seen.at(-1).hydration, null, 'and ends');
    assert.equal(await page.evaluate(async () => (await window.db.query('SELECT count(*) AS n FROM users'))[0].n), 3000);
    return limits(from);
  };
  const paced = await hydrate(b, {});
  assert.equal(paced[0], 100, `first page small: ${paced}`);
  assert.ok(paced.some((l) => l > 100) && paced.every((l) => l >= 100 && l <= 1000), `${paced}`);
  const fixed = await hydrate(c, { hydrationPageBudgetMs: 0 });
  assert.ok(fixed.length > 0 && fixed.every((l) => l === 1000), `${fixed}`);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('auth: a rejected token is refreshed through the callback once; each user has their own database file', async () => {
  const ctx = await launch();
  const page = await loadPage(ctx);
  const r = await page.evaluate(async () => {
    const { INIT } = await import('./app.js');
    const calls = [];
    const open = (username, auth) =>
      window.SyncClient.open({ name: 'auth', user: `user-${username}`, url: location.origin, serverSchema: 'business',
        tables: ['users', 'posts'], init: INIT, autoSync: false, auth });
    const signin = async (username, deviceId) =>
      (await (await fetch('/signin', { method: 'POST', body: JSON.stringify({ username, device_id: deviceId }) })).json()).token;
    let db = await open('ivy', async ({ deviceId, refresh }) => {
      calls.push(refresh);
      return refresh ? signin('ivy', deviceId) : 'expired-or-forged';
    });
    await db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), 'Ivy', 'i@x']);
    const status = await db.sync();
    await db.close();
    db = await open('jay', ({ deviceId }) => signin('jay', deviceId));
    const jay = (await db.query('SELECT count(*) AS n FROM users'))[0].n;
    await db.close();
    db = await open('ivy', ({ deviceId }) => signin('ivy', deviceId));
    const ivy = (await db.query('SELECT count(*) AS n FROM users'))[0].n;
    await db.close();
    return { calls, pending: status.pending, lastError: status.lastError, jay, ivy };
  });
  assert.deepEqual(r, { calls: [false, true], pending: 0, lastError: null, jay: 0, ivy: 1 });
  await ctx.close();
});

test('interactive transactions during a hydration: the hydration waits for each, nothing fails or is lost', async () => {
  const [a, b] = [await launch(), await launch()];
  const pa = await openPage(a, 'hydrate-tx', { autoSync: false });
  await seedUsers(pa, 6000);
  const pb = await openPage(b, 'hydrate-tx', { autoSync: false });
  const r = await pb.evaluate(async () => {
    const hydration = window.db.sync().then(() => null, (e) => `${e.code}: ${e.message}`);
    let done = false;
    hydration.then(() => (done = true));
    // Transactions that stay open across tasks, back to back while the pages arrive.
    let written = 0;
    while (!done && written < 200) {
      await window.db.transaction(async (tx) => {
        await tx.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), 'local', 'l']);
        await new Promise((r) => setTimeout(r, 5));
      });
      written++;
    }
    const error = await hydration;
    await window.db.sync();
    const [{ n }] = await window.db.query('SELECT count(*) AS n FROM users');
    return { error, written, n };
  });
  assert.equal(r.error, null);
  assert.ok(r.written > 0, 'transactions ran during the hydration');
  assert.equal(r.n, 6000 + r.written);
  const server = await pa.evaluate(async () => {
    await window.db.sync();
    return (await window.db.query('SELECT count(*) AS n FROM users'))[0].n;
  });
  assert.equal(server, r.n, 'the local writes were captured and uploaded');
  await a.close();
  await b.close();
});
