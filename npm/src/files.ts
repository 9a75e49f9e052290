// A database's files on OPFS: `.oversync/<file>/` holds its SQLite pool (the sahpool VFS opened by
// client-wasm/src/web/mod.rs), nothing else of it is kept anywhere.

/** The file of `name`'s database for `user`: one per user, so another user never opens this one. */
export function fileName(name: string, user: string): string {
  return `${name}.${user}.sqlite3`.replace(/[^A-Za-z0-9._-]/g, '_');
}

const named = (e: unknown, name: string) => (e as { name?: string } | null)?.name === name;

/**
 * Deletes the database's OPFS directory (a missing one is not an error). Its files must be closed: the owner
 * closes them before, and a handle another worker still holds makes this fail with `STORAGE_LOCKED`.
 */
export async function removeFiles(file: string): Promise<void> {
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
