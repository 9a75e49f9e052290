// A webpack 5 app using the packed oversync-web: open a database, write a row, show the sync status.
import { SyncClient } from 'oversync-web';

const INIT = `CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
  created_at TEXT, updated_at TEXT);`;

const show = (id, text) => (document.getElementById(id).textContent = text);

async function main() {
  const db = await SyncClient.open({
    name: 'webpack', user: 'user-webpack', url: location.origin, serverSchema: 'business', tables: ['users'], init: INIT,
    auth: async ({ deviceId }) => {
      const r = await fetch('/signin', { method: 'POST', body: JSON.stringify({ username: 'webpack', device_id: deviceId }) });
      return (await r.json()).token;
    },
  });
  await db.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), 'Wes', 'w@example.com']);
  const [{ name }] = await db.query('SELECT name FROM users');
  show('name', name);
  const status = await db.sync();
  show('status', `pending ${status.pending} synced ${status.lastSyncedAt ? 'yes' : 'no'}`);
}

main().catch((e) => show('error', `${e.code ?? 'ERROR'}: ${e.message}`));
