//! The native front door: axum on tokio, a deadpool-postgres pool, graceful shutdown.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use tokio_postgres::{Client, NoTls};

use crate::http::{BodyError, Request};
use crate::hub::ChangeHub;
use crate::observe::names;
use crate::runtime::{BoxError, Fetched, Fixed, Params, PoolBusy, Runtime, append_within};
use crate::{Config, Service};

/// Connections from the pool, tokio's timer and an HTTP client (for identity provider key sets).
#[derive(Clone)]
pub struct NativeRuntime {
    pool: deadpool_postgres::Pool,
    http: reqwest::Client,
    /// Pushed changes for `/sync/watch`, from [`crate::listen`] (with `watch` on).
    hub: Option<Arc<ChangeHub>>,
}

/// The HTTP client for key sets: rustls with the system's roots, no redirects, bounded connect time.
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("oversync-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// A pooled connection; returned to the pool on drop.
pub struct PooledConn(deadpool_postgres::Object);

impl Deref for PooledConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.0
    }
}

impl Fixed for PooledConn {
    async fn query_fixed(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let types: Vec<_> = params.iter().map(|(_, t)| t.clone()).collect();
        let statement = self.0.prepare_typed_cached(sql, &types).await?;
        let values: Vec<_> = params.iter().map(|(v, _)| *v).collect();
        self.0.query(&statement, &values).await
    }
}

impl Runtime for NativeRuntime {
    type Conn = PooledConn;

    async fn connect(&self) -> Result<PooledConn, BoxError> {
        let asked = std::time::Instant::now();
        let got = self.pool.get().await;
        metrics::histogram!(names::POOL_WAIT).record(asked.elapsed().as_secs_f64());
        match got {
            Ok(c) => Ok(PooledConn(c)),
            Err(deadpool_postgres::PoolError::Timeout(_)) => {
                metrics::counter!(names::POOL_TIMEOUTS).increment(1);
                Err(Box::new(PoolBusy))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    async fn get(&self, url: &str, limit: usize) -> Result<Fetched, BoxError> {
        let mut resp = self.http.get(url).send().await?;
        let status = resp.status().as_u16();
        let cache_control = resp
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            append_within(&mut body, &chunk, limit)?;
        }
        Ok(Fetched {
            status,
            cache_control,
            body,
        })
    }

    fn hub(&self) -> Option<&ChangeHub> {
        self.hub.as_deref()
    }

    fn compute<T>(&self, f: impl FnOnce() -> T) -> T {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
            _ => f(),
        }
    }

    fn retire(&self, conn: PooledConn) {
        // Taken out of the pool, the client and its connection task end; the pool opens a fresh one when needed.
        drop(deadpool_postgres::Object::take(conn.0));
    }

    /// glibc serves a large upload's allocations (body, parsed payloads, statement parameters) from its arenas once
    /// its dynamic mmap threshold has risen, and keeps the freed pages resident (bench/results/hostile-load.md).
    /// `malloc_trim(0)` gives every arena's free pages back to the kernel; it walks the arenas, so it runs on a
    /// blocking thread and only after bodies of [`TRIM_AFTER_BYTES`] or more.
    fn upload_done(&self, bytes: usize) {
        if bytes >= TRIM_AFTER_BYTES {
            release_free_memory();
        }
    }
}

/// The body size from which an answered upload gives freed memory back (smaller ones reuse what is held).
const TRIM_AFTER_BYTES: usize = 4 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "FFI: glibc's malloc_trim, which libc declares unsafe as every foreign function"
)]
fn release_free_memory() {
    tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim has no preconditions; it only returns free pages of the allocator's heaps.
        unsafe { libc::malloc_trim(0) };
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

mod compaction;
mod prometheus;
mod stream;

struct AppState {
    service: Service,
    runtime: NativeRuntime,
    /// Set at shutdown: open `/sync/stream`s close with 1001.
    closing: tokio::sync::watch::Sender<bool>,
}

/// The axum router: every path goes to [`Service::handle`]; with `static_dir`, a GET of an existing file is served
/// from it first (the demo app on the same origin as the sync routes). Every response says `nosniff`; with
/// `static_dir`, every response also carries the app's security headers ([`APP_HEADERS`]).
fn router(
    state: Arc<AppState>,
    static_dir: Option<&std::path::Path>,
    guarded_metrics: Option<prometheus::Exporter>,
) -> axum::Router {
    let mut api = axum::Router::new();
    if state.service.settings.stream {
        api = api.route("/sync/stream", axum::routing::get(stream::handle));
    }
    if let Some(e) = guarded_metrics {
        api = api.route(
            "/metrics",
            axum::routing::get(move |headers| prometheus::guarded_route(axum::extract::State(e), headers)),
        );
    }
    let api = api.fallback(handle).with_state(state);
    let router = match static_dir {
        None => api,
        Some(dir) => {
            let files = tower_http::services::ServeDir::new(dir)
                .call_fallback_on_method_not_allowed(true)
                .fallback(api);
            with_headers(axum::Router::new().fallback_service(files), APP_HEADERS)
        }
    };
    with_headers(router, &[("x-content-type-options", "nosniff")])
}

/// The security headers of a served web app. The policy fits the demo and apps like it built with Vite on
/// oversync-web: scripts, the package's module worker, the service worker and the sync routes all come from this
/// origin; the wasm module is compiled from a fetch (`'wasm-unsafe-eval'`, also in the worker, whose script is
/// served with this policy); no inline scripts or styles; icons may be `data:` URLs. `Referrer-Policy:
/// same-origin` rather than `no-referrer`, which would make browsers send `Origin: null` on the app's own POSTs.
const APP_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; \
         img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// `router` with each of `headers` set on every response that does not already carry it.
fn with_headers(router: axum::Router, headers: &[(&'static str, &'static str)]) -> axum::Router {
    headers.iter().fold(router, |router, &(name, value)| {
        router.layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ))
    })
}

async fn handle(State(state): State<Arc<AppState>>, req: axum::extract::Request) -> axum::response::Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let header_text = |name: HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        authorization: header_text(header::AUTHORIZATION),
        origin: header_text(header::ORIGIN),
        device_id: header_text(HeaderName::from_static("oversync-device-id")),
        content_length: header_text(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        request_id: header_text(HeaderName::from_static("x-request-id")),
        body: NativeBody(body),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let method = request.method.clone();
    let resp = state.service.handle(&state.runtime, request, now).await;
    let elapsed = started.elapsed();
    resp.report.record(resp.status, elapsed);
    resp.report.log(&method, resp.status, elapsed);

    let mut out = axum::response::Response::new(Body::from(resp.body));
    *out.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in resp.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.headers_mut().append(name, v);
        }
    }
    out
}

/// The body of an axum request, read by the service after authentication.
struct NativeBody(Body);

impl crate::http::Body for NativeBody {
    async fn read(self, limit: usize, mut arrived: impl FnMut(usize) -> bool) -> Result<Vec<u8>, BodyError> {
        use http_body_util::BodyExt as _;
        // Frame by frame: an oversized body is never buffered whole, and each frame is charged as it arrives.
        let (mut stream, mut body) = (self.0, Vec::new());
        while let Some(frame) = stream.frame().await {
            let frame = frame.map_err(|e| BodyError::Failed(format!("reading the request body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                crate::http::append_chunk(&mut body, data, limit, &mut arrived)?;
            }
        }
        Ok(body)
    }
}

/// Connects, prepares the schema and registry, and serves until SIGINT/SIGTERM. Prints
/// `oversync-server listening on http://ADDR` once the socket is bound (tests read it when the port is 0).
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    if cfg.adopt_on_start {
        tracing::info!("adopt_on_start: adopting the rows already in the business tables before serving");
    }
    let server = Bound::new(cfg).await?;
    println!("oversync-server listening on http://{}", server.addr);
    server.run(shutdown_signal()).await
}

/// `oversync-server adopt`: prepares the schema and capture triggers, adopts every captured table with progress
/// on stderr, and prints the summary.
pub async fn adopt(cfg: Config) -> anyhow::Result<()> {
    let (client, service) = command_connection(&cfg).await?;
    let registry = service.registry();
    let done = crate::adopt::adopt(&client, registry, &mut |line: &str| eprintln!("{line}")).await?;
    println!("{}", crate::adopt::summary(&done));
    Ok(())
}

/// `oversync-server compact`: prepares the schema, runs one compaction pass to its end with progress on stderr,
/// and prints what it removed.
pub async fn compact(cfg: Config) -> anyhow::Result<()> {
    let (client, _) = command_connection(&cfg).await?;
    let h = crate::compact::Horizons::from_config(&cfg);
    let mut last = std::time::Instant::now();
    let mut progress = |t: &crate::compact::Totals| {
        if last.elapsed() >= Duration::from_secs(2) {
            last = std::time::Instant::now();
            eprintln!("… at server_id {}: {t}", t.position);
        }
    };
    let t = crate::compact::pass(&client, &h, u64::MAX, &mut progress).await?;
    println!("{t}");
    Ok(())
}

/// A command's connection, on a database whose sync schema (and capture triggers) are ready, and the service
/// that made it ready (its registry discovered).
async fn command_connection(cfg: &Config) -> anyhow::Result<(Client, Service)> {
    cfg.validate()?;
    let url = database_url(cfg)?;
    let (mut client, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(conn);
    let service = Service::new(cfg, init_sql(cfg)?)?;
    service.ready(&mut client).await.context("preparing the sync schema")?;
    Ok((client, service))
}

/// The database URL setting, required.
fn database_url(cfg: &Config) -> anyhow::Result<String> {
    cfg.database_url
        .clone()
        .context("missing setting: database_url (or DATABASE_URL)")
}

/// The start-up SQL's text, read from the `init_sql` file when one is set.
fn init_sql(cfg: &Config) -> anyhow::Result<Option<String>> {
    cfg.init_sql
        .as_ref()
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading init_sql {}", path.display())))
        .transpose()
}

/// A server whose socket is bound and whose schema is ready, not yet serving. Lets tests and tools run the real
/// server in-process on a free port.
pub struct Bound {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    pool: deadpool_postgres::Pool,
    static_dir: Option<std::path::PathBuf>,
    /// The `LISTEN` task feeding the change hub (with `watch` on).
    notifications: Option<tokio::task::JoinHandle<()>>,
    /// The background compaction (with `compact_interval_s` > 0).
    compaction: Option<tokio::task::JoinHandle<()>>,
    /// The metrics exporter (with `metrics_listen` or `metrics_secret`) and the `metrics_listen` socket.
    metrics: Option<(prometheus::Exporter, Option<tokio::net::TcpListener>)>,
}

impl Bound {
    /// Connects to PostgreSQL, ensures the sync schema and binds `cfg.listen`.
    pub async fn new(cfg: Config) -> anyhow::Result<Self> {
        cfg.validate()?;
        if cfg.dev_signin {
            tracing::warn!(listen = %cfg.listen, "{}", crate::config::DEV_SIGNIN_WARNING);
        }
        let url = database_url(&cfg)?;
        let mut pool_cfg = deadpool_postgres::Config::new();
        pool_cfg.url = Some(url);
        let mut pool = deadpool_postgres::PoolConfig::new(cfg.pool_size.max(1));
        // A request waits this long for a connection, then gets 503 + Retry-After; creating a
        // connection is bounded too, so a stuck PostgreSQL cannot hold waiters forever.
        pool.timeouts.wait = Some(Duration::from_millis(cfg.pool_wait_timeout_ms));
        pool.timeouts.create = Some(Duration::from_secs(10));
        pool_cfg.pool = Some(pool);
        let pool = pool_cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), NoTls)?;
        // Before anything records: the listener, the schema work.
        let metrics = match cfg.metrics_on() {
            false => None,
            true => {
                let exporter = prometheus::Exporter::new(pool.clone(), cfg.metrics_secret.clone())?;
                let own = match &cfg.metrics_listen {
                    Some(addr) => Some(
                        tokio::net::TcpListener::bind(addr)
                            .await
                            .with_context(|| format!("binding metrics_listen {addr}"))?,
                    ),
                    None => None,
                };
                Some((exporter, own))
            }
        };
        let init_sql = init_sql(&cfg)?;
        let service = Service::new(&cfg, init_sql)?;
        {
            let mut conn = pool.get().await.context("connecting to PostgreSQL")?;
            let registry = service.ready(&mut conn).await.context("preparing the sync schema")?;
            if cfg.adopt_on_start {
                let done = crate::adopt::adopt(&conn, registry, &mut |line: &str| tracing::info!("{line}"))
                    .await
                    .context("adopting the rows already in the business tables")?;
                tracing::info!("{}", crate::adopt::summary(&done));
            }
        }
        let tables: Vec<String> = service.registry().tables().map(|t| t.table.to_string()).collect();
        tracing::info!(?tables, dev_signin = cfg.dev_signin, "sync schema ready");
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        // One LISTEN connection feeds every /sync/watch waiter of this process.
        let (hub, notifications) = if cfg.watch && cfg.watch_listen {
            let hub = Arc::new(ChangeHub::new());
            let db: tokio_postgres::Config = cfg
                .database_url
                .as_deref()
                .unwrap_or_default()
                .parse()
                .context("database_url")?;
            let notifications = tokio::spawn(crate::listen::run(hub.clone(), db));
            // Serve once it listens (or after 2 s; until then waiters poll), so a start is pushed from the
            // first request on.
            for _ in 0..40 {
                if hub.is_live() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (Some(hub), Some(notifications))
        } else {
            (None, None)
        };
        let compaction = (cfg.compact_interval_s > 0).then(|| {
            let h = crate::compact::Horizons::from_config(&cfg);
            tokio::spawn(compaction::run(
                pool.clone(),
                h,
                Duration::from_secs(cfg.compact_interval_s),
            ))
        });
        let state = Arc::new(AppState {
            service,
            runtime: NativeRuntime {
                pool: pool.clone(),
                http: http_client()?,
                hub,
            },
            closing: tokio::sync::watch::channel(false).0,
        });
        Ok(Self {
            addr,
            listener,
            state,
            pool,
            static_dir: cfg.static_dir.clone(),
            notifications,
            compaction,
            metrics,
        })
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests. Pushed long-polls end at once
    /// (unchanged; the client watches again elsewhere) instead of holding the drain until their timeout.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (hub, notifications) = (self.state.runtime.hub.clone(), self.notifications);
        let compaction = self.compaction;
        let (exporter, metrics_socket) = self.metrics.unzip();
        let metrics_server = metrics_socket.flatten().zip(exporter.clone()).map(|(socket, e)| {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(socket, e.router()).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            })
        });
        let guarded = exporter.filter(prometheus::Exporter::guarded);
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.closing.send_replace(true);
            if let Some(task) = compaction {
                task.abort();
            }
            if let Some(task) = metrics_server {
                task.abort();
            }
            if let Some(task) = notifications {
                task.abort();
            }
            if let Some(hub) = hub {
                hub.set_live(false);
            }
        };
        axum::serve(self.listener, router(self.state, self.static_dir.as_deref(), guarded))
            .with_graceful_shutdown(shutdown)
            .await?;
        self.pool.close();
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
