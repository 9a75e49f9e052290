//! Where a database lives: OPFS (the sahpool VFS: sync access handles, one pool directory per file), IndexedDB
//! (the relaxed-idb VFS, where OPFS sync access handles are missing), or memory. The npm package chooses
//! (`SyncClient.open({ storage })`); this opens the connection on it and makes its writes durable.
//!
//! IndexedDB: relaxed-idb keeps the whole file in memory (loaded when the database opens) and writes the pages a
//! commit changed to IndexedDB in one IndexedDB transaction after SQLite's commit returns, in commit order. So
//! IndexedDB always holds some committed state, never a torn one; [`Storage::flush`] waits until it holds the
//! latest. The package flushes before it answers an app's write, so a write the app was told about survives a
//! killed tab; the engine's own commits (downloads, upload bookkeeping) are flushed with the next app write and
//! at close, and redoing them after a crash is safe (a page is downloaded again; a change sent again is answered
//! from the server's idempotency record, §6.3). Two rules keep IndexedDB from ever seeing a page no commit wrote:
//! no cache spill (SQLite writes pages only at commit) and a journal in memory (a rollback never touches the file).

use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;
use sqlite_wasm_vfs::sahpool::{self, OpfsSAHPoolCfgBuilder, OpfsSAHPoolUtil};
use sqlite_wasm_vfs_idb::relaxed_idb::{self, Preload, RelaxedIdbCfgBuilder, RelaxedIdbUtil};
use wasm_bindgen::JsValue;

use super::error::{js_error, sqlite};

/// The storage `SyncClient.open` chose.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Opfs,
    Idb,
    Memory,
}

/// The open database's storage, kept for flushes, close and sign-out.
pub(crate) enum Storage {
    Opfs(OpfsSAHPoolUtil),
    Idb(RelaxedIdbUtil),
    Memory,
}

/// Not a file SQLite can be asked for (file names are letters, digits, `-`, `_` and `.`): deleting it queues an
/// IndexedDB operation behind every commit already queued, and its completion says they are done.
const BARRIER: &str = "\u{1}flush";

fn unavailable(e: impl std::fmt::Display) -> JsValue {
    js_error("STORAGE_UNAVAILABLE", &e.to_string())
}

/// Opens `file` on `kind`: the VFS (and IndexedDB database or OPFS directory) is named `oversync-<file>`.
pub(crate) async fn open(file: &str, kind: Kind) -> Result<(Connection, Storage), JsValue> {
    let vfs = format!("oversync-{file}");
    let path = format!("/{file}");
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    match kind {
        Kind::Memory => Ok((Connection::open_in_memory().map_err(|e| sqlite(&e))?, Storage::Memory)),
        Kind::Opfs => {
            let cfg = OpfsSAHPoolCfgBuilder::new()
                .vfs_name(&vfs)
                .directory(&format!(".oversync/{file}"))
                .build();
            let pool = sahpool::install::<sqlite_wasm_rs::WasmOsCallback>(&cfg, false)
                .await
                .map_err(unavailable)?;
            let conn = Connection::open_with_flags_and_vfs(&path, flags, vfs.as_str()).map_err(|e| sqlite(&e))?;
            // 16 KiB pages for a new database (an existing one keeps its size): an OPFS write costs about the same
            // per call whatever its size, so a commit of four times fewer, larger pages is cheaper (P3; numbers in
            // bench/results/design-choices.md).
            conn.pragma_update(None, "page_size", 16384).map_err(|e| sqlite(&e))?;
            // A rollback journal kept between transactions (its header zeroed on commit) instead of one created
            // and deleted by every commit: on the sahpool VFS that is a file association, a truncate and flushes
            // per transaction. Same crash safety as DELETE, and less of a hydration's time in flushes and
            // truncates (P3 profile in bench/results/design-choices.md).
            conn.pragma_update_and_check(None, "journal_mode", "PERSIST", |r| r.get::<_, String>(0))
                .map_err(|e| sqlite(&e))?;
            Ok((conn, Storage::Opfs(pool)))
        }
        Kind::Idb => {
            // Only this file is loaded (a fresh worker per open: what another tab wrote before is read anew).
            let cfg = RelaxedIdbCfgBuilder::new()
                .vfs_name(&vfs)
                .preload(Preload::Paths(vec![path.clone()]))
                .build();
            let util = relaxed_idb::install::<IdbOs>(&cfg, false).await.map_err(unavailable)?;
            let conn = Connection::open_with_flags_and_vfs(&path, flags, vfs.as_str()).map_err(|e| sqlite(&e))?;
            // Each commit writes its changed pages as IndexedDB records: 16 KiB as on OPFS (a one-row write
            // stays a few small records; a hydration's commits are not thousands of records).
            conn.pragma_update(None, "page_size", 16384).map_err(|e| sqlite(&e))?;
            // The VFS's own rule: durability is the flush's business, not SQLite's xSync.
            conn.pragma_update(None, "synchronous", "OFF").map_err(|e| sqlite(&e))?;
            // See the module comment: the file is written only by commits.
            conn.pragma_update(None, "cache_spill", false).map_err(|e| sqlite(&e))?;
            conn.pragma_update_and_check(None, "journal_mode", "MEMORY", |r| r.get::<_, String>(0))
                .map_err(|e| sqlite(&e))?;
            Ok((conn, Storage::Idb(util)))
        }
    }
}

impl Storage {
    /// Waits until every commit so far is in IndexedDB (at once on OPFS, whose writes are synchronous, and in
    /// memory). Whether they all succeeded is the package's to check (`npm/src/storage.ts`, `watchIdb`): the VFS
    /// does not report a failed write.
    pub(crate) async fn flush(&self) -> Result<(), JsValue> {
        match self {
            Storage::Idb(util) => util.delete_db(BARRIER).map_err(unavailable)?.await.map_err(unavailable),
            _ => Ok(()),
        }
    }

    /// After the connection is closed: OPFS lets go of the pool's handles (another worker may open them);
    /// IndexedDB finishes its writes, or with `erase` deletes the copy.
    pub(crate) async fn release(self, erase: bool) -> Result<(), JsValue> {
        match self {
            Storage::Opfs(pool) => pool.pause().map_err(unavailable),
            Storage::Idb(util) if erase => util.clear_all().map_err(unavailable)?.await.map_err(unavailable),
            other => other.flush().await,
        }
    }
}

/// What the relaxed-idb VFS asks of its host (rsqlite-vfs 0.1's trait), from sqlite-wasm-rs's host services.
struct IdbOs;

impl rsqlite_vfs_idb::OsCallback for IdbOs {
    fn sleep(dur: Duration) {
        sqlite_wasm_rs::vfs::OsCallback::sleep(&sqlite_wasm_rs::WasmOsCallback, dur);
    }

    fn random(buf: &mut [u8]) {
        sqlite_wasm_rs::vfs::OsCallback::random(&sqlite_wasm_rs::WasmOsCallback, buf);
    }

    fn epoch_timestamp_in_ms() -> i64 {
        js_sys::Date::now() as i64
    }
}
