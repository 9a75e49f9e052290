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
use worker::{Context, Env, Method, SecureTransport, Socket, event};

use crate::config::Config;
use crate::http::Request;
use crate::runtime::{BoxError, Runtime};
use crate::service::Service;

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

struct EdgeRuntime {
    env: Env,
    /// Resolves when this request's connection task has finished (see [`fetch`]).
    closed: RefCell<Option<oneshot::Receiver<()>>>,
}

impl Runtime for EdgeRuntime {
    type Conn = EdgeConn;

    async fn connect(&self) -> Result<EdgeConn, BoxError> {
        // A later connection of the same request (watch polls) waits for the previous one's clean close.
        let previous = self.closed.borrow_mut().take();
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let hyperdrive = self
            .env
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
        *self.closed.borrow_mut() = Some(closed);
        Ok(EdgeConn(client))
    }

    async fn sleep(&self, d: Duration) {
        worker::Delay::from(d).await;
    }
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|s| s.to_string()))
}

fn service(env: &Env) -> Result<Rc<Service>, String> {
    if let Some(s) = SERVICE.with(|s| s.borrow().clone()) {
        return Ok(s);
    }
    let mut cfg = match var(env, "OVERSYNC_CONFIG") {
        Some(json) => Config::from_json(&json).map_err(|e| e.to_string())?,
        None => Config::from_json("{}").map_err(|e| e.to_string())?,
    };
    cfg.apply_env(|k| var(env, k)).map_err(|e| e.to_string())?;
    let service = Rc::new(Service::new(&cfg, var(env, "OVERSYNC_INIT_SQL")).map_err(|e| e.to_string())?);
    SERVICE.with(|s| *s.borrow_mut() = Some(service.clone()));
    Ok(service)
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(mut req: worker::Request, env: Env, _ctx: Context) -> worker::Result<worker::Response> {
    let service = match service(&env) {
        Ok(s) => s,
        Err(e) => {
            worker::console_error!("oversync configuration: {e}");
            let body = br#"{"error":"internal_error","message":"Server misconfigured"}"#.to_vec();
            let mut resp = worker::Response::from_bytes(body)?.with_status(500);
            resp.headers_mut().set("content-type", "application/json")?;
            return Ok(resp);
        }
    };
    let url = req.url()?;
    let limit = service.settings.max_request_bytes;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let declared = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let (authorization, origin) = (header("authorization"), header("origin"));
    let method = req.method();
    let (body, body_too_large) = if declared.is_some_and(|n| n > limit) {
        (Vec::new(), true)
    } else if matches!(method, Method::Get | Method::Head | Method::Options) {
        (Vec::new(), false)
    } else {
        let body = req.bytes().await.unwrap_or_default();
        let too_large = body.len() > limit;
        (if too_large { Vec::new() } else { body }, too_large)
    };
    let request = Request {
        method: method.to_string().to_uppercase(),
        path: url.path().to_owned(),
        query: url.query().unwrap_or_default().to_owned(),
        authorization,
        origin,
        body,
        body_too_large,
    };
    let now = Duration::from_millis(js_sys::Date::now() as u64);
    let runtime = EdgeRuntime {
        env,
        closed: RefCell::new(None),
    };
    let resp = service.handle(&runtime, request, now).await;
    // The connection was dropped with the request's state; let its task send Terminate and close the socket
    // before the response ends the request, so the database side sees a clean close rather than a reset.
    let closed = runtime.closed.borrow_mut().take();
    if let Some(closed) = closed {
        let _ = closed.await;
    }

    let mut out = if resp.body.is_empty() {
        worker::Response::empty()?
    } else {
        worker::Response::from_bytes(resp.body)?
    };
    out = out.with_status(resp.status);
    for (name, value) in resp.headers {
        out.headers_mut().set(name, &value)?;
    }
    Ok(out)
}
