//! What the service hands a route handler: the settings, the shares of this process, and the database made
//! ready once per process. Handlers depend on this, never on the service, so the layers read bottom-up:
//! http/config/auth → registry/sql/schema → ctx → handlers (download, snapshot, watch, upload) → service →
//! front doors (native, edge).

use std::sync::OnceLock;

use crate::admission::Admission;
use crate::registry::Registry;
use crate::schema::SchemaError;

/// Settings read per request.
#[derive(Debug, Clone)]
pub struct Settings {
    /// 0 = unlimited.
    pub max_upload_batch_size: usize,
    /// 0 = unlimited.
    pub max_payload_bytes: usize,
    /// Body limit ([`crate::Config::request_limit`]).
    pub max_request_bytes: usize,
    /// Payload bytes per download or snapshot page; 0 = unlimited.
    pub max_page_bytes: usize,
    /// How long a body may take to arrive after the head.
    pub body_timeout_ms: u64,
    /// Advisory lock wait bound.
    pub lock_timeout_ms: u64,
    /// Dev sign-in routes on.
    pub dev_signin: bool,
    /// Dev token lifetime, seconds.
    pub token_ttl: i64,
    /// `/sync/schema-version`.
    pub schema_version: i64,
    /// Origins given CORS headers.
    pub cors_origins: Vec<String>,
    /// `/sync/watch` served.
    pub watch: bool,
    /// `/sync/stream` served (with `watch`, when the front door has a hub for it; the Worker needs its `HUB`
    /// Durable Object binding).
    pub stream: bool,
    /// `/health` service name.
    pub service_name: String,
    /// The admin route's bearer secret; `None`: no admin route.
    pub admin_secret: Option<String>,
    /// Memberships a user may have for a scope-aware read.
    pub max_scopes_per_user: usize,
    /// Rows of an owner's log a download page reads at most before its filters.
    pub download_scan_rows: usize,
    /// How often the Worker's hubs look for backend writes, ms (0: never).
    pub backend_poll_ms: u64,
    /// `log_format = "json"`.
    pub json_logs: bool,
}

/// The sync schema and the registry, made ready on the first request that touches the database.
#[derive(Debug)]
pub struct Readiness {
    /// Registered tables, from configuration; completed from the catalogue by [`Readiness::ready`].
    configured: Registry,
    ready: OnceLock<Registry>,
    init_sql: Option<String>,
}

impl Readiness {
    /// Not ready yet: `init_sql` runs (idempotently) when it becomes ready, before the catalogue is read.
    pub fn new(configured: Registry, init_sql: Option<String>) -> Self {
        Self {
            configured,
            ready: OnceLock::new(),
            init_sql,
        }
    }

    /// Ensures the sync schema (and the start-up SQL) and discovers FKs and column types, once per process;
    /// afterwards it only returns the registry. Concurrent first calls may both do the (idempotent) work.
    pub async fn ready(&self, client: &mut tokio_postgres::Client) -> Result<&Registry, SchemaError> {
        if let Some(r) = self.ready.get() {
            return Ok(r);
        }
        crate::schema::ensure(client, self.init_sql.as_deref()).await?;
        let mut registry = self.configured.clone();
        registry.discover(client).await?;
        crate::schema::capture::ensure(client, &registry).await?;
        crate::schema::claims::fill(client, &registry).await?;
        let _ = self.ready.set(registry);
        Ok(self.ready.get().expect("just set"))
    }

    /// The registry: discovered once ready, as configured before.
    pub fn registry(&self) -> &Registry {
        self.ready.get().unwrap_or(&self.configured)
    }
}

/// A handler's view of the service.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// Per-user and process-wide shares.
    pub admission: &'a Admission,
    db: &'a Readiness,
}

impl<'a> Ctx<'a> {
    /// A view of the given parts.
    pub fn new(settings: &'a Settings, admission: &'a Admission, db: &'a Readiness) -> Self {
        Self {
            settings,
            admission,
            db,
        }
    }

    /// See [`Readiness::ready`].
    pub async fn ready(&self, client: &mut tokio_postgres::Client) -> Result<&'a Registry, SchemaError> {
        self.db.ready(client).await
    }
}
