// Browser benchmarks (issue 7), in headless Chromium against the native server and PostgreSQL:
//   P3 hydration of a new device (100k rows of users + posts, into OPFS): rows/s, the longest main-thread stall,
//      the longest wait for a UI query answered during hydration, and the OPFS write/flush calls it made;
//   P4 change-capture overhead: 10k inserts in one statement into a synced table (triggers) vs a plain one;
//   P7 single-row write latency through the npm API (p50/p99);
//   P5 what the package delivers to a browser (wasm + JS, raw and gzip);
//   P12 bulk writes: 20,000 rows as 20,000 `tx.exec` calls vs one `execMany` call;
//   P11 propagation: device A's local write → device B's live query, two Chromium profiles of one user over
//      `/sync/stream`, natively and under workerd; isolated writes and writes 100 ms apart (the debounce).
// `OVERSYNC_BROWSER=firefox` runs them in Firefox, `OVERSYNC_STORAGE=idb` on IndexedDB.
// `node bench/browser/run.mjs [--short] [--out FILE] [--only p3|p4|p7|p11|p12] [--fixed] [--profile]`; run through bench/run.
// Reuses the browser tests' stack. `--only p3 --profile` adds a CPU profile of the database worker (see
// profile.mjs); `--only p3 --fixed` also hydrates devices with fixed 1000-row pages, and `--only p3 --alone`
// devices fed from memory (replay.mjs), as the full run does.

import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { randomUUID } from 'node:crypto';
import { cleanup, engine, launch } from '../../tests/browser/browser.mjs';
import { root, seed, startOrigin, startSyncServer } from '../../tests/browser/stack.mjs';
import { profileWorker } from './profile.mjs';
import { recordReplies, replayReplies } from './replay.mjs';

const short = process.argv.includes('--short');
const outArg = process.argv.indexOf('--out');
const out = outArg > 0 ? process.argv[outArg + 1] : null;
const onlyArg = process.argv.indexOf('--only');
const only = onlyArg > 0 ? process.argv[onlyArg + 1] : null;
const profiling = process.argv.includes('--profile');
const P3_ROWS = short ? 2_000 : 100_000;
const P4_ROWS = short ? 1_000 : 10_000;
const P7_WRITES = short ? 50 : 500;
// P4 repeats: its plain baseline is ~25 ms of inserts and a commit, which moves by half between repeats here.
const REPEAT = short ? 1 : 15;
const P3_RUNS = short ? 1 : 5;
const P3_ALONE_RUNS = short ? 1 : 3;
const FIXED = { hydrationPageBudgetMs: 0 };
const P11_WRITES = short ? 5 : 40;
const P12_ROWS = short ? 2_000 : 20_000;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** `OVERSYNC_STORAGE=idb` measures the IndexedDB storage (default: the package's default, OPFS). */
const STORAGE = process.env.OVERSYNC_STORAGE ? { storage: process.env.OVERSYNC_STORAGE } : {};

async function openPage(context, origin, username, extra) {
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.ready);
  await page.evaluate(([u, x]) => window.openDb(u, x), [username, { ...STORAGE, ...extra }]);
  return page;
}

/** P3: seeds once, then hydrates P3_RUNS new devices, each a fresh browser profile; medians and the worst waits. */
async function p3(origin) {
  await seed(origin, 'p3', P3_ROWS);
  // Paced pages (the default page budget) and fixed 1000-row pages (budget off), alternating device by device so
  // both see the same machine; `--only p3` skips the fixed ones unless `--fixed` is given.
  const paced = [];
  const fixed = [];
  const withFixed = !only || process.argv.includes('--fixed');
  for (let i = 0; i < P3_RUNS; i++) {
    paced.push(await hydrateOnce(origin, profiling && i === 0, {}));
    if (withFixed) fixed.push(await hydrateOnce(origin, false, FIXED));
  }
  const alone = !only || process.argv.includes('--alone') ? { engine_alone: await p3Alone(origin) } : {};
  return { ...summary(paced), ...(withFixed ? { fixed_pages: summary(fixed) } : {}), ...alone };
}

/**
 * The engine alone: one device's replies are recorded, then replayed from memory to new devices (fixed 1000-row
 * pages, so every device asks for the same URLs). The server and PostgreSQL sit idle meanwhile.
 */
async function p3Alone(origin) {
  const records = (await hydrateOnce(origin, false, FIXED, recordReplies)).hooked;
  const runs = [];
  for (let i = 0; i < P3_ALONE_RUNS; i++) {
    const run = await hydrateOnce(origin, false, FIXED, (worker) => replayReplies(worker, records));
    if (run.hooked !== Object.keys(records).length) {
      throw new Error(`P3 alone: ${run.hooked} of ${Object.keys(records).length} recorded replies were asked for`);
    }
    runs.push(run);
  }
  return { ...summary(runs), replies: Object.keys(records).length };
}

function summary(runs) {
  const rates = runs.map((r) => r.rows_per_s);
  return {
    rows: P3_ROWS,
    runs: runs.length,
    rows_per_s: median(rates),
    rows_per_s_min: Math.min(...rates),
    rows_per_s_max: Math.max(...rates),
    seconds: median(runs.map((r) => r.seconds)),
    main_thread_longest_stall_ms: Math.max(...runs.map((r) => r.main_thread_longest_stall_ms)),
    ui_read_longest_wait_ms: Math.max(...runs.map((r) => r.ui_read_longest_wait_ms)),
    ui_read_longest_wait_median_ms: median(runs.map((r) => r.ui_read_longest_wait_ms)),
    ui_reads_answered: runs.reduce((a, r) => a + r.ui_reads_answered, 0),
    // The median device's OPFS calls (by hydration time): what the commits cost in writes and flushes.
    opfs: [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs.length / 2)].opfs,
  };
}

/**
 * Counts the database worker's OPFS calls (FileSystemSyncAccessHandle write/flush) and the time spent in them, by
 * wrapping the prototype's methods; the VFS looks them up on every call. Resolves to `read()` → the totals.
 */
async function countOpfsCalls(page) {
  // Firefox through puppeteer over BiDi has no worker to evaluate in: no counts there.
  if (engine !== 'chromium') return async () => null;
  const worker = page.workers()[0];
  if (!worker) throw new Error('P3: no database worker to count OPFS calls in');
  await worker.evaluate(() => {
    const proto = FileSystemSyncAccessHandle.prototype;
    // The longest single call too, on the wall clock (epoch ms), to line it up with the page's UI waits.
    const io = (self.__opfsCalls = { write: 0, write_ms: 0, flush: 0, flush_ms: 0, longest: { ms: 0 } });
    for (const name of ['write', 'flush']) {
      const inner = proto[name];
      proto[name] = function (...args) {
        const t = performance.now();
        try {
          return inner.apply(this, args);
        } finally {
          const ms = performance.now() - t;
          io[name] += 1;
          io[`${name}_ms`] += ms;
          if (ms > io.longest.ms) io.longest = { name, ms, epoch: performance.timeOrigin + t };
        }
      };
    }
  });
  return () => worker.evaluate(() => self.__opfsCalls);
}

/**
 * Hydrates one new device. `hook(worker)`, if given, runs before the hydration starts and resolves to a function
 * whose result, after it, is returned as `hooked`.
 */
async function hydrateOnce(origin, profile, options, hook) {
  const ctx = await launch();
  const page = await openPage(ctx, origin, 'p3', { autoSync: false, ...options });
  const stopProfile = profile ? await profileWorker(ctx, page) : null;
  const opfsCalls = await countOpfsCalls(page);
  const finish = hook ? await hook(page.workers()[0]) : null;
  const r = await page.evaluate(async () => {
    let running = true;
    // Main thread: the longest gap between 5 ms timer ticks, and long tasks.
    let maxTick = 0;
    let last = performance.now();
    const tick = setInterval(() => {
      const now = performance.now();
      maxTick = Math.max(maxTick, now - last - 5);
      last = now;
    }, 5);
    let longest = 0;
    const obs = new PerformanceObserver((l) => l.getEntries().forEach((e) => (longest = Math.max(longest, e.duration))));
    obs.observe({ type: 'longtask', buffered: false });
    // UI reads: a query that must keep being answered while hydration runs.
    const waits = [];
    const t0 = performance.now();
    const epoch0 = performance.timeOrigin + t0;
    const reader = (async () => {
      while (running) {
        const t = performance.now();
        await window.db.query('SELECT id, title FROM posts ORDER BY rowid DESC LIMIT 20');
        await new Promise((r) => setTimeout(r, 16)); // a UI reads about once per frame
        waits.push({ at: t - t0, ms: performance.now() - t });
      }
    })();
    await window.db.sync();
    const ms = performance.now() - t0;
    running = false;
    await reader;
    clearInterval(tick);
    obs.disconnect();
    const [{ n: users }] = await window.db.query('SELECT count(*) AS n FROM users');
    const [{ n: posts }] = await window.db.query('SELECT count(*) AS n FROM posts');
    return { ms, epoch0, rows: users + posts, maxTick, longest, reads: waits.length,
      longestWaits: [...waits].sort((a, b) => b.ms - a.ms).slice(0, 3) };
  });
  if (stopProfile) {
    console.error('P3 worker profile, self time (% of samples):');
    for (const { percent, name } of await stopProfile()) console.error(`${String(percent).padStart(5)}  ${name}`);
  }
  const io = await opfsCalls();
  const hooked = finish ? await finish() : undefined;
  // Where the longest UI waits fell, for telling a slow page from a stalled machine.
  const slowest = io?.longest.name ? `; longest OPFS call: ${io.longest.name} ${round(io.longest.ms)} at ${Math.round(io.longest.epoch - r.epoch0)}` : '';
  const kind = `${options.hydrationPageBudgetMs === 0 ? ' (fixed pages)' : ''}${hook ? ' (replies recorded or replayed)' : ''}`;
  console.error(`P3 device${kind}: ${Math.round(r.ms)} ms; longest UI waits (ms at ms): ${r.longestWaits.map((w) => `${round(w.ms)} at ${Math.round(w.at)}`).join(', ')}${slowest}`);
  await ctx.close();
  if (r.rows !== P3_ROWS) throw new Error(`P3: hydrated ${r.rows} rows, expected ${P3_ROWS}`);
  return {
    rows: r.rows,
    seconds: round(r.ms / 1000, 2),
    rows_per_s: Math.round((r.rows / r.ms) * 1000),
    main_thread_longest_stall_ms: round(Math.max(r.maxTick, r.longest)),
    ui_read_longest_wait_ms: round(r.longestWaits[0]?.ms ?? 0),
    ui_reads_answered: r.reads,
    opfs: io && { write: io.write, write_ms: round(io.write_ms), flush: io.flush, flush_ms: round(io.flush_ms), hydration_ms: round(r.ms) },
    hooked,
  };
}

const CAPTURE_INIT = `
CREATE TABLE IF NOT EXISTS captured (id TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
CREATE TABLE IF NOT EXISTS plain (id TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
CREATE TABLE IF NOT EXISTS floor (id TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
CREATE TABLE IF NOT EXISTS floor_queue (table_name TEXT NOT NULL, pk TEXT NOT NULL, PRIMARY KEY (table_name, pk)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS floor_ai AFTER INSERT ON floor BEGIN INSERT INTO floor_queue VALUES ('floor', NEW.id); END;`;
// floor: the least trigger-based capture can do (one keyed row per insert), measured side by side.

async function p4p7(origin) {
  const ctx = await launch();
  const page = await openPage(ctx, origin, 'p4', {
    autoSync: false,
    init: `${await page0Init(ctx, origin)}${CAPTURE_INIT}`,
    tables: ['users', 'posts', 'captured'],
  });
  const r = await page.evaluate(async ([rows, repeat, writes]) => {
    const insert = (table) => `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${rows})
      INSERT INTO ${table} (id, name, n) SELECT printf('%08x-0000-4000-8000-%012x', i, abs(random()) % 281474976710656), 'name ' || i, i FROM s`;
    const time = async (sql) => {
      const t = performance.now();
      await window.db.exec(sql);
      return performance.now() - t;
    };
    const plain = [];
    const floor = [];
    const captured = [];
    const folded = [];
    // The worker folds the capture log into the pending queue after answering the write (when it publishes the
    // status): `folded` is the time until the status counts the rows, which includes that ~20 ms delay.
    const settled = async (t) => {
      while (window.db.status.pending !== rows) {
        if (performance.now() - t > 30_000) throw new Error(`P4: status shows ${window.db.status.pending} pending, expected ${rows}`);
        await new Promise((r) => setTimeout(r, 1));
      }
      return performance.now() - t;
    };
    for (let k = 0; k < repeat; k++) {
      await window.db.execScript(
        'DELETE FROM plain; DELETE FROM floor; DELETE FROM floor_queue; DELETE FROM captured; DELETE FROM _sync_pending; DELETE FROM _sync_capture;',
      );
      await new Promise((r) => setTimeout(r, 50));
      plain.push(await time(insert('plain')));
      floor.push(await time(insert('floor')));
      const t = performance.now();
      await window.db.exec(insert('captured'));
      captured.push(performance.now() - t);
      folded.push(await settled(t));
    }
    const lat = [];
    for (let i = 0; i < writes; i++) {
      const t = performance.now();
      await window.db.exec('INSERT INTO captured (id, name, n) VALUES (?, ?, ?)', [crypto.randomUUID(), 'w', i]);
      lat.push(performance.now() - t);
    }
    return { plain, floor, captured, folded, lat };
  }, [P4_ROWS, REPEAT, P7_WRITES]);
  await ctx.close();
  const plainMs = median(r.plain);
  const capturedMs = median(r.captured);
  const floorMs = median(r.floor);
  return {
    p4: {
      rows: P4_ROWS,
      plain_ms: round(plainMs),
      with_triggers_ms: round(capturedMs),
      ratio: round(capturedMs / plainMs, 2),
      floor_ms: round(floorMs),
      floor_ratio: round(floorMs / plainMs, 2),
      captured_over_floor: round(capturedMs / floorMs, 2),
      until_folded_ms: round(median(r.folded)),
      plain_rows_per_s: Math.round((P4_ROWS / plainMs) * 1000),
      with_triggers_rows_per_s: Math.round((P4_ROWS / capturedMs) * 1000),
    },
    p7: { writes: P7_WRITES, p50_ms: round(pct(r.lat, 50), 2), p99_ms: round(pct(r.lat, 99), 2) },
  };
}

/**
 * P11: `P11_WRITES` writes on A, each timed from just before its commit on A to B's live query seeing it, with
 * the periodic timer out of the way (ten minutes) so only the stream brings them. `gapMs` apart: 1000 makes
 * each write isolated (the engine uploads it at once), 100 puts each within the 250 ms debounce of the last.
 */
async function p11(origin, gapMs) {
  const [a, b] = [await launch(), await launch()];
  const user = `p11-${randomUUID()}`;
  const slow = { syncIntervalMs: 10 * 60_000 };
  const [pa, pb] = [await openPage(a, origin, user, slow), await openPage(b, origin, user, slow)];
  for (const page of [pa, pb]) {
    await page.waitForFunction(() => window.db.status.hydrated && window.db.status.realtime === 'stream', null, { timeout: 30_000 });
  }
  await pb.evaluate(() => {
    window.seen = new Map();
    window.db.subscribe('SELECT title FROM posts', [], (rows) => {
      const now = performance.timeOrigin + performance.now();
      for (const r of rows) if (!window.seen.has(r.title)) window.seen.set(r.title, now);
    });
  });
  const sent = new Map();
  for (let i = 0; i < P11_WRITES; i++) {
    const title = `w${i}`;
    sent.set(title, await pa.evaluate(async (title) => {
      const author = window.uuid();
      const t0 = performance.timeOrigin + performance.now();
      await window.db.transaction(async (tx) => {
        await tx.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [author, 'A', 'a@example.com']);
        await tx.exec('INSERT INTO posts (id, title, content, author_id) VALUES (?, ?, ?, ?)', [window.uuid(), title, 'x', author]);
      });
      return t0;
    }, title));
    await new Promise((r) => setTimeout(r, gapMs));
  }
  await pb.waitForFunction((n) => window.seen.size >= n, P11_WRITES, { timeout: 30_000 });
  const seen = new Map(await pb.evaluate(() => [...window.seen]));
  const lat = [...sent].map(([title, t0]) => seen.get(title) - t0);
  await Promise.all([a.close(), b.close()]);
  return { writes: P11_WRITES, gap_ms: gapMs, p50_ms: round(pct(lat, 50)), p99_ms: round(pct(lat, 99)), max_ms: round(Math.max(...lat)) };
}

/** P11 natively (this run's server) and under workerd (its own `wrangler dev`, behind the tests' origin). */
/** P12 bulk writes (issue 34): P12_ROWS users as one `tx.exec` call each in one transaction, then as one
 * `execMany` call (one worker message), then the floor: as many rows made by one `INSERT … SELECT`; each run
 * on a new profile, autoSync off, so only the writes (and their capture) are timed. */
async function p12(origin) {
  const runs = [];
  // A new browser profile and database per run, so every run writes into an empty table.
  for (let i = 0; i < (short ? 1 : 5); i++) {
    const ctx = await launch();
    const page = await openPage(ctx, origin, `p12-${i}`, { autoSync: false });
    runs.push(
      await page.evaluate(async (n) => {
        const sql = 'INSERT INTO users (id, name, email) VALUES (?, ?, ?)';
        const rows = () => Array.from({ length: n }, (_, i) => [crypto.randomUUID(), `u${i}`, 'e']);
        const a = rows();
        let t = performance.now();
        await window.db.transaction(async (tx) => {
          for (const row of a) await tx.exec(sql, row);
        });
        const calls = performance.now() - t;
        const b = rows();
        t = performance.now();
        await window.db.execMany(sql, b);
        const many = performance.now() - t;
        // The floor: the same rows made by SQLite itself in one statement (no parameters cross into the worker).
        t = performance.now();
        await window.db.exec(`WITH RECURSIVE c(i, h) AS (SELECT 1, hex(randomblob(16)) UNION ALL
            SELECT i + 1, hex(randomblob(16)) FROM c WHERE i < ${n})
          INSERT INTO users (id, name, email) SELECT lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' ||
            substr(h, 14, 3) || '-8' || substr(h, 18, 3) || '-' || substr(h, 21, 12)), 'u' || i, 'e' FROM c`);
        return { calls, many, floor: performance.now() - t };
      }, P12_ROWS),
    );
    await ctx.close();
  }
  return {
    rows: P12_ROWS,
    exec_calls_ms: round(median(runs.map((r) => r.calls))),
    exec_many_ms: round(median(runs.map((r) => r.many))),
    one_statement_ms: round(median(runs.map((r) => r.floor))),
    runs: runs.map((r) => ({ calls: round(r.calls), many: round(r.many), floor: round(r.floor) })),
  };
}

async function p11All(origin) {
  const native = { isolated: await p11(origin, 1000), burst: await p11(origin, 100) };
  const worker = await startSyncServer({ edge: true });
  const web = await startOrigin(worker.url, { '/oversync-web/': path.join(root, 'npm/dist'), '/': pages });
  try {
    return { native, workerd: { isolated: await p11(web.origin, 1000), burst: await p11(web.origin, 100) } };
  } finally {
    await web.stop();
    await worker.stop();
  }
}

/** The test page's schema (users, posts), so `init` can extend it. */
async function page0Init(ctx, origin) {
  const page = await ctx.newPage();
  await page.goto(`${origin}/`);
  const init = await page.evaluate(async () => (await import('./app.js')).INIT);
  await page.close();
  return init;
}

function p5() {
  const dist = path.join(root, 'npm/dist');
  const files = [
    ...readdirSync(dist).filter((f) => f.endsWith('.js')).map((f) => path.join(dist, f)),
    ...readdirSync(path.join(dist, 'wasm')).filter((f) => f.endsWith('.js') || f.endsWith('.wasm')).map((f) => path.join(dist, 'wasm', f)),
  ];
  const size = (pred) => {
    const sel = files.filter(pred).map((f) => readFileSync(f));
    return { raw: sel.reduce((a, b) => a + b.length, 0), gzip: sel.reduce((a, b) => a + gzipSync(b, { level: 9 }).length, 0) };
  };
  const wasm = size((f) => f.endsWith('.wasm'));
  const js = size((f) => f.endsWith('.js'));
  return { wasm_bytes: wasm.raw, wasm_gzip: wasm.gzip, js_bytes: js.raw, js_gzip: js.gzip, total_gzip: wasm.gzip + js.gzip };
}

// The page and the package are served by the sync server itself (its static directory), as a deployment would:
// the tests' Node origin proxies every request, which costs this 2-core machine ~10% of P3.
const site = mkdtempSync(path.join(tmpdir(), 'oversync-bench-site-'));
const pages = path.join(root, 'tests/browser/pages');
for (const f of readdirSync(pages)) symlinkSync(path.join(pages, f), path.join(site, f));
symlinkSync(path.join(root, 'npm/dist'), path.join(site, 'oversync-web'));
const sync = await startSyncServer({ staticDir: site });
const origin = sync.url;
try {
  if (only) {
    // `--only p3|p4|p7`: one measure alone, for profiling or comparing a change.
    const one =
      only === 'p3' ? await p3(origin) : only === 'p11' ? await p11All(origin) : only === 'p12' ? await p12(origin) : (await p4p7(origin))[only];
    console.log(JSON.stringify(one, null, 2));
  } else {
    await all();
  }
} finally {
  await cleanup();
  await sync.stop();
  rmSync(site, { recursive: true, force: true });
}

async function all() {
  const results = { short, date: new Date().toISOString(), p3: await p3(origin), ...(await p4p7(origin)), p5: p5(), p12: await p12(origin) };
  // Short mode measures natively only (wrangler's start-up would double the short run).
  results.p11 = short ? { native: { isolated: await p11(origin, 1000) } } : await p11All(origin);
  const p11Rows = Object.entries(results.p11).flatMap(([front, runs]) =>
    Object.entries(runs).map(([kind, r]) =>
      `| P11 propagation, ${front}, ${kind} writes (${r.gap_ms} ms apart): A's commit → B's live query, p50 / p99 (ms) | ${r.p50_ms} / ${r.p99_ms} | ${front === 'native' && kind === 'isolated' ? '≤ 100 (p50)' : ''} |`));
  const fx = results.p3.fixed_pages;
  const al = results.p3.engine_alone;
  const md = [
    '| Measure | value | goal |',
    '|---|---|---|',
    `| P3 hydration, ${results.p3.rows} rows into OPFS (rows/s; median of ${results.p3.runs} new devices, range) | ${results.p3.rows_per_s} (${results.p3.rows_per_s_min}–${results.p3.rows_per_s_max}; ${results.p3.seconds} s) | ≥ 50000 |`,
    `| P3 longest main-thread stall during hydration (ms, worst device) | ${results.p3.main_thread_longest_stall_ms} | |`,
    `| P3 OPFS calls of the median device: writes, flushes (ms spent in them, of a ${results.p3.opfs.hydration_ms} ms hydration) | ${results.p3.opfs.write} (${results.p3.opfs.write_ms}), ${results.p3.opfs.flush} (${results.p3.opfs.flush_ms}) | |`,
    `| P3 longest wait for a UI query during hydration (ms; worst device, median device; ${results.p3.ui_reads_answered} answered) | ${results.p3.ui_read_longest_wait_ms}, ${results.p3.ui_read_longest_wait_median_ms} | ≤ 100 |`,
    `| P3 with fixed 1000-row pages (page budget off; devices alternating with the above): rows/s; UI wait worst, median (ms) | ${fx.rows_per_s} (${fx.rows_per_s_min}–${fx.rows_per_s_max}); ${fx.ui_read_longest_wait_ms}, ${fx.ui_read_longest_wait_median_ms} | |`,
    `| P3 the engine alone in Chromium: one device's ${al.replies} replies replayed from memory in the worker, server idle (fixed 1000-row pages; rows/s, median of ${al.runs} new devices, range) | ${al.rows_per_s} (${al.rows_per_s_min}–${al.rows_per_s_max}; ${al.seconds} s) | |`,
    `| P4 capture overhead, ${results.p4.rows} inserts in one statement (triggers / plain) | ${results.p4.ratio}× (${results.p4.with_triggers_ms} / ${results.p4.plain_ms} ms) | ≤ 2.2× |`,
    `| P4 floor: a trigger writing only (table, key) to a keyed queue | ${results.p4.floor_ratio}× (${results.p4.floor_ms} ms) | |`,
    `| P4 capture / floor | ${results.p4.captured_over_floor}× | ≤ 1.3× |`,
    `| P4 until the status counts them (the worker's fold, after a ~20 ms delay; ms) | ${results.p4.until_folded_ms} | |`,
    `| P7 single-row write through the npm API, p50 / p99 (ms) | ${results.p7.p50_ms} / ${results.p7.p99_ms} | |`,
    `| P12 ${results.p12.rows} rows in one transaction: one \`tx.exec\` each / one \`execMany\` / one \`INSERT … SELECT\` made by SQLite (ms, median) | ${results.p12.exec_calls_ms} / ${results.p12.exec_many_ms} / ${results.p12.one_statement_ms} | ≤ 500 (execMany) |`,
    `| P5 delivered to the browser: wasm + JS gzip (KB) | ${Math.round(results.p5.total_gzip / 1024)} (wasm ${Math.round(results.p5.wasm_gzip / 1024)}, JS ${Math.round(results.p5.js_gzip / 1024)}; raw ${Math.round((results.p5.wasm_bytes + results.p5.js_bytes) / 1024)}) | ≤ 700 |`,
    ...p11Rows,
  ].join('\n');
  console.log(JSON.stringify(results, null, 2));
  console.log(md);
  if (out) {
    writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(out.replace(/\.json$/, '.md'), `${md}\n`);
  }
}
