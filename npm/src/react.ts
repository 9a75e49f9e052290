// React binding: live queries and sync status as hooks.

import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { OversyncError, SyncClient } from './index.js';
import type { Params, Row, SyncStatus } from './types.js';
import { INITIAL_STATUS } from './messages.js';

/** The result of {@link useQuery}. */
export interface QueryState<T> {
  /** The rows (empty until the first result). */
  rows: T[];
  /** True until the first result arrives. */
  loading: boolean;
  /** The last error, if the query failed. */
  error: OversyncError | null;
}

/**
 * A live query: re-renders with new rows whenever a write (local, another tab's, or synced) touches a table it
 * reads. `client` may be null while the database opens. Params are compared by value.
 */
export function useQuery<T = Row>(client: SyncClient | null, sql: string, params?: Params): QueryState<T> {
  const [state, setState] = useState<QueryState<T>>({ rows: [], loading: true, error: null });
  const key = JSON.stringify(params ?? null, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
  const paramsRef = useRef(params);
  paramsRef.current = params;
  useEffect(() => {
    setState({ rows: [], loading: !!client, error: null });
    if (!client) return;
    return client.subscribe<T>(
      sql,
      paramsRef.current,
      (rows) => setState({ rows, loading: false, error: null }),
      (error) => setState((s) => ({ ...s, loading: false, error })),
    );
  }, [client, sql, key]);
  return state;
}

/** Before the client exists: nothing known, shown as offline. */
const offlineStatus: SyncStatus = { ...INITIAL_STATUS, online: false };

/** The client's sync status, re-rendering when it changes. */
export function useSyncStatus(client: SyncClient | null): SyncStatus {
  const subscribe = useCallback(
    (onChange: () => void) => (client ? client.onStatus(onChange) : () => undefined),
    [client],
  );
  return useSyncExternalStore(subscribe, () => (client ? client.status : offlineStatus));
}
