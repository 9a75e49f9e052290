// The journal's database: the schema, sign-in (the server's dev sign-in, or with --jwks the app backend's tokens),
// and opening the synced client.
import { SyncClient, defineSchema } from 'oversync-web';

export const INIT = `
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
  created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL,
  author_id TEXT REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED, created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS team_posts (id TEXT PRIMARY KEY, team_id TEXT, title TEXT NOT NULL DEFAULT '',
  content TEXT NOT NULL DEFAULT '', author_name TEXT, created_at TEXT, updated_at TEXT);
`;

/**
 * The synced tables and their columns: the client checks them against INIT when it opens (a drift between the two
 * is a CONFIG error, not a silent mismatch), and TypeScript apps get row types from it (`SchemaRow<typeof schema,
 * 'posts'>`, or `Kysely<Database<typeof schema>>` with `oversync-web/kysely`).
 */
export const schema = defineSchema(
  {
    users: { id: 'text', name: 'text', email: 'text', created_at: 'text?', updated_at: 'text?' },
    posts: { id: 'text', title: 'text', content: 'text', author_id: 'text?', created_at: 'text?', updated_at: 'text?' },
    team_posts: {
      id: 'text', team_id: 'text?', title: 'text', content: 'text', author_name: 'text?', created_at: 'text?',
      updated_at: 'text?',
    },
  },
  // A team post belongs to the team named in team_id (shared with its members); NULL keeps it a private draft.
  { scopes: { team_posts: 'team_id' } },
);

/**
 * Where the sync server is and where tokens come from. By default the server's own origin and its dev sign-in;
 * with `www/demo --jwks` the app is served by its backend (a test identity provider), whose /demo-config.json names
 * the sync server and its token route. Kept in localStorage, so the app also starts offline.
 */
async function demoConfig() {
  try {
    const r = await fetch('/demo-config.json', { cache: 'no-store' });
    if (r.ok) {
      const config = await r.json();
      localStorage.setItem('demo-config', JSON.stringify(config));
      return config;
    }
    if (r.status === 404) {
      localStorage.removeItem('demo-config');
      return {};
    }
  } catch {
    // Offline: the last known configuration.
  }
  return JSON.parse(localStorage.getItem('demo-config') ?? '{}');
}

/** A token for `username` from the app's backend (`--jwks`): RS256, no device claim (oversync-web sends it). */
async function backendToken(tokenUrl, username) {
  const r = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: username }),
  });
  // The status tells the package whether waiting may help (502, 503: yes; 403: no).
  if (!r.ok) throw Object.assign(new Error(`sign-in failed: ${r.status}`), { status: r.status });
  return (await r.json()).token;
}

/** A dev token for `username` on this browser's device (the server's `/signin`, enabled by `dev_signin`). */
async function signin(username, deviceId) {
  const r = await fetch('/signin', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, device_id: deviceId }),
  });
  // The status tells the package whether waiting may help (502, 503: yes; 403: no).
  if (!r.ok) throw Object.assign(new Error(`sign-in failed: ${r.status}`), { status: r.status });
  return (await r.json()).token;
}

/**
 * Creates, joins or leaves a team through the demo server's team route (its stand-in for an app backend that
 * manages teams; dev sign-in only): `{ create: name }`, `{ join: code }`, `{ leave: code }`, or `{ pin: { team,
 * text } }` (the team admin writes a note with plain SQL, issue 33).
 */
export async function teamRequest(username, body) {
  const token = await signin(username, 'team-admin');
  const r = await fetch('/demo/teams', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.message ?? `team request failed: ${r.status}`);
  return answer;
}

/**
 * The id of `name`'s author row: the oldest one synced or made here, or a new one with a random id. Ids are never
 * derived from the name: anyone can compute such an id, and every id is a key the user's rows live under. Two
 * devices that start offline at the same time each make a row; posts point at either, and both carry the name.
 */
export async function authorId(db, name) {
  const [row] = await db.query('SELECT id FROM users WHERE name = ? ORDER BY created_at, id LIMIT 1', [name]);
  if (row) return row.id;
  const id = crypto.randomUUID();
  const now = new Date().toISOString();
  await db.exec('INSERT INTO users (id, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)',
    [id, name, `${name}@journal.example`, now, now]);
  return id;
}

/**
 * Opens `username`'s journal (one database file per user) and makes sure their author row exists. `onSignedOut`:
 * another tab signed this user out (the journal is gone from the browser).
 */
export async function openJournal(username, onError, onSignedOut) {
  const config = await demoConfig();
  const db = await SyncClient.open({
    name: 'journal',
    user: `user-${username}`,
    url: config.syncUrl ?? location.origin,
    serverSchema: 'business',
    schema,
    init: INIT,
    // Where the browser cannot keep it (no OPFS sync access handles), the journal still runs, in memory, and the
    // status bar says it is not saved.
    storage: 'best',
    auth: config.tokenUrl
      ? () => backendToken(config.tokenUrl, username)
      : ({ deviceId }) => signin(username, deviceId),
    onError,
    onSignedOut,
  });
  // After the first sync the author row usually exists already (another device made it); a post written before
  // that makes it on the spot. The app shows the database at once, with the hydration's progress.
  db.waitForFirstSync()
    .then(() => authorId(db, username))
    .catch(() => undefined);
  return db;
}
