// A fresh Vite + React app using the packed oversync-web: a live list and the sync status.
import { createElement as h, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncClient } from 'oversync-web';
import { useQuery, useSyncStatus } from 'oversync-web/react';

const INIT = `CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
  created_at TEXT, updated_at TEXT);`;

async function token(username, deviceId) {
  const r = await fetch('/signin', { method: 'POST', body: JSON.stringify({ username, device_id: deviceId }) });
  return (await r.json()).token;
}

function App() {
  const [client, setClient] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    SyncClient.open({
      name: 'vite', user: 'user-vite', url: location.origin, serverSchema: 'business', tables: ['users'], init: INIT,
      auth: ({ deviceId }) => token('vite', deviceId),
    }).then(setClient, (e) => setError(`${e.code}: ${e.message}`));
  }, []);
  const { rows } = useQuery(client, 'SELECT name FROM users ORDER BY name');
  const status = useSyncStatus(client);
  const add = () =>
    client.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), 'Vera', 'v@example.com']);
  if (error) return h('p', { id: 'error' }, error);
  if (!client) return h('p', null, 'opening…');
  return h('main', null,
    h('button', { id: 'add', onClick: add }, 'add'),
    h('ul', { id: 'names' }, rows.map((r, i) => h('li', { key: i }, r.name))),
    h('p', { id: 'status' }, `pending ${status.pending} synced ${status.lastSyncedAt ? 'yes' : 'no'}`),
  );
}

createRoot(document.getElementById('root')).render(h(App));
