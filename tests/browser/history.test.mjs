// Issue 36 (docs/history.md §4): a browser offline longer than the server keeps tombstones. Its next download is
// answered 410 history_pruned; the engine re-hydrates from the snapshot, keeps and then uploads its pending edit,
// drops the row another device deleted meanwhile, and the app sees a hydration's progress, never an error.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, test } from 'node:test';
import { cleanup, eventually, launch } from './browser.mjs';
import { root, startOrigin, startSyncServer } from './stack.mjs';

const stacks = [];
after(async () => {
  await cleanup();
  for (const s of stacks.reverse()) await s.stop();
});

const mounts = { '/oversync-web/': path.join(root, 'npm/dist'), '/': path.join(root, 'tests/browser/pages') };
const slow = { syncIntervalMs: 10 * 60_000 };

async function openPage(web, context, username) {
  const page = await context.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  await page.evaluate(([u, x]) => window.openDb(u, x), [username, slow]);
  await eventually(() => page.evaluate(() => window.db.status.hydrated), 15_000, 'hydrated');
  return page;
}

const run = (page, sql, params = []) => page.evaluate(([s, p]) => window.db.exec(s, p), [sql, params]);
const titles = (page) =>
  page.evaluate(async () =>
    (await window.db.query("SELECT title FROM posts WHERE title NOT LIKE 'bulk %' ORDER BY title")).map((r) => r.title));
const bulk = (page) => page.evaluate(async () => (await window.db.query("SELECT count(*) AS n FROM posts WHERE title LIKE 'bulk %'"))[0].n);

test('a browser offline past the tombstone retention re-hydrates, keeps its edit and drops what was deleted', async () => {
  const sync = await startSyncServer();
  stacks.push(sync);
  // Two origins in front of one server, so that B alone can be cut off.
  const [webA, webB] = [await startOrigin(sync.url, mounts), await startOrigin(sync.url, mounts)];
  stacks.push(webA, webB);
  const [ca, cb] = [await launch(), await launch()];
  const [a, b] = [await openPage(webA, ca, 'offline-past-retention'), await openPage(webB, cb, 'offline-past-retention')];
  const author = crypto.randomUUID();
  await run(a, 'INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [author, 'Ann', 'ann@example.com']);
  for (const title of ['kept', 'deleted by a', 'edited by b']) {
    await run(a, 'INSERT INTO posts (id, title, content, author_id) VALUES (?, ?, ?, ?)', [crypto.randomUUID(), title, 'text', author]);
  }
  // Enough rows that the re-hydration takes several pages, so that its progress is published (at most every 100 ms).
  await run(a, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000),
                     h(i, x) AS (SELECT i, lower(hex(randomblob(16))) FROM n)
                INSERT INTO posts (id, title, content, author_id)
                SELECT printf('%s-%s-4%s-8%s-%s', substr(x, 1, 8), substr(x, 9, 4), substr(x, 14, 3), substr(x, 18, 3),
                              substr(x, 21, 12)), 'bulk ' || i, 'text', ? FROM h`, [author]);
  await a.evaluate(() => window.db.sync());
  await b.evaluate(() => window.db.sync());
  assert.deepEqual(await titles(b), ['deleted by a', 'edited by b', 'kept']);

  webB.cut();
  await run(b, "UPDATE posts SET title = 'b edited offline' WHERE title = 'edited by b'");
  await run(a, "DELETE FROM posts WHERE title = 'deleted by a'");
  await a.evaluate(() => window.db.sync());
  await run(a, 'INSERT INTO posts (id, title, content, author_id) VALUES (?, ?, ?, ?)', [crypto.randomUUID(), 'later', 'text', author]);
  await a.evaluate(() => window.db.sync());
  // Time passes: everything is older than the horizons of a one-shot compaction with both at 0.
  const database = await eventually(() => sync.database(), 10_000, 'the database URL');
  const out = execFileSync(path.join(process.env.OVERSYNC_BIN_DIR ?? path.join(root, 'target/debug'), 'oversync-server'),
    ['compact', '--config', path.join(root, 'server-edge/demo/demo.toml')], {
      env: { ...process.env, DATABASE_URL: database, JWT_SECRET: 'x'.repeat(32), RUST_LOG: 'warn',
             OVERSYNC_COMPACT_AFTER_S: '0', OVERSYNC_TOMBSTONE_RETENTION_S: '0' },
    }).toString();
  assert.match(out, /1 tombstones removed/, out);

  webB.restore();
  await b.evaluate(() => {
    window.seen = { hydration: false, errors: [] };
    window.db.onStatus(() => {
      const s = window.db.status;
      if (s.hydration) window.seen.hydration = true;
      // The cycles that failed while B was cut left NETWORK as the last error until a cycle succeeds: a status
      // published before that (the cycle starting) still shows it. Any other code is the re-hydration's.
      if (s.lastError && s.lastError.code !== 'NETWORK') window.seen.errors.push(s.lastError.code);
    });
  });
  await b.evaluate(() => window.db.sync());
  // The edit went up with the first cycle's upload; the download re-hydrated.
  const seen = await b.evaluate(() => window.seen);
  assert.deepEqual(seen, { hydration: true, errors: [] });
  assert.deepEqual(await titles(b), ['b edited offline', 'kept', 'later']);
  assert.equal(await bulk(b), 3000);
  assert.equal((await b.evaluate(() => window.db.status)).pending, 0);
  await a.evaluate(() => window.db.sync());
  assert.deepEqual(await titles(a), ['b edited offline', 'kept', 'later']);
  await Promise.all([ca.close(), cb.close()]);
});
