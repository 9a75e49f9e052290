//! Sign-in, the sync cycle and what the app shows about it (status, conflicts, rejections).

use std::rc::Rc;

use serde::Serialize;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::Database;
use super::error::{self, js_error};
use crate::conflict::Resolution;
use crate::engine::Rejected;
use crate::progress::Phase;

fn to_js(v: &Value) -> JsValue {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}

fn busy() -> JsValue {
    js_error("BUSY", "a sync cycle is running")
}

#[wasm_bindgen]
impl Database {
    /// Binds the database to `user` at the first sign-in and sets the token; `WRONG_USER` for another user.
    #[wasm_bindgen(js_name = signIn)]
    pub fn sign_in(&self, user: &str, token: String) -> Result<(), JsValue> {
        let mut engine = self.engine.try_borrow_mut().map_err(|_| busy())?;
        engine.sign_in(user, token).map_err(|e| error::sync(&e))
    }

    /// The user this database belongs to (`null` before the first sign-in).
    #[wasm_bindgen(js_name = userId)]
    pub fn user_id(&self) -> Result<Option<String>, JsValue> {
        Ok(self.status.read().map_err(|e| error::sync(&e))?.user)
    }

    /// One cycle (hydrating first if this database never completed a hydration); `token` replaces the current
    /// one. Resolves to `{ applied, conflicts, rejected, retried }`; rejects with a coded error (`BUSY` if a
    /// cycle is already running). Nothing local is lost on failure.
    // The engine stays borrowed for the whole cycle on purpose: the other methods read through the shared
    // connection, and those that need the engine answer `BUSY` (try_borrow) instead of panicking.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn sync(&self, token: Option<String>) -> js_sys::Promise {
        let engine = Rc::clone(&self.engine);
        future_to_promise(async move {
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            if let Some(t) = token {
                e.set_token(t);
            }
            let r = match e.cycle().await {
                Ok(r) => r,
                Err(err) => {
                    // The request's URL without its query (cursors and limits say nothing to the app).
                    let url = e
                        .last_path()
                        .map(|p| e.transport().url(p.split('?').next().unwrap_or(p)));
                    return Err(error::with_url(error::sync(&err), &err, url));
                }
            };
            Ok(to_js(&json!({
                "applied": r.applied, "conflicts": r.conflicts, "rejected": r.rejected, "retried": r.retried,
            })))
        })
    }

    /// `{ phase: 'upload' | 'download' | 'hydrate' | null, uploaded, downloaded, pending, parked, rejected,
    /// cursor, hydrated, syncing, lastError: {code, message} | null, lastSyncedAt, hasSynced }`; `uploaded` and
    /// `downloaded` count the current phase; the last two come from the database, so they survive a reload.
    pub fn status(&self) -> Result<JsValue, JsValue> {
        let s = self.status.read().map_err(|e| error::sync(&e))?;
        let progress = s.progress;
        let phase = match progress.phase {
            Phase::Idle => Value::Null,
            Phase::Uploading => "upload".into(),
            Phase::Downloading => "download".into(),
            Phase::Hydrating => "hydrate".into(),
            Phase::Backfilling => "backfill".into(),
        };
        Ok(to_js(&json!({
            "phase": phase, "uploaded": progress.uploaded, "downloaded": progress.downloaded,
            "pending": s.pending, "parked": s.parked, "rejected": s.rejected, "cursor": s.cursor,
            "hydrated": s.hydrated, "syncing": self.engine.try_borrow_mut().is_err(),
            "lastError": s.last_error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
            "lastSyncedAt": s.last_synced, "hasSynced": s.last_synced.is_some(),
            "scopes": scopes_json(&s.scopes),
        })))
    }

    /// The shared scopes the device holds or is filling: `[{ scope, role, state, rows }]`.
    pub fn scopes(&self) -> Result<JsValue, JsValue> {
        Ok(to_js(&scopes_json(
            &self.status.read().map_err(|e| error::sync(&e))?.scopes,
        )))
    }

    /// What an inspector shows of the database (oversync-web adds the cycles, realtime and the browser's storage):
    /// `{ pending, parked, rejected, oldestPendingAt, cursor, windowUntil, hydrated, lastSyncedAt, deviceId,
    /// tables: [{ table, rows, pending }], databaseBytes, freeBytes, sqliteVersion, engineVersion, triggerFormat }`.
    pub fn diagnostics(&self) -> Result<JsValue, JsValue> {
        let d = crate::engine::Diagnostics::read(&self.conn).map_err(|e| error::sync(&e))?;
        let tables: Vec<Value> = d
            .tables
            .iter()
            .map(|t| json!({"table": t.table, "rows": t.rows, "pending": t.pending}))
            .collect();
        Ok(to_js(&json!({
            "pending": d.status.pending, "parked": d.status.parked, "rejected": d.status.rejected,
            "oldestPendingAt": d.oldest_pending_at, "cursor": d.status.cursor, "windowUntil": d.window_until,
            "hydrated": d.status.hydrated, "lastSyncedAt": d.status.last_synced, "deviceId": d.device_id,
            "tables": tables, "databaseBytes": d.database_bytes, "freeBytes": d.free_bytes,
            "sqliteVersion": d.sqlite_version, "engineVersion": d.engine_version, "triggerFormat": d.trigger_format,
        })))
    }

    /// Changes the server rejected for good: `[{ id, table, pk, reason, message }]`, oldest first.
    pub fn rejections(&self) -> Result<JsValue, JsValue> {
        let list = Rejected::read_all(&self.conn).map_err(|e| error::sync(&e))?;
        let v: Vec<Value> = list
            .into_iter()
            .map(|r| json!({"id": r.id, "table": r.table, "pk": r.pk, "reason": r.reason, "message": r.message}))
            .collect();
        Ok(to_js(&Value::Array(v)))
    }

    /// Conflicts resolved since the last call: `[{ table, pk, resolution, server, local }]` (empty while a cycle
    /// runs; they are kept for the next call).
    #[wasm_bindgen(js_name = takeConflicts)]
    pub fn take_conflicts(&self) -> JsValue {
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return js_sys::Array::new().into();
        };
        let v: Vec<Value> = engine
            .take_conflicts()
            .into_iter()
            .map(|c| {
                let (resolution, merged) = match c.resolution {
                    Resolution::AcceptServer => ("server", None),
                    Resolution::KeepLocal => ("client", None),
                    Resolution::Merge(m) => ("merge", Some(m)),
                };
                json!({
                    "table": c.table, "pk": c.pk, "resolution": resolution, "merged": merged,
                    "server": {"deleted": c.server.deleted, "payload": c.server.payload, "version": c.server.server_version},
                    "local": {"op": c.local.op, "payload": c.local.payload, "baseVersion": c.local.base_version},
                })
            })
            .collect();
        to_js(&Value::Array(v))
    }

    /// Queues rejection `id`'s row again as it is now (see `Engine::retry_rejected`); `BUSY` during a cycle.
    #[wasm_bindgen(js_name = retryRejected)]
    pub fn retry_rejected(&self, id: f64) -> Result<bool, JsValue> {
        let engine = self.engine.try_borrow().map_err(|_| busy())?;
        engine.retry_rejected(id as i64).map_err(|e| error::sync(&e))
    }

    /// Lets rejection `id` go (see `Engine::discard_rejected`); `BUSY` during a cycle.
    #[wasm_bindgen(js_name = discardRejected)]
    pub fn discard_rejected(&self, id: f64) -> Result<bool, JsValue> {
        let engine = self.engine.try_borrow().map_err(|_| busy())?;
        engine.discard_rejected(id as i64).map_err(|e| error::sync(&e))
    }

    /// Unparks every parked row; returns how many.
    #[wasm_bindgen(js_name = retryParked)]
    pub fn retry_parked(&self) -> Result<u32, JsValue> {
        Ok(self.status.unpark_all().map_err(|e| error::sync(&e))? as u32)
    }
}

fn scopes_json(scopes: &[crate::ScopeStatus]) -> Value {
    scopes
        .iter()
        .map(|s| json!({"scope": s.scope, "role": s.role, "state": s.state, "rows": s.rows}))
        .collect()
}
