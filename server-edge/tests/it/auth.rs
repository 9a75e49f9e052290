//! §3: bearer tokens and development sign-in.

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
        (Some("Bearer not-a-jwt".into()), "Invalid token"),
        (Some(format!("Bearer {wrong_secret}")), "Invalid token"),
        (Some(format!("Bearer {none}")), "Invalid token"),
        (
            Some(hs(json!({"sub": user, "did": "d", "exp": now - 10}))),
            "Invalid token",
        ),
        (
            Some(hs(json!({"sub": user, "did": "d", "nbf": now + 600}))),
            "Invalid token",
        ),
        (Some(hs(json!({"did": "d"}))), "missing sub (user ID) in token"),
        (
            Some(hs(json!({"sub": "", "did": "d"}))),
            "missing sub (user ID) in token",
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
    assert_eq!(entries[0]["source_id"], "dev-a");
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
    assert!(body["device_id"].as_str().unwrap().starts_with("device-"), "{body}");

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
