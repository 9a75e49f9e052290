//! The oversync sync server: the **oversync classic v1** protocol (see `shared/PROTOCOL.md`) on PostgreSQL.
//!
//! One core, two thin front doors. [`Service::handle`] takes a runtime-neutral [`http::Request`] and a
//! [`Runtime`] (where connections and timers come from) and returns an [`http::Response`]; the native binary
//! ([`native`], axum + deadpool-postgres) and the Worker entry only convert requests and provide the runtime.
//!
//! - [`upload`]: validation, then one transaction under a per-user advisory lock; decisions are made by the pure
//!   [`upload::plan`] over a snapshot read in a few set-based queries, and written back set-based.
//! - [`download`]: frozen windows with the `next_after` jump, in one statement.
//! - [`materialize`]: owner-scoped upserts into business tables, failures recorded while changes stay applied.
//! - [`registry`]: registered tables, FK graph and column types, discovered once per process (native: at
//!   start-up; Worker: on the first request that touches the database) by [`Service::ready`].

pub mod admin;
pub mod admission;
pub mod auth;
pub mod compact;
pub mod config;
mod convert;
pub mod ctx;
pub mod download;
pub mod error;
pub mod http;
pub mod hub;
pub mod observe;
mod pg;
pub mod ready;
pub mod registry;
pub mod rows;
pub mod runtime;
pub mod schema;
pub mod service;
pub mod snapshot;
mod sql;
pub mod stream;
pub mod upload;
pub mod watch;

#[cfg(not(target_arch = "wasm32"))]
pub mod adopt;
#[cfg(target_arch = "wasm32")]
mod edge;
#[cfg(not(target_arch = "wasm32"))]
pub mod listen;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;

pub use config::Config;
pub use registry::Registry;
pub use runtime::Runtime;
pub use service::Service;

#[cfg(test)]
mod layers_tests;
