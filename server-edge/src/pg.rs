//! What PostgreSQL errors mean to the server, for every module that runs statements.

use tokio_postgres::error::SqlState;

/// A lock wait that ran past `lock_timeout`: overload (other requests hold the lock), answered 503, not a failure.
pub fn is_lock_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(pg) = c.downcast_ref::<tokio_postgres::Error>() {
            return pg.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
        }
        cause = c.source();
    }
    false
}

/// Serialisation failure, deadlock or lock timeout: the whole transaction is retried (§6.1.4).
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::LOCK_NOT_AVAILABLE)
}
