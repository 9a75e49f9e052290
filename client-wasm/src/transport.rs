//! The engine's only network dependency: two requests. A native implementation (reqwest) serves tests and tools;
//! the browser's is `web::HostTransport` (fetch through gloo-net, with the worker's hooks around each request).

use std::future::Future;
use std::time::Duration;

pub use oversync_protocol::wire::DEVICE_ID_HEADER;
use oversync_protocol::wire::valid_device_id;

/// Who a request is from: the bearer token, and this database's device id. Tokens from an identity provider
/// carry no device claim, so every request also names the device in the [`DEVICE_ID_HEADER`] (a server
/// ignores it when the token has a `did`, and a classic server ignores it altogether).
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The bearer token.
    pub token: &'a str,
    /// The device id ([`crate::Engine::source_id`]).
    pub device: &'a str,
}

impl<'a> Credentials<'a> {
    /// The [`DEVICE_ID_HEADER`] value: the device id, unless it is not 1 to 128 visible ASCII characters (an
    /// app-chosen id no header can carry; such a device needs tokens with a `did`).
    pub fn device_header(&self) -> Option<&'a str> {
        valid_device_id(self.device).then_some(self.device)
    }
}

/// A response: status, body bytes, the server's retry hint and its request id.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// The `Retry-After` header (an overloaded server's 429 or 503), parsed by [`retry_after`].
    pub retry_after: Option<Duration>,
    /// The `X-Request-Id` header: the id of the server's log line for this request (docs/operations.md §3).
    pub request_id: Option<String>,
}

/// Parses a `Retry-After` value in its delay-seconds form (`"5"`). The HTTP-date form yields `None`: this
/// server never sends it, and honouring it would need a wall clock the engine does not read.
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The request could not be completed (no response at all).
#[derive(Debug, thiserror::Error)]
#[error("network error: {0}")]
pub struct NetworkError(pub String);

/// Why the host's auth gave no fresh token: the app's callback threw or did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// What the callback said.
    pub message: String,
    /// A failure that waiting may cure (the network, a server answering 5xx, 429 or 503, a throw the app marked
    /// retryable): the cycle fails with `AUTH_UNAVAILABLE` and is retried, instead of `AUTH`.
    pub temporary: bool,
}

/// HTTP to the sync server. `path` starts with `/` and may carry a query string. Every request carries the
/// bearer token and the [`DEVICE_ID_HEADER`] ([`Credentials::device_header`]).
pub trait Transport {
    /// `POST path` with a JSON body.
    fn post(
        &self,
        path: &str,
        auth: Credentials<'_>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Reply, NetworkError>>;
    /// `GET path`.
    fn get(&self, path: &str, auth: Credentials<'_>) -> impl Future<Output = Result<Reply, NetworkError>>;

    /// Gives the host's event loop a turn. Called between the pages of a hydration, whose next page is usually
    /// fetched by the time the previous one is applied: without a turn the pages would follow each other in
    /// one run of microtasks, and a browser worker would answer no UI query until the hydration ends.
    /// Natively (and by default) there is nothing to wait for.
    fn yield_to_host(&self) -> impl Future<Output = ()> {
        std::future::ready(())
    }

    /// A fresh token after the server refused the current one (401), from the host's auth: `Ok(None)` when it
    /// has none, `Err` with the reason when asking failed (the app's callback threw or did not answer). The
    /// engine asks at most once per request (see `Engine::fresh_token`). By default there is none.
    fn fresh_token(&self) -> impl Future<Output = Result<Option<String>, AuthFailure>> {
        std::future::ready(Ok(None))
    }

    /// Milliseconds on a monotonic clock, to time page applies (snapshot and download pages are sized by
    /// them); `None` without a clock.
    fn now_ms(&self) -> Option<f64> {
        None
    }
}

/// reqwest-based transport for native use.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base: String,
    http: reqwest::Client,
    started: std::time::Instant,
}

#[cfg(not(target_arch = "wasm32"))]
impl HttpTransport {
    /// A transport for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            started: std::time::Instant::now(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, auth: Credentials<'_>) -> Result<Reply, NetworkError> {
        let mut req = req.bearer_auth(auth.token);
        if let Some(device) = auth.device_header() {
            req = req.header(DEVICE_ID_HEADER, device);
        }
        let resp = req.send().await.map_err(|e| NetworkError(e.to_string()))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.map_err(|e| NetworkError(e.to_string()))?.to_vec();
        Ok(Reply {
            status,
            body,
            retry_after,
            request_id,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Transport for HttpTransport {
    async fn post(&self, path: &str, auth: Credentials<'_>, body: Vec<u8>) -> Result<Reply, NetworkError> {
        let req = self.http.post(format!("{}{path}", self.base));
        self.send(req.header("content-type", "application/json").body(body), auth)
            .await
    }

    async fn get(&self, path: &str, auth: Credentials<'_>) -> Result<Reply, NetworkError> {
        self.send(self.http.get(format!("{}{path}", self.base)), auth).await
    }

    fn now_ms(&self) -> Option<f64> {
        Some(self.started.elapsed().as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_delay_seconds_and_ignores_dates() {
        assert_eq!(retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after("1.5"), None);
    }

    #[test]
    fn the_device_header_carries_only_ids_a_header_can() {
        let header = |device: &str| Credentials { token: "t", device }.device_header().map(str::to_owned);
        let uuid = "9b2f6d1e-5c1a-4f7e-9d3b-2a6c8e4f1b07";
        assert_eq!(header(uuid).as_deref(), Some(uuid));
        assert_eq!(header("phone-1").as_deref(), Some("phone-1"));
        assert_eq!(header(&"d".repeat(128)).map(|d| d.len()), Some(128));
        for unusable in ["", "my phone", "téléphone", "tab\there", &"d".repeat(129)] {
            assert_eq!(header(unusable), None, "{unusable:?}");
        }
    }
}
