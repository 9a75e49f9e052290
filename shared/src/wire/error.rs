//! The error envelope of every non-2xx JSON response (PROTOCOL.md §4.7).

use serde::{Deserialize, Serialize};

/// `{"error": "<code>", "message": "<text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_request`.
    pub error: String,
    /// Human-readable text.
    pub message: String,
    /// With `history_pruned` (410, docs/history.md): the owner's history horizon, the `server_id` below which
    /// removed tombstones may have been missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<i64>,
}

impl ErrorBody {
    /// Builds an envelope.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
            horizon: None,
        }
    }
}
