// Where a database can live in this browser (issue 35): the Origin Private File System with sync access handles
// (what the engine's VFS needs), or memory. A browser that lacks them lacks them for good: found out once, in a
// few milliseconds, instead of retrying what only a busy file (another tab closing it) would cure.

/** Where the open database lives: OPFS (kept), or memory (gone when the tab closes). */
export type StorageKind = 'opfs' | 'memory';

/**
 * What `SyncClient.open` asks for: `opfs` (the default; fails with `STORAGE_UNAVAILABLE` where it is missing),
 * `memory` (nothing kept), or `best` (OPFS where the browser has it, else memory, reported in `status.storage`).
 */
export type StorageChoice = 'opfs' | 'memory' | 'best';

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
