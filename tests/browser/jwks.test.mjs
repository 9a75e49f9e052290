// Tokens from an identity provider in the browser (issue 20). An app's backend mints RS256 tokens with `jose`
// (npm) and publishes its JWKS on 127.0.0.1; the server is configured with that URL only through the
// environment (OVERSYNC_JWKS_URL, issuer, audience). The tokens carry no device claim: oversync-web names the
// device in the Oversync-Device-Id header.

import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { cleanup, launch } from './browser.mjs';
import { root, startOrigin, startSyncServer } from './stack.mjs';

const ISSUER = 'https://auth.app.example';
const AUDIENCE = 'oversync-browser-tests';

let idp;
let signingKey;
let jwksFetches = 0;
let sync;
let web;

before(async () => {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  signingKey = privateKey;
  const jwk = { ...(await exportJWK(publicKey)), kid: 'app-key-1', alg: 'RS256', use: 'sig' };
  idp = http.createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') return res.writeHead(404).end();
    jwksFetches += 1;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=300' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise((r) => idp.listen(0, '127.0.0.1', r));
  sync = await startSyncServer({
    env: {
      OVERSYNC_JWKS_URL: `http://127.0.0.1:${idp.address().port}/.well-known/jwks.json`,
      OVERSYNC_JWT_ISSUER: ISSUER,
      OVERSYNC_JWT_AUDIENCE: AUDIENCE,
    },
  });
  web = await startOrigin(sync.url, {
    '/oversync-web/': path.join(root, 'npm/dist'),
    '/': path.join(root, 'tests/browser/pages'),
  });
});

after(async () => {
  await cleanup();
  await web?.stop();
  await sync?.stop();
  await new Promise((r) => (idp ? idp.close(r) : r()));
});

/** What an app's backend does after its own sign-in: a short-lived RS256 token for `sub`, no device claim. */
const mint = (sub) =>
  new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', kid: 'app-key-1', typ: 'JWT' })
    .setSubject(sub)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(signingKey);

/** Opens `user`'s database in a fresh profile with `token` from the auth callback; returns the page. */
async function open(user, token) {
  const ctx = await launch();
  const page = await ctx.newPage();
  await page.goto(`${web.origin}/`);
  await page.waitForFunction(() => window.ready);
  await page.evaluate(async ([user, token]) => {
    const { INIT } = await import('./app.js');
    window.db = await window.SyncClient.open({ name: 'jwks', user, url: location.origin, serverSchema: 'business',
      tables: ['users', 'posts'], init: INIT, autoSync: false, auth: () => token });
  }, [user, token]);
  return { ctx, page };
}

test('a jose-minted RS256 token without a device claim syncs two devices of one user', async () => {
  const user = 'user-jose-ann';
  const a = await open(user, await mint(user));
  const b = await open(user, await mint(user));
  const sent = await a.page.evaluate(async () => {
    await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), 'Ann', 'a@x']);
    const s = await window.db.sync();
    return { pending: s.pending, lastError: s.lastError };
  });
  assert.deepEqual(sent, { pending: 0, lastError: null });
  const seen = await b.page.evaluate(async () => {
    const s = await window.db.sync();
    const rows = await window.db.query('SELECT name FROM users');
    return { lastError: s.lastError, names: rows.map((r) => r.name) };
  });
  assert.deepEqual(seen, { lastError: null, names: ['Ann'] });
  assert.ok(jwksFetches >= 1, 'the server fetched the app\'s JWKS');
  await a.ctx.close();
  await b.ctx.close();
});

test('a token of another user is refused by the client before anything is uploaded', async () => {
  const a = await open('user-jose-kim', await mint('user-jose-lee'));
  const r = await a.page.evaluate(async () => {
    await window.db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), 'Kim', 'k@x']);
    let code = null;
    try {
      await window.db.sync();
    } catch (e) {
      code = e.code;
    }
    const s = window.db.status;
    return { code, pending: s.pending, lastError: s.lastError };
  });
  assert.equal(r.pending, 1, JSON.stringify(r));
  assert.equal(r.code, 'TOKEN_USER_MISMATCH', JSON.stringify(r));
  assert.match(JSON.stringify(r.lastError), /belongs to user user-jose-kim/, JSON.stringify(r));
  await a.ctx.close();
});
