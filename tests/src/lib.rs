//! Test harness shared by the workspace's integration tests.
//!
//! - [`pg::database`]: a fresh, empty PostgreSQL database. It lives in the cluster named by `DATABASE_URL`, or
//!   in a throwaway cluster that the harness initialises in a temporary directory on a free port (as the
//!   `postgres` user when running as root, since `initdb` refuses root).
//! - [`process::Server`]: a server process started on a free port with a given configuration: the native binary,
//!   or the Worker under `wrangler dev` ([`edge::start_wrangler`]); tests talk to it through its base URL only.
//!
//! - [`issuer::Issuer`]: an identity provider on 127.0.0.1 that publishes a JWKS and signs RS256, ES256 and
//!   EdDSA tokens, and can rotate its keys or go down.
//!
//! Every process the harness starts is watched by a small shell loop that stops it (and removes its temporary
//! directory) as soon as the test process exits, even when the test binary is killed.

pub mod counting;
pub mod edge;
pub mod issuer;
pub mod pg;
pub mod process;
pub mod proxy;

/// Runs a future to completion on a fresh single-threaded runtime in its own thread, so it can be called from
/// inside another runtime (e.g. a `#[tokio::test]`).
pub fn block_on_thread<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    })
    .join()
    .expect("harness thread panicked")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("addr")
        .port()
}
