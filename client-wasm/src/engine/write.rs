//! Row writes shared by download apply, conflict resolution and snapshot hydration: upserts that never delete
//! (so never cascade), row deletes and metadata. Download and snapshot pages are written in multi-row
//! statements ([`Batch`]): one statement per chunk of rows instead of one per row, which saves the per-statement
//! work and the statement journal every write to a table with triggers opens.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use oversync_protocol::wire::SnapshotResponse;
use rusqlite::OptionalExtension;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, params, params_from_iter};
use serde_json::{Map, Value};

use super::SyncError;
use super::tx::{SyncTx, silenced};
use crate::triggers::{TableShape, quote};
use crate::wire::{key_value, read_payload, row_values};

/// Rows per multi-row statement (bounded further by SQLite's 32766 bound parameters).
const CHUNK_ROWS: usize = 64;

/// `INSERT … ON CONFLICT (key) DO UPDATE` over the payload keys that are local columns (never `INSERT OR
/// REPLACE`, which would delete first and cascade). Unknown keys are ignored; missing columns keep their values.
pub(super) fn upsert_row(
    conn: &Connection,
    shape: &TableShape,
    pk: &str,
    payload: &Map<String, Value>,
) -> rusqlite::Result<()> {
    let (present, values) = row_values(shape, pk, payload);
    conn.prepare_cached(&upsert_sql(shape, present, 1))?
        .execute(params_from_iter(values))?;
    Ok(())
}

type UpsertKey = (u64, Vec<usize>, usize);

thread_local! {
    static UPSERT_SQL: RefCell<HashMap<UpsertKey, Rc<str>>> = RefCell::default();
}

/// The statement text depends only on the shape (table, key, columns), which columns the payload has and the
/// number of rows: built once per combination (a rebuilt table with other columns gets other statements).
fn upsert_sql(shape: &TableShape, present: Vec<usize>, rows: usize) -> Rc<str> {
    UPSERT_SQL.with(|cache| {
        let key = (shape_signature(shape), present, rows);
        if let Some(sql) = cache.borrow().get(&key) {
            return Rc::clone(sql);
        }
        let sql: Rc<str> = build_upsert_sql(shape, &key.1, rows).into();
        cache.borrow_mut().insert(key, Rc::clone(&sql));
        sql
    })
}

fn shape_signature(shape: &TableShape) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&shape.table, &shape.key, shape.blob_key).hash(&mut h);
    for c in &shape.columns {
        (&c.name, c.blob).hash(&mut h);
    }
    h.finish()
}

fn build_upsert_sql(shape: &TableShape, present: &[usize], rows: usize) -> String {
    let mut names = vec![quote(&shape.key)];
    names.extend(present.iter().map(|&i| quote(&shape.columns[i].name)));
    let tuple = format!("({})", vec!["?"; names.len()].join(", "));
    let updates: Vec<String> = names[1..].iter().map(|n| format!("{n} = excluded.{n}")).collect();
    let conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) {conflict}",
        quote(&shape.table),
        names.join(", "),
        vec![tuple; rows].join(", "),
        quote(&shape.key)
    )
}

/// Deletes a local row by key (local cascades happen; capture is silenced by the caller).
pub(super) fn delete_row(conn: &Connection, shape: &TableShape, pk: &str) -> rusqlite::Result<()> {
    let sql = format!("DELETE FROM {} WHERE {} = ?1", quote(&shape.table), quote(&shape.key));
    conn.execute(&sql, [key_value(shape, pk)])?;
    Ok(())
}

const SET_META: &str = "INSERT INTO _sync_row_meta (table_name, pk_uuid, server_version, deleted, updated_at) VALUES ";
const SET_META_CONFLICT: &str = " ON CONFLICT (table_name, pk_uuid) DO UPDATE SET server_version = \
    excluded.server_version, deleted = excluded.deleted, updated_at = excluded.updated_at";

/// Sets a row's metadata.
pub(super) fn set_meta(conn: &Connection, table: &str, pk: &str, version: i64, deleted: bool) -> rusqlite::Result<()> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!("{SET_META}(?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')){SET_META_CONFLICT}")
    });
    conn.prepare_cached(sql)?
        .execute(params![table, pk, version, deleted])?;
    Ok(())
}

/// Rows of one table with the same payload columns, waiting to be written in one statement.
struct Chunk<'a> {
    shape: &'a TableShape,
    present: Vec<usize>,
    values: Vec<SqlValue>,
    rows: usize,
}

impl Chunk<'_> {
    fn flush(self, conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached(&upsert_sql(self.shape, self.present, self.rows))?
            .execute(params_from_iter(self.values))?;
        Ok(())
    }
}

/// Upserts and metadata of one page, written in multi-row statements: consecutive rows of one table with the
/// same payload columns share a statement, and metadata goes in chunks. A statement on a table with triggers
/// opens a statement journal that copies every page it touches, so one statement per row costs most of an
/// apply (and more with larger pages). Rows are written in order; flush before a write that must follow them.
pub(super) struct Batch<'a> {
    now: &'a str,
    chunk: Option<Chunk<'a>>,
    meta: Vec<ToSqlOutput<'a>>,
}

impl<'a> Batch<'a> {
    /// `now` is the metadata's `updated_at` for every row of the batch.
    pub fn new(now: &'a str) -> Self {
        Self {
            now,
            chunk: None,
            meta: Vec::with_capacity(5 * CHUNK_ROWS),
        }
    }

    /// Queues an upsert of `values` (from [`read_payload`]) into `shape`'s table.
    pub fn upsert(
        &mut self,
        conn: &Connection,
        shape: &'a TableShape,
        (present, values): (Vec<usize>, Vec<SqlValue>),
    ) -> rusqlite::Result<()> {
        let limit = CHUNK_ROWS.min(32_000 / values.len());
        match &mut self.chunk {
            Some(c) if std::ptr::eq(c.shape, shape) && c.present == present && c.rows < limit => {
                c.values.extend(values);
                c.rows += 1;
            }
            _ => {
                if let Some(full) = self.chunk.take() {
                    full.flush(conn)?;
                }
                self.chunk = Some(Chunk {
                    shape,
                    present,
                    values,
                    rows: 1,
                });
            }
        }
        Ok(())
    }

    /// Queues a row's metadata.
    pub fn meta(
        &mut self,
        conn: &Connection,
        table: &'a str,
        pk: &'a str,
        version: i64,
        deleted: bool,
    ) -> rusqlite::Result<()> {
        self.meta.extend([
            text(table),
            text(pk),
            ToSqlOutput::Owned(SqlValue::Integer(version)),
            ToSqlOutput::Owned(SqlValue::Integer(deleted.into())),
            text(self.now),
        ]);
        if self.meta.len() == 5 * CHUNK_ROWS {
            flush_meta(conn, &self.meta)?;
            self.meta.clear();
        }
        Ok(())
    }

    /// Writes everything queued.
    pub fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if let Some(c) = self.chunk.take() {
            c.flush(conn)?;
        }
        flush_meta(conn, &self.meta)?;
        self.meta.clear();
        Ok(())
    }
}

/// The time as metadata's `updated_at` stores it.
pub(super) fn now(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| r.get(0))
}

/// One snapshot page in one transaction, capture silenced. Every page moves the scid counter past what this
/// device logged, so an interrupted hydration never leaves it reusing logged scids; the cursor moves only after
/// the last page, so an interrupted hydration starts over from the snapshot (its pages are idempotent) rather
/// than skipping rows.
pub(super) fn apply_snapshot_page(
    conn: &Connection,
    shapes: &BTreeMap<String, TableShape>,
    schema: &str,
    page: &SnapshotResponse,
    guard: bool,
) -> Result<usize, SyncError> {
    let tx = SyncTx::begin(conn, shapes.values())?;
    let applied = silenced(&tx, || apply_snapshot_rows(&tx, shapes, schema, page, guard))?;
    tx.commit()?;
    Ok(applied)
}

/// A snapshot page's rows (capture silenced by the caller), and `next_change_id` past the page's own scids.
/// With `guard` a row is skipped where the device already has its version or a newer one (a backfill, whose rows
/// the main stream may have brought first; a re-hydration, whose rows the device mostly has, some with local edits).
pub(super) fn apply_snapshot_rows(
    tx: &Connection,
    shapes: &BTreeMap<String, TableShape>,
    schema: &str,
    page: &SnapshotResponse,
    guard: bool,
) -> Result<usize, SyncError> {
    let now = now(tx)?;
    let mut batch = Batch::new(&now);
    let mut applied = 0;
    // Looked up row by row only when something is pending (a hydration's pages are thousands of rows).
    let any_pending: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM _sync_pending)")?
        .query_row([], |r| r.get(0))?;
    for row in &page.rows {
        let Some(shape) = shapes.get(&row.table).filter(|_| row.schema == schema) else {
            continue;
        };
        // A row with a pending change is left to its upload: a snapshot (unlike a download) carries the device's
        // own writes, so it may hold the server's copy of an earlier send of this very row, and the upload that
        // acknowledges the pending change would then leave that older copy in the row.
        let pending = any_pending
            && tx
                .prepare_cached("SELECT 1 FROM _sync_pending WHERE table_name = ?1 AND pk_uuid = ?2")?
                .exists([&row.table, &row.pk])?;
        let known = || -> rusqlite::Result<Option<i64>> {
            tx.prepare_cached("SELECT server_version FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2")?
                .query_row([&row.table, &row.pk], |r| r.get(0))
                .optional()
        };
        if pending || (guard && known()?.is_some_and(|v| v >= row.server_version)) {
            // Known as it is: a re-hydration's row is confirmed (crate::engine::rehydrate), and a local edit of it
            // stays for its upload to settle.
            tx.prepare_cached(
                "UPDATE _sync_row_meta SET updated_at = ?3 WHERE table_name = ?1 AND pk_uuid = ?2 AND updated_at = ''",
            )?
            .execute([&row.table, &row.pk, &now])?;
            continue;
        }
        let values = read_payload(shape, &row.pk, row.payload.get())
            .map_err(|e| SyncError::Protocol(format!("snapshot row {}: {e}", row.pk)))?;
        batch.upsert(tx, shape, values)?;
        batch.meta(tx, &row.table, &row.pk, row.server_version, false)?;
        applied += 1;
    }
    batch.flush(tx)?;
    tx.execute(
        "UPDATE _sync_client_info SET next_change_id = max(next_change_id, ?1 + 1) WHERE id = 1",
        [page.max_own_source_change_id],
    )?;
    Ok(applied)
}

fn text(s: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

/// Metadata rows (five values each) in one statement.
fn flush_meta(conn: &Connection, values: &[ToSqlOutput]) -> rusqlite::Result<()> {
    let rows = values.len() / 5;
    if rows == 0 {
        return Ok(());
    }
    let sql = format!(
        "{SET_META}{}{SET_META_CONFLICT}",
        vec!["(?, ?, ?, ?, ?)"; rows].join(", ")
    );
    conn.prepare_cached(&sql)?.execute(params_from_iter(values))?;
    Ok(())
}
