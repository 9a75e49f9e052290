//! oversync client sync engine (SQLite change capture, upload, download, conflicts, hydration).
//!
//! The engine is written once over `rusqlite` and runs natively in tests and as wasm32 in the browser. It is
//! not implemented yet: this crate pins the workspace layout and is built for wasm32 by the test command, so the
//! protocol crate it depends on is proven to compile for the browser.

pub use oversync_protocol as protocol;
