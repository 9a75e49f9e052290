//! What the app can show about sync, owned by the engine and readable while a cycle runs: the counts and the
//! last sync from the database, the running cycle's progress, and the last cycle's error. Hosts convert it;
//! they keep no status of their own.

use std::cell::RefCell;
use std::rc::Rc;

use rusqlite::{Connection, ErrorCode};

use super::SyncError;
use crate::progress::{Progress, Tracker};

/// A sync error as the app sees it: a stable code (`NETWORK`, `UNAUTHORIZED`, `SQLITE_CONSTRAINT`, …) and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// The stable code ([`SyncError::code`]).
    pub code: String,
    /// For people.
    pub message: String,
}

/// What the app can show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Rows waiting to be uploaded (parked included).
    pub pending: i64,
    /// Rows parked after repeated failures.
    pub parked: i64,
    /// Rejected changes recorded so far.
    pub rejected: i64,
    /// The download cursor.
    pub cursor: i64,
    /// True once a full hydration completed.
    pub hydrated: bool,
    /// The user the database belongs to (`None` before the first sign-in).
    pub user: Option<String>,
    /// The last cycle's error, cleared by the next success.
    pub last_error: Option<LastError>,
    /// When the last successful cycle ended (RFC 3339, UTC), kept in the database (`_sync_status`): it
    /// survives a reload, and `None` means this database never completed one.
    pub last_synced: Option<String>,
    /// What the running cycle is doing.
    pub progress: Progress,
    /// The shared scopes the device holds or is filling (docs/sharing.md §6).
    pub scopes: Vec<super::ScopeStatus>,
}

impl Status {
    /// The counts, the cursor, hydration and the last sync as stored in `conn` (no error, no progress). Folds
    /// the capture log first (a write, cheap when the log is short).
    pub fn read(conn: &Connection) -> Result<Self, SyncError> {
        // The counts are of intents, so the writes captured since the last fold are folded first. While another
        // connection holds the write lock the counts are read as they are (a status read must not fail on it).
        if let Err(e) = crate::capture::fold(conn)
            && !matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            )
        {
            return Err(e.into());
        }
        // One cached statement: hosts read this after every local write.
        let (pending, parked, rejected, cursor, hydrated, user, last_synced) = conn
            .prepare_cached(
                "SELECT (SELECT count(*) FROM _sync_pending), (SELECT count(*) FROM _sync_pending WHERE parked = 1),
                        (SELECT count(*) FROM _sync_rejections), last_server_seq_seen, hydrated, user_id,
                        (SELECT last_synced_at FROM _sync_status WHERE id = 1)
                 FROM _sync_client_info WHERE id = 1",
            )?
            .query_row([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?;
        Ok(Self {
            pending,
            parked,
            rejected,
            cursor,
            hydrated,
            user,
            last_error: None,
            last_synced,
            progress: Progress::default(),
            scopes: Vec::new(),
        })
    }
}

/// The engine's status, readable while a cycle holds the engine; clones share it.
#[derive(Clone)]
pub struct StatusReader {
    pub(super) conn: Rc<Connection>,
    pub(super) progress: Tracker,
    pub(super) last_error: Rc<RefCell<Option<LastError>>>,
    pub(super) scoped: Rc<super::scopes::Scoped>,
}

impl StatusReader {
    /// The status now.
    pub fn read(&self) -> Result<Status, SyncError> {
        let scopes = if self.scoped.is_empty() {
            Vec::new()
        } else {
            super::scopes::list(&self.conn, &self.scoped)?
        };
        Ok(Status {
            last_error: self.last_error.borrow().clone(),
            progress: self.progress.get(),
            scopes,
            ..Status::read(&self.conn)?
        })
    }

    /// Unparks every parked row (an app-triggered retry); works while a cycle runs. Returns how many.
    pub fn unpark_all(&self) -> Result<usize, SyncError> {
        Ok(self.conn.execute(
            "UPDATE _sync_pending SET parked = 0, attempts = 0, next_attempt_at = NULL WHERE parked = 1",
            [],
        )?)
    }

    /// Records the outcome of a cycle.
    pub(super) fn finish(&self, outcome: Result<(), &SyncError>) {
        *self.last_error.borrow_mut() = outcome.err().map(|e| LastError {
            code: e.code().to_owned(),
            message: e.to_string(),
        });
    }
}

impl SyncError {
    /// The stable code of this error (the app's `OversyncError.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Storage(e) => sqlite_code(e),
            Self::Network(_) => "NETWORK",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Http { .. } => "HTTP",
            Self::Protocol(_) => "PROTOCOL",
            Self::NotSignedIn => "NOT_SIGNED_IN",
            Self::WrongUser(_) => "WRONG_USER",
            Self::TokenUserMismatch { .. } => "TOKEN_USER_MISMATCH",
            Self::Config(_) => "CONFIG",
            Self::Auth(_) => "AUTH",
            Self::AuthUnavailable(_) => "AUTH_UNAVAILABLE",
        }
    }
}

/// SQLite's primary result code as the app sees it (`SQLITE_CONSTRAINT`, …).
pub fn sqlite_code(e: &rusqlite::Error) -> &'static str {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => "SQLITE_CONSTRAINT",
            ErrorCode::DatabaseBusy => "SQLITE_BUSY",
            ErrorCode::DatabaseLocked => "SQLITE_LOCKED",
            ErrorCode::ReadOnly => "SQLITE_READONLY",
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => "SQLITE_CORRUPT",
            ErrorCode::DiskFull => "SQLITE_FULL",
            ErrorCode::SystemIoFailure => "SQLITE_IOERR",
            ErrorCode::TypeMismatch => "SQLITE_MISMATCH",
            ErrorCode::TooBig => "SQLITE_TOOBIG",
            _ => "SQLITE_ERROR",
        },
        rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => "BAD_ARGUMENT",
        _ => "SQLITE_ERROR",
    }
}
