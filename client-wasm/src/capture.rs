//! Folding the capture log into the pending queue (PROTOCOL.md §7.2's table, applied in capture order).
//!
//! The triggers only append (table, key, op) to `_sync_capture` (`triggers` module docs). [`fold`] turns the log
//! into `_sync_pending`'s one intent per key, in one savepoint: each key's writes are stepped through [`step`] in
//! the order they were made, starting from its pending intent; every key with an intent left gets a fresh scid
//! from the persisted counter (keys in the order of their last write, so scids follow capture order) and its
//! retry state reset, as a write always did; a key whose intent disappears (an insert deleted before it was
//! ever sent) loses its pending row. Then the log is emptied.
//!
//! Why this is the same as coalescing in the trigger: §7.2's rules read only the pending intent, which only the
//! fold and engine transactions write, and whether the server knows the row (metadata), which only engine
//! transactions change. Engine transactions fold first, so both are, at fold time, what they were at each
//! write. The log and the fold's writes commit or roll back together, so a crash loses nothing and folds
//! nothing twice.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rusqlite::{Connection, params};

use crate::triggers::{CAPTURED_DELETE, CAPTURED_INSERT, CAPTURED_UPDATE, LAZY_BASE};

/// A pending intent's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `INSERT`
    Insert,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "INSERT" => Some(Self::Insert),
            "UPDATE" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    fn captured(code: i64) -> Option<Self> {
        match code {
            CAPTURED_INSERT => Some(Self::Insert),
            CAPTURED_UPDATE => Some(Self::Update),
            CAPTURED_DELETE => Some(Self::Delete),
            _ => None,
        }
    }
}

/// What §7.2's rules read of a pending intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// The operation to send.
    pub op: Op,
    /// `base_version` ([`LAZY_BASE`] while deferred).
    pub base: i64,
    /// It has a frozen, unacknowledged send.
    pub sent: bool,
}

/// One local write on a key's intent (§7.2's table). `known`: the server has the row (it has metadata).
pub fn step(before: Option<Intent>, write: Op, known: bool) -> Option<Intent> {
    let fresh = |op| {
        Some(Intent {
            op,
            base: LAZY_BASE,
            sent: false,
        })
    };
    match (before, write) {
        (None, Op::Delete) => known.then_some(Intent {
            op: Op::Delete,
            base: LAZY_BASE,
            sent: false,
        }),
        (None, op) => fresh(op),
        // The row still exists on the server: re-creating it is an upsert at its version.
        (Some(i), Op::Insert) if i.op == Op::Delete => Some(Intent { op: Op::Update, ..i }),
        (Some(i), Op::Insert | Op::Update) => Some(i),
        // Never synced, nothing to tell: a deferred base is 0 exactly when the server has no metadata.
        (Some(i), Op::Delete) if i.op == Op::Insert && !i.sent && (i.base == 0 || (i.base == LAZY_BASE && !known)) => {
            None
        }
        (Some(i), Op::Delete) => Some(Intent { op: Op::Delete, ..i }),
    }
}

/// One key's state during a fold.
struct Folding {
    /// Its pending row before the fold existed.
    had_row: bool,
    intent: Option<Intent>,
    known: bool,
    /// The log position of its last write.
    last: i64,
}

/// Folds the capture log into `_sync_pending` (module docs); returns how many writes it folded. Cheap when the
/// log is empty. Works inside or outside a transaction.
pub fn fold(conn: &Connection) -> rusqlite::Result<usize> {
    let empty: bool = conn
        .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM _sync_capture)")?
        .query_row([], |r| r.get(0))?;
    if empty {
        return Ok(0);
    }
    conn.execute_batch("SAVEPOINT oversync_fold")?;
    let folded = fold_log(conn);
    match folded {
        Ok(_) => conn.execute_batch("RELEASE oversync_fold")?,
        Err(_) => conn.execute_batch("ROLLBACK TO oversync_fold; RELEASE oversync_fold")?,
    }
    folded
}

fn fold_log(conn: &Connection) -> rusqlite::Result<usize> {
    // A key's scid is the counter plus its last write's offset in the log: in capture order and unique (gaps are
    // allowed, reuse is not) without sorting the keys.
    let (first, low, high): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT next_change_id, (SELECT min(seq) FROM _sync_capture), (SELECT max(seq) FROM _sync_capture)
             FROM _sync_client_info WHERE id = 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let base = first - low;
    // Each key stepped write by write from its intent and metadata as they were before the fold. (A set-based
    // INSERT … SELECT for keys written once costs more here: grouping the log by key sorts it.)
    let mut keys: HashMap<(String, String), Folding> = HashMap::new();
    let mut writes = 0;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT c.seq, c.table_name, c.pk_uuid, c.op, p.op, p.base_version, p.sent_change_id IS NOT NULL,
                    EXISTS (SELECT 1 FROM _sync_row_meta m WHERE m.table_name = c.table_name AND m.pk_uuid = c.pk_uuid)
             FROM _sync_capture c LEFT JOIN _sync_pending p ON p.table_name = c.table_name AND p.pk_uuid = c.pk_uuid
             ORDER BY c.seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            writes += 1;
            let seq: i64 = r.get(0)?;
            let Some(write) = Op::captured(r.get(3)?) else {
                continue;
            };
            let key = (r.get::<_, String>(1)?, r.get::<_, String>(2)?);
            let state = match keys.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let op: Option<String> = r.get(4)?;
                    let intent = match op.as_deref().and_then(Op::parse) {
                        Some(op) => Some(Intent {
                            op,
                            base: r.get(5)?,
                            sent: r.get(6)?,
                        }),
                        None => None,
                    };
                    e.insert(Folding {
                        had_row: intent.is_some(),
                        intent,
                        known: r.get(7)?,
                        last: seq,
                    })
                }
            };
            state.intent = step(state.intent, write, state.known);
            state.last = seq;
        }
    }
    {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO _sync_pending (table_name, pk_uuid, op, base_version, payload, change_id, queued_at)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5, datetime('now'))
             ON CONFLICT (table_name, pk_uuid) DO UPDATE SET op = excluded.op, base_version = excluded.base_version,
               payload = NULL, change_id = excluded.change_id, queued_at = excluded.queued_at, attempts = 0,
               parked = 0, next_attempt_at = NULL, last_error = NULL",
        )?;
        let mut remove = conn.prepare_cached("DELETE FROM _sync_pending WHERE table_name = ?1 AND pk_uuid = ?2")?;
        for ((table, pk), f) in &keys {
            match f.intent {
                Some(i) => {
                    upsert.execute(params![table, pk, i.op.as_str(), i.base, base + f.last])?;
                }
                None if f.had_row => {
                    remove.execute(params![table, pk])?;
                }
                None => {}
            }
        }
    }
    conn.prepare_cached("UPDATE _sync_client_info SET next_change_id = ?1 WHERE id = 1")?
        .execute([base + high + 1])?;
    conn.prepare_cached("DELETE FROM _sync_capture")?.execute([])?;
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Op = Op::Insert;
    const U: Op = Op::Update;
    const D: Op = Op::Delete;

    fn intent(op: Op, base: i64, sent: bool) -> Option<Intent> {
        Some(Intent { op, base, sent })
    }

    /// PROTOCOL.md §7.2's table, row by row.
    #[test]
    fn each_write_on_each_intent_follows_the_table() {
        let lazy = LAZY_BASE;
        // none + INSERT / UPDATE / DELETE
        assert_eq!(step(None, I, false), intent(I, lazy, false));
        assert_eq!(step(None, U, true), intent(U, lazy, false));
        assert_eq!(step(None, D, true), intent(D, lazy, false));
        assert_eq!(
            step(None, D, false),
            None,
            "a row the server never knew: nothing to tell"
        );
        // INSERT + UPDATE / INSERT keeps INSERT and its base.
        assert_eq!(step(intent(I, 4, false), U, true), intent(I, 4, false));
        assert_eq!(step(intent(I, lazy, true), I, false), intent(I, lazy, true));
        // INSERT at base 0, never sent + DELETE: removed; a deferred base is 0 when the server has no metadata.
        assert_eq!(step(intent(I, 0, false), D, true), None);
        assert_eq!(step(intent(I, lazy, false), D, false), None);
        // INSERT otherwise + DELETE: DELETE, base kept.
        assert_eq!(step(intent(I, lazy, false), D, true), intent(D, lazy, false));
        assert_eq!(step(intent(I, 0, true), D, false), intent(D, 0, true));
        assert_eq!(step(intent(I, 7, false), D, true), intent(D, 7, false));
        // UPDATE + UPDATE / DELETE
        assert_eq!(step(intent(U, 3, false), U, true), intent(U, 3, false));
        assert_eq!(step(intent(U, 3, true), D, true), intent(D, 3, true));
        // DELETE + INSERT: an upsert at the server's version.
        assert_eq!(step(intent(D, 5, false), I, true), intent(U, 5, false));
    }

    #[test]
    fn a_sequence_folds_like_its_writes_one_by_one() {
        // insert, update, delete of a new row: nothing; delete and re-insert of a known row: an update.
        let seq = |start, ops: &[Op], known| ops.iter().fold(start, |i, &w| step(i, w, known));
        assert_eq!(seq(None, &[I, U, D], false), None);
        assert_eq!(seq(None, &[I, U, D, I], false), intent(I, LAZY_BASE, false));
        assert_eq!(seq(None, &[D, I, U], true), intent(U, LAZY_BASE, false));
        assert_eq!(seq(intent(U, 2, true), &[D, I], true), intent(U, 2, true));
    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        crate::schema::create(&conn, "device").unwrap();
        conn.execute_batch("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
            .unwrap();
        let shape = crate::triggers::TableShape {
            table: "notes".into(),
            key: "id".into(),
            blob_key: false,
            columns: crate::schema::columns(&conn, "notes").unwrap(),
        };
        conn.execute_batch(&shape.triggers_sql()).unwrap();
        conn
    }

    fn key(n: u8) -> String {
        format!("00000000-0000-4000-8000-0000000000{n:02x}")
    }

    fn queue(conn: &Connection) -> Vec<(String, String, i64, i64)> {
        let mut s = conn
            .prepare("SELECT pk_uuid, op, base_version, change_id FROM _sync_pending ORDER BY change_id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_log_folds_into_one_intent_per_key_with_scids_in_capture_order() {
        let conn = db();
        conn.execute_batch(&format!(
            "INSERT INTO notes VALUES ('{a}', 'a'); INSERT INTO notes VALUES ('{b}', 'b');
             INSERT INTO notes VALUES ('{c}', 'c'); UPDATE notes SET body = 'a2' WHERE id = '{a}';
             DELETE FROM notes WHERE id = '{c}';",
            a = key(1),
            b = key(2),
            c = key(3)
        ))
        .unwrap();
        assert_eq!(fold(&conn).unwrap(), 5);
        // c was inserted and deleted before anything was sent: nothing to tell. b's last write came before a's.
        assert_eq!(
            queue(&conn),
            vec![
                (key(2), "INSERT".into(), LAZY_BASE, 2),
                (key(1), "INSERT".into(), LAZY_BASE, 4)
            ]
        );
        let next: i64 = conn
            .query_row("SELECT next_change_id FROM _sync_client_info", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next, 6, "no scid is reused");
        let logged: i64 = conn
            .query_row("SELECT count(*) FROM _sync_capture", [], |r| r.get(0))
            .unwrap();
        assert_eq!((logged, fold(&conn).unwrap()), (0, 0));
    }

    #[test]
    fn a_fold_starts_from_the_pending_intent_and_the_metadata() {
        let conn = db();
        // a: known to the server, with a frozen send; b: known, no intent; c: unknown.
        conn.execute_batch(&format!(
            "INSERT INTO _sync_row_meta VALUES ('notes', '{a}', 3, 0, 'now'), ('notes', '{b}', 5, 0, 'now');
             INSERT INTO _sync_pending (table_name, pk_uuid, op, base_version, change_id, queued_at, sent_change_id,
                                        sent_op, sent_base, attempts, parked, last_error)
               VALUES ('notes', '{a}', 'UPDATE', 3, 9, 'now', 9, 'UPDATE', 3, 4, 1, 'x');
             UPDATE _sync_client_info SET next_change_id = 10, apply_mode = 1;
             INSERT INTO notes VALUES ('{a}', 'a'), ('{b}', 'b');
             UPDATE _sync_client_info SET apply_mode = 0;
             DELETE FROM notes WHERE id = '{a}'; INSERT INTO notes VALUES ('{a}', 'again');
             DELETE FROM notes WHERE id = '{b}'; DELETE FROM notes WHERE id = '{b}';
             INSERT INTO notes VALUES ('{c}', 'c'); DELETE FROM notes WHERE id = '{c}';",
            a = key(1),
            b = key(2),
            c = key(3)
        ))
        .unwrap();
        fold(&conn).unwrap();
        // a: UPDATE, DELETE, INSERT on a frozen UPDATE: an UPDATE at its base, unparked, its frozen send kept.
        let a: (String, i64, i64, i64, i64, Option<String>, i64) = conn
            .query_row(
                "SELECT op, base_version, change_id, sent_change_id, attempts + parked, last_error, payload IS NULL
                 FROM _sync_pending WHERE pk_uuid = ?1",
                [key(1)],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(a, ("UPDATE".into(), 3, 11, 9, 0, None, 1));
        // b: a DELETE of a row the server knows (the second delete touched no row); c: never known, gone.
        let rest: Vec<_> = queue(&conn).into_iter().filter(|q| q.0 != key(1)).collect();
        assert_eq!(rest, vec![(key(2), "DELETE".into(), LAZY_BASE, 12)]);
    }
}
