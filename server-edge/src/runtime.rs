//! What the core needs from its host: a Postgres connection and a timer. The native binary provides them with a
//! deadpool pool and tokio; the Worker with one Hyperdrive socket per request and the JS timer.

use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use tokio_postgres::Client;

/// A boxed error from the host (pool exhausted, socket refused, …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pool gave no connection within its wait timeout: the request is answered 503 with `Retry-After`
/// instead of queueing without bound.
#[derive(Debug, thiserror::Error)]
#[error("no database connection within the pool's wait timeout")]
pub struct PoolBusy;

/// The answer to [`Runtime::get`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// HTTP status.
    pub status: u16,
    /// The `Cache-Control` header.
    pub cache_control: Option<String>,
    /// The body, at most the asked limit.
    pub body: Vec<u8>,
}

/// The host environment of one request.
pub trait Runtime {
    /// A connection, returned to its pool (or closed) on drop.
    type Conn: DerefMut<Target = Client>;

    /// Obtains a connection, only by routes that touch the database: once per request, except `/sync/watch`,
    /// which takes one per look at the log after dropping the previous one.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, BoxError>>;

    /// `GET url` (an identity provider's key set) with the host's own HTTP client; a body longer than `limit`
    /// bytes is an error. Redirects are not followed.
    fn get(&self, url: &str, limit: usize) -> impl Future<Output = Result<Fetched, BoxError>>;

    /// Waits before a retry.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()>;

    /// Pushed changes of the users' logs, when the host has a push source (natively: one `LISTEN` connection);
    /// `/sync/watch` polls without one.
    fn hub(&self) -> Option<&crate::hub::ChangeHub> {
        None
    }

    /// Runs CPU-heavy work (parsing and validating a large upload) so that it does not hold up other requests:
    /// natively on a worker thread that may block while its other tasks move on; inline by default (the Worker
    /// has one thread per isolate and nothing to hand over to).
    fn compute<T>(&self, f: impl FnOnce() -> T) -> T {
        f()
    }
}
