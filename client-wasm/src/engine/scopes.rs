//! Shared data on the device (docs/sharing.md §5.3, §6): the scopes it holds (`_sync_scopes`), a backfill when
//! the user joins one (the scope's snapshot, then a replay of its log up to the device's cursor) and a purge when
//! the user leaves (its rows dropped locally, not uploaded as deletes; pending changes to them rejected).
//!
//! A scope-aware page lists the memberships it was read under whenever they changed since the device's
//! `scope_event`; [`memberships`] compares the list with what the device holds, in the page's transaction.

use std::collections::{BTreeMap, HashMap};

use oversync_protocol::query::SnapshotQuery;
use oversync_protocol::validate::DownloadQuery;
use oversync_protocol::wire::{DownloadResponse, ScopeRole, SnapshotResponse};
use rusqlite::{Connection, params};

use super::tx::{SyncTx, silenced};
use super::write::apply_snapshot_rows;
use super::{Engine, SyncError};
use crate::progress::Phase;
use crate::transport::Transport;
use crate::triggers::{TableShape, quote};

/// A scope the device holds or is filling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeStatus {
    /// The scope.
    pub scope: String,
    /// `reader` or `writer`.
    pub role: String,
    /// `backfilling` until its rows are all here, then `held`.
    pub state: String,
    /// Local rows of the scope, over every scoped table.
    pub rows: i64,
}

/// The scoped tables: each shape with its scope column.
pub(crate) type Scoped = BTreeMap<String, (TableShape, String)>;

/// The scopes in `conn` with their local row counts.
pub(crate) fn list(conn: &Connection, scoped: &Scoped) -> rusqlite::Result<Vec<ScopeStatus>> {
    let mut out: Vec<ScopeStatus> = conn
        .prepare_cached("SELECT scope, role, state FROM _sync_scopes ORDER BY scope")?
        .query_map([], |r| {
            Ok(ScopeStatus {
                scope: r.get(0)?,
                role: r.get(1)?,
                state: r.get(2)?,
                rows: 0,
            })
        })?
        .collect::<Result<_, _>>()?;
    if out.is_empty() {
        return Ok(out);
    }
    // One pass per scoped table (a status read follows every burst of local writes).
    for (shape, column) in scoped.values() {
        let sql = format!(
            "SELECT {c}, count(*) FROM {t} WHERE {c} IN (SELECT scope FROM _sync_scopes) GROUP BY {c}",
            t = quote(&shape.table),
            c = quote(column)
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let counts = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in counts {
            let (scope, n) = row?;
            if let Some(s) = out.iter_mut().find(|s| s.scope == scope) {
                s.rows += n;
            }
        }
    }
    Ok(out)
}

/// Applies a page's membership list (capture silenced by the caller): joins start a backfill, leaves purge.
pub(crate) fn memberships(tx: &Connection, scoped: &Scoped, listed: &[ScopeRole]) -> rusqlite::Result<()> {
    let held: HashMap<String, String> = tx
        .prepare_cached("SELECT scope, role FROM _sync_scopes")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for l in listed {
        match held.get(&l.scope) {
            None => {
                tx.execute(
                    "INSERT INTO _sync_scopes (scope, role, state) VALUES (?1, ?2, 'backfilling')",
                    params![l.scope, l.role],
                )?;
            }
            Some(role) if *role != l.role => {
                tx.execute(
                    "UPDATE _sync_scopes SET role = ?2 WHERE scope = ?1",
                    params![l.scope, l.role],
                )?;
            }
            Some(_) => {}
        }
    }
    for gone in held.keys().filter(|s| !listed.iter().any(|l| l.scope == **s)) {
        purge(tx, scoped, gone)?;
        tx.execute("DELETE FROM _sync_scopes WHERE scope = ?1", [gone])?;
    }
    Ok(())
}

/// Drops every local row of `scope` with its metadata; pending changes to those rows go to the rejections as
/// `scope_forbidden`. Returns the rows dropped.
pub(crate) fn purge(tx: &Connection, scoped: &Scoped, scope: &str) -> rusqlite::Result<usize> {
    let mut dropped = 0;
    for (shape, column) in scoped.values() {
        let rows = format!(
            "SELECT {} FROM {} AS r WHERE r.{} = ?2",
            shape.pk_expr("r"),
            quote(&shape.table),
            quote(column)
        );
        tx.execute(
            &format!(
                "INSERT INTO _sync_rejections (table_name, pk_uuid, reason, message)
                 SELECT table_name, pk_uuid, 'scope_forbidden', 'no longer a member of scope ' || ?2
                 FROM _sync_pending WHERE table_name = ?1 AND pk_uuid IN ({rows})"
            ),
            params![shape.table, scope],
        )?;
        for table in ["_sync_pending", "_sync_row_meta"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE table_name = ?1 AND pk_uuid IN ({rows})"),
                params![shape.table, scope],
            )?;
        }
        dropped += tx.execute(
            &format!("DELETE FROM {} WHERE {} = ?1", quote(&shape.table), quote(column)),
            [scope],
        )?;
    }
    Ok(dropped)
}

impl<T: Transport> Engine<T> {
    /// The scopes this device holds or is filling, with their row counts.
    pub fn scopes(&self) -> Result<Vec<ScopeStatus>, SyncError> {
        Ok(list(&self.conn, &self.scoped)?)
    }

    /// Whether downloads are scope-aware: the app has scoped tables and the server serves scopes.
    pub(super) async fn scope_aware(&mut self) -> Result<bool, SyncError> {
        if self.scoped.is_empty() {
            return Ok(false);
        }
        Ok(self.server_capabilities().await?.is_some_and(|c| c.features.scopes))
    }

    /// The device's newest membership event.
    pub(super) fn scope_event(&self) -> Result<i64, SyncError> {
        Ok(self
            .conn
            .query_row("SELECT scope_event FROM _sync_scope_info WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap_or(0))
    }

    /// Fills every scope still `backfilling`: its snapshot pages (resumable from the saved keyset), then its log
    /// from the snapshot's window up to the device's cursor. A scope the server refuses (403: left meanwhile)
    /// is left to the next page's membership list. Returns the rows applied.
    pub(super) async fn backfill_scopes(&mut self) -> Result<usize, SyncError> {
        let pending: Vec<String> = self
            .conn
            .prepare("SELECT scope FROM _sync_scopes WHERE state = 'backfilling' ORDER BY scope")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut applied = 0;
        for scope in pending {
            self.progress.enter(Phase::Backfilling);
            match self.backfill(&scope).await {
                Ok(n) => applied += n,
                Err(SyncError::Http { status: 403, .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(applied)
    }

    async fn backfill(&mut self, scope: &str) -> Result<usize, SyncError> {
        let mut applied = 0;
        loop {
            let (after_table, after_pk, until, done): (Option<String>, Option<String>, i64, bool) =
                self.conn.query_row(
                    "SELECT after_table, after_pk, window_until, snapshot_done FROM _sync_scopes WHERE scope = ?1",
                    [scope],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
            if done {
                break;
            }
            let after = after_table
                .as_deref()
                .and_then(oversync_protocol::TableRef::parse)
                .zip(after_pk);
            let path = SnapshotQuery {
                schema: Some(self.cfg.schema.clone()),
                after,
                limit: self.cfg.download_limit.clamp(1, 1000),
                until,
                scope: Some(scope.to_owned()),
            }
            .path();
            let page: SnapshotResponse = self.get_json(&path, "snapshot page").await?;
            let tx = SyncTx::begin(&self.conn, self.shapes.values())?;
            applied += silenced(&tx, || {
                apply_snapshot_rows(&tx, &self.shapes, &self.cfg.schema, &page, true)
            })?;
            tx.execute(
                "UPDATE _sync_scopes SET after_table = ?2, after_pk = ?3, window_until = ?4, snapshot_done = ?5
                 WHERE scope = ?1",
                params![
                    scope,
                    page.next_after_table,
                    page.next_after_pk,
                    page.window_until,
                    !page.has_more
                ],
            )?;
            tx.commit()?;
            self.progress.downloaded(page.rows.len());
        }
        // The scope's log between its snapshot and the device's cursor: entries the main stream passed before
        // the device was a member.
        let (cursor, _) = self.cursor()?;
        let mut after: i64 =
            self.conn
                .query_row("SELECT window_until FROM _sync_scopes WHERE scope = ?1", [scope], |r| {
                    r.get(0)
                })?;
        while after < cursor {
            let path = DownloadQuery {
                after,
                limit: self.cfg.download_limit,
                schema: Some(self.cfg.schema.clone()),
                include_self: true,
                until: cursor,
                scopes: true,
                scope: Some(scope.to_owned()),
                scope_event: 0,
            }
            .path();
            let page: DownloadResponse = self.get_json(&path, "download page").await?;
            applied += self.apply_replay(&page)?;
            self.progress.downloaded(page.changes.len());
            if !page.has_more || page.next_after <= after {
                break;
            }
            after = page.next_after;
        }
        self.conn
            .execute("UPDATE _sync_scopes SET state = 'held' WHERE scope = ?1", [scope])?;
        Ok(applied)
    }
}
