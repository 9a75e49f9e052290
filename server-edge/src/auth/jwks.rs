//! A JSON Web Key Set (RFC 7517 §5) as the verifier uses it: the public signing keys it may check a token
//! against, parsed once per fetch. Pure: fetching and caching are in [`super::remote`] and [`super::cache`].
//!
//! Keys the verifier must never use are dropped while parsing rather than refused at verification time: a
//! symmetric (`oct`) key, which would let anyone who reads the public set mint tokens; an encryption key
//! (`use: enc`); and keys of a type or curve the library cannot verify. A set with one such key among good ones
//! stays usable, as identity providers publish mixed sets.

use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The most keys kept from one set; identity providers publish two or three. Bounds the work a token without
/// `kid` can cause (one signature check per key of its family).
pub const MAX_KEYS: usize = 32;

/// The largest JWKS document read (real ones are a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 << 10;

/// One usable public key.
pub struct PublicKey {
    /// `kid`, when the set names it.
    pub kid: Option<String>,
    /// `alg`, when the set pins the key to one algorithm.
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Whether a token signed with `alg` may be checked against this key: the families match (an RSA key
    /// never checks an EC signature, no public key ever checks an HMAC) and a pinned `alg` is that one.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// A parsed set.
#[derive(Debug, Default)]
pub struct KeySet {
    /// The usable keys, in the set's order.
    pub keys: Vec<PublicKey>,
}

/// A JWKS document that cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or no `keys` array.
    #[error("not a JSON Web Key Set: {0}")]
    Malformed(String),
    /// A set without a single usable signing key.
    #[error("the key set has no usable signing key")]
    Empty,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the usable signing keys (at most [`MAX_KEYS`]).
    pub fn parse(body: &[u8]) -> Result<Self, JwksError> {
        let doc: Document = serde_json::from_slice(body).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let keys: Vec<PublicKey> = doc.keys.into_iter().filter_map(usable).take(MAX_KEYS).collect();
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(Self { keys })
    }

    /// The keys a token with header `kid` and `alg` may be checked against: the key of that `kid`, or without
    /// a `kid` every key of the algorithm's family.
    pub fn candidates<'a>(&'a self, kid: Option<&'a str>, alg: Algorithm) -> impl Iterator<Item = &'a PublicKey> {
        self.keys
            .iter()
            .filter(move |k| k.fits(alg) && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
    }

    /// Whether the set names `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn usable(value: serde_json::Value) -> Option<PublicKey> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    if !matches!(
        jwk.algorithm,
        AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_)
    ) {
        return None;
    }
    // A pinned `alg` the library does not know (or an encryption one) makes the key unusable, not wildcard.
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let key = PublicKey {
        kid: jwk.common.key_id,
        alg,
        key,
    };
    alg.is_none_or(|a| key.fits(a)).then_some(key)
}

/// How long a response may be cached, from its `Cache-Control` header: `max-age` (RFC 9111 §5.2.2.1), zero for
/// `no-store` or `no-cache`, `None` when it says nothing (the configured default applies).
pub fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control?.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
pub(super) mod tests;
