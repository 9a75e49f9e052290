// Headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser) through playwright-core. Each
// profile is a fresh --user-data-dir; reopening the same directory is "the same browser profile".

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run',
];

const dirs = [];
/** Every context launched and not yet closed: `cleanup` closes what a failed test left open. */
const open = new Set();

/** A new profile directory (removed by `cleanup`). */
export function profileDir() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'oversync-chromium-'));
  dirs.push(d);
  return d;
}

/** Launches Chromium on `dir` (a fresh profile unless given). Browser console errors are echoed. */
export async function launch(dir = profileDir()) {
  const context = await chromium.launchPersistentContext(dir, { executablePath, args, headless: true });
  open.add(context);
  context.on('close', () => open.delete(context));
  context.on('page', watch);
  context.pages().forEach(watch);
  return context;
}

function watch(page) {
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || process.env.OVERSYNC_BROWSER_LOG) console.error(`[browser ${m.type()}] ${m.text()}`);
  });
}

/**
 * Closes every browser still open (a failed test skips its own `close()`, and a live Chromium would keep the test
 * process from ever exiting), then removes the profile directories.
 */
export async function cleanup() {
  const timeout = (ms) => new Promise((r) => setTimeout(r, ms).unref());
  await Promise.all([...open].map((c) => Promise.race([c.close().catch(() => undefined), timeout(10_000)])));
  open.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Polls `f` until it returns a truthy value (or throws after `ms`). */
export async function eventually(f, ms = 15_000, what = 'condition') {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${last?.stack ?? JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every file path in `page`'s origin's OPFS. */
export function opfsFiles(page) {
  return page.evaluate(async () => {
    const out = [];
    const walk = async (dir, prefix) => {
      for await (const [name, handle] of dir.entries()) {
        if (handle.kind === 'file') out.push(prefix + name);
        else await walk(handle, `${prefix}${name}/`);
      }
    };
    await walk(await navigator.storage.getDirectory(), '');
    return out;
  });
}
