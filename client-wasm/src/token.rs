//! The user a bearer token names, read without verifying it: before a request the engine refuses a token of
//! another user than the one the database is bound to, so that user's pending writes never reach the wrong
//! account. Only the server verifies tokens; this check can only refuse, never accept.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

/// base64url (RFC 7515 §2) as JWTs use it: without padding, but padded input is accepted too.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `claim` of a JWT's payload (compact form: `header.payload.signature`) when it is a non-empty string, as
/// the server requires of the user claim. `None` for anything else: not a JWT, a payload that is not a JSON
/// object, a missing, empty or non-string claim.
pub fn user_of(token: &str, claim: &str) -> Option<String> {
    let mut segments = token.split('.');
    let (_header, payload, _signature) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() {
        return None;
    }
    let json = BASE64URL.decode(payload).ok()?;
    match serde_json::from_slice::<Map<String, Value>>(&json)
        .ok()?
        .remove(claim)?
    {
        Value::String(user) if !user.is_empty() => Some(user),
        _ => None,
    }
}

/// The user `token` names, when that is definitely not `bound` (the user the database belongs to). `None`
/// when they agree, when the database is not bound yet, and when the token names no user [`user_of`] can
/// read: the server answers such a token with a 401 anyway.
pub fn other_user(token: &str, claim: &str, bound: Option<&str>) -> Option<String> {
    let bound = bound?;
    user_of(token, claim).filter(|user| user != bound)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A token with `payload` (unsigned: the signature is never looked at).
    fn jwt(payload: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        format!("{header}.{}.c2lnbmF0dXJl", b64.encode(payload.to_string()))
    }

    #[test]
    fn a_token_of_the_bound_user_passes() {
        let t = jwt(&json!({"sub": "user-a", "did": "d1", "exp": 1}));
        assert_eq!(user_of(&t, "sub").as_deref(), Some("user-a"));
        assert_eq!(other_user(&t, "sub", Some("user-a")), None);
    }

    #[test]
    fn a_token_of_another_user_is_named() {
        let t = jwt(&json!({"sub": "user-b"}));
        assert_eq!(other_user(&t, "sub", Some("user-a")).as_deref(), Some("user-b"));
    }

    #[test]
    fn an_unbound_database_refuses_no_token() {
        let t = jwt(&json!({"sub": "user-b"}));
        assert_eq!(other_user(&t, "sub", None), None);
    }

    #[test]
    fn a_custom_claim_names_the_user() {
        let t = jwt(&json!({"sub": "auth0|123", "https://app.example/uid": "user-a"}));
        assert_eq!(other_user(&t, "https://app.example/uid", Some("user-a")), None);
        assert_eq!(other_user(&t, "sub", Some("user-a")).as_deref(), Some("auth0|123"));
    }

    #[test]
    fn what_is_not_a_jwt_is_not_refused() {
        for t in [
            "token",
            "",
            "a.b",
            "a.b.c.d",
            "x.!!!.y",
            "x.bm90IGpzb24.y",
            "x.WzFd.y",
            "a..c",
        ] {
            assert_eq!(user_of(t, "sub"), None, "{t}");
            assert_eq!(other_user(t, "sub", Some("user-a")), None, "{t}");
        }
    }

    #[test]
    fn a_missing_empty_or_non_string_claim_is_not_refused() {
        for payload in [
            json!({"uid": "user-b"}),
            json!({"sub": ""}),
            json!({"sub": 7}),
            json!({"sub": null}),
            json!({"sub": ["user-b"]}),
            json!({"sub": {"id": "user-b"}}),
        ] {
            assert_eq!(other_user(&jwt(&payload), "sub", Some("user-a")), None, "{payload}");
        }
    }

    #[test]
    fn the_url_safe_alphabet_and_padding_are_decoded() {
        // `>>>` and `???` encode to `-` and `_` in base64url (`+` and `/` in standard base64).
        let payload = json!({"sub": "user-b", "n": ">>>???"}).to_string();
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&payload);
        assert!(unpadded.contains('-') && unpadded.contains('_'), "{unpadded}");
        let padded = base64::engine::general_purpose::URL_SAFE.encode(&payload);
        assert!(padded.ends_with('='), "{padded}");
        for encoded in [unpadded, padded] {
            let t = format!("eyJhbGciOiJIUzI1NiJ9.{encoded}.sig");
            assert_eq!(other_user(&t, "sub", Some("user-a")).as_deref(), Some("user-b"));
        }
        let standard = base64::engine::general_purpose::STANDARD.encode(&payload);
        assert_eq!(user_of(&format!("h.{standard}.s"), "sub"), None, "not base64url");
    }
}
