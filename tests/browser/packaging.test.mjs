// Packaging (issue 5): `npm pack` the package, install the tarball into a fresh Vite + React app, `vite build`,
// and open the built app in Chromium against the real server: it opens a database, renders a live query, and
// syncs.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cleanup, eventually, launch } from './browser.mjs';
import { root, startOrigin, startSyncServer } from './stack.mjs';

let sync;
let web;
let app;
let webpackApp;
let webpackWeb;

const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });

before(async () => {
  app = mkdtempSync(path.join(os.tmpdir(), 'oversync-vite-'));
  cpSync(path.join(root, 'tests/browser/vite-app'), app, { recursive: true });
  const tarball = run('npm', ['pack', '--silent', '--pack-destination', app], path.join(root, 'npm')).trim().split('\n').at(-1);
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline', path.join(app, tarball)], app);
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline'], app);
  run('npx', ['vite', 'build', '--logLevel', 'warn'], app);
  run('npx', ['vite', 'build', '--ssr', 'src/ssr.js', '--outDir', 'dist-ssr', '--logLevel', 'warn'], app);
  // The same tarball in a webpack 5 app (no loaders, no plugins).
  webpackApp = mkdtempSync(path.join(os.tmpdir(), 'oversync-webpack-'));
  cpSync(path.join(root, 'tests/browser/webpack-app'), webpackApp, { recursive: true });
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline', path.join(app, tarball)], webpackApp);
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline'], webpackApp);
  run('npx', ['webpack', '--no-stats'], webpackApp);
  cpSync(path.join(webpackApp, 'public/index.html'), path.join(webpackApp, 'dist/index.html'));
  sync = await startSyncServer();
  web = await startOrigin(sync.url, { '/': path.join(app, 'dist') });
  webpackWeb = await startOrigin(sync.url, { '/': path.join(webpackApp, 'dist') });
});

after(async () => {
  await cleanup();
  await web?.stop();
  await webpackWeb?.stop();
  await sync?.stop();
  if (app) rmSync(app, { recursive: true, force: true });
  if (webpackApp) rmSync(webpackApp, { recursive: true, force: true });
});

test('the packed package builds with Vite and runs in Chromium (React provider and hooks, OPFS, sync)', async () => {
  const assets = readdirSync(path.join(app, 'dist/assets'));
  assert.ok(assets.some((f) => f.endsWith('.wasm')), `vite emitted the wasm: ${assets}`);
  const ctx = await launch();
  const page = await ctx.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForSelector('#add', { timeout: 20_000 });
  await page.click('#add');
  await page.click('#add-w');
  await page.waitForFunction(() => document.querySelector('#names')?.textContent === 'Vera');
  await page.waitForFunction(() => document.querySelector('#count')?.textContent === '2');
  // useLiveQuery / useSuspenseQuery of a queryBuilder() builder run on the provider's database.
  await page.waitForFunction(() => document.querySelector('#builder')?.textContent === 'Vera of 2');
  await page.click('#switch');
  await page.waitForFunction(() => document.querySelector('#names')?.textContent === 'Walt');
  await eventually(
    async () => (await page.textContent('#status')) === 'pending 0 synced yes',
    20_000,
    'the rows synced (useSyncStatus through the provider)',
  );
  const renders = await page.evaluate(() => window.renders);
  assert.ok(renders[0].loading, 'loading before the database is open');
  const first = renders.findIndex((r) => r.names.length > 0);
  assert.deepEqual(renders.slice(first).filter((r) => r.names.length === 0), [], 'no flash of [] while the params change');
  const switched = renders.findIndex((r) => r.prefix === 'W');
  assert.deepEqual(renders[switched], { prefix: 'W', names: ['Vera'], loading: true }, 'the previous rows while the new query runs');
  await ctx.close();
});

test('the packed package builds with webpack 5 (defaults only) and runs in Chromium (worker, wasm, OPFS, sync)', async () => {
  const assets = readdirSync(path.join(webpackApp, 'dist'));
  assert.ok(assets.some((f) => f.endsWith('.wasm')), `webpack emitted the wasm: ${assets}`);
  const ctx = await launch();
  const page = await ctx.newPage();
  await page.goto(`${webpackWeb.origin}/`);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent || document.querySelector('#error')?.textContent, null, { timeout: 30_000 });
  assert.equal(await page.textContent('#error'), '');
  assert.equal(await page.textContent('#name'), 'Wes');
  assert.equal(await page.textContent('#status'), 'pending 0 synced yes');
  await ctx.close();
});

test('the types hold end to end, and every ts/tsx block of the README compiles, under the Vite react-ts template\'s flags', () => {
  // src/typed*.ts: `@ts-expect-error` lines fail the check if their error goes away, so the types are proved both
  // ways. The README's blocks are taken from the installed package, each its own module (readme-globals.d.ts
  // declares what they leave to the reader).
  const readme = readFileSync(path.join(app, 'node_modules/oversync-web/README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^( *)```(tsx?)\n([\s\S]*?)^\1```$/gm)];
  assert.ok(blocks.length >= 5, `${blocks.length} ts blocks`);
  blocks.forEach(([, indent, lang, code], i) => {
    const text = code.split('\n').map((l) => l.slice(indent.length)).join('\n');
    writeFileSync(path.join(app, `src/readme-${i}.${lang}`), text);
  });
  run(path.join(root, 'npm/node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], app);
});

test('the same React components render on a server (Vite SSR build), as a string and streamed: loading, offline, the Suspense fallback', () => {
  const out = JSON.parse(run('node', [path.join(app, 'dist-ssr/ssr.js')], app));
  // Streaming SSR (renderToPipeableStream) ends at once: a suspending query throws, on the server, an error the
  // package recognises (isClientOnly) instead of a promise that never settles (issue 34: onAllReady never fired).
  for (const html of [out.string, out.stream]) {
    assert.match(html, /id="loading">loading</);
    assert.match(html, /id="fallback">counting…</);
    assert.match(html, /id="status">offline true</);
  }
  assert.ok(out.ms < 2000, `streamed in ${out.ms} ms`);
  assert.deepEqual(out.errors, [], 'no error but the recognised client-only one');
});

test('the installed package\'s command writes the server\'s DDL and tables from the app\'s schema module', () => {
  const out = run(path.join(app, 'node_modules/.bin/oversync-web'), ['server-schema', 'src/schema.mjs', '--pg-schema', 'business'], app);
  assert.match(out, /CREATE TABLE IF NOT EXISTS business\.users \(\n  owner_id text NOT NULL,\n  id uuid NOT NULL,/);
  assert.match(out, /created_at timestamptz,\n  PRIMARY KEY \(owner_id, id\)/);
  assert.match(out, /\[\[tables\]\]\nschema = "business"\ntable = "users"\nowner_column = "owner_id"/);
});

test('what a browser downloads is measured on the installed package and stays under 800 KiB gzip (the README quotes it)', async () => {
  const { gzipSync } = await import('node:zlib');
  const { readFileSync, statSync } = await import('node:fs');
  const dist = path.join(app, 'node_modules/oversync-web/dist');
  const files = [];
  const walk = (dir) => {
    for (const f of readdirSync(dir)) {
      const p = path.join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(js|wasm)$/.test(f)) files.push(p);
    }
  };
  walk(dist);
  const sizes = files.map((f) => {
    const bytes = readFileSync(f);
    return { wasm: f.endsWith('.wasm'), raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  });
  const sum = (xs, k) => xs.reduce((n, x) => n + x[k], 0);
  const [wasm, js] = [sizes.filter((s) => s.wasm), sizes.filter((s) => !s.wasm)];
  const kib = (n) => Math.round(n / 1024);
  console.log(
    `size: wasm ${kib(sum(wasm, 'raw'))} KiB (${kib(sum(wasm, 'gzip'))} gzip), JS ${kib(sum(js, 'raw'))} KiB (${kib(sum(js, 'gzip'))} gzip), total ${kib(sum(sizes, 'raw'))} KiB (${kib(sum(sizes, 'gzip'))} gzip)`,
  );
  assert.ok(wasm.length === 1, 'one wasm file');
  // A guard against regressions, not the P5 goal (700): the measured sizes and what they are made of are in
  // npm/README *Size* and bench/results/browser.md.
  assert.ok(sum(sizes, 'gzip') <= 800 * 1024, `${kib(sum(sizes, 'gzip'))} KiB gzip`);
});

test('the dev path: a Vite dev server proxying /sync (ws) and /signin to a local sync server syncs and streams', async () => {
  // What npm/README.md "Develop against a local server" describes: `www/demo --server-only` (here the same
  // server, started by the harness) and the app's `vite` dev server with the proxy of tests/browser/vite-app.
  const { spawn } = await import('node:child_process');
  // Its own process group, so that stopping it stops every process it started (esbuild's service too).
  const vite = spawn(path.join(app, 'node_modules/.bin/vite'), ['--host', '127.0.0.1', '--port', '0', '--logLevel', 'info'], {
    cwd: app,
    env: { ...process.env, OVERSYNC_SERVER: sync.url },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`vite dev did not start:\n${out}`)), 60_000);
      vite.stdout.on('data', (d) => {
        out += d;
        // eslint-disable-next-line no-control-regex
        const m = out.replace(/\x1b\[[0-9;]*m/g, '').match(/Local:\s+(http:\/\/\S+)/);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      vite.on('exit', (code) => reject(new Error(`vite dev exited (${code}):\n${out}`)));
    });
    const ctx = await launch();
    const page = await ctx.newPage();
    await page.goto(url);
    await page.waitForSelector('#add', { timeout: 60_000 });
    await page.click('#add');
    await eventually(async () => (await page.textContent('#status')) === 'pending 0 synced yes', 30_000, 'synced through the proxy');
    await eventually(async () => (await page.evaluate(() => window.db.status.realtime)) === 'stream', 30_000, 'the stream through the proxy');
    await ctx.close();
  } finally {
    vite.stdout.destroy();
    process.kill(-vite.pid, 'SIGTERM');
  }
});
