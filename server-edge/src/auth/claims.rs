//! What a verified token must say (PROTOCOL.md §3.1): time, issuer and audience checks, then the user and the
//! device it names. Pure: `now` is passed in.

use std::time::Duration;

use oversync_protocol::wire::valid_device_id;
use serde_json::{Map, Value};

use super::{AuthError, Invalid, Principal};
use crate::hub::EVERYONE;

/// The configured checks beyond the signature. The default checks nothing more, as classic clients expect:
/// `exp`/`nbf` only when present, no leeway, `iss`/`aud` ignored.
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

/// Which claims name the user and the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The user claim (default `sub`).
    pub user: String,
    /// The device claim (default `did`); a token without it takes the device from the `Oversync-Device-Id`
    /// header.
    pub device: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            device: "did".into(),
        }
    }
}

/// The time and `iss`/`aud` checks.
pub fn check(rules: &TokenRules, claims: &Map<String, Value>, now: Duration) -> Result<(), Invalid> {
    let (now, leeway) = (now.as_secs_f64(), rules.leeway.as_secs_f64());
    let number = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(Invalid::Malformed),
    };
    match number("exp")? {
        Some(exp) if now >= exp + leeway => return Err(Invalid::Expired),
        Some(_) => {}
        None if rules.require_exp => return Err(Invalid::NoExpiry),
        None => {}
    }
    if number("nbf")?.is_some_and(|nbf| now + leeway < nbf) {
        return Err(Invalid::NotYetValid);
    }
    if let Some(want) = &rules.issuer
        && !matches!(claims.get("iss"), Some(Value::String(iss)) if iss == want)
    {
        return Err(Invalid::Issuer);
    }
    if let Some(want) = &rules.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == want,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(want.as_str())),
            _ => false,
        };
        if !ok {
            return Err(Invalid::Audience);
        }
    }
    Ok(())
}

/// What starts the owner of a scope's rows in the sync tables' `user_id` (docs/sharing.md §1).
pub const SCOPE_OWNER_PREFIX: char = '\u{1f}';

/// The user and device a checked token names. The device comes from the token's device claim when it has
/// one (the header is then ignored), else from `device_header`.
pub fn principal(
    names: &ClaimNames,
    claims: &Map<String, Value>,
    device_header: Option<&str>,
) -> Result<Principal, AuthError> {
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let user_id = text(&names.user).ok_or_else(|| AuthError::MissingUser(names.user.clone()))?;
    // Sync state keeps a scope's rows under `'\x1f' || scope`: no user may be mistaken for one.
    // `*` is the member that stands for every user (scopes for everyone, docs/backend-writes.md §5).
    if user_id.starts_with(SCOPE_OWNER_PREFIX) || user_id == EVERYONE {
        return Err(AuthError::ReservedUser);
    }
    let source_id = match (text(&names.device), device_header) {
        (Some(did), _) if valid_device_id(&did) => did,
        (Some(_), _) => return Err(AuthError::BadDeviceClaim(names.device.clone())),
        (None, Some(header)) if valid_device_id(header) => header.to_owned(),
        (None, Some(_)) => return Err(AuthError::BadDeviceHeader),
        (None, None) => return Err(AuthError::MissingDevice(names.device.clone())),
    };
    // A fractional or absurd `exp` is clamped: it only decides when a stream is closed.
    let expires_at = claims.get("exp").and_then(Value::as_f64).map(|exp| exp.max(0.0) as u64);
    Ok(Principal {
        user_id,
        source_id,
        expires_at,
    })
}
