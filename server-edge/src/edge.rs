//! The Worker front door (workerd / Cloudflare Workers): converts `worker` requests for [`Service::handle`] and
//! provides one Postgres connection per request through the Hyperdrive binding `DB`.
//!
//! Configuration comes from wrangler: `OVERSYNC_CONFIG` (JSON: the table registry and any settings), the scalar
//! `OVERSYNC_*` overrides as vars, `JWT_SECRET` as a secret, and optionally `OVERSYNC_INIT_SQL`. The service is
//! built once per isolate; the sync schema is ensured on the first request that touches the database.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use tokio_postgres::Client;
use worker::postgres_tls::PassthroughTls;
use worker::{Context, Env, ScheduleContext, ScheduledEvent, SecureTransport, Socket, event};

use oversync_protocol::wire::{STREAM_PROTOCOL, StreamOffer};

use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Body, BodyError, Request};
use crate::runtime::{BoxError, Fetched, Runtime};
use crate::service::Service;

mod hub;
mod io;

use io::{read_within, to_worker};

thread_local! {
    static SERVICE: RefCell<Option<Rc<Service>>> = const { RefCell::new(None) };
}

/// A connection opened for this request; closed when dropped (Hyperdrive pools on the other side).
pub struct EdgeConn(Client);

impl Deref for EdgeConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0
    }
}

impl DerefMut for EdgeConn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.0
    }
}

impl crate::runtime::Fixed for EdgeConn {
    fn query_fixed(
        &self,
        sql: &'static str,
        params: &crate::runtime::Params<'_>,
    ) -> impl std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>> {
        self.0.query_typed(sql, params)
    }
}

/// A connection through the Hyperdrive binding `DB`, and what resolves once its task has finished.
pub(crate) async fn open_db(env: &Env) -> Result<(Client, oneshot::Receiver<()>), BoxError> {
    let hyperdrive = env
        .hyperdrive("DB")
        .map_err(|e| format!("Hyperdrive binding DB: {e}"))?;
    let socket = Socket::builder()
        .secure_transport(SecureTransport::StartTls)
        .connect(hyperdrive.host(), hyperdrive.port())
        .map_err(|e| format!("opening a socket to Hyperdrive: {e}"))?;
    let config: tokio_postgres::Config = hyperdrive.connection_string().parse()?;
    let (client, connection) = config.connect_raw(socket, PassthroughTls).await?;
    let (done, closed) = oneshot::channel();
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = connection.await {
            worker::console_error!("postgres connection: {e}");
        }
        let _ = done.send(());
    });
    Ok((client, closed))
}

struct EdgeRuntime {
    env: Env,
    /// Resolves when this request's connection task has finished (see [`fetch`]).
    closed: RefCell<Option<oneshot::Receiver<()>>>,
}

impl Runtime for EdgeRuntime {
    type Conn = EdgeConn;

    /// The isolate's WebAssembly memory only grows, by about eleven times an upload's body: past
    /// [`WASM_MEMORY_WARNING`] an operator is told to lower `max_request_bytes`.
    fn upload_done(&self, bytes: usize) {
        use wasm_bindgen::JsCast;
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        let size = js_sys::ArrayBuffer::from(memory.buffer()).byte_length() as usize;
        if size > WASM_MEMORY_WARNING {
            worker::console_warn!(
                "the isolate's wasm memory is {} MiB after an upload of {} KiB (an isolate has 128 MB): lower \
                 max_request_bytes or max_upload_bytes_in_flight",
                size >> 20,
                bytes >> 10
            );
        }
    }

    async fn connect(&self) -> Result<EdgeConn, BoxError> {
        // A later connection of the same request (watch polls) waits for the previous one's clean close.
        let previous = self.closed.borrow_mut().take();
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let (client, closed) = open_db(&self.env).await?;
        *self.closed.borrow_mut() = Some(closed);
        Ok(EdgeConn(client))
    }

    async fn sleep(&self, d: Duration) {
        worker::Delay::from(d).await;
    }

    async fn get(&self, url: &str, limit: usize) -> Result<Fetched, BoxError> {
        let text = |e: worker::Error| e.to_string();
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::Get)
            .with_redirect(worker::RequestRedirect::Manual);
        let req = worker::Request::new_with_init(url, &init).map_err(text)?;
        let mut resp = worker::Fetch::Request(req).send().await.map_err(text)?;
        let status = resp.status_code();
        let cache_control = resp.headers().get("cache-control").map_err(text)?;
        let body = match read_within(resp.stream().map_err(text)?, limit, |_| true).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return Err(format!("response body over {limit} bytes").into()),
            Err(e) => return Err(e.to_string().into()),
        };
        Ok(Fetched {
            status,
            cache_control,
            body,
        })
    }
}

/// `GET /sync/stream`: authenticates like every route, looks at the log once for the top, and hands the socket
/// to the user's hub.
async fn stream(service: &Service, req: worker::Request, env: Env) -> worker::Result<worker::Response> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let error = |e: ApiError| to_worker(e.into_response());
    if !header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return error(ApiError::InvalidRequest("a WebSocket upgrade is required".into()));
    }
    let offer = StreamOffer::parse(header("sec-websocket-protocol").as_deref());
    if !offer.protocol {
        return error(ApiError::InvalidRequest(format!(
            "offer the {STREAM_PROTOCOL} subprotocol"
        )));
    }
    let now = Duration::from_millis(js_sys::Date::now() as u64);
    let runtime = EdgeRuntime {
        env: env.clone(),
        closed: RefCell::new(None),
    };
    let who = match service.open_stream(&runtime, &offer, now).await {
        Ok(who) => who,
        Err(refusal) => return hub::refuse(&refusal),
    };
    // Without a look (no share free, or the database failed) the stream still opens; the client syncs on open.
    let top = match crate::stream::top(service, &runtime, &who).await {
        Ok(top) => top,
        Err(e) => {
            worker::console_warn!("stream: looking for the top: {e}");
            None
        }
    };
    let closed = runtime.closed.borrow_mut().take();
    if let Some(closed) = closed {
        let _ = closed.await;
    }
    let admitted = hub::Admitted {
        user: &who.user_id,
        device: &who.source_id,
        exp: who.expires_at,
        top,
        limit: service.admission.watches_per_user(),
        poll_ms: service.settings.backend_poll_ms,
    };
    hub::connect(&env, admitted).await
}

/// The body of a Worker request, streamed by the service after authentication and cut off at the limit (a
/// chunked body has no Content-Length to check first).
struct EdgeBody(worker::Request);

impl Body for EdgeBody {
    async fn read(mut self, limit: usize, arrived: impl FnMut(usize) -> bool) -> Result<Vec<u8>, BodyError> {
        let Some(stream) = self.0.stream().ok() else {
            return Ok(Vec::new());
        };
        read_within(stream, limit, arrived).await.map_err(|e| match e {
            BodyError::Failed(e) => BodyError::Failed(format!("reading the request body: {e}")),
            e => e,
        })
    }
}

/// WebAssembly memory past which [`EdgeRuntime::upload_done`] warns.
const WASM_MEMORY_WARNING: usize = 96 << 20;

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|s| s.to_string()))
}

/// The configuration: `OVERSYNC_CONFIG` (JSON) and the `OVERSYNC_*` vars over it.
fn config(env: &Env) -> Result<Config, crate::config::ConfigError> {
    let mut cfg = Config::from_json(&var(env, "OVERSYNC_CONFIG").unwrap_or_else(|| "{}".into()))?;
    cfg.apply_env(|k| var(env, k))?;
    cfg.fit_isolate();
    Ok(cfg)
}

fn service(env: &Env) -> Result<Rc<Service>, ApiError> {
    if let Some(s) = SERVICE.with(|s| s.borrow().clone()) {
        return Ok(s);
    }
    let bad = |e: crate::config::ConfigError| ApiError::Misconfigured(e.into());
    let cfg = config(env).map_err(bad)?;
    let mut service = Service::new(&cfg, var(env, "OVERSYNC_INIT_SQL")).map_err(bad)?;
    // `/sync/stream` needs the user hubs; without the binding the Worker offers the long-poll only.
    service.settings.stream = cfg.watch && env.durable_object(hub::BINDING).is_ok();
    let service = Rc::new(service);
    if cfg.dev_signin {
        // Once per isolate: the service is built once and kept in SERVICE.
        worker::console_warn!("{}", crate::config::DEV_SIGNIN_WARNING);
    }
    SERVICE.with(|s| *s.borrow_mut() = Some(service.clone()));
    Ok(service)
}

/// Steps one cron run takes at most (a scheduled handler has 30 s of wall time, and a step takes a few ms); the
/// pass goes on at the next run from the position kept in the database.
const CRON_STEPS: u64 = 2000;

/// The Cron Trigger (`[triggers] crons` in wrangler.toml): history compaction (docs/history.md), the native
/// server's background task on the edge. Its totals are one log line.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    match compact(&env).await {
        Ok(t) => worker::console_log!("{t}"),
        Err(e) => worker::console_error!("compaction failed: {e}"),
    }
}

async fn compact(env: &Env) -> Result<crate::compact::Totals, BoxError> {
    let service = service(env).map_err(|e| e.to_string())?;
    let horizons = crate::compact::Horizons::from_config(&config(env)?);
    let (mut client, closed) = open_db(env).await?;
    service.ready(&mut client).await?;
    let totals = crate::compact::pass(&client, &horizons, CRON_STEPS, &mut |_| {}).await;
    drop(client);
    let _ = closed.await;
    Ok(totals?)
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
    io::install_console_log();
}

#[event(fetch)]
async fn fetch(req: worker::Request, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let service = match service(&env) {
        Ok(s) => s,
        // Logged (with its cause) by into_response; the client gets the envelope only.
        Err(e) => return to_worker(e.into_response()),
    };
    let url = req.url()?;
    if url.path() == "/sync/stream" && service.settings.stream {
        return stream(&service, req, env).await;
    }
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let content_length = header("content-length").and_then(|v| v.parse().ok());
    let (authorization, origin) = (header("authorization"), header("origin"));
    let method = req.method();
    let request = Request {
        method: method.to_string().to_uppercase(),
        path: url.path().to_owned(),
        query: url.query().unwrap_or_default().to_owned(),
        authorization,
        origin,
        device_id: header(oversync_protocol::wire::DEVICE_ID_HEADER),
        content_length,
        request_id: header("x-request-id"),
        body: EdgeBody(req),
    };
    let started = js_sys::Date::now();
    let now = Duration::from_millis(started as u64);
    let runtime = EdgeRuntime {
        env: env.clone(),
        closed: RefCell::new(None),
    };
    let mut resp = service.handle(&runtime, request, now).await;
    let elapsed = Duration::from_secs_f64((js_sys::Date::now() - started).max(0.0) / 1000.0);
    let method = method.to_string().to_uppercase();
    io::report(
        &env,
        &resp.report,
        &method,
        resp.status,
        elapsed,
        service.settings.json_logs,
    );
    if let Some(pushed) = resp.pushed.take().filter(|_| service.settings.stream) {
        // After the answer: the upload never waits for its hub.
        ctx.wait_until(hub::notify(env, pushed));
    }
    // The connection was dropped with the request's state; let its task send Terminate and close the socket
    // before the response ends the request, so the database side sees a clean close rather than a reset.
    let closed = runtime.closed.borrow_mut().take();
    if let Some(closed) = closed {
        let _ = closed.await;
    }

    to_worker(resp)
}
