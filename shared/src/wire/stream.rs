//! `GET /sync/stream` (extension, docs/realtime.md): a WebSocket on which the server says `{"top": N}` whenever
//! the user's log grows with another device's changes. Credentials travel in the `Sec-WebSocket-Protocol` offer
//! (a browser cannot set other headers on a WebSocket, and a query string ends up in logs); the server answers
//! with [`STREAM_PROTOCOL`] only, never echoing a credential.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The subprotocol the server selects; a client must offer it.
pub const STREAM_PROTOCOL: &str = "oversync.v1";

/// Prefix of the offered subprotocol carrying the bearer token (a JWT is made of subprotocol-safe characters).
pub const TOKEN_PROTOCOL_PREFIX: &str = "oversync.token.";

/// Prefix of the offered subprotocol carrying the device id, base64url without padding (a device id may hold
/// characters a subprotocol cannot). Stands in for the `Oversync-Device-Id` header.
pub const DEVICE_PROTOCOL_PREFIX: &str = "oversync.device.";

/// What a client sends to keep the connection alive; the server answers [`PONG`].
pub const PING: &str = "ping";

/// The answer to [`PING`].
pub const PONG: &str = "pong";

/// The one message the server sends (besides [`PONG`]): the newest `server_id` of the user's changes from
/// other devices that the server knows of. A hint: the client answers with a download from its own cursor when
/// `top` is above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTop {
    /// The newest `server_id` (0: none yet).
    pub top: i64,
}

/// Close codes the server uses (RFC 6455 §7.4.2 private range for ours).
pub mod stream_close {
    /// The server is shutting down: reconnect (to another instance) after a short pause.
    pub const GOING_AWAY: u16 = 1001;
    /// Something failed on the server: reconnect with backoff.
    pub const INTERNAL: u16 = 1011;
    /// The token is invalid or has expired: reconnect with a fresh one. The reason says which check failed.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The user has too many streams and watches open: reconnect later, with backoff.
    pub const TOO_MANY: u16 = 4029;
}

/// The credentials of a stream, read from a `Sec-WebSocket-Protocol` offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOffer {
    /// The offer includes [`STREAM_PROTOCOL`].
    pub protocol: bool,
    /// The bearer token, when offered.
    pub token: Option<String>,
    /// The device id, when offered and decodable.
    pub device: Option<String>,
}

impl StreamOffer {
    /// Reads every offered subprotocol of `header` (comma-separated, RFC 6455 §4.1); an undecodable device is
    /// left out (authentication then names it missing).
    pub fn parse(header: Option<&str>) -> Self {
        let mut offer = Self {
            protocol: false,
            token: None,
            device: None,
        };
        for item in header.unwrap_or_default().split(',').map(str::trim) {
            if item == STREAM_PROTOCOL {
                offer.protocol = true;
            } else if let Some(token) = item.strip_prefix(TOKEN_PROTOCOL_PREFIX) {
                offer.token.get_or_insert_with(|| token.to_owned());
            } else if let Some(device) = item.strip_prefix(DEVICE_PROTOCOL_PREFIX) {
                let decoded = URL_SAFE_NO_PAD
                    .decode(device)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                if offer.device.is_none() {
                    offer.device = decoded;
                }
            }
        }
        offer
    }

    /// The token as an `Authorization` header value.
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }
}

/// The subprotocols a client offers for `token` and `device`.
pub fn stream_offer(token: &str, device: &str) -> Vec<String> {
    vec![
        STREAM_PROTOCOL.to_owned(),
        format!("{TOKEN_PROTOCOL_PREFIX}{token}"),
        format!("{DEVICE_PROTOCOL_PREFIX}{}", URL_SAFE_NO_PAD.encode(device)),
    ]
}

/// A close reason within RFC 6455's 123 bytes, cut at a character boundary.
pub fn close_reason(text: &str) -> &str {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_round_trips_and_unknown_items_are_ignored() {
        let offered = stream_offer("a.b.c", "dev:1/ü").join(", ");
        let offer = StreamOffer::parse(Some(&format!("chat, {offered}")));
        assert!(offer.protocol);
        assert_eq!(offer.token.as_deref(), Some("a.b.c"));
        assert_eq!(offer.device.as_deref(), Some("dev:1/ü"));
        assert_eq!(offer.authorization().as_deref(), Some("Bearer a.b.c"));
    }

    #[test]
    fn a_missing_or_broken_offer_reads_as_absent() {
        assert_eq!(
            StreamOffer::parse(None),
            StreamOffer {
                protocol: false,
                token: None,
                device: None
            }
        );
        let offer = StreamOffer::parse(Some("oversync.v1,oversync.device.!!"));
        assert!(offer.protocol && offer.device.is_none() && offer.token.is_none());
    }

    #[test]
    fn reasons_are_cut_to_123_bytes_at_a_character() {
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'));
        assert_eq!(close_reason("short"), "short");
    }

    #[test]
    fn the_top_message_is_one_field() {
        assert_eq!(serde_json::to_string(&StreamTop { top: 42 }).unwrap(), r#"{"top":42}"#);
    }
}
