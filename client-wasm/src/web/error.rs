//! Errors as JS `Error`s with a stable `code` (the npm package documents the list).

use rusqlite::ErrorCode;
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
    let (code, extended) = match e {
        rusqlite::Error::SqliteFailure(f, _) => (primary(f.code), Some(f.extended_code)),
        rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => ("BAD_ARGUMENT", None),
        _ => ("SQLITE_ERROR", None),
    };
    let err = js_sys::Error::new(&e.to_string());
    set(&err, "code", &code.into());
    if let Some(x) = extended {
        set(&err, "sqliteCode", &x.into());
    }
    err.into()
}

fn primary(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ConstraintViolation => "SQLITE_CONSTRAINT",
        ErrorCode::DatabaseBusy => "SQLITE_BUSY",
        ErrorCode::DatabaseLocked => "SQLITE_LOCKED",
        ErrorCode::ReadOnly => "SQLITE_READONLY",
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => "SQLITE_CORRUPT",
        ErrorCode::DiskFull => "SQLITE_FULL",
        ErrorCode::SystemIoFailure => "SQLITE_IOERR",
        ErrorCode::TypeMismatch => "SQLITE_MISMATCH",
        ErrorCode::TooBig => "SQLITE_TOOBIG",
        _ => "SQLITE_ERROR",
    }
}

/// A sync error: `NETWORK`, `UNAUTHORIZED`, `HTTP` (with `status`, and `retryAfterMs` after a `Retry-After`),
/// `PROTOCOL`, `NOT_SIGNED_IN`, `WRONG_USER`, `TOKEN_USER_MISMATCH`, `CONFIG`, or a SQLite code for local
/// storage failures.
pub(crate) fn sync(e: &SyncError) -> JsValue {
    let code = match e {
        SyncError::Storage(inner) => return sqlite(inner),
        SyncError::Network(_) => "NETWORK",
        SyncError::Unauthorized => "UNAUTHORIZED",
        SyncError::Http { .. } => "HTTP",
        SyncError::Protocol(_) => "PROTOCOL",
        SyncError::NotSignedIn => "NOT_SIGNED_IN",
        SyncError::WrongUser(_) => "WRONG_USER",
        SyncError::TokenUserMismatch { .. } => "TOKEN_USER_MISMATCH",
        SyncError::Config(_) => "CONFIG",
    };
    let err = js_sys::Error::new(&e.to_string());
    set(&err, "code", &code.into());
    if let SyncError::Http {
        status, retry_after, ..
    } = e
    {
        set(&err, "status", &(*status).into());
        if let Some(wait) = retry_after {
            set(&err, "retryAfterMs", &(wait.as_millis() as f64).into());
        }
    }
    err.into()
}
