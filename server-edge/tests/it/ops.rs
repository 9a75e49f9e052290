//! What operators see (issue 37, docs/operations.md): Prometheus metrics counted exactly for a known workload and
//! read with a real text-format parser, `/metrics` off the public port or behind its secret, readiness, request ids
//! in headers, envelopes and logs, JSON log lines without tokens or secrets. Metrics and log files are the native
//! server's (the Worker's counters go to Analytics Engine, which `wrangler dev` does not let a test read back);
//! request ids and `/ready` are checked on both front doors.

use std::time::Duration;

use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{Value, json};

use crate::support::*;

/// The native server's metrics, scraped from `http://127.0.0.1:{port}/metrics` and parsed.
async fn scrape(port: u16) -> Scrape {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("exposition");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a valid exposition")
}

/// The sum of the samples of `name` carrying `labels` (for a histogram: its observations, the `+Inf` bucket).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(b) => b.iter().find(|b| b.less_than.is_infinite()).map_or(0.0, |b| b.count),
            Sample::Summary(_) => 0.0,
        })
        .sum()
}

fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(after, name, labels) - value(before, name, labels)
}

/// 5 applied, the same 5 again (replays), 3 conflicts, 2 invalid, one 429, one download page: each counter moves by
/// exactly that much.
#[tokio::test]
async fn a_known_workload_moves_each_counter_by_exactly_its_count() {
    if edge() {
        return eprintln!("native only: the Worker has no /metrics (its counters go to Analytics Engine)");
    }
    let port = oversync_tests::free_port();
    let settings = format!("metrics_listen = \"127.0.0.1:{port}\"\nmax_watches_per_user = 1");
    let t = target_with("metrics", &settings);
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let before = scrape(port).await;

    let pks: Vec<String> = (0..5).map(|_| id()).collect();
    let rows: Vec<Value> = pks
        .iter()
        .enumerate()
        .map(|(i, pk)| upsert(i as i64 + 1, "users", pk, 0, user_row(pk, "n")))
        .collect();
    assert!(all_applied(&a.upload(rows.clone()).await));
    assert!(all_applied(&a.upload(rows).await), "replays");
    let stale: Vec<Value> = pks[..3]
        .iter()
        .enumerate()
        .map(|(i, pk)| upsert(i as i64 + 1, "users", pk, 0, user_row(pk, "b")))
        .collect();
    let conflicts = b.upload(stale).await;
    assert!(
        statuses(&conflicts).iter().all(|s| s["status"] == "conflict"),
        "{conflicts}"
    );
    let bad = vec![
        json!({"source_change_id": 6, "schema": "business", "table": "users", "op": "INSERT", "pk": "not-a-uuid",
               "server_version": 0, "payload": {"id": "x"}}),
        json!({"source_change_id": 7, "schema": "business", "table": "users", "op": "INSERT", "pk": id(),
               "server_version": 0, "payload": 5}),
    ];
    let invalid = a.upload(bad).await;
    assert!(
        statuses(&invalid)
            .iter()
            .all(|s| s["invalid"]["reason"] == "bad_payload"),
        "{invalid}"
    );
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.get_raw("/sync/watch?after=0&timeout_s=3").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (refused, body) = b.get_raw("/sync/watch?after=0&timeout_s=3").await;
    assert_eq!(refused, 429, "{body}");
    let during = scrape(port).await;
    assert_eq!(value(&during, "oversync_watches_open", &[]), 1.0, "one long-poll waits");
    assert_eq!(waiting.await.unwrap().0, 200);
    let page = b.download("after=0&limit=100").await;
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(5), "{page}");
    // A backend write (plain SQL): its capture's notice reaches the server.
    let pk = id();
    db(&t)
        .await
        .batch_execute(&format!(
            "INSERT INTO business.users (owner_id, id, name, email) VALUES ('{user}', '{pk}', 'b', 'b@x')"
        ))
        .await
        .unwrap();
    let mut backend_notices = 0.0;
    for _ in 0..50 {
        backend_notices = delta(
            &before,
            &scrape(port).await,
            "oversync_listen_notices_total",
            &[("kind", "backend")],
        );
        if backend_notices > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backend_notices, 1.0, "one backend commit, one owner");
    let after = scrape(port).await;

    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    let upload_2xx = [("route", "upload"), ("status", "2xx")];
    assert_eq!(d("oversync_http_requests_total", &upload_2xx), 4.0);
    assert_eq!(d("oversync_http_request_duration_seconds", &[("route", "upload")]), 4.0);
    assert_eq!(d("oversync_upload_changes_total", &[("outcome", "applied")]), 10.0);
    assert_eq!(d("oversync_upload_replays_total", &[]), 5.0);
    assert_eq!(d("oversync_upload_changes_total", &[("outcome", "conflict")]), 3.0);
    assert_eq!(d("oversync_upload_changes_total", &[("outcome", "invalid")]), 2.0);
    assert_eq!(d("oversync_upload_invalid_total", &[("reason", "bad_payload")]), 2.0);
    assert_eq!(d("oversync_refusals_total", &[("cause", "watches")]), 1.0);
    assert_eq!(d("oversync_errors_total", &[("code", "too_many_requests")]), 1.0);
    assert_eq!(
        d("oversync_http_requests_total", &[("route", "watch"), ("status", "4xx")]),
        1.0
    );
    assert_eq!(
        d("oversync_http_requests_total", &[("route", "watch"), ("status", "2xx")]),
        1.0
    );
    assert_eq!(d("oversync_read_pages_total", &[("kind", "download")]), 1.0);
    assert!(d("oversync_read_bytes_total", &[("kind", "download")]) > 500.0);
    assert_eq!(d("oversync_read_rows_total", &[("kind", "download")]), 5.0);
    assert_eq!(value(&after, "oversync_watches_open", &[]), 0.0);
    assert_eq!(value(&after, "oversync_pool_max_connections", &[]), 24.0);
    assert!(value(&after, "oversync_pool_connections", &[("state", "idle")]) >= 1.0);
    let waits = d("oversync_pool_wait_seconds", &[]);
    // 4 uploads, one download and the waiting long-poll's one look (the refused one never asks for a connection).
    assert_eq!(waits, 6.0, "every wait for a connection is observed");
    assert_eq!(value(&after, "oversync_listen_connected", &[]), 1.0);
    // Bounded labels: nothing names the user or a device.
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&user), "a user id in the metrics");
    assert!(
        after.docs.contains_key("oversync_upload_changes_total"),
        "each metric has its HELP"
    );
}

/// With `metrics_secret` only, `/metrics` is on the public port to its bearer; without either setting it is not
/// served at all.
#[tokio::test]
async fn the_public_port_serves_metrics_only_to_the_secret_and_only_when_asked() {
    if edge() {
        return eprintln!("native only");
    }
    let secret = "m".repeat(40);
    let t = target_with("metrics_secret", &format!("metrics_secret = \"{secret}\""));
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", t.base);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let ok = http.get(&url).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a valid exposition");
    assert!(text.contains("# TYPE oversync_pool_max_connections gauge"), "{text}");
    let plain = target();
    let off = http.get(format!("{}/metrics", plain.base)).send().await.unwrap();
    assert_eq!(off.status(), 404, "no metrics unless configured");
}

/// `X-Request-Id`: a usable one is echoed, anything else is replaced by a fresh id, on errors too, whose envelope
/// stays exactly §4.7's (both front doors).
#[tokio::test]
async fn a_request_id_is_echoed_or_made_and_errors_carry_it() {
    let t = target();
    let http = reqwest::Client::new();
    let given = http
        .get(format!("{}/health", t.base))
        .header("x-request-id", "support-ticket-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "support-ticket-42");
    let made = http
        .get(format!("{}/sync/download", t.base))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 401);
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let body: Value = made.json().await.unwrap();
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "exactly error and message: {body}"
    );
    assert_eq!(body["error"], "authentication_failed");
}

/// `/ready` answers 200 with the database and schema checked (natively also the listener), on both front doors.
#[tokio::test]
async fn readiness_checks_the_database_and_the_schema() {
    let t = target();
    let (status, body) = Device::new(&t, &new_user(), "d").get_raw("/ready").await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    assert_eq!(
        (&body["database"], &body["schema"]),
        (&json!("ok"), &json!("ok")),
        "{body}"
    );
    if !edge() {
        assert_eq!(body["listener"], "connected", "{body}");
    }
}

/// `log_format = "json"`: one parseable object per line; each request's line has its id, route, status and time;
/// a refused request's line has the client's id and the code; no token, secret or user id appears anywhere.
#[tokio::test]
async fn json_logs_carry_request_ids_and_never_a_token_a_secret_or_a_user() {
    if edge() {
        return eprintln!("native only: the Worker's lines go to its console (docs/operations.md §4)");
    }
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("json-{}.log", id()));
    let admin = "a".repeat(40);
    let extra = format!("log_format = \"json\"\nadmin_secret = \"{admin}\"");
    let env = [("DATABASE_URL", database_url()), ("JWT_SECRET", SECRET.to_owned())];
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_oversync-server"));
    let server = oversync_tests::process::Server::start_native_logged(binary, &native_config(&extra), &env, &log)
        .expect("server");
    let t = Target {
        base: server.base_url.clone(),
        db_url: database_url(),
        _server: None,
    };
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    assert!(all_applied(
        &d.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "n"))]).await
    ));
    let http = reqwest::Client::new();
    let denied = http
        .post(format!("{}/sync/admin/members", t.base))
        .bearer_auth("not-the-secret")
        .header("x-request-id", "ticket-7")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    d.download("after=0&limit=10").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server);

    let text = std::fs::read_to_string(&log).expect("log");
    for needle in [d.token.as_str(), SECRET, admin.as_str(), user.as_str()] {
        assert!(!text.contains(needle), "the log holds {needle:?}:\n{text}");
    }
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    let routes: Vec<&str> = requests.iter().filter_map(|l| l["route"].as_str()).collect();
    for route in ["upload", "admin_members", "download"] {
        assert!(routes.contains(&route), "no {route} line in {routes:?}");
    }
    for l in &requests {
        assert!(l["request_id"].as_str().is_some_and(|s| !s.is_empty()), "{l}");
        assert!(
            l["status"].is_u64() && l["ms"].is_number() && l["timestamp"].is_string(),
            "{l}"
        );
        assert_eq!(l["level"], "INFO", "{l}");
    }
    let ticket = requests
        .iter()
        .find(|l| l["request_id"] == "ticket-7")
        .expect("the admin line");
    assert_eq!(
        (&ticket["status"], &ticket["code"]),
        (&json!(401), &json!("unauthorized"))
    );
    let upload = requests.iter().find(|l| l["route"] == "upload").unwrap();
    assert_eq!(upload["applied"], 1, "{upload}");
}
