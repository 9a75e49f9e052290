use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde_json::{Value, json};

use super::*;

/// The public JWK of test key `name` (`tests/keys`), with `kid` and (when `pin`) `alg`.
pub(crate) fn public_jwk(name: &str, alg: Algorithm, kid: &str, pin: bool) -> Value {
    let key = oversync_tests::issuer::encoding_key(name);
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).expect("jwk")).unwrap();
    jwk["kid"] = json!(kid);
    if !pin {
        jwk.as_object_mut().unwrap().remove("alg");
    }
    jwk
}

fn set(keys: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

#[test]
fn rsa_ec_and_ed_keys_are_kept_and_matched_by_kid_and_family() {
    let body = set(vec![
        public_jwk("rsa-1", Algorithm::RS256, "r1", true),
        public_jwk("ec-1", Algorithm::ES256, "e1", false),
        public_jwk("ed-1", Algorithm::EdDSA, "d1", true),
    ]);
    let keys = KeySet::parse(&body).unwrap();
    assert_eq!(keys.keys.len(), 3);
    let kids =
        |kid: Option<&str>, alg| -> Vec<Option<String>> { keys.candidates(kid, alg).map(|k| k.kid.clone()).collect() };
    assert_eq!(kids(Some("r1"), Algorithm::RS256), [Some("r1".into())]);
    assert_eq!(kids(None, Algorithm::ES256), [Some("e1".into())]);
    assert_eq!(kids(None, Algorithm::EdDSA), [Some("d1".into())]);
    // A kid of another family, or a pinned key asked for another algorithm, is no candidate.
    assert!(kids(Some("e1"), Algorithm::RS256).is_empty());
    assert!(kids(Some("r1"), Algorithm::RS512).is_empty());
    // An unpinned key serves every algorithm of its family.
    assert_eq!(kids(Some("e1"), Algorithm::ES256), [Some("e1".into())]);
    assert!(
        kids(None, Algorithm::HS256).is_empty(),
        "no public key ever checks an HMAC"
    );
    assert!(keys.has_kid("d1") && !keys.has_kid("nope"));
}

#[test]
fn symmetric_encryption_and_unknown_keys_are_dropped_not_fatal() {
    let body = set(vec![
        json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}),
        json!({"kty": "oct", "kid": "hs", "alg": "HS256", "k": "c2VjcmV0"}),
        {
            let mut enc = public_jwk("rsa-2", Algorithm::RS256, "enc", false);
            enc["use"] = json!("enc");
            enc
        },
        json!({"kty": "XYZ", "kid": "odd"}),
        json!({"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}),
        {
            let mut rsa_oaep = public_jwk("rsa-2", Algorithm::RS256, "oaep", false);
            rsa_oaep["alg"] = json!("RSA-OAEP");
            rsa_oaep
        },
        {
            let mut mislabelled = public_jwk("ec-2", Algorithm::ES256, "mis", false);
            mislabelled["alg"] = json!("RS256");
            mislabelled
        },
        public_jwk("rsa-1", Algorithm::RS256, "good", true),
    ]);
    let keys = KeySet::parse(&body).unwrap();
    let kids: Vec<_> = keys.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
    assert_eq!(kids, ["good"]);
}

#[test]
fn unusable_documents_are_errors() {
    assert!(matches!(KeySet::parse(b"<html>"), Err(JwksError::Malformed(_))));
    assert!(matches!(KeySet::parse(b"{}"), Err(JwksError::Malformed(_))));
    assert_eq!(KeySet::parse(br#"{"keys": []}"#).unwrap_err(), JwksError::Empty);
    let only_secret = set(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]);
    assert_eq!(KeySet::parse(&only_secret).unwrap_err(), JwksError::Empty);
}

#[test]
fn a_set_keeps_at_most_max_keys() {
    let key = public_jwk("ec-1", Algorithm::ES256, "k", true);
    let keys = KeySet::parse(&set(vec![key; MAX_KEYS + 10])).unwrap();
    assert_eq!(keys.keys.len(), MAX_KEYS);
}

#[test]
fn max_age_reads_cache_control() {
    let s = Duration::from_secs;
    assert_eq!(max_age(None), None);
    assert_eq!(max_age(Some("public")), None);
    assert_eq!(max_age(Some("public, max-age=600")), Some(s(600)));
    assert_eq!(max_age(Some("Max-Age=\"60\", must-revalidate")), Some(s(60)));
    assert_eq!(max_age(Some("max-age=60, no-cache")), Some(s(0)));
    assert_eq!(max_age(Some("no-store")), Some(s(0)));
    assert_eq!(max_age(Some("max-age=soon")), None);
}
