//! Bearer-token authentication (PROTOCOL.md §3.1) and development token issuing (§3.2).
//!
//! `exp` and `nbf` are checked here against the request's `now` rather than by the JWT library's own clock,
//! so the check is deterministic in tests and works on wasm32, where there is no system clock. What a token must
//! carry beyond that (`require_exp`, `iss`, `aud`, leeway) is a [`TokenRules`] taken from the configuration.

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

/// The configured checks beyond the signature (PROTOCOL.md §3.1). The default checks nothing more, as classic
/// clients expect: `exp`/`nbf` only when present, no leeway, `iss`/`aud` ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// A token without `exp` is invalid.
    pub require_exp: bool,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` (a string, or an array of strings, RFC 7519 §4.1.3) must be or contain it.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<Value>,
    did: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
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
    rules: TokenRules,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// Uses `secret` as the HMAC key and checks `rules` on every token.
    pub fn new(secret: &[u8], rules: TokenRules) -> Self {
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
            rules,
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
        self.check_claims(&claims, now)?;
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        let user_id = text(claims.sub).ok_or(AuthError::MissingSub)?;
        let source_id = text(claims.did).ok_or(AuthError::MissingDid)?;
        Ok(Principal { user_id, source_id })
    }

    /// The time and `iss`/`aud` checks; each failure is an invalid token (§3.1 has no finer message).
    fn check_claims(&self, claims: &Claims, now: Duration) -> Result<(), AuthError> {
        let rules = &self.rules;
        let (now, leeway) = (now.as_secs_f64(), rules.leeway.as_secs_f64());
        match &claims.exp {
            Some(exp) => {
                let exp = exp.as_f64().ok_or(AuthError::InvalidToken)?;
                if now >= exp + leeway {
                    return Err(AuthError::InvalidToken);
                }
            }
            None if rules.require_exp => return Err(AuthError::InvalidToken),
            None => {}
        }
        if let Some(nbf) = &claims.nbf {
            let nbf = nbf.as_f64().ok_or(AuthError::InvalidToken)?;
            if now + leeway < nbf {
                return Err(AuthError::InvalidToken);
            }
        }
        if let Some(want) = &rules.issuer
            && !matches!(&claims.iss, Some(Value::String(iss)) if iss == want)
        {
            return Err(AuthError::InvalidToken);
        }
        if let Some(want) = &rules.audience {
            let ok = match &claims.aud {
                Some(Value::String(aud)) => aud == want,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(want.as_str())),
                _ => false,
            };
            if !ok {
                return Err(AuthError::InvalidToken);
            }
        }
        Ok(())
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

/// The device id for a sign-in without one: a version 4 UUID made of `random` (16 random bytes, passed in so
/// tests are deterministic). Not derived from the clock: two devices signing in in the same instant would share it.
pub fn generated_device_id(random: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_767_225_600);
    const SECRET: &[u8] = b"unit-test-secret-of-32-bytes-or-more";

    fn token(alg: Algorithm, secret: &[u8], claims: Value) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn issued_tokens_authenticate_until_they_expire() {
        let a = Authenticator::new(SECRET, TokenRules::default());
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
        let a = Authenticator::new(SECRET, TokenRules::default());
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
                    token(Algorithm::HS512, SECRET, serde_json::json!({"did": "d"}))
                )),
                AuthError::MissingSub,
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(Algorithm::HS384, SECRET, serde_json::json!({"sub": "u", "did": ""}))
                )),
                AuthError::MissingDid,
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(Algorithm::HS256, SECRET, serde_json::json!({"sub": 5, "did": "d"}))
                )),
                AuthError::MissingSub,
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(
                        Algorithm::HS256,
                        SECRET,
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
        let hs = token(Algorithm::HS256, SECRET, ok.clone());
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
    fn generated_device_ids_are_v4_uuids_of_the_random_bytes() {
        let id = generated_device_id([0xab; 16]);
        assert_eq!(id, "abababab-abab-4bab-abab-abababababab");
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
        assert_ne!(generated_device_id([0; 16]), generated_device_id([1; 16]));
    }

    fn check(rules: TokenRules, claims: Value, now: Duration) -> Result<Principal, AuthError> {
        let a = Authenticator::new(SECRET, rules);
        a.authenticate(
            Some(&format!("Bearer {}", token(Algorithm::HS256, SECRET, claims))),
            now,
        )
    }

    #[test]
    fn require_exp_rejects_tokens_without_exp_only_when_configured() {
        let t = NOW.as_secs();
        let no_exp = serde_json::json!({"sub": "u", "did": "d"});
        assert!(
            check(TokenRules::default(), no_exp.clone(), NOW).is_ok(),
            "exp is optional by default"
        );
        let strict = TokenRules {
            require_exp: true,
            ..TokenRules::default()
        };
        assert_eq!(check(strict.clone(), no_exp, NOW), Err(AuthError::InvalidToken));
        let null_exp = serde_json::json!({"sub": "u", "did": "d", "exp": null});
        assert_eq!(check(strict.clone(), null_exp, NOW), Err(AuthError::InvalidToken));
        let with_exp = serde_json::json!({"sub": "u", "did": "d", "exp": t + 10});
        assert!(check(strict, with_exp, NOW).is_ok());
    }

    #[test]
    fn leeway_extends_exp_and_nbf_by_exactly_its_length() {
        let t = NOW.as_secs();
        let rules = TokenRules {
            leeway: Duration::from_secs(30),
            ..TokenRules::default()
        };
        let expired = serde_json::json!({"sub": "u", "did": "d", "exp": t - 20});
        let early = serde_json::json!({"sub": "u", "did": "d", "nbf": t + 20});
        assert_eq!(
            check(TokenRules::default(), expired.clone(), NOW),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            check(TokenRules::default(), early.clone(), NOW),
            Err(AuthError::InvalidToken)
        );
        assert!(check(rules.clone(), expired.clone(), NOW).is_ok());
        assert!(check(rules.clone(), early.clone(), NOW).is_ok());
        let past_leeway = Duration::from_secs(11);
        assert_eq!(
            check(rules.clone(), expired, NOW + past_leeway),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(check(rules, early, NOW - past_leeway), Err(AuthError::InvalidToken));
    }

    #[test]
    fn issuer_and_audience_are_checked_only_when_configured() {
        let rules = TokenRules {
            issuer: Some("https://id.example".into()),
            audience: Some("oversync".into()),
            ..TokenRules::default()
        };
        let claims = |iss: Value, aud: Value| serde_json::json!({"sub": "u", "did": "d", "iss": iss, "aud": aud});
        let good = [
            claims("https://id.example".into(), "oversync".into()),
            claims("https://id.example".into(), serde_json::json!(["other", "oversync"])),
        ];
        for c in good {
            assert!(check(rules.clone(), c.clone(), NOW).is_ok(), "{c}");
        }
        let bad = [
            claims("https://evil.example".into(), "oversync".into()),
            claims("https://id.example".into(), "other".into()),
            claims("https://id.example".into(), serde_json::json!(["other"])),
            claims("https://id.example".into(), serde_json::json!([])),
            claims(Value::Null, "oversync".into()),
            claims("https://id.example".into(), Value::Null),
            claims(serde_json::json!(["https://id.example"]), "oversync".into()),
            serde_json::json!({"sub": "u", "did": "d"}),
        ];
        for c in bad {
            assert_eq!(
                check(rules.clone(), c.clone(), NOW),
                Err(AuthError::InvalidToken),
                "{c}"
            );
            assert!(
                check(TokenRules::default(), c.clone(), NOW).is_ok(),
                "unchecked without rules: {c}"
            );
        }
    }
}
