// Honest status and errors (issue 34, items 1, 3, 4, 5, 8), in Chromium against the real server: temporary
// failures of the auth callback only delay readiness; the status follows the page going offline at once and says
// when the stream is down; a server that comes back is found within seconds; onError hears of an episode once and
// never of what waiting cures; closing never leaves an unhandled rejection; signOut offline says what is at stake.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cleanup, engine, eventually, except, launch } from './browser.mjs';

const NO_OFFLINE = 'WebKitWebDriver has no offline emulation (the offline queue runs there through simulateOffline in client.test.mjs)';
import { root, startOrigin, startSyncServer } from './stack.mjs';

let sync;
const origins = [];
const mounts = { '/oversync-web/': path.join(root, 'npm/dist'), '/': path.join(root, 'tests/browser/pages') };

before(async () => {
  sync = await startSyncServer();
});

after(async () => {
  await cleanup();
  for (const o of origins) await o.stop();
  await sync?.stop();
});

/** An origin of its own in front of the server (so a test can cut it alone). */
async function origin() {
  const o = await startOrigin(sync.url, mounts);
  origins.push(o);
  return o;
}

/** A page of a fresh profile with the test app loaded, collecting page errors and the worker's console errors. */
async function loadPage(web) {
  const ctx = await launch();
  const page = await ctx.newPage();
  const problems = [];
  // Firefox also reports a refused WebSocket connect as a page error (Chromium logs it as a network failure):
  // the server being away, which these tests cause, not a fault of the page.
  page.on('pageerror', (e) => /can’t establish a connection to the server at ws:/.test(e.message) || problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('worker', (w) => w.on('console', (m) => m.type() === 'error' && problems.push(`worker: ${m.text()}`)));
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  return { ctx, page, problems };
}

const slow = { syncIntervalMs: 10 * 60_000 };
const status = (page) => page.evaluate(() => window.db.status);

test('a temporarily failing auth callback delays waitForFirstSync; a fatal one rejects it', async () => {
  const web = await origin();
  const { ctx, page } = await loadPage(web);
  // The sign-in route fails at the network level for the first 3 s, as an unreachable /signin would.
  web.cut({ path: '/signin' });
  const waited = page.evaluate(async () => {
    const { INIT } = await import('./app.js');
    const errors = [];
    const seen = [];
    window.db = await window.SyncClient.open({
      name: 'auth-flaky', user: 'user-flaky', url: location.origin, serverSchema: 'business', tables: ['users', 'posts'],
      init: INIT, syncIntervalMs: 500, onError: (e) => errors.push(e.code),
      auth: async ({ deviceId }) => {
        const r = await fetch('/signin', { method: 'POST', body: JSON.stringify({ username: 'flaky', device_id: deviceId }) });
        return (await r.json()).token;
      },
    });
    window.db.onStatus(() => window.db.status.lastError && seen.push(window.db.status.lastError.code));
    try {
      const s = await window.db.waitForFirstSync();
      return { resolved: s.hasSynced, errors, seen: [...new Set(seen)] };
    } catch (e) {
      return { rejected: `${e.code}: ${e.message}`, errors, seen };
    }
  });
  await new Promise((r) => setTimeout(r, 3000));
  web.restore();
  const r = await waited;
  assert.equal(r.rejected, undefined, JSON.stringify(r));
  assert.equal(r.resolved, true);
  assert.deepEqual(r.seen, ['AUTH_UNAVAILABLE'], 'the outage showed in status.lastError as temporary');
  assert.deepEqual(r.errors, [], 'and never reached onError');
  // An error the app does not mark temporary is fatal: waitForFirstSync rejects with AUTH, once.
  const fatal = await page.evaluate(async () => {
    const { INIT } = await import('./app.js');
    const errors = [];
    const db = await window.SyncClient.open({
      name: 'auth-fatal', user: 'user-fatal', url: location.origin, serverSchema: 'business', tables: ['users'],
      init: INIT, syncIntervalMs: 200, onError: (e) => errors.push(e.code),
      auth: () => {
        throw new Error('no account');
      },
    });
    try {
      await db.waitForFirstSync();
      return 'resolved';
    } catch (e) {
      await new Promise((r) => setTimeout(r, 1500));
      return { code: e.code, errors };
    } finally {
      await db.close();
    }
  });
  assert.equal(fatal.code, 'AUTH');
  assert.deepEqual(fatal.errors, ['AUTH'], 'several failing cycles, one onError');
  await ctx.close();
});

test('status.online follows the page at once; realtime says when the stream is down; a server back is found in seconds', { skip: except('webkit', NO_OFFLINE) }, async () => {
  const [wa, wb] = [await origin(), await origin()];
  const [a, b] = [await loadPage(wa), await loadPage(wb)];
  for (const p of [a.page, b.page]) {
    await p.evaluate((x) => window.openDb('back', x), slow);
    await eventually(async () => (await status(p)).realtime === 'stream', 20_000, 'streaming');
  }
  // Offline and back, in the page: the status says so within a moment, not at the next cycle (10 min away).
  await b.ctx.setOffline(true);
  let t = Date.now();
  await eventually(async () => (await status(b.page)).online === false, 2_000, 'offline in the status');
  const offlineMs = Date.now() - t;
  await b.ctx.setOffline(false);
  await eventually(async () => (await status(b.page)).online === true, 2_000, 'online again');

  // The server goes away for B for 20 s (an uncapped backoff grows to 16 s meanwhile), while A writes.
  wb.cut();
  t = Date.now();
  await eventually(async () => (await status(b.page)).realtime !== 'stream', 5_000, 'realtime no longer says stream');
  const noticedMs = Date.now() - t;
  await a.page.evaluate(async () => {
    await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), 'while away', 'e']);
  });
  await new Promise((r) => setTimeout(r, 20_000));
  wb.restore();
  t = Date.now();
  const names = () => b.page.evaluate(async () => (await window.db.query('SELECT name FROM users')).map((r) => r.name));
  await eventually(async () => (await names()).includes('while away'), 15_000, 'recovered');
  const recoveredMs = Date.now() - t;
  // The stream follows: at once in Chromium; Firefox delays a WebSocket to a host whose connects failed
  // (network.websocket.delay-failed-reconnects, growing while the server was away), so its stream comes back later.
  await eventually(async () => (await status(b.page)).realtime === 'stream', 20_000, 'streaming again');
  const streamMs = Date.now() - t;
  console.log(`status (${engine}): offline shown after ${offlineMs} ms; a dead stream shown after ${noticedMs} ms; recovered ${recoveredMs} ms after the server came back (goal 3 s; 26.7 s before), streaming again after ${streamMs} ms`);
  assert.ok(recoveredMs < 6_000, `recovered after ${recoveredMs} ms`);
  if (engine === 'chromium') assert.ok(streamMs < 6_000, `streaming again after ${streamMs} ms`);
  assert.deepEqual(b.problems, []);
  await Promise.all([a.ctx.close(), b.ctx.close()]);
});

test('onError hears of an episode once, and never of a proxy answering 502', async () => {
  const web = await origin();
  const { ctx, page } = await loadPage(web);
  await page.evaluate(() => window.openDb('episodes', { syncIntervalMs: 300 }));
  await page.evaluate(() => window.db.waitForFirstSync());
  const errors = () => page.evaluate(() => window.log.errors.map((e) => e.split(':')[0]));
  // A proxy whose upstream is down answers 502: cycles fail for 4 s, nothing reaches onError.
  web.cut({ status: 502 });
  await eventually(async () => (await status(page)).lastError?.code === 'HTTP', 5_000, 'the 502 shows in lastError');
  await new Promise((r) => setTimeout(r, 4000));
  assert.deepEqual(await errors(), [], 'a 502 is waited out, not reported');
  // A 404 (a wrong route, say) is reported, once for the whole episode however many cycles fail.
  web.cut({ status: 404 });
  await eventually(async () => (await errors()).length > 0, 15_000, 'the 404 reported');
  await page.evaluate(() => window.db.sync().catch(() => undefined));
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(await errors(), ['HTTP'], 'one report for the episode');
  web.restore();
  await page.evaluate(() => window.db.sync());
  // A new episode after a success is reported again.
  web.cut({ status: 404 });
  await eventually(async () => (await errors()).length === 2, 10_000, 'a second episode');
  web.restore();
  await ctx.close();
});

test('closing a client whose auth callback never answers leaves no unhandled rejection', async () => {
  const web = await origin();
  const { ctx, page, problems } = await loadPage(web);
  const closed = await page.evaluate(async () => {
    const { INIT } = await import('./app.js');
    const db = await window.SyncClient.open({
      name: 'silent', user: 'user-silent', url: location.origin, serverSchema: 'business', tables: ['users'],
      init: INIT, requestTimeoutMs: 60_000, auth: () => new Promise(() => undefined),
    });
    await new Promise((r) => setTimeout(r, 1000));
    await db.close();
    await new Promise((r) => setTimeout(r, 1000));
    return true;
  });
  assert.equal(closed, true);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('signOut offline keeps the cycle’s code and says how many changes are at stake and how to drop them', { skip: except('webkit', NO_OFFLINE) }, async () => {
  const web = await origin();
  const { ctx, page } = await loadPage(web);
  await page.evaluate((x) => window.openDb('leaving', x), slow);
  await page.evaluate(() => window.db.waitForFirstSync());
  await ctx.setOffline(true);
  await eventually(async () => (await status(page)).online === false, 2_000, 'offline');
  const e = await page.evaluate(async () => {
    await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), 'unsent', 'e']);
    try {
      await window.db.signOut();
      return null;
    } catch (e) {
      return { code: e.code, message: e.message };
    }
  });
  assert.equal(e?.code, 'NETWORK', JSON.stringify(e));
  assert.match(e.message, /1 local changes are not uploaded; signOut\(\{ keepPending: false \}\) discards them/);
  await ctx.close();
});

test('a forgotten serverSchema fails the first sync with CONFIG naming each table, not silently', async () => {
  const web = await origin();
  const { ctx, page } = await loadPage(web);
  const r = await page.evaluate(async () => {
    const { INIT } = await import('./app.js');
    const errors = [];
    const r = await fetch('/signin', { method: 'POST', body: JSON.stringify({ username: 'schemaless', device_id: 'd1' }) });
    const { token } = await r.json();
    // No serverSchema: the tables are looked for in `public`, where the demo server syncs nothing.
    const db = await window.SyncClient.open({
      name: 'schemaless', user: 'user-schemaless', url: location.origin, tables: ['users', 'posts'], init: INIT,
      auth: token, syncIntervalMs: 300, onError: (e) => errors.push(`${e.code}: ${e.message}`),
    });
    await db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), 'n', 'e']);
    try {
      await db.waitForFirstSync();
      return { resolved: true };
    } catch (e) {
      return { code: e.code, message: e.message, errors, pending: db.status.pending, rejections: (await db.rejections()).length };
    } finally {
      await db.close();
    }
  });
  assert.equal(r.code, 'CONFIG', JSON.stringify(r));
  assert.match(r.message, /does not sync public\.users, public\.posts \(it syncs .*business\.users/);
  assert.equal(r.errors.length, 1, 'reported once');
  assert.equal(r.pending, 1, 'the write waits, not rejected');
  assert.equal(r.rejections, 0);
  await ctx.close();
});

test('errors name the request and the server’s reason: a bad token, an HTML page, an unreachable host', async () => {
  const web = await origin();
  const { ctx, page } = await loadPage(web);
  const tokenOf = (name) =>
    page.evaluate(async (name) => {
      const r = await fetch('/signin', { method: 'POST', body: JSON.stringify({ username: name, device_id: 'd1' }) });
      return (await r.json()).token;
    }, name);
  const tokens = { html: await tokenOf('html'), proxy: await tokenOf('proxy'), away: await tokenOf('away') };
  /** The first cycle's error of a database opened with `extra` (and a token fetched before any cut). */
  const firstError = (name, extra) =>
    page.evaluate(
      async ([name, extra, token]) => {
        const { INIT } = await import('./app.js');
        const db = await window.SyncClient.open({
          name, user: `user-${name}`, url: location.origin, serverSchema: 'business', tables: ['users'], init: INIT,
          auth: token, autoSync: false, ...extra,
        });
        try {
          await db.sync();
          return null;
        } catch (e) {
          return { code: e.code, status: e.status, url: e.url, message: e.message };
        } finally {
          await db.close();
        }
      },
      [name, extra, tokens[name] ?? 'none'],
    );
  // A token that is not a JWT: the server's 401 says why, and the error says so, with the URL and status.
  const garbage = await firstError('garbage', { auth: 'garbage' });
  assert.equal(garbage.code, 'UNAUTHORIZED', JSON.stringify(garbage));
  assert.equal(garbage.status, 401);
  assert.match(garbage.message, /authentication failed: Invalid token: malformed/);
  assert.match(garbage.url, /^http:\/\/127\.0\.0\.1:\d+\/sync\/\w+$/);
  assert.ok(garbage.message.includes(garbage.url), garbage.message);
  // Not the sync server: every path answers an HTML page (200, as a single-page app's fallback does).
  web.cut({ status: 200 });
  const html = await firstError('html', {});
  web.restore();
  assert.equal(html.code, 'PROTOCOL', JSON.stringify(html));
  assert.match(html.message, /HTML page, not the sync API's JSON: is the URL the sync server's\?/);
  assert.ok(html.url?.startsWith(web.origin), JSON.stringify(html));
  // A proxy's error page: HTTP with the status, and the page named as HTML, not dumped.
  web.cut({ status: 502 });
  const proxy = await firstError('proxy', {});
  web.restore();
  assert.equal(proxy.code, 'HTTP');
  assert.equal(proxy.status, 502);
  assert.match(proxy.message, /server answered 502 with an HTML page/);
  assert.ok(!proxy.message.includes('<html>'), proxy.message);
  // Nobody listens: NETWORK, naming the URL.
  const away = await firstError('away', { url: 'http://127.0.0.1:9' });
  assert.equal(away.code, 'NETWORK', JSON.stringify(away));
  assert.match(away.message, /http:\/\/127\.0\.0\.1:9\/sync\//);
  await ctx.close();
});

test('a value the server’s column cannot hold as sent is rejected naming the column, not silently rewritten', async () => {
  const web = await origin();
  const { ctx, page } = await loadPage(web);
  await page.evaluate(() => window.openDb('columns'));
  await page.evaluate(() => window.db.waitForFirstSync());
  const rejected = await page.evaluate(async () => {
    await window.db.exec('INSERT INTO users (id, name, email, created_at) VALUES (?, ?, ?, ?)', [crypto.randomUUID(), 'n', 'e', 'yesterday']);
    await window.db.exec('INSERT INTO users (id, name, email, created_at) VALUES (?, ?, ?, ?)', [crypto.randomUUID(), 'm', 'e', '2026-12-07 10:00:00']);
    await window.db.sync();
    return { rejections: await window.db.rejections(), pending: window.db.status.pending };
  });
  assert.equal(rejected.rejections.length, 1, JSON.stringify(rejected));
  assert.equal(rejected.rejections[0].reason, 'bad_payload');
  assert.match(rejected.rejections[0].message, /^created_at: "yesterday" is not a timestamp/);
  assert.equal(rejected.pending, 0, 'the good row uploaded');
  await ctx.close();
});

test('diagnostics() tells what happened: the queue and its age, each cycle with its error code, tables, cursor, storage, versions', async () => {
  const web = await origin();
  const { ctx, page, problems } = await loadPage(web);
  await page.evaluate((x) => window.openDb('diagnosed', x), slow);
  await page.evaluate(() => window.db.waitForFirstSync());
  const d0 = await page.evaluate(() => window.db.diagnostics());
  assert.equal(d0.cycles.at(-1).ok, true, JSON.stringify(d0.cycles));
  assert.equal(d0.cycles[0].hydrating, true, 'the first cycle hydrated');
  // Three rows written and uploaded.
  await page.evaluate(async () => {
    for (let i = 0; i < 3; i++) {
      await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), `d${i}`, 'd@example.com']);
    }
    await window.db.sync();
  });
  const d1 = await page.evaluate(() => window.db.diagnostics());
  // The writes may start a cycle of their own, and the stream may wake another after it: the three uploads are in
  // whichever cycles ran since.
  const since = d1.cycles.slice(d0.cycles.length);
  assert.equal(since.reduce((n, c) => n + c.uploaded, 0), 3, JSON.stringify(since));
  assert.ok(since.every((c) => c.ok && c.error === null), JSON.stringify(since));
  const last = since.findLast((c) => c.uploaded > 0);
  assert.ok(last.cursorAfter > last.cursorBefore && last.ms >= 0 && Date.parse(last.at) > 0, JSON.stringify(last));
  assert.deepEqual(d1.queue, { pending: 0, parked: 0, rejected: 0, oldestPendingAt: null, oldestPendingAgeMs: null });
  assert.deepEqual(d1.tables.find((t) => t.table === 'users'), { table: 'users', rows: 3, pending: 0 });
  assert.equal(d1.cursor, d1.cycles.at(-1).cursorAfter);
  assert.ok(d1.serverTop >= d1.cursor, JSON.stringify(d1));
  assert.equal(d1.storage.kind, engine === 'webkit' ? 'idb' : 'opfs');
  assert.ok(d1.storage.databaseBytes >= 4096, JSON.stringify(d1.storage));
  assert.ok(d1.storage.estimate === null || d1.storage.estimate.quota > 0, JSON.stringify(d1.storage));
  assert.match(d1.versions.engine, /^\d+\.\d+\.\d+/);
  assert.match(d1.versions.sqlite, /^3\./);
  assert.equal(d1.status.pending, 0);
  assert.ok(['stream', 'long_poll', 'timer'].includes(d1.realtime.mode));
  // Offline: two writes wait, and the failed cycle is recorded with its code.
  await page.evaluate(() => window.db.simulateOffline(true));
  await page.evaluate(async () => {
    for (let i = 0; i < 2; i++) {
      await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [window.uuid(), `o${i}`, 'o@example.com']);
    }
    await window.db.sync().catch(() => undefined);
  });
  await new Promise((r) => setTimeout(r, 50));
  const d2 = await page.evaluate(() => window.db.diagnostics());
  assert.equal(d2.queue.pending, 2);
  assert.ok(d2.queue.oldestPendingAgeMs >= 0 && Date.parse(d2.queue.oldestPendingAt) > 0, JSON.stringify(d2.queue));
  assert.deepEqual(d2.tables.find((t) => t.table === 'users'), { table: 'users', rows: 5, pending: 2 });
  assert.equal(d2.cycles.at(-1).ok, false);
  assert.equal(d2.cycles.at(-1).error.code, 'NETWORK');
  assert.ok(d2.cycles.length <= 20);
  // Serialisable for a bug report, and holds no row contents.
  const json = await page.evaluate(async () => JSON.stringify(await window.db.diagnostics()));
  assert.ok(!json.includes('o@example.com'), 'no row contents');
  await page.evaluate(() => window.db.simulateOffline(false));
  await page.evaluate(() => window.db.close());
  assert.deepEqual(problems, []);
  await ctx.close();
});
