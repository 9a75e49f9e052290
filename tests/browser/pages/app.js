// Test page: exposes the package to Playwright (window.openDb, window.db).
import { SyncClient } from '/oversync-web/index.js';

export const INIT = `
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
  created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL,
  author_id TEXT REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED, created_at TEXT, updated_at TEXT);
`;

/** A token from the server's dev sign-in for this database's device. */
async function signin(username, deviceId) {
  window.log.signins++;
  const r = await fetch('/signin', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, device_id: deviceId }),
  });
  if (!r.ok) throw new Error(`signin: ${r.status}`);
  return (await r.json()).token;
}

// Tests that call SyncClient.open themselves get the harness's storage too (WebKitGTK: IndexedDB).
const testStorage = () => {
  let storage = null;
  try {
    storage = sessionStorage.getItem('oversync-test-storage');
  } catch {
    // Site data blocked (a storage test does so): no harness storage either.
  }
  return storage ? { storage } : {};
};
window.SyncClient = class extends SyncClient {
  static open(options) {
    return super.open({ ...testStorage(), ...options });
  }
};
window.log = { errors: [], live: [], signins: 0, signedOut: 0 };
window.openDb = async (username, extra = {}) => {
  window.db = await SyncClient.open({
    name: 'journal',
    user: `user-${username}`,
    url: location.origin,
    serverSchema: 'business',
    tables: ['users', 'posts'],
    init: INIT,
    auth: ({ deviceId }) => signin(username, deviceId),
    onError: (e) => window.log.errors.push(`${e.code}: ${e.message}`),
    syncIntervalMs: 500,
    onSignedOut: () => window.log.signedOut++,
    // Set by the WebKitGTK harness (no OPFS sync access handles there): the databases live in IndexedDB.
    ...testStorage(),
    ...extra,
  });
  return window.db.status;
};
window.uuid = () => crypto.randomUUID();
window.ready = true;
