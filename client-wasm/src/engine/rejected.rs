//! The app's answers to a change the server rejected for good (`_sync_rejections`, PROTOCOL.md §7.3's
//! `bad_payload` / `unregistered_table`): send the row again as it is now, or let it go.

use rusqlite::{OptionalExtension, params};

use super::tx::silenced;
use super::write::delete_row;
use super::{Engine, SyncError};
use crate::transport::Transport;
use crate::triggers::{LAZY_BASE, quote};
use crate::wire::key_value;

/// The intent that re-sends a row: what exists locally against what the server knows of it.
fn intent(exists: bool, server_has: bool) -> Option<&'static str> {
    match (exists, server_has) {
        (true, true) => Some("UPDATE"),
        (true, false) => Some("INSERT"),
        (false, true) => Some("DELETE"),
        (false, false) => None,
    }
}

impl<T: Transport> Engine<T> {
    /// Queues the rejected row again as it is now (after the app fixed it, or the server's configuration
    /// changed) and removes its rejections. `false` when there is no rejection `id`.
    pub fn retry_rejected(&self, id: i64) -> Result<bool, SyncError> {
        self.with_rejection(id, |engine, table, pk| {
            let (exists, server_has) = engine.row_state(table, pk)?;
            if let Some(op) = intent(exists, server_has) {
                let conn = engine.conn();
                conn.execute(
                    "UPDATE _sync_client_info SET next_change_id = next_change_id + 1 WHERE id = 1",
                    [],
                )?;
                // Payload and base are filled before the next upload, like a captured write's (triggers.rs).
                conn.execute(
                    "INSERT INTO _sync_pending (table_name, pk_uuid, op, base_version, payload, change_id, queued_at)
                     VALUES (?1, ?2, ?3, ?4, NULL, (SELECT next_change_id - 1 FROM _sync_client_info WHERE id = 1),
                             datetime('now'))
                     ON CONFLICT (table_name, pk_uuid) DO NOTHING",
                    params![table, pk, op, LAZY_BASE],
                )?;
            }
            Ok(())
        })
    }

    /// Lets a rejected change go: removes its rejections, and deletes the row locally when the server never
    /// had it (it exists nowhere else). A row the server has keeps its local content until the server next
    /// changes it. `false` when there is no rejection `id`.
    pub fn discard_rejected(&self, id: i64) -> Result<bool, SyncError> {
        self.with_rejection(id, |engine, table, pk| {
            let (exists, server_has) = engine.row_state(table, pk)?;
            let pending: bool = engine.conn().query_row(
                "SELECT EXISTS (SELECT 1 FROM _sync_pending WHERE table_name = ?1 AND pk_uuid = ?2)",
                [table, pk],
                |r| r.get(0),
            )?;
            // A newer write since the rejection is the app's again: leave the row and that intent alone.
            if exists && !server_has && !pending {
                let conn = engine.conn();
                silenced(conn, || Ok(delete_row(conn, &engine.shapes[table], pk)?))?;
            }
            Ok(())
        })
    }

    /// Runs `f` on rejection `id`'s row in one transaction, then removes every rejection of that row.
    fn with_rejection(
        &self,
        id: i64,
        f: impl FnOnce(&Self, &str, &str) -> Result<(), SyncError>,
    ) -> Result<bool, SyncError> {
        let conn = self.conn();
        let Some((table, pk)): Option<(String, String)> = conn
            .query_row(
                "SELECT table_name, pk_uuid FROM _sync_rejections WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        else {
            return Ok(false);
        };
        if !self.shapes.contains_key(&table) {
            return Err(SyncError::Config(format!("table {table} is no longer synced")));
        }
        conn.execute_batch("SAVEPOINT oversync_rejection")?;
        // Whether a newer write exists is read from the pending queue.
        let done = crate::capture::fold(conn)
            .map_err(SyncError::from)
            .and_then(|_| f(self, &table, &pk))
            .and_then(|()| {
                conn.execute(
                    "DELETE FROM _sync_rejections WHERE table_name = ?1 AND pk_uuid = ?2",
                    [&table, &pk],
                )?;
                Ok(())
            });
        match done {
            Ok(()) => conn.execute_batch("RELEASE oversync_rejection")?,
            Err(_) => conn.execute_batch("ROLLBACK TO oversync_rejection; RELEASE oversync_rejection")?,
        }
        done.map(|()| true)
    }

    /// Whether the row exists locally, and whether the server has it (live metadata).
    fn row_state(&self, table: &str, pk: &str) -> Result<(bool, bool), SyncError> {
        let shape = &self.shapes[table];
        let conn = self.conn();
        let exists: bool = conn.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = ?1)",
                quote(&shape.table),
                quote(&shape.key)
            ),
            [key_value(shape, pk)],
            |r| r.get(0),
        )?;
        let server_has: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2 AND deleted = 0)",
            [table, pk],
            |r| r.get(0),
        )?;
        Ok((exists, server_has))
    }
}

#[cfg(test)]
mod tests {
    use super::intent;

    #[test]
    fn a_retry_sends_what_exists_locally_against_what_the_server_has() {
        assert_eq!(intent(true, true), Some("UPDATE"));
        assert_eq!(intent(true, false), Some("INSERT"));
        assert_eq!(intent(false, true), Some("DELETE"));
        assert_eq!(intent(false, false), None);
    }
}
