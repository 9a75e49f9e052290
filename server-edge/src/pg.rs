//! What PostgreSQL errors mean to the server, for every module that runs statements.

use tokio_postgres::error::SqlState;

/// Serialisation failure, deadlock or lock timeout: the whole transaction is retried (§6.1.4).
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::LOCK_NOT_AVAILABLE)
}
