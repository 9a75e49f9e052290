// oversync-web: an offline-first SQLite database in the browser (OPFS, in a dedicated worker) that syncs with
// an oversync server. See README.md for the options field by field.

import { INITIAL_STATUS, toWire, type PageRequest, type WireError, type WorkerMessage, type Op } from './messages.js';
import { sameRows } from './rows.js';
import { fileName, removeFiles } from './files.js';
import type { Conflict, ConflictContext, ConflictDecision, CycleRecord, Diagnostics, ErrorCode, ExecResult, LogEntry, LogLevel, Params, Rejection, Row, ScopeStatus, SyncStatus, TableOption } from './types.js';

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export type * from './types.js';
export { defineSchema, schemaSql, type Schema, type Row as SchemaRow, type Database, type TableRow, type ColumnSpec, type ColumnType } from './schema.js';
import { mismatches, schemaSql, syncedTables, type ActualColumn, type Database, type Schema } from './schema.js';
import type { StorageChoice } from './storage.js';
export type { StorageChoice, StorageKind } from './storage.js';

/** Every error this package throws: `code` is stable (see README), `message` is for people. */
export class OversyncError extends Error {
  readonly code: ErrorCode;
  /** HTTP status, for `code === 'HTTP'` (and 401 for `UNAUTHORIZED`). */
  readonly status?: number;
  /** SQLite's extended result code (e.g. 1555, `SQLITE_CONSTRAINT_PRIMARYKEY`), for `SQLITE_*` codes. */
  readonly sqliteCode?: number;
  /** How long the server asked to wait (`Retry-After`), for `HTTP` 429 and 503. */
  readonly retryAfterMs?: number;
  /**
   * The URL of the request the error came from (without its query), for `NETWORK`, `HTTP`, `UNAUTHORIZED` and
   * `PROTOCOL` errors of a sync cycle; the message names it too.
   */
  readonly url?: string;
  /**
   * The server's `X-Request-Id` of the failed request, for `HTTP` errors: the id of the server's log line for it
   * (docs/operations.md §3); put it in a bug report. The message names it too.
   */
  readonly requestId?: string;
  constructor(e: WireError) {
    super(e.message);
    this.name = 'OversyncError';
    this.code = e.code as ErrorCode;
    if (e.status !== undefined) this.status = e.status;
    if (e.sqliteCode !== undefined) this.sqliteCode = e.sqliteCode;
    if (e.retryAfterMs !== undefined) this.retryAfterMs = e.retryAfterMs;
    if (e.url !== undefined) this.url = e.url;
    if (e.requestId !== undefined) this.requestId = e.requestId;
  }
}

/** Options of a live query ({@link SyncClient.subscribe}). */
export interface SubscribeOptions {
  /** Called when the query fails (default: the client's `onError`). */
  onError?: (e: OversyncError) => void;
  /**
   * At most one re-run per this many milliseconds: writes in between fold into one re-run at the end of the
   * interval (default 0: a re-run after every write that touches a table the query reads).
   */
  throttleMs?: number;
}

/**
 * The token, or a function returning it; called again (with `refresh: true`) after the server answers 401. The
 * token need not carry the device: every request names it in the `Oversync-Device-Id` header too (what tokens
 * from an identity provider such as Auth0 or Clerk need).
 *
 * A callback that throws fails the sync cycle. A **temporary** failure only delays sync (code
 * `AUTH_UNAVAILABLE`, retried with backoff; `waitForFirstSync()` keeps waiting): a `TypeError` (what `fetch`
 * throws when the network fails), an error with `retryable: true`, or one with a `status` of 408, 429 or 5xx
 * (e.g. `throw Object.assign(new Error('sign-in answered 502'), { status: 502 })`). Anything else is fatal (`AUTH`).
 */
export type Auth = string | ((ctx: { deviceId: string; user: string; refresh: boolean }) => string | Promise<string>);

/** The row types of a client opened with `schema` (`any` for one opened with `tables`: untyped). */
export type DatabaseOf<S extends Schema> = Schema extends S ? any : Database<S>;

/**
 * Options of {@link SyncClient.open}: the common ones, `tables` or `schema` (not both), `resolver` or
 * `conflict` (not both). With `schema`, `conflict` gets typed payloads.
 */
export type OpenOptions<S extends Schema = Schema> = CommonOptions &
  (
    | {
        /** The synced tables; they must exist after `init` ran. Or give `schema` instead. */
        tables: TableOption[];
        schema?: never;
      }
    | {
        /**
         * The synced tables with their columns ({@link defineSchema}), instead of `tables`: gives row types, and
         * each declared column is checked against SQLite at open (`CONFIG` on a mismatch, with every difference
         * listed).
         */
        schema: S;
        tables?: never;
      }
  ) &
  (
    | {
        /** Conflict strategy: `server-wins` (default) or `client-wins`; or give `conflict`. */
        resolver?: 'server-wins' | 'client-wins';
        conflict?: never;
      }
    | {
        /**
         * Decides each conflict in your code: return `'server'` (take the server's row), `'client'` (send the
         * local change again over it) or a merged row (wire form, e.g. `{ ...ctx.server.payload, title:
         * ctx.local.payload?.title }`), or a promise of one. Called in the tab that owns the database (give
         * every tab the same function). A throwing or silent resolver leaves the row pending and asks again at
         * its next conflict.
         */
        conflict: (ctx: ConflictContext<DatabaseOf<S>>) => ConflictDecision<DatabaseOf<S>> | Promise<ConflictDecision<DatabaseOf<S>>>;
        resolver?: never;
      }
  );

/** What every {@link OpenOptions} has. */
export interface CommonOptions {
  /** App database name; with `user` it names the file (`<name>.<user>.sqlite3`) — one file per user. */
  name: string;
  /** The signed-in user's id (the token's `sub`, or the claim `userClaim` names). Another user opens another file. */
  user: string;
  /** Base URL of the sync server (e.g. `https://sync.example.com`). */
  url: string;
  /**
   * SQL run at every open before sync starts: create your tables with `CREATE TABLE IF NOT EXISTS`. With `schema`
   * and no `init`, the schema's own DDL ({@link schemaSql}) runs.
   */
  init?: string;
  /** The server schema the tables belong to (default `public`). */
  serverSchema?: string;
  /** The bearer token, or a callback producing one for this device (see {@link Auth}). */
  auth: Auth;
  /**
   * The token claim naming the user (default `sub`; the server's `user_claim`). Before each request the token's
   * payload is read (not verified) and a token of another user than `user` is refused with
   * `TOKEN_USER_MISMATCH`: nothing is sent, so this user's pending writes never reach another account. A token
   * that is not a JWT, or lacks the claim, is left to the server.
   */
  userClaim?: string;
  /**
   * Called with errors of background sync cycles, once per episode (again after a cycle succeeds or the error
   * changes). What waiting cures never reaches it (`NETWORK`, `AUTH_UNAVAILABLE`, `HTTP` 408/429/5xx): see
   * `status.online` and `status.lastError`.
   */
  onError?: (error: OversyncError) => void;
  /** Periodic sync interval in ms (default 30000); writes, reconnects and `sync()` start a cycle sooner. */
  syncIntervalMs?: number;
  /** Per-request timeout in ms (default 30000). */
  requestTimeoutMs?: number;
  /** Sync in the background (default true); false: only `sync()` syncs. */
  autoSync?: boolean;
  /**
   * Where the database lives (`status.storage` says where it does): `opfs` (default: kept; fails at once with
   * `STORAGE_UNAVAILABLE`, naming what is missing, in a browser without OPFS sync access handles), `idb`
   * (IndexedDB: kept, each write answered once IndexedDB stored it; see the README's *Storage*), `memory`
   * (nothing kept: tests, kiosks), or `best` (OPFS where the browser has it, else IndexedDB, else memory).
   */
  storage?: StorageChoice;
  /** Same as `storage: 'memory'`. */
  memory?: boolean;
  /**
   * Ask the browser, once open, to keep this site's storage under storage pressure ({@link SyncClient.persist};
   * default false: Firefox asks the user, which an app should do from the user's action rather than at start-up).
   */
  persist?: boolean;
  /**
   * Hydration and downloads size their pages so that applying one takes about this long (ms, default 30; pages
   * grow from 100 to 1000 rows). The database worker answers no query while a page is applied, so this bounds
   * how long the app's queries wait during a hydration or a long catch-up; 0 asks for 1000-row pages throughout.
   */
  hydrationPageBudgetMs?: number;
  /**
   * Called when another tab signed this user out ({@link SyncClient.signOut}): the database is gone and this
   * client is closed (its calls fail with `CLOSED`). Return to the sign-in screen here.
   */
  onSignedOut?: () => void;
  /**
   * Gets the package's log: each sync cycle (start at `debug`; done with its timing and counts at `info`;
   * failed with the error's code at `warn`, or `info` when merely offline), the realtime mode, the database
   * opening. Every tab's logger gets the lines of the tab that owns the database. Off when not set.
   */
  logger?: (entry: LogEntry) => void;
  /** The lowest level `logger` gets (default `info`). */
  logLevel?: LogLevel;
}

/** Options of {@link SyncClient.signOut}. */
export interface SignOutOptions {
  /**
   * True (default): upload every pending change first, and fail with that error (or `PENDING`), changing
   * nothing, when they cannot all be uploaded (offline, server down, parked changes). False: discard them.
   */
  keepPending?: boolean;
}

/** One interactive transaction (see {@link SyncClient.transaction}). */
export interface Transaction {
  exec(sql: string, params?: Params): Promise<ExecResult>;
  /** {@link SyncClient.execMany} inside this transaction. */
  execMany(sql: string, rows: readonly Params[]): Promise<ExecResult>;
  query<T = Row>(sql: string, params?: Params): Promise<T[]>;
}

type Listener = () => void;

/** An open database. Every tab of the origin may open the same one; one of them owns it and serves the rest. */
export class SyncClient<DB = any> {
  private worker: Worker;
  private nextId = 0;
  private calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  /** Transactions of this client begun and not yet ended (see `outsideTx`). */
  private openTransactions = 0;
  private changeListeners = new Set<(tables: Set<string>) => void>();
  private statusListeners = new Set<Listener>();
  private conflictListeners = new Set<(c: Conflict[]) => void>();
  private current: SyncStatus = INITIAL_STATUS;
  private closed = false;
  private signingOut = false;
  private signedOut = false;
  /** Why the files could not be deleted, when a sign-out closed every tab but failed there. */
  private signOutFailure: OversyncError | null = null;
  private detach: () => void = () => undefined;

  private constructor(private opts: OpenOptions<any>) {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'oversync' });
    this.worker.onmessage = (e: MessageEvent<WorkerMessage>) => this.onMessage(e.data);
  }

  /** Opens (or creates) the user's database and starts syncing in the background. */
  static async open<S extends Schema = Schema>(options: OpenOptions<S>): Promise<SyncClient<DatabaseOf<S>>> {
    for (const k of ['name', 'user', 'url'] as const) {
      if (typeof options[k] !== 'string' || !options[k]) throw new OversyncError({ code: 'BAD_ARGUMENT', message: `${k} is required` });
    }
    if (options.auth === undefined) throw new OversyncError({ code: 'BAD_ARGUMENT', message: 'auth is required' });
    if (options.storage !== undefined && !['opfs', 'idb', 'memory', 'best'].includes(options.storage)) {
      throw new OversyncError({ code: 'BAD_ARGUMENT', message: `storage ${String(options.storage)}: use opfs, idb, memory or best` });
    }
    if (options.logLevel !== undefined && !(options.logLevel in LEVELS)) {
      throw new OversyncError({ code: 'BAD_ARGUMENT', message: `logLevel ${String(options.logLevel)}: use debug, info, warn or error` });
    }
    if (options.conflict && options.resolver) {
      throw new OversyncError({ code: 'BAD_ARGUMENT', message: 'give either resolver or conflict' });
    }
    if (!options.tables === !options.schema) {
      throw new OversyncError({ code: 'BAD_ARGUMENT', message: 'give either tables or schema' });
    }
    const tables: TableOption[] = options.tables ?? syncedTables(options.schema!);
    // A schema without `init` creates its own tables (one source for the columns, the types and the DDL).
    const init = options.init ?? (options.schema ? schemaSql(options.schema) : '');
    const client = new SyncClient<DatabaseOf<S>>(options as OpenOptions<any>);
    const file = fileName(options.name, options.user);
    try {
      await client.call('open' as Op, [
        {
          file,
          user: options.user,
          syncIntervalMs: options.syncIntervalMs ?? 30_000,
          requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
          autoSync: options.autoSync ?? true,
          storage: options.storage ?? 'opfs',
          open: {
            file,
            url: options.url,
            serverSchema: options.serverSchema ?? 'public',
            init,
            tables: tables.map((t) => (typeof t === 'string' ? { name: t } : t)),
            resolver: options.conflict ? 'custom' : options.resolver,
            memory: options.memory === true || options.storage === 'memory',
            pageBudgetMs: options.hydrationPageBudgetMs,
            userClaim: options.userClaim,
          },
        },
      ]);
    } catch (e) {
      client.worker.terminate();
      throw e;
    }
    if (options.schema) await client.checkSchema(options.schema);
    client.listenToPage();
    // Not awaited: Firefox waits for the user's answer.
    if (options.persist) client.persist().catch(() => false);
    client.current = { ...((await client.call('status', [])) as SyncStatus), owner: client.current.owner };
    return client;
  }

  /** Closes the client and fails with `CONFIG` when SQLite's tables differ from `schema`. */
  private async checkSchema(schema: Schema): Promise<void> {
    const problems: string[] = [];
    for (const [table, columns] of Object.entries(schema.tables)) {
      const actual = await this.query<ActualColumn>('SELECT name, type, "notnull", pk FROM pragma_table_info(?)', [table]);
      problems.push(...mismatches(table, columns, actual));
    }
    if (problems.length === 0) return;
    await this.close();
    throw new OversyncError({ code: 'CONFIG', message: `the schema does not match the database: ${problems.join('; ')}` });
  }

  /** Runs one statement (INSERT, UPDATE, DELETE, DDL). Writes to synced tables are captured and uploaded. */
  exec(sql: string, params?: Params): Promise<ExecResult> {
    return this.outsideTx('exec') ?? (this.call('exec', [sql, params]) as Promise<ExecResult>);
  }

  /**
   * Runs one statement once per parameter set in `rows`, in one message to the worker, prepared once and all or
   * nothing (a failing row rolls the others back; its error names the row's index). For imports and bulk writes:
   * 20,000 rows took ~0.38 s here (median), against ~6.7 s as 20,000 `tx.exec` calls (one worker round trip each).
   * `changes` counts all rows.
   */
  execMany(sql: string, rows: readonly Params[]): Promise<ExecResult> {
    return this.outsideTx('execMany') ?? (this.call('execMany', [sql, rows]) as Promise<ExecResult>);
  }

  /**
   * Runs a write that answers rows (`INSERT … RETURNING`, `UPDATE … RETURNING`); captured and synced like
   * `exec`. Inside a transaction use `tx.query`.
   */
  execRows<T = Row>(sql: string, params?: Params): Promise<T[]> {
    return this.outsideTx('execRows') ?? (this.call('execRows', [sql, params]) as Promise<T[]>);
  }

  /** Runs a query; rows as objects. */
  query<T = Row>(sql: string, params?: Params): Promise<T[]> {
    return this.call('query', [sql, params]) as Promise<T[]>;
  }

  /** Runs several parameterless statements. */
  execScript(sql: string): Promise<void> {
    return this.outsideTx('execScript') ?? (this.call('script', [sql]) as Promise<void>);
  }

  /**
   * A write on the client while one of its transactions is open would wait for the transaction, which (when
   * called from inside its callback) waits for the write, until the 10 s idle rollback, and then commit on its
   * own: refused at once instead. A read (`query`, live queries) only waits: it cannot commit anything, and live
   * queries and renders of the same page must keep working while a transaction runs.
   */
  private outsideTx(op: string): Promise<never> | null {
    if (this.openTransactions === 0) return null;
    return Promise.reject(
      new OversyncError({
        code: 'BAD_ARGUMENT',
        message: `db.${op}() was called while a transaction() of this client is open: use the transaction's tx.exec/tx.query inside it, or wait for it to end`,
      }),
    );
  }

  /**
   * Runs `fn` in one SQLite transaction: committed when it resolves, rolled back when it throws. Other
   * operations (from any tab) and sync wait meanwhile; a transaction idle for 10 s is rolled back.
   */
  async transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
    const id = (await this.call('begin', [])) as string;
    this.openTransactions++;
    try {
      return await this.runTransaction(id, fn);
    } finally {
      this.openTransactions--;
    }
  }

  private async runTransaction<R>(id: string, fn: (tx: Transaction) => Promise<R>): Promise<R> {
    const tx: Transaction = {
      exec: (sql, params) => this.call('exec', [sql, params], id) as Promise<ExecResult>,
      execMany: (sql, rows) => this.call('execMany', [sql, rows], id) as Promise<ExecResult>,
      query: <T>(sql: string, params?: Params) => this.call('query', [sql, params], id) as Promise<T[]>,
    };
    let result: R;
    try {
      result = await fn(tx);
    } catch (e) {
      await this.call('rollback', [], id).catch(() => undefined);
      throw e;
    }
    await this.call('commit', [], id);
    return result;
  }

  /**
   * A live query: `callback` gets the rows now and again whenever a write (local, another tab's, or synced)
   * touches a table the query reads and the rows differ from the last ones it got (a write that leaves the
   * result as it was calls nothing). Invalidation is by table: any write to a table the query reads re-runs it.
   * The fourth argument is an error callback or {@link SubscribeOptions}. Returns the unsubscribe function.
   */
  subscribe<T = Row>(
    sql: string,
    params: Params | undefined,
    callback: (rows: T[]) => void,
    options?: ((e: OversyncError) => void) | SubscribeOptions,
  ): () => void {
    const { onError, throttleMs = 0 } = typeof options === 'function' ? { onError: options } : (options ?? {});
    let active = true;
    let tables: Set<string> | null = null;
    let running = false;
    let dirty = false;
    let last: T[] | null = null;
    let lastRun = 0;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const run = async () => {
      if (running) return void (dirty = true);
      running = true;
      try {
        do {
          dirty = false;
          lastRun = Date.now();
          tables ??= new Set((await this.call('tablesRead', [sql])) as string[]);
          const rows = (await this.call('query', [sql, params])) as T[];
          if (active && !dirty && !(last && sameRows(last as Row[], rows as Row[]))) {
            last = rows;
            callback(rows);
          }
        } while (dirty && active);
      } catch (e) {
        if (active) (onError ?? ((err: OversyncError) => this.opts.onError?.(err)))(e as OversyncError);
      } finally {
        running = false;
      }
    };
    /** Runs now, or once at the end of the throttle interval. */
    const schedule = () => {
      const wait = lastRun + throttleMs - Date.now();
      if (wait <= 0) return void run();
      timer ??= setTimeout(() => {
        timer = null;
        if (active) void run();
      }, wait);
    };
    const onChange = (changed: Set<string>) => {
      if (!tables || [...tables].some((t) => changed.has(t))) schedule();
    };
    this.changeListeners.add(onChange);
    void run();
    return () => {
      active = false;
      if (timer) clearTimeout(timer);
      this.changeListeners.delete(onChange);
    };
  }

  /** Starts a sync cycle now (even during a backoff) and resolves when it ends; rejects with its error. */
  async sync(): Promise<SyncStatus> {
    const s = (await this.call('sync', [])) as SyncStatus;
    this.setStatus({ ...s, owner: this.current.owner });
    return this.current;
  }

  /** The latest sync status (updated by events; see {@link SyncClient.onStatus}). */
  /**
   * Asks the browser to keep this site's storage under storage pressure (`navigator.storage.persist()`; best
   * effort storage may be evicted when the disk fills): resolves to whether it is persistent now. Chromium decides
   * without asking (an installed app, a bookmark, the site's engagement); Firefox asks the user, so call it from
   * the user's action (a "keep an offline copy" switch). False in memory or where the browser has no such request.
   */
  async persist(): Promise<boolean> {
    const storage = typeof navigator === 'undefined' ? undefined : navigator.storage;
    if (this.current.storage === 'memory' || typeof storage?.persist !== 'function') return false;
    if (await storage.persisted()) return true;
    return storage.persist();
  }

  get status(): SyncStatus {
    return this.current;
  }

  /** Calls `listener` whenever the status changes; returns the unsubscribe function. */
  onStatus(listener: Listener): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /**
   * Resolves once this database has hydrated and completed a sync cycle: at once if it ever did (kept in the
   * database, so a reload resolves without the network), else after the first successful cycle. Rejects with
   * the coded error of a cycle that cannot succeed by waiting (`UNAUTHORIZED`, `TOKEN_USER_MISMATCH`, `AUTH`,
   * `NOT_SIGNED_IN`, `WRONG_USER`, `CONFIG`, `PROTOCOL`); being offline (`NETWORK`) or a busy server (`HTTP`
   * 429/503) only delays it. `close()` rejects it with `CLOSED`.
   */
  waitForFirstSync(): Promise<SyncStatus> {
    const fatal = new Set(['UNAUTHORIZED', 'TOKEN_USER_MISMATCH', 'AUTH', 'NOT_SIGNED_IN', 'WRONG_USER', 'CONFIG', 'PROTOCOL']);
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const s = this.current;
        if (s.hasSynced && s.hydrated) resolve(s);
        else if (s.lastError && fatal.has(s.lastError.code)) reject(new OversyncError(s.lastError));
        else if (this.closed) reject(new OversyncError({ code: 'CLOSED', message: 'the client is closed' }));
        else return false;
        return true;
      };
      if (check()) return;
      const off = this.onStatus(() => {
        if (check()) off();
      });
    });
  }

  /** Calls `listener` with conflicts as sync resolves them; returns the unsubscribe function. */
  onConflicts(listener: (c: Conflict<DB>[]) => void): () => void {
    const l = listener as (c: Conflict[]) => void;
    this.conflictListeners.add(l);
    return () => this.conflictListeners.delete(l);
  }

  /** The shared scopes this database holds (also in `status.scopes`): `{ scope, role, state, rows }`. */
  scopes(): Promise<ScopeStatus[]> {
    return this.call('scopes', []) as Promise<ScopeStatus[]>;
  }

  /**
   * A sync inspector's view of this database for a bug report or a debug panel (docs/operations.md §6): the queue
   * and its oldest change, the cursor and the server's top, the last cycles (when, how long, what moved, errors
   * with codes), the realtime path and its reconnects, each synced table's rows, the database's size and the
   * browser's storage estimate, the versions. No row contents. `JSON.stringify` it to export.
   */
  async diagnostics(): Promise<Diagnostics> {
    type Engine = Omit<Diagnostics, 'generatedAt' | 'versions' | 'queue' | 'storage'> & {
      pending: number; parked: number; rejected: number; oldestPendingAt: string | null;
      databaseBytes: number; freeBytes: number; sqliteVersion: string; engineVersion: string; triggerFormat: number;
      cycles: CycleRecord[];
    };
    const d = (await this.call('diagnostics', [])) as Engine;
    const storage = typeof navigator === 'undefined' ? undefined : navigator.storage;
    const estimate = typeof storage?.estimate === 'function' ? await storage.estimate().catch(() => null) : null;
    const persisted = typeof storage?.persisted === 'function' ? await storage.persisted().catch(() => null) : null;
    const oldest = d.oldestPendingAt ? Date.parse(d.oldestPendingAt) : NaN;
    return {
      generatedAt: new Date().toISOString(),
      versions: { engine: d.engineVersion, sqlite: d.sqliteVersion, triggerFormat: d.triggerFormat },
      deviceId: d.deviceId,
      queue: {
        pending: d.pending,
        parked: d.parked,
        rejected: d.rejected,
        oldestPendingAt: d.oldestPendingAt,
        oldestPendingAgeMs: Number.isNaN(oldest) ? null : Math.max(0, Date.now() - oldest),
      },
      cursor: d.cursor,
      serverTop: d.serverTop === null ? null : Math.max(d.serverTop, d.cursor),
      hydrated: d.hydrated,
      lastSyncedAt: d.lastSyncedAt,
      cycles: d.cycles,
      realtime: d.realtime,
      tables: d.tables,
      storage: {
        kind: d.status.storage,
        databaseBytes: d.databaseBytes,
        freeBytes: d.freeBytes,
        estimate: estimate ? { usage: estimate.usage ?? 0, quota: estimate.quota ?? 0 } : null,
        persisted,
      },
      status: { ...d.status, owner: this.current.owner },
    };
  }

  /** Changes the server rejected for good (also in `status.rejections`), oldest first. */
  rejections(): Promise<Rejection[]> {
    return this.call('rejections', []) as Promise<Rejection[]>;
  }

  /**
   * Sends rejection `id`'s row again as it is now (after the app fixed it, or the server started accepting
   * it) and starts a cycle; resolves to false for an unknown id.
   */
  retryRejected(id: number): Promise<boolean> {
    return this.call('retryRejected', [id]) as Promise<boolean>;
  }

  /**
   * Lets rejection `id` go: it leaves the list, and a row the server never had is deleted locally (it exists
   * nowhere else); a row the server has keeps its local content until the server next changes it. Resolves to
   * false for an unknown id.
   */
  discardRejected(id: number): Promise<boolean> {
    return this.call('discardRejected', [id]) as Promise<boolean>;
  }

  /** Unparks changes parked after repeated failures and syncs. */
  retryParked(): Promise<number> {
    return this.call('retryParked', []) as Promise<number>;
  }

  /** Demo and test aid: behave as if the network were down (writes queue up) until called with false. */
  simulateOffline(offline: boolean): Promise<void> {
    return this.call('setOffline', [offline]) as Promise<void>;
  }

  /** Closes this tab's handle: waits for a running sync, releases the database to another tab, ends the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      // A worker that cannot close cleanly within 10 s is terminated anyway (its Web Lock goes with it).
      await Promise.race([this.call('close' as Op, []), new Promise((r) => setTimeout(r, 10_000))]);
    } finally {
      this.end();
    }
  }

  /**
   * Signs the user out of this browser profile: uploads what is pending (see {@link SignOutOptions}), stops
   * sync, closes the database in every tab (their `onSignedOut` is called) and deletes its files from OPFS, so
   * nothing of the user is left behind. Resolves once the files are gone.
   */
  async signOut({ keepPending = true }: SignOutOptions = {}): Promise<void> {
    this.signingOut = true;
    try {
      await this.call('signOut', [keepPending]);
    } catch (e) {
      // The worker's `signedOut` event may end this client just before the answer arrives.
      if (!this.signedOut) throw e;
    } finally {
      this.signingOut = false;
    }
    this.end();
    if (this.signOutFailure) throw this.signOutFailure;
  }

  /**
   * Deletes `name`'s database of `user` from this browser profile without opening it (a user who signed out
   * elsewhere, a stale account). Fails with `BUSY` while a tab has it open: call `signOut()` on that client.
   */
  static async deleteDatabase(name: string, user: string): Promise<void> {
    const file = fileName(name, user);
    // A client closed a moment ago releases its lock shortly after: a second of grace before BUSY.
    for (let attempt = 0; ; attempt++) {
      const done = await navigator.locks.request(`oversync:${file}`, { ifAvailable: true }, async (lock) => {
        if (lock) await removeFiles(file).catch((e) => Promise.reject(new OversyncError(toWire(e))));
        return !!lock;
      });
      if (done) return;
      if (attempt === 10) throw new OversyncError({ code: 'BUSY', message: `${file} is open in a tab: sign out through its client` });
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Ends this client: the worker, every waiting call (`CLOSED`), and listeners told. */
  private end(): void {
    if (this.closed) return;
    this.closed = true;
    this.detach();
    this.worker.terminate();
    for (const c of this.calls.values()) c.reject(new OversyncError({ code: 'CLOSED', message: 'closed' }));
    this.calls.clear();
    // Waiters such as waitForFirstSync see the client closed.
    for (const l of [...this.statusListeners]) l();
  }

  private call(op: Op, args: unknown[], tx?: string): Promise<unknown> {
    if (this.closed) return Promise.reject(new OversyncError({ code: 'CLOSED', message: 'the client is closed' }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args, tx } satisfies PageRequest);
    });
  }

  private onMessage(m: WorkerMessage): void {
    if ('id' in m) {
      const c = this.calls.get(m.id);
      this.calls.delete(m.id);
      if (m.ok) c?.resolve(m.value);
      else c?.reject(new OversyncError(m.error));
      return;
    }
    switch (m.event) {
      case 'change': {
        const tables = new Set(m.tables);
        this.changeListeners.forEach((l) => l(tables));
        return;
      }
      case 'status':
        return this.setStatus({ ...m.status, owner: this.current.owner });
      case 'role':
        return this.setStatus({ ...this.current, owner: m.owner });
      case 'conflicts':
        this.conflictListeners.forEach((l) => l(m.conflicts));
        return;
      case 'error':
        this.opts.onError?.(new OversyncError(m.error));
        return;
      case 'token':
        void this.token(m.tokenId, m.deviceId, m.refresh);
        return;
      case 'resolve':
        void this.resolveConflict(m.resolveId, m.conflict);
        return;
      case 'log': {
        const { logger, logLevel = 'info' } = this.opts;
        if (logger && LEVELS[m.entry.level] >= LEVELS[logLevel]) logger(m.entry);
        return;
      }
      case 'signedOut':
        this.signedOut = true;
        if (m.error) this.signOutFailure = new OversyncError(m.error);
        if (!this.signingOut) this.opts.onSignedOut?.();
        this.end();
        return;
    }
  }

  private async resolveConflict(resolveId: number, conflict: ConflictContext): Promise<void> {
    let decision: ConflictDecision | null = null;
    let error: string | null = null;
    try {
      if (!this.opts.conflict) throw new Error('this tab was opened without a conflict option');
      decision = await this.opts.conflict(conflict);
    } catch (e) {
      error = String((e as Error)?.message ?? e);
    }
    this.worker.postMessage({ op: 'resolved', args: [resolveId, decision, error] });
  }

  private async token(tokenId: number, deviceId: string, refresh: boolean): Promise<void> {
    let token: string | null = null;
    let error: string | null = null;
    let temporary = false;
    try {
      const auth = this.opts.auth;
      token = typeof auth === 'string' ? (refresh ? null : auth) : await auth({ deviceId, user: this.opts.user, refresh });
    } catch (e) {
      // The worker turns it into the cycle's error: AUTH_UNAVAILABLE (retried) or AUTH (see `Auth`).
      error = String(e);
      temporary = isTemporary(e);
    }
    this.worker.postMessage({ op: 'token', args: [tokenId, token, error, temporary] });
  }

  private setStatus(s: SyncStatus): void {
    this.current = s;
    this.statusListeners.forEach((l) => l());
  }

  /**
   * Tells the worker the page's network and visibility as they change (a dedicated worker hears of neither in
   * time: `status.online` lagged going offline until the next cycle); coming to the foreground starts a cycle.
   */
  private listenToPage(): void {
    if (typeof document === 'undefined' || typeof window === 'undefined') return;
    let told = '';
    const tell = () => {
      const state: [boolean, boolean] = [navigator.onLine, document.visibilityState === 'visible'];
      if (String(state) === told) return;
      told = String(state);
      this.worker.postMessage({ op: 'page', args: state });
    };
    const onVisible = () => {
      tell();
      if (document.visibilityState === 'visible') this.call('sync', []).catch(() => undefined);
    };
    tell();
    document.addEventListener('visibilitychange', onVisible);
    window.addEventListener('online', tell);
    window.addEventListener('offline', tell);
    // And a look every 2 s, for a change no event announced (a WebView, or Firefox's offline emulation lifted
    // after a reload, fired none): a comparison, and a message only when something changed.
    const look = setInterval(tell, 2_000);
    this.detach = () => {
      clearInterval(look);
      document.removeEventListener('visibilitychange', onVisible);
      window.removeEventListener('online', tell);
      window.removeEventListener('offline', tell);
    };
  }

}

/** A failure of the `auth` callback that waiting may cure (see {@link Auth}). */
function isTemporary(e: unknown): boolean {
  if (e instanceof TypeError) return true;
  const x = (e ?? {}) as { retryable?: unknown; status?: unknown };
  const status = typeof x.status === 'number' ? x.status : 0;
  return x.retryable === true || status === 408 || status === 429 || status >= 500;
}
