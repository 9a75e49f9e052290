//! A real server in-process (on a fresh database) and client devices, each an in-memory SQLite database with the
//! demo schema, talking HTTP to it.

use std::cell::{Cell, RefCell};

use oversync_client::transport::{Credentials, HttpTransport, NetworkError, Reply, Transport};
use oversync_client::{Engine, EngineConfig, TableConfig};
use rusqlite::Connection;
use serde_json::Value;

/// The local demo schema: TEXT UUID keys for users/posts, BLOB keys for files/file_reviews.
pub const LOCAL_SCHEMA: &str = "
CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, created_at INTEGER, updated_at INTEGER);
CREATE TABLE posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL,
  author_id TEXT REFERENCES users(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED, created_at INTEGER, updated_at INTEGER);
CREATE TABLE files (id BLOB PRIMARY KEY, name TEXT NOT NULL, data BLOB);
CREATE TABLE file_reviews (id BLOB PRIMARY KEY, review TEXT NOT NULL,
  file_id BLOB REFERENCES files(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE team_posts (id TEXT PRIMARY KEY, team_id TEXT, title TEXT NOT NULL DEFAULT '', content TEXT NOT NULL DEFAULT '');
";

pub type Device = Engine<Flaky>;

/// Something a test runs inside a request.
pub type Hook = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// The HTTP transport with injectable faults: a hook that runs just before the next upload is sent (a local edit
/// "during" the upload), and dropping the next upload's response after the server has processed it.
pub struct Flaky {
    inner: HttpTransport,
    pub drop_next_upload_response: Cell<bool>,
    pub before_next_upload: RefCell<Option<Box<dyn FnOnce()>>>,
    pub offline: Cell<bool>,
    /// Answer capabilities and snapshot requests like a classic server (404).
    pub classic: Cell<bool>,
    /// Paths of every GET, for tests that check which route was used.
    pub gets: RefCell<Vec<String>>,
    /// Awaited just before the first GET whose path contains the string is sent (a write on the server
    /// "during" a hydration).
    pub before_get: RefCell<Option<(String, Hook)>>,
    /// GETs on their way now, and the most at once.
    pub gets_in_flight: Cell<usize>,
    pub most_gets_in_flight: Cell<usize>,
}

impl Transport for Flaky {
    async fn post(&self, path: &str, auth: Credentials<'_>, body: Vec<u8>) -> Result<Reply, NetworkError> {
        if self.offline.get() {
            return Err(NetworkError("offline".into()));
        }
        if let Some(hook) = self.before_next_upload.borrow_mut().take() {
            hook();
        }
        let reply = self.inner.post(path, auth, body).await;
        if self.drop_next_upload_response.replace(false) {
            return Err(NetworkError("response lost".into()));
        }
        reply
    }

    async fn get(&self, path: &str, auth: Credentials<'_>) -> Result<Reply, NetworkError> {
        if self.offline.get() {
            return Err(NetworkError("offline".into()));
        }
        self.gets.borrow_mut().push(path.to_owned());
        if self.classic.get() && (path.starts_with("/sync/capabilities") || path.starts_with("/sync/snapshot")) {
            return Ok(Reply {
                status: 404,
                body: br#"{"error":"not_found","message":"Not found"}"#.to_vec(),
                retry_after: None,
                request_id: None,
            });
        }
        let hook = self
            .before_get
            .borrow_mut()
            .take_if(|(pattern, _)| path.contains(pattern.as_str()));
        if let Some((_, hook)) = hook {
            hook.await;
        }
        self.gets_in_flight.set(self.gets_in_flight.get() + 1);
        self.most_gets_in_flight
            .set(self.most_gets_in_flight.get().max(self.gets_in_flight.get()));
        let reply = self.inner.get(path, auth).await;
        self.gets_in_flight.set(self.gets_in_flight.get() - 1);
        reply
    }

    fn now_ms(&self) -> Option<f64> {
        self.inner.now_ms()
    }
}

/// The HS256 secret of the servers [`world`] starts.
pub const JWT_SECRET: &str = "e2e-secret-at-least-32-bytes-long";

/// A running server on its own database.
pub struct World {
    pub base: String,
    pub db_url: String,
    pub db: tokio_postgres::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the real server (demo configuration) in-process on a free port; `extra` adjusts settings.
pub async fn world(adjust: impl FnOnce(&mut oversync_server::Config)) -> World {
    world_on(oversync_tests::pg::database("oversync_e2e").expect("database"), adjust).await
}

/// Like [`world`], on a given database.
pub async fn world_on(db_url: String, adjust: impl FnOnce(&mut oversync_server::Config)) -> World {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../server-edge/demo/demo.toml");
    let mut cfg = oversync_server::Config::from_file(std::path::Path::new(demo)).expect("demo config");
    cfg.listen = "127.0.0.1:0".into();
    cfg.database_url = Some(db_url.clone());
    cfg.jwt_secret = Some(JWT_SECRET.into());
    adjust(&mut cfg);
    let bound = oversync_server::native::Bound::new(cfg).await.expect("server");
    let base = format!("http://{}", bound.addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));
    let (db, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
        .await
        .expect("db");
    tokio::spawn(conn);
    World {
        base,
        db_url,
        db,
        _stop: stop,
    }
}

fn tables() -> Vec<TableConfig> {
    let mut tables: Vec<TableConfig> = ["users", "posts", "files", "file_reviews"]
        .into_iter()
        .map(TableConfig::new)
        .collect();
    tables.push(TableConfig::scoped("team_posts", "team_id"));
    tables
}

/// A new device (fresh in-memory database), not signed in (guest mode).
pub fn guest(w: &World, cfg: impl FnOnce(&mut EngineConfig)) -> Device {
    let conn = Connection::open_in_memory().expect("sqlite");
    conn.execute_batch(LOCAL_SCHEMA).expect("local schema");
    open_engine(w, conn, cfg)
}

/// A device on a database file (created with the demo schema if new), not signed in.
pub fn guest_at(w: &World, path: &std::path::Path, cfg: impl FnOnce(&mut EngineConfig)) -> Device {
    let fresh = !path.exists();
    let conn = Connection::open(path).expect("sqlite file");
    if fresh {
        conn.execute_batch(LOCAL_SCHEMA).expect("local schema");
    }
    open_engine(w, conn, cfg)
}

fn open_engine(w: &World, conn: Connection, cfg: impl FnOnce(&mut EngineConfig)) -> Device {
    open_engine_at(&w.base, conn, cfg)
}

/// A guest device on a database file that talks to `base` (e.g. a fault-injecting proxy) instead of the server.
pub fn guest_at_via(base: &str, path: &std::path::Path) -> Device {
    let fresh = !path.exists();
    let conn = Connection::open(path).expect("sqlite file");
    if fresh {
        conn.execute_batch(LOCAL_SCHEMA).expect("local schema");
    }
    open_engine_at(base, conn, |_| {})
}

fn open_engine_at(base: &str, conn: Connection, cfg: impl FnOnce(&mut EngineConfig)) -> Device {
    let mut config = EngineConfig::new("business", tables());
    cfg(&mut config);
    let transport = Flaky {
        inner: HttpTransport::new(base),
        drop_next_upload_response: Cell::new(false),
        before_next_upload: RefCell::new(None),
        offline: Cell::new(false),
        classic: Cell::new(false),
        gets: RefCell::new(Vec::new()),
        before_get: RefCell::new(None),
        gets_in_flight: Cell::new(0),
        most_gets_in_flight: Cell::new(0),
    };
    Engine::open(conn, config, transport).expect("engine")
}

/// The user a device is signed in as.
pub fn user_of(d: &Device) -> String {
    d.conn()
        .query_row("SELECT user_id FROM _sync_client_info", [], |r| r.get(0))
        .unwrap()
}

/// Another client of `username` (device "other", over HTTP) inserts users `pks` with only the required
/// columns, named `"{label} {i}"`.
pub async fn upload_bare_users(base: &str, username: &str, pks: &[String], label: &str) {
    let http = reqwest::Client::new();
    let signin = serde_json::json!({"username": username, "password": "x", "device_id": "other"});
    let resp: Value = http
        .post(format!("{base}/signin"))
        .body(signin.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changes: Vec<Value> = pks
        .iter()
        .enumerate()
        .map(|(i, pk)| {
            serde_json::json!({"source_change_id": i + 1, "schema": "business", "table": "users", "op": "INSERT",
                "pk": pk, "server_version": 0, "payload": {"id": pk, "name": format!("{label} {i}"), "email": format!("{label}@example.com")}})
        })
        .collect();
    let up = http
        .post(format!("{base}/sync/upload"))
        .bearer_auth(resp["token"].as_str().unwrap())
        .body(serde_json::json!({"last_server_seq_seen": 0, "changes": changes}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
}

/// A temporary database file path.
pub fn temp_db() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("oversync-e2e-{}.sqlite", uuid::Uuid::new_v4()))
}

/// Signs `d` in as `username` through the server's dev sign-in. Returns the user id.
pub async fn sign_in(w: &World, d: &mut Device, username: &str) -> String {
    let (user, token) = dev_token(w, username, &d.source_id().unwrap()).await;
    d.sign_in(&user, token).expect("sign in");
    user
}

/// The server's dev sign-in for `username` on `device`: `(user id, token)`.
pub async fn dev_token(w: &World, username: &str, device: &str) -> (String, String) {
    let body = serde_json::json!({"username": username, "password": "x", "device_id": device});
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/signin", w.base))
        .body(body.to_string())
        .send()
        .await
        .expect("signin")
        .json()
        .await
        .expect("signin json");
    let user = resp["user_id"].as_str().unwrap().to_owned();
    (user, resp["token"].as_str().unwrap().to_owned())
}

/// A signed-in device.
pub async fn device(w: &World, username: &str) -> Device {
    let mut d = guest(w, |_| {});
    sign_in(w, &mut d, username).await;
    d
}

/// A fresh username.
pub fn name() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn add_user(d: &Device, id: &str, name: &str) {
    d.conn()
        .execute(
            "INSERT INTO users (id, name, email, created_at) VALUES (?1, ?2, ?2 || '@example.com', 1767225600)",
            [id, name],
        )
        .unwrap();
}

pub fn rename_user(d: &Device, id: &str, name: &str) {
    assert_eq!(
        d.conn()
            .execute("UPDATE users SET name = ?2 WHERE id = ?1", [id, name])
            .unwrap(),
        1
    );
}

pub fn add_post(d: &Device, id: &str, author: &str, title: &str) {
    d.conn()
        .execute(
            "INSERT INTO posts (id, title, content, author_id) VALUES (?1, ?2, 'body', ?3)",
            [id, title, author],
        )
        .unwrap();
}

pub fn delete_row(d: &Device, table: &str, id: &str) {
    d.conn()
        .execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])
        .unwrap();
}

/// Local `(id, name)` of every user, sorted.
pub fn local_users(d: &Device) -> Vec<(String, String)> {
    let mut stmt = d.conn().prepare("SELECT id, name FROM users ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn local_count(d: &Device, table: &str) -> i64 {
    d.conn()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The server's live `(id, name)` users of `user` (sync state), sorted.
pub async fn server_users(w: &World, user: &str) -> Vec<(String, String)> {
    w.db.query(
        "SELECT pk_uuid::text, payload->>'name' FROM sync.sync_state WHERE user_id = $1 AND table_name = 'users' ORDER BY 1",
        &[&user],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

pub async fn server_count(w: &World, user: &str, table: &str) -> i64 {
    w.db.query_one(
        "SELECT count(*) FROM sync.sync_state WHERE user_id = $1 AND table_name = $2",
        &[&user, &table],
    )
    .await
    .unwrap()
    .get(0)
}

pub fn pending(d: &Device) -> i64 {
    d.status().unwrap().pending
}

/// A guest device that syncs only `names` (the other demo tables exist locally but are not synced).
pub fn guest_tables(w: &World, names: &[&str]) -> Device {
    let conn = Connection::open_in_memory().expect("sqlite");
    conn.execute_batch(LOCAL_SCHEMA).expect("local schema");
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    open_engine(w, conn, |c| c.tables.retain(|t| names.contains(&t.table)))
}

/// Re-opens a device's database with a new engine (what an app restart does); keeps the token.
pub fn reopen(w: &World, d: Device) -> Device {
    let user = user_of(&d);
    let token = d.token_for_tests();
    let mut e = open_engine(w, d.into_conn(), |_| {});
    e.sign_in(&user, token).unwrap();
    e
}

/// Like [`reopen`], talking to `base` (e.g. a proxy).
pub fn reopen_via(base: &str, d: Device) -> Device {
    let user = user_of(&d);
    let token = d.token_for_tests();
    let mut e = open_engine_at(base, d.into_conn(), |_| {});
    e.sign_in(&user, token).unwrap();
    e
}

/// Makes every row waiting for a per-row backoff due, then syncs all devices round-robin until nothing moves
/// (three rounds); a failing sync panics with `context`.
pub async fn quiesce(devices: &mut [Device], context: &str) {
    for _ in 0..3 {
        for d in devices.iter_mut() {
            d.conn()
                .execute("UPDATE _sync_pending SET next_attempt_at = NULL", [])
                .unwrap();
            d.sync()
                .await
                .unwrap_or_else(|e| panic!("{context}: final sync failed: {e}"));
        }
    }
}
