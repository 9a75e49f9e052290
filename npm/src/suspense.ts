// The live queries behind `useSuspenseQuery`: one subscription per (database, SQL, params), shared by every
// component that reads it, created during render (a suspended render has no effects) and released a while
// after the last reader unmounts, or after a render that suspended was never committed.

import type { OversyncError, SyncClient } from './index.js';
import type { Params } from './types.js';

/** One shared live query. */
export interface QueryEntry<T> {
  /** The latest rows (`undefined` before the first result). */
  rows: T[] | undefined;
  error: OversyncError | null;
  /** Settles with the first result or error (what a suspended render waits for). */
  first: Promise<void>;
  /** Calls `onChange` on every new result; returns the stop function. */
  watch(onChange: () => void): () => void;
  /** Forgets the entry now (a failed one, once its error was thrown: a retry starts afresh). */
  drop(): void;
}

/** How long an entry nobody reads is kept: a suspended render commits within this, or remounts read it again. */
const LINGER_MS = 5_000;

const entries = new WeakMap<SyncClient, Map<string, QueryEntry<unknown>>>();

/** The shared entry of `sql` with `params` on `db` (`key`: the params compared by value). */
export function queryEntry<T>(db: SyncClient, sql: string, params: Params | undefined, key: string): QueryEntry<T> {
  let byQuery = entries.get(db);
  if (!byQuery) entries.set(db, (byQuery = new Map()));
  const id = `${sql}\u0000${key}`;
  const known = byQuery.get(id);
  if (known) return known as QueryEntry<T>;

  const listeners = new Set<() => void>();
  let settle!: () => void;
  let settled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const notify = () => {
    settle();
    if (!settled) {
      settled = true;
      // A render that suspended on it retries now; if none reads it after all, it goes after LINGER_MS.
      if (listeners.size === 0) release();
    }
    listeners.forEach((l) => l());
  };
  const drop = () => {
    clearTimeout(timer);
    unsubscribe();
    if (byQuery.get(id) === entry) byQuery.delete(id);
  };
  // Never before the first result: a suspended render waits on `first`, which only a result settles.
  const release = () => {
    clearTimeout(timer);
    if (settled) timer = setTimeout(() => listeners.size === 0 && drop(), LINGER_MS);
  };
  const entry: QueryEntry<T> = {
    rows: undefined,
    error: null,
    first: new Promise<void>((r) => (settle = r)),
    watch(onChange) {
      clearTimeout(timer);
      listeners.add(onChange);
      return () => {
        listeners.delete(onChange);
        if (listeners.size === 0) release();
      };
    },
    drop: () => drop(),
  };
  const unsubscribe = db.subscribe<T>(
    sql,
    params,
    (rows) => {
      entry.rows = rows;
      entry.error = null;
      notify();
    },
    (error) => {
      entry.error = error;
      notify();
    },
  );
  byQuery.set(id, entry as QueryEntry<unknown>);
  release();
  return entry;
}
