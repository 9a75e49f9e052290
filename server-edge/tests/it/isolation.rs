//! Isolation: schemas, users and owner-scoped materialisation.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_same_pk_in_two_schemas_is_two_rows() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let r = d
        .upload(vec![
            upsert(1, "users", &pk, 0, user_row(&pk, "b")),
            upsert(2, "other.users", &pk, 0, json!({"id": pk, "name": "o"})),
        ])
        .await;
    assert!(statuses(&r).iter().all(|s| s["new_server_version"] == 1), "{r}");
    let r = d.upload(vec![delete(3, "other.users", &pk, 1)]).await;
    assert_eq!(statuses(&r)[0]["new_server_version"], 2);
    let r = d.upload(vec![upsert(4, "users", &pk, 1, user_row(&pk, "b2"))]).await;
    assert_eq!(statuses(&r)[0]["new_server_version"], 2);
}

#[tokio::test]
async fn users_never_see_each_others_changes() {
    let t = target();
    let (alice, bob) = (new_user(), new_user());
    let (a, b) = (Device::new(&t, &alice, "d"), Device::new(&t, &bob, "d"));
    let pk = id();
    a.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "alice's"))])
        .await;
    assert!(b.download_all("&include_self=true").await.is_empty());
    // Bob's sync state for the same pk is his own: base 0 applies at version 1.
    let r = b.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "bob's"))]).await;
    assert_eq!(statuses(&r)[0]["new_server_version"], 1);
    assert_eq!(a.download_all("&include_self=true").await.len(), 1);
}

#[tokio::test]
async fn reusing_another_users_uuid_cannot_change_their_business_row() {
    let t = target();
    let (alice, mallory) = (new_user(), new_user());
    let (a, m) = (Device::new(&t, &alice, "d"), Device::new(&t, &mallory, "d"));
    let pk = id();
    a.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "alice"))]).await;
    let mut hostile = user_row(&pk, "mallory");
    hostile["owner_id"] = json!(mallory);
    let r = m.upload(vec![upsert(1, "users", &pk, 0, hostile)]).await;
    assert_eq!(
        statuses(&r)[0]["status"],
        "applied",
        "sync state is per user; only materialisation is refused"
    );
    let r = m.upload(vec![delete(2, "users", &pk, 1)]).await;
    assert_eq!(statuses(&r)[0]["status"], "applied");
    let conn = db(&t).await;
    let row = conn
        .query_one(
            "SELECT name, owner_id FROM business.users WHERE id = $1::text::uuid",
            &[&pk],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("alice".to_owned(), alice.clone())
    );
    let failures: i64 = conn
        .query_one(
            "SELECT count(*) FROM sync.materialize_failures WHERE user_id = $1 AND pk_uuid = $2::text::uuid",
            &[&mallory, &pk],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 1, "the refused upsert is recorded");
}

#[tokio::test]
async fn guessed_cursors_and_schema_tricks_reveal_nothing_of_another_user() {
    let t = target();
    let (alice, bob) = (new_user(), new_user());
    let (a, b) = (Device::new(&t, &alice, "d"), Device::new(&t, &bob, "d"));
    let pk = id();
    let r = a.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "alice"))]).await;
    let alice_id = r["highest_server_seq"].as_i64().unwrap();
    // Bob asks for the window around Alice's server_id, with and without schema filters and include_self.
    for q in [
        format!("after={}&until={}", alice_id - 1, alice_id),
        format!("after=0&until={}&include_self=true", alice_id + 10),
        "after=0&schema=business&limit=1000".to_owned(),
        "after=0&schema=sync".to_owned(),
    ] {
        let page = b.download(&q).await;
        assert_eq!(page["changes"], json!([]), "{q}");
    }
    // Bob's snapshot and a conflict probe on Alice's pk show nothing of hers either.
    let (_, snap) = read(
        b.http
            .get(format!("{}/sync/snapshot", t.base))
            .bearer_auth(&b.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(snap["rows"], json!([]));
    let r = b.upload(vec![upsert(1, "users", &pk, 5, user_row(&pk, "probe"))]).await;
    assert!(statuses(&r)[0].get("server_row").is_none(), "no server_row leaks: {r}");
    assert_eq!(statuses(&r)[0]["invalid"]["reason"], "internal_error");
}
