//! The closed set of HTTP errors (PROTOCOL.md §4.7), mapped to responses in one place. Internal causes are
//! logged, never sent.

use oversync_protocol::wire::ErrorBody;

use crate::auth::AuthError;
use crate::http::Response;
use crate::runtime::BoxError;

/// A request that ends in a non-2xx envelope.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401 `authentication_failed`.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 404 `not_found`.
    #[error("Not found")]
    NotFound,
    /// 405 `method_not_allowed`; the allowed method.
    #[error("Only {0} method is allowed")]
    MethodNotAllowed(&'static str),
    /// 413 `request_too_large`; the limit.
    #[error("Request body exceeds {0} bytes")]
    TooLarge(usize),
    /// 500 `upload_failed`: the transaction failed after its retries; nothing was applied.
    #[error("upload failed: {0}")]
    Upload(#[source] BoxError),
    /// 500 `download_failed`.
    #[error("download failed: {0}")]
    Download(#[source] BoxError),
    /// 500 `token_error`: signing a dev token failed.
    #[error("token signing failed: {0}")]
    Token(#[source] jsonwebtoken::errors::Error),
}

impl ApiError {
    /// Wraps an upload failure.
    pub fn upload(e: impl Into<BoxError>) -> Self {
        Self::Upload(e.into())
    }

    /// Wraps a download failure.
    pub fn download(e: impl Into<BoxError>) -> Self {
        Self::Download(e.into())
    }

    /// The status code, wire code and message.
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            Self::InvalidRequest(m) => (400, "invalid_request", m.clone()),
            Self::Auth(e) => (401, "authentication_failed", e.to_string()),
            Self::NotFound => (404, "not_found", self.to_string()),
            Self::MethodNotAllowed(_) => (405, "method_not_allowed", self.to_string()),
            Self::TooLarge(_) => (413, "request_too_large", self.to_string()),
            Self::Upload(_) => (500, "upload_failed", "Failed to process upload".into()),
            Self::Download(_) => (500, "download_failed", "Failed to process download".into()),
            Self::Token(_) => (500, "token_error", "Failed to sign token".into()),
        }
    }

    /// The envelope response; 5xx causes are logged here.
    pub fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status >= 500 {
            let mut chain = self.to_string();
            let mut cause = std::error::Error::source(&self);
            while let Some(c) = cause {
                chain.push_str(&format!(": {c}"));
                cause = c.source();
            }
            tracing::error!(error = %chain, "request failed");
        }
        Response::json(status, &ErrorBody::new(code, message))
    }
}
