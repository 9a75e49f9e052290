//! Errors as JS `Error`s with a stable `code` (the npm package documents the list).

use crate::engine::sqlite_code;
use wasm_bindgen::JsValue;

use crate::SyncError;

/// A JS `Error` with `code` (and `status` for HTTP errors).
pub(crate) fn js_error(code: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    set(&err, "code", &code.into());
    err.into()
}

fn set(err: &js_sys::Error, key: &str, value: &JsValue) {
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(err, &key.into(), value);
}

/// `BAD_ARGUMENT`: the caller passed something unusable.
pub(crate) fn bad_argument(message: impl AsRef<str>) -> JsValue {
    js_error("BAD_ARGUMENT", message.as_ref())
}

/// A SQLite error: `SQLITE_CONSTRAINT`, `SQLITE_BUSY`, … after SQLite's primary result code, `SQLITE_ERROR`
/// otherwise; `sqliteCode` carries the extended code.
pub(crate) fn sqlite(e: &rusqlite::Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    set(&err, "code", &sqlite_code(e).into());
    if let rusqlite::Error::SqliteFailure(f, _) = e {
        set(&err, "sqliteCode", &f.extended_code.into());
    }
    err.into()
}

/// A sync error: `NETWORK`, `UNAUTHORIZED`, `HTTP` (with `status`, and `retryAfterMs` after a `Retry-After`),
/// `PROTOCOL`, `NOT_SIGNED_IN`, `WRONG_USER`, `TOKEN_USER_MISMATCH`, `CONFIG`, or a SQLite code for local
/// storage failures.
pub(crate) fn sync(e: &SyncError) -> JsValue {
    if let SyncError::Storage(inner) = e {
        return sqlite(inner);
    }
    let err = js_sys::Error::new(&e.to_string());
    set(&err, "code", &e.code().into());
    if let SyncError::Unauthorized(_) = e {
        set(&err, "status", &401.into());
    }
    if let SyncError::Http {
        status,
        retry_after,
        request_id,
        ..
    } = e
    {
        set(&err, "status", &(*status).into());
        if let Some(id) = request_id {
            set(&err, "requestId", &id.into());
        }
        if let Some(wait) = retry_after {
            set(&err, "retryAfterMs", &(wait.as_millis() as f64).into());
        }
    }
    err.into()
}

/// `e` (a JS error) with `prefix` before its message; its code and other fields kept.
pub(crate) fn prefixed(e: JsValue, prefix: &str) -> JsValue {
    let message = js_sys::Reflect::get(&e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    let _ = js_sys::Reflect::set(&e, &"message".into(), &format!("{prefix}{message}").into());
    e
}

/// A cycle's error `js` with the URL of the request it came from (`url`, and in the message), for the codes that
/// come from a request: `NETWORK`, `HTTP`, `UNAUTHORIZED`, `PROTOCOL`.
pub(crate) fn with_url(js: JsValue, e: &SyncError, url: Option<String>) -> JsValue {
    let from_request = matches!(
        e,
        SyncError::Network(_) | SyncError::Http { .. } | SyncError::Unauthorized(_) | SyncError::Protocol(_)
    );
    let Some(url) = url.filter(|_| from_request) else {
        return js;
    };
    let _ = js_sys::Reflect::set(&js, &"url".into(), &url.clone().into());
    let message = js_sys::Reflect::get(&js, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    let _ = js_sys::Reflect::set(&js, &"message".into(), &format!("{message} ({url})").into());
    js
}
