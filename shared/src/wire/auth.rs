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

/// The request header that names the device when the token has no device claim (PROTOCOL.md §3.1). It only
/// separates one user's own devices: whoever holds the user's token may name any device.
pub const DEVICE_ID_HEADER: &str = "Oversync-Device-Id";

/// The longest device id the [`DEVICE_ID_HEADER`] may carry.
pub const MAX_DEVICE_ID_BYTES: usize = 128;

/// Whether `value` is a usable [`DEVICE_ID_HEADER`]: 1 to [`MAX_DEVICE_ID_BYTES`] visible ASCII characters
/// (no spaces or controls), enough for a UUID or any id a classic client puts into `did`.
pub fn valid_device_id(value: &str) -> bool {
    (1..=MAX_DEVICE_ID_BYTES).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_short_visible_ascii() {
        for ok in [
            "6c1f0e52-3b7d-4f7e-9a51-8d2c4b0a9e13",
            "device-123",
            "a",
            &"x".repeat(128),
        ] {
            assert!(valid_device_id(ok), "{ok}");
        }
        for bad in ["", " ", "a b", "tab\t", "ümlaut", &"x".repeat(129), "nul\0"] {
            assert!(!valid_device_id(bad), "{bad:?}");
        }
    }
}
