// A fresh Vite + React app using the packed oversync-web: the provider, live queries and the sync status.
import { createElement as h, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncClient } from 'oversync-web';
import { Journal } from './journal.js';

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
    }).then((db) => {
      window.db = db; // for the tests
      setClient(db);
    }, (e) => setError(`${e.code}: ${e.message}`));
  }, []);
  const add = (name) =>
    client.exec('INSERT INTO users (id, name, email) VALUES (?, ?, ?)', [crypto.randomUUID(), name, `${name}@example.com`]);
  if (error) return h('p', { id: 'error' }, error);
  // Rendered before the database is open too: the hooks say loading (and the count suspends) until it is.
  return h(Journal, { db: client, onAdd: client ? add : null });
}

createRoot(document.getElementById('root')).render(h(App));
