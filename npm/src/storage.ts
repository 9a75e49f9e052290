// Where a database can live in this browser (issue 35): the Origin Private File System with sync access handles
// (the sahpool VFS), IndexedDB (the relaxed-idb VFS, where those handles are missing: WebKitGTK, older engines),
// or memory. A browser that lacks them lacks them for good: found out once, in a few milliseconds, instead of
// retrying what only a busy file (another tab closing it) would cure.

/** Where the open database lives: OPFS or IndexedDB (kept), or memory (gone when the tab closes). */
export type StorageKind = 'opfs' | 'idb' | 'memory';

/**
 * What `SyncClient.open` asks for: `opfs` (the default; fails with `STORAGE_UNAVAILABLE` where it is missing),
 * `idb` (IndexedDB), `memory` (nothing kept), or `best` (OPFS where the browser has it, else IndexedDB, else
 * memory; the one used is in `status.storage`).
 */
export type StorageChoice = 'opfs' | 'idb' | 'memory' | 'best';

/** An `Error` with a `code` (what the page turns into an `OversyncError`). */
export const coded = (code: string, message: string) => Object.assign(new Error(message), { code });

/**
 * The storage to open for `choice`, or a `STORAGE_UNAVAILABLE` error naming what is missing. `warn` hears
 * about a fallback (`best` settling for less than OPFS).
 */
export async function chooseStorage(choice: StorageChoice, warn: (message: string, reason: string) => void): Promise<StorageKind> {
  if (choice === 'memory') return 'memory';
  if (choice === 'idb') {
    const missing = await idbMissing();
    if (missing) throw coded('STORAGE_UNAVAILABLE', `${missing}. Open with storage: 'best' to run in memory instead (lost when the tab closes)`);
    return 'idb';
  }
  const noOpfs = await opfsMissing();
  if (!noOpfs) return 'opfs';
  if (choice === 'opfs') {
    throw coded('STORAGE_UNAVAILABLE', `${noOpfs}. Open with storage: 'best' to keep it in IndexedDB instead (or in memory where that is missing too)`);
  }
  const noIdb = await idbMissing();
  if (!noIdb) {
    warn('no OPFS sync access handles here: the database is kept in IndexedDB', noOpfs);
    return 'idb';
  }
  warn('no persistent storage here: the database lives in memory', `${noOpfs}; ${noIdb}`);
  return 'memory';
}

/** Why IndexedDB cannot be used in this worker, or null: opens (and deletes again) a probe database. */
export async function idbMissing(): Promise<string | null> {
  const idb = (self as { indexedDB?: IDBFactory }).indexedDB;
  if (!idb) return 'this browser has no IndexedDB here (an old or non-secure context, or IndexedDB switched off)';
  const name = 'oversync-probe';
  try {
    await new Promise<void>((resolve, reject) => {
      const req = idb.open(name);
      req.onsuccess = () => {
        req.result.close();
        resolve();
      };
      req.onerror = () => reject(req.error);
      req.onblocked = () => resolve();
    });
    return null;
  } catch (e) {
    // Full, not missing: a database that already exists still opens (and reads).
    if ((e as { name?: string } | null)?.name === 'QuotaExceededError') return null;
    return `the browser refused IndexedDB (${describe(e)}): a private window, or storage blocked for this site`;
  } finally {
    try {
      idb.deleteDatabase(name);
    } catch {
      // Refused like the open: nothing was created.
    }
  }
}

/**
 * Watches the IndexedDB transactions of this worker's databases (`oversync-<file>`): the relaxed-idb VFS writes
 * each commit's pages in a transaction of its own after the commit returned, and does not report a failure. The
 * first one that aborts (a full quota, a disk error) is kept, and every later write transaction on those
 * databases refused, so IndexedDB keeps the last state that was wholly written: the owner's next flush then
 * fails with `STORAGE_FULL` (or `STORAGE_UNAVAILABLE`) and the database is closed. Patches
 * `IDBDatabase.prototype.transaction` of this worker only (the package's own dedicated worker; nothing else runs
 * in it). Returns the failure so far.
 */
export function watchIdb(): () => Error | null {
  let failure: Error | null = null;
  const proto = IDBDatabase.prototype;
  const begin = proto.transaction;
  proto.transaction = function (this: IDBDatabase, ...args: Parameters<IDBDatabase['transaction']>) {
    const ours = this.name.startsWith('oversync-');
    if (ours && failure && args[1] === 'readwrite') throw failure;
    const tx = begin.apply(this, args);
    if (ours && tx.mode === 'readwrite') {
      tx.addEventListener('abort', () => {
        failure ??= storageFailure(tx.error);
      });
    }
    return tx;
  };
  return () => failure;
}

/** A failed storage write as a coded error: `STORAGE_FULL` for a quota, `STORAGE_UNAVAILABLE` otherwise. */
export function storageFailure(e: unknown): Error {
  const text = describe(e);
  return /quota/i.test(text)
    ? coded('STORAGE_FULL', `the browser refused to store more for this site (${text}): the last write was not kept; free space (or ask for persistent storage) and open the database again`)
    : coded('STORAGE_UNAVAILABLE', `the browser stopped storing this database (${text}): the last write was not kept; open the database again`);
}

/**
 * Why OPFS sync access handles cannot be used in this worker, or null when they can (or when the failure may
 * pass: a file another tab still holds). Probes with a scratch file of its own name, removed again.
 */
export async function opfsMissing(): Promise<string | null> {
  const storage = (self.navigator as Navigator | undefined)?.storage;
  if (typeof storage?.getDirectory !== 'function') {
    return 'this browser has no Origin Private File System here (navigator.storage.getDirectory is missing: an old or non-secure context, or OPFS switched off)';
  }
  const handle = (self as { FileSystemFileHandle?: { prototype: object } }).FileSystemFileHandle;
  if (!handle || !('createSyncAccessHandle' in handle.prototype)) {
    return 'this browser has no OPFS sync access handles (FileSystemFileHandle.createSyncAccessHandle), which the database needs';
  }
  let dir: FileSystemDirectoryHandle;
  try {
    dir = await storage.getDirectory();
  } catch (e) {
    return `the browser refused the Origin Private File System (${describe(e)}): a private window, or storage blocked for this site`;
  }
  const name = `.oversync-probe-${crypto.randomUUID()}`;
  try {
    const file = await dir.getFileHandle(name, { create: true });
    const access = await (file as unknown as { createSyncAccessHandle(): Promise<{ close(): void }> }).createSyncAccessHandle();
    access.close();
    return null;
  } catch (e) {
    const { name: kind = '', message = '' } = (e ?? {}) as { name?: string; message?: string };
    if (kind === 'NotSupportedError' || kind === 'SecurityError' || /not support/i.test(message)) {
      return `this browser cannot open OPFS sync access handles (${describe(e)})`;
    }
    return null;
  } finally {
    await dir.removeEntry(name).catch(() => undefined);
  }
}

const describe = (e: unknown) => {
  const { name, message } = (e ?? {}) as { name?: string; message?: string };
  return name ? `${name}: ${message ?? ''}` : String(e);
};
