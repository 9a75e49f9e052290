// Public types of oversync-web.

import type { StorageKind } from './storage.js';

/** A value SQLite stores: integers beyond 2^53 come back as bigint, blobs as Uint8Array. */
export type SqlValue = null | number | bigint | string | Uint8Array;

/**
 * A value a statement parameter may take: what SQLite stores, and a boolean (stored as 0/1) or an ArrayBuffer (a
 * blob). Anything else (a `Date`, `undefined`, an object) is a compile error: convert it first, e.g.
 * `date.toISOString()`.
 */
export type SqlParam = null | boolean | number | bigint | string | Uint8Array | ArrayBuffer;

/** Statement parameters: positional (`?`, `?1`) or named (`:name`, `@name`, `$name`; a bare key means `:key`). */
export type Params = readonly SqlParam[] | { readonly [name: string]: SqlParam };

/** The `code` of an {@link OversyncError} (README: *Errors*). A newer package may add codes: keep a default branch. */
export type ErrorCode =
  | 'BAD_ARGUMENT'
  | `SQLITE_${string}`
  | 'NOT_SIGNED_IN'
  | 'AUTH'
  | 'AUTH_UNAVAILABLE'
  | 'NETWORK'
  | 'UNAUTHORIZED'
  | 'HTTP'
  | 'PROTOCOL'
  | 'WRONG_USER'
  | 'TOKEN_USER_MISMATCH'
  | 'CONFIG'
  | 'STORAGE_UNAVAILABLE'
  | 'STORAGE_FULL'
  | 'STORAGE_LOCKED'
  | 'TX_ABORTED'
  | 'INTERNAL'
  | 'OWNER_LOST'
  | 'BUSY'
  | 'LOCK_TIMEOUT'
  | 'CLOSED'
  | 'RESOLVER'
  | 'PENDING';

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

type IsAny<T> = 0 extends 1 & T ? true : false;

/** A value in wire form: a blob is base64 text there (PROTOCOL.md §5); the rest as SQLite gives it. */
type Wire<V> = V extends Uint8Array ? string : V;

/** A table's row in wire form (what conflict payloads hold): `WireRow<Row<typeof schema, 'posts'>>`. */
export type WireRow<R> = { [K in keyof R]: Wire<R[K]> };

/** One table's conflict, its payloads typed: what the `conflict` option was asked, and how it ended. */
export interface TableConflict<Name extends string = string, P = Record<string, unknown>>
  extends Omit<TableConflictContext<Name, P>, 'key'> {
  /** `server`: the server's row was kept; `client`: the local change was re-sent; `merge`: a merged row. */
  resolution: 'server' | 'client' | 'merge';
  /** The merged row (wire form) for `merge`, else null. */
  merged: P | null;
}

/**
 * A conflict the engine resolved during a sync (PROTOCOL §7.5). With a typed database (`SyncClient.open` with
 * `schema`), a union over its tables: narrowing on `table` types the payloads.
 */
export type Conflict<DB = any> =
  IsAny<DB> extends true ? TableConflict : { [T in keyof DB & string]: TableConflict<T, WireRow<DB[T]>> }[keyof DB & string];

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

/** One table's conflict as the `conflict` option gets it (payloads in wire form: column → JSON value). */
export interface TableConflictContext<Name extends string = string, P = Record<string, unknown>> {
  table: Name;
  pk: string;
  /** The server's row: `payload` is null for a tombstone. */
  server: { deleted: boolean; payload: P | null; version: number };
  /** The local change: `op` INSERT/UPDATE/DELETE, `payload` null for a DELETE, the version it was made against. */
  local: { op: 'INSERT' | 'UPDATE' | 'DELETE'; payload: P | null; baseVersion: number };
  /** Internal: identifies the local change the decision is for. */
  key: string;
}

/**
 * A conflict the app's `conflict` option decides. With a typed database (`schema`), a union over its tables:
 * `if (ctx.table === 'posts')` types `ctx.server.payload` as a post in wire form.
 */
export type ConflictContext<DB = any> =
  IsAny<DB> extends true
    ? TableConflictContext
    : { [T in keyof DB & string]: TableConflictContext<T, WireRow<DB[T]>> }[keyof DB & string];

/**
 * What the `conflict` option answers: the server's row, the local change, or a merged row (wire form; typed as a
 * row of one of the database's tables when it is typed).
 */
export type ConflictDecision<DB = any> =
  | 'server'
  | 'client'
  | (IsAny<DB> extends true ? Record<string, unknown> : { [T in keyof DB]: Partial<WireRow<DB[T]>> }[keyof DB]);

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
   * While a new database fills from the server, or a database offline longer than the server keeps deletes fills
   * again (docs/history.md): the rows applied so far (the snapshot's total is not known in
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
  lastError: { code: ErrorCode; message: string } | null;
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
  /**
   * Where the database lives: `opfs` or `idb` (IndexedDB; both kept across reloads and restarts) or `memory`
   * (gone when the last tab closes: asked for, or `storage: 'best'` in a browser with neither). `null` before it
   * opens.
   */
  storage: StorageKind | null;
  /** This tab's worker owns the database (others go through it). */
  owner: boolean;
}

/** One sync cycle, as {@link Diagnostics.cycles} keeps it. */
export interface CycleRecord {
  /** ISO time it started. */
  at: string;
  /** How long it took. */
  ms: number;
  /** It ended without an error. */
  ok: boolean;
  /** It began with a hydration (or a re-hydration). */
  hydrating: boolean;
  /** Changes the server applied. */
  uploaded: number;
  /** Conflicts it resolved. */
  conflicts: number;
  /** Changes the server rejected for good. */
  rejected: number;
  /** The download cursor before and after: how far the server's changes moved it. */
  cursorBefore: number;
  cursorAfter: number;
  /** Its error with the stable code, if it failed. */
  error: { code: ErrorCode; message: string } | null;
}

/**
 * A sync inspector's view of this database (`db.diagnostics()`): everything a bug report about sync needs, and
 * nothing of the rows' contents. Serialisable as JSON.
 */
export interface Diagnostics {
  /** ISO time it was taken. */
  generatedAt: string;
  versions: { engine: string; sqlite: string; triggerFormat: number };
  /** This database's device id (the `did` of its tokens). */
  deviceId: string;
  queue: {
    /** Local changes waiting for upload (parked ones included). */
    pending: number;
    /** Parked after repeated failures (`retryParked`). */
    parked: number;
    /** Rejected for good by the server (`rejections()`). */
    rejected: number;
    /** When the oldest waiting change was made, and how long ago (ms). */
    oldestPendingAt: string | null;
    oldestPendingAgeMs: number | null;
  };
  /** The download cursor (the highest `server_id` applied). */
  cursor: number;
  /** The highest top the server announced (stream, long-poll) or a cycle reached; `null` before any. */
  serverTop: number | null;
  hydrated: boolean;
  lastSyncedAt: string | null;
  /** The last sync cycles this tab's worker ran while it owned the database (at most 20), newest last. */
  cycles: CycleRecord[];
  /** The realtime path, how often it came back after being lost, and since when it is the current one. */
  realtime: { mode: 'stream' | 'long_poll' | 'timer'; reconnects: number; since: string | null };
  /** Each synced table: its rows and its rows with a change waiting. */
  tables: { table: string; rows: number; pending: number }[];
  storage: {
    kind: StorageKind | null;
    /** The database's size (pages × page size) and its free pages. */
    databaseBytes: number;
    freeBytes: number;
    /** `navigator.storage.estimate()` for the whole origin, where the browser has it. */
    estimate: { usage: number; quota: number } | null;
    /** `navigator.storage.persisted()`, where the browser has it. */
    persisted: boolean | null;
  };
  /** The status at the same moment. */
  status: SyncStatus;
}
