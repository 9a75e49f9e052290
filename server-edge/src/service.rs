//! The sync service: routes, authentication, CORS and the handlers, shared unchanged by every front door.

use std::time::Duration;

use oversync_protocol::query::{SNAPSHOT_LIMIT_MAX, SnapshotQuery, WatchQuery};
use oversync_protocol::validate::{DOWNLOAD_LIMIT_DEFAULT, DOWNLOAD_LIMIT_MAX, DownloadQuery};
use oversync_protocol::wire::*;

use futures_util::future::Either;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;

use crate::admission::{Admission, ReadSlot, Shares};
use crate::auth::{Authenticator, Principal, generated_device_id};
use crate::config::{Config, ConfigError};
use crate::ctx::{Ctx, Readiness, Settings};
use crate::error::ApiError;
use crate::http::{Body, BodyError, Request, Response};
use crate::observe::Report;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::{download, upload};

/// The request's `Authorization` and `Oversync-Device-Id` headers.
fn credentials<B>(req: &Request<B>) -> (Option<&str>, Option<&str>) {
    (req.authorization.as_deref(), req.device_id.as_deref())
}

/// How far ahead of an upload body's arrived bytes the byte budget is charged (up to its declared length).
const BODY_WINDOW: usize = 64 << 10;

/// The largest sign-in body read (a user name and a device id).
const SIGNIN_BODY_BYTES: usize = 64 << 10;

/// The service. Cheap to share: one per process (native) or per isolate (Worker).
#[derive(Debug)]
pub struct Service {
    /// Settings.
    pub settings: Settings,
    /// The sync schema and the registry, made ready once.
    db: Readiness,
    auth: Authenticator,
    /// Per-user and process-wide shares of this process.
    pub(crate) admission: Admission,
    /// `/ready`'s last answer, shared by the probes of one second.
    readiness: crate::ready::Probe,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Ready,
    Signin,
    DummySignin,
    Upload,
    Download,
    SchemaVersion,
    Capabilities,
    Snapshot,
    Watch,
    AdminMembers,
    DemoTeams,
}

impl Route {
    fn parse(path: &str, dev_signin: bool, watch: bool, admin: bool) -> Option<Self> {
        Some(match path {
            "/health" => Self::Health,
            "/ready" => Self::Ready,
            "/signin" if dev_signin => Self::Signin,
            "/dummy-signin" if dev_signin => Self::DummySignin,
            "/sync/upload" => Self::Upload,
            "/sync/download" => Self::Download,
            "/sync/schema-version" => Self::SchemaVersion,
            "/sync/capabilities" => Self::Capabilities,
            "/sync/snapshot" => Self::Snapshot,
            "/sync/watch" if watch => Self::Watch,
            "/sync/admin/members" if admin => Self::AdminMembers,
            "/demo/teams" if dev_signin => Self::DemoTeams,
            _ => return None,
        })
    }

    /// The metrics' and log lines' label.
    fn label(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Ready => "ready",
            Self::Signin => "signin",
            Self::DummySignin => "dummy_signin",
            Self::Upload => "upload",
            Self::Download => "download",
            Self::SchemaVersion => "schema_version",
            Self::Capabilities => "capabilities",
            Self::Snapshot => "snapshot",
            Self::Watch => "watch",
            Self::AdminMembers => "admin_members",
            Self::DemoTeams => "demo_teams",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::Signin | Self::DummySignin | Self::Upload | Self::AdminMembers | Self::DemoTeams => "POST",
            _ => "GET",
        }
    }
}

/// A membership route's answer; a change is pushed to the user's hub on a host that tells hubs itself (the Worker;
/// natively `sync.scope_event_v2` notifies), with the change log's newest allocated id as the top.
async fn membership_response(
    conn: &tokio_postgres::Client,
    state: crate::admin::MemberState,
) -> Result<Response, ApiError> {
    let mut resp = Response::json(200, &state);
    if state.changed {
        let top: i64 = conn
            .query_typed_one(crate::schema::scopes::SEQUENCE_TOP_SQL, &[])
            .await
            .map_err(ApiError::admin)?
            .get(0);
        resp.pushed = Some(crate::http::Pushed {
            user: state.user,
            source: "membership".into(),
            top,
            also: Vec::new(),
        });
    }
    Ok(resp)
}

impl Service {
    /// Builds the service from a configuration, without touching the database. `init_sql` is run (idempotently)
    /// when the service becomes ready, before the catalogue is read.
    pub fn new(cfg: &Config, init_sql: Option<String>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let configured = Registry::from_config(cfg)?;
        Ok(Self {
            settings: Settings {
                max_upload_batch_size: cfg.max_upload_batch_size,
                max_payload_bytes: cfg.max_payload_bytes,
                max_request_bytes: cfg.request_limit(),
                max_page_bytes: cfg.max_page_bytes,
                body_timeout_ms: cfg.body_timeout_ms,
                lock_timeout_ms: cfg.lock_timeout_ms,
                dev_signin: cfg.dev_signin,
                token_ttl: cfg.token_ttl,
                schema_version: cfg.schema_version,
                cors_origins: cfg.cors_origins.clone(),
                watch: cfg.watch,
                stream: cfg.watch,
                service_name: cfg.service_name.clone(),
                admin_secret: cfg.admin_secret.clone(),
                max_scopes_per_user: cfg.max_scopes_per_user,
                download_scan_rows: cfg.download_scan_rows,
                backend_poll_ms: cfg.backend_poll_ms,
                json_logs: cfg.log_format == "json",
            },
            db: Readiness::new(configured, init_sql),
            readiness: crate::ready::Probe::default(),
            auth: Authenticator::new(cfg.auth()?),
            admission: Admission::new(Shares {
                uploads_per_user: cfg.max_uploads_per_user,
                reads_per_user: cfg.max_reads_per_user,
                watches_per_user: cfg.max_watches_per_user,
                // A quarter of the native pool at most, so waiting tabs never crowd out uploads.
                watch_looks: (cfg.pool_size / 4).max(1),
                upload_bytes: cfg.upload_bytes_budget(),
            }),
        })
    }

    /// See [`Readiness::ready`].
    pub async fn ready(&self, client: &mut tokio_postgres::Client) -> Result<&Registry, crate::schema::SchemaError> {
        self.db.ready(client).await
    }

    /// The registry: discovered once ready, as configured before.
    pub fn registry(&self) -> &Registry {
        self.db.registry()
    }

    /// A connection of a ready database, for the read routes that need nothing else from the service. (Uploads
    /// read their body before they take a connection, and watches take one per look: they get a [`Ctx`].)
    async fn ready_conn<R: Runtime>(&self, rt: &R) -> Result<R::Conn, ApiError> {
        let mut conn = rt.connect().await.map_err(ApiError::download)?;
        self.ready(&mut conn).await.map_err(ApiError::download)?;
        Ok(conn)
    }

    /// What a handler gets.
    pub fn ctx(&self) -> Ctx<'_> {
        Ctx::new(&self.settings, &self.admission, &self.db)
    }

    /// Handles one request at time `now` (since the Unix epoch). The body is read only once the request is
    /// routed and authenticated, and only by routes that take one.
    /// Every log line of the request carries its id (a `request` span); the response says it in `X-Request-Id`
    /// and carries a [`Report`] of what it did.
    pub async fn handle<R: Runtime, B: Body>(&self, rt: &R, req: Request<B>, now: Duration) -> Response {
        let origin = req.origin.clone();
        let mut report = Report {
            request_id: crate::observe::request_id(req.request_id.as_deref()),
            route: "other",
            ..Report::default()
        };
        let span = tracing::info_span!("request", request_id = %report.request_id);
        let mut resp = async {
            match self.route(rt, req, now, &mut report).await {
                Ok(r) => r,
                Err(e) => {
                    report.code = Some(e.parts().1);
                    report.refusal = e.refusal();
                    e.into_response()
                }
            }
        }
        .instrument(span)
        .await;
        resp.headers.push(("x-request-id", report.request_id.clone()));
        resp.report = report;
        // On every front door: no response is sniffed into another type, and none is kept by a cache (each
        // answers one user's request; a shared cache must never serve it to another, nor a browser's replay it).
        resp.headers.push(("x-content-type-options", "nosniff".into()));
        resp.headers.push(("cache-control", "no-store".into()));
        if let Some(origin) = origin.filter(|o| self.origin_allowed(Some(o))) {
            resp.headers.push(("access-control-allow-origin", origin));
            resp.headers
                .push(("access-control-expose-headers", "Retry-After, X-Request-Id".into()));
            resp.headers.push(("vary", "Origin".into()));
        }
        resp
    }

    async fn route<R: Runtime, B: Body>(
        &self,
        rt: &R,
        req: Request<B>,
        now: Duration,
        report: &mut Report,
    ) -> Result<Response, ApiError> {
        let s = &self.settings;
        let route =
            Route::parse(&req.path, s.dev_signin, s.watch, s.admin_secret.is_some()).ok_or(ApiError::NotFound)?;
        report.route = route.label();
        if req.method == "OPTIONS" {
            // Preflight headers only for configured origins; `handle` adds Access-Control-Allow-Origin.
            let mut r = Response::empty(204);
            if self.origin_allowed(req.origin.as_deref()) {
                r.headers
                    .push(("access-control-allow-methods", "GET, POST, OPTIONS".into()));
                r.headers.push((
                    "access-control-allow-headers",
                    "Authorization, Content-Type, Accept, Oversync-Device-Id, X-Request-Id".into(),
                ));
                r.headers.push(("access-control-max-age", "86400".into()));
            }
            return Ok(r);
        }
        if req.method != route.method() {
            return Err(ApiError::MethodNotAllowed(route.method()));
        }
        let limit = self.settings.max_request_bytes;
        if req.content_length.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::TooLarge(limit));
        }
        match route {
            Route::Health => Ok(Response::json(
                200,
                &HealthResponse {
                    status: "healthy".into(),
                    service: self.settings.service_name.clone(),
                },
            )),
            Route::Ready => Ok(self.readiness.check(rt, &self.db, now).await),
            Route::Signin | Route::DummySignin => {
                let body = self
                    .read_body(rt, req.content_length, req.body, SIGNIN_BODY_BYTES.min(limit), |_| true)
                    .await?;
                if route == Route::Signin {
                    self.signin(&body, now)
                } else {
                    self.dummy_signin(&body, now)
                }
            }
            Route::Upload => {
                let who = self.authenticate(rt, credentials(&req), now).await?;
                // Refused before a byte of the body is read: a user's third upload costs the server nothing.
                let slot = tarpit(rt, self.admission.upload(&who.user_id)).await?;
                // One upload of a user at a time reads, parses and writes; the next waits here with its body
                // unread and no connection, for as long as the first may wait on the advisory lock.
                let patience = Duration::from_millis(self.settings.lock_timeout_ms * u64::from(upload::ATTEMPTS));
                let _turn = within(rt, slot.turn(), patience).await?;
                // Admitted if its declared length fits now; then the byte budget is charged as the body arrives, a
                // window ahead of it: a body declared long that stalls costs what it sent, not what it declared.
                let declared = req.content_length.map_or(limit, |n| n as usize).min(limit);
                let mut bytes = self.admission.upload_bytes(declared, declared.min(BODY_WINDOW))?;
                // On the Worker a body is never refused half read (an answer with the body unread restarted the
                // isolate under wrangler dev): there the check before reading is the bound.
                let arrived = |n: usize| {
                    bytes.grow_to(declared.min(n.saturating_add(BODY_WINDOW))).is_ok() || cfg!(target_arch = "wasm32")
                };
                let body = self
                    .read_body(rt, req.content_length, req.body, declared, arrived)
                    .await?;
                let (result, also) = upload::upload(&self.ctx(), rt, &who, &body).await?;
                report.count(&result.statuses);
                let size = body.len();
                drop((body, bytes));
                rt.upload_done(size);
                let mut resp = Response::json(200, &result);
                // Spurious for a replayed change (applied before): a hint, harmless.
                if result.statuses.iter().any(|s| s.status == Status::Applied) {
                    resp.pushed = Some(crate::http::Pushed {
                        user: who.user_id,
                        source: who.source_id,
                        top: result.highest_server_seq,
                        also,
                    });
                }
                Ok(resp)
            }
            Route::AdminMembers => {
                let secret = self.settings.admin_secret.as_deref().unwrap_or_default();
                if !crate::admin::authorized(credentials(&req).0, secret) {
                    return Err(ApiError::AdminDenied);
                }
                let admin_limit = crate::admin::ADMIN_BODY_BYTES.min(limit);
                let body = self
                    .read_body(rt, req.content_length, req.body, admin_limit, |_| true)
                    .await?;
                let change = crate::admin::parse(&body)?;
                let mut conn = rt.connect().await.map_err(ApiError::admin)?;
                self.ready(&mut conn).await.map_err(ApiError::admin)?;
                let state = crate::admin::apply(&conn, change).await?;
                membership_response(&conn, state).await
            }
            Route::DemoTeams => {
                let who = self.authenticate(rt, credentials(&req), now).await?;
                let admin_limit = crate::admin::ADMIN_BODY_BYTES.min(limit);
                let body = self
                    .read_body(rt, req.content_length, req.body, admin_limit, |_| true)
                    .await?;
                let mut conn = rt.connect().await.map_err(ApiError::admin)?;
                self.ready(&mut conn).await.map_err(ApiError::admin)?;
                let state = crate::admin::demo_team(&conn, &who.user_id, &body).await?;
                membership_response(&conn, state).await
            }
            _ => {
                let who = self.authenticate(rt, credentials(&req), now).await?;
                let resp = self.synced(route, rt, &who, &req.query, report).await?;
                if matches!(route, Route::Download | Route::Snapshot) {
                    report.read = Some((route.label(), resp.body.len() as u64));
                }
                Ok(resp)
            }
        }
    }

    /// `authorization` and `device_id` are the request's headers (passed apart from the request, whose body
    /// need not be `Sync`).
    pub(crate) async fn authenticate<R: Runtime>(
        &self,
        rt: &R,
        (authorization, device_id): (Option<&str>, Option<&str>),
        now: Duration,
    ) -> Result<Principal, ApiError> {
        Ok(self.auth.authenticate(rt, authorization, device_id, now).await?)
    }

    /// Reads a body of at most `limit` bytes within `body_timeout_ms`. A body declared longer is refused before a
    /// byte of it is read (under wrangler dev an early answer to a large unread body hung).
    async fn read_body<R: Runtime, B: Body>(
        &self,
        rt: &R,
        declared: Option<u64>,
        body: B,
        limit: usize,
        arrived: impl FnMut(usize) -> bool,
    ) -> Result<Vec<u8>, ApiError> {
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::TooLarge(limit));
        }
        let read = std::pin::pin!(body.read(limit, arrived));
        let timeout = std::pin::pin!(rt.sleep(Duration::from_millis(self.settings.body_timeout_ms)));
        match futures_util::future::select(read, timeout).await {
            Either::Left((Ok(body), _)) => Ok(body),
            Either::Left((Err(BodyError::TooLarge), _)) => Err(ApiError::TooLarge(limit)),
            Either::Left((Err(BodyError::Refused), _)) => Err(ApiError::Busy(crate::error::RETRY_AFTER_S)),
            Either::Left((Err(BodyError::Failed(e)), _)) => {
                tracing::info!(error = %e, "request body not read");
                Err(ApiError::InvalidRequest("Failed to read request body".into()))
            }
            Either::Right(_) => Err(ApiError::BodyTimeout),
        }
    }

    async fn synced<R: Runtime>(
        &self,
        route: Route,
        rt: &R,
        who: &Principal,
        query: &str,
        report: &mut Report,
    ) -> Result<Response, ApiError> {
        Ok(match route {
            Route::Download => {
                let q = DownloadQuery::from_query(query).map_err(ApiError::InvalidRequest)?;
                let (_slot, _turn) = self.read_turn(rt, who).await?;
                let conn = self.ready_conn(rt).await?;
                let (page, rows) = download::download(&conn, who, &q, &self.settings).await?;
                report.rows = rows.max(0) as u64;
                Response::json_text(200, page)
            }
            Route::Snapshot => {
                let q = SnapshotQuery::from_query(query).map_err(ApiError::InvalidRequest)?;
                let (_slot, _turn) = self.read_turn(rt, who).await?;
                let conn = self.ready_conn(rt).await?;
                let page = crate::snapshot::snapshot(&conn, who, &q, self.settings.max_page_bytes).await?;
                report.rows = page.rows.len() as u64;
                Response::json(200, &page)
            }
            Route::Watch => {
                let q = WatchQuery::from_query(query).map_err(ApiError::InvalidRequest)?;
                Response::json(200, &crate::watch::watch(&self.ctx(), rt, who, &q).await?)
            }
            Route::SchemaVersion => Response::json(
                200,
                &SchemaVersionResponse {
                    schema_version: self.settings.schema_version,
                },
            ),
            _ => Response::json(200, &self.capabilities()),
        })
    }

    /// Admits a read of `who` (429 past its share, after the tarpit) and waits for the user's turn to take a
    /// connection, at most `lock_timeout_ms` (503 beyond).
    async fn read_turn<R: Runtime>(
        &self,
        rt: &R,
        who: &Principal,
    ) -> Result<(ReadSlot<'_>, Option<OwnedSemaphorePermit>), ApiError> {
        let slot = tarpit(rt, self.admission.read(&who.user_id)).await?;
        let turn = within(rt, slot.turn(), Duration::from_millis(self.settings.lock_timeout_ms)).await?;
        Ok((slot, turn))
    }

    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        origin.is_some_and(|o| self.settings.cors_origins.iter().any(|c| c == o || c == "*"))
    }

    /// What `/sync/capabilities` advertises.
    pub fn capabilities(&self) -> Capabilities {
        let s = &self.settings;
        Capabilities {
            protocol: "oversync-classic".into(),
            protocol_version: 1,
            schema_version: s.schema_version,
            limits: Limits {
                max_upload_batch_size: s.max_upload_batch_size as i64,
                max_payload_bytes: s.max_payload_bytes as i64,
                max_request_bytes: s.max_request_bytes as i64,
                download_limit_default: DOWNLOAD_LIMIT_DEFAULT,
                download_limit_max: DOWNLOAD_LIMIT_MAX,
                snapshot_limit_max: SNAPSHOT_LIMIT_MAX,
                max_page_bytes: Some(s.max_page_bytes as i64),
            },
            features: Features {
                replay_returns_version: true,
                next_after_jumps: true,
                fk_precheck: self.registry().fk_precheck.as_str().into(),
                snapshot: true,
                watch: match (s.watch, s.stream) {
                    (true, true) => vec!["long_poll".into(), "stream".into()],
                    (true, false) => vec!["long_poll".into()],
                    _ => Vec::new(),
                },
                scopes: true,
            },
            tables: Some(
                self.registry()
                    .tables()
                    .map(|t| RegisteredTable {
                        schema: t.table.schema.clone(),
                        table: t.table.table.clone(),
                    })
                    .collect(),
            ),
        }
    }

    fn signin(&self, body: &[u8], now: Duration) -> Result<Response, ApiError> {
        let req: SigninRequest = parse_object(body)?;
        if req.username.is_empty() {
            return Err(ApiError::InvalidRequest("username required".into()));
        }
        let device_id = if req.device_id.is_empty() {
            generated_device_id(random_bytes())
        } else if valid_device_id(&req.device_id) {
            req.device_id
        } else {
            return Err(bad_device());
        };
        let user_id = format!("user-{}", req.username);
        let token = self
            .auth
            .issue(&user_id, &device_id, now, self.settings.token_ttl)
            .map_err(ApiError::Token)?;
        Ok(Response::json(
            200,
            &SigninResponse {
                token,
                user_id,
                device_id,
            },
        ))
    }

    fn dummy_signin(&self, body: &[u8], now: Duration) -> Result<Response, ApiError> {
        let req: DummySigninRequest = parse_object(body)?;
        if req.user.is_empty() {
            return Err(ApiError::InvalidRequest("user required".into()));
        }
        let device = if req.device.is_empty() {
            generated_device_id(random_bytes())
        } else if valid_device_id(&req.device) {
            req.device
        } else {
            return Err(bad_device());
        };
        let token = self
            .auth
            .issue(&req.user, &device, now, self.settings.token_ttl)
            .map_err(ApiError::Token)?;
        Ok(Response::json(
            200,
            &DummySigninResponse {
                token,
                expires_in: self.settings.token_ttl,
                user: req.user,
                device,
            },
        ))
    }
}

/// A refusal of admission (429) is sent after [`crate::admission::REFUSAL_DELAY`], a tarpit: a client that ignores
/// `Retry-After` gets one refusal per delay per connection instead of a flood of cheap ones.
async fn tarpit<R: Runtime, T>(rt: &R, admitted: Result<T, ApiError>) -> Result<T, ApiError> {
    if admitted.is_err() {
        rt.sleep(crate::admission::REFUSAL_DELAY).await;
    }
    admitted
}

/// `turn` if it comes within `patience`, else 503 `server_busy`: a request waits for its user's earlier ones
/// without a connection, but not for ever.
async fn within<R: Runtime, T>(
    rt: &R,
    turn: impl std::future::Future<Output = T>,
    patience: Duration,
) -> Result<T, ApiError> {
    let turn = std::pin::pin!(turn);
    let patience = std::pin::pin!(rt.sleep(patience));
    match futures_util::future::select(turn, patience).await {
        Either::Left((turn, _)) => Ok(turn),
        Either::Right(_) => Err(ApiError::Busy(crate::error::RETRY_AFTER_S)),
    }
}

/// A sign-in naming a device id its token could not carry (the rules of `Oversync-Device-Id`).
fn bad_device() -> ApiError {
    ApiError::InvalidRequest("invalid device id: 1 to 128 visible ASCII characters expected".into())
}

/// Fresh randomness for a generated device id: the operating system's generator natively, `crypto.getRandomValues`
/// on the Worker (uuid's `js` feature).
fn random_bytes() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid = || ApiError::InvalidRequest("invalid JSON".into());
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace()).map(|i| body[i]);
    if trimmed != Some(b'{') {
        return Err(invalid());
    }
    serde_json::from_slice(body).map_err(|_| invalid())
}
