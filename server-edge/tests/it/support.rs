//! Black-box helpers: servers started by the harness, devices that speak HTTP, and direct reads of the database
//! for the invariants the wire cannot show. Nothing here reaches into the server's code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
pub use oversync_protocol::wire::Status as WireStatus;
use oversync_protocol::wire::{ChangeDownload, DownloadResponse, UploadResponse};
use oversync_tests::process::Server;
use serde_json::{Value, json};

pub const SECRET: &str = "conformance-secret-of-at-least-32-bytes";

/// Tables registered beside the demo schema, for isolation, ordering and materialisation cases. Keys are
/// owner-scoped like the demo's, except `other.shared_keys`: keyed on `id` alone, it holds the owner guard of a
/// schema that is not isolated (the first writer of a key keeps it; the server warns about it at start-up).
const TEST_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS other;
CREATE TABLE IF NOT EXISTS other.users (owner_id text, id uuid, name text, PRIMARY KEY (owner_id, id));
CREATE TABLE IF NOT EXISTS other.shared_keys (id uuid PRIMARY KEY, name text, owner_id text);
CREATE TABLE IF NOT EXISTS business.typed (
  owner_id text, id uuid, n bigint, r double precision, ok boolean, at timestamptz, doc jsonb, blob bytea, ref uuid,
  label text NOT NULL DEFAULT 'x' CHECK (label <> 'forbidden'), PRIMARY KEY (owner_id, id));
CREATE TABLE IF NOT EXISTS business.blobs (owner_id text, id bytea, label text, PRIMARY KEY (owner_id, id));
CREATE TABLE IF NOT EXISTS business.lists (owner_id text, id uuid, name text, PRIMARY KEY (owner_id, id));
CREATE TABLE IF NOT EXISTS business.items (
  owner_id text, id uuid, list_id uuid, label text, PRIMARY KEY (owner_id, id),
  FOREIGN KEY (owner_id, list_id) REFERENCES business.lists (owner_id, id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS business.notes (owner_id text, id text, body text, PRIMARY KEY (owner_id, id));
CREATE TABLE IF NOT EXISTS business.catalog (id uuid PRIMARY KEY, shelf text, name text, price numeric);
"#;

const TABLES: &str = r#"
[[tables]]
schema = "business"
table = "users"
owner_column = "owner_id"
[[tables]]
schema = "business"
table = "posts"
owner_column = "owner_id"
[[tables]]
schema = "business"
table = "files"
owner_column = "owner_id"
[[tables]]
schema = "business"
table = "file_reviews"
owner_column = "owner_id"
[[tables]]
schema = "business"
table = "typed"
owner_column = "owner_id"
[[tables]]
schema = "business"
table = "blobs"
owner_column = "owner_id"
# Written by the app's backend too (backend.rs): a cascade, and a key kept as text.
[[tables]]
schema = "business"
table = "lists"
owner_column = "owner_id"
[[tables]]
schema = "business"
table = "items"
owner_column = "owner_id"
[[tables]]
schema = "business"
table = "notes"
owner_column = "owner_id"
# Reference data: written by the backend only, shared by scope (a scope for everyone in backend_shared.rs).
[[tables]]
schema = "business"
table = "catalog"
scope_column = "shelf"
devices_write = false
[[tables]]
schema = "other"
table = "users"
owner_column = "owner_id"
[[tables]]
schema = "other"
table = "shared_keys"
owner_column = "owner_id"
# Shared by the members of the scope named in team_id (docs/sharing.md).
[[tables]]
schema = "business"
table = "team_posts"
scope_column = "team_id"
# Sync-state only (no business tables): FKs are declared, not discovered.
[[tables]]
schema = "app"
table = "parents"
materialize = false
[[tables]]
schema = "app"
table = "children"
materialize = false
fks = [{ column = "parent_id", parent = "app.parents" }]
[[tables]]
schema = "app"
table = "nodes"
materialize = false
fks = [{ column = "parent_id", parent = "app.nodes" }]
"#;

/// A started server and the database it uses.
pub struct Target {
    pub base: String,
    pub db_url: String,
    pub _server: Option<Server>,
}

static DB: OnceLock<String> = OnceLock::new();
static TARGETS: OnceLock<Mutex<HashMap<&'static str, Arc<Target>>>> = OnceLock::new();
static INIT_SQL: OnceLock<String> = OnceLock::new();

/// The demo business schema plus the test tables, run by the server at start-up.
fn init_sql() -> &'static str {
    INIT_SQL.get_or_init(|| {
        let business =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/business.sql")).expect("business.sql");
        format!("{business}\n{TEST_SQL}")
    })
}

/// The start-up SQL as a file for the native server, written once per test process: written again per server, a
/// server starting while another test rewrote it could read it truncated and skip creating the business tables.
fn init_sql_file() -> &'static std::path::Path {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("init-{}.sql", std::process::id()));
        let partial = dir.join(format!("init-{}.sql.partial", std::process::id()));
        std::fs::write(&partial, init_sql()).expect("write init.sql");
        std::fs::rename(&partial, &path).expect("rename init.sql");
        path
    })
}

pub fn database_url() -> String {
    DB.get_or_init(|| oversync_tests::pg::database("oversync_it").expect("test database"))
        .clone()
}

/// Which front door the suite runs against: `OVERSYNC_TEST_TARGET=native` (default) or `edge` (the Worker under
/// `wrangler dev`).
pub fn edge() -> bool {
    match std::env::var("OVERSYNC_TEST_TARGET").as_deref() {
        Ok("edge") => true,
        Ok("native") | Err(_) => false,
        Ok(other) => panic!("OVERSYNC_TEST_TARGET={other:?}: expected native or edge"),
    }
}

/// Starts the selected front door on `db_url` with the test tables and `extra` settings (TOML).
pub fn start_server(db_url: &str, extra: &str) -> Server {
    let server = start_cold(db_url, extra).expect("start server");
    if edge() {
        // The Worker ensures the sync schema on its first database request; make that happen before the tests
        // read the database directly.
        // The token passes the variant's own token rules (issuer, audience and claim names when it sets them).
        let settings: toml::Table = toml::from_str(extra).expect("test settings");
        let claim = |setting: &str, default: &str| {
            let name = settings.get(setting).and_then(|v| v.as_str());
            name.unwrap_or(default).to_owned()
        };
        let mut claims = json!({});
        claims[claim("user_claim", "sub")] = json!("warm-up");
        claims[claim("device_claim", "did")] = json!("warm-up");
        for (setting, claim) in [("jwt_issuer", "iss"), ("jwt_audience", "aud")] {
            if let Some(v) = settings.get(setting).and_then(|v| v.as_str()) {
                claims[claim] = json!(v);
            }
        }
        let token = token_with(claims);
        let url = format!("{}/sync/download", server.base_url);
        let status = oversync_tests::block_on_thread(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert_eq!(status.ok(), Some(200), "warm-up download against the Worker");
    }
    server
}

/// [`start_server`] without the Worker's warm-up request: the native server has prepared the schema when this
/// returns (or failed to), the Worker prepares it on its first request.
pub fn start_cold(db_url: &str, extra: &str) -> anyhow::Result<Server> {
    let signin = if extra.contains("dev_signin") {
        ""
    } else {
        "dev_signin = true"
    };
    let settings = format!("{signin}\n{extra}\n{TABLES}");
    if edge() {
        // `wrangler dev` listens on 127.0.0.1 only; a Worker needs the explicit opt-out for dev sign-in.
        let settings = if extra.contains("dev_signin_allow_remote") {
            settings
        } else {
            format!("dev_signin_allow_remote = true\n{settings}")
        };
        let table: toml::Table = toml::from_str(&settings).expect("test settings");
        let vars = [
            ("OVERSYNC_CONFIG", serde_json::to_string(&table).expect("json")),
            ("OVERSYNC_INIT_SQL", init_sql().to_owned()),
            ("JWT_SECRET", SECRET.to_owned()),
        ];
        oversync_tests::edge::start_wrangler(db_url, &vars)
    } else {
        let env = [("DATABASE_URL", db_url.to_owned()), ("JWT_SECRET", SECRET.to_owned())];
        Server::start_native(
            std::path::Path::new(env!("CARGO_BIN_EXE_oversync-server")),
            &native_config(extra),
            &env,
        )
    }
}

/// The native server's configuration file for the test settings plus `extra`.
pub fn native_config(extra: &str) -> String {
    let signin = if extra.contains("dev_signin") {
        ""
    } else {
        "dev_signin = true"
    };
    let sql_path = init_sql_file();
    format!(
        "listen = \"127.0.0.1:0\"\n{pool}init_sql = {:?}\n{signin}\n{extra}\n{TABLES}",
        sql_path.display().to_string(),
        pool = if extra.contains("pool_size") {
            ""
        } else {
            "pool_size = 24\n"
        },
    )
}

/// The server with the default test configuration plus `extra` settings, started once per variant.
/// `OVERSYNC_TEST_BASE_URL` points the default variant at an already running server instead.
pub fn target_with(variant: &'static str, extra: &str) -> Arc<Target> {
    let db_url = database_url();
    let mut targets = TARGETS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = targets.get(variant) {
        return t.clone();
    }
    let target = match std::env::var("OVERSYNC_TEST_BASE_URL") {
        Ok(base) if variant == "default" => Target {
            base,
            db_url: db_url.clone(),
            _server: None,
        },
        _ => {
            let server = start_server(&db_url, extra);
            Target {
                base: server.base_url.clone(),
                db_url: db_url.clone(),
                _server: Some(server),
            }
        }
    };
    let target = Arc::new(target);
    targets.insert(variant, target.clone());
    target
}

/// A server with `settings` on top of the defaults, on a database of its own, for tests that measure the whole
/// database.
pub fn target_in_own_db(settings: &str) -> Target {
    let db_url = oversync_tests::pg::database("oversync_own").expect("database");
    let server = start_server(&db_url, settings);
    Target {
        base: server.base_url.clone(),
        db_url,
        _server: Some(server),
    }
}

/// A server of its own on a database of its own (named after `prefix`) whose every database message goes through a
/// counting proxy. The server is started off the test's runtime thread, which the proxy needs meanwhile.
pub async fn proxied_server(
    prefix: &str,
    settings: &'static str,
) -> (oversync_tests::counting::CountingProxy, Target, Server) {
    let db_url = oversync_tests::pg::database(prefix).expect("database");
    let cfg: tokio_postgres::Config = db_url.parse().unwrap();
    let proxy =
        oversync_tests::counting::CountingProxy::start(format!("127.0.0.1:{}", cfg.get_ports()[0]).parse().unwrap())
            .await
            .expect("proxy");
    let via_proxy = proxy.url_for(&db_url);
    let server = tokio::task::spawn_blocking(move || start_server(&via_proxy, settings))
        .await
        .expect("start");
    let t = Target {
        base: server.base_url.clone(),
        db_url,
        _server: None,
    };
    (proxy, t, server)
}

/// The default variant.
pub fn target() -> Arc<Target> {
    target_with("default", "cors_origins = [\"http://app.example\"]")
}

/// A fresh user id, so tests never see each other's state.
pub fn new_user() -> String {
    format!("user-{}", uuid::Uuid::new_v4())
}

/// A fresh canonical UUID.
pub fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An HS256 token with `claims` (an `exp` one hour ahead is added unless present).
pub fn token_with(claims: Value) -> String {
    let mut claims = claims;
    if claims.get("exp").is_none() {
        claims["exp"] = json!(now_secs() + 3600);
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One device of one user.
#[derive(Clone)]
pub struct Device {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Device {
    pub fn new(t: &Target, user: &str, device: &str) -> Self {
        Self::with_token(t, token_with(json!({"sub": user, "did": device})), None)
    }

    /// A device presenting `token` (from any issuer) and, when given, an `Oversync-Device-Id` header.
    pub fn with_token(t: &Target, token: String, device_header: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(d) = device_header {
            headers.insert("oversync-device-id", d.parse().expect("header value"));
        }
        Self {
            base: t.base.clone(),
            token,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client"),
        }
    }

    /// POST /sync/upload with a raw JSON body.
    pub async fn upload_raw(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/sync/upload", self.base))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .expect("upload request");
        read(r).await
    }

    /// POST /sync/upload; `None` when no response arrived (connection refused or reset).
    pub async fn try_upload_raw(&self, body: String) -> Option<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/sync/upload", self.base))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let text = r.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Uploads `changes` and expects 200.
    pub async fn upload(&self, changes: Vec<Value>) -> Value {
        let (status, body) = self
            .upload_raw(json!({"last_server_seq_seen": 0, "changes": changes}).to_string())
            .await;
        assert_eq!(status, 200, "upload failed: {body}");
        body
    }

    /// GET `path` (with its query) as this device.
    pub async fn get_raw(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        read(r).await
    }

    /// GET /sync/download?query.
    pub async fn download_raw(&self, query: &str) -> (u16, Value) {
        self.get_raw(&format!("/sync/download?{query}")).await
    }

    /// Downloads and expects 200.
    pub async fn download(&self, query: &str) -> Value {
        let (status, body) = self.download_raw(query).await;
        assert_eq!(status, 200, "download failed: {body}");
        body
    }

    /// Pages the whole current window (`after` = 0, the window frozen by the first page) `limit` entries at a
    /// time, with `extra` query parameters, and returns the pages (typed: each must parse as the wire type).
    pub async fn download_pages(&self, limit: usize, extra: &str) -> Vec<DownloadResponse> {
        let (mut after, mut until, mut pages) = (0_i64, 0_i64, Vec::new());
        loop {
            let body = self
                .download(&format!("after={after}&limit={limit}&until={until}{extra}"))
                .await;
            let page: DownloadResponse = serde_json::from_value(body).expect("a download page");
            (after, until) = (page.next_after, page.window_until);
            let more = page.has_more;
            pages.push(page);
            if !more {
                return pages;
            }
            assert!(pages.len() < 100_000, "paging does not end");
        }
    }

    /// Pages the whole current window and returns every entry.
    pub async fn download_all(&self, extra: &str) -> Vec<ChangeDownload> {
        let pages = self.download_pages(1000, extra).await;
        pages.into_iter().flat_map(|p| p.changes).collect()
    }
}

/// Pages downloads (`extra` query parameters, pages of `limit`) from 0 while writers run, until `finished()` held
/// before a page that ended the window: every `server_id` seen, in the order seen.
pub async fn page_while_writing(peer: &Device, extra: &str, limit: usize, finished: impl Fn() -> bool) -> Vec<i64> {
    let (mut seen, mut after, mut until, mut writers_done) = (Vec::new(), 0_i64, 0_i64, false);
    loop {
        let page = peer
            .download(&format!("after={after}&limit={limit}&until={until}{extra}"))
            .await;
        seen.extend(
            page["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["server_id"].as_i64().unwrap()),
        );
        after = page["next_after"].as_i64().unwrap();
        until = if page["has_more"] == true {
            page["window_until"].as_i64().unwrap()
        } else {
            0
        };
        if until == 0 {
            if writers_done {
                return seen;
            }
            writers_done = finished();
        }
    }
}

pub async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// An upsert change.
pub fn upsert(scid: i64, table: &str, pk: &str, base: i64, payload: Value) -> Value {
    let (schema, table) = table.split_once('.').unwrap_or(("business", table));
    json!({"source_change_id": scid, "schema": schema, "table": table, "op": if base == 0 { "INSERT" } else { "UPDATE" },
           "pk": pk, "server_version": base, "payload": payload})
}

/// A delete change.
pub fn delete(scid: i64, table: &str, pk: &str, base: i64) -> Value {
    let (schema, table) = table.split_once('.').unwrap_or(("business", table));
    json!({"source_change_id": scid, "schema": schema, "table": table, "op": "DELETE", "pk": pk, "server_version": base})
}

/// A `business.users` payload.
/// An upsert of `business.team_posts` (docs/sharing.md): in `team`'s scope, or a private draft with `None`.
pub fn team_post(scid: i64, pk: &str, base: i64, team: Option<&str>, title: &str) -> Value {
    upsert(
        scid,
        "business.team_posts",
        pk,
        base,
        json!({"id": pk, "team_id": team, "title": title}),
    )
}

pub fn user_row(pk: &str, name: &str) -> Value {
    json!({"id": pk, "name": name, "email": format!("{name}@example.com"), "created_at": 1767225600})
}

/// `n` new users as upserts with scids from `first_scid`.
pub fn users(n: usize, first_scid: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let pk = id();
            upsert(first_scid + i as i64, "users", &pk, 0, user_row(&pk, "n"))
        })
        .collect()
}

/// A `business.posts` payload.
pub fn post_row(pk: &str, author: &str, title: &str) -> Value {
    json!({"id": pk, "title": title, "content": "body", "author_id": author, "created_at": 1767225600})
}

/// The statuses array.
/// Whether every status of an upload answer is `applied`, read as the typed wire response (an answer that
/// does not parse as `UploadResponse` fails).
pub fn all_applied(resp: &Value) -> bool {
    let typed: UploadResponse = serde_json::from_value(resp.clone()).expect("an upload response");
    typed.statuses.iter().all(|s| s.status == WireStatus::Applied)
}

/// Status `i` of an upload answer, read as the typed wire response.
pub fn status_at(resp: &Value, i: usize) -> WireStatus {
    let typed: UploadResponse = serde_json::from_value(resp.clone()).expect("an upload response");
    typed.statuses[i].status.clone()
}

pub fn statuses(resp: &Value) -> &Vec<Value> {
    resp["statuses"].as_array().expect("statuses")
}

/// A direct connection to the test database.
pub async fn db(t: &Target) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&t.db_url, tokio_postgres::NoTls)
        .await
        .expect("connect to test db");
    tokio::spawn(conn);
    client
}

/// The one value of a `SELECT count(*) …` (or any single-`int8` query).
pub async fn count(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    db.query_one(sql, params).await.unwrap().get(0)
}

/// Number of log rows of `user`.
pub async fn log_rows(t: &Target, user: &str) -> i64 {
    count(
        &db(t).await,
        "SELECT count(*) FROM sync.server_change_log WHERE user_id = $1",
        &[&user],
    )
    .await
}

/// Makes `user` a member of `scope` with `role`, or (`None`) removes the membership, as the app's backend does.
pub async fn join(t: &Target, scope: &str, user: &str, role: Option<&str>) {
    let db = db(t).await;
    match role {
        Some(role) => db
            .execute(
                "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (scope, user_id) DO UPDATE SET role = excluded.role",
                &[&scope, &user, &role],
            )
            .await
            .unwrap(),
        None => db
            .execute(
                "DELETE FROM sync.scope_members WHERE scope = $1 AND user_id = $2",
                &[&scope, &user],
            )
            .await
            .unwrap(),
    };
}
