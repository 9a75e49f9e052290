//! Development sign-in bodies (PROTOCOL.md §3.2).

use serde::{Deserialize, Serialize};

use super::null_as_default;

/// `POST /signin` request (the flow our client uses).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SigninRequest {
    /// Required, non-empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    /// Ignored.
    #[serde(default, deserialize_with = "null_as_default")]
    pub password: String,
    /// Optional device id; generated when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub device_id: String,
}

/// `POST /signin` 200 response.
#[derive(Debug, Serialize, Deserialize)]
pub struct SigninResponse {
    /// HS256 JWT.
    pub token: String,
    /// `"user-" + username`, the token's `sub`.
    pub user_id: String,
    /// The token's `did`.
    pub device_id: String,
}

/// `POST /dummy-signin` request (the go-oversync example shape).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DummySigninRequest {
    /// Required; becomes `sub` verbatim.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: String,
    /// Ignored.
    #[serde(default, deserialize_with = "null_as_default")]
    pub password: String,
    /// Optional device id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub device: String,
}

/// `POST /dummy-signin` 200 response.
#[derive(Debug, Serialize, Deserialize)]
pub struct DummySigninResponse {
    /// HS256 JWT.
    pub token: String,
    /// Token lifetime in seconds.
    pub expires_in: i64,
    /// The user (`sub`).
    pub user: String,
    /// The device (`did`).
    pub device: String,
}
