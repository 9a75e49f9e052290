//! Conflict resolution (PROTOCOL.md §7.5). The resolver sees the server's row and the pending local intent (not
//! the table row, which a download may have overwritten) and decides; the engine performs the effects.

use serde_json::{Map, Value};

/// The pending local intent of a conflicting row.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalIntent {
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub op: String,
    /// The local after-image (wire form), `None` for a DELETE.
    pub payload: Option<Map<String, Value>>,
    /// The base version the intent was made against.
    pub base_version: i64,
}

/// The server's row as sent with `conflict`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    /// True for a tombstone.
    pub deleted: bool,
    /// The live payload (wire form), `None` for a tombstone.
    pub payload: Option<Map<String, Value>>,
    /// The row's current version.
    pub server_version: i64,
}

/// What to do with a conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Adopt the server's row; drop the local intent.
    AcceptServer,
    /// Re-send the local intent against the server's version.
    KeepLocal,
    /// Write this payload locally and send it as an UPDATE against the server's version.
    Merge(Map<String, Value>),
}

/// A conflict as reported to the app.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// Local table.
    pub table: String,
    /// Canonical pk.
    pub pk: String,
    /// The server's row.
    pub server: ServerState,
    /// The local intent.
    pub local: LocalIntent,
    /// What was decided.
    pub resolution: Resolution,
}

/// A custom merge function: `(table, pk, server, local) -> resolution`. An `Err` keeps the row and retries.
pub type MergeFn = dyn Fn(&str, &str, &ServerState, &LocalIntent) -> Result<Resolution, String>;

/// The conflict strategy.
#[derive(Default)]
pub enum Resolver {
    /// The server's row wins (default).
    #[default]
    ServerWins,
    /// The local intent wins.
    ClientWins,
    /// A custom function decides.
    Custom(Box<MergeFn>),
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ServerWins => "ServerWins",
            Self::ClientWins => "ClientWins",
            Self::Custom(_) => "Custom",
        })
    }
}

impl Resolver {
    /// Decides one conflict.
    pub fn resolve(
        &self,
        table: &str,
        pk: &str,
        server: &ServerState,
        local: &LocalIntent,
    ) -> Result<Resolution, String> {
        match self {
            Self::ServerWins => Ok(Resolution::AcceptServer),
            Self::ClientWins => Ok(Resolution::KeepLocal),
            Self::Custom(f) => f(table, pk, server, local),
        }
    }
}
