//! Black-box HTTP conformance suite for the sync server (PROTOCOL.md §9.3 and the server-side §9.2 cases).
//!
//! The suite only talks HTTP to a base URL (plus direct reads of the database for invariants), so the same tests
//! run against every front door. The harness starts PostgreSQL and the server; `OVERSYNC_TEST_BASE_URL` points
//! the default variant at a server started elsewhere.

mod support;

mod admin;
mod adopt;
mod attack;
mod attack_reads;
mod attack_scopes;
mod auth;
mod backend;
mod backend_race;
mod backend_shared;
mod compaction;
mod compaction_race;
mod compaction_runs;
mod concurrency;
mod crash;
mod download;
mod fuzz;
mod headers;
mod history;
mod hostile;
mod idempotency;
mod isolation;
mod jwks;
mod limits;
mod materialize;
mod ops;
mod ordering;
mod page_budget;
mod push;
mod retries;
mod roundtrips;
mod routes;
mod scale;
mod scopes;
mod snapshot;
mod startup;
mod stream;
mod upload;
mod validation;
mod watch;
