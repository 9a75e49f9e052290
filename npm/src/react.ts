// React binding: a provider for the database, live queries (plain and suspending) and the sync status as
// hooks. Safe to import and render on a server (SSR): there is no database there, so hooks report loading and
// the offline status, and suspending queries show their Suspense fallback.

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from 'react';
import type { OversyncError, SyncClient } from './index.js';
import type { Params, Row, SyncStatus } from './types.js';
import { INITIAL_STATUS } from './messages.js';
import { queryEntry } from './suspense.js';

/** What the provider hands down: the database (null while it opens) and a promise of it for suspending hooks. */
interface DbContext {
  db: SyncClient | null;
  ready: Promise<SyncClient>;
}

const never: Promise<SyncClient> = new Promise(() => undefined);
const Context = createContext<DbContext>({ db: null, ready: never });

/**
 * Makes `db` (null while it opens) the database of every hook below that is not given one. Render it once,
 * near the root; the hooks re-render when `db` changes.
 */
export function OversyncProvider({ db, children }: { db: SyncClient | null; children?: ReactNode }) {
  const deferred = useRef<{ promise: Promise<SyncClient>; resolve: (db: SyncClient) => void; done: boolean } | null>(null);
  // A pending promise while there is no database (again, after a sign-out): suspending hooks wait on it.
  if (!deferred.current || (!db && deferred.current.done)) {
    let resolve!: (db: SyncClient) => void;
    const promise = new Promise<SyncClient>((r) => (resolve = r));
    deferred.current = { promise, resolve, done: false };
  }
  if (db && !deferred.current.done) {
    deferred.current.resolve(db);
    deferred.current.done = true;
  }
  const value = useMemo(() => ({ db, ready: db ? Promise.resolve(db) : deferred.current!.promise }), [db]);
  return createElement(Context.Provider, { value }, children);
}

/**
 * The provider's database (null while it opens, and always on a server); `useDb<Database<typeof schema>>()` for
 * the typed client.
 */
export function useDb<DB = any>(): SyncClient<DB> | null {
  return useContext(Context).db;
}

/**
 * A query whose rows the hooks infer: a Kysely builder (e.g. from `queryBuilder()` of `oversync-web/kysely`), or
 * anything with `compile()` and a typed `execute()` (which the hooks never call: they run the compiled SQL).
 */
export interface Compilable<R> {
  compile(): { readonly sql: string; readonly parameters: ReadonlyArray<unknown> };
  execute(): Promise<R[]>;
}

const compiled = (query: Compilable<unknown>): [string, Params] => {
  const c = query.compile();
  return [c.sql, [...c.parameters] as Params];
};

/** The result of {@link useQuery}. */
export interface QueryState<T> {
  /** The rows: the last ones while a new query (other SQL or params) runs, empty before the first result. */
  rows: T[];
  /** True until the current query's first result: also while there is no database yet (or on a server). */
  loading: boolean;
  /** The last error, if the query failed. */
  error: OversyncError | null;
}

const paramsKey = (params: Params | undefined) =>
  JSON.stringify(params ?? null, (_, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? [...v] : v));

/**
 * A live query: re-renders with new rows whenever a write (local, another tab's, or synced) touches a table it
 * reads and its rows changed. Params are compared by value; while they (or the SQL) change, the previous rows
 * stay until the new ones arrive, with `loading` true. `useQuery(sql, params?)` uses the provider's database;
 * `useQuery(client, sql, params?)` a given one (null while it opens).
 */
export function useQuery<T = Row>(sql: string, params?: Params): QueryState<T>;
export function useQuery<T = Row>(client: SyncClient | null, sql: string, params?: Params): QueryState<T>;
export function useQuery<T = Row>(a: SyncClient | null | string, b?: string | Params, c?: Params): QueryState<T> {
  const fromContext = useDb();
  const [client, sql, params] = typeof a === 'string' ? [fromContext, a, b as Params | undefined] : [a, b as string, c];
  return useLive<T>(client, sql, params);
}

/**
 * {@link useQuery} of a query builder, its rows inferred: `useLiveQuery(q.selectFrom('posts').select('title'))`
 * gives `QueryState<{ title: string }>`. Compiled at every render and compared by SQL and params, like
 * `useQuery`. Uses the provider's database, or `client` when given.
 */
export function useLiveQuery<R>(query: Compilable<R>, client?: SyncClient | null): QueryState<R> {
  const fromContext = useDb();
  const [sql, params] = compiled(query);
  return useLive<R>(client === undefined ? fromContext : client, sql, params);
}

function useLive<T>(client: SyncClient | null, sql: string, params: Params | undefined): QueryState<T> {
  const key = paramsKey(params);
  const id = `${sql}\u0000${key}`;
  // The last result and what it answers: in the render where the SQL, params or database change, the old rows
  // are still shown, and `loading` is already true.
  const [state, setState] = useState<{ rows: T[]; error: OversyncError | null; of: string | null; client: SyncClient | null }>(
    { rows: [], error: null, of: null, client: null },
  );
  const paramsRef = useRef(params);
  paramsRef.current = params;
  useEffect(() => {
    if (!client) return;
    return client.subscribe<T>(
      sql,
      paramsRef.current,
      (rows) => setState({ rows, error: null, of: id, client }),
      (error) => setState((s) => ({ ...s, error, of: id, client })),
    );
  }, [client, sql, key]);
  const current = client !== null && state.client === client && state.of === id;
  return { rows: client ? state.rows : [], loading: !current, error: current ? state.error : null };
}

/** What {@link useSuspenseQuery} throws on a server (see {@link isClientOnly}). */
const CLIENT_ONLY = 'OVERSYNC_CLIENT_ONLY';

/**
 * True for the error {@link useSuspenseQuery} throws on a server so that React renders its Suspense fallback and
 * leaves the boundary to the browser (streaming SSR waits for a thrown promise: it hung). Pass your
 * `renderToPipeableStream` (or framework) `onError` past it: `onError(e) { if (!isClientOnly(e)) log(e) }`.
 */
export function isClientOnly(error: unknown): boolean {
  return (error as { digest?: unknown } | null)?.digest === CLIENT_ONLY;
}

const clientOnly = () =>
  Object.assign(new Error('oversync-web: the database lives in the browser; this Suspense boundary renders there'), {
    digest: CLIENT_ONLY,
  });

/**
 * A live query for Suspense: suspends until the first result (and while there is no database yet), then
 * returns the rows and re-renders when they change. On a server (no `window`) it throws at once an error that
 * {@link isClientOnly} recognises, so streaming and string SSR alike render the boundary's fallback and the
 * browser renders the rows. A failed query throws its `OversyncError` to the nearest error boundary. Uses the
 * provider's database.
 */
export function useSuspenseQuery<T = Row>(sql: string, params?: Params): T[];
/** {@link useSuspenseQuery} of a query builder, its rows inferred (see {@link useLiveQuery}). */
export function useSuspenseQuery<R>(query: Compilable<R>): R[];
export function useSuspenseQuery<T>(a: string | Compilable<T>, b?: Params): T[] {
  const [sql, params] = typeof a === 'string' ? [a, b] : compiled(a);
  const { db, ready } = useContext(Context);
  const key = paramsKey(params);
  const entry = db ? queryEntry<T>(db, sql, params, key) : null;
  const subscribe = useCallback((onChange: () => void) => (entry ? entry.watch(onChange) : () => undefined), [entry]);
  const rows = useSyncExternalStore(subscribe, () => entry?.rows, () => undefined);
  if (!entry && typeof window === 'undefined') throw clientOnly();
  if (!entry) throw ready;
  if (entry.error) {
    entry.drop();
    throw entry.error;
  }
  if (rows === undefined) throw entry.first;
  return rows;
}

/** Before the client exists, and on a server: nothing known, shown as offline. */
const offlineStatus: SyncStatus = { ...INITIAL_STATUS, online: false };

/**
 * The sync status, re-rendering when it changes: of `client` when given, else of the provider's database.
 * On a server (and before the database opens) it is the offline status.
 */
export function useSyncStatus(client?: SyncClient | null): SyncStatus {
  const fromContext = useDb();
  const db = client === undefined ? fromContext : client;
  const subscribe = useCallback((onChange: () => void) => (db ? db.onStatus(onChange) : () => undefined), [db]);
  return useSyncExternalStore(subscribe, () => (db ? db.status : offlineStatus), () => offlineStatus);
}
