//! Bearer-token authentication (PROTOCOL.md §3.1) and development token issuing (§3.2).
//!
//! A token is checked against exactly one kind of key, chosen by its `alg` before anything else: HS256/384/512
//! against the shared secret, RS/PS/ES/EdDSA against the identity providers' published keys ([`jwks`], fetched
//! and cached by [`remote`]). An HMAC token is never checked against a public key, nor an asymmetric token
//! against the secret, and key hints in the token's header (`jku`, `jwk`, `x5u`) are never followed.
//!
//! `exp` and `nbf` are checked in [`claims`] against the request's `now` rather than by the JWT library's own
//! clock, so the check is deterministic in tests and works on wasm32, where there is no system clock.

pub mod cache;
pub mod claims;
pub mod jwks;
mod remote;

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::Serialize;
use serde_json::{Map, Value};

pub use cache::CachePolicy;
pub use claims::{ClaimNames, TokenRules};
pub use remote::Jwks;

use crate::runtime::Runtime;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user claim (`sub`).
    pub user_id: String,
    /// The device claim (`did`), or the `Oversync-Device-Id` header.
    pub source_id: String,
    /// The token's `exp` (seconds since the Unix epoch), when it has one: a `/sync/stream` is closed then.
    pub expires_at: Option<u64>,
}

/// Why a request is not authenticated. Each is a 401 whose message says which check failed, never what a key
/// is, except [`AuthError::KeysUnavailable`] (503: a new token would not help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Authorization header required")]
    MissingHeader,
    /// Not `Bearer <token>`.
    #[error("Invalid authorization header format")]
    BadHeader,
    /// The token failed a check.
    #[error("Invalid token: {0}")]
    InvalidToken(Invalid),
    /// The user claim is missing or empty.
    #[error("missing {0} (user ID) in token")]
    MissingUser(String),
    /// A user ID starting with U+001F, which names a scope's rows in the sync tables (docs/sharing.md §1), or `*`,
    /// the member that stands for everyone (docs/backend-writes.md §5).
    #[error(
        "the user ID in the token must not start with U+001F (reserved for scopes) or be * (reserved for everyone)"
    )]
    ReservedUser,
    /// Neither the device claim nor the `Oversync-Device-Id` header.
    #[error("missing {0} (device ID) in token")]
    MissingDevice(String),
    /// An `Oversync-Device-Id` header that is not 1 to 128 visible ASCII characters.
    #[error("invalid Oversync-Device-Id header: 1 to 128 visible ASCII characters expected")]
    BadDeviceHeader,
    /// A device claim that is not 1 to 128 visible ASCII characters (the header's rule: the device id is stored,
    /// logged and sent back to every other device).
    #[error("invalid device claim {0:?}: 1 to 128 visible ASCII characters expected")]
    BadDeviceClaim(String),
    /// No identity provider key set could be fetched, and none is cached.
    #[error("the identity provider's keys are unavailable")]
    KeysUnavailable,
}

/// Which check an invalid token failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not a compact JWS, or its header or claims are not JSON of the right types.
    #[error("malformed")]
    Malformed,
    /// An `alg` that is not accepted (`none`, or not in `jwt_algorithms`).
    #[error("algorithm not accepted")]
    Algorithm,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// No published key has the token's `kid` (or, without a `kid`, its algorithm).
    #[error("unknown signing key")]
    UnknownKey,
    /// Past `exp` (and the leeway).
    #[error("expired")]
    Expired,
    /// No `exp`, and `require_exp` is on.
    #[error("no expiry")]
    NoExpiry,
    /// Before `nbf` (less the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// `iss` is not `jwt_issuer`.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` does not contain `jwt_audience`.
    #[error("wrong audience")]
    Audience,
}

impl From<Invalid> for AuthError {
    fn from(i: Invalid) -> Self {
        Self::InvalidToken(i)
    }
}

/// Everything authentication is configured with (see `Config::auth`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The HS secret (also signs dev tokens).
    pub secret: Option<Vec<u8>>,
    /// JWKS URLs.
    pub jwks_urls: Vec<String>,
    /// The accepted `alg`s: HS* only with a secret, the others only with a JWKS.
    pub algorithms: Vec<Algorithm>,
    /// Checks beyond the signature.
    pub rules: TokenRules,
    /// Where the user and device are.
    pub claims: ClaimNames,
    /// JWKS caching.
    pub cache: CachePolicy,
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    did: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Verifies tokens (and issues dev tokens with the secret).
pub struct Authenticator {
    hmac: Option<(DecodingKey, EncodingKey)>,
    jwks: Option<Jwks>,
    algorithms: Vec<Algorithm>,
    rules: TokenRules,
    claims: ClaimNames,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.algorithms)
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `settings`. Algorithms without a key of their kind are dropped.
    pub fn new(settings: AuthSettings) -> Self {
        let hmac = settings
            .secret
            .as_deref()
            .map(|s| (DecodingKey::from_secret(s), EncodingKey::from_secret(s)));
        let jwks = (!settings.jwks_urls.is_empty()).then(|| Jwks::new(&settings.jwks_urls, settings.cache));
        let algorithms = settings
            .algorithms
            .into_iter()
            .filter(|a| match a.family() {
                AlgorithmFamily::Hmac => hmac.is_some(),
                _ => jwks.is_some(),
            })
            .collect();
        Self {
            hmac,
            jwks,
            algorithms,
            rules: settings.rules,
            claims: settings.claims,
        }
    }

    /// Checks an `Authorization` header value at time `now` (since the Unix epoch); `device_header` is the
    /// `Oversync-Device-Id` header, used when the token has no device claim.
    pub async fn authenticate<R: Runtime>(
        &self,
        rt: &R,
        header: Option<&str>,
        device_header: Option<&str>,
        now: Duration,
    ) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::MissingHeader)?;
        let token = header.strip_prefix("Bearer ").ok_or(AuthError::BadHeader)?;
        if token.is_empty() || token.contains(' ') {
            return Err(AuthError::BadHeader);
        }
        let head = jsonwebtoken::decode_header(token).map_err(|_| Invalid::Malformed)?;
        let alg = head.alg;
        if !self.algorithms.contains(&alg) {
            return Err(Invalid::Algorithm.into());
        }
        let claims = match (alg.family(), &self.hmac, &self.jwks) {
            (AlgorithmFamily::Hmac, Some((key, _)), _) => verify(token, key, alg)?,
            (AlgorithmFamily::Hmac, None, _) | (_, _, None) => return Err(Invalid::Algorithm.into()),
            (_, _, Some(jwks)) => {
                let kid = head.kid.as_deref();
                let sets = jwks.sets(rt, kid, now).await.map_err(|_| AuthError::KeysUnavailable)?;
                let mut keys = sets.iter().flat_map(|s| s.candidates(kid, alg)).peekable();
                if keys.peek().is_none() {
                    return Err(Invalid::UnknownKey.into());
                }
                let mut outcome = Err(Invalid::Signature);
                for key in keys {
                    outcome = verify(token, &key.key, alg);
                    if outcome.is_ok() {
                        break;
                    }
                }
                outcome?
            }
        };
        claims::check(&self.rules, &claims, now)?;
        claims::principal(&self.claims, &claims, device_header)
    }

    /// Issues a dev token: `sub`, `did`, `iat` = `nbf` = now, `exp` = now + ttl, signed HS256 with the secret.
    pub fn issue(
        &self,
        sub: &str,
        did: &str,
        now: Duration,
        ttl_secs: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let (_, key) = self
            .hmac
            .as_ref()
            .ok_or_else(|| jsonwebtoken::errors::Error::from(ErrorKind::InvalidKeyFormat))?;
        let iat = now.as_secs();
        let claims = IssuedClaims {
            sub,
            did,
            iat,
            nbf: iat,
            exp: iat.saturating_add_signed(ttl_secs),
        };
        encode(&Header::new(Algorithm::HS256), &claims, key)
    }
}

/// Checks the signature of `token` (whose header says `alg`) with `key` and returns its claims; the time and
/// audience checks are left to [`claims::check`].
fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Map<String, Value>, Invalid> {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    decode::<Map<String, Value>>(token, key, &validation)
        .map(|t| t.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Invalid::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Invalid::Algorithm,
            _ => Invalid::Malformed,
        })
}

/// The device id for a sign-in without one: a version 4 UUID made of `random` (16 random bytes, passed in so
/// tests are deterministic). Not derived from the clock: two devices signing in in the same instant would share it.
pub fn generated_device_id(random: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests;
