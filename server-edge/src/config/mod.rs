//! Server configuration (PROTOCOL.md §6.8): a TOML or JSON document plus environment overrides.
//!
//! The same [`Config`] feeds the native binary (file + process environment) and the Worker (wrangler vars).

mod auth;

use std::path::{Path, PathBuf};

use oversync_protocol::TableRef;
use serde::Deserialize;

/// Which parent lookup the FK precheck uses (§6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FkPrecheck {
    /// Parents must be live in the user's sync state (default; never reads business tables).
    #[default]
    SyncState,
    /// Parents must exist in the parent's business table, owned by the user.
    Business,
    /// No precheck.
    Off,
}

impl FkPrecheck {
    /// The wire string used in capabilities.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyncState => "sync_state",
            Self::Business => "business",
            Self::Off => "off",
        }
    }
}

/// A declared foreign key of a registered table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FkConfig {
    /// The payload key (column) holding the parent's pk.
    pub column: String,
    /// The registered parent, `schema.table`.
    pub parent: String,
}

/// One registered table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Schema (default `public`).
    #[serde(default)]
    pub schema: String,
    /// Table name.
    pub table: String,
    /// The sync key column (default `id`).
    #[serde(default = "default_key")]
    pub sync_key: String,
    /// Materialise applied changes into a business table (default true).
    #[serde(default = "yes")]
    pub materialize: bool,
    /// Target business table `schema.table` (default: the same pair).
    #[serde(default)]
    pub target: Option<String>,
    /// The target's key column (default: `sync_key`).
    #[serde(default)]
    pub target_key: Option<String>,
    /// Owner column set to the user id; rows of other users are never overwritten.
    #[serde(default)]
    pub owner_column: Option<String>,
    /// The payload column naming a row's scope (docs/sharing.md §2): the table's rows are shared by the scope's
    /// members, and the column is also the business table's owner column. NULL: a private draft of its author.
    #[serde(default)]
    pub scope_column: Option<String>,
    /// Devices may write the table (default true). `false`: the app's backend writes it (docs/backend-writes.md
    /// §5) and device uploads to it are answered `invalid` with reason `read_only_table`.
    #[serde(default = "yes")]
    pub devices_write: bool,
    /// Declared FKs. When empty, FKs are discovered from the business tables' constraints at start-up.
    #[serde(default)]
    pub fks: Vec<FkConfig>,
}

impl TableConfig {
    /// The normalised registered pair.
    pub fn table_ref(&self) -> Result<TableRef, ConfigError> {
        let name = format!(
            "{}.{}",
            if self.schema.is_empty() { "public" } else { &self.schema },
            self.table
        );
        TableRef::parse(&name).ok_or(ConfigError::BadName(name))
    }
}

fn default_key() -> String {
    "id".into()
}
fn yes() -> bool {
    true
}

/// A Worker isolate's default request body limit ([`Config::fit_isolate`]): an upload grows the isolate's
/// WebAssembly memory by about eleven times its body, and an isolate has 128 MB for that and JavaScript
/// (measured in bench/results/hostile-load.md).
pub const ISOLATE_REQUEST_BYTES: usize = 6 << 20;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Native listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// PostgreSQL URL (native); env `DATABASE_URL`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Native pool size.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// HS256 secret, at least [`MIN_SECRET_BYTES`] bytes; env `JWT_SECRET`. Required unless `jwks_url` is set
    /// (and by `dev_signin`, which signs with it).
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// The bearer secret of the admin route (`POST /sync/admin/members`, docs/sharing.md §3), at least
    /// [`MIN_SECRET_BYTES`] bytes; env `OVERSYNC_ADMIN_SECRET`. Without it the route does not exist (404).
    #[serde(default)]
    pub admin_secret: Option<String>,
    /// Native: serve Prometheus metrics at `GET /metrics` on this address of their own (e.g. `127.0.0.1:9464`),
    /// off the public port (docs/operations.md); env `OVERSYNC_METRICS_LISTEN`. Without it and `metrics_secret`
    /// no metrics are recorded.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Native: serve `GET /metrics` on the public port too, to a bearer of this secret (at least
    /// [`MIN_SECRET_BYTES`] bytes); env `OVERSYNC_METRICS_SECRET`.
    #[serde(default)]
    pub metrics_secret: Option<String>,
    /// `text` (default) or `json`: one JSON object per log line (docs/operations.md §3); env
    /// `OVERSYNC_LOG_FORMAT`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Memberships a scope-aware download serves (docs/sharing.md §8): the first this many by name; the page
    /// counts the rest in `scopes_omitted`; env `OVERSYNC_MAX_SCOPES_PER_USER`.
    #[serde(default = "default_scopes_per_user")]
    pub max_scopes_per_user: usize,
    /// The identity providers' JSON Web Key Sets (one URL or a list): RS/PS/ES/EdDSA tokens are checked
    /// against their keys. `https://`, or `http://` on a loopback host; env `OVERSYNC_JWKS_URL` (comma list).
    #[serde(default, deserialize_with = "auth::one_or_many")]
    pub jwks_url: Vec<String>,
    /// The accepted token `alg`s. Default: HS256, HS384, HS512 with a `jwt_secret`, plus RS256, ES256 and EdDSA
    /// with a `jwks_url`; env `OVERSYNC_JWT_ALGORITHMS` (comma list).
    #[serde(default)]
    pub jwt_algorithms: Option<Vec<String>>,
    /// The claim holding the user id (default `sub`); env `OVERSYNC_USER_CLAIM`.
    #[serde(default = "auth::default_user_claim")]
    pub user_claim: String,
    /// The claim holding the device id (default `did`). Tokens without it take the device from the
    /// `Oversync-Device-Id` header; env `OVERSYNC_DEVICE_CLAIM`.
    #[serde(default = "auth::default_device_claim")]
    pub device_claim: String,
    /// The shortest time a fetched key set is cached, whatever its `Cache-Control` says (default 60 s).
    #[serde(default = "auth::default_jwks_cache_min")]
    pub jwks_cache_min_s: u64,
    /// The longest (default 3600 s): a key the provider removed stops working within it.
    #[serde(default = "auth::default_jwks_cache_max")]
    pub jwks_cache_max_s: u64,
    /// The least time between two key set fetches that expiry did not cause: a token with an unknown `kid`,
    /// a retry after a failed fetch (default 30 s).
    #[serde(default = "auth::default_jwks_cooldown")]
    pub jwks_cooldown_s: u64,
    /// How long one key set fetch may take (default 5000 ms).
    #[serde(default = "auth::default_jwks_timeout")]
    pub jwks_timeout_ms: u64,
    /// Tokens without `exp` are rejected (off: PROTOCOL.md §3.1 keeps `exp` optional); env `OVERSYNC_REQUIRE_EXP`.
    #[serde(default)]
    pub require_exp: bool,
    /// When set, a token's `iss` must equal it; env `OVERSYNC_JWT_ISSUER`. Required with `jwks_url`.
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    /// When set, a token's `aud` (string or array) must contain it; env `OVERSYNC_JWT_AUDIENCE`. Required with
    /// `jwks_url`.
    #[serde(default)]
    pub jwt_audience: Option<String>,
    /// Accepts tokens of a `jwks_url` provider without `jwt_issuer` or `jwt_audience` checks: any token its keys
    /// signed, for any app, gets in. Only for a key set that signs this app's tokens alone; env
    /// `OVERSYNC_JWKS_INSECURE_ANY_ISSUER_OR_AUDIENCE`.
    #[serde(default)]
    pub jwks_insecure_any_issuer_or_audience: bool,
    /// Clock skew in seconds tolerated on `exp` and `nbf` (default 0, §3.1); env `OVERSYNC_JWT_LEEWAY_S`.
    #[serde(default)]
    pub jwt_leeway_s: u64,
    /// Enables `/signin` and `/dummy-signin`, which issue a token for any user id: development only. Refused on
    /// a `listen` address that is not loopback unless `dev_signin_allow_remote`.
    #[serde(default)]
    pub dev_signin: bool,
    /// Lets `dev_signin` run on a non-loopback `listen` address; env `OVERSYNC_DEV_SIGNIN_ALLOW_REMOTE`.
    #[serde(default)]
    pub dev_signin_allow_remote: bool,
    /// Lifetime of dev tokens in seconds.
    #[serde(default = "default_ttl")]
    pub token_ttl: i64,
    /// Origins that get CORS headers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Serves the realtime extensions (default on, since they cost the database nothing while idle): the
    /// `GET /sync/watch` long-poll (§8.3) and the `GET /sync/stream` WebSocket (docs/realtime.md); env
    /// `OVERSYNC_WATCH`.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Native, with `watch`: wake waiters from one `LISTEN` connection instead of a look at the log per waiter
    /// per second (default on). Off for a PostgreSQL reached through a transaction-pooling proxy (PgBouncer in
    /// transaction mode), which does not carry `LISTEN`; env `OVERSYNC_WATCH_LISTEN`.
    #[serde(default = "yes")]
    pub watch_listen: bool,
    /// Value of `/sync/schema-version`.
    #[serde(default = "one")]
    pub schema_version: i64,
    /// 0 = unlimited.
    #[serde(default = "default_batch")]
    pub max_upload_batch_size: usize,
    /// 0 = unlimited.
    #[serde(default = "default_payload")]
    pub max_payload_bytes: usize,
    /// Request body limit (413 beyond it). Default: what a full batch can need,
    /// `max_upload_batch_size × (max_payload_bytes + 1 KiB) + 64 KiB` (50.3 MiB with the defaults), or 64 MiB
    /// when either limit is 0 (unlimited). See [`Config::request_limit`].
    #[serde(default)]
    pub max_request_bytes: Option<usize>,
    /// Payload bytes per download or snapshot page (0 = unlimited): a page ends at the row that reaches it, so
    /// a page holds at most this much and one row more; a row larger than it comes alone. Default 4 MiB, well
    /// inside a Worker isolate's 128 MB even with the page's copies; env `OVERSYNC_MAX_PAGE_BYTES`.
    #[serde(default = "default_page_bytes")]
    pub max_page_bytes: usize,
    /// Uploads of one user in flight per process (or Worker isolate); more get 429 (0 = unlimited).
    #[serde(default = "default_uploads_per_user")]
    pub max_uploads_per_user: usize,
    /// Download and snapshot pages of one user in flight per process (or Worker isolate); more get 429 (0 =
    /// unlimited). Natively one at a time holds a pooled connection; the rest wait for the user's turn without one;
    /// env `OVERSYNC_MAX_READS_PER_USER`.
    #[serde(default = "default_reads_per_user")]
    pub max_reads_per_user: usize,
    /// Rows of one owner's change log a download page reads at most before the own-device and schema filters
    /// (at least the page's `limit + 1`): a window of filtered rows costs this much per request, and the page
    /// then ends where the scan stopped, with `has_more` and a `next_after` past the scanned rows; env
    /// `OVERSYNC_DOWNLOAD_SCAN_ROWS`.
    #[serde(default = "default_download_scan_rows")]
    pub download_scan_rows: usize,
    /// Natively, adopt the rows already in the business tables before serving (`oversync-server adopt`,
    /// docs/backend-writes.md §6); env `OVERSYNC_ADOPT_ON_START`.
    #[serde(default)]
    pub adopt_on_start: bool,
    /// On the Worker, how often a user's hub looks for backend writes while it holds streams (natively NOTIFY
    /// tells them at once), ms; 0: never (streams then hear of backend writes at the device's next cycle); env
    /// `OVERSYNC_BACKEND_POLL_MS`.
    #[serde(default = "default_backend_poll_ms")]
    pub backend_poll_ms: u64,
    /// `/sync/watch` long-polls of one user waiting per process; more get 429 (0 = unlimited).
    #[serde(default = "default_watches_per_user")]
    pub max_watches_per_user: usize,
    /// Upload body bytes handled at one moment over all users (503 beyond; 0 = unlimited). Default: one full
    /// request and 16 MiB ([`Config::upload_bytes_budget`]).
    #[serde(default)]
    pub max_upload_bytes_in_flight: Option<usize>,
    /// How long a request waits for a pooled connection before it is answered 503 (native).
    #[serde(default = "default_pool_wait")]
    pub pool_wait_timeout_ms: u64,
    /// How long the service waits for a request body after its head (408 beyond it).
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    /// FK precheck mode.
    #[serde(default)]
    pub fk_precheck: FkPrecheck,
    /// SQL run at start-up before discovery (e.g. the business schema); a path relative to the config file.
    #[serde(default)]
    pub init_sql: Option<PathBuf>,
    /// Native only: serve this directory's files (e.g. a built web app) for paths the sync service does not
    /// own; env `OVERSYNC_STATIC_DIR`. Resolved relative to the configuration file.
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
    /// History compaction (docs/history.md): a log entry superseded by a later one of its row is removed once
    /// it is older than this many seconds; env `OVERSYNC_COMPACT_AFTER_S`.
    #[serde(default = "default_compact_after")]
    pub compact_after_s: u64,
    /// Deleted rows' last entries and metadata, and the idempotency receipts of compacted changes, are kept this
    /// many seconds; a device whose cursor is older re-hydrates (`history_pruned`). At least `compact_after_s`;
    /// env `OVERSYNC_TOMBSTONE_RETENTION_S`.
    #[serde(default = "default_tombstone_retention")]
    pub tombstone_retention_s: u64,
    /// Natively, how often the background compaction runs a pass, in seconds (0: never; the Worker uses its Cron
    /// Trigger, and `oversync-server compact` runs one pass); env `OVERSYNC_COMPACT_INTERVAL_S`.
    #[serde(default = "default_compact_interval")]
    pub compact_interval_s: u64,
    /// Log rows one compaction step (one short transaction) looks at.
    #[serde(default = "default_compact_batch")]
    pub compact_batch_rows: i64,
    /// `lock_timeout` for the per-user advisory lock, in milliseconds.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_ms: u64,
    /// The name `/health` reports.
    #[serde(default = "default_service")]
    pub service_name: String,
    /// Registered tables.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

fn default_compact_after() -> u64 {
    3600
}
fn default_tombstone_retention() -> u64 {
    30 * 86_400
}
fn default_compact_interval() -> u64 {
    300
}
fn default_compact_batch() -> i64 {
    1000
}
fn default_log_format() -> String {
    "text".into()
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_pool() -> usize {
    16
}
fn default_ttl() -> i64 {
    300
}
fn one() -> i64 {
    1
}
fn default_batch() -> usize {
    200
}
fn default_payload() -> usize {
    262_144
}
fn default_scopes_per_user() -> usize {
    1000
}
fn default_page_bytes() -> usize {
    4 << 20
}
fn default_uploads_per_user() -> usize {
    2
}
fn default_reads_per_user() -> usize {
    4
}
fn default_download_scan_rows() -> usize {
    4_000
}
fn default_watches_per_user() -> usize {
    8
}
fn default_pool_wait() -> u64 {
    2000
}
fn default_body_timeout() -> u64 {
    10_000
}
fn default_backend_poll_ms() -> u64 {
    2000
}
fn default_lock_timeout() -> u64 {
    3000
}
fn default_service() -> String {
    "oversync-edge".into()
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax or type error.
    #[error("invalid TOML configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// JSON syntax or type error.
    #[error("invalid JSON configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// An environment override that does not parse.
    #[error("environment variable {name}={value:?} is not a valid {kind}")]
    Env {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
        /// What was expected.
        kind: &'static str,
    },
    /// A schema or table name that is not `^[a-z0-9_]+$` after normalisation.
    #[error("invalid table name {0:?}")]
    BadName(String),
    /// A required setting is missing.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A table registered twice.
    #[error("table {0} is registered twice")]
    Duplicate(String),
    /// The JWT secret is too short to resist guessing.
    #[error(
        "jwt_secret (or JWT_SECRET) is {0} bytes; at least {MIN_SECRET_BYTES} are required (e.g. `openssl rand -base64 48`)"
    )]
    WeakSecret(usize),
    /// Dev sign-in on an address other machines can reach.
    #[error(
        "dev_signin is on and listen = {0:?} is not a loopback address: anyone who reaches it can sign in as any \
         user. Listen on 127.0.0.1, ::1 or localhost, or set dev_signin_allow_remote = true \
         (OVERSYNC_DEV_SIGNIN_ALLOW_REMOTE) if that is really wanted"
    )]
    DevSigninRemote(String),
    /// Dev sign-in on the Worker, which has no `listen` address to be loopback: it is reachable by whoever reaches
    /// the deployment.
    #[error(
        "dev_signin is on in the Worker, which anyone who reaches the deployment can call to sign in as any user; \
         set dev_signin_allow_remote = true (OVERSYNC_DEV_SIGNIN_ALLOW_REMOTE) for a local wrangler dev, or turn \
         dev_signin off"
    )]
    DevSigninWorker,
    /// A setting whose value cannot be used.
    #[error("{setting}: {problem}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// The shortest `jwt_secret` accepted: 32 bytes, HS256's output size (RFC 7518 §3.2 asks for a key at least
/// that long).
pub const MIN_SECRET_BYTES: usize = 32;

/// Logged at every start while `dev_signin` is on (natively, and once per Worker isolate).
pub const DEV_SIGNIN_WARNING: &str = "dev_signin is on: /signin and /dummy-signin issue a token for any user id \
     without a password. Development only: switch it off in production";

impl Config {
    /// Parses TOML.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Parses JSON.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads a `.json` or TOML file; `init_sql` is resolved relative to the file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut cfg = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&text)?
        } else {
            Self::from_toml(&text)?
        };
        if let (Some(sql), Some(dir)) = (&cfg.init_sql, path.parent()) {
            cfg.init_sql = Some(dir.join(sql));
        }
        if let (Some(d), Some(dir)) = (&cfg.static_dir, path.parent()) {
            cfg.static_dir = Some(dir.join(d));
        }
        Ok(cfg)
    }

    /// Applies overrides: `DATABASE_URL`, `JWT_SECRET`, `PORT`, and `OVERSYNC_<SETTING>` for the scalar
    /// settings (`OVERSYNC_LISTEN`, `OVERSYNC_DEV_SIGNIN`, `OVERSYNC_CORS_ORIGINS` as a comma list, …).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = get("JWT_SECRET") {
            self.jwt_secret = Some(v);
        }
        if let Some(v) = get("PORT") {
            let port: u16 = parse_env("PORT", &v, "port")?;
            self.listen = format!("127.0.0.1:{port}");
        }
        let var = |name: &str| get(&format!("OVERSYNC_{name}")).map(|v| (format!("OVERSYNC_{name}"), v));
        if let Some((_, v)) = var("LISTEN") {
            self.listen = v;
        }
        if let Some((_, v)) = var("ADMIN_SECRET") {
            self.admin_secret = Some(v).filter(|v| !v.is_empty());
        }
        if let Some((_, v)) = var("METRICS_LISTEN") {
            self.metrics_listen = Some(v).filter(|v| !v.is_empty());
        }
        if let Some((_, v)) = var("METRICS_SECRET") {
            self.metrics_secret = Some(v).filter(|v| !v.is_empty());
        }
        if let Some((_, v)) = var("LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some((n, v)) = var("DEV_SIGNIN") {
            self.dev_signin = parse_env(&n, &v, "boolean")?;
        }
        if let Some((n, v)) = var("DEV_SIGNIN_ALLOW_REMOTE") {
            self.dev_signin_allow_remote = parse_env(&n, &v, "boolean")?;
        }
        if let Some((n, v)) = var("REQUIRE_EXP") {
            self.require_exp = parse_env(&n, &v, "boolean")?;
        }
        // An empty value switches the check off, as if the setting were absent.
        if let Some((_, v)) = var("JWT_ISSUER") {
            self.jwt_issuer = Some(v).filter(|v| !v.is_empty());
        }
        if let Some((_, v)) = var("JWT_AUDIENCE") {
            self.jwt_audience = Some(v).filter(|v| !v.is_empty());
        }
        self.apply_auth_env(&var)?;
        if let Some((n, v)) = var("JWT_LEEWAY_S") {
            self.jwt_leeway_s = parse_env(&n, &v, "integer")?;
        }
        if let Some((_, v)) = var("STATIC_DIR") {
            self.static_dir = Some(v.into());
        }
        if let Some((n, v)) = var("WATCH") {
            self.watch = parse_env(&n, &v, "boolean")?;
        }
        if let Some((n, v)) = var("WATCH_LISTEN") {
            self.watch_listen = parse_env(&n, &v, "boolean")?;
        }
        for (name, field) in [
            ("COMPACT_AFTER_S", &mut self.compact_after_s),
            ("TOMBSTONE_RETENTION_S", &mut self.tombstone_retention_s),
            ("COMPACT_INTERVAL_S", &mut self.compact_interval_s),
        ] {
            if let Some((n, v)) = var(name) {
                *field = parse_env(&n, &v, "integer")?;
            }
        }
        if let Some((n, v)) = var("TOKEN_TTL") {
            self.token_ttl = parse_env(&n, &v, "integer")?;
        }
        if let Some((_, v)) = var("CORS_ORIGINS") {
            self.cors_origins = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some((n, v)) = var("SCHEMA_VERSION") {
            self.schema_version = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("MAX_UPLOAD_BATCH_SIZE") {
            self.max_upload_batch_size = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("MAX_PAYLOAD_BYTES") {
            self.max_payload_bytes = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("MAX_REQUEST_BYTES") {
            self.max_request_bytes = Some(parse_env(&n, &v, "integer")?);
        }
        if let Some((n, v)) = var("MAX_SCOPES_PER_USER") {
            self.max_scopes_per_user = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("MAX_PAGE_BYTES") {
            self.max_page_bytes = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("MAX_UPLOADS_PER_USER") {
            self.max_uploads_per_user = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("MAX_READS_PER_USER") {
            self.max_reads_per_user = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("DOWNLOAD_SCAN_ROWS") {
            self.download_scan_rows = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("BACKEND_POLL_MS") {
            self.backend_poll_ms = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("ADOPT_ON_START") {
            self.adopt_on_start = parse_env(&n, &v, "boolean")?;
        }
        if let Some((n, v)) = var("MAX_WATCHES_PER_USER") {
            self.max_watches_per_user = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("MAX_UPLOAD_BYTES_IN_FLIGHT") {
            self.max_upload_bytes_in_flight = Some(parse_env(&n, &v, "integer")?);
        }
        if let Some((n, v)) = var("POOL_WAIT_TIMEOUT_MS") {
            self.pool_wait_timeout_ms = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("BODY_TIMEOUT_MS") {
            self.body_timeout_ms = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("POOL_SIZE") {
            self.pool_size = parse_env(&n, &v, "integer")?;
        }
        if let Some((n, v)) = var("FK_PRECHECK") {
            self.fk_precheck =
                serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| ConfigError::Env {
                    name: n,
                    value: v,
                    kind: "fk_precheck (sync_state|business|off)",
                })?;
        }
        Ok(())
    }

    /// Whether metrics are recorded and served (natively: `metrics_listen` or `metrics_secret` is set).
    pub fn metrics_on(&self) -> bool {
        self.metrics_listen.is_some() || self.metrics_secret.is_some()
    }

    /// The request body limit: `max_request_bytes` if set, else what a full batch of full payloads can need plus
    /// 1 KiB of envelope per change and 64 KiB for the rest, or 64 MiB when the batch or payload size is
    /// unlimited (PROTOCOL.md §6.8 asks for at least batch × payload, because classic clients do not re-chunk on
    /// 413).
    pub fn request_limit(&self) -> usize {
        self.max_request_bytes
            .unwrap_or_else(|| match (self.max_upload_batch_size, self.max_payload_bytes) {
                (0, _) | (_, 0) => 64 << 20,
                (batch, payload) => batch
                    .saturating_mul(payload.saturating_add(1024))
                    .saturating_add(64 << 10),
            })
    }

    /// The process-wide budget of upload body bytes in flight: `max_upload_bytes_in_flight`, or one full request
    /// ([`Config::request_limit`]) and 16 MiB beside it for small uploads. An upload costs about ten times its
    /// body at its peak (bytes, parsed payloads, validated rows, statement parameters), so the default keeps one
    /// full batch at a time, what a small instance holds (bench/results/hostile-load.md).
    pub fn upload_bytes_budget(&self) -> usize {
        self.max_upload_bytes_in_flight
            .unwrap_or_else(|| self.request_limit().saturating_add(16 << 20))
    }

    /// The defaults of a Worker isolate (128 MB of memory, shared by every request it serves): an upload costs about
    /// eleven times its body at its peak, so a body is limited to [`ISOLATE_REQUEST_BYTES`] and the bodies in flight
    /// to that and 2 MiB beside it, unless configured. A larger body is refused with 413 before it is read (the
    /// engine halves its chunk on 413; a classic client that does not re-chunk needs a smaller batch or payload
    /// limit so that a full batch fits).
    pub fn fit_isolate(&mut self) {
        let limit = *self
            .max_request_bytes
            .get_or_insert(ISOLATE_REQUEST_BYTES.min(self.request_limit()));
        self.max_upload_bytes_in_flight
            .get_or_insert(limit.saturating_add(2 << 20));
    }

    /// Checks what the server cannot start without, and refuses what it must not start with: a short JWT
    /// secret, dev sign-in reachable from other machines.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth()?;
        if self.admin_secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_BYTES) {
            return Err(ConfigError::Invalid {
                setting: "admin_secret",
                problem: "at least 32 bytes are required (e.g. `openssl rand -base64 48`)",
            });
        }
        if self.metrics_secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_BYTES) {
            return Err(ConfigError::Invalid {
                setting: "metrics_secret",
                problem: "at least 32 bytes are required (e.g. `openssl rand -base64 48`)",
            });
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                setting: "log_format",
                problem: "`text` or `json` expected",
            });
        }
        if self.dev_signin && !self.dev_signin_allow_remote && !is_loopback(&self.listen) {
            return Err(ConfigError::DevSigninRemote(self.listen.clone()));
        }
        // The Worker never binds `listen`: nothing says it is local, so dev sign-in needs the explicit opt-out.
        if cfg!(target_arch = "wasm32") && self.dev_signin && !self.dev_signin_allow_remote {
            return Err(ConfigError::DevSigninWorker);
        }
        if self.tombstone_retention_s < self.compact_after_s {
            return Err(ConfigError::Invalid {
                setting: "tombstone_retention_s",
                problem: "must be at least compact_after_s (a row's older entries go before its tombstone)",
            });
        }
        if self.compact_batch_rows < 1 {
            return Err(ConfigError::Invalid {
                setting: "compact_batch_rows",
                problem: "must be at least 1",
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tables {
            let r = t.table_ref()?;
            if !seen.insert(r.clone()) {
                return Err(ConfigError::Duplicate(r.to_string()));
            }
            if let Some(scope) = &t.scope_column {
                let problem = if scope.eq_ignore_ascii_case(&t.sync_key) {
                    "the scope column cannot be the sync key"
                } else if t.owner_column.is_some() {
                    "a scoped table's owner column is its scope column: leave owner_column out"
                } else {
                    continue;
                };
                return Err(ConfigError::Invalid {
                    setting: "scope_column",
                    problem,
                });
            }
        }
        Ok(())
    }
}

/// Whether a `host:port` listen address accepts connections from this machine only: 127.0.0.0/8, `::1` or
/// `localhost`. Anything else, including a host name, counts as reachable from elsewhere.
pub(crate) fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn parse_env<T: std::str::FromStr>(name: &str, value: &str, kind: &'static str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Env {
        name: name.into(),
        value: value.into(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "config-test-secret-32-bytes-long";

    #[test]
    fn defaults_follow_the_protocol_and_env_overrides_apply() {
        let mut c =
            Config::from_toml("[[tables]]\nschema = \"Business\"\ntable = \"users\"\nowner_column = \"owner_id\"\n")
                .unwrap();
        assert_eq!(
            (c.max_upload_batch_size, c.max_payload_bytes, c.request_limit()),
            (200, 262_144, 200 * (262_144 + 1024) + 65_536)
        );
        assert_eq!((c.max_uploads_per_user, c.max_watches_per_user), (2, 8));
        assert_eq!(
            (c.token_ttl, c.schema_version, c.fk_precheck, c.dev_signin),
            (300, 1, FkPrecheck::SyncState, false)
        );
        assert!(c.validate().is_err(), "a secret is required");
        let env = |k: &str| match k {
            "JWT_SECRET" => Some(SECRET.to_owned()),
            "OVERSYNC_DEV_SIGNIN" => Some("true".to_owned()),
            "OVERSYNC_CORS_ORIGINS" => Some("http://a, http://b".to_owned()),
            "OVERSYNC_MAX_UPLOAD_BATCH_SIZE" => Some("2".to_owned()),
            "OVERSYNC_WATCH_LISTEN" => Some("false".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        c.validate().unwrap();
        assert!(c.dev_signin);
        assert_eq!(c.cors_origins, ["http://a", "http://b"]);
        assert_eq!(c.max_upload_batch_size, 2);
        assert!(!c.watch_listen, "on by default, off from the environment");
        assert_eq!(
            c.request_limit(),
            2 * (262_144 + 1024) + 65_536,
            "the request limit follows the batch"
        );
        c.max_payload_bytes = 0;
        assert_eq!(c.request_limit(), 64 << 20, "unlimited payloads keep the old 64 MiB");
        c.max_request_bytes = Some(4096);
        assert_eq!(c.request_limit(), 4096);
        assert_eq!(c.tables[0].table_ref().unwrap(), TableRef::new("business", "users"));
    }

    #[test]
    fn bad_settings_are_reported_by_name() {
        let mut c = Config::from_json(&format!(r#"{{"jwt_secret":"{SECRET}"}}"#)).unwrap();
        let err = c
            .apply_env(|k| (k == "OVERSYNC_MAX_PAYLOAD_BYTES").then(|| "lots".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("OVERSYNC_MAX_PAYLOAD_BYTES"), "{err}");
        assert!(Config::from_toml("unknown_setting = 1").is_err());
        let dup = Config::from_toml(&format!(
            "jwt_secret='{SECRET}'\n[[tables]]\ntable='a'\n[[tables]]\nschema='public'\ntable='A'"
        ))
        .unwrap();
        assert!(matches!(dup.validate(), Err(ConfigError::Duplicate(_))));
        let scoped = |extra: &str| {
            Config::from_toml(&format!("jwt_secret='{SECRET}'\n[[tables]]\ntable='a'\n{extra}"))
                .unwrap()
                .validate()
        };
        assert!(scoped("scope_column='team_id'").is_ok());
        for bad in ["scope_column='ID'", "scope_column='team_id'\nowner_column='owner_id'"] {
            let err = scoped(bad).unwrap_err();
            assert!(err.to_string().starts_with("scope_column: "), "{bad}: {err}");
        }
    }

    #[test]
    fn the_shipped_configurations_keep_dev_signin_off_in_production_and_require_exp() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
        let mut prod = Config::from_file(&dir.join("production.toml")).unwrap();
        assert!(
            !prod.dev_signin,
            "the README's production example keeps dev sign-in off"
        );
        assert!(prod.require_exp && prod.jwt_issuer.is_some() && prod.jwt_audience.is_some());
        prod.jwt_secret = Some(SECRET.into());
        prod.validate().unwrap();
        let demo = Config::from_file(&dir.join("demo.toml")).unwrap();
        assert!(demo.dev_signin && demo.require_exp && is_loopback(&demo.listen));
        // What `wrangler deploy` ships: the top-level [vars] and any [env.*.vars].
        let wrangler = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wrangler.toml")).unwrap();
        let wrangler: toml::Table = toml::from_str(&wrangler).unwrap();
        let envs = wrangler
            .get("env")
            .and_then(toml::Value::as_table)
            .into_iter()
            .flat_map(|e| e.values());
        for section in std::iter::once(&wrangler).chain(envs.filter_map(toml::Value::as_table)) {
            let Some(vars) = section.get("vars").and_then(toml::Value::as_table) else {
                continue;
            };
            let json = vars
                .get("OVERSYNC_CONFIG")
                .and_then(toml::Value::as_str)
                .unwrap_or("{}");
            let mut edge = Config::from_json(json).unwrap();
            edge.apply_env(|k| vars.get(k).and_then(toml::Value::as_str).map(str::to_owned))
                .unwrap();
            assert!(!edge.dev_signin, "wrangler.toml never deploys dev sign-in");
            assert!(edge.require_exp, "the deployed Worker requires exp");
        }
    }

    #[test]
    fn a_secret_shorter_than_32_bytes_is_refused_by_name() {
        let with = |secret: &str| {
            Config::from_toml(&format!("jwt_secret = {secret:?}"))
                .unwrap()
                .validate()
        };
        let err = with("short-secret").unwrap_err();
        assert!(matches!(err, ConfigError::WeakSecret(12)), "{err}");
        let text = err.to_string();
        assert!(text.contains("jwt_secret") && text.contains("at least 32"), "{text}");
        assert!(with(&"x".repeat(31)).is_err());
        with(&"x".repeat(32)).unwrap();
        assert!(matches!(with(""), Err(ConfigError::Missing(_))));
    }

    #[test]
    fn dev_signin_needs_a_loopback_listen_address_or_an_explicit_opt_in() {
        let cfg = |listen: &str| {
            let mut c = Config::from_toml(&format!("jwt_secret = {SECRET:?}\ndev_signin = true")).unwrap();
            c.listen = listen.into();
            c
        };
        for ok in [
            "127.0.0.1:8080",
            "127.1.2.3:0",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST:1",
        ] {
            cfg(ok).validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for remote in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.5:80",
            "example.com:8080",
            "[::ffff:127.0.0.1]:1",
        ] {
            let err = cfg(remote).validate().unwrap_err();
            assert!(
                matches!(&err, ConfigError::DevSigninRemote(l) if l == remote),
                "{remote}: {err}"
            );
            assert!(err.to_string().contains("dev_signin_allow_remote"), "{err}");
            let mut allowed = cfg(remote);
            allowed
                .apply_env(|k| (k == "OVERSYNC_DEV_SIGNIN_ALLOW_REMOTE").then(|| "true".to_owned()))
                .unwrap();
            allowed.validate().unwrap();
            let mut off = cfg(remote);
            off.dev_signin = false;
            off.validate().unwrap();
        }
    }

    #[test]
    fn token_rules_come_from_settings_and_env() {
        let mut c = Config::from_toml(&format!("jwt_secret = {SECRET:?}")).unwrap();
        assert_eq!(
            c.token_rules(),
            crate::auth::TokenRules::default(),
            "nothing beyond §3.1 by default"
        );
        c = Config::from_toml(&format!(
            "jwt_secret = {SECRET:?}\nrequire_exp = true\njwt_issuer = \"i\"\njwt_audience = \"a\"\njwt_leeway_s = 5"
        ))
        .unwrap();
        let rules = c.token_rules();
        assert!(rules.require_exp);
        assert_eq!(
            (
                rules.issuer.as_deref(),
                rules.audience.as_deref(),
                rules.leeway.as_secs()
            ),
            (Some("i"), Some("a"), 5)
        );
        let env = |k: &str| match k {
            "OVERSYNC_REQUIRE_EXP" => Some("false".to_owned()),
            "OVERSYNC_JWT_ISSUER" => Some("https://id.example".to_owned()),
            "OVERSYNC_JWT_AUDIENCE" => Some(String::new()),
            "OVERSYNC_JWT_LEEWAY_S" => Some("60".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        c.validate().unwrap();
        let rules = c.token_rules();
        assert!(!rules.require_exp);
        assert_eq!(
            (
                rules.issuer.as_deref(),
                rules.audience.as_deref(),
                rules.leeway.as_secs()
            ),
            (Some("https://id.example"), None, 60)
        );
        let err = c
            .apply_env(|k| (k == "OVERSYNC_JWT_LEEWAY_S").then(|| "-1".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("OVERSYNC_JWT_LEEWAY_S"), "{err}");
        let empty = Config::from_toml(&format!("jwt_secret = {SECRET:?}\njwt_issuer = \"\"")).unwrap();
        assert!(empty.validate().unwrap_err().to_string().contains("jwt_issuer"));
    }

    /// The Worker gets its configuration as JSON, the native server as TOML and the environment.
    #[test]
    fn the_page_budget_defaults_to_4_mib_and_is_read_from_json_toml_and_env() {
        assert_eq!(Config::from_toml("").unwrap().max_page_bytes, 4 << 20);
        assert_eq!(
            Config::from_json(r#"{"max_page_bytes":65536}"#).unwrap().max_page_bytes,
            65_536
        );
        let mut c = Config::from_toml("max_page_bytes = 0").unwrap();
        assert_eq!(c.max_page_bytes, 0);
        c.apply_env(|k| (k == "OVERSYNC_MAX_PAGE_BYTES").then(|| "1024".to_owned()))
            .unwrap();
        assert_eq!(c.max_page_bytes, 1024);
    }

    #[test]
    fn an_isolate_takes_bodies_of_6_mib_unless_configured() {
        let mut c = Config::from_json("{}").unwrap();
        c.fit_isolate();
        assert_eq!(c.request_limit(), 6 << 20);
        assert_eq!(c.upload_bytes_budget(), 8 << 20);
        let mut c = Config::from_json(r#"{"max_request_bytes": 52699136}"#).unwrap();
        c.fit_isolate();
        assert_eq!(
            (c.request_limit(), c.upload_bytes_budget()),
            (52_699_136, 52_699_136 + (2 << 20))
        );
        let mut c =
            Config::from_json(r#"{"max_upload_batch_size": 2, "max_upload_bytes_in_flight": 1000000}"#).unwrap();
        c.fit_isolate();
        assert_eq!(
            (c.request_limit(), c.upload_bytes_budget()),
            (2 * (262_144 + 1024) + 65_536, 1_000_000)
        );
    }
}
