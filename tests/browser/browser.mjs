// The browsers the tests drive, each Debian's own (never a downloaded one): Chromium (/usr/bin/chromium) through
// playwright-core, with OVERSYNC_BROWSER=firefox Firefox ESR (/usr/bin/firefox-esr) through puppeteer-core
// over WebDriver BiDi, and with OVERSYNC_BROWSER=webkit WebKitGTK's MiniBrowser through WebKitWebDriver
// (webkit.mjs), the last two wrapped in the part of playwright's context and page API the tests use. Each profile is a
// fresh profile directory; reopening the same directory is "the same browser profile".

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Locator } from './locator.mjs';

/** The engine this run drives: `chromium` (default), `firefox` or `webkit`. */
export const engine = process.env.OVERSYNC_BROWSER ?? 'chromium';
if (!['chromium', 'firefox', 'webkit'].includes(engine)) throw new Error(`OVERSYNC_BROWSER=${engine}: use chromium, firefox or webkit`);

/** For `test(name, { skip: except('webkit', why) }, …)`: skips the test on that engine, saying why. */
export const except = (name, why) => (engine === name ? `not in ${name}: ${why}` : false);
/** Why a test that reopens a profile directory does not run in WebKitGTK. */
export const SAME_PROFILE =
  "a WebKitWebDriver session's website data ends with it, so a profile cannot be reopened (a reload in one session is tested in storage.test.mjs)";

/** For `test(name, { skip: only('chromium', why) }, …)`: skips the test on the other engines, saying why. */
export const only = (name, why) => (engine === name ? false : `${name} only: ${why}`);

const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run',
];
const firefoxPath = process.env.FIREFOX ?? '/usr/bin/firefox-esr';

const dirs = [];
/** Every context launched and not yet closed: `cleanup` closes what a failed test left open. */
const open = new Set();

/** A new profile directory (removed by `cleanup`). */
export function profileDir() {
  const d = mkdtempSync(path.join(os.tmpdir(), `oversync-${engine}-`));
  dirs.push(d);
  return d;
}

/**
 * Launches the engine on `dir` (a fresh profile unless given). Browser console errors are echoed. `prefs`: Firefox
 * preferences for this profile (e.g. `{ 'dom.fs.enabled': false }`: no OPFS).
 */
export async function launch(dir = profileDir(), { prefs } = {}) {
  if (prefs && engine !== 'firefox') throw new Error('prefs are Firefox preferences');
  let context;
  if (engine === 'firefox') context = await FirefoxContext.launch(dir, prefs);
  else if (engine === 'webkit') context = await (await import('./webkit.mjs')).WebKitContext.launch();
  else context = await chromium.launchPersistentContext(dir, { executablePath: chromiumPath, args: chromiumArgs, headless: true });
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

/** A Firefox instance on one profile, as a playwright `BrowserContext` (the part the tests use). */
class FirefoxContext {
  static async launch(dir, prefs = {}) {
    const { default: puppeteer } = await import('puppeteer-core');
    const browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: firefoxPath,
      headless: true,
      userDataDir: dir,
      extraPrefsFirefox: prefs,
    });
    const context = new FirefoxContext(browser);
    for (const p of await browser.pages()) context.known.push(new FirefoxPage(p));
    return context;
  }

  constructor(browser) {
    this.browser = browser;
    this.known = [];
    this.listeners = { close: [], page: [] };
    browser.on('disconnected', () => this.listeners.close.forEach((f) => f()));
  }

  on(event, f) {
    this.listeners[event]?.push(f);
    return this;
  }

  pages() {
    return this.known.filter((p) => !p.page.isClosed());
  }

  /** Nothing to grant: the tests ask for no permission. */
  async grantPermissions() {}

  async newPage() {
    const page = new FirefoxPage(await this.browser.newPage());
    this.known.push(page);
    this.listeners.page.forEach((f) => f(page));
    return page;
  }

  /**
   * Offline emulation of every page (WebDriver BiDi's network conditions): the pages' `navigator.onLine` and their
   * requests. A dedicated worker's own `navigator.onLine` is not emulated: oversync-web forwards the page's.
   */
  async setOffline(offline) {
    this.offline = offline;
    await Promise.all(this.pages().map((p) => p.page.setOfflineMode(offline)));
  }

  async close() {
    await this.browser.close();
  }
}

/** A puppeteer page as a playwright `Page` (the part the tests use). */
class FirefoxPage {
  constructor(page) {
    this.page = page;
  }
  goto(url) {
    return this.page.goto(url, { waitUntil: 'load' });
  }
  reload() {
    return this.page.reload({ waitUntil: 'load' });
  }
  evaluate(fn, arg) {
    return this.page.evaluate(fn, arg);
  }
  waitForFunction(fn, arg, options = {}) {
    return this.page.waitForFunction(fn, { timeout: options.timeout ?? 30_000, polling: 100 }, arg);
  }
  waitForSelector(selector, options = {}) {
    return this.page.waitForSelector(selector, { timeout: options.timeout ?? 30_000 });
  }
  async textContent(selector) {
    const element = await this.waitForSelector(selector);
    return element.evaluate((e) => e.textContent);
  }
  async click(selector) {
    await this.waitForSelector(selector);
    return this.page.click(selector);
  }
  locator(css, options) {
    return new Locator(this, []).locator(css, options);
  }
  getByRole(role, options) {
    return new Locator(this, []).getByRole(role, options);
  }
  async fill(selector, value) {
    await this.waitForSelector(selector);
    await this.page.locator(selector).fill(value);
  }
  async selectOption(selector, value) {
    await this.waitForSelector(selector);
    await this.page.select(selector, value);
  }
  setViewportSize({ width, height }) {
    return this.page.setViewport({ width, height });
  }
  screenshot(options) {
    return this.page.screenshot(options);
  }
  /** Waits for the load event of the page's current document (retried across a navigation still under way). */
  async waitForLoadState() {
    await eventually(() => this.page.evaluate(() => document.readyState === 'complete'), 30_000, 'the page loaded');
  }
  on(event, f) {
    this.page.on(event, f);
    return this;
  }
  close() {
    return this.page.close();
  }
}

/**
 * Closes every browser still open (a failed test skips its own `close()`, and a live browser would keep the test
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

/**
 * Every file path in `page`'s origin's OPFS, and `idb:<name>` for each of the package's IndexedDB databases that
 * holds pages (where the engine has no OPFS, WebKitGTK, the databases live there).
 */
export function opfsFiles(page) {
  return page.evaluate(async () => {
    const out = [];
    const walk = async (dir, prefix) => {
      for await (const [name, handle] of dir.entries()) {
        if (handle.kind === 'file') out.push(prefix + name);
        else await walk(handle, `${prefix}${name}/`);
      }
    };
    if (typeof navigator.storage?.getDirectory === 'function') await walk(await navigator.storage.getDirectory(), '');
    for (const { name } of await indexedDB.databases()) {
      if (!name.startsWith('oversync-') || name === 'oversync-probe') continue;
      const db = await new Promise((ok, no) => Object.assign(indexedDB.open(name), { onsuccess: (e) => ok(e.target.result), onerror: no }));
      const pages = db.objectStoreNames.contains('blocks')
        ? await new Promise((ok) => (db.transaction('blocks').objectStore('blocks').count().onsuccess = (e) => ok(e.target.result)))
        : 0;
      db.close();
      if (pages > 0) out.push(`idb:${name}`);
    }
    return out;
  });
}
