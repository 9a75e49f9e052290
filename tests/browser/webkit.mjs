// WebKitGTK for the browser tests (OVERSYNC_BROWSER=webkit): Debian's MiniBrowser in automation mode, driven by
// WebKitWebDriver (`webkit2gtk-driver`) through selenium-webdriver, on an Xvfb display; wrapped in the part of
// playwright's context and page API the tests use (locators through locator.mjs). One WebDriver session is one profile
// (an automation session's website data is its own and gone when it ends); its pages are the session's windows.
// WebKitGTK has no OPFS sync access handles, so the test page opens its databases on IndexedDB
// (`oversync-test-storage` in the tab's sessionStorage, read by pages/app.js).

import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { Builder, By } from 'selenium-webdriver';
import { Locator } from './locator.mjs';

const miniBrowser = ['4.1', '4.0', '6.0']
  .map((v) => `/usr/lib/x86_64-linux-gnu/webkit2gtk-${v}/MiniBrowser`)
  .find((p) => existsSync(p));
let display = null;

/** A free loopback port for a WebKitWebDriver. */
const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });

/** One Xvfb display for the whole test process (stopped when it exits). */
async function xDisplay() {
  if (process.env.DISPLAY) return process.env.DISPLAY;
  if (display) return display;
  const number = 90 + Math.floor(Math.random() * 400);
  const x = spawn('Xvfb', [`:${number}`, '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], { stdio: 'ignore' });
  process.on('exit', () => x.kill());
  x.unref();
  display = `:${number}`;
  for (let i = 0; i < 50 && !existsSync(`/tmp/.X11-unix/X${number}`); i++) await new Promise((r) => setTimeout(r, 100));
  return display;
}

async function waitForPort(port) {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1', () => (c.end(), r(true)));
      c.on('error', () => r(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`WebKitWebDriver did not listen on ${port}`);
}

/** `fn` run in the page with `arg`, its promise awaited: as playwright's `evaluate`. */
function script(fn) {
  return `const done = arguments[arguments.length - 1];
const arg = arguments.length > 1 ? arguments[0] : undefined;
try {
  Promise.resolve((${fn.toString()})(arg)).then(
    (v) => done({ value: v === undefined ? null : v, undef: v === undefined }),
    (e) => done({ error: String((e && e.message) || e), stack: String((e && e.stack) || '') }));
} catch (e) { done({ error: String((e && e.message) || e), stack: String((e && e.stack) || '') }); }`;
}

/** A WebDriver session on MiniBrowser, as a playwright `BrowserContext` (the part the tests use). */
export class WebKitContext {
  static async launch() {
    if (!miniBrowser) throw new Error('MiniBrowser not found: apt-get install webkit2gtk-driver');
    const port = await freePort();
    const env = { ...process.env, DISPLAY: await xDisplay() };
    const driverProcess = spawn('WebKitWebDriver', [`--port=${port}`], { stdio: 'ignore', env });
    await waitForPort(port);
    const driver = await new Builder()
      .usingServer(`http://127.0.0.1:${port}`)
      .withCapabilities({
        browserName: 'MiniBrowser',
        'webkitgtk:browserOptions': { binary: miniBrowser, args: ['--automation'] },
      })
      .build();
    await driver.manage().setTimeouts({ script: 120_000, pageLoad: 60_000 });
    const context = new WebKitContext(driver, driverProcess);
    context.known.push(new WebKitPage(context, await driver.getWindowHandle()));
    return context;
  }

  constructor(driver, driverProcess) {
    this.driver = driver;
    this.driverProcess = driverProcess;
    this.known = [];
    this.listeners = { close: [], page: [] };
    this.queue = Promise.resolve();
    this.current = null;
  }

  /** Runs `f(driver)` on window `handle`, one command at a time (WebDriver has one current window). */
  use(handle, f) {
    const run = this.queue.then(async () => {
      if (this.current !== handle) {
        await this.driver.switchTo().window(handle);
        this.current = handle;
      }
      return f(this.driver);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  on(event, f) {
    this.listeners[event]?.push(f);
    return this;
  }

  pages() {
    return this.known.filter((p) => !p.closed);
  }

  async grantPermissions() {}

  async newPage() {
    // The first window, still blank, is the first page.
    const blank = this.known.find((p) => !p.closed && !p.used);
    if (blank) {
      blank.used = true;
      return blank;
    }
    const from = this.pages()[0]?.handle;
    const handle = await this.use(from, async (d) => {
      await d.switchTo().newWindow('window');
      return d.getWindowHandle();
    });
    this.current = handle;
    const page = new WebKitPage(this, handle);
    page.used = true;
    this.known.push(page);
    this.listeners.page.forEach((f) => f(page));
    return page;
  }

  async setOffline() {
    throw new Error('offline emulation is not available over WebKitWebDriver');
  }

  async close() {
    try {
      await this.driver.quit();
    } finally {
      this.driverProcess.kill();
      this.listeners.close.forEach((f) => f());
    }
  }
}

/** A window of the session, as a playwright `Page` (the part the tests use). */
class WebKitPage {
  constructor(context, handle) {
    this.context = context;
    this.handle = handle;
    this.closed = false;
  }
  async goto(url) {
    await this.context.use(this.handle, (d) => d.get(url));
    await this.markStorage();
  }
  async reload() {
    await this.context.use(this.handle, (d) => d.navigate().refresh());
    await this.markStorage();
  }
  /** No OPFS sync access handles here: the test page's databases live in IndexedDB (kept in the tab's
   * sessionStorage, so a reload from inside the page keeps it). */
  markStorage() {
    return this.context.use(this.handle, (d) => d.executeScript("sessionStorage.setItem('oversync-test-storage', 'idb')"));
  }
  async evaluate(fn, arg) {
    const args = arg === undefined ? [] : [arg];
    const r = await this.context.use(this.handle, (d) => d.executeAsyncScript(script(fn), ...args));
    if (r && 'error' in r) throw Object.assign(new Error(r.error), { browserStack: r.stack });
    return r.undef ? undefined : r.value;
  }
  async waitForFunction(fn, arg, options = {}) {
    const end = Date.now() + (options.timeout ?? 30_000);
    for (;;) {
      let last;
      try {
        last = await this.evaluate(fn, arg);
        if (last) return last;
      } catch (e) {
        last = e;
      }
      if (Date.now() > end) throw new Error(`waitForFunction timed out; last: ${last?.message ?? JSON.stringify(last)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async waitForSelector(selector, options = {}) {
    await this.waitForFunction((css) => document.querySelector(css) !== null, selector, options);
  }
  async textContent(selector) {
    await this.waitForSelector(selector);
    return this.evaluate((css) => document.querySelector(css).textContent, selector);
  }
  async click(selector) {
    await this.waitForSelector(selector);
    await this.evaluate((css) => document.querySelector(css).click(), selector);
  }
  /** Typed with WebDriver's keys (React's controlled inputs see real input events). */
  async fill(selector, value) {
    await this.waitForSelector(selector);
    await this.context.use(this.handle, async (d) => {
      const input = await d.findElement(By.css(selector));
      await input.clear();
      // WebKitWebDriver refuses an empty text ("Missing text parameter"): clearing is the whole fill then.
      if (value !== '') await input.sendKeys(value);
    });
  }
  async selectOption(selector, value) {
    await this.waitForSelector(selector);
    await this.context.use(this.handle, async (d) => {
      await d.findElement(By.css(`${selector} option[value="${value}"]`)).click();
    });
  }
  locator(css, options) {
    return new Locator(this, []).locator(css, options);
  }
  getByRole(role, options) {
    return new Locator(this, []).getByRole(role, options);
  }
  setViewportSize({ width, height }) {
    return this.context.use(this.handle, (d) => d.manage().window().setRect({ width, height }));
  }
  async screenshot({ path }) {
    const png = await this.context.use(this.handle, (d) => d.takeScreenshot());
    writeFileSync(path, Buffer.from(png, 'base64'));
  }
  /** Waits for the load event of the page's current document. */
  waitForLoadState() {
    return this.waitForFunction(() => document.readyState === 'complete');
  }
  on() {
    return this;
  }
  async close() {
    if (this.closed) return;
    this.closed = true;
    if (this.context.pages().length === 0) {
      // The session's last window: closing it would end the session (the profile), so it is emptied instead;
      // the page and its workers go all the same. The next newPage() takes it.
      this.used = false;
      this.closed = false;
      return this.context.use(this.handle, (d) => d.get('about:blank'));
    }
    await this.context.use(this.handle, (d) => d.close());
    this.context.current = null;
    const next = this.context.pages()[0];
    if (next) await this.context.use(next.handle, async () => undefined);
  }
}
