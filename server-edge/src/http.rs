//! Runtime-neutral HTTP request and response: the adapters convert to and from their frameworks' types.

use serde::Serialize;

/// An incoming request, already read by the adapter.
#[derive(Debug, Clone, Default)]
pub struct Request {
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
    /// The body, at most `max_request_bytes` long.
    pub body: Vec<u8>,
    /// The adapter stopped reading because the body exceeded `max_request_bytes`.
    pub body_too_large: bool,
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
}

impl Response {
    /// A JSON response.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("wire types serialise");
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body,
        }
    }

    /// An empty response.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}
