// Public types of oversync-web.

/** A value SQLite stores: integers beyond 2^53 come back as bigint, blobs as Uint8Array. */
export type SqlValue = null | number | bigint | string | Uint8Array;

/** Statement parameters: positional (`?`, `?1`) or named (`:name`, `@name`, `$name`; a bare key means `:key`). */
export type Params = readonly unknown[] | Record<string, unknown>;

/** A row as an object keyed by column name. */
export type Row = Record<string, SqlValue>;

/** What `exec` reports. */
export interface ExecResult {
  /** Rows changed by the statement. */
  changes: number;
  /** The rowid of the last insert on this connection. */
  lastInsertRowid: number;
}

/** A synced table: its name, and its sync key column (default `id`: a UUID as TEXT, or a 16-byte BLOB). */
/**
 * A synced table: its name, its key column (default `id`) and, for a table whose rows are shared by a team
 * (docs/sharing.md), the column naming the row's scope (`scope`, the server's `scope_column`; NULL keeps a row a
 * private draft).
 */
export type TableOption = string | { name: string; key?: string; scope?: string };

/** A shared scope this database holds (docs/sharing.md §6). */
export interface ScopeStatus {
  scope: string;
  role: 'reader' | 'writer';
  /** `backfilling` while its existing rows arrive after a join, then `held`. */
  state: 'backfilling' | 'held';
  /** Local rows of the scope. */
  rows: number;
}

/** A conflict the engine resolved during a sync (PROTOCOL §7.5). */
export interface Conflict {
  table: string;
  pk: string;
  /** `server`: the server's row was kept; `client`: the local change was re-sent; `merge`: a merged row. */
  resolution: 'server' | 'client' | 'merge';
  /** The merged row (wire form) for `merge`, else null. */
  merged: Record<string, unknown> | null;
  server: { deleted: boolean; payload: Record<string, unknown> | null; version: number };
  local: { op: 'INSERT' | 'UPDATE' | 'DELETE'; payload: Record<string, unknown> | null; baseVersion: number };
}

/**
 * The reasons a change is refused for good (PROTOCOL.md §4.3 and the extensions): `bad_payload`,
 * `unregistered_table`, `scope_forbidden` (not a writer of the row's scope), `read_only_table` (a table only the
 * backend writes); a newer server may add others.
 */
export type RejectionReason = 'bad_payload' | 'unregistered_table' | 'scope_forbidden' | 'read_only_table' | (string & {});

/** A change the server refused for good; it was dropped from the queue. */
export interface Rejection {
  /** For {@link SyncClient.retryRejected} and {@link SyncClient.discardRejected}. */
  id: number;
  table: string;
  pk: string;
  /** Why the server refused it for good. */
  reason: RejectionReason;
  message: string | null;
}

/** A conflict the app's `conflict` option decides (payloads in wire form: column → JSON value). */
export interface ConflictContext {
  table: string;
  pk: string;
  /** The server's row: `payload` is null for a tombstone. */
  server: { deleted: boolean; payload: Record<string, unknown> | null; version: number };
  /** The local change: `op` INSERT/UPDATE/DELETE, `payload` null for a DELETE, the version it was made against. */
  local: { op: string; payload: Record<string, unknown> | null; baseVersion: number };
  /** Internal: identifies the local change the decision is for. */
  key: string;
}

/** What the `conflict` option answers: the server's row, the local change, or a merged row (wire form). */
export type ConflictDecision = 'server' | 'client' | Record<string, unknown>;

/** Severity of a {@link LogEntry}; a logger gets its level and the ones above. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One line of the package's log (the `logger` option). */
export interface LogEntry {
  level: LogLevel;
  /** For people, e.g. `sync cycle done`. */
  message: string;
  /** `Date.now()` when it happened (in the owner tab's worker). */
  at: number;
  /** Details: timings in ms, counts, the error's code. */
  data?: Record<string, unknown>;
}

/** Sync state for the UI. */
export interface SyncStatus {
  /** The browser reports a network and offline mode is not simulated. */
  online: boolean;
  /** A sync cycle is running. */
  syncing: boolean;
  /** The running cycle is sending local changes; `uploaded` of them are answered so far. */
  uploading: boolean;
  /** The running cycle (or the hydration, or a backfill) is applying the server's changes; `downloaded` so far. */
  downloading: boolean;
  /** A scope the user joined is filling (its existing rows); `downloaded` so far. `null` otherwise. */
  backfill: { downloaded: number } | null;
  /** Changes the running upload has had answered (0 when not uploading). */
  uploaded: number;
  /** Rows and changes the running download or hydration has applied (0 when not downloading). */
  downloaded: number;
  /**
   * While a new database fills from the server: the rows applied so far (the snapshot's total is not known in
   * advance, so show a count or an indeterminate bar). `null` otherwise.
   */
  hydration: { downloaded: number } | null;
  /** Local changes waiting for upload (parked ones included). */
  pending: number;
  /** Changes parked after repeated failures (see `retryParked`). */
  parked: number;
  /** True once the first download of this database completed. */
  hydrated: boolean;
  /** ISO time of the last successful cycle of this database (kept in the database: it survives a reload). */
  lastSyncedAt: string | null;
  /** Whether this database ever completed a sync cycle (kept in the database: true again after a reload). */
  hasSynced: boolean;
  /** The last cycle's error, cleared by the next success. */
  lastError: { code: string; message: string } | null;
  /** Conflicts resolved in this session, newest last (at most 100). */
  conflicts: Conflict[];
  /** Changes the server rejected for good. */
  rejections: Rejection[];
  /** The shared scopes this database holds (empty without scoped tables or on a server without scopes). */
  scopes: ScopeStatus[];
  /**
   * How other devices' changes reach this database: `'stream'` (the server pushes over `/sync/stream`),
   * `'long_poll'` (`/sync/watch`), or `'timer'` (the next periodic cycle; also while the server is not yet asked).
   */
  realtime: 'stream' | 'long_poll' | 'timer';
  /** This tab's worker owns the database (others go through it). */
  owner: boolean;
}
