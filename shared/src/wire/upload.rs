//! `POST /sync/upload` (PROTOCOL.md §4.2–§4.3).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::{MapOnly, Payload, null_as_default};

/// The upload request body.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UploadRequest {
    /// The sender's download cursor; informational only.
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_server_seq_seen: i64,
    /// The changes; absent, `null` and `[]` all mean "nothing to apply".
    #[serde(default, deserialize_with = "changes_as_objects")]
    pub changes: Option<Vec<ChangeUpload>>,
}

impl UploadRequest {
    /// Parses a request body. Anything but a JSON object with the right field types is an error (→ 400).
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<MapOnly<Self>>(body).map(|m| m.0)
    }
}

/// Each change must be an object; a `null` element reads as an empty change (Go's zero value), which then fails
/// validation per change instead of failing the request.
fn changes_as_objects<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<ChangeUpload>>, D::Error> {
    let v = Option::<Vec<Option<MapOnly<ChangeUpload>>>>::deserialize(d)?;
    Ok(v.map(|v| v.into_iter().map(|m| m.map(|m| m.0).unwrap_or_default()).collect()))
}

/// One change as sent by a device.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ChangeUpload {
    /// Device-allocated change id; part of the idempotency key.
    #[serde(default, deserialize_with = "null_as_default")]
    pub source_change_id: i64,
    /// Schema name as sent (normalised by validation; empty means `public`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub schema: String,
    /// Table name as sent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub table: String,
    /// `INSERT`, `UPDATE` or `DELETE` (any case, trimmed by validation).
    #[serde(default, deserialize_with = "null_as_default")]
    pub op: String,
    /// Row key: a UUID in any accepted form.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pk: String,
    /// Base version the change was made against; 0 = new row.
    #[serde(default, deserialize_with = "null_as_default")]
    pub server_version: i64,
    /// The row's full after-image; absent for DELETE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}

/// The 200 response to an upload.
#[derive(Debug, Serialize, Deserialize)]
pub struct UploadResponse {
    /// `false` when the batch was refused as too large, or some change named an unregistered table.
    pub accepted: bool,
    /// The user's highest `server_id` at or after commit. Not a cursor.
    pub highest_server_seq: i64,
    /// One status per change, in request order.
    pub statuses: Vec<ChangeStatus>,
}

/// The outcome of one change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeStatus {
    /// The `source_change_id` of the change at the same index.
    pub source_change_id: i64,
    /// `applied`, `conflict` or `invalid`; receivers tolerate others.
    pub status: Status,
    /// The version the change produced (or the stored version of a replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_server_version: Option<i64>,
    /// The server's current row, on `conflict` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_row: Option<ServerRow>,
    /// Human-readable text, on `invalid` (except `fk_missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable reason, on `invalid` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<InvalidInfo>,
}

/// How the message of [`Rejection::conflict_without_server_row`] begins.
const CONFLICT_WITHOUT_SERVER_ROW: &str = "conflict without server_row";

impl ChangeStatus {
    /// `applied`, optionally with the version produced.
    pub fn applied(scid: i64, version: Option<i64>) -> Self {
        Self {
            source_change_id: scid,
            status: Status::Applied,
            new_server_version: version,
            server_row: None,
            message: None,
            invalid: None,
        }
    }

    /// `conflict` with the server's current row.
    pub fn conflict(scid: i64, row: ServerRow) -> Self {
        Self {
            source_change_id: scid,
            status: Status::Conflict,
            new_server_version: None,
            server_row: Some(row),
            message: None,
            invalid: None,
        }
    }

    /// The reason of an `invalid` status.
    pub fn reason(&self) -> Option<Reason> {
        self.invalid.as_ref().map(|i| i.reason.clone())
    }

    /// The server's batch limit named by a `batch_too_large` status (`… limit=<m>`), if it names one.
    pub fn batch_limit(&self) -> Option<usize> {
        (self.reason() == Some(Reason::BatchTooLarge))
            .then(|| self.message.as_deref()?.rsplit("limit=").next()?.trim().parse().ok())
            .flatten()
    }

    /// An `internal_error` that means the server has no record of a row the change was based on (see
    /// [`Rejection::conflict_without_server_row`]): the client re-sends the row as new.
    pub fn is_conflict_without_server_row(&self) -> bool {
        self.reason() == Some(Reason::InternalError)
            && self
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with(CONFLICT_WITHOUT_SERVER_ROW))
    }

    /// `invalid` for a rejection.
    pub fn invalid(scid: i64, rejection: Rejection) -> Self {
        Self {
            source_change_id: scid,
            status: Status::Invalid,
            new_server_version: None,
            server_row: None,
            message: rejection.message,
            invalid: Some(InvalidInfo {
                reason: rejection.reason,
                details: rejection.details,
            }),
        }
    }
}

/// The `status` string. Unknown values are kept, because receivers must tolerate them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The change is (or already was) applied.
    Applied,
    /// Version mismatch; see `server_row`.
    Conflict,
    /// Rejected; see `invalid`.
    Invalid,
    /// Anything else (older servers send `materialize_error`).
    Other(String),
}

impl Status {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Applied => "applied",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::Other(s) => s,
        }
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "applied" => Self::Applied,
            "conflict" => Self::Conflict,
            "invalid" => Self::Invalid,
            other => Self::Other(other.to_owned()),
        })
    }
}

/// `invalid.reason` strings (PROTOCOL.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Malformed change: the client drops it.
    BadPayload,
    /// Table not registered: the client drops it.
    UnregisteredTable,
    /// A parent row is missing: keep and retry.
    FkMissing,
    /// The parent lookup failed: keep and retry.
    PrecheckError,
    /// Server fault or a base version for an unknown row: keep and retry.
    InternalError,
    /// Too many changes in the request: re-send smaller.
    BatchTooLarge,
    /// The user is not a writer of the row's scope (docs/sharing.md §5.1): scope-aware clients move the change to
    /// their rejections; classic clients keep and retry it as an unknown reason.
    ScopeForbidden,
    /// The table is written by the app's backend only (`devices_write = false`, docs/backend-writes.md §5): the
    /// client drops the change.
    ReadOnlyTable,
    /// A reason this version does not know: keep and retry.
    Other(String),
}

impl Reason {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::BadPayload => "bad_payload",
            Self::UnregisteredTable => "unregistered_table",
            Self::FkMissing => "fk_missing",
            Self::PrecheckError => "precheck_error",
            Self::InternalError => "internal_error",
            Self::BatchTooLarge => "batch_too_large",
            Self::ScopeForbidden => "scope_forbidden",
            Self::ReadOnlyTable => "read_only_table",
            Self::Other(s) => s,
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "bad_payload" => Self::BadPayload,
            "unregistered_table" => Self::UnregisteredTable,
            "fk_missing" => Self::FkMissing,
            "precheck_error" => Self::PrecheckError,
            "internal_error" => Self::InternalError,
            "batch_too_large" => Self::BatchTooLarge,
            "scope_forbidden" => Self::ScopeForbidden,
            "read_only_table" => Self::ReadOnlyTable,
            other => Self::Other(other.to_owned()),
        })
    }
}

/// The `invalid` object of a status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidInfo {
    /// Why the change was not applied.
    pub reason: Reason,
    /// Reason-specific details (always an object).
    pub details: Value,
}

/// A rejected change before it is paired with its scid: reason, optional message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The reason.
    pub reason: Reason,
    /// The `message`; absent only for `fk_missing`.
    pub message: Option<String>,
    /// The `details` object.
    pub details: Value,
}

impl Rejection {
    /// A rejection whose details are `{"error": message}` (every reason but `unregistered_table` and `fk_missing`).
    pub fn with_error(reason: Reason, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            reason,
            details: json!({ "error": message }),
            message: Some(message),
        }
    }

    /// `bad_payload` with `{"error": message}`.
    pub fn bad_payload(message: impl Into<String>) -> Self {
        Self::with_error(Reason::BadPayload, message)
    }

    /// `unregistered_table` for a normalised pair.
    pub fn unregistered(schema: &str, table: &str) -> Self {
        Self {
            reason: Reason::UnregisteredTable,
            message: Some(format!("table not registered {schema}.{table}")),
            details: json!({ "schema": schema, "table": table }),
        }
    }

    /// `read_only_table` for a normalised pair: details `{"schema": …, "table": …}`.
    pub fn read_only(schema: &str, table: &str) -> Self {
        Self {
            reason: Reason::ReadOnlyTable,
            message: Some(format!("table {schema}.{table} is written by the server only")),
            details: json!({ "schema": schema, "table": table }),
        }
    }

    /// `fk_missing`: no message; `details.missing` lists `<schema>.<table>:<value as sent>`.
    pub fn fk_missing(missing: Vec<String>) -> Self {
        Self {
            reason: Reason::FkMissing,
            message: None,
            details: json!({ "missing": missing }),
        }
    }

    /// `internal_error` for an UPDATE or INSERT with a base version of a row the server has no record of
    /// (PROTOCOL.md §6.4), parsed by [`ChangeStatus::is_conflict_without_server_row`].
    pub fn conflict_without_server_row(table: &str, pk: &str) -> Self {
        Self::with_error(
            Reason::InternalError,
            format!("{CONFLICT_WITHOUT_SERVER_ROW} for {table} pk={pk}"),
        )
    }

    /// `scope_forbidden` (docs/sharing.md §5.1): details `{"scope": scope}`.
    pub fn scope_forbidden(scope: &str, table: &str, pk: &str) -> Self {
        Self {
            reason: Reason::ScopeForbidden,
            message: Some(format!("not a writer of scope {scope} for {table} pk={pk}")),
            details: json!({ "scope": scope }),
        }
    }

    /// `batch_too_large` for a request of `n` changes over a limit of `limit` (parsed by
    /// [`ChangeStatus::batch_limit`]).
    pub fn batch_too_large(n: usize, limit: usize) -> Self {
        Self::with_error(
            Reason::BatchTooLarge,
            format!("batch too large: changes={n} limit={limit}"),
        )
    }
}

/// The server's current state of a row, sent with `conflict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerRow {
    /// Canonical pk.
    pub id: String,
    /// True for a tombstone.
    pub deleted: bool,
    /// The live payload, or `null` for a tombstone (always present on the wire).
    pub payload: Option<Payload>,
    /// Normalised table name.
    pub table_name: String,
    /// Normalised schema name.
    pub schema_name: String,
    /// The row's current version.
    pub server_version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message the server builds is read back by the parser the client uses.
    #[test]
    fn status_messages_round_trip_through_their_parsers() {
        let too_large = ChangeStatus::invalid(1, Rejection::batch_too_large(400, 200));
        assert_eq!(too_large.batch_limit(), Some(200));
        assert!(!too_large.is_conflict_without_server_row());
        let missing = ChangeStatus::invalid(2, Rejection::conflict_without_server_row("business.posts", "p"));
        assert!(missing.is_conflict_without_server_row());
        assert_eq!(missing.batch_limit(), None);
        let other = ChangeStatus::invalid(3, Rejection::with_error(Reason::InternalError, "boom"));
        assert!(!other.is_conflict_without_server_row());
        assert_eq!(ChangeStatus::applied(4, Some(1)).reason(), None);
    }
}
