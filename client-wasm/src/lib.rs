//! oversync client sync engine: SQLite change capture, upload, download, conflicts and hydration (PROTOCOL.md §7).
//!
//! Written once over `rusqlite`; natively it uses bundled SQLite (tests, tools), on wasm32 the sqlite-wasm-rs
//! backend (the browser). The engine does no IO beyond SQLite and the small [`transport::Transport`] trait.
//!
//! - [`schema`]: the `_sync_*` tables of §7.1 and start-up repair.
//! - [`triggers`]: change-capture trigger SQL from pure functions (§7.2), snapshot-tested.
//! - [`capture`]: the fold of the triggers' capture log into the pending queue, by §7.2's table.
//! - [`engine`]: the upload cycle with freeze (§7.3), download/apply (§7.4), conflicts (§7.5), hydration (§7.6).
//! - [`schedule`]: when to run a cycle (§7.7): debounce, timer, wake-ups, backoff with jitter; no IO.
//! - [`token`]: the user a bearer token names (read, not verified), so another user's token is refused.

pub mod capture;
pub mod conflict;
pub mod engine;
pub mod progress;
pub mod schedule;
pub mod schema;
pub mod token;
pub mod transport;
pub mod triggers;
mod wire;

pub use conflict::{Resolution, Resolver};
pub use engine::{Engine, EngineConfig, ScopeStatus, SyncError, TableConfig};
pub use oversync_protocol as protocol;

#[cfg(target_arch = "wasm32")]
pub mod web;
