//! The browser transport: `fetch` (gloo-net) with the hosting worker's hooks around each request.

use gloo_net::http::{Request, RequestBuilder};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::transport::{AuthFailure, Credentials, DEVICE_ID_HEADER, NetworkError, Reply, Transport, retry_after};

#[wasm_bindgen]
extern "C" {
    /// What the worker provides (see `npm/src/worker.ts`).
    pub type Host;

    /// Called just before a request: false while offline (simulated or reported by the browser). Synchronous, so
    /// the request starts on the first poll (the engine overlaps a snapshot fetch with the previous page's apply).
    #[wasm_bindgen(method, js_name = beforeRequest)]
    fn before_request(this: &Host) -> bool;

    /// Resolves when the engine may touch the database again: no app transaction is open.
    #[wasm_bindgen(method, js_name = afterResponse)]
    fn after_response(this: &Host) -> js_sys::Promise;

    /// Resolves in a new task of the worker's event loop (not a microtask), so queued messages are served first,
    /// and once no app transaction is open (the engine writes next).
    #[wasm_bindgen(method, js_name = yieldTask)]
    fn yield_task(this: &Host) -> js_sys::Promise;

    /// A fresh token from the app's `auth` (asked with `refresh: true`) after the server refused the current
    /// one; resolves to `null` when it gives none.
    #[wasm_bindgen(method, js_name = freshToken)]
    fn fresh_token(this: &Host) -> js_sys::Promise;
    /// The abort signal for the next request (a timeout, and `close()`).
    #[wasm_bindgen(method)]
    fn signal(this: &Host) -> web_sys::AbortSignal;
}

/// `fetch` to the sync server, gated by the host.
pub struct HostTransport {
    base: String,
    host: Host,
}

impl HostTransport {
    /// The absolute URL of `path` on the sync server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn new(base: &str, host: Host) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            host,
        }
    }

    async fn send(&self, req: RequestBuilder, body: Option<Vec<u8>>) -> Result<Reply, NetworkError> {
        if !self.host.before_request() {
            return Err(NetworkError("offline".into()));
        }
        let req = req.abort_signal(Some(&self.host.signal()));
        let req: Result<Request, _> = match body {
            // JSON is UTF-8 text; fetch sends a string body as UTF-8.
            Some(b) => req.body(String::from_utf8_lossy(&b).into_owned()),
            None => req.build(),
        };
        let result = async {
            let resp = req?.send().await?;
            let status = resp.status();
            // Readable cross-origin only if the server exposes it (`Access-Control-Expose-Headers`).
            let retry_after = resp.headers().get("retry-after").as_deref().and_then(retry_after);
            let request_id = resp.headers().get("x-request-id");
            Ok::<_, gloo_net::Error>(Reply {
                status,
                body: resp.binary().await?,
                retry_after,
                request_id,
            })
        }
        .await;
        // Wait for the app's open transaction (if any) before the engine writes the outcome.
        let _ = JsFuture::from(self.host.after_response()).await;
        result.map_err(|e| NetworkError(e.to_string()))
    }
}

/// The bearer token, and the device for tokens without a device claim (a cross-origin server must list the
/// header in `Access-Control-Allow-Headers`).
fn authorized(req: RequestBuilder, auth: Credentials<'_>) -> RequestBuilder {
    let req = req.header("authorization", &format!("Bearer {}", auth.token));
    match auth.device_header() {
        Some(device) => req.header(DEVICE_ID_HEADER, device),
        None => req,
    }
}

impl Transport for HostTransport {
    async fn post(&self, path: &str, auth: Credentials<'_>, body: Vec<u8>) -> Result<Reply, NetworkError> {
        let req = Request::post(&format!("{}{path}", self.base)).header("content-type", "application/json");
        self.send(authorized(req, auth), Some(body)).await
    }

    async fn fresh_token(&self) -> Result<Option<String>, AuthFailure> {
        match JsFuture::from(self.host.fresh_token()).await {
            Ok(token) => Ok(token.as_string()),
            Err(e) => {
                let field = |name: &str| js_sys::Reflect::get(&e, &name.into()).ok().and_then(|v| v.as_string());
                Err(AuthFailure {
                    message: field("message").unwrap_or_else(|| format!("{e:?}")),
                    temporary: field("code").as_deref() == Some("AUTH_UNAVAILABLE"),
                })
            }
        }
    }

    async fn get(&self, path: &str, auth: Credentials<'_>) -> Result<Reply, NetworkError> {
        self.send(authorized(Request::get(&format!("{}{path}", self.base)), auth), None)
            .await
    }

    async fn yield_to_host(&self) {
        let _ = JsFuture::from(self.host.yield_task()).await;
    }

    fn now_ms(&self) -> Option<f64> {
        Some(js_sys::Date::now())
    }
}
