//! The client's sync tables (PROTOCOL.md §7.1) and the start-up routine: crash-safe `apply_mode`, foreign keys
//! on, and capture triggers re-created for every synced table whose columns changed.

use rusqlite::{Connection, OptionalExtension, params};

use crate::triggers::{Column, TableShape, quote};

/// DDL of the sync tables. `_sync_capture`, `_sync_rejections` and `_sync_triggers` are this client's additions
/// (the log the triggers append to, the app-visible rejection list, and the column signature the triggers were
/// generated from); `_sync_scopes` and `_sync_scope_info` hold shared data's state (docs/sharing.md §5.3: the
/// scopes held, a backfill's saved keyset, the newest membership event seen).
///
/// PROTOCOL.md §7.1's `CHECK (op IN (…))` is written as `=`/`OR`: the same constraint, but SQLite builds an
/// ephemeral table for an `IN` list on every check, and every captured write checks it
/// (bench/results/design-choices.md). The two sync-state tables are `WITHOUT ROWID` (keyed lookups only).
pub const SYNC_TABLES_SQL: &str = "
CREATE TABLE IF NOT EXISTS _sync_client_info (
  id INTEGER PRIMARY KEY CHECK (id = 1), user_id TEXT, source_id TEXT NOT NULL,
  next_change_id INTEGER NOT NULL DEFAULT 1,
  last_server_seq_seen INTEGER NOT NULL DEFAULT 0, window_until INTEGER NOT NULL DEFAULT 0,
  apply_mode INTEGER NOT NULL DEFAULT 0, hydrated INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS _sync_row_meta (
  table_name TEXT NOT NULL, pk_uuid TEXT NOT NULL, server_version INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL, PRIMARY KEY (table_name, pk_uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _sync_pending (
  table_name TEXT NOT NULL, pk_uuid TEXT NOT NULL, op TEXT NOT NULL CHECK (op = 'INSERT' OR op = 'UPDATE' OR op = 'DELETE'),
  base_version INTEGER NOT NULL, payload TEXT, change_id INTEGER NOT NULL, queued_at TEXT NOT NULL,
  sent_change_id INTEGER, sent_op TEXT, sent_base INTEGER, sent_payload TEXT,
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT, last_error TEXT, parked INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (table_name, pk_uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _sync_rejections (
  id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, pk_uuid TEXT NOT NULL, reason TEXT NOT NULL,
  message TEXT, rejected_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE IF NOT EXISTS _sync_capture (
  seq INTEGER PRIMARY KEY, table_name TEXT NOT NULL, pk_uuid TEXT NOT NULL, op INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _sync_triggers (table_name TEXT PRIMARY KEY, signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _sync_status (id INTEGER PRIMARY KEY CHECK (id = 1), last_synced_at TEXT);
CREATE TABLE IF NOT EXISTS _sync_scopes (
  scope TEXT PRIMARY KEY, role TEXT NOT NULL, state TEXT NOT NULL, after_table TEXT, after_pk TEXT,
  window_until INTEGER NOT NULL DEFAULT 0, snapshot_done INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS _sync_scope_info (id INTEGER PRIMARY KEY CHECK (id = 1), scope_event INTEGER NOT NULL DEFAULT 0);
";

/// Bumped when the generated trigger SQL changes, so existing databases get the new triggers at start-up.
/// 2: deferred payload and base; 3: the capture log (`triggers` module docs).
pub const TRIGGER_FORMAT: u32 = 3;

/// Creates the sync tables and the single info row (with `source_id` as the device id) if missing.
pub fn create(conn: &Connection, source_id: &str) -> rusqlite::Result<()> {
    conn.execute_batch(SYNC_TABLES_SQL)?;
    conn.execute(
        "INSERT OR IGNORE INTO _sync_client_info (id, source_id) VALUES (1, ?1)",
        params![source_id],
    )?;
    Ok(())
}

/// Reads a table's columns (declaration order) from the catalogue.
pub fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(table)))?;
    let rows = stmt.query_map([], |r| {
        let name: String = r.get(1)?;
        let decl: String = r.get(2)?;
        Ok(Column {
            name,
            blob: decl.to_uppercase().contains("BLOB"),
        })
    })?;
    rows.collect()
}

/// Start-up: `apply_mode = 0` (a crash mid-apply must not silence capture forever), foreign keys on, and
/// triggers (re)created where the column list changed since they were generated.
pub fn startup(conn: &Connection, shapes: &[TableShape]) -> rusqlite::Result<()> {
    conn.execute("UPDATE _sync_client_info SET apply_mode = 0 WHERE id = 1", [])?;
    conn.pragma_update(None, "foreign_keys", true)?;
    for shape in shapes {
        let columns = serde_json::to_string(&shape.columns.iter().map(|c| (&c.name, c.blob)).collect::<Vec<_>>())
            .expect("serialisable");
        let signature = format!("{TRIGGER_FORMAT}:{columns}");
        let current: Option<String> = conn
            .query_row(
                "SELECT signature FROM _sync_triggers WHERE table_name = ?1",
                [&shape.table],
                |r| r.get(0),
            )
            .optional()?;
        // A table rebuild (create new, copy, drop old, rename) drops triggers with the same column list.
        let present: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND name IN (?2, ?3, ?4)",
            params![
                shape.table,
                format!("trg_{}_ai", shape.table),
                format!("trg_{}_au", shape.table),
                format!("trg_{}_ad", shape.table)
            ],
            |r| r.get(0),
        )?;
        if current.as_deref() != Some(signature.as_str()) || present != 3 {
            conn.execute_batch(&shape.triggers_sql())?;
            conn.execute(
                "INSERT INTO _sync_triggers (table_name, signature) VALUES (?1, ?2)
                 ON CONFLICT (table_name) DO UPDATE SET signature = excluded.signature",
                params![shape.table, signature],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(conn: &Connection) -> TableShape {
        TableShape {
            table: "notes".into(),
            key: "id".into(),
            blob_key: false,
            columns: columns(conn, "notes").unwrap(),
        }
    }

    /// The newest intent's payload, as a freeze would send it (payloads are deferred until then).
    fn last_payload(conn: &Connection) -> String {
        crate::capture::fold(conn).unwrap();
        conn.execute(&shape(conn).fill_deferred_sql(), []).unwrap();
        conn.query_row(
            "SELECT payload FROM _sync_pending ORDER BY change_id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn triggers_are_recreated_when_the_columns_change_and_guest_writes_take_scids() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
            .unwrap();
        create(&conn, "device-1").unwrap();
        startup(&conn, &[shape(&conn)]).unwrap();
        conn.execute(
            "INSERT INTO notes VALUES ('00000000-0000-4000-8000-000000000001', 'a')",
            [],
        )
        .unwrap();
        assert_eq!(
            last_payload(&conn),
            r#"{"id":"00000000-0000-4000-8000-000000000001","body":"a"}"#
        );
        conn.execute_batch("ALTER TABLE notes ADD COLUMN Tag TEXT").unwrap();
        startup(&conn, &[shape(&conn)]).unwrap();
        conn.execute(
            "INSERT INTO notes VALUES ('00000000-0000-4000-8000-000000000002', 'b', 't')",
            [],
        )
        .unwrap();
        assert_eq!(
            last_payload(&conn),
            r#"{"id":"00000000-0000-4000-8000-000000000002","body":"b","tag":"t"}"#
        );
        let next: i64 = conn
            .query_row("SELECT next_change_id FROM _sync_client_info", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next, 3, "each folded intent took a scid from the persisted counter");
        // apply_mode is reset at start-up: a crash mid-apply cannot silence capture for good.
        conn.execute("UPDATE _sync_client_info SET apply_mode = 1", []).unwrap();
        startup(&conn, &[shape(&conn)]).unwrap();
        conn.execute("UPDATE notes SET body = 'c' WHERE body = 'a'", [])
            .unwrap();
        assert!(last_payload(&conn).contains(r#""body":"c""#));
    }
}

#[cfg(test)]
mod rebuild_tests {
    use super::*;

    #[test]
    fn a_table_rebuild_with_the_same_columns_gets_its_triggers_back() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
            .unwrap();
        create(&conn, "device-1").unwrap();
        let shape = |c: &Connection| TableShape {
            table: "notes".into(),
            key: "id".into(),
            blob_key: false,
            columns: columns(c, "notes").unwrap(),
        };
        startup(&conn, &[shape(&conn)]).unwrap();
        conn.execute_batch(
            "CREATE TABLE notes_new (id TEXT PRIMARY KEY, body TEXT); INSERT INTO notes_new SELECT * FROM notes;
             DROP TABLE notes; ALTER TABLE notes_new RENAME TO notes;",
        )
        .unwrap();
        startup(&conn, &[shape(&conn)]).unwrap();
        conn.execute(
            "INSERT INTO notes VALUES ('00000000-0000-4000-8000-000000000003', 'x')",
            [],
        )
        .unwrap();
        crate::capture::fold(&conn).unwrap();
        let pending: i64 = conn
            .query_row("SELECT count(*) FROM _sync_pending", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, 1, "captured after the rebuild");
    }
}
