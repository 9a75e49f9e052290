//! Tokens from an identity provider (PROTOCOL.md §3.1, issue 20): RS256, ES256 and EdDSA tokens checked
//! against a JWKS served over real HTTP by the test issuer (`oversync_tests::issuer`), on both front doors.
//! The servers keep `JWT_SECRET` too (a migration set-up), so HS tokens work beside them and the two kinds
//! must never be confused.

use std::sync::OnceLock;
use std::time::Duration;

use oversync_tests::issuer::{AUDIENCE, ISSUER, Issuer, public_jwk, sign};
use serde_json::{Value, json};

use crate::support::*;

fn issuer() -> &'static Issuer {
    static ISSUER_: OnceLock<Issuer> = OnceLock::new();
    ISSUER_.get_or_init(|| Issuer::start(&["rsa-1", "ec-1", "ed-1"]).expect("issuer"))
}

fn settings(issuer: &Issuer, extra: &str) -> String {
    format!(
        "jwks_url = {:?}\njwt_issuer = {ISSUER:?}\njwt_audience = {AUDIENCE:?}\n{extra}",
        issuer.jwks_url()
    )
}

/// The shared JWKS server (default claim names).
fn jwks_target() -> std::sync::Arc<Target> {
    target_with("jwks", &settings(issuer(), ""))
}

fn envelope(message: &str) -> Value {
    json!({"error": "authentication_failed", "message": message})
}

async fn get(t: &Target, token: &str, device: Option<&str>) -> (u16, Value) {
    Device::with_token(t, token.to_owned(), device)
        .get_raw("/sync/download?after=0&limit=10")
        .await
}

#[tokio::test]
async fn rs_es_and_ed_tokens_sync_with_the_device_taken_from_the_header() {
    let t = jwks_target();
    for key in ["rsa-1", "ec-1", "ed-1"] {
        let user = new_user();
        let token = issuer().token(key, json!({ "sub": user }));
        let phone = Device::with_token(&t, token.clone(), Some(&format!("phone-{key}")));
        let laptop = Device::with_token(&t, token, Some("laptop"));
        let pk = id();
        let resp = phone.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, key))]).await;
        assert_eq!(status_at(&resp, 0), WireStatus::Applied, "{key}: {resp}");
        let seen = laptop.download_all("").await;
        assert_eq!(seen.len(), 1, "{key}: {seen:?}");
        assert_eq!(seen[0].source_id, format!("phone-{key}"), "{key}");
        // Another user of the same issuer sees nothing of it.
        let other = Device::with_token(&t, issuer().token(key, json!({"sub": new_user()})), Some("x"));
        assert!(other.download_all("").await.is_empty(), "{key}");
    }
}

#[tokio::test]
async fn a_device_claim_wins_over_the_header_and_classic_hs_tokens_still_work() {
    let t = jwks_target();
    let user = new_user();
    let with_did = issuer().token("ec-1", json!({"sub": user, "did": "from-token"}));
    let dev = Device::with_token(&t, with_did, Some("from-header"));
    let pk = id();
    dev.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "a"))]).await;
    let classic = token_with(json!({"sub": user, "did": "classic", "iss": ISSUER, "aud": AUDIENCE}));
    let hs = Device::with_token(&t, classic, None);
    let seen = hs.download_all("").await;
    assert_eq!(seen[0].source_id, "from-token");
}

#[tokio::test]
async fn hmac_and_public_key_tokens_are_never_confused() {
    let t = jwks_target();
    let user = new_user();
    let claims = json!({"sub": user, "did": "d", "iss": ISSUER, "aud": AUDIENCE, "exp": now_secs() + 600});
    // HS256 keyed with the public key's modulus, naming the public key's kid: the classic confusion.
    let n = public_jwk("rsa-1")["n"].as_str().unwrap().to_owned();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(n.as_bytes())).unwrap();
    assert_eq!(
        get(&t, &forged, None).await,
        (401, envelope("Invalid token: bad signature"))
    );
    // An RS256 header over an HMAC made with the server's own secret.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let rs_header = base64_url(br#"{"alg":"RS256","typ":"JWT","kid":"rsa-1"}"#);
    let relabelled = format!("{rs_header}.{}", hs.split_once('.').unwrap().1);
    assert_eq!(
        get(&t, &relabelled, None).await,
        (401, envelope("Invalid token: bad signature"))
    );
    // A server without a key set refuses every asymmetric token, however well signed.
    let rs = issuer().token("rsa-1", json!({"sub": user, "did": "d"}));
    assert_eq!(
        get(&target(), &rs, None).await,
        (401, envelope("Invalid token: algorithm not accepted"))
    );
    assert_eq!(get(&t, &rs, None).await.0, 200);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn each_failed_check_has_its_own_401_message() {
    let t = jwks_target();
    let user = new_user();
    let ok = |extra: Value| {
        let mut claims = json!({ "sub": user });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    };
    let cases = [
        (
            issuer().token("rsa-1", ok(json!({"exp": now_secs() - 5}))),
            Some("d"),
            "Invalid token: expired",
        ),
        (
            issuer().token("rsa-1", ok(json!({"aud": "someone-else"}))),
            Some("d"),
            "Invalid token: wrong audience",
        ),
        (
            issuer().token("ec-1", ok(json!({"iss": "https://evil.example"}))),
            Some("d"),
            "Invalid token: wrong issuer",
        ),
        (
            sign(
                "rsa-2",
                Some("rotated-away"),
                &ok(json!({"iss": ISSUER, "aud": AUDIENCE})),
            ),
            Some("d"),
            "Invalid token: unknown signing key",
        ),
        (
            sign("rsa-2", Some("rsa-1"), &ok(json!({"iss": ISSUER, "aud": AUDIENCE}))),
            Some("d"),
            "Invalid token: bad signature",
        ),
        (
            issuer().token("ed-1", ok(json!({}))),
            None,
            "missing did (device ID) in token",
        ),
        (
            issuer().token("ed-1", ok(json!({}))),
            Some("two words"),
            "invalid Oversync-Device-Id header: 1 to 128 visible ASCII characters expected",
        ),
        (
            issuer().token("ed-1", json!({"name": "no sub"})),
            Some("d"),
            "missing sub (user ID) in token",
        ),
    ];
    for (token, device, message) in cases {
        let got = get(&t, &token, device).await;
        assert_eq!(got, (401, envelope(message)), "{message}");
        let text = got.1.to_string();
        assert!(
            !text.contains("\"n\"") && !text.contains("BEGIN"),
            "no key material: {text}"
        );
    }
}

async fn status(t: &Target, token: &str) -> u16 {
    get(t, token, Some("d")).await.0
}

/// One issuer and one server of their own, since the steps change what the issuer publishes and rely on the
/// server's cache timing: cached for at least 1 s, refetches not caused by expiry at most every 3 s.
#[tokio::test]
async fn outage_unknown_kids_and_rotation_follow_the_cache_rules() {
    let idp = Issuer::start(&["rsa-1", "ec-1"]).expect("issuer");
    let extra = "jwks_cache_min_s = 1\njwks_cooldown_s = 3\njwks_timeout_ms = 2000\nuser_claim = \"uid\"\ndevice_claim = \"device\"";
    let server = start_server(&target().db_url, &settings(&idp, extra));
    let t = Target {
        base: server.base_url.clone(),
        db_url: target().db_url.clone(),
        _server: None,
    };
    let cooldown = || tokio::time::sleep(Duration::from_millis(3100));
    let user = new_user();
    let rsa1 = idp.token("rsa-1", json!({"uid": user, "device": "d1"}));
    let rsa2 = idp.token("rsa-2", json!({"uid": user, "device": "d1"}));

    // Down before the first fetch: no key set at all is a 503 with Retry-After, and not retried per request.
    idp.set_down(true);
    let r = Device::with_token(&t, rsa1.clone(), None)
        .http
        .get(format!("{}/sync/download", t.base))
        .bearer_auth(&rsa1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let (_, body) = read(r).await;
    assert_eq!(body["error"], "auth_unavailable");
    assert_eq!(status(&t, &rsa1).await, 503);
    assert_eq!(idp.fetches(), 1, "one attempt per cooldown");
    let classic = token_with(json!({"uid": user, "device": "d1", "iss": ISSUER, "aud": AUDIENCE}));
    let hs = Device::with_token(&t, classic, None);
    assert_eq!(
        hs.get_raw("/sync/download?after=0").await.0,
        200,
        "HS tokens do not need the key set"
    );

    // Back up: fetched once after the cooldown, then served from the cache. The mapped claims name the user
    // and the device.
    idp.set_down(false);
    cooldown().await;
    assert_eq!(status(&t, &rsa1).await, 200);
    assert_eq!(
        status(&t, &idp.token("ec-1", json!({"uid": user, "device": "d2"}))).await,
        200
    );
    assert_eq!(idp.fetches(), 2);
    let sub_only = idp.token("rsa-1", json!({"sub": user, "did": "d1"}));
    assert_eq!(
        get(&t, &sub_only, None).await,
        (401, envelope("missing uid (user ID) in token"))
    );

    // A flood of unknown kids: exactly one refetch per cooldown.
    cooldown().await;
    let flood = |n: usize| {
        let t = &t;
        futures_util::future::join_all((0..n).map(move |i| {
            let token = sign(
                "rsa-2",
                Some(&format!("random-{i}-{}", id())),
                &json!({"uid": "x", "device": "d",
                "iss": ISSUER, "aud": AUDIENCE, "exp": now_secs() + 600}),
            );
            async move { status(t, &token).await }
        }))
    };
    let flooded = std::time::Instant::now();
    assert!(flood(20).await.iter().all(|s| *s == 401));
    assert!(flood(20).await.iter().all(|s| *s == 401));
    // One refetch per cooldown the floods spanned: exactly one unless the machine is loaded enough for them to
    // take longer than the cooldown.
    let (refetches, cooldowns) = (idp.fetches() - 2, 1 + flooded.elapsed().as_secs() / 3);
    assert!(
        refetches >= 1 && refetches as u64 <= cooldowns,
        "{refetches} refetches for forty unknown kids over {cooldowns} cooldown(s)"
    );
    let fetched = idp.fetches();

    // The issuer goes down: the last good set keeps serving.
    idp.set_down(true);
    cooldown().await;
    assert!(flood(1).await.iter().all(|s| *s == 401));
    assert_eq!(idp.fetches(), fetched + 1, "the refetch was tried and failed");
    assert_eq!(status(&t, &rsa1).await, 200, "kept the last good set");

    // Rotation: rsa-1 is replaced by rsa-2. It is accepted while the cached set is fresh, refused once the
    // cache expires; rsa-2 works from the refetch on.
    idp.set_down(false);
    idp.set_max_age(1);
    cooldown().await;
    assert!(flood(1).await.iter().all(|s| *s == 401));
    assert_eq!(idp.fetches(), fetched + 2, "refetched: now fresh for 1 s");
    idp.publish(&["rsa-2", "ec-1"]);
    assert_eq!(status(&t, &rsa1).await, 200, "the cached set still has rsa-1");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        get(&t, &rsa1, Some("d")).await,
        (401, envelope("Invalid token: unknown signing key"))
    );
    assert_eq!(idp.fetches(), fetched + 3);
    assert_eq!(status(&t, &rsa2).await, 200);
    drop(server);
}

#[tokio::test]
async fn a_key_set_without_issuer_and_audience_checks_is_refused_unless_opted_out() {
    // Issue 32: a provider's keys may sign other apps' tokens; a token from another app (another audience) must
    // not get in because the server checks nothing but the signature.
    let url = issuer().jwks_url();
    let db_url = target().db_url.clone();
    if edge() {
        // The Worker reads its configuration on the first request: it answers 500, and lets nobody in.
        let unchecked = format!("jwks_url = {url:?}");
        let s = tokio::task::spawn_blocking(move || start_cold(&db_url, &unchecked))
            .await
            .unwrap()
            .expect("wrangler dev started");
        let t = Target {
            base: s.base_url.clone(),
            db_url: target().db_url.clone(),
            _server: None,
        };
        let other_app = issuer().token("rsa-1", json!({"sub": new_user(), "aud": "another-app"}));
        let (status, body) = get(&t, &other_app, Some("d")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (500, Some("internal_error")),
            "{body}"
        );
    } else {
        let env = [("DATABASE_URL", db_url)];
        let s = crate::auth::start_up(&format!("listen = \"127.0.0.1:0\"\njwks_url = {url:?}"), &env);
        assert!(!s.listened, "the native server must refuse to start");
        assert!(
            s.stderr.contains("jwt_issuer: is required with jwks_url"),
            "{}",
            s.stderr
        );
    }
    let opted_out = format!("jwks_url = {url:?}\njwks_insecure_any_issuer_or_audience = true");
    let t = target_with("jwks_unchecked", &opted_out);
    let other_app = issuer().token("rsa-1", json!({"sub": new_user(), "aud": "another-app"}));
    assert_eq!(
        get(&t, &other_app, Some("d")).await.0,
        200,
        "the named opt-out accepts them"
    );
}
