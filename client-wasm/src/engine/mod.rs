//! The sync engine: configuration, sign-in, status and the sync cycle (PROTOCOL.md §7.6–§7.7). Uploading is in
//! `upload.rs`, downloading and applying in `apply.rs`, snapshot hydration in `snapshot.rs` (its page sizes in
//! `pace.rs`).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use oversync_protocol::TableRef;
use oversync_protocol::order::{FkEdge, parent_first};
use rusqlite::{Connection, OptionalExtension};

use crate::conflict::{Conflict, Resolver};
use crate::progress::{Phase, Tracker};
use crate::schema;
use crate::transport::{Credentials, NetworkError, Reply, Transport};
use crate::triggers::{TableShape, quote};

mod apply;
mod diagnostics;
mod outcome;
mod pace;
mod rehydrate;
mod rejected;
mod scopes;
mod snapshot;
mod status;
mod tx;

pub use status::{LastError, Status, StatusReader, sqlite_code};
mod upload;
mod write;

pub use diagnostics::{Diagnostics, TableDiagnostics};
pub use scopes::ScopeStatus;
pub use upload::UploadReport;

/// A synced table.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Local (and server) table name.
    pub table: String,
    /// The sync key column: canonical UUID TEXT, or a 16-byte BLOB (detected from its declared type).
    pub key: String,
    /// The column naming a row's scope, for a table whose rows are shared (docs/sharing.md §2; the server's
    /// `scope_column`). NULL in it keeps the row a private draft.
    pub scope: Option<String>,
}

impl TableConfig {
    /// A table keyed by `id`.
    pub fn new(table: &str) -> Self {
        Self {
            table: table.into(),
            key: "id".into(),
            scope: None,
        }
    }

    /// A shared table keyed by `id` whose scope is in `column`.
    pub fn scoped(table: &str, column: &str) -> Self {
        Self {
            scope: Some(column.into()),
            ..Self::new(table)
        }
    }
}

/// Engine configuration.
#[derive(Debug)]
pub struct EngineConfig {
    /// The server schema the tables live in (e.g. `business`).
    pub schema: String,
    /// Synced tables (they must exist before [`Engine::open`]).
    pub tables: Vec<TableConfig>,
    /// Changes per upload request (capped by the server's limit on `batch_too_large`).
    pub chunk_size: usize,
    /// Download and snapshot page size (snapshot pages at most 1000).
    pub download_limit: i64,
    /// Snapshot and download pages are sized so that applying one takes about this long: a hydration (or a
    /// download) starts with pages of 100 rows and grows them up to `download_limit` as the device proves fast
    /// enough. A page is one transaction, and a browser worker answers no query while it runs. `None` or `0`
    /// (or a host without a clock) asks for `download_limit` rows every time. Default: 30 ms on wasm32 (the
    /// browser); off natively, where nothing waits on the engine's thread and a slow fsync would only shrink
    /// pages (P3 native ~5–15% slower). Only the first loop after opening starts at 100 rows: the next snapshot
    /// or download resumes from the size the last one ended with.
    pub page_budget_ms: Option<f64>,
    /// Ask for two snapshot pages at once when the server names the page after next (§8.2 `then_after_*`,
    /// default on); off, a hydration has one page request in flight.
    pub snapshot_lookahead: bool,
    /// Conflict strategy.
    pub resolver: Resolver,
    /// The device id for a new database; `None` draws a random one (a reinstall then counts as a new device).
    pub device_id: Option<String>,
    /// The token claim that names the user (default `sub`, as the server's `user_claim`). Before each request
    /// the engine reads it from the token's payload (without verifying it) and refuses a token of another user
    /// than the one the database is bound to ([`SyncError::TokenUserMismatch`]).
    pub user_claim: String,
}

impl EngineConfig {
    /// Defaults: chunks of 200, pages of 1000, server wins, the user in `sub`.
    pub fn new(schema: &str, tables: Vec<TableConfig>) -> Self {
        Self {
            schema: schema.into(),
            tables,
            chunk_size: 200,
            download_limit: 1000,
            page_budget_ms: cfg!(target_arch = "wasm32").then_some(30.0),
            snapshot_lookahead: true,
            resolver: Resolver::ServerWins,
            device_id: None,
            user_claim: "sub".into(),
        }
    }
}

/// Why a sync step failed. Nothing local is lost on any of them: pending rows stay, frozen sends are repeated.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No response.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// 401: the token is missing, expired or rejected; obtain a new one. The server's reason (its message),
    /// when it gave one.
    #[error("authentication failed{}", reason(.0))]
    Unauthorized(String),
    /// Another non-200 answer.
    #[error("server answered {status}{}{}", describe_body(body), request_tag(request_id.as_deref()))]
    Http {
        /// Status code.
        status: u16,
        /// Body text.
        body: String,
        /// The server's `Retry-After` (an overloaded server's 429 or 503): wait at least this long.
        retry_after: Option<Duration>,
        /// The server's `X-Request-Id` for the request: what its log line says (a user's report is matched by it).
        request_id: Option<String>,
    },
    /// The server's answer does not follow the protocol (e.g. wrong number of statuses).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The local database failed.
    #[error("local database: {0}")]
    Storage(#[from] rusqlite::Error),
    /// No token yet.
    #[error("not signed in")]
    NotSignedIn,
    /// The database belongs to another user; open another file per user.
    #[error("this database belongs to {0}")]
    WrongUser(String),
    /// The token names another user than the one the database belongs to (the app switched users without
    /// opening that user's database). Nothing was sent: the bound user's pending writes must not reach another
    /// account.
    #[error("the token is for user {token_user} but this database belongs to user {bound_user}; sign out first")]
    TokenUserMismatch {
        /// The user the token's claim names.
        token_user: String,
        /// The user the database is bound to.
        bound_user: String,
    },
    /// Misconfiguration (e.g. a synced table without its key column).
    #[error("configuration: {0}")]
    Config(String),
    /// The host's auth failed while asked for a fresh token (the app's callback threw or did not answer).
    #[error("{0}")]
    Auth(String),
    /// The host's auth failed for a while: the network, or its server, was unavailable (a temporary
    /// [`crate::transport::AuthFailure`]); the next cycle asks again.
    #[error("{0}")]
    AuthUnavailable(String),
}

impl SyncError {
    /// The error for a non-200 `reply`.
    /// A 401 `reply`, with the server's reason.
    pub(crate) fn unauthorized(reply: &Reply) -> Self {
        Self::Unauthorized(envelope(&reply.body).map(|(_, m)| m).unwrap_or_default())
    }

    /// A body that is not the JSON `what` should be: an HTML page is named as such (a wrong URL, or a proxy's
    /// error page), else the parser's error.
    pub(crate) fn not_json(what: &str, body: &[u8], e: serde_json::Error) -> Self {
        if looks_like_html(body) {
            Self::Protocol(format!(
                "{what}: the answer is an HTML page, not the sync API's JSON: is the URL the sync server's?"
            ))
        } else {
            Self::Protocol(format!("{what}: {e}"))
        }
    }

    pub(crate) fn http(reply: &Reply) -> Self {
        Self::Http {
            status: reply.status,
            body: String::from_utf8_lossy(&reply.body).into(),
            retry_after: reply.retry_after,
            request_id: reply.request_id.clone(),
        }
    }

    /// How long the server asked to be left alone (`Retry-After` on an HTTP error); the host's scheduler waits
    /// at least this long before the next cycle ([`crate::schedule::Scheduler::finish_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The server is overloaded (429 `too_many_requests`, 503 `server_busy`): nothing was done, come back later.
    pub fn is_overload(&self) -> bool {
        matches!(self, Self::Http { status: 429 | 503, .. })
    }
}

/// A change the server rejected for good; it was dropped from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// This rejection's id (for `retry_rejected` / `discard_rejected`).
    pub id: i64,
    /// Local table.
    pub table: String,
    /// Canonical pk.
    pub pk: String,
    /// `bad_payload`, `unregistered_table` or `scope_forbidden`.
    pub reason: String,
    /// The server's message.
    pub message: Option<String>,
}

impl Rejected {
    /// The rejection list in `conn`, oldest first (see [`Engine::rejections`]).
    pub fn read_all(conn: &Connection) -> Result<Vec<Self>, SyncError> {
        let mut stmt =
            conn.prepare("SELECT id, table_name, pk_uuid, reason, message FROM _sync_rejections ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(Rejected {
                id: r.get(0)?,
                table: r.get(1)?,
                pk: r.get(2)?,
                reason: r.get(3)?,
                message: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The engine over one SQLite database.
pub struct Engine<T> {
    conn: Rc<Connection>,
    cfg: EngineConfig,
    transport: T,
    token: Option<String>,
    shapes: BTreeMap<String, TableShape>,
    /// The shared tables and their scope columns.
    scoped: Rc<scopes::Scoped>,
    rank: HashMap<String, usize>,
    chunk: usize,
    conflicts: Vec<Conflict>,
    /// The last cycle's error (shared with [`StatusReader`]).
    last_error: Rc<std::cell::RefCell<Option<LastError>>>,
    token_provider: Option<Box<TokenProvider>>,
    /// This database's device id, sent with every request (it never changes).
    device: String,
    /// `None` until asked; then the server's capabilities, or `Some(None)` for a classic server.
    capabilities: Option<Option<oversync_protocol::wire::Capabilities>>,
    /// The page size the last paced snapshot or download loop ended with; the next one resumes from it.
    pub(crate) page_rows: Option<i64>,
    /// What the running cycle is doing (read by the host while the cycle runs).
    pub(crate) progress: Tracker,
    /// The path of the last request sent (a failed cycle's error names its URL).
    last_path: Option<String>,
    /// The synced tables were found registered on the server (or this database has synced before): the check
    /// before a cycle ([`Engine::check_registered`]) is done for the engine's life.
    pub(crate) registered: bool,
}

/// Produces a fresh bearer token (the app's auth), asked once after a 401 before giving up.
pub type TokenProvider = dyn Fn() -> Option<String>;

impl<T: Transport> Engine<T> {
    /// Opens the engine on `conn`: creates the sync tables (a fresh random device id for a new database),
    /// repairs `apply_mode`, and (re)creates the capture triggers.
    pub fn open(conn: Connection, cfg: EngineConfig, transport: T) -> Result<Self, SyncError> {
        let device = cfg
            .device_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        schema::create(&conn, &device)?;
        let mut shapes = BTreeMap::new();
        if cfg.schema != cfg.schema.to_lowercase() {
            return Err(SyncError::Config(format!(
                "schema {:?} must be lower case (the server normalises names)",
                cfg.schema
            )));
        }
        for t in &cfg.tables {
            if t.table != t.table.to_lowercase() {
                return Err(SyncError::Config(format!(
                    "table {:?} must be lower case (the server normalises names)",
                    t.table
                )));
            }
            let columns = schema::columns(&conn, &t.table)?;
            let key = columns
                .iter()
                .find(|c| c.name == t.key)
                .ok_or_else(|| SyncError::Config(format!("table {} has no column {}", t.table, t.key)))?;
            let shape = TableShape {
                table: t.table.clone(),
                key: t.key.clone(),
                blob_key: key.blob,
                columns: columns.clone(),
            };
            shapes.insert(t.table.clone(), shape);
        }
        let mut scoped = scopes::Scoped::new();
        for t in &cfg.tables {
            if let Some(column) = &t.scope {
                if !shapes[&t.table].columns.iter().any(|c| c.name == *column) || *column == t.key {
                    return Err(SyncError::Config(format!(
                        "table {} has no scope column {column} (other than its key)",
                        t.table
                    )));
                }
                scoped.insert(t.table.clone(), (shapes[&t.table].clone(), column.clone()));
            }
        }
        let all: Vec<TableShape> = shapes.values().cloned().collect();
        schema::startup(&conn, &all)?;
        let rank = fk_rank(&conn, &cfg.schema, &shapes)?;
        let chunk = cfg.chunk_size.max(1);
        // An existing database keeps its device id (the one drawn above is for a new database only).
        let device = conn.query_row("SELECT source_id FROM _sync_client_info WHERE id = 1", [], |r| r.get(0))?;
        Ok(Self {
            conn: Rc::new(conn),
            cfg,
            transport,
            token: None,
            shapes,
            scoped: Rc::new(scoped),
            rank,
            chunk,
            conflicts: Vec::new(),
            last_error: Rc::default(),
            token_provider: None,
            device,
            capabilities: None,
            page_rows: None,
            progress: Tracker::default(),
            last_path: None,
            registered: false,
        })
    }

    /// Signs in: binds the database to `user_id` at the first sign-in (guest writes made before belong to that
    /// user) and refuses another user's token. `token` is the bearer token (`did` = [`Engine::source_id`]).
    pub fn sign_in(&mut self, user_id: &str, token: String) -> Result<(), SyncError> {
        let owner: Option<String> =
            self.conn
                .query_row("SELECT user_id FROM _sync_client_info WHERE id = 1", [], |r| r.get(0))?;
        match owner {
            Some(o) if o != user_id => return Err(SyncError::WrongUser(o)),
            Some(_) => {}
            None => {
                self.conn
                    .execute("UPDATE _sync_client_info SET user_id = ?1 WHERE id = 1", [user_id])?;
            }
        }
        self.token = Some(token);
        Ok(())
    }

    /// The current bearer token (tools and tests hand it over when re-opening a database).
    pub fn token_for_tests(&self) -> String {
        self.token.clone().unwrap_or_default()
    }

    /// Replaces the bearer token (after a 401).
    pub fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    /// This database's device id: the `did` of classic tokens, and the `Oversync-Device-Id` header of every
    /// request (for tokens without a device claim).
    pub fn source_id(&self) -> Result<String, SyncError> {
        Ok(self.device.clone())
    }

    /// The database, for the app's own reads and writes (writes are captured by the triggers).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A shared handle on the database, for a host that serves the app's reads and writes while a sync cycle is
    /// waiting for the network. The engine never holds a transaction open across a request, so writes made
    /// between its steps are safe (they are captured and sent by a later cycle); the host must not hold an app
    /// transaction open when a step resumes. Use `unchecked_transaction` for app transactions.
    pub fn shared_conn(&self) -> Rc<Connection> {
        Rc::clone(&self.conn)
    }

    /// Folds the writes captured since the last engine step into the pending queue now, and returns how many
    /// it folded. Every engine step does this first; call it before reading `_sync_pending` directly (tools,
    /// tests).
    pub fn fold_captured(&self) -> Result<usize, SyncError> {
        Ok(crate::capture::fold(&self.conn)?)
    }

    /// The transport (tests wrap it to inject faults).
    /// The path (with its query) of the last request the engine sent: the one a cycle's network, HTTP or
    /// protocol error came from.
    pub fn last_path(&self) -> Option<&str> {
        self.last_path.as_deref()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Changes the server rejected for good (`bad_payload`, `unregistered_table`), oldest first.
    pub fn rejections(&self) -> Result<Vec<Rejected>, SyncError> {
        Rejected::read_all(&self.conn)
    }

    /// Closes the engine and returns the connection.
    ///
    /// # Panics
    /// If a handle from [`Engine::shared_conn`] is still alive.
    pub fn into_conn(self) -> Connection {
        Rc::into_inner(self.conn).expect("a shared connection handle outlived the engine")
    }

    /// One sync cycle: upload every eligible pending row, then download until the window is drained.
    pub async fn sync(&mut self) -> Result<UploadReport, SyncError> {
        if let Err(e) = self.check_registered().await {
            self.status_reader().finish(Err(&e));
            return Err(e);
        }
        // Download even when the upload failed: one row the server keeps refusing must not stop the other way. But
        // a 503 (`server_busy`) asks the whole client to wait; a 429 limits only uploads, so downloads still go.
        self.progress.enter(Phase::Uploading);
        let uploaded = self.upload().await;
        let busy = matches!(&uploaded, Err(SyncError::Http { status: 503, .. }));
        self.progress.enter(Phase::Downloading);
        let downloaded = if busy { Ok(0) } else { self.download().await };
        // Scopes joined on the way are filled once the stream is at its top (docs/sharing.md §5.3).
        let downloaded = match downloaded {
            Ok(n) => self.backfill_scopes().await.map(|b| n + b),
            e => e,
        };
        self.progress.idle();
        let result = uploaded.and_then(|report| downloaded.map(|_| report));
        self.status_reader().finish(result.as_ref().map(|_| ()));
        if result.is_ok() {
            // Kept in the database, so "last synced" and "has synced" survive a reload.
            self.conn.execute(
                "INSERT INTO _sync_status (id, last_synced_at) VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                 ON CONFLICT (id) DO UPDATE SET last_synced_at = excluded.last_synced_at",
                [],
            )?;
        }
        result
    }

    /// Pending, parked and rejected counts, the cursor and the last error.
    pub fn status(&self) -> Result<Status, SyncError> {
        self.status_reader().read()
    }

    /// The device's sync state for an inspector ([`Diagnostics`]).
    pub fn diagnostics(&self) -> Result<Diagnostics, SyncError> {
        Diagnostics::read(&self.conn)
    }

    /// The status, readable while a cycle holds the engine (hosts keep no status of their own).
    pub fn status_reader(&self) -> StatusReader {
        StatusReader {
            conn: Rc::clone(&self.conn),
            progress: self.progress.clone(),
            last_error: Rc::clone(&self.last_error),
            scoped: Rc::clone(&self.scoped),
        }
    }

    /// One cycle as a host runs it: a hydration first if this database never completed one, then
    /// [`Engine::sync`]. Its outcome is the status's last error.
    pub async fn cycle(&mut self) -> Result<UploadReport, SyncError> {
        if !self.hydrated()?
            && let Err(e) = self.hydrate(false).await
        {
            self.status_reader().finish(Err(&e));
            return Err(e);
        }
        self.sync().await
    }

    /// What the running cycle is doing; the handle stays valid (and shared) while a cycle holds the engine.
    pub fn progress(&self) -> Tracker {
        self.progress.clone()
    }

    /// Conflicts resolved since the last call (for the app to show).
    pub fn take_conflicts(&mut self) -> Vec<Conflict> {
        std::mem::take(&mut self.conflicts)
    }

    /// The current upload chunk size (halved on `batch_too_large` or 413 until restart).
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// Unparks every parked row (an app-triggered retry).
    pub fn retry_parked(&self) -> Result<usize, SyncError> {
        self.status_reader().unpark_all()
    }

    /// Sets the token provider: asked for a token when there is none, and once more after a 401.
    pub fn set_token_provider(&mut self, provider: impl Fn() -> Option<String> + 'static) {
        self.token_provider = Some(Box::new(provider));
    }

    /// The current token (asking the provider when there is none), refused if it is another user's.
    fn token(&mut self) -> Result<String, SyncError> {
        if self.token.is_none() {
            self.token = self.token_provider.as_ref().and_then(|p| p());
        }
        let token = self.token.clone().ok_or(SyncError::NotSignedIn)?;
        self.refuse_other_user(&token)?;
        Ok(token)
    }

    /// [`SyncError::TokenUserMismatch`] when `token` definitely names another user than the bound one.
    fn refuse_other_user(&self, token: &str) -> Result<(), SyncError> {
        let bound: Option<String> = self
            .conn
            .prepare_cached("SELECT user_id FROM _sync_client_info WHERE id = 1")?
            .query_row([], |r| r.get(0))?;
        match (
            crate::token::other_user(token, &self.cfg.user_claim, bound.as_deref()),
            bound,
        ) {
            (Some(token_user), Some(bound_user)) => Err(SyncError::TokenUserMismatch { token_user, bound_user }),
            _ => Ok(()),
        }
    }

    /// The credentials of one request.
    fn credentials<'a>(&'a self, token: &'a str) -> Credentials<'a> {
        Credentials {
            token,
            device: &self.device,
        }
    }

    /// A fresh token after a 401: the one place the engine asks for one. From the token provider when one is
    /// set (native hosts), else from the transport's host (the browser's `auth` callback, asynchronously).
    /// The caller repeats its request once with it.
    async fn fresh_token(&self) -> Result<Option<String>, SyncError> {
        match &self.token_provider {
            Some(provider) => Ok(provider()),
            None => self.transport.fresh_token().await.map_err(|f| match f.temporary {
                true => SyncError::AuthUnavailable(f.message),
                false => SyncError::Auth(f.message),
            }),
        }
    }

    /// One request with the current token; after a 401 a fresh token ([`Engine::fresh_token`]) is asked for
    /// once and the request is repeated. A 401 that persists is [`SyncError::Unauthorized`]. A token of another user
    /// (the first or the fresh one) is refused before anything is sent.
    async fn request(&mut self, path: &str, body: Option<&[u8]>) -> Result<crate::transport::Reply, SyncError> {
        let mut refreshed = false;
        loop {
            let token = self.token()?;
            self.last_path = Some(path.to_owned());
            let reply = match body {
                Some(b) => self.transport.post(path, self.credentials(&token), b.to_vec()).await?,
                None => self.transport.get(path, self.credentials(&token)).await?,
            };
            if reply.status != 401 {
                return Ok(reply);
            }
            let fresh = if refreshed { None } else { self.fresh_token().await? };
            match fresh {
                Some(t) => {
                    self.token = Some(t);
                    refreshed = true;
                }
                None => return Err(SyncError::unauthorized(&reply)),
            }
        }
    }

    /// A GET answered 200 with a JSON body of type `R` (`what` names it in a protocol error).
    async fn get_json<R: serde::de::DeserializeOwned>(&mut self, path: &str, what: &str) -> Result<R, SyncError> {
        let reply = self.request(path, None).await?;
        if reply.status != 200 {
            return Err(SyncError::http(&reply));
        }
        serde_json::from_slice(&reply.body).map_err(|e| SyncError::not_json(what, &reply.body, e))
    }

    fn cursor(&self) -> Result<(i64, i64), SyncError> {
        Ok(self.conn.query_row(
            "SELECT last_server_seq_seen, window_until FROM _sync_client_info WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// True once a full hydration has completed.
    pub fn hydrated(&self) -> Result<bool, SyncError> {
        Ok(self
            .conn
            .query_row("SELECT hydrated FROM _sync_client_info WHERE id = 1", [], |r| r.get(0))?)
    }

    /// Metadata of one row, for tests and tools: `(server_version, deleted)`.
    pub fn row_meta(&self, table: &str, pk: &str) -> Result<Option<(i64, bool)>, SyncError> {
        Ok(self
            .conn
            .query_row(
                "SELECT server_version, deleted FROM _sync_row_meta WHERE table_name = ?1 AND pk_uuid = ?2",
                [table, pk],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}

/// Parent-first rank of the synced tables from the local FK graph (`PRAGMA foreign_key_list`).
fn fk_rank(
    conn: &Connection,
    schema: &str,
    shapes: &BTreeMap<String, TableShape>,
) -> rusqlite::Result<HashMap<String, usize>> {
    let tref = |t: &str| TableRef::new(schema, t);
    let mut edges = Vec::new();
    for table in shapes.keys() {
        let mut stmt = conn.prepare(&format!("PRAGMA foreign_key_list({})", quote(table)))?;
        let parents: Vec<String> = stmt.query_map([], |r| r.get(2))?.collect::<Result<_, _>>()?;
        edges.extend(parents.into_iter().filter(|p| shapes.contains_key(p)).map(|p| FkEdge {
            child: tref(table),
            parent: tref(&p),
        }));
    }
    let tables: Vec<TableRef> = shapes.keys().map(|t| tref(t)).collect();
    Ok(parent_first(&tables, &edges)
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t.table, i))
        .collect())
}

/// Lets a row that is backing off be sent at the next cycle (the app decided its conflict). A function of the
/// connection, not the engine: the host may call it while a cycle holds the engine.
pub fn retry_now(conn: &Connection, table: &str, pk: &str) -> Result<(), SyncError> {
    conn.execute(
        "UPDATE _sync_pending SET next_attempt_at = NULL WHERE table_name = ?1 AND pk_uuid = ?2",
        [table, pk],
    )?;
    Ok(())
}

/// The `{"error", "message"}` envelope of an error answer (PROTOCOL.md §4.7), when the body is one.
fn envelope(body: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: String,
        #[serde(default)]
        message: String,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| (e.error, e.message))
}

fn looks_like_html(body: &[u8]) -> bool {
    // An HTML page (`<!doctype html>`, `<html>`) or any markup: never the API's JSON.
    String::from_utf8_lossy(&body[..body.len().min(64)])
        .trim_start()
        .starts_with('<')
}

/// `: <reason>`, or nothing for an empty one.
fn reason(r: &str) -> String {
    if r.is_empty() { String::new() } else { format!(": {r}") }
}

/// An error answer's body for a message: the envelope's code and message, "an HTML page", or its first 200
/// characters.
/// ` (request id …)` when the server named its log line for the request.
fn request_tag(id: Option<&str>) -> String {
    id.map(|id| format!(" (request id {id})")).unwrap_or_default()
}

fn describe_body(body: &str) -> String {
    if let Some((code, message)) = envelope(body.as_bytes()) {
        return format!(" {code}: {message}");
    }
    if looks_like_html(body.as_bytes()) {
        return " with an HTML page, not the sync API's JSON (a proxy's error page, or not the sync server)".into();
    }
    let short: String = body.chars().take(200).collect();
    if short.is_empty() {
        String::new()
    } else {
        format!(": {short}")
    }
}
