//! §6.2 and §4.7: every validation row with its exact reason, message and details; the 400 envelopes.

use serde_json::{Value, json};

use crate::support::*;

fn invalid(resp: &Value, i: usize) -> (String, Option<String>, Value) {
    let s = &statuses(resp)[i];
    assert_eq!(s["status"], "invalid", "{s}");
    assert!(
        s.get("new_server_version").is_none() && s.get("server_row").is_none(),
        "{s}"
    );
    (
        s["invalid"]["reason"].as_str().unwrap().to_owned(),
        s["message"].as_str().map(str::to_owned),
        s["invalid"]["details"].clone(),
    )
}

#[tokio::test]
async fn each_check_reports_its_exact_reason_message_and_details() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let big = "x".repeat(262_145);
    let cases: Vec<(Value, &str, String)> = vec![
        (
            json!({"source_change_id": 1, "schema": "Bad-Schema", "table": "users", "op": "INSERT", "pk": pk}),
            "bad_payload",
            "bad_payload: invalid schema name \"bad-schema\"".into(),
        ),
        (
            json!({"source_change_id": 2, "schema": "business", "op": "INSERT", "pk": pk}),
            "bad_payload",
            "bad_payload: invalid table name \"\"".into(),
        ),
        (
            json!({"source_change_id": 3, "schema": "business", "table": "us\"ers", "op": "INSERT", "pk": pk}),
            "bad_payload",
            "bad_payload: invalid table name \"us\\\"ers\"".into(),
        ),
        (
            json!({"source_change_id": 5, "schema": "business", "table": "users", "op": "MERGE", "pk": pk}),
            "bad_payload",
            "invalid operation: MERGE".into(),
        ),
        (
            json!({"source_change_id": 6, "schema": "business", "table": "users", "pk": pk}),
            "bad_payload",
            "invalid operation: ".into(),
        ),
        (
            json!({"source_change_id": 7, "schema": "business", "table": "users", "op": "insert", "pk": "12345"}),
            "bad_payload",
            "bad_payload: invalid UUID format: 12345".into(),
        ),
        (
            json!({"source_change_id": 8, "schema": "business", "table": "users", "op": "INSERT", "pk": id()}),
            "bad_payload",
            "payload required for INSERT operation".into(),
        ),
        (
            json!({"source_change_id": 9, "schema": "business", "table": "users", "op": "update", "pk": id(), "payload": null}),
            "bad_payload",
            "payload required for UPDATE operation".into(),
        ),
        (
            json!({"source_change_id": 10, "schema": "business", "table": "users", "op": "INSERT", "pk": id(), "payload": {"name": big}}),
            "bad_payload",
            "bad_payload: payload too large: 262156 > 262144".into(),
        ),
        (
            json!({"source_change_id": 11, "schema": "business", "table": "users", "op": "INSERT", "pk": id(), "payload": "text"}),
            "bad_payload",
            "invalid JSON payload".into(),
        ),
        (
            json!({"source_change_id": 12, "schema": "business", "table": "users", "op": "DELETE", "pk": id(), "payload": {"id": 1}}),
            "bad_payload",
            "DELETE must not include payload".into(),
        ),
    ];
    for (change, reason, message) in cases {
        let resp = d.upload(vec![change.clone()]).await;
        let (r, m, details) = invalid(&resp, 0);
        assert_eq!((r.as_str(), m.as_deref()), (reason, Some(message.as_str())), "{change}");
        assert_eq!(details, json!({"error": message}), "{change}");
        assert_eq!(resp["accepted"], true);
    }
    assert_eq!(log_rows(&t, &user).await, 0, "no rejected change writes");
}

#[tokio::test]
async fn an_unregistered_table_is_reported_and_clears_accepted_but_others_apply() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let resp = d
        .upload(vec![
            json!({"source_change_id": 1, "schema": " Business ", "table": "Nowhere", "op": "DELETE", "pk": id(), "server_version": 1}),
            upsert(2, "users", &pk, 0, user_row(&pk, "ok")),
        ])
        .await;
    assert_eq!(resp["accepted"], false);
    let (reason, message, details) = invalid(&resp, 0);
    assert_eq!(
        (reason.as_str(), message.as_deref()),
        ("unregistered_table", Some("table not registered business.nowhere"))
    );
    assert_eq!(details, json!({"schema": "business", "table": "nowhere"}));
    assert_eq!(status_at(&resp, 1), WireStatus::Applied);
    // A null element is an empty change (Go's zero value), judged per change, not a 400.
    let resp = d.upload_raw(r#"{"changes":[null]}"#).await.1;
    assert_eq!(
        invalid(&resp, 0).1.as_deref(),
        Some("bad_payload: invalid table name \"\"")
    );
    // A missing schema means public.
    let resp = d
        .upload(vec![
            json!({"source_change_id": 3, "table": "users", "op": "DELETE", "pk": id()}),
        ])
        .await;
    assert_eq!(
        invalid(&resp, 0).1.as_deref(),
        Some("table not registered public.users")
    );
}

#[tokio::test]
async fn duplicates_reject_every_change_involved_and_the_rest_proceed() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (a, b, c) = (id(), id(), id());
    let resp = d
        .upload(vec![
            upsert(1, "users", &a, 0, user_row(&a, "a")),
            upsert(1, "users", &b, 0, user_row(&b, "b")),
            upsert(2, "users", &c, 0, user_row(&c, "c")),
            upsert(3, "users", &c.to_uppercase(), 0, user_row(&c, "c2")),
            upsert(4, "posts", &a, 0, post_row(&a, &c, "same pk, other table")),
        ])
        .await;
    let dup_scid = "duplicate source_change_id 1 in request".to_owned();
    let dup_row = format!("duplicate change for business.users pk={c} in request");
    for (i, m) in [(0, &dup_scid), (1, &dup_scid), (2, &dup_row), (3, &dup_row)] {
        let (reason, message, details) = invalid(&resp, i);
        assert_eq!((reason.as_str(), message.as_ref()), ("bad_payload", Some(m)));
        assert_eq!(details, json!({"error": m}));
    }
    // The post references c, whose upserts were both rejected: fk_missing, not a duplicate.
    assert_eq!(invalid(&resp, 4).0, "fk_missing");
    assert_eq!(log_rows(&t, &user).await, 0);
}

#[tokio::test]
async fn statuses_come_back_in_request_order_with_their_scids() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    let ids: Vec<String> = (0..5).map(|_| id()).collect();
    let changes: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, pk)| upsert(100 - i as i64, "users", pk, 0, user_row(pk, "n")))
        .collect();
    let resp = d.upload(changes).await;
    let scids: Vec<i64> = statuses(&resp)
        .iter()
        .map(|s| s["source_change_id"].as_i64().unwrap())
        .collect();
    assert_eq!(scids, [100, 99, 98, 97, 96]);
}

#[tokio::test]
async fn bodies_that_are_not_json_or_have_wrong_types_are_400() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let envelope = json!({"error": "invalid_request", "message": "Failed to parse upload request"});
    let pk = id();
    for body in [
        "".to_owned(),
        "not json".into(),
        "[]".into(),
        "{\"changes\": {}}".into(),
        "{\"changes\": [1]}".into(),
        r#"{"changes":[{"pk":5,"table":"users"}]}"#.into(),
        format!("{{\"changes\":[{{\"pk\":\"{pk}\",\"server_version\":1.5}}]}}"),
        "{\"changes\":[{\"source_change_id\":\"7\"}]}".into(),
        "{\"changes\":[{\"source_change_id\":1e3}]}".into(),
        "{\"last_server_seq_seen\":\"x\"}".into(),
        "{\"changes\":[{\"source_change_id\":9223372036854775808}]}".into(),
        "{\"changes\":[]".into(),
    ] {
        assert_eq!(d.upload_raw(body.clone()).await, (400, envelope.clone()), "{body}");
    }
}

#[tokio::test]
async fn no_changes_is_accepted_with_the_users_highest_seq() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    for body in ["{}", r#"{"changes":null}"#, r#"{"changes":[]}"#] {
        assert_eq!(
            d.upload_raw(body).await,
            (200, json!({"accepted": true, "highest_server_seq": 0, "statuses": []}))
        );
    }
    let pk = id();
    d.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "a"))]).await;
    let max: i64 = db(&t)
        .await
        .query_one(
            "SELECT max(server_id) FROM sync.server_change_log WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    let other = Device::new(&t, &user, "other-device");
    assert_eq!(other.upload_raw("{}").await.1["highest_server_seq"], max);
}

#[tokio::test]
async fn a_timestamp_column_takes_timestamps_not_words() {
    // Issue 34: `created_at = 'yesterday'` stayed "yesterday" on every device while PostgreSQL's cast stored the
    // day the server read it. A string in a timestamp or date column of the business table must be RFC 3339, the
    // SQL form or a date (numbers are Unix seconds); anything else is `bad_payload` naming the column.
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    let user = |scid: i64, created_at: Value| {
        let pk = id();
        upsert(
            scid,
            "users",
            &pk,
            0,
            json!({"id": pk, "name": "n", "email": "e", "created_at": created_at}),
        )
    };
    let good = [
        json!("2026-12-07T10:00:00Z"),
        json!("2026-12-07 10:00:00"),
        json!("2026-12-07"),
        json!(1767225600),
        Value::Null,
    ];
    let changes: Vec<Value> = good
        .iter()
        .enumerate()
        .map(|(i, v)| user(i as i64 + 1, v.clone()))
        .collect();
    let r = d.upload(changes).await;
    assert!(all_applied(&r), "{r}");
    let r = d
        .upload(vec![user(10, json!("yesterday")), user(11, json!("now"))])
        .await;
    for i in 0..2 {
        let (reason, message, _) = invalid(&r, i);
        assert_eq!(reason, "bad_payload");
        let message = message.unwrap();
        assert!(message.starts_with("created_at: \""), "{message}");
        assert!(message.contains("is not a timestamp for business.users"), "{message}");
    }
}
