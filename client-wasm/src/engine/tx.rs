//! The two rules every engine transaction follows, as types, so that forgetting one is impossible:
//!
//! - **Captured writes are folded and deferred intents filled first.** A captured write only appends to the
//!   capture log and leaves its payload and base for later (`triggers` module docs). Before the engine writes
//!   rows or metadata, they must be filled from the rows as the app left them, or an intent would take on what
//!   the server wrote. [`SyncTx::begin`] is the only way
//!   the engine opens a transaction, and it fills them.
//! - **The engine's own writes are not captured.** Rows the server sent or a resolver decided are written
//!   with capture off. [`silenced`] switches it off around them and back on afterwards, also on failure.

use std::ops::Deref;

use rusqlite::{Connection, Transaction};

use super::SyncError;
use crate::triggers::{TableShape, fill_deferred_base_sql};

/// An engine transaction (rolled back when dropped uncommitted), opened with the deferred intents filled.
pub(super) struct SyncTx<'c> {
    tx: Transaction<'c>,
}

impl<'c> SyncTx<'c> {
    /// Begins a transaction on `conn`, folds the capture log and fills the deferred intents of `shapes`' tables.
    pub(super) fn begin<'a>(
        conn: &'c Connection,
        shapes: impl IntoIterator<Item = &'a TableShape>,
    ) -> rusqlite::Result<Self> {
        let tx = conn.unchecked_transaction()?;
        crate::capture::fold(&tx)?;
        fill_deferred(&tx, shapes)?;
        Ok(Self { tx })
    }

    /// A savepoint inside it (for work that may fail alone).
    pub(super) fn savepoint(&mut self) -> rusqlite::Result<rusqlite::Savepoint<'_>> {
        self.tx.savepoint()
    }

    pub(super) fn commit(self) -> rusqlite::Result<()> {
        self.tx.commit()
    }
}

impl Deref for SyncTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.tx
    }
}

/// Fills in the deferred payloads and base versions of pending intents. A scan of the pending queue, which is
/// short between cycles.
fn fill_deferred<'a>(conn: &Connection, shapes: impl IntoIterator<Item = &'a TableShape>) -> rusqlite::Result<()> {
    for shape in shapes {
        conn.prepare_cached(&shape.fill_deferred_sql())?.execute([])?;
    }
    conn.prepare_cached(&fill_deferred_base_sql())?.execute([])?;
    Ok(())
}

/// Runs `f` with capture off: its writes to app tables queue nothing. Capture is back on afterwards, also when
/// `f` fails (inside a transaction that is then rolled back, the switch goes with it anyway).
pub(super) fn silenced<R>(conn: &Connection, f: impl FnOnce() -> Result<R, SyncError>) -> Result<R, SyncError> {
    conn.execute("UPDATE _sync_client_info SET apply_mode = 1 WHERE id = 1", [])?;
    let result = f();
    conn.execute("UPDATE _sync_client_info SET apply_mode = 0 WHERE id = 1", [])?;
    result
}

/// Runs `f` (which does its work in one transaction); if the commit violates a foreign key, runs it again with
/// enforcement off. That happens when the server holds a child whose parent another device deleted later (sync
/// state never cascades, PROTOCOL.md §6.5): the device then matches the server, and the app can see the orphans
/// through `Engine::fk_violations` instead of the sync wedging on that work forever. `f` must start from scratch
/// each time it is called.
pub(super) fn with_fk_fallback<R>(
    conn: &Connection,
    mut f: impl FnMut() -> Result<R, SyncError>,
) -> Result<R, SyncError> {
    match f() {
        Err(SyncError::Storage(e)) if is_fk_violation(&e) => {
            conn.pragma_update(None, "foreign_keys", false)?;
            let result = f();
            let restored = conn.pragma_update(None, "foreign_keys", true);
            let result = result?;
            restored?;
            Ok(result)
        }
        other => other,
    }
}

/// A foreign key violated at commit (or by a statement).
fn is_fk_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error()
        .is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}
