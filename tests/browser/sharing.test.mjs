// Shared data (issue 25, docs/sharing.md) through oversync-web in real headless Chromium against the real server:
// a join backfills the team alone, members' concurrent edits conflict and converge, an outsider is refused, and a
// leave purges. Teams are managed through the demo server's team route (its stand-in for an app backend).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cleanup, eventually, launch } from './browser.mjs';
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

const INIT = `
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL,
  author_id TEXT REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED, created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS team_posts (id TEXT PRIMARY KEY, team_id TEXT, title TEXT NOT NULL DEFAULT '',
  content TEXT NOT NULL DEFAULT '', author_name TEXT, created_at TEXT, updated_at TEXT);
`;
const TABLES = ['users', 'posts', { name: 'team_posts', scope: 'team_id' }];

async function token(username, device = 'node') {
  const r = await fetch(`${sync.url}/signin`, { method: 'POST', body: JSON.stringify({ username, device_id: device }) });
  return (await r.json()).token;
}

/** The demo server's team route as `username`: `{ create }`, `{ join }` or `{ leave }`. */
async function team(username, body) {
  const r = await fetch(`${sync.url}/demo/teams`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await token(username)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text).scope;
}

/** Uploads `n` posts of `scope` as `username` (from a device of its own) in batches of 200. */
async function seedTeam(username, scope, n) {
  const t = await token(username, 'seed');
  for (let done = 0; done < n; done += 200) {
    const changes = [];
    for (let i = 0; i < Math.min(200, n - done); i++) {
      const id = randomUUID();
      changes.push({ source_change_id: done + i + 1, schema: 'business', table: 'team_posts', op: 'INSERT', pk: id,
        server_version: 0, payload: { id, team_id: scope, title: `post ${done + i}`, content: 'x' } });
    }
    const r = await fetch(`${sync.url}/sync/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
      body: JSON.stringify({ changes }),
    });
    assert.equal(r.status, 200);
  }
}

async function open(username) {
  const context = await launch();
  const page = await context.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  await page.evaluate(([u, init, tables]) => window.openDb(u, { init, tables }), [username, INIT, TABLES]);
  return { context, page };
}

const q = (page, sql, params = []) => page.evaluate(([s, p]) => window.db.query(s, p), [sql, params]);
const exec = (page, sql, params = []) => page.evaluate(([s, p]) => window.db.exec(s, p), [sql, params]);
const sync_ = (page) => page.evaluate(() => window.db.sync());

test('joining a team of 10,000 posts backfills that team alone; db.scopes() and status.scopes report it', async () => {
  const scope = await team('tina', { create: 'Big team' });
  await seedTeam('tina', scope, 10_000);
  const { context, page } = await open('noah');
  await exec(page, 'INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [randomUUID(), 'noah', 'n@example.com']);
  await sync_(page);
  assert.deepEqual(await page.evaluate(() => window.db.scopes()), []);
  await team('noah', { join: scope });
  await sync_(page);
  const held = await page.evaluate(() => window.db.scopes());
  assert.deepEqual(held, [{ scope, role: 'writer', state: 'held', rows: 10_000 }]);
  assert.equal((await q(page, 'SELECT count(*) AS n FROM team_posts'))[0].n, 10_000);
  assert.equal((await q(page, 'SELECT count(*) AS n FROM users'))[0].n, 1, 'nothing but the team came');
  await eventually(async () => (await page.evaluate(() => window.db.status)).scopes[0]?.rows === 10_000, 10_000, 'status.scopes');
  await context.close();
});

test('two members editing one post conflict and converge; an outsider is refused; leaving purges the team', async () => {
  const scope = await team('ivy', { create: 'Pair' });
  await team('jack', { join: scope });
  const a = await open('ivy');
  const b = await open('jack');
  const id = randomUUID();
  await exec(a.page, 'INSERT INTO team_posts (id, team_id, title) VALUES (?, ?, ?)', [id, scope, 'v1']);
  await sync_(a.page);
  await sync_(b.page);
  assert.deepEqual(await q(b.page, 'SELECT title FROM team_posts'), [{ title: 'v1' }]);
  for (const d of [a, b]) await d.page.evaluate(() => window.db.simulateOffline(true));
  await exec(a.page, 'UPDATE team_posts SET title = ? WHERE id = ?', ['from ivy', id]);
  await exec(b.page, 'UPDATE team_posts SET title = ? WHERE id = ?', ['from jack', id]);
  // Ivy reconnects and uploads first (Jack is still offline, so his automatic cycles cannot go first).
  await a.page.evaluate(() => window.db.simulateOffline(false));
  await sync_(a.page);
  await b.page.evaluate(() => window.db.simulateOffline(false));
  await sync_(b.page);
  await sync_(a.page);
  const [ta, tb] = [await q(a.page, 'SELECT title FROM team_posts'), await q(b.page, 'SELECT title FROM team_posts')];
  assert.deepEqual(ta, tb, 'converged');
  assert.deepEqual(ta, [{ title: 'from ivy' }], 'server wins: the first upload stands');
  const conflicts = (await b.page.evaluate(() => window.db.status)).conflicts;
  assert.equal(conflicts.length, 1);

  // An outsider writing into the team is refused (scope_forbidden, in its rejections) and reads nothing of it.
  const o = await open('kim');
  await exec(o.page, 'INSERT INTO team_posts (id, team_id, title) VALUES (?, ?, ?)', [randomUUID(), scope, 'intruder']);
  await sync_(o.page);
  const rejected = await o.page.evaluate(() => window.db.rejections());
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0].reason, 'scope_forbidden');
  assert.deepEqual(await o.page.evaluate(() => window.db.scopes()), []);
  await sync_(a.page);
  assert.deepEqual(await q(a.page, 'SELECT title FROM team_posts'), [{ title: 'from ivy' }]);

  // Jack leaves: the team's posts are dropped from his device, not deleted for ivy.
  await team('jack', { leave: scope });
  await sync_(b.page);
  assert.deepEqual(await q(b.page, 'SELECT * FROM team_posts'), []);
  await sync_(a.page);
  assert.equal((await q(a.page, 'SELECT count(*) AS n FROM team_posts'))[0].n, 1);
  for (const d of [a, b, o]) await d.context.close();
});

test('a note the backend writes with plain SQL (the demo team admin) appears in an open member\'s page by itself', async () => {
  const scope = await team('lena', { create: 'Pinned' });
  const { context, page } = await open('lena');
  await sync_(page);
  await team('lena', { pin: { team: scope, text: 'standup at ten' } });
  // No sync call: the member's device is told (stream, long-poll or timer) and downloads the captured row.
  await eventually(
    async () => (await q(page, 'SELECT title, author_name FROM team_posts WHERE team_id = ?', [scope]))
      .some((r) => r.title === '📌 standup at ten' && r.author_name === 'team admin'),
    15_000,
    'the pinned note',
  );
  await context.close();
});
