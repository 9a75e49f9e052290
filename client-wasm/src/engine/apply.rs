//! Download and apply (PROTOCOL.md §7.4) and hydration (§7.6), plus the row writes shared with conflict
//! resolution. Every page is one SQLite transaction with capture silenced and foreign keys deferred.

use std::collections::HashMap;
use std::rc::Rc;

use oversync_protocol::validate::DownloadQuery;
use oversync_protocol::wire::{Capabilities, DownloadResponse};
use rusqlite::{Connection, params};

use super::pace::Pacer;
use super::tx::{SyncTx, silenced, with_fk_fallback};
use super::write::{Batch, delete_row, now};
use super::{Engine, SyncError};
use crate::progress::Phase;
use crate::transport::Transport;
use crate::triggers::{TableShape, quote};
use crate::wire::read_payload;

impl<T: Transport> Engine<T> {
    /// Hydrates a new (or reinstalled) database: pages the frozen window from the current cursor and marks the
    /// database hydrated. `include_self` restores this device's own changes too and moves `next_change_id` past
    /// every scid it used before (reinstall with a kept device id).
    ///
    /// When the server advertises snapshots (§8.2) and this database has never downloaded, hydration pages the
    /// live rows instead of replaying the log, then catches up with a normal download; classic servers get the
    /// paged download.
    pub async fn hydrate(&mut self, include_self: bool) -> Result<usize, SyncError> {
        self.progress.enter(Phase::Hydrating);
        let result = self.hydrate_pages(include_self).await;
        self.progress.idle();
        result
    }

    async fn hydrate_pages(&mut self, include_self: bool) -> Result<usize, SyncError> {
        let fresh = self.cursor()?.0 == 0;
        let n = if fresh && self.server_capabilities().await?.is_some_and(|c| c.features.snapshot) {
            self.snapshot_hydrate().await?
        } else {
            self.hydration_download(include_self).await?
        };
        // Rows a re-hydration marked and neither the snapshot nor the catch-up confirmed are gone from the server.
        super::rehydrate::drop_unconfirmed(&self.conn, self.shapes.values())?;
        self.conn
            .execute("UPDATE _sync_client_info SET hydrated = 1 WHERE id = 1", [])?;
        Ok(n)
    }

    /// At the first sync of a database: every synced table is one the server syncs, when its capabilities list
    /// them (issue 34: a forgotten `serverSchema` left each change in the rejections as `unregistered_table`,
    /// silently), else a [`SyncError::Config`] naming each missing table. A database that has synced before
    /// keeps syncing its other tables when the server stops syncing one (its changes are then rejected as
    /// `unregistered_table`, listed in the rejections), so a server deploy cannot stop every device.
    pub(crate) async fn check_registered(&mut self) -> Result<(), SyncError> {
        if self.registered {
            return Ok(());
        }
        if self.status()?.last_synced.is_some() {
            self.registered = true;
            return Ok(());
        }
        let Some(registered) = self.server_capabilities().await?.and_then(|c| c.tables) else {
            self.registered = true;
            return Ok(());
        };
        let schema = &self.cfg.schema;
        let missing: Vec<String> = self
            .cfg
            .tables
            .iter()
            .filter(|t| {
                !registered
                    .iter()
                    .any(|r| r.schema.eq_ignore_ascii_case(schema) && r.table.eq_ignore_ascii_case(&t.table))
            })
            .map(|t| format!("{schema}.{}", t.table))
            .collect();
        if missing.is_empty() {
            self.registered = true;
            return Ok(());
        }
        let known: Vec<String> = registered.iter().map(|r| format!("{}.{}", r.schema, r.table)).collect();
        Err(SyncError::Config(format!(
            "the server does not sync {} (it syncs {}): check serverSchema and the server's tables",
            missing.join(", "),
            if known.is_empty() {
                "no table".to_owned()
            } else {
                known.join(", ")
            }
        )))
    }

    /// The server's capabilities (§8.1), asked once; `None` for a classic server (any answer but 200 or 401).
    pub async fn server_capabilities(&mut self) -> Result<Option<Capabilities>, SyncError> {
        if let Some(known) = &self.capabilities {
            return Ok(known.clone());
        }
        let reply = self.request("/sync/capabilities", None).await?;
        let caps = (reply.status == 200)
            .then(|| serde_json::from_slice::<Capabilities>(&reply.body).ok())
            .flatten();
        self.capabilities = Some(caps.clone());
        Ok(caps)
    }

    /// §8.2: snapshot pages with foreign keys suspended, the cursor set to the window, a catch-up download, then
    /// foreign keys back on and `next_change_id` past every scid this device logged.
    pub(super) async fn snapshot_hydrate(&mut self) -> Result<usize, SyncError> {
        self.conn.pragma_update(None, "foreign_keys", false)?;
        let result = self.snapshot_and_catch_up().await;
        let restored = self.conn.pragma_update(None, "foreign_keys", true);
        let (applied, max_own) = result?;
        restored?;
        self.conn.execute(
            "UPDATE _sync_client_info SET next_change_id = max(next_change_id, ?1 + 1) WHERE id = 1",
            [max_own],
        )?;
        Ok(applied)
    }

    /// The snapshot pages, then the cursor set to their window and the catch-up download.
    async fn snapshot_and_catch_up(&mut self) -> Result<(usize, i64), SyncError> {
        let (mut applied, max_own, until) = self.snapshot_pages().await?;
        self.conn.execute(
            "UPDATE _sync_client_info SET last_server_seq_seen = max(last_server_seq_seen, ?1), window_until = 0 WHERE id = 1",
            [until],
        )?;
        applied += self.download_loop(false).await?;
        Ok((applied, max_own))
    }

    pub(super) async fn download_loop(&mut self, include_self: bool) -> Result<usize, SyncError> {
        self.token()?;
        let scopes = self.scope_aware().await?;
        let mut applied = 0;
        // Paced like snapshot pages: a long catch-up, or a hydration from a classic server, is many pages.
        let mut pacer = Pacer::new(self.cfg.download_limit, self.cfg.page_budget_ms).resume(self.page_rows);
        loop {
            let (after, until) = self.cursor()?;
            let asked = pacer.limit();
            let path = DownloadQuery {
                after,
                limit: asked,
                schema: Some(self.cfg.schema.clone()),
                include_self,
                until,
                scopes,
                scope: None,
                scope_event: if scopes { self.scope_event()? } else { 0 },
            }
            .path();
            let page: DownloadResponse = self.get_json(&path, "download page").await?;
            // A host turn between parsing and applying: UI queries wait for one of the two, not both.
            self.transport.yield_to_host().await;
            let began = self.transport.now_ms();
            applied += self.apply_page(&page, include_self)?;
            self.progress.downloaded(page.changes.len());
            pacer.timed(page.changes.len(), asked, began, self.transport.now_ms());
            self.page_rows = Some(pacer.limit());
            if !page.has_more {
                return Ok(applied);
            }
        }
    }

    /// Applies a page in one transaction, with the foreign-key fallback ([`with_fk_fallback`]).
    fn apply_page(&mut self, page: &DownloadResponse, include_self: bool) -> Result<usize, SyncError> {
        let conn = Rc::clone(&self.conn);
        with_fk_fallback(&conn, || self.apply_page_tx(page, include_self, true))
    }

    /// A backfill's replay page (docs/sharing.md §5.3): its entries, with the cursor and memberships left alone.
    pub(super) fn apply_replay(&mut self, page: &DownloadResponse) -> Result<usize, SyncError> {
        let conn = Rc::clone(&self.conn);
        with_fk_fallback(&conn, || self.apply_page_tx(page, true, false))
    }

    /// Rows that violate a foreign key locally: `(table, rowid, parent table)`.
    pub fn fk_violations(&self) -> Result<Vec<(String, i64, String)>, SyncError> {
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or_default(), r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One page in one transaction; a page of the main stream (`stream`) also moves the cursor and applies the
    /// memberships it lists.
    fn apply_page_tx(&mut self, page: &DownloadResponse, include_self: bool, stream: bool) -> Result<usize, SyncError> {
        let me = self.source_id()?;
        let tx = SyncTx::begin(&self.conn, self.shapes.values())?;
        tx.pragma_update(None, "defer_foreign_keys", true)?;
        let applied = silenced(&tx, || {
            let applied = self.apply_entries(&tx, page, include_self, &me)?;
            // Memberships after the entries: the page was read under them (docs/sharing.md §5.3).
            if let Some(listed) = page.scopes.as_ref().filter(|_| stream) {
                super::scopes::memberships(&tx, &self.scoped, listed)?;
            }
            Ok(applied)
        })?;
        if !stream {
            tx.commit()?;
            return Ok(applied);
        }
        if let Some(event) = page.scope_event {
            tx.execute(
                "INSERT INTO _sync_scope_info (id, scope_event) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET scope_event = excluded.scope_event",
                [event],
            )?;
        }
        let window = if page.has_more { page.window_until } else { 0 };
        tx.execute(
            "UPDATE _sync_client_info SET last_server_seq_seen = max(last_server_seq_seen, ?1), window_until = ?2 WHERE id = 1",
            params![page.next_after, window],
        )?;
        tx.commit()?;
        Ok(applied)
    }

    /// A page's entries, written with capture off: rows, metadata and the deletes that cascaded.
    fn apply_entries(
        &self,
        tx: &Connection,
        page: &DownloadResponse,
        include_self: bool,
        me: &str,
    ) -> Result<usize, SyncError> {
        let now = now(tx)?;
        // Upserts and metadata in multi-row statements; a delete (which may cascade) first writes what is queued.
        // A row twice in the page is safe queued: its later entry is the newer version and is written last.
        let mut batch = Batch::new(&now);
        // The versions this page has applied so far: their metadata waits in `batch`, and the version guard
        // (§7.4 step 4, entry by entry) must see it, or a later entry of the page at an equal version (a classic
        // server logs a losing change at the winner's version, defect D1) is applied over it.
        let mut seen: HashMap<(&str, &str), i64> = HashMap::new();
        let mut applied = 0;
        let user: Option<String> =
            tx.query_row("SELECT user_id FROM _sync_client_info WHERE id = 1", [], |r| r.get(0))?;
        for (i, e) in page.changes.iter().enumerate() {
            // A shared row names its author: another member's device may carry the same id.
            if e.source_id == me && (e.author.is_none() || e.author == user) {
                if !include_self {
                    continue;
                }
                tx.execute(
                    "UPDATE _sync_client_info SET next_change_id = max(next_change_id, ?1 + 1) WHERE id = 1",
                    [e.source_change_id],
                )?;
            }
            // A server that sends a non-canonical key is broken; refuse the page rather than write odd keys.
            if !oversync_protocol::pk::is_canonical(&e.pk) {
                return Err(SyncError::Protocol(format!(
                    "entry {} has a non-canonical pk {:?}",
                    e.server_id, e.pk
                )));
            }
            let Some(shape) = self.shapes.get(&e.table).filter(|_| e.schema == self.cfg.schema) else {
                continue;
            };
            // A delete followed in this page by a newer upsert of the same row would only cascade needlessly.
            let superseded = e.deleted
                && page.changes[i + 1..]
                    .iter()
                    .any(|l| !l.deleted && l.table == e.table && l.pk == e.pk && l.server_version > e.server_version);
            let known: Option<i64> = match seen.get(&(e.table.as_str(), e.pk.as_str())) {
                Some(v) => Some(*v),
                None => tx
                    .prepare_cached("SELECT server_version FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2")?
                    .query_row([&e.table, &e.pk], |r| r.get(0))
                    .ok(),
            };
            if superseded || known.is_some_and(|v| v >= e.server_version) {
                continue;
            }
            if e.deleted {
                batch.flush(tx)?;
                delete_row(tx, shape, &e.pk)?;
            } else {
                let payload = e
                    .payload
                    .as_ref()
                    .ok_or_else(|| SyncError::Protocol(format!("entry {} has no payload object", e.server_id)))?;
                let values = read_payload(shape, &e.pk, payload.get())
                    .map_err(|err| SyncError::Protocol(format!("payload of {}: {err}", e.pk)))?;
                batch.upsert(tx, shape, values)?;
            }
            batch.meta(tx, &e.table, &e.pk, e.server_version, e.deleted)?;
            seen.insert((e.table.as_str(), e.pk.as_str()), e.server_version);
            applied += 1;
        }
        batch.flush(tx)?;
        if page.changes.iter().any(|e| e.deleted) {
            queue_cascaded_deletes(tx, self.shapes.values())?;
        }
        Ok(applied)
    }
}

/// A local `ON DELETE CASCADE` during apply removes children silently (capture is off), but the server keeps
/// them: it never cascades. Rows the server still has live (metadata says so) that are gone locally and have no
/// pending intent are queued as DELETEs, so the cascade reaches the server and every device converges. A row whose
/// change the server rejected (a delete by a reader of its scope, say) is the app's to retry or discard: queuing
/// it again would only be rejected again, at every page with a delete.
pub(super) fn queue_cascaded_deletes<'a>(
    conn: &Connection,
    shapes: impl Iterator<Item = &'a TableShape>,
) -> rusqlite::Result<usize> {
    let mut queued = 0;
    for shape in shapes {
        let key = if shape.blob_key {
            "unhex(replace(m.pk_uuid, '-', ''))".to_owned()
        } else {
            "m.pk_uuid".to_owned()
        };
        let sql = format!(
            "SELECT m.pk_uuid, m.server_version FROM _sync_row_meta m
             WHERE m.table_name = ?1 AND m.deleted = 0
               AND NOT EXISTS (SELECT 1 FROM {t} WHERE {k} = {key})
               AND NOT EXISTS (SELECT 1 FROM _sync_pending p WHERE p.table_name = m.table_name AND p.pk_uuid = m.pk_uuid)
               AND NOT EXISTS (SELECT 1 FROM _sync_rejections r WHERE r.table_name = m.table_name AND r.pk_uuid = m.pk_uuid)",
            t = quote(&shape.table),
            k = quote(&shape.key),
        );
        let gone: Vec<(String, i64)> = {
            let mut stmt = conn.prepare(&sql)?;
            stmt.query_map([&shape.table], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (pk, version) in gone {
            conn.execute(
                "UPDATE _sync_client_info SET next_change_id = next_change_id + 1 WHERE id = 1",
                [],
            )?;
            conn.execute(
                "INSERT INTO _sync_pending (table_name, pk_uuid, op, base_version, payload, change_id, queued_at)
                 VALUES (?1, ?2, 'DELETE', ?3, NULL, (SELECT next_change_id - 1 FROM _sync_client_info WHERE id = 1),
                         strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                params![shape.table, pk, version],
            )?;
            queued += 1;
        }
    }
    Ok(queued)
}
