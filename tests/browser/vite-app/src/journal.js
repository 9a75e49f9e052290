// The components the browser build (main.js) and the server render (ssr.js) share: the provider's database,
// a live query whose params change, a suspending count, and the sync status.
import { createElement as h, Suspense, useState } from 'react';
import { OversyncProvider, useDb, useLiveQuery, useQuery, useSuspenseQuery, useSyncStatus } from 'oversync-web/react';
import { queryBuilder } from 'oversync-web/kysely';

/** Builds queries only: the hooks run them on the provider's database. */
const q = queryBuilder();

/** Every render of Names, for the test: no flash of `[]` while the params change. */
const renders = typeof window === 'undefined' ? [] : (window.renders = []);

function Names() {
  const [prefix, setPrefix] = useState('V');
  const { rows, loading } = useQuery('SELECT name FROM users WHERE name LIKE ? ORDER BY name', [`${prefix}%`]);
  renders.push({ prefix, names: rows.map((r) => r.name), loading });
  return h('section', null,
    h('button', { id: 'switch', onClick: () => setPrefix(prefix === 'V' ? 'W' : 'V') }, 'switch'),
    h('ul', { id: 'names' }, rows.map((r, i) => h('li', { key: i }, r.name))),
    h('p', { id: 'loading' }, loading ? 'loading' : 'loaded'),
  );
}

function Count() {
  const [{ n }] = useSuspenseQuery('SELECT count(*) AS n FROM users');
  return h('p', { id: 'count' }, String(n));
}

/** The hooks that take a query builder (their types: typed-end-to-end.ts). */
function Builder() {
  const { rows } = useLiveQuery(q.selectFrom('users').select('name').where('name', 'like', 'V%').orderBy('name'));
  const [{ n }] = useSuspenseQuery(q.selectFrom('users').select((eb) => eb.fn.countAll().as('n')));
  return h('p', { id: 'builder' }, `${rows.map((r) => r.name).join(',')} of ${n}`);
}

function Status() {
  const status = useSyncStatus();
  const db = useDb();
  return h('p', { id: 'status' }, db ? `pending ${status.pending} synced ${status.lastSyncedAt ? 'yes' : 'no'}` : `offline ${!status.online}`);
}

export function Journal({ db, onAdd }) {
  return h(OversyncProvider, { db },
    onAdd && h('button', { id: 'add', onClick: () => onAdd('Vera') }, 'add'),
    onAdd && h('button', { id: 'add-w', onClick: () => onAdd('Walt') }, 'add W'),
    h(Names),
    h(Suspense, { fallback: h('p', { id: 'fallback' }, 'counting…') }, h(Count)),
    h(Suspense, { fallback: h('p', { id: 'builder-fallback' }, 'building…') }, h(Builder)),
    h(Status),
  );
}
