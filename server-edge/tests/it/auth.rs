//! §3: bearer tokens and development sign-in.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

async fn sync_get(base: &str, auth: Option<&str>, path: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    read(req.send().await.unwrap()).await
}

fn envelope(message: &str) -> Value {
    json!({"error": "authentication_failed", "message": message})
}

#[tokio::test]
async fn every_authentication_failure_is_401_with_its_exact_message() {
    let t = target();
    let user = new_user();
    let now = now_secs();
    let hs = |claims: Value| format!("Bearer {}", token_with(claims));
    let wrong_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "did": "d", "exp": now + 60}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap();
    // {"alg":"none"} header with an empty signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZGlkIjoiZCJ9.";
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "Authorization header required"),
        (Some("Basic dXNlcjpwYXNz".into()), "Invalid authorization header format"),
        (
            Some(format!("bearer {}", token_with(json!({"sub": user, "did": "d"})))),
            "Invalid authorization header format",
        ),
        (Some("Bearer".into()), "Invalid authorization header format"),
        (Some("Bearer not-a-jwt".into()), "Invalid token: malformed"),
        (Some(format!("Bearer {wrong_secret}")), "Invalid token: bad signature"),
        (Some(format!("Bearer {none}")), "Invalid token: malformed"),
        (
            Some(hs(json!({"sub": user, "did": "d", "exp": now - 10}))),
            "Invalid token: expired",
        ),
        (
            Some(hs(json!({"sub": user, "did": "d", "nbf": now + 600}))),
            "Invalid token: not yet valid",
        ),
        (Some(hs(json!({"did": "d"}))), "missing sub (user ID) in token"),
        (
            Some(hs(json!({"sub": "", "did": "d"}))),
            "missing sub (user ID) in token",
        ),
        (
            Some(hs(json!({"sub": "\u{1f}team", "did": "d"}))),
            "the user ID in the token must not start with U+001F (reserved for scopes) or be * (reserved for everyone)",
        ),
        (
            Some(hs(json!({"sub": "*", "did": "d"}))),
            "the user ID in the token must not start with U+001F (reserved for scopes) or be * (reserved for everyone)",
        ),
        (Some(hs(json!({"sub": user}))), "missing did (device ID) in token"),
        (
            Some(hs(json!({"sub": user, "did": ""}))),
            "missing did (device ID) in token",
        ),
    ];
    for (header, message) in cases {
        for path in ["/sync/download", "/sync/schema-version", "/sync/capabilities"] {
            let (status, body) = sync_get(&t.base, header.as_deref(), path).await;
            assert_eq!((status, &body), (401, &envelope(message)), "{path} with {header:?}");
        }
    }
}

#[tokio::test]
async fn a_token_in_the_query_string_is_not_accepted() {
    let t = target();
    let token = token_with(json!({"sub": new_user(), "did": "d"}));
    for q in ["token", "access_token", "jwt", "authorization"] {
        let (status, body) = sync_get(&t.base, None, &format!("/sync/download?{q}={token}")).await;
        assert_eq!((status, body), (401, envelope("Authorization header required")));
    }
}

#[tokio::test]
async fn rejected_tokens_never_reach_the_database() {
    let t = target();
    let user = new_user();
    let d = Device {
        token: "garbage".into(),
        ..Device::new(&t, &user, "d")
    };
    let pk = id();
    let (status, _) = d
        .upload_raw(json!({"changes": [upsert(1, "users", &pk, 0, user_row(&pk, "x"))]}).to_string())
        .await;
    assert_eq!(status, 401);
    assert_eq!(log_rows(&t, &user).await, 0);
}

#[tokio::test]
async fn the_source_id_comes_from_the_token_not_the_body() {
    let t = target();
    let user = new_user();
    let a = Device::new(&t, &user, "dev-a");
    let pk = id();
    let mut change = upsert(1, "users", &pk, 0, user_row(&pk, "a"));
    change["source_id"] = json!("dev-b");
    let body = json!({"source_id": "dev-b", "changes": [change]}).to_string();
    assert_eq!(a.upload_raw(body).await.0, 200);
    let b = Device::new(&t, &user, "dev-b");
    let entries = b.download_all("").await;
    assert_eq!(entries.len(), 1, "dev-b sees the change as someone else's");
    assert_eq!(entries[0].source_id, "dev-a");
}

#[tokio::test]
async fn signin_issues_tokens_the_sync_routes_accept() {
    let t = target();
    let http = reqwest::Client::new();
    let (status, body) = read(
        http.post(format!("{}/signin", t.base))
            .body(r#"{"username":"alice","password":"x","device_id":"dev-1"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["user_id"].as_str(), body["device_id"].as_str()),
        (Some("user-alice"), Some("dev-1"))
    );
    let auth = format!("Bearer {}", body["token"].as_str().unwrap());
    assert_eq!(
        sync_get(&t.base, Some(&auth), "/sync/schema-version").await,
        (200, json!({"schema_version": 1}))
    );

    let (_, body) = read(
        http.post(format!("{}/signin", t.base))
            .body(r#"{"username":"bob"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let generated = uuid::Uuid::parse_str(body["device_id"].as_str().unwrap()).expect("a UUID device id");
    assert_eq!(generated.get_version(), Some(uuid::Version::Random), "{body}");

    let (status, body) = read(
        http.post(format!("{}/dummy-signin", t.base))
            .body(r#"{"user":"demo-user","password":"p","device":"device-123"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["expires_in"].as_i64(),
            body["user"].as_str(),
            body["device"].as_str()
        ),
        (Some(300), Some("demo-user"), Some("device-123"))
    );
    let auth = format!("Bearer {}", body["token"].as_str().unwrap());
    assert_eq!(sync_get(&t.base, Some(&auth), "/sync/download").await.0, 200);
}

#[tokio::test]
async fn signin_errors_use_the_invalid_request_envelope() {
    let t = target();
    let http = reqwest::Client::new();
    let cases = [
        ("/signin", "not json", "invalid JSON"),
        ("/signin", "[1]", "invalid JSON"),
        ("/signin", r#"{"username":7}"#, "invalid JSON"),
        ("/signin", r#"{"password":"x"}"#, "username required"),
        ("/dummy-signin", "{", "invalid JSON"),
        ("/dummy-signin", r#"{"user":""}"#, "user required"),
        // A device id its token could not carry (issue 32: the claim follows the header's rules).
        (
            "/signin",
            r#"{"username":"u","device_id":"a b"}"#,
            "invalid device id: 1 to 128 visible ASCII characters expected",
        ),
        (
            "/dummy-signin",
            r#"{"user":"u","device":"a\nb"}"#,
            "invalid device id: 1 to 128 visible ASCII characters expected",
        ),
    ];
    for (path, body, message) in cases {
        let got = read(http.post(format!("{}{path}", t.base)).body(body).send().await.unwrap()).await;
        assert_eq!(
            got,
            (400, json!({"error": "invalid_request", "message": message})),
            "{path} {body}"
        );
    }
}

#[tokio::test]
async fn dev_signin_switched_off_answers_404() {
    let t = target_with("no_signin", "dev_signin = false");
    let http = reqwest::Client::new();
    for path in ["/signin", "/dummy-signin"] {
        let got = read(
            http.post(format!("{}{path}", t.base))
                .body(r#"{"username":"a","user":"a"}"#)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, (404, json!({"error": "not_found", "message": "Not found"})));
    }
}

/// An HS256 token with exactly `claims` (no `exp` added, unlike [`token_with`]).
fn signed(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// The claims of a token, read without checking it.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a compact JWS");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The settings of the "strict_tokens" server.
const STRICT: &str = r#"require_exp = true
jwt_issuer = "https://id.example"
jwt_audience = "oversync-api"
jwt_leeway_s = 120"#;

/// A token the strict server accepts, with `extra` claims merged over it (a `null` removes a claim).
fn strict_token(user: &str, extra: Value) -> String {
    let mut claims = json!({"sub": user, "did": "d", "iss": "https://id.example", "aud": "oversync-api",
                            "exp": now_secs() + 600});
    for (k, v) in extra.as_object().unwrap() {
        match v {
            Value::Null => claims.as_object_mut().unwrap().remove(k),
            v => claims.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    format!("Bearer {}", signed(claims))
}

#[tokio::test]
async fn exp_is_optional_by_default_and_required_with_require_exp() {
    let user = new_user();
    let no_exp = format!("Bearer {}", signed(json!({"sub": user, "did": "d"})));
    let t = target();
    assert_eq!(sync_get(&t.base, Some(&no_exp), "/sync/schema-version").await.0, 200);
    let strict = target_with("strict_tokens", STRICT);
    let (status, body) = sync_get(
        &strict.base,
        Some(&strict_token(&user, json!({"exp": null}))),
        "/sync/download",
    )
    .await;
    assert_eq!((status, body), (401, envelope("Invalid token: no expiry")));
    assert_eq!(
        sync_get(&strict.base, Some(&strict_token(&user, json!({}))), "/sync/download")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn issuer_and_audience_must_match_when_configured() {
    let strict = target_with("strict_tokens", STRICT);
    let user = new_user();
    let accepted = [json!({}), json!({"aud": ["other-api", "oversync-api"]})];
    for extra in accepted {
        let (status, body) = sync_get(
            &strict.base,
            Some(&strict_token(&user, extra.clone())),
            "/sync/download",
        )
        .await;
        assert_eq!(status, 200, "{extra}: {body}");
    }
    let rejected = [
        (json!({"iss": "https://evil.example"}), "issuer"),
        (json!({"iss": null}), "issuer"),
        (json!({"aud": "other-api"}), "audience"),
        (json!({"aud": ["other-api"]}), "audience"),
        (json!({"aud": null}), "audience"),
    ];
    for (extra, which) in rejected {
        let got = sync_get(
            &strict.base,
            Some(&strict_token(&user, extra.clone())),
            "/sync/download",
        )
        .await;
        let message = format!("Invalid token: wrong {which}");
        assert_eq!(got, (401, envelope(&message)), "{extra}");
        // The default server checks neither.
        let unchecked = sync_get(
            &target().base,
            Some(&strict_token(&user, extra.clone())),
            "/sync/download",
        )
        .await;
        assert_eq!(unchecked.0, 200, "{extra}: {unchecked:?}");
    }
}

#[tokio::test]
async fn leeway_tolerates_clock_skew_up_to_its_length() {
    let strict = target_with("strict_tokens", STRICT);
    let (t, now) = (target(), now_secs());
    let user = new_user();
    let cases = [
        (json!({"exp": now - 30}), 200, 401),
        (json!({"nbf": now + 30}), 200, 401),
        (json!({"exp": now - 600}), 401, 401),
        (json!({"nbf": now + 600}), 401, 401),
    ];
    for (extra, with_leeway, without) in cases {
        let auth = strict_token(&user, extra.clone());
        assert_eq!(
            sync_get(&strict.base, Some(&auth), "/sync/download").await.0,
            with_leeway,
            "{extra}"
        );
        assert_eq!(
            sync_get(&t.base, Some(&auth), "/sync/download").await.0,
            without,
            "no leeway: {extra}"
        );
    }
}

#[tokio::test]
async fn signin_without_a_device_id_returns_distinct_random_uuids() {
    let t = target();
    let http = reqwest::Client::new();
    // Side by side, so a clock-derived id would collide.
    let requests = (0..8).map(|i| {
        let (path, body) = if i % 2 == 0 {
            ("/signin", r#"{"username":"same"}"#)
        } else {
            ("/dummy-signin", r#"{"user":"same"}"#)
        };
        let req = http.post(format!("{}{path}", t.base)).body(body).send();
        async move { read(req.await.unwrap()).await }
    });
    let mut ids = std::collections::BTreeSet::new();
    for (status, body) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200, "{body}");
        let id = body["device_id"]
            .as_str()
            .or(body["device"].as_str())
            .unwrap()
            .to_owned();
        let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
        assert_eq!(claims_of(body["token"].as_str().unwrap())["did"], id.as_str());
        ids.insert(id);
    }
    assert_eq!(ids.len(), 8, "{ids:?}");
}

/// What a start of the native binary with `config` (TOML) and `env` came to: whether it got as far as listening
/// (it is stopped then), its exit status otherwise, and everything it wrote to stderr (at `RUST_LOG=warn`).
pub(crate) struct StartUp {
    pub(crate) listened: bool,
    pub(crate) exit: Option<std::process::ExitStatus>,
    pub(crate) stderr: String,
}

pub(crate) fn start_up(config: &str, env: &[(&str, String)]) -> StartUp {
    let dir = oversync_tests::process::tempdir("oversync-startup").unwrap();
    let path = dir.join("server.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oversync-server"))
        .arg("--config")
        .arg(&path)
        .env_remove("DATABASE_URL")
        .env_remove("JWT_SECRET")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // The first stdout line is "listening on …" once the server is up; EOF means it exited.
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let listened = line.contains("listening on ");
    let exit = if listened {
        let _ = child.kill();
        let _ = child.wait();
        None
    } else {
        Some(child.wait().unwrap())
    };
    let stderr = err_reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    StartUp { listened, exit, stderr }
}

#[test]
fn a_jwt_secret_shorter_than_32_bytes_stops_the_start_up() {
    // No database needed: the configuration is checked before anything is connected.
    let env = [
        ("DATABASE_URL", "postgres://127.0.0.1:1/none".to_owned()),
        ("JWT_SECRET", "x".repeat(31)),
    ];
    let s = start_up("listen = \"127.0.0.1:0\"", &env);
    assert!(!s.listened && s.exit.is_some_and(|e| !e.success()), "{}", s.stderr);
    assert!(
        s.stderr
            .contains("jwt_secret (or JWT_SECRET) is 31 bytes; at least 32 are required"),
        "{}",
        s.stderr
    );
}

#[test]
fn dev_signin_on_a_non_loopback_address_stops_the_start_up_unless_allowed() {
    let db_url = target().db_url.clone();
    let env = [("DATABASE_URL", db_url), ("JWT_SECRET", SECRET.to_owned())];
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let s = start_up(&format!("listen = {listen:?}\ndev_signin = true"), &env);
        assert!(
            !s.listened && s.exit.is_some_and(|e| !e.success()),
            "{listen}: {}",
            s.stderr
        );
        assert!(
            s.stderr.contains(&format!(
                "dev_signin is on and listen = {listen:?} is not a loopback address"
            )) && s.stderr.contains("dev_signin_allow_remote"),
            "{}",
            s.stderr
        );
    }
    // Without dev sign-in the same address is fine, and with the explicit opt-in (file or environment) too.
    let s = start_up("listen = \"0.0.0.0:0\"", &env);
    assert!(s.listened, "{}", s.stderr);
    let s = start_up(
        "listen = \"0.0.0.0:0\"\ndev_signin = true\ndev_signin_allow_remote = true",
        &env,
    );
    assert!(s.listened, "{}", s.stderr);
    let mut with_env = env.to_vec();
    with_env.push(("OVERSYNC_DEV_SIGNIN_ALLOW_REMOTE", "true".to_owned()));
    let s = start_up("listen = \"0.0.0.0:0\"\ndev_signin = true", &with_env);
    assert!(s.listened, "{}", s.stderr);
    assert!(s.stderr.contains("dev_signin is on"), "warned: {}", s.stderr);
}

#[test]
fn every_start_with_dev_signin_logs_a_warning() {
    let db_url = target().db_url.clone();
    let env = [("DATABASE_URL", db_url), ("JWT_SECRET", SECRET.to_owned())];
    let warning = "dev_signin is on: /signin and /dummy-signin issue a token for any user id";
    for _ in 0..2 {
        let s = start_up("listen = \"127.0.0.1:0\"\ndev_signin = true", &env);
        assert!(s.listened, "{}", s.stderr);
        assert!(s.stderr.contains(warning) && s.stderr.contains("WARN"), "{}", s.stderr);
    }
    let s = start_up("listen = \"127.0.0.1:0\"", &env);
    assert!(s.listened, "{}", s.stderr);
    assert!(!s.stderr.contains("dev_signin is on"), "{}", s.stderr);
}

#[tokio::test]
async fn the_workers_dev_signin_needs_the_explicit_remote_opt_out() {
    if !edge() {
        return; // Natively the `listen` address decides (above).
    }
    // A Worker cannot tell whether it is local (it never binds `listen`): dev sign-in without the opt-out is a
    // configuration it refuses, so no request signs anybody in.
    let db_url = target().db_url.clone();
    let server =
        tokio::task::spawn_blocking(move || start_cold(&db_url, "dev_signin = true\ndev_signin_allow_remote = false"))
            .await
            .unwrap()
            .expect("wrangler dev started");
    let r = reqwest::Client::new()
        .post(format!("{}/signin", server.base_url))
        .body(r#"{"username":"mallory"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = read(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("internal_error")),
        "{body}"
    );
    assert!(body.get("token").is_none());
}
