//! The error envelope of every non-2xx JSON response (PROTOCOL.md §4.7).

use serde::{Deserialize, Serialize};

/// `{"error": "<code>", "message": "<text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_request`.
    pub error: String,
    /// Human-readable text.
    pub message: String,
}

impl ErrorBody {
    /// Builds an envelope.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
        }
    }
}
