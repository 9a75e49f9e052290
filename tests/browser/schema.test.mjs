// One schema source (issue 34 item 10, its server half): the module that defines the client's tables also gives the
// server's. `oversync-web server-schema` turns it into the PostgreSQL DDL (the server's init_sql) and the
// `[[tables]]` entries; a real server runs on exactly those, and the browser opens with the same module. A row
// written in Chromium lands in PostgreSQL with the column types the schema names, and a backend write in plain SQL
// comes back.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cleanup, eventually, launch } from './browser.mjs';
import { root, startOrigin, startSyncServer } from './stack.mjs';

const SCHEMA = `import { defineSchema } from '../oversync-web/index.js';
export const schema = defineSchema(
  {
    notes: { id: 'uuid', title: 'text', stars: 'integer?', score: 'real?', done: 'boolean', due: 'timestamp?', pic: 'blob?' },
    board_cards: { id: 'uuid', board: 'text?', text: 'text' },
    drafts: { id: 'text', body: 'text' },
  },
  {
    scopes: { board_cards: 'board' },
    local: ['drafts'],
    defaults: { notes: { title: "'untitled'", done: '0' } },
    indexes: { notes: [['due']] },
  },
);
`;

const BASE = `listen = "127.0.0.1:8080"
dev_signin = true
require_exp = true
init_sql = "schema.sql"
`;

let dir;
let sync;
let web;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'oversync-schema-'));
  mkdirSync(path.join(dir, 'app'));
  symlinkSync(path.join(root, 'npm/dist'), path.join(dir, 'oversync-web'));
  writeFileSync(path.join(dir, 'app/schema.mjs'), SCHEMA);
  const cli = path.join(root, 'npm/bin/oversync-web.mjs');
  execFileSync('node', [cli, 'server-schema', 'app/schema.mjs', '--pg-schema', 'app', '--sql', 'schema.sql', '--toml', 'tables.toml'], { cwd: dir, stdio: 'pipe' });
  writeFileSync(path.join(dir, 'server.toml'), BASE + readFileSync(path.join(dir, 'tables.toml'), 'utf8'));
  sync = await startSyncServer({ config: path.join(dir, 'server.toml') });
  web = await startOrigin(sync.url, {
    '/oversync-web/': path.join(root, 'npm/dist'),
    '/app/': path.join(dir, 'app'),
    '/': path.join(root, 'tests/browser/pages'),
  });
});

after(async () => {
  await cleanup();
  await web?.stop();
  await sync?.stop();
});

test('server-schema writes the DDL and the tables of a defineSchema module; a bad one fails naming the rule', () => {
  const sql = readFileSync(path.join(dir, 'schema.sql'), 'utf8');
  assert.match(sql, /CREATE TABLE IF NOT EXISTS app\.notes \(\n  owner_id text NOT NULL,\n  id uuid NOT NULL,\n  title text NOT NULL DEFAULT 'untitled',/);
  assert.match(sql, /done boolean NOT NULL DEFAULT FALSE,\n  due timestamptz,\n  pic bytea,\n  PRIMARY KEY \(owner_id, id\)/);
  assert.match(sql, /CREATE TABLE IF NOT EXISTS app\.board_cards \(\n  id uuid PRIMARY KEY,\n  board text,/);
  assert.match(sql, /CREATE INDEX IF NOT EXISTS notes_due_idx ON app\.notes \(owner_id, due\);/);
  assert.doesNotMatch(sql, /drafts/, 'a local table stays on the device');
  const toml = readFileSync(path.join(dir, 'tables.toml'), 'utf8');
  assert.match(toml, /\[\[tables\]\]\nschema = "app"\ntable = "notes"\nowner_column = "owner_id"/);
  assert.match(toml, /table = "board_cards"\nscope_column = "board"/);

  writeFileSync(path.join(dir, 'app/bad.mjs'), SCHEMA.replace("'uuid', title", "'integer', title"));
  const cli = path.join(root, 'npm/bin/oversync-web.mjs');
  let err;
  try {
    execFileSync('node', [cli, 'server-schema', 'bad.mjs'], { cwd: path.join(dir, 'app'), stdio: 'pipe' });
  } catch (e) {
    err = e;
  }
  assert.equal(err?.status, 2);
  assert.match(String(err.stderr), /notes\.id: a sync key holds a UUID/);
});

test('a client opened with the same module syncs into the generated tables, typed, and a backend write comes back', async () => {
  const ctx = await launch();
  const page = await ctx.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  const id = crypto.randomUUID();
  await page.evaluate(async (id) => {
    const { schema } = await import('/app/schema.mjs');
    const auth = async ({ deviceId }) => {
      const res = await fetch('/signin', { method: 'POST', body: JSON.stringify({ username: 'gen', device_id: deviceId }) });
      return (await res.json()).token;
    };
    const db = await window.SyncClient.open({ name: 'gen', user: 'user-gen', url: location.origin, serverSchema: 'app', schema, auth });
    window.db = db;
    await db.waitForFirstSync();
    await db.exec('INSERT INTO notes (id, stars, score, done, due, pic) VALUES (?, 3, 1.5, 1, ?, ?)', [
      id,
      '2026-12-07T10:00:00Z',
      new Uint8Array([1, 2, 255]),
    ]);
    await db.exec('INSERT INTO drafts (id, body) VALUES (?, ?)', ['d', 'never synced']);
    await db.sync();
  }, id);
  assert.equal(await page.evaluate(() => window.db.status.pending), 0);
  assert.deepEqual(await page.evaluate(() => window.db.rejections()), []);

  const database = await eventually(() => sync.database(), 10_000, 'the database URL');
  const psql = (sql) => execFileSync('psql', [database, '-qAtc', sql]).toString().trim();
  assert.equal(
    psql(`SELECT owner_id, title, stars, score, done, due AT TIME ZONE 'UTC', encode(pic, 'hex') FROM app.notes WHERE id = '${id}'`),
    'user-gen|untitled|3|1.5|t|2026-12-07 10:00:00|0102ff',
  );
  psql(`UPDATE app.notes SET title = 'from the backend', done = false WHERE id = '${id}'`);
  const row = await eventually(
    async () => {
      await page.evaluate(() => window.db.sync());
      const [r] = await page.evaluate((id) => window.db.query('SELECT title, done, due FROM notes WHERE id = ?', [id]), id);
      return r.title === 'from the backend' ? r : null;
    },
    15_000,
    'the backend write reached the device',
  );
  assert.equal(row.done, 0);
  assert.equal(row.due, '2026-12-07T10:00:00Z', 'an unchanged column keeps the device encoding');
  await page.evaluate(() => window.db.close());
  await ctx.close();
});
