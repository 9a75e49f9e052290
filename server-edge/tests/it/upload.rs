//! §6.4 upload basics: insert, update, delete, conflicts, tombstones; §9.2 cases 1, 16 and 19.

use serde_json::{Value, json};

use crate::support::*;

fn status(resp: &Value, i: usize) -> &Value {
    &statuses(resp)[i]
}

#[tokio::test]
async fn insert_update_delete_advance_the_version() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let r = d.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "v1"))]).await;
    assert_eq!(
        status(&r, 0),
        &json!({"source_change_id": 1, "status": "applied", "new_server_version": 1})
    );
    let r = d.upload(vec![upsert(2, "users", &pk, 1, user_row(&pk, "v2"))]).await;
    assert_eq!(status(&r, 0)["new_server_version"], 2);
    let r = d.upload(vec![delete(3, "users", &pk, 2)]).await;
    assert_eq!(
        status(&r, 0),
        &json!({"source_change_id": 3, "status": "applied", "new_server_version": 3})
    );
    assert_eq!(
        r["highest_server_seq"],
        d.download_all("&include_self=true").await.last().unwrap().server_id
    );
    // DELETE of a tombstone: applied with the tombstone's version, nothing written.
    let r = d.upload(vec![delete(4, "users", &pk, 1)]).await;
    assert_eq!(status(&r, 0)["new_server_version"], 3);
    assert_eq!(log_rows(&t, &user).await, 3);
    // Re-create at the tombstone's version.
    let r = d.upload(vec![upsert(5, "users", &pk, 3, user_row(&pk, "again"))]).await;
    assert_eq!(status(&r, 0)["new_server_version"], 4);
}

#[tokio::test]
async fn a_delete_of_a_never_known_row_is_applied_without_a_version() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let r = d.upload(vec![delete(1, "users", &id(), 0)]).await;
    assert_eq!(status(&r, 0), &json!({"source_change_id": 1, "status": "applied"}));
    assert_eq!(log_rows(&t, &user).await, 0);
}

#[tokio::test]
async fn conflicts_return_the_server_row_and_write_nothing() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let pk = id();
    a.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "a1"))]).await;
    a.upload(vec![upsert(2, "users", &pk, 1, user_row(&pk, "a2"))]).await;
    let before = log_rows(&t, &user).await;
    for (i, change) in [
        upsert(1, "users", &pk, 1, user_row(&pk, "b")),
        upsert(2, "users", &pk, 0, user_row(&pk, "b")),
        delete(3, "users", &pk, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let r = b.upload(vec![change]).await;
        let s = status(&r, 0);
        assert_eq!(s["status"], "conflict", "case {i}: {s}");
        assert_eq!(
            s["server_row"],
            json!({"id": pk, "deleted": false, "payload": user_row(&pk, "a2"), "table_name": "users", "schema_name": "business", "server_version": 2})
        );
        assert!(s.get("new_server_version").is_none() && s.get("invalid").is_none());
    }
    assert_eq!(log_rows(&t, &user).await, before);
}

#[tokio::test]
async fn a_tombstone_blocks_a_base_zero_insert() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    d.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "x"))]).await;
    d.upload(vec![delete(2, "users", &pk, 1)]).await;
    let r = d.upload(vec![upsert(3, "users", &pk, 0, user_row(&pk, "y"))]).await;
    assert_eq!(
        status(&r, 0)["server_row"],
        json!({"id": pk, "deleted": true, "payload": null, "table_name": "users", "schema_name": "business", "server_version": 2})
    );
}

#[tokio::test]
async fn a_base_version_for_an_unknown_row_is_an_internal_error() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    let pk = id();
    let r = d.upload(vec![upsert(1, "users", &pk, 3, user_row(&pk, "x"))]).await;
    let message = format!("conflict without server_row for business.users pk={pk}");
    assert_eq!(
        status(&r, 0),
        &json!({"source_change_id": 1, "status": "invalid", "message": message, "invalid": {"reason": "internal_error", "details": {"error": message}}})
    );
}

/// §9.2 case 1.
#[tokio::test]
async fn a_loser_leaves_no_log_row_and_peers_download_only_the_winner() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let (x, y, z, w) = (id(), id(), id(), id());
    a.upload(vec![
        upsert(1, "users", &x, 0, user_row(&x, "x")),
        upsert(2, "users", &z, 0, user_row(&z, "z")),
        upsert(3, "users", &w, 0, user_row(&w, "w")),
    ])
    .await;
    a.upload(vec![
        upsert(4, "users", &x, 1, user_row(&x, "x2")),
        upsert(5, "users", &w, 1, user_row(&w, "w2")),
    ])
    .await;
    let peer = Device::new(&t, &user, "peer");
    let cursor = peer.download_all("").await.last().unwrap().server_id;

    let r = b
        .upload(vec![
            upsert(1, "users", &x, 1, user_row(&x, "stale")),
            upsert(2, "users", &y, 0, user_row(&y, "good")),
            delete(3, "users", &w, 1),
            delete(4, "users", &z, 1),
        ])
        .await;
    let kinds: Vec<&str> = statuses(&r).iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["conflict", "applied", "conflict", "applied"]);
    let page = peer.download(&format!("after={cursor}")).await;
    let got: Vec<(&str, &str)> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["pk"].as_str().unwrap(), c["op"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(y.as_str(), "INSERT"), (z.as_str(), "DELETE")]);
    let again = b.upload(vec![upsert(1, "users", &x, 1, user_row(&x, "stale"))]).await;
    assert_eq!(
        status(&again, 0)["status"],
        "conflict",
        "a re-sent loser conflicts again"
    );
    let n: i64 = count(&db(&t).await, "SELECT count(*) FROM sync.server_change_log WHERE user_id = $1 AND source_id = 'b' AND source_change_id IN (1, 3)", &[&user]).await;
    assert_eq!(n, 0);
}

/// §9.2 case 16.
#[tokio::test]
async fn integers_beyond_2_pow_53_round_trip_exactly() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let pk = id();
    let body = format!(
        r#"{{"changes":[{{"source_change_id":1,"schema":"business","table":"typed","op":"INSERT","pk":"{pk}","server_version":0,
        "payload":{{"id":"{pk}","n":9007199254740993,"r":1.0,"big":-9223372036854775808,"label":"x"}}}}]}}"#
    );
    assert_eq!(a.upload_raw(body).await.0, 200);
    let (_, text) = read(
        b.http
            .get(format!("{}/sync/download", t.base))
            .bearer_auth(&b.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let raw = text.to_string();
    assert!(
        raw.contains("9007199254740993") && raw.contains("-9223372036854775808"),
        "{raw}"
    );
    // The text itself, not a float round trip.
    let r = reqwest::Client::new()
        .get(format!("{}/sync/download", t.base))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(r.contains(r#""n":9007199254740993"#) && r.contains(r#""r":1.0"#), "{r}");
    let conflict = a
        .http
        .post(format!("{}/sync/upload", t.base))
        .bearer_auth(&a.token)
        .body(json!({"changes": [upsert(2, "typed", &pk, 0, json!({"id": pk}))]}).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(conflict.contains(r#""n":9007199254740993"#), "{conflict}");
    let stored: i64 = db(&t)
        .await
        .query_one("SELECT n FROM business.typed WHERE id = $1::text::uuid", &[&pk])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 9_007_199_254_740_993);
}

/// §9.2 case 19.
#[tokio::test]
async fn every_uuid_form_addresses_the_same_row() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let forms = [
        pk.to_uppercase(),
        pk.replace('-', ""),
        format!("{{{pk}}}"),
        format!("urn:uuid:{pk}"),
    ];
    let r = d
        .upload(vec![upsert(1, "users", &forms[0], 0, user_row(&pk, "v1"))])
        .await;
    assert_eq!(status(&r, 0)["new_server_version"], 1);
    for (i, form) in forms[1..].iter().enumerate() {
        let v = i as i64 + 1;
        let r = d
            .upload(vec![upsert(10 + v, "users", form, v, user_row(&pk, "next"))])
            .await;
        assert_eq!(status(&r, 0)["new_server_version"], v + 1, "{form}");
    }
    let entries = Device::new(&t, &user, "peer").download_all("").await;
    assert!(entries.iter().all(|e| e.pk == pk), "downloads carry the canonical pk");
    let n: i64 = count(
        &db(&t).await,
        "SELECT count(*) FROM sync.sync_row_meta WHERE user_id = $1",
        &[&user],
    )
    .await;
    assert_eq!(n, 1);
}
