//! Bearer-token authentication (PROTOCOL.md §3.1) and development token issuing (§3.2).
//!
//! `exp` and `nbf` are checked here against the request's `now` rather than by the JWT library's own clock,
//! so the check is deterministic in tests and works on wasm32, where there is no system clock.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// JWT `sub`.
    pub user_id: String,
    /// JWT `did`.
    pub source_id: String,
}

/// Why a request is not authenticated; each maps to the exact §3.1 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Authorization header required")]
    MissingHeader,
    /// Not `Bearer <token>`.
    #[error("Invalid authorization header format")]
    BadHeader,
    /// Malformed, wrong signature or algorithm, expired, not yet valid.
    #[error("Invalid token")]
    InvalidToken,
    /// `sub` missing or empty.
    #[error("missing sub (user ID) in token")]
    MissingSub,
    /// `did` missing or empty.
    #[error("missing did (device ID) in token")]
    MissingDid,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<Value>,
    did: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    did: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Verifies and issues HS256 tokens with one shared secret.
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// Uses `secret` as the HMAC key.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // HS384/HS512 are accepted like the classic server does; `none` and asymmetric algorithms never are.
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// Checks an `Authorization` header value at time `now` (since the Unix epoch).
    pub fn authenticate(&self, header: Option<&str>, now: Duration) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::MissingHeader)?;
        let token = header.strip_prefix("Bearer ").ok_or(AuthError::BadHeader)?;
        if token.is_empty() || token.contains(' ') {
            return Err(AuthError::BadHeader);
        }
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::InvalidToken)?
            .claims;
        let now = now.as_secs_f64();
        if let Some(exp) = claims.exp {
            let exp = exp.as_f64().ok_or(AuthError::InvalidToken)?;
            if now >= exp {
                return Err(AuthError::InvalidToken);
            }
        }
        if let Some(nbf) = claims.nbf {
            let nbf = nbf.as_f64().ok_or(AuthError::InvalidToken)?;
            if now < nbf {
                return Err(AuthError::InvalidToken);
            }
        }
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        let user_id = text(claims.sub).ok_or(AuthError::MissingSub)?;
        let source_id = text(claims.did).ok_or(AuthError::MissingDid)?;
        Ok(Principal { user_id, source_id })
    }

    /// Issues a dev token: `sub`, `did`, `iat` = `nbf` = now, `exp` = now + ttl.
    pub fn issue(
        &self,
        sub: &str,
        did: &str,
        now: Duration,
        ttl_secs: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = now.as_secs();
        let claims = IssuedClaims {
            sub,
            did,
            iat,
            nbf: iat,
            exp: iat.saturating_add_signed(ttl_secs),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }
}

/// `device-<Unix time in nanoseconds, base 36>` for a sign-in without a device id.
pub fn generated_device_id(now: Duration) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = now.as_nanos();
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    format!("device-{}", String::from_utf8(out).expect("ascii"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_767_225_600);

    fn token(alg: Algorithm, secret: &[u8], claims: Value) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn issued_tokens_authenticate_until_they_expire() {
        let a = Authenticator::new(b"secret");
        let t = a.issue("user-alice", "dev-1", NOW, 300).unwrap();
        let header = format!("Bearer {t}");
        let p = a.authenticate(Some(&header), NOW).unwrap();
        assert_eq!(
            p,
            Principal {
                user_id: "user-alice".into(),
                source_id: "dev-1".into()
            }
        );
        assert_eq!(
            a.authenticate(Some(&header), NOW + Duration::from_secs(300)),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            a.authenticate(Some(&header), NOW - Duration::from_secs(1)),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn every_failure_maps_to_its_message() {
        let a = Authenticator::new(b"secret");
        let ok = serde_json::json!({"sub": "u", "did": "d"});
        let cases: Vec<(Option<String>, AuthError)> = vec![
            (None, AuthError::MissingHeader),
            (Some("Basic abc".into()), AuthError::BadHeader),
            (Some("bearer abc".into()), AuthError::BadHeader),
            (Some("Bearer ".into()), AuthError::BadHeader),
            (Some("Bearer a b".into()), AuthError::BadHeader),
            (Some("Bearer not.a.jwt".into()), AuthError::InvalidToken),
            (
                Some(format!("Bearer {}", token(Algorithm::HS256, b"wrong", ok.clone()))),
                AuthError::InvalidToken,
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(Algorithm::HS512, b"secret", serde_json::json!({"did": "d"}))
                )),
                AuthError::MissingSub,
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(Algorithm::HS384, b"secret", serde_json::json!({"sub": "u", "did": ""}))
                )),
                AuthError::MissingDid,
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(Algorithm::HS256, b"secret", serde_json::json!({"sub": 5, "did": "d"}))
                )),
                AuthError::MissingSub,
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(
                        Algorithm::HS256,
                        b"secret",
                        serde_json::json!({"sub": "u", "did": "d", "exp": "soon"})
                    )
                )),
                AuthError::InvalidToken,
            ),
        ];
        for (header, want) in cases {
            assert_eq!(a.authenticate(header.as_deref(), NOW), Err(want), "{header:?}");
        }
        // HS/RS confusion: an RS256 header over an HMAC signature made with the shared secret.
        let hs = token(Algorithm::HS256, b"secret", ok.clone());
        let rs_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"RS256","typ":"JWT"}"#,
        );
        let confused = format!("{rs_header}.{}", hs.split_once('.').unwrap().1);
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {confused}")), NOW),
            Err(AuthError::InvalidToken)
        );
        // alg=none: header {"alg":"none"} with an empty signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZGlkIjoiZCJ9.";
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {none}")), NOW),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn generated_device_ids_are_base36_nanoseconds() {
        assert_eq!(generated_device_id(Duration::from_nanos(36 * 36 + 35)), "device-10z");
        assert_eq!(generated_device_id(Duration::ZERO), "device-0");
    }
}
