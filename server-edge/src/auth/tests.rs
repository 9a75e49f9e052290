use std::cell::{Cell, RefCell};

use serde_json::json;

use super::jwks::tests::public_jwk;
use super::*;
use crate::runtime::{BoxError, Fetched};

const NOW: Duration = Duration::from_secs(1_767_225_600);
const SECRET: &[u8] = b"unit-test-secret-of-32-bytes-or-more";

/// A host without a database whose `get` serves a key set from memory and counts the fetches.
#[derive(Default)]
struct Host {
    jwks: RefCell<Option<Value>>,
    fetches: Cell<usize>,
}

impl Runtime for Host {
    type Conn = Box<tokio_postgres::Client>;
    async fn connect(&self) -> Result<Self::Conn, BoxError> {
        Err("no database in unit tests".into())
    }
    async fn sleep(&self, _: Duration) {}
    async fn get(&self, _url: &str, _limit: usize) -> Result<Fetched, BoxError> {
        self.fetches.set(self.fetches.get() + 1);
        let body = self.jwks.borrow().clone().ok_or("identity provider down")?;
        Ok(Fetched {
            status: 200,
            cache_control: Some("max-age=600".into()),
            body: serde_json::to_vec(&body)?,
        })
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn settings(secret: bool, jwks: bool, rules: TokenRules) -> AuthSettings {
    let all = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    AuthSettings {
        secret: secret.then(|| SECRET.to_vec()),
        jwks_urls: if jwks {
            vec!["https://id.example/jwks".into()]
        } else {
            vec![]
        },
        algorithms: all
            .into_iter()
            .chain([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
            .collect(),
        rules,
        claims: ClaimNames::default(),
        cache: CachePolicy {
            default_max_age: Duration::from_secs(300),
            min_max_age: Duration::from_secs(60),
            max_max_age: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        },
    }
}

fn hs(rules: TokenRules) -> Authenticator {
    Authenticator::new(settings(true, false, rules))
}

fn check(
    a: &Authenticator,
    host: &Host,
    token: &str,
    device: Option<&str>,
    now: Duration,
) -> Result<Principal, AuthError> {
    run(a.authenticate(host, Some(&format!("Bearer {token}")), device, now))
}

fn token(alg: Algorithm, secret: &[u8], claims: Value) -> String {
    encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A token signed by test key `name` (its algorithm follows from the key) with header `kid`.
fn signed(name: &str, kid: Option<&str>, claims: Value) -> String {
    oversync_tests::issuer::sign(name, kid, &claims)
}

fn ok_claims() -> Value {
    json!({"sub": "u", "did": "d"})
}

#[test]
fn issued_tokens_authenticate_until_they_expire() {
    let (a, host) = (hs(TokenRules::default()), Host::default());
    let t = a.issue("user-alice", "dev-1", NOW, 300).unwrap();
    let p = check(&a, &host, &t, None, NOW).unwrap();
    assert_eq!((p.user_id.as_str(), p.source_id.as_str()), ("user-alice", "dev-1"));
    let expired = check(&a, &host, &t, None, NOW + Duration::from_secs(300));
    assert_eq!(expired, Err(AuthError::InvalidToken(Invalid::Expired)));
    let early = check(&a, &host, &t, None, NOW - Duration::from_secs(1));
    assert_eq!(early, Err(AuthError::InvalidToken(Invalid::NotYetValid)));
    assert_eq!(expired.unwrap_err().to_string(), "Invalid token: expired");
}

#[test]
fn every_failure_maps_to_its_message() {
    let (a, host) = (hs(TokenRules::default()), Host::default());
    let header = |h: Option<&str>| run(a.authenticate(&host, h, None, NOW));
    assert_eq!(header(None), Err(AuthError::MissingHeader));
    for bad in ["Basic abc", "bearer abc", "Bearer ", "Bearer a b"] {
        assert_eq!(header(Some(bad)), Err(AuthError::BadHeader), "{bad}");
    }
    let cases = [
        ("not.a.jwt".to_owned(), "Invalid token: malformed"),
        (
            token(Algorithm::HS256, b"wrong-secret-wrong-secret-wrong!", ok_claims()),
            "Invalid token: bad signature",
        ),
        (
            token(Algorithm::HS512, SECRET, json!({"did": "d"})),
            "missing sub (user ID) in token",
        ),
        (
            token(Algorithm::HS384, SECRET, json!({"sub": "u", "did": ""})),
            "missing did (device ID) in token",
        ),
        (
            token(Algorithm::HS256, SECRET, json!({"sub": 5, "did": "d"})),
            "missing sub (user ID) in token",
        ),
        (
            token(Algorithm::HS256, SECRET, json!({"sub": "u", "did": "d", "exp": "soon"})),
            "Invalid token: malformed",
        ),
        // alg=none: header {"alg":"none"} with an empty signature.
        (
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZGlkIjoiZCJ9.".to_owned(),
            "Invalid token: malformed",
        ),
    ];
    for (t, want) in cases {
        let got = check(&a, &host, &t, None, NOW).unwrap_err().to_string();
        assert_eq!(got, want, "{t}");
    }
}

#[test]
fn without_a_key_set_asymmetric_tokens_are_refused_unfetched() {
    let (a, host) = (hs(TokenRules::default()), Host::default());
    let rs = signed("rsa-1", Some("r1"), ok_claims());
    assert_eq!(check(&a, &host, &rs, None, NOW), Err(Invalid::Algorithm.into()));
    // An RS256 header over an HMAC signature made with the shared secret.
    let hs_token = token(Algorithm::HS256, SECRET, ok_claims());
    let rs_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"RS256","typ":"JWT"}"#,
    );
    let confused = format!("{rs_header}.{}", hs_token.split_once('.').unwrap().1);
    assert_eq!(check(&a, &host, &confused, None, NOW), Err(Invalid::Algorithm.into()));
    assert_eq!(host.fetches.get(), 0);
}

#[test]
fn public_keys_check_rs_es_and_ed_tokens_by_kid() {
    let a = Authenticator::new(settings(true, true, TokenRules::default()));
    let host = Host::default();
    *host.jwks.borrow_mut() = Some(json!({"keys": [
        public_jwk("rsa-1", Algorithm::RS256, "r1", true),
        public_jwk("ec-1", Algorithm::ES256, "e1", true),
        public_jwk("ed-1", Algorithm::EdDSA, "d1", false),
    ]}));
    for (key, alg, kid) in [
        ("rsa-1", Algorithm::RS256, "r1"),
        ("ec-1", Algorithm::ES256, "e1"),
        ("ed-1", Algorithm::EdDSA, "d1"),
    ] {
        let t = signed(key, Some(kid), json!({"sub": "u"}));
        assert_eq!(
            check(&a, &host, &t, Some("phone"), NOW).unwrap().source_id,
            "phone",
            "{alg:?}"
        );
        let no_kid = signed(key, None, json!({"sub": "u", "did": "d"}));
        assert!(check(&a, &host, &no_kid, None, NOW).is_ok(), "{alg:?} without kid");
    }
    assert_eq!(host.fetches.get(), 1, "one fetch, then the cache");
    // Signed by a key the set does not hold, under a kid it does hold.
    let forged = signed("rsa-2", Some("r1"), ok_claims());
    assert_eq!(check(&a, &host, &forged, None, NOW), Err(Invalid::Signature.into()));
    let unknown = signed("rsa-2", Some("r2"), ok_claims());
    assert_eq!(check(&a, &host, &unknown, None, NOW), Err(Invalid::UnknownKey.into()));
    assert_eq!(
        unknown_message(&a, &host, &unknown),
        "Invalid token: unknown signing key"
    );
}

fn unknown_message(a: &Authenticator, host: &Host, t: &str) -> String {
    check(a, host, t, None, NOW).unwrap_err().to_string()
}

#[test]
fn an_hmac_token_is_never_checked_against_a_public_key() {
    let a = Authenticator::new(settings(true, true, TokenRules::default()));
    let host = Host::default();
    let jwk = public_jwk("rsa-1", Algorithm::RS256, "r1", false);
    *host.jwks.borrow_mut() = Some(json!({"keys": [jwk.clone()]}));
    // The classic confusion: HS256 keyed with the public key's bytes, naming the public key's kid.
    let n = jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("r1".into());
    let forged = encode(&header, &ok_claims(), &EncodingKey::from_secret(&n)).unwrap();
    assert_eq!(check(&a, &host, &forged, None, NOW), Err(Invalid::Signature.into()));
    assert_eq!(host.fetches.get(), 0, "an HS token never looks at the key set");
    // And with the JWKS alone, HS tokens are not accepted at all, even signed with the right secret.
    let jwks_only = Authenticator::new(settings(false, true, TokenRules::default()));
    let hs_token = token(Algorithm::HS256, SECRET, ok_claims());
    assert_eq!(
        check(&jwks_only, &host, &hs_token, None, NOW),
        Err(Invalid::Algorithm.into())
    );
}

#[test]
fn the_device_comes_from_the_claim_or_else_a_valid_header() {
    let (a, host) = (hs(TokenRules::default()), Host::default());
    let no_did = token(Algorithm::HS256, SECRET, json!({"sub": "u"}));
    assert_eq!(
        check(&a, &host, &no_did, Some("tab-1"), NOW).unwrap().source_id,
        "tab-1"
    );
    assert_eq!(
        check(&a, &host, &no_did, None, NOW),
        Err(AuthError::MissingDevice("did".into()))
    );
    assert_eq!(
        check(&a, &host, &no_did, Some("a b"), NOW),
        Err(AuthError::BadDeviceHeader)
    );
    for bad in ["a\nb".to_owned(), "d".repeat(5000), "é".into()] {
        let mut claims = ok_claims();
        claims["did"] = serde_json::json!(bad);
        let t = token(Algorithm::HS256, SECRET, claims);
        assert_eq!(
            check(&a, &host, &t, Some("header"), NOW),
            Err(AuthError::BadDeviceClaim("did".into())),
            "the claim follows the header's rules"
        );
    }
    let with_did = token(Algorithm::HS256, SECRET, ok_claims());
    assert_eq!(
        check(&a, &host, &with_did, Some("other"), NOW).unwrap().source_id,
        "d",
        "the token wins"
    );
    let mut custom = settings(true, false, TokenRules::default());
    custom.claims = ClaimNames {
        user: "user_id".into(),
        device: "device".into(),
    };
    let custom = Authenticator::new(custom);
    let t = token(
        Algorithm::HS256,
        SECRET,
        json!({"sub": "ignored", "user_id": "u9", "device": "d9"}),
    );
    let p = check(&custom, &host, &t, None, NOW).unwrap();
    assert_eq!((p.user_id.as_str(), p.source_id.as_str()), ("u9", "d9"));
    let t = token(Algorithm::HS256, SECRET, json!({"sub": "u", "device": "d9"}));
    assert_eq!(
        check(&custom, &host, &t, None, NOW),
        Err(AuthError::MissingUser("user_id".into()))
    );
}

#[test]
fn a_user_id_that_could_name_a_scope_is_refused() {
    let a = Authenticator::new(settings(true, false, TokenRules::default()));
    let host = Host::default();
    let t = token(Algorithm::HS256, SECRET, json!({"sub": "\u{1f}team", "did": "d"}));
    assert_eq!(check(&a, &host, &t, None, NOW), Err(AuthError::ReservedUser));
    let t = token(Algorithm::HS256, SECRET, json!({"sub": "team\u{1f}", "did": "d"}));
    assert!(
        check(&a, &host, &t, None, NOW).is_ok(),
        "only the first character is reserved"
    );
}

#[test]
fn keys_unavailable_without_any_set_and_kept_when_the_provider_goes_down() {
    let a = Authenticator::new(settings(false, true, TokenRules::default()));
    let host = Host::default();
    let t = signed("ec-1", Some("e1"), ok_claims());
    assert_eq!(check(&a, &host, &t, None, NOW), Err(AuthError::KeysUnavailable));
    *host.jwks.borrow_mut() = Some(json!({"keys": [public_jwk("ec-1", Algorithm::ES256, "e1", true)]}));
    let later = NOW + Duration::from_secs(30);
    assert!(check(&a, &host, &t, None, later).is_ok(), "retried after the cooldown");
    *host.jwks.borrow_mut() = None;
    let stale = later + Duration::from_secs(3600);
    assert!(
        check(&a, &host, &t, None, stale).is_ok(),
        "the last good set after a failed refetch"
    );
    assert_eq!(host.fetches.get(), 3);
}

fn rules_check(rules: TokenRules, claims: Value, now: Duration) -> Result<Principal, AuthError> {
    check(
        &hs(rules),
        &Host::default(),
        &token(Algorithm::HS256, SECRET, claims),
        None,
        now,
    )
}

#[test]
fn require_exp_rejects_tokens_without_exp_only_when_configured() {
    let strict = TokenRules {
        require_exp: true,
        ..TokenRules::default()
    };
    assert!(
        rules_check(TokenRules::default(), ok_claims(), NOW).is_ok(),
        "exp is optional by default"
    );
    assert_eq!(
        rules_check(strict.clone(), ok_claims(), NOW),
        Err(Invalid::NoExpiry.into())
    );
    let null_exp = json!({"sub": "u", "did": "d", "exp": null});
    assert_eq!(
        rules_check(strict.clone(), null_exp, NOW),
        Err(Invalid::NoExpiry.into())
    );
    let with_exp = json!({"sub": "u", "did": "d", "exp": NOW.as_secs() + 10});
    assert!(rules_check(strict, with_exp, NOW).is_ok());
}

#[test]
fn leeway_extends_exp_and_nbf_by_exactly_its_length() {
    let t = NOW.as_secs();
    let rules = TokenRules {
        leeway: Duration::from_secs(30),
        ..TokenRules::default()
    };
    let expired = json!({"sub": "u", "did": "d", "exp": t - 20});
    let early = json!({"sub": "u", "did": "d", "nbf": t + 20});
    assert_eq!(
        rules_check(TokenRules::default(), expired.clone(), NOW),
        Err(Invalid::Expired.into())
    );
    assert_eq!(
        rules_check(TokenRules::default(), early.clone(), NOW),
        Err(Invalid::NotYetValid.into())
    );
    assert!(rules_check(rules.clone(), expired.clone(), NOW).is_ok());
    assert!(rules_check(rules.clone(), early.clone(), NOW).is_ok());
    let past = Duration::from_secs(11);
    assert_eq!(
        rules_check(rules.clone(), expired, NOW + past),
        Err(Invalid::Expired.into())
    );
    assert_eq!(rules_check(rules, early, NOW - past), Err(Invalid::NotYetValid.into()));
}

#[test]
fn issuer_and_audience_are_checked_only_when_configured() {
    let rules = TokenRules {
        issuer: Some("https://id.example".into()),
        audience: Some("oversync".into()),
        ..TokenRules::default()
    };
    let claims = |iss: Value, aud: Value| json!({"sub": "u", "did": "d", "iss": iss, "aud": aud});
    for c in [
        claims("https://id.example".into(), "oversync".into()),
        claims("https://id.example".into(), json!(["other", "oversync"])),
    ] {
        assert!(rules_check(rules.clone(), c.clone(), NOW).is_ok(), "{c}");
    }
    let bad = [
        (
            claims("https://evil.example".into(), "oversync".into()),
            Invalid::Issuer,
        ),
        (claims("https://id.example".into(), "other".into()), Invalid::Audience),
        (claims("https://id.example".into(), json!(["other"])), Invalid::Audience),
        (claims("https://id.example".into(), json!([])), Invalid::Audience),
        (claims(Value::Null, "oversync".into()), Invalid::Issuer),
        (claims("https://id.example".into(), Value::Null), Invalid::Audience),
        (
            claims(json!(["https://id.example"]), "oversync".into()),
            Invalid::Issuer,
        ),
        (ok_claims(), Invalid::Issuer),
    ];
    for (c, why) in bad {
        assert_eq!(rules_check(rules.clone(), c.clone(), NOW), Err(why.into()), "{c}");
        assert!(
            rules_check(TokenRules::default(), c.clone(), NOW).is_ok(),
            "unchecked without rules: {c}"
        );
    }
    let wrong_aud = rules_check(rules, claims("https://id.example".into(), "x".into()), NOW);
    assert_eq!(wrong_aud.unwrap_err().to_string(), "Invalid token: wrong audience");
}

#[test]
fn generated_device_ids_are_v4_uuids_of_the_random_bytes() {
    let id = generated_device_id([0xab; 16]);
    assert_eq!(id, "abababab-abab-4bab-abab-abababababab");
    let parsed = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
    assert_ne!(generated_device_id([0; 16]), generated_device_id([1; 16]));
}
