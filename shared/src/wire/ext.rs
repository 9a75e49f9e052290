//! Bodies of the small routes and the extensions (PROTOCOL.md §4.5, §4.6, §8).

use serde::{Deserialize, Serialize};

use super::Payload;

/// `GET /sync/schema-version`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SchemaVersionResponse {
    /// Configured schema version.
    pub schema_version: i64,
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Always `healthy`.
    pub status: String,
    /// Implementation name.
    pub service: String,
}

/// `GET /sync/capabilities` (§8.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capabilities {
    /// `oversync-classic`.
    pub protocol: String,
    /// 1.
    pub protocol_version: i64,
    /// Configured schema version.
    pub schema_version: i64,
    /// Limits; 0 means unlimited.
    pub limits: Limits,
    /// Optional behaviour this server offers.
    pub features: Features,
    /// The tables the server syncs (absent from servers before it was added, and from classic ones): a client
    /// checks its synced tables against it at its first sync and fails with a configuration error naming each
    /// missing table, instead of having every change to it refused as `unregistered_table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<RegisteredTable>>,
}

/// One table a server syncs, in [`Capabilities::tables`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredTable {
    /// PostgreSQL schema, lower case.
    pub schema: String,
    /// Table name, lower case.
    pub table: String,
}

/// Server limits advertised in capabilities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// Changes per upload.
    pub max_upload_batch_size: i64,
    /// Bytes per payload.
    pub max_payload_bytes: i64,
    /// Bytes per request body.
    pub max_request_bytes: i64,
    /// Download page size when `limit` is absent.
    pub download_limit_default: i64,
    /// Largest download page.
    pub download_limit_max: i64,
    /// Largest snapshot page.
    pub snapshot_limit_max: i64,
    /// Extension: payload bytes per download or snapshot page; a page may hold one row more, and a row larger
    /// than this comes alone (0 = unlimited). Absent from servers that only cut pages by rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_page_bytes: Option<i64>,
}

/// Feature flags advertised in capabilities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Features {
    /// A replay answers with the stored version.
    pub replay_returns_version: bool,
    /// `next_after` jumps over filtered rows (§6.6 step 5).
    pub next_after_jumps: bool,
    /// `sync_state`, `business` or `off`.
    pub fk_precheck: String,
    /// `/sync/snapshot` is served.
    pub snapshot: bool,
    /// Watch modes served (`long_poll`, `sse`); empty when off.
    pub watch: Vec<String>,
    /// Shared data (docs/sharing.md): scoped tables, `scopes=1` downloads. Absent (false) from servers without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scopes: bool,
}

/// `GET /sync/snapshot` response (§8.2).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotResponse {
    /// Live rows ordered by `(schema, table, pk)`.
    pub rows: Vec<SnapshotRow>,
    /// More rows follow.
    pub has_more: bool,
    /// `<schema>.<table>` of the last row, for the next page.
    pub next_after_table: String,
    /// Canonical pk of the last row, for the next page.
    pub next_after_pk: String,
    /// The user's highest `server_id` when the first page was served.
    pub window_until: i64,
    /// Highest scid logged for the caller's device, or 0.
    pub max_own_source_change_id: i64,
    /// Extension hint: `<schema>.<table>` of the row that ends the page after this one, as of this answer, so a
    /// client can request that page and the one after it at once. Absent when no row is that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then_after_table: Option<String>,
    /// Canonical pk of that row (with `then_after_table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then_after_pk: Option<String>,
}

/// One live row in a snapshot page.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotRow {
    /// Normalised schema.
    pub schema: String,
    /// Normalised table.
    pub table: String,
    /// Canonical pk.
    pub pk: String,
    /// Current version.
    pub server_version: i64,
    /// Current payload.
    pub payload: Payload,
}

/// `GET /sync/watch` long-poll response (§8.3).
#[derive(Debug, Serialize, Deserialize)]
pub struct WatchResponse {
    /// A change from another device exists above `after`.
    pub changed: bool,
    /// Highest such `server_id`, or `after`.
    pub latest_server_id: i64,
}
