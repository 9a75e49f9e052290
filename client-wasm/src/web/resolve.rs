//! The app's conflict resolver (`conflict` in `SyncClient.open`), which runs on the page, asynchronously, while
//! the engine decides each conflict synchronously inside the upload's transaction. So the decision takes two
//! cycles: the first conflict finds no decision, is listed as undecided, and the row backs off; the host asks
//! the app and records its decision for that server version; the row is sent again, conflicts again with the
//! same server row, and the recorded decision is applied by the engine like any resolver's. If the server row
//! changed meanwhile, its new version is undecided again and the app is asked again. An app that never answers
//! leaves the row backing off (and parked after 20 attempts), never resolved behind its back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Serialize;
use serde_json::{Map, Value, json};
use wasm_bindgen::prelude::*;

use super::Database;
use super::error::bad_argument;
use crate::conflict::{LocalIntent, Resolution, Resolver, ServerState};

/// Conflicts waiting for the app, and its decisions by (table, pk, server version).
#[derive(Default)]
pub(super) struct Decisions {
    undecided: Vec<Value>,
    decided: HashMap<(String, String, i64, String), Resolution>,
}

pub(super) type Shared = Rc<RefCell<Decisions>>;

/// The engine's resolver: a recorded decision for this server version, else "undecided" (the row backs off).
pub(super) fn resolver(shared: Shared) -> Resolver {
    Resolver::Custom(Box::new(move |table, pk, server, local| {
        let mut d = shared.borrow_mut();
        let key = local_key(local);
        if let Some(r) = d
            .decided
            .remove(&(table.to_owned(), pk.to_owned(), server.server_version, key.clone()))
        {
            return Ok(r);
        }
        let listed = d.undecided.iter().any(|c| {
            c["table"] == table && c["pk"] == pk && c["server"]["version"] == server.server_version && c["key"] == key
        });
        if !listed {
            d.undecided.push(describe(table, pk, server, local));
        }
        Err("waiting for the app's conflict resolver".into())
    }))
}

/// Identifies the local intent a decision was made for: a newer local edit of the row is asked about again
/// instead of getting a decision (a merge, say) made for what it replaced.
fn local_key(local: &LocalIntent) -> String {
    format!(
        "{}:{}:{}",
        local.op,
        local.base_version,
        Value::from(local.payload.clone())
    )
}

/// The conflict as the app's callback sees it (wire-form payloads), with the key its decision is kept under.
fn describe(table: &str, pk: &str, server: &ServerState, local: &LocalIntent) -> Value {
    json!({
        "table": table, "pk": pk, "key": local_key(local),
        "server": {"deleted": server.deleted, "payload": server.payload, "version": server.server_version},
        "local": {"op": local.op, "payload": local.payload, "baseVersion": local.base_version},
    })
}

#[wasm_bindgen]
impl Database {
    /// Conflicts waiting for the app's resolver since the last call:
    /// `[{ table, pk, server: { deleted, payload, version }, local: { op, payload, baseVersion } }]`.
    #[wasm_bindgen(js_name = takeUndecided)]
    pub fn take_undecided(&self) -> JsValue {
        let list = self
            .decisions
            .as_ref()
            .map(|d| std::mem::take(&mut d.borrow_mut().undecided))
            .unwrap_or_default();
        Value::Array(list)
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .unwrap_or(JsValue::NULL)
    }

    /// Records the app's decision for one conflict (`'server'`, `'client'`, or a merged wire-form payload
    /// object) at server `version`, and lets the row be sent again at once.
    pub fn decide(&self, table: &str, pk: &str, version: f64, key: String, decision: JsValue) -> Result<(), JsValue> {
        let Some(shared) = &self.decisions else {
            return Err(bad_argument(
                "decide: the database was opened without a conflict resolver",
            ));
        };
        let resolution = match decision.as_string().as_deref() {
            Some("server") => Resolution::AcceptServer,
            Some("client") => Resolution::KeepLocal,
            Some(other) => {
                return Err(bad_argument(format!(
                    "conflict resolver returned {other:?}: use 'server', 'client' or a merged row object"
                )));
            }
            None => match serde_wasm_bindgen::from_value::<Map<String, Value>>(decision) {
                Ok(merged) => Resolution::Merge(merged),
                Err(e) => return Err(bad_argument(format!("conflict resolver: the merged row: {e}"))),
            },
        };
        shared
            .borrow_mut()
            .decided
            .insert((table.to_owned(), pk.to_owned(), version as i64, key), resolution);
        crate::engine::retry_now(&self.conn, table, pk).map_err(|e| super::error::sync(&e))
    }
}
