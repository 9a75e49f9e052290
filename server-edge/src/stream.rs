//! `GET /sync/stream` (extension, docs/realtime.md): the runtime-neutral part of the WebSocket that tells a
//! device `{"top": N}` whenever its user's log grows with another device's changes. The front doors own the
//! socket (natively an axum task fed by the [`crate::hub::ChangeHub`]; on the Worker a Durable Object per user,
//! see `edge/hub.rs`); here are the opening checks, the one look at open, and the pure decisions.

use std::time::Duration;

use oversync_protocol::wire::{StreamOffer, stream_close};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::hub::Notice;
use crate::runtime::Runtime;
use crate::service::Service;

/// How long a stream may stay silent (no ping, no message) before the server closes it: three missed pings of a
/// client pinging every 30 s. Natively only: a hibernated Worker socket costs nothing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(95);

/// How long one write to a stream may wait for the device to read: past it the device has stopped reading (its
/// socket buffers are full), and the stream is dropped without a close frame, giving back its share and socket.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pings a stream may send at once ([`PingBudget`]); a client pings every 30 s.
const PING_BURST: u32 = 10;

/// Pings per second a stream may sustain past its burst.
const PINGS_PER_S: u32 = 1;

/// A stream's ping allowance: a token bucket of [`PING_BURST`] pings refilled at [`PINGS_PER_S`]. A client that
/// pings past it is closed with 1008 (a loop of pings cost a core in pongs). Time is passed in.
#[derive(Debug, Clone, Copy)]
pub struct PingBudget {
    tokens: u32,
    since: Duration,
}

impl PingBudget {
    /// A full bucket at `now`.
    pub fn new(now: Duration) -> Self {
        Self {
            tokens: PING_BURST,
            since: now,
        }
    }

    /// Takes one ping's token at `now`; false when there is none (the stream must be closed).
    pub fn take(&mut self, now: Duration) -> bool {
        let earned = now.saturating_sub(self.since).as_secs() as u32 * PINGS_PER_S;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(PING_BURST);
            self.since = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Why a stream is closed or refused: the close code and its reason (at most 123 bytes once cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A code of [`stream_close`] or RFC 6455 §7.4.1.
    pub code: u16,
    /// Human-readable; for 4001 the same message as a 401 body.
    pub reason: String,
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        let (status, _, message) = e.parts();
        let code = match status {
            401 => stream_close::UNAUTHORIZED,
            429 => stream_close::TOO_MANY,
            // No key set yet, or no connection: a moment later will do (RFC 6455 "try again later").
            503 => 1013,
            _ => stream_close::INTERNAL,
        };
        Self { code, reason: message }
    }
}

impl Refusal {
    /// The close for a client frame other than `ping` (RFC 6455 policy violation).
    pub fn unexpected() -> Self {
        Self {
            code: 1008,
            reason: "only \"ping\" is accepted on this stream".into(),
        }
    }

    /// The close for a client pinging past its [`PingBudget`] (RFC 6455 policy violation).
    pub fn ping_flood() -> Self {
        Self {
            code: 1008,
            reason: "too many pings: one a second at most".into(),
        }
    }

    /// The close for a token that expired while the stream was open.
    pub fn expired() -> Self {
        Self {
            code: stream_close::UNAUTHORIZED,
            reason: ApiError::Auth(crate::auth::AuthError::InvalidToken(crate::auth::Invalid::Expired))
                .parts()
                .2,
        }
    }
}

impl Service {
    /// Authenticates a stream from its subprotocol offer, exactly as a request with the same `Authorization`
    /// and `Oversync-Device-Id` headers would be.
    pub async fn open_stream<R: Runtime>(
        &self,
        rt: &R,
        offer: &StreamOffer,
        now: Duration,
    ) -> Result<Principal, Refusal> {
        let authorization = offer.authorization();
        Ok(self
            .authenticate(rt, (authorization.as_deref(), offer.device.as_deref()), now)
            .await?)
    }
}

/// The newest `server_id` of `who`'s changes from other devices (0 when none), of the user's scopes too (a
/// client that is not scope-aware only syncs once more on open), in one look; `None` when no look share or
/// connection was free (the caller tries again or leaves it to the next notice).
pub async fn top<R: Runtime>(svc: &Service, rt: &R, who: &Principal) -> Result<Option<i64>, ApiError> {
    Ok(crate::watch::look(&svc.ctx(), rt, who, 0, true)
        .await?
        .map(|t| t.unwrap_or(0)))
}

/// What a stream does on a hub notice, having told the device `told` so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send `{"top": n}`.
    Tell(i64),
    /// Notices were missed: look at the log.
    Look,
    /// Nothing new for this device.
    Ignore,
}

/// The decision for `notice` on the stream of device `me` that has told `told`.
pub fn on_notice(notice: &Notice, me: &str, told: i64) -> Step {
    match notice {
        Notice::Change { source, top } if **source != *me && *top > told => Step::Tell(*top),
        Notice::Change { .. } => Step::Ignore,
        Notice::Resync => Step::Look,
    }
}

/// How long until `who`'s token expires at `now` (zero when it has); `None` for a token without `exp`.
pub fn until_expiry(who: &Principal, now: Duration) -> Option<Duration> {
    who.expires_at.map(|exp| Duration::from_secs(exp).saturating_sub(now))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pings_past_the_burst_and_the_rate_are_refused() {
        let s = std::time::Duration::from_secs;
        let mut b = super::PingBudget::new(s(100));
        assert!((0..10).all(|_| b.take(s(100))), "a burst of ten");
        assert!(!b.take(s(100)), "the eleventh at once");
        assert!(b.take(s(101)) && !b.take(s(101)), "one more a second");
        assert!(
            (0..10).all(|_| b.take(s(200))) && !b.take(s(200)),
            "refilled to the burst, no more"
        );
    }

    use super::*;

    fn change(source: &str, top: i64) -> Notice {
        Notice::Change {
            source: source.into(),
            top,
        }
    }

    #[test]
    fn only_other_devices_news_above_what_was_told_is_sent() {
        assert_eq!(on_notice(&change("b", 7), "a", 5), Step::Tell(7));
        assert_eq!(on_notice(&change("a", 7), "a", 5), Step::Ignore);
        assert_eq!(on_notice(&change("b", 5), "a", 5), Step::Ignore);
        assert_eq!(on_notice(&Notice::Resync, "a", 5), Step::Look);
    }

    #[test]
    fn expiry_counts_down_to_zero() {
        let who = |exp| Principal {
            user_id: "u".into(),
            source_id: "d".into(),
            expires_at: exp,
        };
        let now = Duration::from_secs(100);
        assert_eq!(until_expiry(&who(Some(130)), now), Some(Duration::from_secs(30)));
        assert_eq!(until_expiry(&who(Some(90)), now), Some(Duration::ZERO));
        assert_eq!(until_expiry(&who(None), now), None);
    }

    #[test]
    fn refusals_map_statuses_to_close_codes() {
        let auth = Refusal::from(ApiError::Auth(crate::auth::AuthError::MissingHeader));
        assert_eq!(auth.code, stream_close::UNAUTHORIZED);
        assert_eq!(
            Refusal::from(ApiError::TooManyRequests("watches", 1)).code,
            stream_close::TOO_MANY
        );
        assert_eq!(Refusal::from(ApiError::Busy(1)).code, 1013);
        assert_eq!(Refusal::expired().reason, "Invalid token: expired");
    }
}
