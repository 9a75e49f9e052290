//! What a developer inspecting a device needs (issue 37, `db.diagnostics()` in oversync-web): the queue, the
//! cursor, each synced table's rows, the database file and the versions, read from the database alone (hosts add
//! what they know: the last cycles, realtime, the browser's storage).

use rusqlite::Connection;

use super::{Status, SyncError};

/// One synced table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDiagnostics {
    /// Its name.
    pub table: String,
    /// Its rows.
    pub rows: i64,
    /// Its rows with a change waiting for upload.
    pub pending: i64,
}

/// The device's sync state, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// What `status` shows (counts, cursor, hydration, last sync).
    pub status: Status,
    /// When the oldest waiting change was made (RFC 3339, UTC), if any waits.
    pub oldest_pending_at: Option<String>,
    /// The end of a download window in progress (0 when none: the last download caught up).
    pub window_until: i64,
    /// This database's device id.
    pub device_id: String,
    /// Every synced table (those with capture triggers), by name.
    pub tables: Vec<TableDiagnostics>,
    /// The database's size (pages × page size) and its free pages' share of it.
    pub database_bytes: i64,
    /// Bytes of free pages (reused before the file grows).
    pub free_bytes: i64,
    /// SQLite's version.
    pub sqlite_version: String,
    /// This engine's version.
    pub engine_version: &'static str,
    /// The generated triggers' format.
    pub trigger_format: u32,
}

impl Diagnostics {
    /// Reads them (folding the capture log first, as [`Status::read`] does).
    pub fn read(conn: &Connection) -> Result<Self, SyncError> {
        let status = Status::read(conn)?;
        let (oldest_pending_at, window_until, device_id): (Option<String>, i64, String) = conn.query_row(
            "SELECT (SELECT strftime('%Y-%m-%dT%H:%M:%SZ', min(queued_at)) FROM _sync_pending), window_until, source_id
             FROM _sync_client_info WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let names: Vec<String> = conn
            .prepare("SELECT table_name FROM _sync_triggers ORDER BY table_name")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut tables = Vec::with_capacity(names.len());
        for table in names {
            let sql = format!(
                "SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM _sync_pending WHERE table_name = ?1)",
                crate::triggers::quote(&table)
            );
            let (rows, pending) = conn.query_row(&sql, [&table], |r| Ok((r.get(0)?, r.get(1)?)))?;
            tables.push(TableDiagnostics { table, rows, pending });
        }
        let (pages, free, page_size, sqlite_version): (i64, i64, i64, String) = conn.query_row(
            "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count()),
                    (SELECT page_size FROM pragma_page_size()), sqlite_version()",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        Ok(Self {
            status,
            oldest_pending_at,
            window_until,
            device_id,
            tables,
            database_bytes: pages * page_size,
            free_bytes: free * page_size,
            sqlite_version,
            engine_version: env!("CARGO_PKG_VERSION"),
            trigger_format: crate::schema::TRIGGER_FORMAT,
        })
    }
}
