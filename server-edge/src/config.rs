//! Server configuration (PROTOCOL.md §6.8): a TOML or JSON document plus environment overrides.
//!
//! The same [`Config`] feeds the native binary (file + process environment) and the Worker (wrangler vars).

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
    /// HS256 secret; env `JWT_SECRET`. Required.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// Enables `/signin` and `/dummy-signin`.
    #[serde(default)]
    pub dev_signin: bool,
    /// Lifetime of dev tokens in seconds.
    #[serde(default = "default_ttl")]
    pub token_ttl: i64,
    /// Origins that get CORS headers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Serves `GET /sync/watch` long-polls (§8.3); env `OVERSYNC_WATCH`.
    #[serde(default)]
    pub watch: bool,
    /// Value of `/sync/schema-version`.
    #[serde(default = "one")]
    pub schema_version: i64,
    /// 0 = unlimited.
    #[serde(default = "default_batch")]
    pub max_upload_batch_size: usize,
    /// 0 = unlimited.
    #[serde(default = "default_payload")]
    pub max_payload_bytes: usize,
    /// Request body limit (413 beyond it).
    #[serde(default = "default_request")]
    pub max_request_bytes: usize,
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
fn default_request() -> usize {
    64 << 20
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
}

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
        if let Some((n, v)) = var("DEV_SIGNIN") {
            self.dev_signin = parse_env(&n, &v, "boolean")?;
        }
        if let Some((_, v)) = var("STATIC_DIR") {
            self.static_dir = Some(v.into());
        }
        if let Some((n, v)) = var("WATCH") {
            self.watch = parse_env(&n, &v, "boolean")?;
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
            self.max_request_bytes = parse_env(&n, &v, "integer")?;
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

    /// Checks what the server cannot start without.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::Missing("jwt_secret (or JWT_SECRET)"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tables {
            let r = t.table_ref()?;
            if !seen.insert(r.clone()) {
                return Err(ConfigError::Duplicate(r.to_string()));
            }
        }
        Ok(())
    }
}

fn parse_env<T: std::str::FromStr>(name: &str, value: &str, kind: &'static str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Env {
        name: name.into(),
        value: value.into(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_protocol_and_env_overrides_apply() {
        let mut c =
            Config::from_toml("[[tables]]\nschema = \"Business\"\ntable = \"users\"\nowner_column = \"owner_id\"\n")
                .unwrap();
        assert_eq!(
            (c.max_upload_batch_size, c.max_payload_bytes, c.max_request_bytes),
            (200, 262_144, 64 << 20)
        );
        assert_eq!(
            (c.token_ttl, c.schema_version, c.fk_precheck, c.dev_signin),
            (300, 1, FkPrecheck::SyncState, false)
        );
        assert!(c.validate().is_err(), "a secret is required");
        let env = |k: &str| match k {
            "JWT_SECRET" => Some("s".to_owned()),
            "OVERSYNC_DEV_SIGNIN" => Some("true".to_owned()),
            "OVERSYNC_CORS_ORIGINS" => Some("http://a, http://b".to_owned()),
            "OVERSYNC_MAX_UPLOAD_BATCH_SIZE" => Some("2".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        c.validate().unwrap();
        assert!(c.dev_signin);
        assert_eq!(c.cors_origins, ["http://a", "http://b"]);
        assert_eq!(c.max_upload_batch_size, 2);
        assert_eq!(c.tables[0].table_ref().unwrap(), TableRef::new("business", "users"));
    }

    #[test]
    fn bad_settings_are_reported_by_name() {
        let mut c = Config::from_json(r#"{"jwt_secret":"x"}"#).unwrap();
        let err = c
            .apply_env(|k| (k == "OVERSYNC_MAX_PAYLOAD_BYTES").then(|| "lots".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("OVERSYNC_MAX_PAYLOAD_BYTES"), "{err}");
        assert!(Config::from_toml("unknown_setting = 1").is_err());
        let dup =
            Config::from_toml("jwt_secret='x'\n[[tables]]\ntable='a'\n[[tables]]\nschema='public'\ntable='A'").unwrap();
        assert!(matches!(dup.validate(), Err(ConfigError::Duplicate(_))));
    }
}
