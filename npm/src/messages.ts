// Messages between the page (SyncClient), its dedicated worker, and the other tabs' workers
// (BroadcastChannel). Internal: not part of the public API.

import type { SyncStatus, Conflict, ConflictContext, LogEntry } from './types.js';

/** The status before the worker has reported one. */
export const INITIAL_STATUS: SyncStatus = {
  online: true,
  syncing: false,
  uploading: false,
  downloading: false,
  backfill: null,
  uploaded: 0,
  downloaded: 0,
  hydration: null,
  pending: 0,
  parked: 0,
  hydrated: false,
  lastSyncedAt: null,
  hasSynced: false,
  lastError: null,
  conflicts: [],
  rejections: [],
  scopes: [],
  realtime: 'timer',
  storage: null,
  owner: false,
};

/** Page → worker. */
export type PageRequest = { id: number; op: Op; args: unknown[]; tx?: string };

/** Operations the owner executes. */
export type Op =
  | 'exec'
  | 'execMany'
  | 'execRows'
  | 'query'
  | 'script'
  | 'tablesRead'
  | 'begin'
  | 'commit'
  | 'rollback'
  | 'sync'
  | 'status'
  | 'rejections'
  | 'diagnostics'
  | 'scopes'
  | 'retryParked'
  | 'retryRejected'
  | 'discardRejected'
  | 'setOffline'
  | 'signOut';

/** A serialised error (structured clone drops an Error's own properties). */
export type WireError = {
  message: string;
  code: string;
  status?: number;
  /** SQLite's extended result code, for `SQLITE_*` codes. */
  sqliteCode?: number;
  /** The server's `Retry-After`, for `HTTP` 429/503. */
  retryAfterMs?: number;
  /** The request's URL (without its query), for errors that came from one. */
  url?: string;
  /** The server's `X-Request-Id`, for `HTTP` errors. */
  requestId?: string;
};

/** Worker → page. */
export type WorkerMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: WireError }
  | { event: 'change'; tables: string[] }
  | { event: 'status'; status: SyncStatus }
  | { event: 'conflicts'; conflicts: Conflict[] }
  | { event: 'error'; error: WireError }
  | { event: 'token'; tokenId: number; deviceId: string; refresh: boolean }
  | { event: 'role'; owner: boolean }
  | { event: 'log'; entry: LogEntry }
  | { event: 'resolve'; resolveId: number; conflict: ConflictContext }
  /** The database was signed out (from this tab or another) and its files deleted: the client is closed. */
  | { event: 'signedOut'; error?: WireError };

/** Between workers of one database (BroadcastChannel `oversync:<file>`). */
export type PeerMessage =
  | { t: 'hello' }
  | { t: 'owner'; id: string }
  | { t: 'req'; rid: string; op: Op; args: unknown[]; tx?: string }
  | { t: 'res'; rid: string; ok: true; value: unknown }
  | { t: 'res'; rid: string; ok: false; error: WireError }
  | { t: 'change'; tables: string[] }
  | { t: 'status'; status: SyncStatus }
  | { t: 'conflicts'; conflicts: Conflict[] }
  | { t: 'error'; error: WireError }
  | { t: 'log'; entry: LogEntry }
  /** The owner is signing out: stop serving and stop queueing for the lock (it must not reopen the file). */
  | { t: 'signingOut' }
  /** The files are deleted and the lock released. */
  | { t: 'signedOut'; error?: WireError };

/** Turns anything thrown into a WireError (wasm errors carry `code`). */
export function toWire(e: unknown): WireError {
  if (e && typeof e === 'object') {
    const o = e as { message?: unknown; code?: unknown; status?: unknown; name?: unknown; sqliteCode?: unknown; retryAfterMs?: unknown; url?: unknown; requestId?: unknown };
    const code = typeof o.code === 'string' ? o.code : typeof o.name === 'string' ? jsCode(o.name) : 'INTERNAL';
    const out: WireError = { message: String(o.message ?? e), code };
    if (typeof o.status === 'number') out.status = o.status;
    if (typeof o.sqliteCode === 'number') out.sqliteCode = o.sqliteCode;
    if (typeof o.retryAfterMs === 'number') out.retryAfterMs = o.retryAfterMs;
    if (typeof o.url === 'string') out.url = o.url;
    if (typeof o.requestId === 'string') out.requestId = o.requestId;
    return out;
  }
  return { message: String(e), code: 'INTERNAL' };
}

function jsCode(name: string): string {
  if (name === 'AbortError' || name === 'TimeoutError') return 'NETWORK';
  if (name === 'NoModificationAllowedError') return 'STORAGE_LOCKED';
  return 'INTERNAL';
}
