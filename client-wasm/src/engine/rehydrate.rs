//! A device whose cursor fell below the server's history horizon (410 `history_pruned`, docs/history.md §4): the
//! server removed tombstones this device may not have seen, so the log can no longer tell it about those deletes.
//! It re-hydrates from the snapshot, as a new device would, with what it has:
//!
//! 1. one transaction marks every live local row unconfirmed (its metadata's `updated_at` emptied) and sets the
//!    cursor back to 0, so the next hydration starts from the snapshot (and a crash midway starts it again);
//! 2. the hydration pages the snapshot and catches up from the snapshot's window; each row it brings is
//!    confirmed. A row the device has at the snapshot's version (or newer) is left as it is, so a local edit of
//!    it stays; a newer one is written over it, as a download writes over a row with a pending change (§7.4);
//! 3. rows still unconfirmed are gone from the server: they are deleted locally, unless a pending change holds
//!    them. Pending changes are kept and uploaded by the next cycle, where they meet the server's versions as
//!    any upload does.
//!
//! The app sees the hydration's progress (`Phase::Hydrating`), not an error.

use rusqlite::Connection;

use super::tx::{SyncTx, silenced, with_fk_fallback};
use super::write::delete_row;
use super::{Engine, SyncError};
use crate::transport::Transport;
use crate::triggers::TableShape;

/// The `updated_at` of a row a re-hydration has not confirmed yet (no timestamp is empty).
const UNCONFIRMED: &str = "";

impl SyncError {
    /// The server removed history this device needed: 410 `history_pruned`.
    pub fn is_history_pruned(&self) -> bool {
        matches!(self, Self::Http { status: 410, body, .. }
            if super::envelope(body.as_bytes()).is_some_and(|(code, _)| code == "history_pruned"))
    }
}

impl<T: Transport> Engine<T> {
    /// Downloads until the window is drained, re-hydrating when the server answers `history_pruned`.
    pub async fn download(&mut self) -> Result<usize, SyncError> {
        match self.download_loop(false).await {
            Err(e) if e.is_history_pruned() => self.rehydrate().await,
            result => result,
        }
    }

    /// A hydration's download from a cursor above 0 (one interrupted after its snapshot, or a classic
    /// hydration): when the server answers `history_pruned`, the hydration starts again from the snapshot.
    pub(super) async fn hydration_download(&mut self, include_self: bool) -> Result<usize, SyncError> {
        match self.download_loop(include_self).await {
            Err(e) if e.is_history_pruned() => {
                self.mark_unconfirmed()?;
                self.snapshot_hydrate().await
            }
            result => result,
        }
    }

    /// Steps 1 and 2 of the module docs; step 3 ends every hydration ([`drop_unconfirmed`]).
    async fn rehydrate(&mut self) -> Result<usize, SyncError> {
        self.mark_unconfirmed()?;
        self.hydrate(false).await
    }

    /// Step 1.
    fn mark_unconfirmed(&self) -> Result<(), SyncError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "UPDATE _sync_row_meta SET updated_at = ?1 WHERE deleted = 0",
            [UNCONFIRMED],
        )?;
        tx.execute(
            "UPDATE _sync_client_info SET last_server_seq_seen = 0, window_until = 0, hydrated = 0 WHERE id = 1",
            [],
        )?;
        Ok(tx.commit()?)
    }
}

/// Step 3: deletes the rows a re-hydration left unconfirmed and their metadata, except where a change is pending
/// (those are confirmed as they are). Local cascades of the deletes are queued as any download's are. Returns the
/// rows deleted.
pub(super) fn drop_unconfirmed<'a>(
    conn: &Connection,
    shapes: impl Iterator<Item = &'a TableShape> + Clone,
) -> Result<usize, SyncError> {
    let pending = "EXISTS (SELECT 1 FROM _sync_pending p WHERE p.table_name = m.table_name AND p.pk_uuid = m.pk_uuid)";
    if !rehydrating(conn)? {
        return Ok(0);
    }
    with_fk_fallback(conn, || {
        let tx = SyncTx::begin(conn, shapes.clone())?;
        tx.pragma_update(None, "defer_foreign_keys", true)?;
        let dropped = silenced(&tx, || {
            let mut dropped = 0;
            for shape in shapes.clone() {
                let gone: Vec<String> = tx
                    .prepare(&format!(
                        "SELECT m.pk_uuid FROM _sync_row_meta m WHERE m.table_name = ?1 AND m.updated_at = ?2 AND NOT {pending}"
                    ))?
                    .query_map([&shape.table, UNCONFIRMED], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for pk in &gone {
                    delete_row(&tx, shape, pk)?;
                    tx.execute(
                        "DELETE FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2",
                        [&shape.table, pk],
                    )?;
                }
                dropped += gone.len();
            }
            super::apply::queue_cascaded_deletes(&tx, shapes.clone())?;
            Ok(dropped)
        })?;
        tx.execute(
            "UPDATE _sync_row_meta SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE updated_at = ?1",
            [UNCONFIRMED],
        )?;
        tx.commit()?;
        Ok(dropped)
    })
}

/// Whether a re-hydration is in progress: rows are marked unconfirmed.
pub(super) fn rehydrating(conn: &Connection) -> Result<bool, SyncError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM _sync_row_meta WHERE updated_at = ?1)",
        [UNCONFIRMED],
        |r| r.get(0),
    )?)
}
