// A database's files: on OPFS `.oversync/<file>/` holds its SQLite pool (the sahpool VFS), in IndexedDB the
// database `oversync-<file>` its pages (the relaxed-idb VFS; both opened by client-wasm/src/web/storage.rs).
// Nothing else of it is kept anywhere.

import { coded } from './storage.js';

/** The file of `name`'s database for `user`: one per user, so another user never opens this one. */
export function fileName(name: string, user: string): string {
  return `${name}.${user}.sqlite3`.replace(/[^A-Za-z0-9._-]/g, '_');
}

const named = (e: unknown, name: string) => (e as { name?: string } | null)?.name === name;

/**
 * Deletes the database's OPFS directory and IndexedDB copy (missing ones are not an error). They must be closed:
 * the owner closes them before, and a handle another worker still holds makes this fail with `STORAGE_LOCKED`.
 */
export async function removeFiles(file: string): Promise<void> {
  await removeOpfs(file);
  await removeIdb(file);
}

async function removeIdb(file: string): Promise<void> {
  const idb = (self as { indexedDB?: IDBFactory }).indexedDB;
  if (!idb) return;
  await new Promise<void>((resolve, reject) => {
    const req = idb.deleteDatabase(`oversync-${file}`);
    const timer = setTimeout(
      () => reject(coded('STORAGE_LOCKED', `the IndexedDB copy of ${file} is still open elsewhere`)),
      5_000,
    );
    req.onsuccess = () => (clearTimeout(timer), resolve());
    req.onerror = () => (clearTimeout(timer), reject(req.error));
  });
}

async function removeOpfs(file: string): Promise<void> {
  if (typeof navigator.storage?.getDirectory !== 'function') return;
  const root = await navigator.storage.getDirectory();
  let dir: FileSystemDirectoryHandle;
  try {
    dir = await root.getDirectoryHandle('.oversync');
  } catch (e) {
    if (named(e, 'NotFoundError')) return;
    throw e;
  }
  // Access handles closed a moment ago may still be releasing: a few short retries before giving up.
  for (let attempt = 0; ; attempt++) {
    try {
      await dir.removeEntry(file, { recursive: true });
      return;
    } catch (e) {
      if (named(e, 'NotFoundError')) return;
      if (!named(e, 'NoModificationAllowedError') || attempt === 5) throw e;
      await new Promise((r) => setTimeout(r, 50 << attempt));
    }
  }
}
