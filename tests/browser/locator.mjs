// The part of playwright's locators the demo tests use (`locator(css, { hasText, has })`, `getByRole(role,
// { name })`, `first()`, `waitFor`, `click`, `textContent`, `allTextContents`), for engines driven through
// puppeteer (Firefox over WebDriver BiDi). A locator is a list of steps resolved in the page at each use, so it
// follows the DOM as React re-renders it, as playwright's do.

import { eventually } from './browser.mjs';

/**
 * Resolves `steps` in the page and does `action` with the matches (`count`, `click`, `text`, `texts`); null when
 * nothing matches (but for `texts`). Runs in the browser, so it is self-contained (no eval: pages may have a CSP).
 */
function inPage([steps, action]) {
  const roles = { button: 'button, [role=button], input[type=button], input[type=submit]' };
  const text = (e) => (e.getAttribute('aria-label') ?? e.textContent ?? '').replace(/\s+/g, ' ').trim();
  const run = (list, roots) => {
    let found = roots;
    for (const s of list) {
      if (s.first) {
        found = found.slice(0, 1);
        continue;
      }
      const css = s.role ? (roles[s.role] ?? `[role=${s.role}]`) : s.css;
      found = [...new Set(found.flatMap((r) => [...r.querySelectorAll(css)]))];
      if (s.hasText != null) found = found.filter((e) => text(e).toLowerCase().includes(s.hasText.toLowerCase()));
      if (s.name != null) found = found.filter((e) => text(e).toLowerCase().includes(s.name.toLowerCase()));
      if (s.has) found = found.filter((e) => run(s.has, [e]).length > 0);
    }
    return found;
  };
  const found = run(steps, [document]);
  if (action === 'texts') return found.map((e) => e.textContent);
  if (found.length === 0) return null;
  if (action === 'click') found[0].click();
  return { text: found[0].textContent };
}

export class Locator {
  constructor(page, steps) {
    this.page = page;
    this.steps = steps;
  }
  locator(css, { hasText, has } = {}) {
    return new Locator(this.page, [...this.steps, { css, hasText, has: has?.steps }]);
  }
  getByRole(role, { name } = {}) {
    return new Locator(this.page, [...this.steps, { role, name }]);
  }
  first() {
    return new Locator(this.page, [...this.steps, { first: true }]);
  }
  /** Does `action` once something matches, waiting up to `timeout`. */
  #when(action, { timeout = 30_000 } = {}) {
    return eventually(() => this.page.evaluate(inPage, [this.steps, action]), timeout, `an element of ${JSON.stringify(this.steps)}`);
  }
  async waitFor(options) {
    await this.#when('count', options);
  }
  async click(options) {
    await this.#when('click', options);
  }
  async textContent(options) {
    return (await this.#when('text', options)).text;
  }
  /** Like playwright's: the matches now, without waiting for any. */
  allTextContents() {
    return this.page.evaluate(inPage, [this.steps, 'texts']);
  }
}
