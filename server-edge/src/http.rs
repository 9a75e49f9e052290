//! Runtime-neutral HTTP request and response: the adapters convert to and from their frameworks' types.

use std::future::Future;

use serde::Serialize;

/// An incoming request: its head as the adapter read it, and a body not read yet. The service reads the body only
/// after routing, the method check and authentication, with the limit that applies.
#[derive(Debug, Clone, Default)]
pub struct Request<B = Vec<u8>> {
    /// Upper-case method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// `Oversync-Device-Id` (the device, for tokens without a device claim).
    pub device_id: Option<String>,
    /// The declared `Content-Length`, if any (a chunked body has none).
    pub content_length: Option<u64>,
    /// The `X-Request-Id` header (kept when usable, see [`crate::observe::request_id`]).
    pub request_id: Option<String>,
    /// The unread body.
    pub body: B,
}

/// A request body the service reads once, at most `limit` bytes of it.
pub trait Body {
    /// Reads the whole body, stopping (with [`BodyError::TooLarge`]) as soon as it passes `limit` bytes. After each
    /// chunk `arrived` is told the bytes read so far; when it answers false reading stops with
    /// [`BodyError::Refused`] (the upload byte budget, charged as bytes arrive).
    fn read(self, limit: usize, arrived: impl FnMut(usize) -> bool)
    -> impl Future<Output = Result<Vec<u8>, BodyError>>;
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It passed the limit; reading stopped there.
    #[error("body exceeds the limit")]
    TooLarge,
    /// Its bytes did not fit the budget of bodies in flight; reading stopped there.
    #[error("body bytes over the budget")]
    Refused,
    /// The connection failed while reading.
    #[error("reading the body failed: {0}")]
    Failed(String),
}

/// Appends `chunk` to `body` within `limit`, and tells `arrived`: the step of every [`Body`] implementation.
pub fn append_chunk(
    body: &mut Vec<u8>,
    chunk: &[u8],
    limit: usize,
    arrived: &mut impl FnMut(usize) -> bool,
) -> Result<(), BodyError> {
    if body.len() + chunk.len() > limit {
        return Err(BodyError::TooLarge);
    }
    body.extend_from_slice(chunk);
    if arrived(body.len()) {
        Ok(())
    } else {
        Err(BodyError::Refused)
    }
}

/// An already-buffered body (tools and tests).
impl Body for Vec<u8> {
    async fn read(self, limit: usize, mut arrived: impl FnMut(usize) -> bool) -> Result<Vec<u8>, BodyError> {
        if self.len() > limit {
            return Err(BodyError::TooLarge);
        }
        if !arrived(self.len()) {
            return Err(BodyError::Refused);
        }
        Ok(self)
    }
}

/// An outgoing response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// An upload that applied changes: a front door whose database cannot notify (the Worker) tells the user's
    /// hub after answering.
    pub pushed: Option<Pushed>,
    /// What the request did, for the front door's metrics and log line.
    pub report: crate::observe::Report,
}

/// A commit to tell a user's hub about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The user whose log grew.
    pub user: String,
    /// The device that uploaded.
    pub source: String,
    /// The user's highest `server_id` after the commit.
    pub top: i64,
    /// Other users to tell, for a commit to shared rows (docs/sharing.md §7): each member of a written scope,
    /// with the source as that member's streams compare it and the scope's top.
    pub also: Vec<(String, String, i64)>,
}

impl Response {
    /// A JSON response.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("wire types serialise");
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body,
            pushed: None,
            report: Default::default(),
        }
    }

    /// A JSON response whose body is already written.
    pub fn json_text(status: u16, body: String) -> Self {
        Self {
            body: body.into_bytes(),
            ..Self::json(status, &())
        }
    }

    /// An empty response.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            pushed: None,
            report: Default::default(),
        }
    }
}
