//! The keys and metadata of rows in the sync tables, shared by uploads (their read set and writes) and
//! snapshots (the versions of a page's rows).

use oversync_protocol::TableRef;

/// A row of a registered table: `(table, canonical pk)`.
pub type RowKey = (TableRef, String);

/// The stored version and tombstone flag of a row (`sync.sync_row_meta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowMeta {
    /// Current version.
    pub version: i64,
    /// Tombstone.
    pub deleted: bool,
}

/// The metadata of the rows named by `$2`/`$3`/`$4` (schemas, tables, pks) of user `$1`: schema, table, pk,
/// version, deleted. One probe per key (see `upload/store.rs`'s `max_server_id` on why not a join).
pub const META_BY_KEY: &str = "SELECT m.schema_name, m.table_name, m.pk_uuid::text, m.server_version, m.deleted
FROM unnest($2::text[], $3::text[], $4::text[]) AS k(s, t, p)
CROSS JOIN LATERAL (SELECT * FROM sync.sync_row_meta m WHERE m.user_id = $1 AND m.schema_name = k.s
                    AND m.table_name = k.t AND m.pk_uuid = k.p::uuid LIMIT 1) m";

/// The keys as the three text arrays the key-list statements take.
pub fn unzip_keys(keys: &[RowKey]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let schemas = keys.iter().map(|(t, _)| t.schema.clone()).collect();
    let tables = keys.iter().map(|(t, _)| t.table.clone()).collect();
    let pks = keys.iter().map(|(_, p)| p.clone()).collect();
    (schemas, tables, pks)
}
