//! The wasm-bindgen layer the npm package's worker drives (`npm/src/worker.ts`): open a database on OPFS, the
//! app's reads and writes, change notifications, and sync. Thin on purpose: type conversion and error mapping;
//! the engine does the work. Every error is a JS `Error` with a stable `code` (see `error.rs`).

mod error;
mod host;
mod resolve;
mod schedule;
mod storage;
mod sync;
mod values;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use js_sys::Array;
use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::engine::StatusReader;
use crate::{Engine, EngineConfig, Resolver, TableConfig};
use error::{bad_argument, js_error, sqlite};
pub use host::{Host, HostTransport};
pub use schedule::SyncSchedule;
use values::Params;

/// Options of [`Database::open`] (the worker fills them from `SyncClient.open`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenOptions {
    /// Database file name; also names its OPFS directory (one pool per file, owned by one worker).
    file: String,
    /// The sync server's base URL.
    url: String,
    /// The server schema the tables belong to.
    server_schema: String,
    /// SQL run at every open, before capture starts (`CREATE TABLE IF NOT EXISTS …`).
    #[serde(default)]
    init: String,
    tables: Vec<TableOption>,
    #[serde(default)]
    resolver: Option<String>,
    #[serde(default)]
    chunk_size: Option<usize>,
    #[serde(default)]
    download_limit: Option<i64>,
    /// Snapshot and download pages are sized to apply within this many ms (`0`: always `download_limit` rows).
    #[serde(default)]
    page_budget_ms: Option<f64>,
    /// Where the database lives (`opfs` by default; the package chooses it, see npm/src/storage.ts).
    #[serde(default)]
    storage: Option<storage::Kind>,
    /// The token claim naming the user (default `sub`); a token of another user than the bound one is refused.
    #[serde(default)]
    user_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableOption {
    name: String,
    #[serde(default)]
    key: Option<String>,
    /// The scope column of a shared table (docs/sharing.md §2).
    #[serde(default)]
    scope: Option<String>,
}

/// Tables touched by writes (local or applied by sync) since the last [`Database::take_changed`].
type Changed = Arc<Mutex<BTreeSet<String>>>;
/// While `Some`, the tables a statement being prepared reads.
type Reads = Arc<Mutex<Option<BTreeSet<String>>>>;

/// One open database with its sync engine.
#[wasm_bindgen]
pub struct Database {
    conn: Rc<Connection>,
    engine: Rc<RefCell<Engine<HostTransport>>>,
    changed: Changed,
    reads: Reads,
    storage: Rc<storage::Storage>,
    /// The engine's status (counts, progress, last error), readable while a cycle holds the engine.
    status: StatusReader,
    /// This database's device id (it never changes).
    device: String,
    /// The app's conflict decisions (`resolver: "custom"`), see [`resolve`].
    decisions: Option<resolve::Shared>,
}

fn app_table(name: &str) -> bool {
    !name.starts_with("_sync_") && !name.starts_with("sqlite_")
}

#[wasm_bindgen]
impl Database {
    /// Opens (creating if needed) the database: installs its OPFS pool, runs `init`, starts the engine.
    pub async fn open(options: JsValue, host: Host) -> Result<Database, JsValue> {
        let opts: OpenOptions =
            serde_wasm_bindgen::from_value(options).map_err(|e| bad_argument(format!("open options: {e}")))?;
        if opts.file.is_empty()
            || !opts
                .file
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad_argument("file: use letters, digits, '-', '_' and '.'"));
        }
        let kind = opts.storage.unwrap_or(storage::Kind::Opfs);
        let (mut conn, storage) = storage::open(&opts.file, kind).await?;
        conn.pragma_update(None, "foreign_keys", true).map_err(|e| sqlite(&e))?;
        conn.execute_batch(&opts.init).map_err(|e| sqlite(&e))?;
        let changed = Changed::default();
        let reads = Reads::default();
        hooks(&mut conn, &changed, &reads).map_err(|e| sqlite(&e))?;
        let mut cfg = EngineConfig::new(
            &opts.server_schema,
            opts.tables
                .iter()
                .map(|t| TableConfig {
                    table: t.name.clone(),
                    key: t.key.clone().unwrap_or_else(|| "id".into()),
                    scope: t.scope.clone(),
                })
                .collect(),
        );
        let mut decisions = None;
        cfg.resolver = match opts.resolver.as_deref() {
            None | Some("server-wins") => Resolver::ServerWins,
            Some("client-wins") => Resolver::ClientWins,
            Some("custom") => {
                let shared = resolve::Shared::default();
                decisions = Some(Rc::clone(&shared));
                resolve::resolver(shared)
            }
            Some(other) => {
                return Err(bad_argument(format!(
                    "resolver {other:?}: use server-wins, client-wins or custom"
                )));
            }
        };
        cfg.chunk_size = opts.chunk_size.unwrap_or(cfg.chunk_size);
        cfg.download_limit = opts.download_limit.unwrap_or(cfg.download_limit);
        // `0` is kept as given: the pacer treats a budget that is not positive as none.
        cfg.page_budget_ms = opts.page_budget_ms.or(cfg.page_budget_ms);
        cfg.user_claim = opts.user_claim.unwrap_or(cfg.user_claim);
        let engine = Engine::open(conn, cfg, HostTransport::new(&opts.url, host)).map_err(|e| error::sync(&e))?;
        Ok(Database {
            conn: engine.shared_conn(),
            status: engine.status_reader(),
            device: engine.source_id().map_err(|e| error::sync(&e))?,
            decisions,
            engine: Rc::new(RefCell::new(engine)),
            changed,
            reads,
            storage: Rc::new(storage),
        })
    }

    /// This database's device id (the `did` its tokens must carry).
    #[wasm_bindgen(js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.device.clone()
    }

    /// Executes one statement; `{ changes, lastInsertRowid }`.
    pub fn exec(&self, sql: &str, params: JsValue) -> Result<JsValue, JsValue> {
        let params = Params::from_js(&params)?;
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| sqlite(&e))?;
        let changes = params.execute(&mut stmt)?;
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&out, &"changes".into(), &(changes as f64).into());
        let rowid = self.conn.last_insert_rowid() as f64;
        let _ = js_sys::Reflect::set(&out, &"lastInsertRowid".into(), &rowid.into());
        Ok(out.into())
    }

    /// Executes one statement once per parameter set of `rows` (an array of arrays or objects), prepared once and
    /// all or nothing (a savepoint: inside an open transaction too); `{ changes, lastInsertRowid }` over all rows.
    /// A failing row rolls the others back and names its index.
    #[wasm_bindgen(js_name = execMany)]
    pub fn exec_many(&self, sql: &str, rows: JsValue) -> Result<JsValue, JsValue> {
        if !Array::is_array(&rows) {
            return Err(bad_argument(
                "execMany: rows must be an array of parameter arrays or objects",
            ));
        }
        let rows: &Array = rows.unchecked_ref();
        self.conn
            .execute_batch("SAVEPOINT oversync_exec_many")
            .map_err(|e| sqlite(&e))?;
        let run = || -> Result<usize, JsValue> {
            let mut stmt = self.conn.prepare_cached(sql).map_err(|e| sqlite(&e))?;
            let mut changes = 0;
            for (i, row) in rows.iter().enumerate() {
                let at = |e: JsValue| error::prefixed(e, &format!("execMany row {i}: "));
                changes += Params::from_js(&row).and_then(|p| p.execute(&mut stmt)).map_err(at)?;
            }
            Ok(changes)
        };
        let changes = match run() {
            Ok(n) => n,
            Err(e) => {
                let _ = self
                    .conn
                    .execute_batch("ROLLBACK TO oversync_exec_many; RELEASE oversync_exec_many");
                return Err(e);
            }
        };
        self.conn
            .execute_batch("RELEASE oversync_exec_many")
            .map_err(|e| sqlite(&e))?;
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&out, &"changes".into(), &(changes as f64).into());
        let rowid = self.conn.last_insert_rowid() as f64;
        let _ = js_sys::Reflect::set(&out, &"lastInsertRowid".into(), &rowid.into());
        Ok(out.into())
    }

    /// Runs several statements without parameters (a script).
    #[wasm_bindgen(js_name = execScript)]
    pub fn exec_script(&self, sql: &str) -> Result<(), JsValue> {
        self.conn.execute_batch(sql).map_err(|e| sqlite(&e))
    }

    /// Runs a query; rows as objects.
    pub fn query(&self, sql: &str, params: JsValue) -> Result<Array, JsValue> {
        let params = Params::from_js(&params)?;
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| sqlite(&e))?;
        params.query(&mut stmt)
    }

    /// The app tables a query reads (for live queries), found by SQLite's authorizer while preparing it.
    #[wasm_bindgen(js_name = tablesRead)]
    pub fn tables_read(&self, sql: &str) -> Result<Array, JsValue> {
        *lock(&self.reads) = Some(BTreeSet::new());
        let prepared = self.conn.prepare(sql).map(drop);
        let tables = lock(&self.reads).take().unwrap_or_default();
        prepared.map_err(|e| sqlite(&e))?;
        Ok(tables.into_iter().map(JsValue::from).collect())
    }

    /// App tables written since the last call (by the app or by sync); the worker notifies live queries.
    #[wasm_bindgen(js_name = takeChanged)]
    pub fn take_changed(&self) -> Array {
        let tables = std::mem::take(&mut *lock(&self.changed));
        tables.into_iter().map(JsValue::from).collect()
    }

    /// `BEGIN IMMEDIATE` (the worker keeps sync from resuming until `commit` or `rollback`).
    pub fn begin(&self) -> Result<(), JsValue> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| sqlite(&e))
    }

    /// `COMMIT`.
    pub fn commit(&self) -> Result<(), JsValue> {
        self.conn.execute_batch("COMMIT").map_err(|e| sqlite(&e))
    }

    /// `ROLLBACK` (a no-op when no transaction is open).
    pub fn rollback(&self) -> Result<(), JsValue> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK").map_err(|e| sqlite(&e))
    }

    /// True while an app transaction is open.
    #[wasm_bindgen(js_name = inTransaction)]
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Waits until every commit so far is stored (IndexedDB writes after the commit; OPFS and memory at once).
    pub fn flush(&self) -> js_sys::Promise {
        let storage = Rc::clone(&self.storage);
        wasm_bindgen_futures::future_to_promise(async move { storage.flush().await.map(|()| JsValue::UNDEFINED) })
    }

    /// Closes the database and releases its storage (another worker can open it); `erase` also deletes an
    /// IndexedDB copy (sign-out; OPFS files are removed by the package once released). Fails with `BUSY` while
    /// a sync cycle runs.
    pub fn close(self, erase: bool) -> Result<js_sys::Promise, JsValue> {
        // Every handle on the connection goes before the engine gives it back to be closed.
        let Database {
            conn,
            engine,
            storage,
            status,
            ..
        } = self;
        drop((conn, status));
        let engine = Rc::into_inner(engine).ok_or_else(|| js_error("BUSY", "a sync cycle is running"))?;
        engine.into_inner().into_conn().close().map_err(|(_, e)| sqlite(&e))?;
        let storage = Rc::into_inner(storage).ok_or_else(|| js_error("BUSY", "a flush is running"))?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            storage.release(erase).await.map(|()| JsValue::UNDEFINED)
        }))
    }
}

/// The update hook records written app tables; the authorizer records read tables while `reads` is `Some`.
fn hooks(conn: &mut Connection, changed: &Changed, reads: &Reads) -> rusqlite::Result<()> {
    let changed = Arc::clone(changed);
    conn.update_hook(Some(move |_: rusqlite::hooks::Action, _: &str, table: &str, _: i64| {
        // Called for every row written (hydration writes 100k+): allocate only for a table not seen yet.
        if app_table(table) {
            let mut set = lock(&changed);
            if !set.contains(table) {
                set.insert(table.to_owned());
            }
        }
    }))?;
    let reads = Arc::clone(reads);
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if let AuthAction::Read { table_name, .. } = ctx.action
            && let Some(set) = lock(&reads).as_mut()
            && app_table(table_name)
            && !set.contains(table_name)
        {
            set.insert(table_name.to_owned());
        }
        Authorization::Allow
    }))
}

/// The hooks' shared sets (wasm is single-threaded; the hooks only have to be `Send`). A poisoned lock only
/// means a hook panicked; the set is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
