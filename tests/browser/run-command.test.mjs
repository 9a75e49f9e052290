// The demo's stack (`oversync-dev`, what `www/demo` runs): the app on the sync server's origin, natively and
// with the Worker under wrangler dev, and with `--jwks` on a test identity provider's origin, signed in with its
// RS256 tokens; Ctrl-C (SIGINT) stops everything it started.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { cleanup, eventually, launch } from './browser.mjs';
import { descendants, root, startSyncServer } from './stack.mjs';

after(cleanup);

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

for (const [edge, jwks] of [[false, false], [true, false], [false, true]]) {
  const name = `${edge ? 'Worker (wrangler dev)' : 'native'}${jwks ? ' with --jwks (tokens from a test identity provider)' : ''}`;
  test(`${name}: the app works end to end and Ctrl-C leaves no process behind`, async () => {
    const stack = await startSyncServer({ staticDir: path.join(root, 'www/dist'), edge, jwks });
    const started = descendants(stack.pid);
    assert.ok(started.length > 0, 'oversync-dev started PostgreSQL and the server');
    try {
      const health = await (await fetch(`${stack.url}/health`)).json();
      assert.equal(health.status, 'healthy');
      const context = await launch();
      const page = await context.newPage();
      await page.goto(`${stack.app}/`);
      await page.fill('input[name=username]', edge ? 'edgar' : jwks ? 'jade' : 'nadia');
      await page.click('button[type=submit]');
      await page.fill('input[name=title]', 'hello from the run command');
      await page.click('form.compose button[type=submit]');
      await eventually(
        async () => (await page.textContent('[data-testid=pending]')) === '0 pending' && (await page.textContent('[data-testid=last-synced]')) !== 'Last synced: never',
        30_000,
        'the post synced',
      );
      await context.close();
    } finally {
      await stack.stop();
    }
    await eventually(() => started.every((pid) => !alive(pid)), 15_000, `every process gone (${started})`);
  });
}
