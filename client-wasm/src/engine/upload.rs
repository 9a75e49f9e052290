//! The upload cycle (PROTOCOL.md §7.3): select eligible rows in FK order, freeze them, send in chunks, and process
//! the statuses by index in one transaction per chunk.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use oversync_protocol::wire::{ChangeStatus, ChangeUpload, RawValue, Reason, UploadRequest, UploadResponse};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::outcome::{self, Action, Effect, Requeue, RowWrite};
use super::tx::{SyncTx, silenced, with_fk_fallback};
use super::write::{delete_row, set_meta, upsert_row};
use super::{Engine, SyncError};
use crate::conflict::{Conflict, LocalIntent, ServerState};
use crate::transport::Transport;
use crate::wire::{local_to_wire, wire_to_local};

/// How often one row may be sent within one upload call.
const SENDS_PER_CYCLE: u32 = 3;

/// Attempts after which a row is parked.
const PARK_AFTER: i64 = 20;

/// Outcome counts of one upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Changes applied (or acknowledged as replays).
    pub applied: usize,
    /// Conflicts resolved.
    pub conflicts: usize,
    /// Changes the server rejected for good (dropped into the rejection list).
    pub rejected: usize,
    /// Changes kept for a later retry.
    pub retried: usize,
}

impl std::ops::AddAssign for UploadReport {
    fn add_assign(&mut self, other: Self) {
        self.applied += other.applied;
        self.conflicts += other.conflicts;
        self.rejected += other.rejected;
        self.retried += other.retried;
    }
}

/// A frozen send.
struct Frozen {
    table: String,
    pk: String,
    op: String,
    base: i64,
    payload: Option<String>,
    scid: i64,
}

type Key = (String, String);

impl<T: Transport> Engine<T> {
    /// Uploads every eligible pending row. Network and HTTP errors leave everything in place (frozen copies are
    /// re-sent exactly); rows that need a retry get a per-row backoff and are not retried within this call.
    pub async fn upload(&mut self) -> Result<UploadReport, SyncError> {
        self.token()?;
        let mut report = UploadReport::default();
        // A row acknowledged while it changed, or re-queued by a resolver, is sent again in this same cycle; a row
        // is sent at most SENDS_PER_CYCLE times per call, so a contested row cannot keep the cycle busy.
        let mut sends: HashMap<Key, u32> = HashMap::new();
        loop {
            let done: HashSet<Key> = sends
                .iter()
                .filter(|(_, n)| **n >= SENDS_PER_CYCLE)
                .map(|(k, _)| k.clone())
                .collect();
            let batch = self.next_batch(&done)?;
            if batch.is_empty() {
                return Ok(report);
            }
            let frozen = self.freeze(&batch)?;
            let changes = frozen.iter().map(|f| self.change(f)).collect::<Result<Vec<_>, _>>()?;
            let (cursor, _) = self.cursor()?;
            let body = serde_json::to_vec(&UploadRequest {
                last_server_seq_seen: cursor,
                changes: Some(changes),
            })
            .map_err(|e| SyncError::Protocol(e.to_string()))?;
            let reply = self.request("/sync/upload", Some(&body)).await?;
            match reply.status {
                200 => {}
                413 if self.chunk > 1 => {
                    self.chunk /= 2;
                    continue;
                }
                _ => return Err(SyncError::http(&reply)),
            }
            let resp: UploadResponse = serde_json::from_slice(&reply.body)
                .map_err(|e| SyncError::not_json("upload response", &reply.body, e))?;
            if resp.statuses.len() != frozen.len() {
                return Err(SyncError::Protocol(format!(
                    "{} statuses for {} changes",
                    resp.statuses.len(),
                    frozen.len()
                )));
            }
            if let Some(s) = resp.statuses.iter().find(|s| s.reason() == Some(Reason::BatchTooLarge))
                && frozen.len() > 1
            {
                // Halve what was sent; if the server said its limit, go straight to it.
                let halved = (frozen.len() / 2).max(1);
                self.chunk = s.batch_limit().filter(|&m| m > 0 && m < frozen.len()).unwrap_or(halved);
                continue;
            }
            self.process_with_fk_fallback(&frozen, &resp.statuses, &mut report)?;
            self.progress.uploaded(frozen.len());
            for key in batch {
                *sends.entry(key).or_default() += 1;
            }
        }
    }

    /// Eligible rows in apply order: upserts parent-first, then deletes child-first, ties in capture order.
    fn next_batch(&self, attempted: &HashSet<Key>) -> Result<Vec<Key>, SyncError> {
        crate::capture::fold(&self.conn)?;
        let mut stmt = self.conn.prepare(
            "SELECT table_name, pk_uuid, COALESCE(sent_op, op), change_id FROM _sync_pending
             WHERE parked = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        )?;
        let mut rows: Vec<(bool, i64, i64, Key)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            // Rows of tables no longer configured stay queued but are not sent (their shape is unknown).
            .filter(|(t, pk, _, _)| self.shapes.contains_key(t) && !attempted.contains(&(t.clone(), pk.clone())))
            .map(|(t, pk, op, queued)| {
                let rank = self.rank.get(&t).map_or(i64::MAX, |&r| r as i64);
                let delete = op == "DELETE";
                (delete, if delete { -rank } else { rank }, queued, (t, pk))
            })
            .collect();
        rows.sort();
        Ok(rows.into_iter().take(self.chunk).map(|r| r.3).collect())
    }

    /// Copies the current intent into the `sent_*` columns of rows without a frozen copy, in one transaction, and
    /// returns what to send.
    fn freeze(&mut self, batch: &[Key]) -> Result<Vec<Frozen>, SyncError> {
        let tx = SyncTx::begin(&self.conn, self.shapes.values())?;
        let mut out = Vec::with_capacity(batch.len());
        for (table, pk) in batch {
            tx.execute(
                "UPDATE _sync_pending SET sent_change_id = change_id, sent_op = op, sent_base = base_version, sent_payload = payload
                 WHERE table_name = ?1 AND pk_uuid = ?2 AND sent_change_id IS NULL",
                [table, pk],
            )?;
            let f = tx.query_row(
                "SELECT sent_op, sent_base, sent_payload, sent_change_id FROM _sync_pending WHERE table_name = ?1 AND pk_uuid = ?2",
                [table, pk],
                |r| Ok(Frozen { table: table.clone(), pk: pk.clone(), op: r.get(0)?, base: r.get(1)?, payload: r.get(2)?, scid: r.get(3)? }),
            )?;
            out.push(f);
        }
        tx.commit()?;
        Ok(out)
    }

    fn change(&self, f: &Frozen) -> Result<ChangeUpload, SyncError> {
        let shape = &self.shapes[&f.table];
        let payload = match (&f.payload, f.op.as_str()) {
            (Some(p), op) if op != "DELETE" => {
                let wire = local_to_wire(shape, p).map_err(SyncError::Protocol)?;
                Some(
                    RawValue::from_string(Value::Object(wire).to_string())
                        .map_err(|e| SyncError::Protocol(e.to_string()))?,
                )
            }
            _ => None,
        };
        Ok(ChangeUpload {
            source_change_id: f.scid,
            schema: self.cfg.schema.clone(),
            table: f.table.clone(),
            op: f.op.clone(),
            pk: f.pk.clone(),
            server_version: f.base,
            payload,
        })
    }

    /// [`Self::process`], retried with foreign keys off if adopting a server row would violate one (a child the
    /// server keeps although another device deleted its parent; see `apply_page`).
    fn process_with_fk_fallback(
        &mut self,
        frozen: &[Frozen],
        statuses: &[ChangeStatus],
        report: &mut UploadReport,
    ) -> Result<(), SyncError> {
        let conn = Rc::clone(&self.conn);
        let conflicts_before = self.conflicts.len();
        *report += with_fk_fallback(&conn, || {
            // From scratch on the second run: the first one's conflicts were rolled back with it.
            self.conflicts.truncate(conflicts_before);
            let mut attempt = UploadReport::default();
            self.process(frozen, statuses, &mut attempt)?;
            Ok(attempt)
        })?;
        Ok(())
    }

    /// Applies the statuses of one chunk, by index, in one transaction.
    fn process(
        &mut self,
        frozen: &[Frozen],
        statuses: &[ChangeStatus],
        report: &mut UploadReport,
    ) -> Result<(), SyncError> {
        let Self {
            conn,
            cfg,
            shapes,
            conflicts,
            ..
        } = self;
        let mut ctx = ConflictCtx {
            resolver: &cfg.resolver,
            shapes,
            conflicts,
        };
        // Writes made while the request was out are intents of their own: the transaction settles what they hold
        // first.
        let mut tx = SyncTx::begin(conn, ctx.shapes.values())?;
        for (f, s) in frozen.iter().zip(statuses) {
            // Each status under its own savepoint: a row whose outcome cannot be written locally (a constraint,
            // a malformed server row) backs off alone instead of failing the whole chunk every cycle.
            let sp = tx.savepoint()?;
            let mut one = UploadReport::default();
            match handle_status(&sp, &mut ctx, f, s, &mut one) {
                Ok(()) => {
                    sp.commit()?;
                    *report += one;
                }
                Err(SyncError::Storage(e)) => {
                    drop(sp);
                    back_off(&tx, &f.table, &f.pk, &format!("local: {e}"))?;
                    report.retried += 1;
                }
                Err(other) => return Err(other),
            }
        }
        // Adopting a server tombstone may have cascaded locally.
        super::apply::queue_cascaded_deletes(&tx, ctx.shapes.values())?;
        tx.commit()?;
        Ok(())
    }
}

/// One status of §7.3 ([`outcome::decide`]), written through `conn` (a savepoint of the response transaction).
fn handle_status(
    conn: &Connection,
    ctx: &mut ConflictCtx<'_>,
    f: &Frozen,
    s: &ChangeStatus,
    report: &mut UploadReport,
) -> Result<(), SyncError> {
    let current: Option<(i64, String, Option<String>, i64)> = conn
        .query_row(
            "SELECT change_id, op, payload, base_version FROM _sync_pending WHERE table_name = ?1 AND pk_uuid = ?2",
            [&f.table, &f.pk],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let action = outcome::decide(s, current.as_ref().map(|c| c.0), f.scid, &f.op);
    let unchanged = current.as_ref().is_some_and(|c| c.0 == f.scid);
    match action {
        Action::Nothing => {}
        Action::Applied { version, delete } => {
            report.applied += 1;
            // A classic server answers a replay without its version (defect D5). An applied upsert was applied at
            // its base + 1 (§6.4): without that version the row's next edit would be sent on the old base and
            // conflict with the device's own write, and the resolver could drop the edit.
            let version = version.or((!delete).then_some(f.base + 1));
            match version {
                Some(v) => {
                    let known = meta_version(conn, &f.table, &f.pk)?;
                    set_meta(conn, &f.table, &f.pk, known.map_or(v, |k| k.max(v)), delete)?;
                }
                // A DELETE answered without a version deleted nothing the server knows (an unknown row, or one in a
                // scope out of the user's sight): the row's metadata goes, so that the row, should it reach this
                // device again (the user rejoins its scope, say), is applied at whatever version it has; a
                // tombstone at the old base would make the version guard skip it for good.
                None if delete => {
                    conn.execute(
                        "DELETE FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2",
                        [&f.table, &f.pk],
                    )?;
                }
                None => {}
            }
            settle(conn, f, unchanged, version)?;
        }
        Action::Conflict => {
            let (_, op, payload, base) = current.expect("a conflict is decided only for a pending row");
            let local = LocalIntent {
                payload: payload
                    .as_deref()
                    .and_then(|p| local_to_wire(&ctx.shapes[&f.table], p).ok()),
                op,
                base_version: base,
            };
            match ctx.resolve(conn, f, s, local)? {
                true => report.conflicts += 1,
                false => report.retried += 1,
            }
        }
        Action::KeepNewer => {
            report.retried += 1;
            settle(conn, f, false, None)?;
        }
        Action::Reject { reason } => {
            report.rejected += 1;
            // The id is the rejected change's scid (or past every id a database from before kept): ids never
            // repeat, so an app holding one cannot retry or discard a later rejection by mistake.
            conn.execute(
                "INSERT INTO _sync_rejections (id, table_name, pk_uuid, reason, message)
                 VALUES (max(?5, (SELECT coalesce(max(id), 0) + 1 FROM _sync_rejections)), ?1, ?2, ?3, ?4)",
                params![f.table, f.pk, reason, s.message, f.scid],
            )?;
            settle(conn, f, unchanged, None)?;
        }
        Action::ResendAsNew => {
            report.retried += 1;
            conn.execute(
                "DELETE FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2",
                [&f.table, &f.pk],
            )?;
            conn.execute(
                "UPDATE _sync_pending SET base_version = 0, sent_change_id = NULL, sent_op = NULL, sent_base = NULL, sent_payload = NULL
                 WHERE table_name = ?1 AND pk_uuid = ?2",
                [&f.table, &f.pk],
            )?;
        }
        Action::BackOff(error) => {
            report.retried += 1;
            back_off(conn, &f.table, &f.pk, &error)?;
        }
    }
    Ok(())
}

/// What conflict resolution needs from the engine, borrowed beside the open transaction.
struct ConflictCtx<'a> {
    resolver: &'a crate::conflict::Resolver,
    shapes: &'a std::collections::BTreeMap<String, crate::triggers::TableShape>,
    conflicts: &'a mut Vec<Conflict>,
}

impl ConflictCtx<'_> {
    /// §7.5 inside the response transaction. Returns false when the resolver failed (the row backs off).
    fn resolve(
        &mut self,
        tx: &Connection,
        f: &Frozen,
        s: &ChangeStatus,
        local: LocalIntent,
    ) -> Result<bool, SyncError> {
        let Some(row) = s.server_row.as_ref() else {
            back_off(tx, &f.table, &f.pk, "conflict without server_row")?;
            return Ok(false);
        };
        let server = ServerState {
            deleted: row.deleted,
            payload: row
                .payload
                .as_ref()
                .and_then(|p| serde_json::from_str::<Map<String, Value>>(p.get()).ok()),
            server_version: row.server_version,
        };
        let resolution = match self.resolver.resolve(&f.table, &f.pk, &server, &local) {
            Ok(r) => r,
            Err(e) => {
                back_off(tx, &f.table, &f.pk, &format!("resolver: {e}"))?;
                return Ok(false);
            }
        };
        let shape = &self.shapes[&f.table];
        let (row, requeue_as) = match outcome::conflict_effect(&server, &local, &resolution) {
            Effect::BackOff(why) => {
                back_off(tx, &f.table, &f.pk, why)?;
                return Ok(false);
            }
            Effect::Write { row, requeue } => (row, requeue),
        };
        silenced(tx, || {
            set_meta(tx, &f.table, &f.pk, server.server_version, server.deleted)?;
            match row {
                RowWrite::Upsert(p) => upsert_row(tx, shape, &f.pk, p)?,
                RowWrite::Delete => delete_row(tx, shape, &f.pk)?,
            }
            match requeue_as {
                Requeue::Drop => {
                    tx.execute(
                        "DELETE FROM _sync_pending WHERE table_name = ?1 AND pk_uuid = ?2",
                        [&f.table, &f.pk],
                    )?;
                }
                Requeue::Send { op, payload } => {
                    requeue(
                        tx,
                        f,
                        op,
                        server.server_version,
                        payload.map(|p| wire_to_local(shape, p)),
                    )?;
                }
            }
            Ok(())
        })?;
        self.conflicts.push(Conflict {
            table: f.table.clone(),
            pk: f.pk.clone(),
            server,
            local,
            resolution,
        });
        Ok(true)
    }
}

fn meta_version(conn: &Connection, table: &str, pk: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT server_version FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2",
        [table, pk],
        |r| r.get(0),
    )
    .optional()
}

/// Acknowledged: an unchanged row is done; a row written since the freeze stays, rebased on `version` if given.
fn settle(conn: &Connection, f: &Frozen, unchanged: bool, version: Option<i64>) -> rusqlite::Result<()> {
    if unchanged {
        conn.execute(
            "DELETE FROM _sync_pending WHERE table_name = ?1 AND pk_uuid = ?2",
            [&f.table, &f.pk],
        )?;
    } else {
        conn.execute(
            "UPDATE _sync_pending SET base_version = COALESCE(?3, base_version), sent_change_id = NULL, sent_op = NULL,
               sent_base = NULL, sent_payload = NULL WHERE table_name = ?1 AND pk_uuid = ?2",
            params![f.table, f.pk, version],
        )?;
    }
    Ok(())
}

/// Re-queues a row with a fresh scid against `base` (client wins, merge).
fn requeue(conn: &Connection, f: &Frozen, op: &str, base: i64, payload: Option<String>) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE _sync_client_info SET next_change_id = next_change_id + 1 WHERE id = 1",
        [],
    )?;
    conn.execute(
        "UPDATE _sync_pending SET op = ?3, base_version = ?4, payload = COALESCE(?5, payload),
           change_id = (SELECT next_change_id - 1 FROM _sync_client_info WHERE id = 1),
           sent_change_id = NULL, sent_op = NULL, sent_base = NULL, sent_payload = NULL, attempts = 0
         WHERE table_name = ?1 AND pk_uuid = ?2",
        params![f.table, f.pk, op, base, payload],
    )?;
    if op == "DELETE" {
        conn.execute(
            "UPDATE _sync_pending SET payload = NULL WHERE table_name = ?1 AND pk_uuid = ?2",
            [&f.table, &f.pk],
        )?;
    }
    Ok(())
}

/// Keep and retry later: exponential backoff from 1 s to 60 s; parked after [`PARK_AFTER`] attempts.
fn back_off(conn: &Connection, table: &str, pk: &str, error: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE _sync_pending SET attempts = attempts + 1, last_error = ?3,
           next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || min(60, 1 << min(attempts, 6)) || ' seconds'),
           parked = (attempts + 1 >= ?4), sent_change_id = NULL, sent_op = NULL, sent_base = NULL, sent_payload = NULL
         WHERE table_name = ?1 AND pk_uuid = ?2",
        params![table, pk, error, PARK_AFTER],
    )?;
    Ok(())
}
