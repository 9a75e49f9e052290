//! `GET /sync/download` (PROTOCOL.md §4.4).

use serde::{Deserialize, Serialize};

use super::Payload;

/// The `source_id` (and, in a scope's rows, the `author`) of a change the app's backend wrote straight into a
/// business table (docs/backend-writes.md): `U+001F` then `backend`. No device can have it (device ids are
/// visible ASCII, [`valid_device_id`](crate::wire::valid_device_id)), so every device downloads such changes.
pub const BACKEND_SOURCE: &str = "\u{1f}backend";

/// The 200 response to a download. All four keys are always present.
#[derive(Debug, Serialize, Deserialize)]
pub struct DownloadResponse {
    /// Log entries in `server_id` order; `[]` when empty.
    pub changes: Vec<ChangeDownload>,
    /// More entries exist within the window.
    pub has_more: bool,
    /// The cursor to send as `after` next.
    pub next_after: i64,
    /// Inclusive upper bound of this window.
    pub window_until: i64,
    /// Scope-aware pages (docs/sharing.md §5.2): the memberships the page was read under, when they changed
    /// since the `scope_event` the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<ScopeRole>>,
    /// Scope-aware pages: the user's newest membership event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_event: Option<i64>,
    /// Scope-aware pages of a user with more memberships than the server's `max_scopes_per_user`: how many were
    /// not served (the first by name are; docs/sharing.md §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_omitted: Option<i64>,
}

/// One membership of a scope-aware page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRole {
    /// The scope.
    pub scope: String,
    /// `reader` or `writer`.
    pub role: String,
}

/// One log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeDownload {
    /// Log position.
    pub server_id: i64,
    /// Normalised schema.
    pub schema: String,
    /// Normalised table.
    pub table: String,
    /// `INSERT`, `UPDATE` or `DELETE` as uploaded.
    pub op: String,
    /// Canonical pk.
    pub pk: String,
    /// The uploaded after-image; key absent for DELETE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// The version this change produced.
    pub server_version: i64,
    /// `op == "DELETE"`.
    pub deleted: bool,
    /// The originating device.
    pub source_id: String,
    /// The originating scid.
    pub source_change_id: i64,
    /// A scoped row's scope (docs/sharing.md §5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A scoped row's uploading user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// When the change was applied: RFC 3339 UTC with six fractional digits.
    pub ts: String,
}
