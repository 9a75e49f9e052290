//! What the core needs from its host: a Postgres connection and a timer. The native binary provides them with a
//! deadpool pool and tokio; the Worker with one Hyperdrive socket per request and the JS timer.

use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Transaction};

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

/// Appends `chunk` to a [`Runtime::get`] body, refusing to grow it past `limit` bytes.
pub fn append_within(body: &mut Vec<u8>, chunk: &[u8], limit: usize) -> Result<(), BoxError> {
    if body.len() + chunk.len() > limit {
        return Err(format!("response body over {limit} bytes").into());
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// Parameters of a statement, each with its type (so that no Describe round trip is needed for them).
pub type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// Runs one of the server's fixed statements (`sql` is a constant of the server's).
pub trait Fixed {
    /// A host that keeps its connections (the native pool) prepares each statement once per connection, so that
    /// a small request is not parsed and planned again every time; otherwise it is sent unprepared, in one round
    /// trip (a Worker's connection lives for one request).
    fn query_fixed(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>>;
}

impl Fixed for Client {
    fn query_fixed(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> {
        self.query_typed(sql, params)
    }
}

impl Fixed for Transaction<'_> {
    fn query_fixed(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> {
        self.query_typed(sql, params)
    }
}

impl Fixed for Box<Client> {
    fn query_fixed(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> {
        self.query_typed(sql, params)
    }
}

/// A database connection of the host.
pub trait Conn: DerefMut<Target = Client> + Fixed {}

impl<T: DerefMut<Target = Client> + Fixed> Conn for T {}

/// The host environment of one request.
pub trait Runtime {
    /// A connection, returned to its pool (or closed) on drop.
    type Conn: Conn;

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

    /// Told when an upload of `bytes` body bytes has been answered and everything it allocated dropped, so a host
    /// whose allocator keeps freed memory can give it back (natively: glibc's `malloc_trim`).
    fn upload_done(&self, _bytes: usize) {}

    /// Gives back a connection that carried a large upload: a pooling host closes it instead of keeping it, since
    /// its buffers keep the capacity of the largest message it sent (a full batch's statement parameters).
    fn retire(&self, conn: Self::Conn) {
        drop(conn);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fetched_body_grows_up_to_its_limit_and_no_further() {
        let mut body = Vec::new();
        super::append_within(&mut body, b"abc", 5).unwrap();
        super::append_within(&mut body, b"de", 5).unwrap();
        assert_eq!(body, b"abcde");
        let err = super::append_within(&mut body, b"f", 5).unwrap_err();
        assert_eq!(err.to_string(), "response body over 5 bytes");
        assert_eq!(body, b"abcde", "nothing appended past the limit");
    }
}
