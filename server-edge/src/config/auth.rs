//! The authentication settings of [`Config`]: defaults, environment overrides and the checks that turn them
//! into [`AuthSettings`].

use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::{Deserialize, Deserializer};

use super::{Config, ConfigError, MIN_SECRET_BYTES, parse_env};
use crate::auth::{AuthSettings, CachePolicy, ClaimNames, TokenRules};

/// Freshness of a key set whose response has no `Cache-Control` max-age (then clamped like any other).
const JWKS_DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

pub(super) fn default_user_claim() -> String {
    "sub".into()
}
pub(super) fn default_device_claim() -> String {
    "did".into()
}
pub(super) fn default_jwks_cache_min() -> u64 {
    60
}
pub(super) fn default_jwks_cache_max() -> u64 {
    3600
}
pub(super) fn default_jwks_cooldown() -> u64 {
    30
}
pub(super) fn default_jwks_timeout() -> u64 {
    5000
}

/// `"url"` or `["url", …]`.
pub(super) fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Whether a key set may be fetched from `url`: over HTTPS, or plain HTTP to this machine (a local issuer in
/// development and tests). Key sets fetched in the clear could be swapped on the way. The URL is parsed as the
/// HTTP client parses it, so the host checked is the one it connects to (`http://127.0.0.1:80@evil/` is `evil`).
fn jwks_url_ok(text: &str) -> bool {
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        _ => false,
    }
}

impl Config {
    /// `OVERSYNC_JWKS_URL`, `OVERSYNC_JWT_ALGORITHMS`, `OVERSYNC_USER_CLAIM`, `OVERSYNC_DEVICE_CLAIM` and the
    /// token rules' variables. `var` yields `(name, value)` for a setting's suffix.
    pub(super) fn apply_auth_env(
        &mut self,
        var: &impl Fn(&str) -> Option<(String, String)>,
    ) -> Result<(), ConfigError> {
        if let Some((_, v)) = var("JWKS_URL") {
            self.jwks_url = comma_list(&v);
        }
        if let Some((_, v)) = var("JWT_ALGORITHMS") {
            self.jwt_algorithms = Some(comma_list(&v)).filter(|l| !l.is_empty());
        }
        if let Some((n, v)) = var("JWKS_INSECURE_ANY_ISSUER_OR_AUDIENCE") {
            self.jwks_insecure_any_issuer_or_audience = parse_env(&n, &v, "boolean")?;
        }
        if let Some((_, v)) = var("USER_CLAIM") {
            self.user_claim = v;
        }
        if let Some((_, v)) = var("DEVICE_CLAIM") {
            self.device_claim = v;
        }
        for (suffix, field) in [
            ("JWKS_CACHE_MIN_S", &mut self.jwks_cache_min_s),
            ("JWKS_CACHE_MAX_S", &mut self.jwks_cache_max_s),
            ("JWKS_COOLDOWN_S", &mut self.jwks_cooldown_s),
            ("JWKS_TIMEOUT_MS", &mut self.jwks_timeout_ms),
        ] {
            if let Some((n, v)) = var(suffix) {
                *field = parse_env(&n, &v, "integer")?;
            }
        }
        Ok(())
    }

    /// The token checks beyond the signature.
    pub fn token_rules(&self) -> TokenRules {
        TokenRules {
            require_exp: self.require_exp,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway: Duration::from_secs(self.jwt_leeway_s),
        }
    }

    /// Everything authentication needs, checked: a secret of at least [`MIN_SECRET_BYTES`] or a JWKS URL (a
    /// secret for `dev_signin`), HTTPS key sets, algorithms that have a key of their kind.
    pub fn auth(&self) -> Result<AuthSettings, ConfigError> {
        let invalid = |setting, problem| Err(ConfigError::Invalid { setting, problem });
        let secret = match self.jwt_secret.as_deref() {
            None | Some("") if self.jwks_url.is_empty() || self.dev_signin => {
                return Err(ConfigError::Missing(if self.dev_signin {
                    "jwt_secret (or JWT_SECRET): dev_signin signs its tokens with it"
                } else {
                    "jwt_secret (or JWT_SECRET), or jwks_url"
                }));
            }
            None | Some("") => None,
            Some(s) if s.len() < MIN_SECRET_BYTES => return Err(ConfigError::WeakSecret(s.len())),
            Some(s) => Some(s.as_bytes().to_vec()),
        };
        if self.jwks_url.iter().any(|u| !jwks_url_ok(u)) {
            return invalid(
                "jwks_url",
                "must be https:// (or http:// on 127.0.0.1, ::1 or localhost)",
            );
        }
        for (setting, value) in [("jwt_issuer", &self.jwt_issuer), ("jwt_audience", &self.jwt_audience)] {
            if value.as_deref() == Some("") {
                return invalid(setting, "is empty; leave it out to skip the check");
            }
            // A provider's key set may sign tokens for other apps too (Firebase's securetoken keys sign every
            // project's ID tokens): without `iss` and `aud` checks any of their users would get in.
            if !self.jwks_url.is_empty() && value.is_none() && !self.jwks_insecure_any_issuer_or_audience {
                return invalid(
                    setting,
                    "is required with jwks_url: a provider's keys may sign tokens for other apps too (set \
                     jwks_insecure_any_issuer_or_audience = true to accept them)",
                );
            }
        }
        for (setting, value) in [("user_claim", &self.user_claim), ("device_claim", &self.device_claim)] {
            if value.is_empty() {
                return invalid(setting, "is empty");
            }
        }
        let algorithms = match &self.jwt_algorithms {
            Some(names) => {
                let mut algorithms = Vec::new();
                for name in names {
                    let Ok(alg) = name.parse::<Algorithm>() else {
                        return invalid(
                            "jwt_algorithms",
                            "unknown algorithm (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, \
                             ES256, ES384, EdDSA)",
                        );
                    };
                    match alg.family() {
                        AlgorithmFamily::Hmac if secret.is_none() => {
                            return invalid("jwt_algorithms", "an HS algorithm needs jwt_secret");
                        }
                        AlgorithmFamily::Hmac => {}
                        _ if self.jwks_url.is_empty() => {
                            return invalid("jwt_algorithms", "an asymmetric algorithm needs jwks_url");
                        }
                        _ => {}
                    }
                    algorithms.push(alg);
                }
                if algorithms.is_empty() {
                    return invalid("jwt_algorithms", "is empty");
                }
                algorithms
            }
            None => {
                let hs = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
                let public = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
                let hs = hs.iter().filter(|_| secret.is_some());
                hs.chain(public.iter().filter(|_| !self.jwks_url.is_empty()))
                    .copied()
                    .collect()
            }
        };
        let s = Duration::from_secs;
        Ok(AuthSettings {
            secret,
            jwks_urls: self.jwks_url.clone(),
            algorithms,
            rules: self.token_rules(),
            claims: ClaimNames {
                user: self.user_claim.clone(),
                device: self.device_claim.clone(),
            },
            cache: CachePolicy {
                default_max_age: JWKS_DEFAULT_MAX_AGE,
                min_max_age: s(self.jwks_cache_min_s),
                max_max_age: s(self.jwks_cache_max_s),
                refetch_interval: s(self.jwks_cooldown_s),
                fetch_timeout: Duration::from_millis(self.jwks_timeout_ms.max(1)),
            },
        })
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
