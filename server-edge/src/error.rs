//! The closed set of HTTP errors (PROTOCOL.md §4.7), mapped to responses in one place. Internal causes are
//! logged, never sent.

use oversync_protocol::wire::ErrorBody;

use crate::auth::AuthError;
use crate::http::Response;
use crate::runtime::{BoxError, PoolBusy};

/// What a 429 or 503 asks the client to wait, in seconds.
pub const RETRY_AFTER_S: u32 = 1;

/// Start-up schema work that waited past its lock timeout: nothing was done, a later request tries again.
fn is_schema_busy(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(e.downcast_ref(), Some(crate::schema::SchemaError::LockTimeout(_)))
}

/// A request that ends in a non-2xx envelope.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401 `authentication_failed`.
    #[error(transparent)]
    Auth(AuthError),
    /// 503 `auth_unavailable`: no identity provider key set could be fetched and none is cached; retry after
    /// the given seconds (a new token would not help).
    #[error("The identity provider's signing keys are unavailable, retry later")]
    AuthUnavailable(u32),
    /// 401 `unauthorized`: the admin route without its secret.
    #[error("The admin secret is required")]
    AdminDenied,
    /// 403 `scope_forbidden`: a scope's download or snapshot by a user who is not a member of it.
    #[error("Not a member of scope {0}")]
    ScopeForbidden(String),
    /// 410 `history_pruned`: the download's cursor is below the owner's history horizon (tombstones it may not have
    /// seen were removed); the body's `horizon` is that `server_id`. The device re-hydrates (docs/history.md).
    #[error("History before server_id {0} was removed: re-hydrate from /sync/snapshot")]
    HistoryPruned(i64),
    /// 404 `not_found`.
    #[error("Not found")]
    NotFound,
    /// 405 `method_not_allowed`; the allowed method.
    #[error("Only {0} method is allowed")]
    MethodNotAllowed(&'static str),
    /// 413 `request_too_large`; the limit.
    #[error("Request body exceeds {0} bytes")]
    TooLarge(usize),
    /// 413 `request_too_large`: more changes than the server reads (twice `max_upload_batch_size`); the body
    /// was not read past them.
    #[error("batch too large: more than {cap} changes, limit={limit}")]
    TooManyChanges {
        /// `max_upload_batch_size`.
        limit: usize,
        /// Where reading stopped.
        cap: usize,
    },
    /// 408 `request_timeout`: the body did not arrive within `body_timeout_ms`.
    #[error("Request body not received in time")]
    BodyTimeout,
    /// 429 `too_many_requests`: the user already has its share of requests of this kind in flight; retry after
    /// the given seconds.
    #[error("Too many {0} in flight for this user")]
    TooManyRequests(&'static str, u32),
    /// 503 `server_busy`: no database connection within `pool_wait_timeout_ms`, a lock not obtained within
    /// `lock_timeout_ms`, or the user's own earlier request held its turn too long; retry after the given seconds.
    /// Nothing was applied.
    #[error("Server busy, retry later")]
    Busy(u32),
    /// 500 `upload_failed`: the transaction failed after its retries; nothing was applied.
    #[error("upload failed: {0}")]
    Upload(#[source] BoxError),
    /// 500 `download_failed`.
    #[error("download failed: {0}")]
    Download(#[source] BoxError),
    /// 500 `internal_error`: the Worker's configuration cannot be used (the cause is logged, not sent).
    #[error("server misconfigured: {0}")]
    Misconfigured(#[source] BoxError),
    /// 500 `admin_failed`: the membership write failed; nothing changed.
    #[error("admin request failed: {0}")]
    Admin(#[source] BoxError),
    /// 500 `token_error`: signing a dev token failed.
    #[error("token signing failed: {0}")]
    Token(#[source] jsonwebtoken::errors::Error),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable => Self::AuthUnavailable(AUTH_RETRY_AFTER_S),
            e => Self::Auth(e),
        }
    }
}

/// What a 503 `auth_unavailable` asks the client to wait, in seconds.
pub const AUTH_RETRY_AFTER_S: u32 = 5;

impl ApiError {
    /// Wraps an upload failure; a connection the pool could not give in time, or start-up schema work that gave up
    /// waiting for a lock, is [`ApiError::Busy`].
    pub fn upload(e: impl Into<BoxError>) -> Self {
        Self::busy_or(e.into(), Self::Upload)
    }

    /// Wraps a download failure; a connection the pool could not give in time, or start-up schema work that gave up
    /// waiting for a lock, is [`ApiError::Busy`].
    pub fn download(e: impl Into<BoxError>) -> Self {
        Self::busy_or(e.into(), Self::Download)
    }

    /// Wraps an admin route failure; "busy" as for [`ApiError::upload`].
    pub fn admin(e: impl Into<BoxError>) -> Self {
        Self::busy_or(e.into(), Self::Admin)
    }

    /// A host error that means "busy" (no pooled connection in time, start-up DDL or a statement that waited past
    /// its lock timeout) becomes 503 + `Retry-After`; any other is wrapped by `wrap`.
    fn busy_or(e: BoxError, wrap: fn(BoxError) -> Self) -> Self {
        if e.is::<PoolBusy>() || is_schema_busy(&*e) || crate::pg::is_lock_timeout(&*e) {
            Self::Busy(RETRY_AFTER_S)
        } else {
            wrap(e)
        }
    }

    /// The `Retry-After` seconds of a 429 or 503.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::TooManyRequests(_, s) | Self::Busy(s) | Self::AuthUnavailable(s) => Some(*s),
            _ => None,
        }
    }

    /// The status code, wire code and message.
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            Self::InvalidRequest(m) => (400, "invalid_request", m.clone()),
            Self::Auth(e) => (401, "authentication_failed", e.to_string()),
            Self::AdminDenied => (401, "unauthorized", self.to_string()),
            Self::ScopeForbidden(_) => (403, "scope_forbidden", self.to_string()),
            Self::NotFound => (404, "not_found", self.to_string()),
            Self::HistoryPruned(_) => (410, "history_pruned", self.to_string()),
            Self::MethodNotAllowed(_) => (405, "method_not_allowed", self.to_string()),
            Self::TooLarge(_) | Self::TooManyChanges { .. } => (413, "request_too_large", self.to_string()),
            Self::BodyTimeout => (408, "request_timeout", self.to_string()),
            Self::TooManyRequests(..) => (429, "too_many_requests", self.to_string()),
            Self::Busy(_) => (503, "server_busy", self.to_string()),
            Self::AuthUnavailable(_) => (503, "auth_unavailable", self.to_string()),
            Self::Upload(_) => (500, "upload_failed", "Failed to process upload".into()),
            Self::Download(_) => (500, "download_failed", "Failed to process download".into()),
            Self::Token(_) => (500, "token_error", "Failed to sign token".into()),
            Self::Admin(_) => (500, "admin_failed", "Failed to change the membership".into()),
            Self::Misconfigured(_) => (500, "internal_error", "Server misconfigured".into()),
        }
    }

    /// For a refusal for load, its cause as metrics label it: the kind of request past its share (429), `busy` or
    /// `auth_unavailable` (503).
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            Self::TooManyRequests(kind, _) => Some(kind),
            Self::Busy(_) => Some("busy"),
            Self::AuthUnavailable(_) => Some("auth_unavailable"),
            _ => None,
        }
    }

    /// The envelope response (exactly §4.7's: the request's id travels in the `X-Request-Id` header); 5xx causes
    /// are logged here, inside the request's span, so with its id.
    pub fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        // A busy answer is load shedding, not a failure: no error line per shed request.
        // (A missing key set is logged where the fetch failed.)
        if status >= 500 && !matches!(self, Self::Busy(_) | Self::AuthUnavailable(_)) {
            let mut chain = self.to_string();
            let mut cause = std::error::Error::source(&self);
            while let Some(c) = cause {
                chain.push_str(&format!(": {c}"));
                cause = c.source();
            }
            tracing::error!(error = %chain, "request failed");
        }
        let retry_after = self.retry_after();
        let mut body = ErrorBody::new(code, message);
        if let Self::HistoryPruned(h) = self {
            body.horizon = Some(h);
        }
        let mut resp = Response::json(status, &body);
        if let Some(s) = retry_after {
            resp.headers.push(("retry-after", s.to_string()));
        }
        resp
    }
}
