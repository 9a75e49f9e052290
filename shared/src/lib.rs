//! Wire types and rules of the **oversync classic v1** sync protocol, shared by the server and the client.
//!
//! This crate does no IO. It holds what both sides must agree on byte for byte:
//!
//! - [`wire`]: every JSON body of PROTOCOL.md §3–§5 and §8 with serde (upload, download, statuses, sign-in,
//!   capabilities, snapshot, watch, the error envelope). Payloads are kept verbatim as
//!   [`serde_json::value::RawValue`], so 64-bit integers never pass through a float.
//! - [`names`] and [`pk`]: schema/table normalisation and UUID canonicalisation (§2).
//! - [`encoding`]: the payload value encodings of §5.1 (base64, UUID and hex BLOBs).
//! - [`validate`]: per-change and per-request validation with the exact messages of §6.2, and the download
//!   parameter rules of §4.4.
//! - [`order`]: the FK topological order used to apply upserts parent-first and deletes child-first (§6.5).

pub mod encoding;
pub mod names;
pub mod order;
pub mod pk;
pub mod query;
pub mod validate;
pub mod wire;

pub use names::TableRef;
pub use wire::*;
