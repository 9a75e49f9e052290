//! §4.1, §4.5–§4.7: health, schema version, capabilities, 404/405 envelopes and CORS.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn health_answers_without_auth() {
    let t = target();
    let got = read(reqwest::get(format!("{}/health", t.base)).await.unwrap()).await;
    assert_eq!(got, (200, json!({"status": "healthy", "service": "oversync-edge"})));
}

#[tokio::test]
async fn json_responses_carry_the_json_content_type() {
    let t = target();
    let r = reqwest::get(format!("{}/nope", t.base)).await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn capabilities_advertise_limits_and_features() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    let (status, caps) = read(
        d.http
            .get(format!("{}/sync/capabilities", t.base))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(caps["protocol"], "oversync-classic");
    assert_eq!(caps["protocol_version"], 1);
    assert_eq!(caps["limits"]["max_upload_batch_size"], 200);
    assert_eq!(caps["limits"]["max_payload_bytes"], 262144);
    // A full batch natively; what a 128 MB isolate takes on the Worker (README *Limitations*).
    let request = if edge() {
        6 << 20
    } else {
        200 * (262_144 + 1024) + 65_536
    };
    assert_eq!(caps["limits"]["max_request_bytes"], request);
    assert_eq!(caps["limits"]["download_limit_max"], 1000);
    assert_eq!(caps["features"]["replay_returns_version"], true);
    assert_eq!(caps["features"]["next_after_jumps"], true);
    assert_eq!(caps["features"]["fk_precheck"], "sync_state");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let t = target();
    let http = reqwest::Client::new();
    let not_found = json!({"error": "not_found", "message": "Not found"});
    for path in ["/", "/sync", "/sync/uploads", "/health/x"] {
        assert_eq!(
            read(http.get(format!("{}{path}", t.base)).send().await.unwrap()).await,
            (404, not_found.clone()),
            "{path}"
        );
    }
    let only_post = json!({"error": "method_not_allowed", "message": "Only POST method is allowed"});
    let only_get = json!({"error": "method_not_allowed", "message": "Only GET method is allowed"});
    assert_eq!(
        read(http.get(format!("{}/sync/upload", t.base)).send().await.unwrap()).await,
        (405, only_post.clone())
    );
    assert_eq!(
        read(http.put(format!("{}/signin", t.base)).send().await.unwrap()).await,
        (405, only_post)
    );
    for path in [
        "/sync/download",
        "/sync/schema-version",
        "/health",
        "/sync/capabilities",
    ] {
        assert_eq!(
            read(http.post(format!("{}{path}", t.base)).send().await.unwrap()).await,
            (405, only_get.clone()),
            "{path}"
        );
    }
    assert_eq!(
        read(http.delete(format!("{}/sync/download", t.base)).send().await.unwrap())
            .await
            .0,
        405
    );
}

#[tokio::test]
async fn configured_origins_get_cors_headers_and_preflights_need_no_auth() {
    let t = target();
    let http = reqwest::Client::new();
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{}/sync/upload", t.base))
        .header("Origin", "http://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "http://app.example");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, OPTIONS");
    assert_eq!(
        h["access-control-allow-headers"],
        "Authorization, Content-Type, Accept, Oversync-Device-Id, X-Request-Id"
    );

    // Every response to a configured origin carries the header, errors included.
    let r = http
        .get(format!("{}/sync/download", t.base))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://app.example");

    let r = http
        .get(format!("{}/health", t.base))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_shipped_demo_configuration_serves_the_demo_schema() {
    let t = target();
    let config = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/demo.toml"));
    let env = [
        ("DATABASE_URL", t.db_url.clone()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("OVERSYNC_LISTEN", "127.0.0.1:0".to_owned()),
    ];
    let server = oversync_tests::process::Server::start_native_file(
        std::path::Path::new(env!("CARGO_BIN_EXE_oversync-server")),
        config,
        &env,
    )
    .unwrap();
    let demo = Target {
        base: server.base_url.clone(),
        db_url: t.db_url.clone(),
        _server: None,
    };
    let user = new_user();
    let d = Device::new(&demo, &user, "d");
    let (u, p, f, r) = (id(), id(), id(), id());
    let resp = d
        .upload(vec![
            upsert(1, "posts", &p, 0, post_row(&p, &u, "t")),
            upsert(2, "users", &u, 0, user_row(&u, "n")),
            upsert(3, "file_reviews", &r, 0, json!({"id": r, "review": "ok", "file_id": f})),
            upsert(4, "files", &f, 0, json!({"id": f, "name": "f", "data": "AAE="})),
        ])
        .await;
    assert!(all_applied(&resp), "{resp}");
    let (status, body) = read(
        reqwest::Client::new()
            .post(format!("{}/signin", demo.base))
            .body(r#"{"username":"demo"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "dev sign-in is on in the demo: {body}");
    // The demo sets require_exp; its dev tokens carry exp, so they pass.
    let (status, body) = read(
        reqwest::Client::new()
            .get(format!("{}/sync/download", demo.base))
            .bearer_auth(body["token"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let no_exp = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "did": "d"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/sync/download", demo.base))
        .bearer_auth(no_exp)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the demo requires exp");
}

#[tokio::test]
async fn realtime_is_on_by_default_and_watch_false_turns_both_routes_off() {
    let on = target();
    let d = Device::new(&on, &new_user(), "d");
    let (_, caps) = d.get_raw("/sync/capabilities").await;
    assert_eq!(caps["features"]["watch"], json!(["long_poll", "stream"]));

    let off = target_with("no_watch", "watch = false");
    let d = Device::new(&off, &new_user(), "d");
    let (_, caps) = d.get_raw("/sync/capabilities").await;
    assert_eq!(caps["features"]["watch"], json!([]));
    for path in ["/sync/watch", "/sync/stream"] {
        assert_eq!(d.get_raw(path).await.0, 404, "{path}");
    }
}
