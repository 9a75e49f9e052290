//! Bad input never produces a 500 or takes the server down: malformed JSON, wrong types, huge numbers, unknown
//! fields, oversized bodies, hostile schema and table names.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn malformed_and_hostile_uploads_are_answered_without_a_500() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let bodies: Vec<String> = vec![
        "\u{0}".into(),
        "{\"changes\":[{\"pk\":\"".into(),
        "{{{{{{{{{{{{{{{{{{{{".into(),
        "[".repeat(10_000),
        format!("{{\"changes\":[{}]}}", "{},".repeat(150) + "{}"),
        json!({"changes": [{"source_change_id": 1e300}]}).to_string(),
        json!({"changes": [{"source_change_id": -9223372036854775808_i64, "schema": "business", "table": "users", "op": "DELETE", "pk": pk}]}).to_string(),
        json!({"unknown": {"deep": [1, 2, 3]}, "changes": [{"schema": "business", "table": "users", "op": "DELETE", "pk": pk, "extra": true}]}).to_string(),
        json!({"changes": [{"schema": "business; DROP TABLE business.users; --", "table": "users", "op": "DELETE", "pk": pk}]}).to_string(),
        json!({"changes": [{"schema": "business", "table": "users\"; DROP TABLE business.users; --", "op": "DELETE", "pk": pk}]}).to_string(),
        json!({"changes": [{"schema": "pg_catalog", "table": "pg_class", "op": "DELETE", "pk": pk}]}).to_string(),
        json!({"changes": [{"schema": "sync", "table": "server_change_log", "op": "INSERT", "pk": pk, "payload": {}}]}).to_string(),
        json!({"changes": [{"schema": "büsiness", "table": "üsers", "op": "INSERT", "pk": pk, "payload": {}}]}).to_string(),
        json!({"changes": [{"schema": "business", "table": "users", "op": "INSERT", "pk": pk, "payload": {"id": pk, "name": "\u{0}", "email": "x", "\"; drop": 1}}]}).to_string(),
        json!({"changes": [{"schema": "business", "table": "typed", "op": "INSERT", "pk": id(), "payload": {"n": 1e308, "at": "yesterday", "ok": 7, "blob": "%%%"}}]}).to_string(),
    ];
    for body in bodies {
        let (status, resp) = d.upload_raw(body.clone()).await;
        assert!(
            status == 200 || status == 400,
            "{status} {resp} for {}",
            &body[..body.len().min(120)]
        );
    }
    let (status, _) = reqwest::get(format!("{}/health", t.base))
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
    let n: i64 = count(
        &db(&t).await,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'business' AND table_name = 'users'",
        &[],
    )
    .await;
    assert_eq!(n, 1, "the business table survived");
}

#[tokio::test]
async fn hostile_download_queries_are_400_not_500() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    for q in [
        "schema=%27%3B%20drop%20table%20x%3B",
        "after=%00",
        "limit=%FF%FE",
        "until=1e5",
        &"a=".repeat(5000),
        "schema=pg_catalog",
    ] {
        let (status, body) = d.download_raw(q).await;
        assert!(status == 200 || status == 400, "{status} {body} for {q}");
    }
}
