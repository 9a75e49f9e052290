// The owner side: the one worker per database that holds it open on OPFS, executes every tab's operations,
// runs the sync loop, and broadcasts changes and status.

import { Database, SyncSchedule } from './wasm/oversync_client.js';
import type { Op } from './messages.js';
import { chooseStorage, coded, storageFailure, watchIdb, type StorageChoice, type StorageKind } from './storage.js';
import type { Conflict, ConflictContext, ConflictDecision, ErrorCode, LogEntry, LogLevel, Rejection, ScopeStatus, SyncStatus } from './types.js';
import { realtimeLoop } from './realtime.js';
import { Inspector, cycleRecord } from './diagnostics.js';
import type { RealtimeMode } from './watch.js';

/** What the owner needs from its worker. */
export interface OwnerHooks {
  /** Asks the page for a token (`refresh` after a 401). */
  token(deviceId: string, refresh: boolean): Promise<string | null>;
  /** Tables written (locally or by sync), for every tab. */
  changed(tables: string[]): void;
  status(s: SyncStatus): void;
  conflicts(c: Conflict[]): void;
  error(e: unknown): void;
  /** Asks the page's `conflict` option to decide one conflict. */
  resolve(conflict: ConflictContext): Promise<ConflictDecision>;
  /** A log line, for every tab's `logger` (each filters by its own level). */
  log(entry: LogEntry): void;
  /** The page's network and visibility (forwarded from its events; see {@link Owner.pageChanged}). */
  page(): { online: boolean; visible: boolean };
}

export interface OwnerOptions {
  open: Record<string, unknown>;
  /** Where the database lives (`best`: OPFS, else IndexedDB, else memory). */
  storage: StorageChoice;
  user: string;
  syncIntervalMs: number;
  requestTimeoutMs: number;
  autoSync: boolean;
}

const TX_IDLE_MS = 10_000;
/** Operations that may write what the app asked for (answered only once stored). */
const WRITES = new Set<Op>(['exec', 'execMany', 'execRows', 'script', 'retryRejected', 'discardRejected', 'retryParked']);
/** How long after a local write its status is published (writes within it share one fold of the capture log). */
const STATUS_AFTER_WRITE_MS = 20;

/**
 * Errors that waiting cures: they show in `status.lastError` and never reach `onError` (the network, the auth
 * callback's temporary failures, a server or proxy answering 408, 429 or 5xx).
 */
export function isTransient(e: unknown): boolean {
  const { code, status = 0 } = (e ?? {}) as { code?: string; status?: number };
  return code === 'NETWORK' || code === 'AUTH_UNAVAILABLE' || (code === 'HTTP' && (status >= 500 || status === 429 || status === 408));
}

export class Owner {
  private db!: Database;
  private schedule!: SyncSchedule;
  private tx: { id: string; timer: ReturnType<typeof setTimeout> } | null = null;
  private txWaiters: Array<() => void> = [];
  private offline = false;
  private closing = new AbortController();
  private realtimeMode: RealtimeMode = 'timer';
  private storage: StorageKind = 'opfs';
  /** IndexedDB only: the write that failed to be stored, if one did (see `watchIdb`). */
  private idbFailure: () => Error | null = () => null;
  /** Set once storing failed: the database is closed to every operation (IndexedDB keeps the last whole state). */
  private broken: Error | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private statusTimer: ReturnType<typeof setTimeout> | undefined;
  private cycle: Promise<unknown> | null = null;
  private token: string | null = null;
  private deviceId = '';
  private conflictLog: Conflict[] = [];
  private rejections: Rejection[] = [];
  private lastStatus = '';
  private lastProgress = 0;
  /** The app's resolver deciding the last cycle's conflicts: how many it decided. */
  private resolving: Promise<number> | null = null;
  private cycleError: SyncStatus['lastError'] = null;
  /** The error `onError` was last given (code and status), until a cycle succeeds: one report per episode. */
  private reported: string | null = null;
  /** Realtime loops napping through a backoff, woken when the page comes online or to the foreground. */
  private nappers = new Set<() => void>();
  private wasOnline = true;
  /** The stream was open and went away: its next opening starts a cycle at once, backoff or not. */
  private streamLost = false;
  /** The recent cycles, the realtime path and the server's top, for `diagnostics`. */
  private inspector = new Inspector();

  constructor(private opts: OwnerOptions, private hooks: OwnerHooks) {}

  /** Opens the database, retrying while the previous owner's OPFS handles are still being released. */
  async start(): Promise<void> {
    const host = {
      beforeRequest: () => {
        this.flushChanges();
        this.progressed();
        return this.isOnline();
      },
      afterResponse: () => this.txFree(),
      // The engine asks (once per request) after a 401; the fresh token is kept for the next cycles too.
      freshToken: async () => (this.token = await this.askToken(true)),
      // A macrotask without timer clamping: messages queued meanwhile (UI queries) are answered before it; an
      // interactive transaction begun meanwhile is waited for, since the engine writes next.
      yieldTask: async () => {
        await new Promise<void>((resolve) => {
          const channel = new MessageChannel();
          channel.port1.onmessage = () => {
            channel.port1.close();
            resolve();
          };
          channel.port2.postMessage(null);
        });
        this.progressed();
        await this.txFree();
      },
      signal: () => AbortSignal.any([AbortSignal.timeout(this.opts.requestTimeoutMs), this.closing.signal]),
    };
    // A browser without OPFS sync access handles fails (or, asked for `best`, falls back) at once; the retries
    // below are for a file another tab is still letting go of.
    const choice = this.opts.open.memory === true ? 'memory' : this.opts.storage;
    this.storage = await chooseStorage(choice, (message, reason) => this.log('warn', message, { reason }));
    // Shared with the worker: what a sign-out deletes.
    this.opts.open.storage = this.storage;
    delete this.opts.open.memory;
    if (this.storage === 'idb') this.idbFailure = watchIdb();
    const deadline = Date.now() + 20_000;
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      try {
        this.db = await Database.open(this.opts.open, host);
        break;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code !== 'STORAGE_UNAVAILABLE' || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    this.deviceId = this.db.deviceId();
    const bound = this.db.userId();
    if (bound && bound !== this.opts.user) throw coded('WRONG_USER', `this database belongs to ${bound}`);
    this.schedule = new SyncSchedule(Date.now(), this.opts.syncIntervalMs, 250);
    this.rejections = this.db.rejections() as Rejection[];
    self.addEventListener('online', () => this.pageChanged());
    self.addEventListener('offline', () => this.pageChanged());
    this.wasOnline = this.isOnline();
    this.publishStatus();
    this.log('info', 'database open in this tab', { deviceId: this.deviceId, hydrated: this.currentStatus().hydrated });
    if (this.opts.autoSync) {
      this.arm();
      // The loops catch their own failures; anything else is logged, never an unhandled rejection in the page.
      this.realtime().catch((e) => {
        if (!this.closing.signal.aborted) this.log('warn', 'realtime stopped', { message: String(e) });
      });
    }
  }

  /** Streams (`/sync/stream`) or long-polls (`/sync/watch`) when the server offers it; the periodic timer
   * stays as the fallback. */
  private async realtime(): Promise<void> {
    const host = {
      url: String(this.opts.open.url).replace(/\/+$/, ''),
      deviceId: this.deviceId,
      // Shared tables: a long-poll then also wakes for the user's teams (docs/sharing.md §7).
      scoped: ((this.opts.open.tables ?? []) as { scope?: string }[]).some((t) => !!t.scope),
      signal: this.closing.signal,
      online: () => this.isOnline(),
      visible: () => this.hooks.page().visible,
      nap: (ms: number) => this.nap(ms),
      cursor: () => (this.db.status() as { cursor: number }).cursor,
      token: async (refresh: boolean) => {
        if (refresh || !this.token) this.token = await this.askToken(refresh);
        return this.token;
      },
      wake: async () => {
        await this.cycle;
        this.schedule.onWake(Date.now());
        this.tick();
        await this.cycle;
      },
      probe: () => {
        if (this.cycle) return;
        this.schedule.onDemand(Date.now());
        this.tick();
      },
      seen: (top: number) => this.inspector.seen(top),
      mode: (mode: RealtimeMode) => {
        this.inspector.switched(mode);
        if (mode !== this.realtimeMode) this.log('info', `realtime: ${mode}`, { mode });
        const back = mode === 'stream' && this.streamLost;
        this.streamLost = this.realtimeMode === 'stream' && mode === 'timer';
        this.realtimeMode = mode;
        this.publishStatus();
        // The server is reachable again: catch up now rather than after the failed cycles' backoff.
        if (back) {
          this.schedule.onDemand(Date.now());
          this.tick();
        }
      },
    };
    await realtimeLoop(host);
  }

  /** Executes one operation from any tab. `tx` names the interactive transaction it belongs to. */
  async run(op: Op, args: unknown[], tx?: string): Promise<unknown> {
    if (this.broken) throw this.broken;
    if (op === 'commit' || op === 'rollback') {
      const done = this.endTx(op, tx);
      if (op === 'commit') await this.stored();
      return done;
    }
    if (tx && this.tx?.id !== tx) {
      throw coded('TX_ABORTED', 'the transaction was rolled back (idle for too long, or it never began)');
    }
    if (!tx) {
      // A sync step woken by its response runs in a microtask; a new transaction waits one task for it.
      if (op === 'begin') await new Promise((r) => setTimeout(r, 0));
      // Check and use in the same microtask: nothing can open a transaction in between.
      while (this.tx) await new Promise<void>((r) => this.txWaiters.push(r));
      // Woken by close() (which rolls back the transaction it waited for): nothing more runs on this database.
      if (this.closing.signal.aborted) throw coded('CLOSED', 'the database was closed');
    } else {
      this.touchTx(tx);
      try {
        return this.dispatch(op, args, tx);
      } finally {
        // SQLite itself may have rolled the transaction back (SQLITE_FULL, RAISE(ROLLBACK), …).
        if (!this.db.inTransaction()) this.lostTx(tx);
      }
    }
    const result = await this.dispatch(op, args, tx);
    if (WRITES.has(op)) await this.stored();
    return result;
  }

  /**
   * Resolves once every commit so far is stored: at once on OPFS (written before the commit returns); on
   * IndexedDB when its write transaction completed, so an app write is answered only when a killed tab would
   * keep it. A failed store closes the database to every operation with that error.
   */
  private async stored(): Promise<void> {
    if (this.storage !== 'idb') return;
    let failure: Error | null = null;
    try {
      await this.db.flush();
    } catch (e) {
      failure = storageFailure(e);
    }
    failure = this.idbFailure() ?? failure;
    if (!failure) return;
    if (!this.broken) {
      this.broken = failure;
      clearTimeout(this.timer);
      this.log('error', 'storing the database failed: it is closed', { message: failure.message });
      this.hooks.error(failure);
    }
    throw this.broken;
  }

  private lostTx(tx: string): void {
    if (this.tx?.id !== tx) return;
    this.releaseTx();
    throw coded('TX_ABORTED', 'SQLite rolled the transaction back after an error');
  }

  private dispatch(op: Op, args: unknown[], tx?: string): unknown {
    const db = this.db;
    switch (op) {
      case 'exec':
        return this.wrote(() => db.exec(args[0] as string, args[1]), !!tx);
      case 'execMany':
        return this.wrote(() => db.execMany(args[0] as string, args[1]), !!tx);
      case 'execRows':
        return this.wrote(() => db.query(args[0] as string, args[1]), !!tx);
      case 'script':
        return this.wrote(() => db.execScript(args[0] as string), !!tx);
      case 'query':
        return db.query(args[0] as string, args[1]);
      case 'tablesRead':
        return db.tablesRead(args[0] as string);
      case 'begin': {
        db.begin();
        const id = crypto.randomUUID();
        this.tx = { id, timer: setTimeout(() => this.abandon(id), TX_IDLE_MS) };
        return id;
      }
      case 'sync':
        return this.syncNow();
      case 'status':
        return this.currentStatus();
      case 'rejections':
        return db.rejections();
      case 'diagnostics':
        return { ...(db.diagnostics() as object), ...this.inspector.snapshot(), status: this.currentStatus() };
      case 'scopes':
        return db.scopes();
      case 'retryRejected':
      case 'discardRejected':
        return this.onRejection(op, Number(args[0]));
      case 'retryParked': {
        const n = db.retryParked();
        this.wake();
        return n;
      }
      case 'setOffline':
        this.offline = !!args[0];
        if (!this.offline) this.wake();
        this.publishStatus();
        return null;
    }
    throw coded('BAD_ARGUMENT', `unknown operation ${String(op)}`);
  }

  /** Retries or discards one rejection once no cycle runs (the engine's rejection list is not touched by one). */
  private async onRejection(op: 'retryRejected' | 'discardRejected', id: number): Promise<boolean> {
    while (this.cycle) await this.cycle;
    const done = op === 'retryRejected' ? this.db.retryRejected(id) : this.db.discardRejected(id);
    this.rejections = this.db.rejections() as Rejection[];
    this.flushChanges();
    if (done && op === 'retryRejected') this.localWrite();
    // At once: the app reads the pending count next (the retry queued its row directly, nothing to fold).
    this.publishStatus();
    return done;
  }

  /** Local changes not uploaded yet (parked ones included). */
  unsent(): number {
    return (this.db.status() as { pending: number }).pending;
  }

  private log(level: LogLevel, message: string, data?: Record<string, unknown>): void {
    this.hooks.log({ level, message, at: Date.now(), ...(data ? { data } : {}) });
  }

  private async syncNow(): Promise<SyncStatus> {
    await this.cycle;
    this.schedule.onDemand(Date.now());
    this.tick();
    let failed = await this.cycle;
    // Conflicts the app's resolver just decided are applied by one more cycle, so sync() ends with them done.
    if (!failed && (await this.resolving)) {
      this.schedule.onDemand(Date.now());
      this.tick();
      failed = await this.cycle;
    }
    if (failed) throw failed;
    return this.currentStatus();
  }

  /** Waits for a running cycle, then closes the database and releases its storage (`erase`: a sign-out's
   * IndexedDB copy is deleted too; OPFS files are removed by the worker once released). */
  async close(erase = false): Promise<void> {
    clearTimeout(this.timer);
    clearTimeout(this.statusTimer);
    this.closing.abort(coded('CLOSED', 'the database was closed'));
    if (this.tx) this.abandon(this.tx.id);
    await this.cycle?.catch(() => undefined);
    // After a failed store there is nothing more to save: IndexedDB keeps the last whole state.
    await this.db.close(erase).catch((e: unknown) => {
      if (!this.broken || erase) throw e;
    });
  }

  /** The page's network or visibility changed: the status says so at once; coming back starts a cycle and wakes
   * the realtime loops from their backoff. */
  pageChanged(): void {
    const online = this.isOnline();
    this.publishStatus();
    if (online && (!this.wasOnline || this.hooks.page().visible)) {
      if (!this.wasOnline) this.wake();
      const nappers = [...this.nappers];
      this.nappers.clear();
      nappers.forEach((wake) => wake());
    }
    this.wasOnline = online;
  }

  /** Sleeps `ms`, or until {@link Owner.pageChanged} or close() wakes it. */
  private nap(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.nappers.delete(done);
        this.closing.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.nappers.add(done);
      this.closing.signal.addEventListener('abort', done, { once: true });
    });
  }

  private isOnline(): boolean {
    return !this.offline && navigator.onLine && this.hooks.page().online;
  }

  private wrote<T>(f: () => T, inTx: boolean): T {
    try {
      const result = f();
      if (!inTx && this.db.inTransaction()) {
        throw coded('BAD_ARGUMENT', 'a statement left a transaction open: use transaction()');
      }
      return result;
    } finally {
      // A failed script may have stopped after its BEGIN: never leave a transaction nobody owns.
      if (!inTx && this.db.inTransaction()) this.db.rollback();
      this.flushChanges();
      if (!inTx) this.localWrite();
    }
  }

  private localWrite(): void {
    this.schedule.onWrite(Date.now());
    this.arm();
    this.publishStatusSoon();
  }

  /** Publishes the status once per burst of local writes, shortly after the first. Reading it folds the
   * writes captured since into the pending queue (a transaction of its own): per burst, not per write, and
   * after the write has been answered. */
  private publishStatusSoon(): void {
    if (this.statusTimer !== undefined) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      this.publishStatus();
    }, STATUS_AFTER_WRITE_MS);
  }

  private flushChanges(): void {
    const tables = this.db.takeChanged() as string[];
    if (tables.length) this.hooks.changed(tables);
  }

  private touchTx(id: string): void {
    if (!this.tx || this.tx.id !== id) return;
    clearTimeout(this.tx.timer);
    this.tx.timer = setTimeout(() => this.abandon(id), TX_IDLE_MS);
  }

  private endTx(op: 'commit' | 'rollback', id?: string): null {
    if (!this.tx || this.tx.id !== id) {
      if (op === 'rollback') return null;
      throw coded('TX_ABORTED', 'the transaction was rolled back (idle for too long)');
    }
    try {
      if (op === 'commit') this.db.commit();
      else this.db.rollback();
    } catch (e) {
      this.db.rollback();
      throw e;
    } finally {
      this.releaseTx();
      this.flushChanges();
    }
    if (op === 'commit') this.localWrite();
    return null;
  }

  /** A transaction whose tab went quiet (closed, crashed) is rolled back so nobody waits forever. */
  private abandon(id: string): void {
    if (this.tx?.id !== id) return;
    try {
      this.db.rollback();
    } finally {
      this.releaseTx();
      this.flushChanges();
    }
  }

  private releaseTx(): void {
    if (this.tx) clearTimeout(this.tx.timer);
    this.tx = null;
    const waiters = this.txWaiters;
    this.txWaiters = [];
    waiters.forEach((w) => w());
  }

  /** A token from the page's auth, bounded by the request timeout and by close(). */
  private askToken(refresh: boolean): Promise<string | null> {
    return new Promise((resolve, reject) => {
      // A callback that does not answer in time is taken as unavailable (retried); close() ends the wait with
      // CLOSED, which every caller expects while closing (it was an AUTH error, once uncaught in a page).
      const silent = () => reject(coded('AUTH_UNAVAILABLE', 'the auth callback did not answer'));
      const closed = () => reject(coded('CLOSED', 'the database was closed'));
      const timer = setTimeout(silent, this.opts.requestTimeoutMs);
      this.closing.signal.addEventListener('abort', closed, { once: true });
      this.hooks
        .token(this.deviceId, refresh)
        .then(resolve, reject)
        .finally(() => {
          clearTimeout(timer);
          this.closing.signal.removeEventListener('abort', closed);
        });
    });
  }

  /** Resolves when no interactive transaction is open. */
  private async txFree(): Promise<void> {
    while (this.tx) await new Promise<void>((r) => this.txWaiters.push(r));
  }

  private wake(): void {
    this.schedule.onWake(Date.now());
    this.arm();
  }

  /** Sets the timer for the next due cycle (never with `autoSync: false`: then only `sync()` starts one). */
  private arm(): void {
    clearTimeout(this.timer);
    if (!this.opts.autoSync) return;
    const due = this.schedule.nextDue();
    if (due === undefined || this.closing.signal.aborted) return;
    this.timer = setTimeout(() => this.tick(), Math.max(0, due - Date.now()));
  }

  private tick(): void {
    if (this.closing.signal.aborted || this.broken) return;
    if (this.cycle || !this.schedule.tryStart(Date.now())) return this.arm();
    this.cycle = this.runCycle().finally(() => {
      this.cycle = null;
      this.arm();
    });
    this.publishStatus();
  }

  /** One cycle; resolves to its error (or null), never rejects. */
  private async runCycle(): Promise<unknown> {
    let ok = false;
    let failure: unknown = null;
    const started = performance.now();
    const before = this.db.status() as { hydrated: boolean; cursor: number };
    const [hydrating, cursorBefore] = [!before.hydrated, before.cursor];
    let report: { applied?: number; conflicts?: number; rejected?: number; retried?: number } = {};
    this.log('debug', 'sync cycle start', { pending: this.unsent(), hydrating });
    try {
      if (!this.isOnline()) throw coded('NETWORK', 'offline');
      this.token ??= await this.askToken(false);
      if (!this.token) throw coded('NOT_SIGNED_IN', 'auth gave no token');
      await this.txFree();
      if (!this.db.userId()) this.db.signIn(this.opts.user, this.token);
      // A 401 is handled inside the cycle: the engine asks `freshToken` once and repeats the request.
      report = await this.db.sync(this.token);
      ok = true;
      const status = this.db.status() as { pending: number; cursor: number };
      this.log('info', hydrating ? 'hydration and sync cycle done' : 'sync cycle done', {
        ms: Math.round(performance.now() - started),
        uploaded: report.applied ?? 0,
        conflicts: report.conflicts ?? 0,
        rejected: report.rejected ?? 0,
        pending: status.pending,
        cursor: status.cursor,
      });
      this.cycleError = null;
      this.reported = null;
    } catch (e) {
      failure = e;
      // Failures before the engine ran (offline, no token) are the cycle's error too.
      const { code = 'INTERNAL', message = String(e) } = e as { code?: ErrorCode; message?: string };
      this.cycleError = { code, message };
      this.log(code === 'NETWORK' ? 'info' : 'warn', 'sync cycle failed', {
        ms: Math.round(performance.now() - started),
        code,
        message,
      });
      // Another user's token was refused before it was used: ask `auth` again next time instead of reusing it.
      if (code === 'TOKEN_USER_MISMATCH') this.token = null;
      // Once per episode, and never for what waiting cures (README: which errors reach onError).
      const episode = `${code}:${(e as { status?: number }).status ?? ''}`;
      if (!isTransient(e) && episode !== this.reported && !this.closing.signal.aborted) {
        this.reported = episode;
        this.hooks.error(e);
      }
    } finally {
      // An overloaded server's Retry-After (429, 503) is a floor under the backoff.
      this.schedule.finish(Date.now(), ok, (failure as { retryAfterMs?: number } | null)?.retryAfterMs);
      this.flushChanges();
      const cursorAfter = (this.db.status() as { cursor: number }).cursor;
      this.inspector.cycle(cycleRecord(started, hydrating, [cursorBefore, cursorAfter], report, ok ? null : this.cycleError));
      const conflicts = this.db.takeConflicts() as Conflict[];
      if (conflicts.length) {
        this.conflictLog = [...this.conflictLog, ...conflicts].slice(-100);
        this.hooks.conflicts(conflicts);
      }
      this.rejections = this.db.rejections() as Rejection[];
      if (this.opts.open.resolver === 'custom') this.resolving = this.decideConflicts();
      queueMicrotask(() => this.publishStatus());
    }
    return failure;
  }

  /**
   * Asks the app's `conflict` option about each conflict the last cycle left undecided and records its answers;
   * the rows are then sent again (at once: a cycle is woken) and the engine applies the decisions.
   */
  private async decideConflicts(): Promise<number> {
    const undecided = this.db.takeUndecided() as ConflictContext[];
    let decided = 0;
    await Promise.all(
      undecided.map(async (c) => {
        try {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('the conflict resolver did not answer')), this.opts.requestTimeoutMs);
          });
          try {
            this.db.decide(c.table, c.pk, c.server.version, c.key, await Promise.race([this.hooks.resolve(c), timeout]));
          } finally {
            clearTimeout(timer);
          }
          decided++;
        } catch (e) {
          // The row keeps backing off and is asked about again at its next conflict.
          const message = `conflict resolver failed for ${c.table} ${c.pk}: ${(e as Error).message ?? e}`;
          this.log('warn', message, { table: c.table, pk: c.pk });
          this.hooks.error(coded('RESOLVER', message));
        }
      }),
    );
    this.log('debug', 'conflicts decided by the app', { asked: undecided.length, decided });
    if (decided > 0) this.wake();
    return decided;
  }

  private currentStatus(): SyncStatus {
    const s = this.db.status() as {
      phase: 'upload' | 'download' | 'hydrate' | 'backfill' | null;
      uploaded: number;
      downloaded: number;
      pending: number;
      parked: number;
      hydrated: boolean;
      syncing: boolean;
      lastError: SyncStatus['lastError'];
      lastSyncedAt: string | null;
      hasSynced: boolean;
      scopes: ScopeStatus[];
    };
    return {
      online: this.isOnline(),
      syncing: this.cycle !== null,
      uploading: s.phase === 'upload',
      downloading: s.phase === 'download' || s.phase === 'hydrate' || s.phase === 'backfill',
      backfill: s.phase === 'backfill' ? { downloaded: s.downloaded } : null,
      uploaded: s.uploaded,
      downloaded: s.downloaded,
      hydration: s.phase === 'hydrate' ? { downloaded: s.downloaded } : null,
      pending: s.pending,
      parked: s.parked,
      hydrated: s.hydrated,
      lastSyncedAt: s.lastSyncedAt,
      hasSynced: s.hasSynced,
      lastError: this.cycleError ?? s.lastError,
      conflicts: this.conflictLog,
      rejections: this.rejections,
      scopes: s.scopes,
      realtime: this.realtimeMode,
      storage: this.storage,
      owner: true,
    };
  }

  /** During a cycle, between pages: the status with its progress, at most every 100 ms. */
  private progressed(): void {
    const now = Date.now();
    if (now - this.lastProgress < 100) return;
    this.lastProgress = now;
    this.publishStatus();
  }

  /** Broadcasts the status when it changed. */
  publishStatus(): void {
    if (!this.db) return;
    const s = this.currentStatus();
    const key = JSON.stringify({ ...s, conflicts: s.conflicts.length });
    if (key === this.lastStatus) return;
    this.lastStatus = key;
    this.hooks.status(s);
  }
}
