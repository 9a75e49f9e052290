// The journal's database: the schema, sign-in through the server's dev sign-in, and opening the synced client.
import { SyncClient } from 'oversync-web';

export const INIT = `
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
  created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL,
  author_id TEXT REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED, created_at TEXT, updated_at TEXT);
`;

/** A dev token for `username` on this browser's device (the server's `/signin`, enabled by `dev_signin`). */
async function signin(username, deviceId) {
  const r = await fetch('/signin', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, device_id: deviceId }),
  });
  if (!r.ok) throw new Error(`sign-in failed: ${r.status}`);
  return (await r.json()).token;
}

/** A stable UUID for a name (SHA-256 based), so every device of a person writes the same author row. */
export async function nameId(name) {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(name)));
  h[6] = (h[6] & 0x0f) | 0x80; // version 8 (custom)
  h[8] = (h[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = [...h.slice(0, 16)].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Opens `username`'s journal (one database file per user) and makes sure their author row exists. */
export async function openJournal(username, onError) {
  const db = await SyncClient.open({
    name: 'journal',
    user: `user-${username}`,
    url: location.origin,
    serverSchema: 'business',
    tables: ['users', 'posts'],
    init: INIT,
    auth: ({ deviceId }) => signin(username, deviceId),
    onError,
  });
  // After the first download the author row usually exists already (another device made it).
  await db.sync().catch(() => undefined);
  const now = new Date().toISOString();
  await db.exec(
    `INSERT INTO users (id, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (id) DO NOTHING`,
    [await nameId(username), username, `${username}@journal.example`, now, now],
  );
  return db;
}
