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
async fn on_a_table_keyed_by_id_alone_reusing_another_users_uuid_cannot_change_their_row() {
    let t = target();
    let (alice, mallory) = (new_user(), new_user());
    let (a, m) = (Device::new(&t, &alice, "d"), Device::new(&t, &mallory, "d"));
    let pk = id();
    let table = "other.shared_keys";
    a.upload(vec![upsert(1, table, &pk, 0, json!({"id": pk, "name": "alice"}))])
        .await;
    let hostile = json!({"id": pk, "name": "mallory", "owner_id": mallory});
    let r = m.upload(vec![upsert(1, table, &pk, 0, hostile)]).await;
    assert_eq!(
        status_at(&r, 0),
        WireStatus::Applied,
        "sync state is per user; only materialisation is refused"
    );
    let r = m.upload(vec![delete(2, table, &pk, 1)]).await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    let conn = db(&t).await;
    let row = conn
        .query_one(
            "SELECT name, owner_id FROM other.shared_keys WHERE id = $1::text::uuid",
            &[&pk],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("alice".to_owned(), alice.clone())
    );
    let failures: i64 = count(
        &conn,
        "SELECT count(*) FROM sync.materialize_failures WHERE user_id = $1 AND pk_uuid = $2::text::uuid",
        &[&mallory, &pk],
    )
    .await;
    assert_eq!(failures, 1, "the refused upsert is recorded");
}

/// Every row of `table` with primary key `pk`, as `(owner_id, name-ish column)` sorted by owner.
async fn business_rows(t: &Target, table: &str, column: &str, pk: &str) -> Vec<(String, String)> {
    let sql = format!("SELECT owner_id, {column}::text FROM business.{table} WHERE id = $1::text::uuid ORDER BY 1");
    let rows = db(t).await.query(&sql, &[&pk]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn file_row(pk: &str, name: &str) -> serde_json::Value {
    json!({"id": pk, "name": name, "data": "AAE="})
}

fn review_row(pk: &str, file: &str, review: &str) -> serde_json::Value {
    json!({"id": pk, "review": review, "file_id": file})
}

#[tokio::test]
async fn a_user_who_takes_another_users_ids_first_neither_blocks_nor_touches_their_rows() {
    let t = target();
    let (bob, mallory) = (new_user(), new_user());
    let (b, m) = (Device::new(&t, &bob, "d"), Device::new(&t, &mallory, "d"));
    let (author, post, gone, file, review) = (id(), id(), id(), id(), id());
    let applied = |r: &serde_json::Value| assert!(all_applied(r), "{r}");

    // Mallory writes Bob's ids before Bob does (her post's author_id is Bob's user id), then deletes one.
    applied(
        &m.upload(vec![
            upsert(1, "users", &author, 0, user_row(&author, "squatter")),
            upsert(2, "posts", &post, 0, post_row(&post, &author, "squatted")),
            upsert(3, "posts", &gone, 0, post_row(&gone, &author, "squatted too")),
            upsert(4, "files", &file, 0, file_row(&file, "squat.bin")),
            upsert(5, "file_reviews", &review, 0, review_row(&review, &file, "squatted")),
        ])
        .await,
    );
    applied(&m.upload(vec![delete(6, "posts", &gone, 1)]).await);

    // Bob's rows materialise as his own, his update and his delete apply.
    applied(
        &b.upload(vec![
            upsert(1, "posts", &post, 0, post_row(&post, &author, "bob's post")),
            upsert(2, "users", &author, 0, user_row(&author, "bob")),
            upsert(3, "posts", &gone, 0, post_row(&gone, &author, "bob's doomed post")),
            upsert(4, "files", &file, 0, file_row(&file, "bob.bin")),
            upsert(5, "file_reviews", &review, 0, review_row(&review, &file, "bob's")),
        ])
        .await,
    );
    applied(
        &b.upload(vec![
            upsert(6, "posts", &post, 1, post_row(&post, &author, "bob's edit")),
            delete(7, "posts", &gone, 1),
        ])
        .await,
    );

    // Mallory edits and deletes her rows with Bob's ids: only hers change.
    applied(
        &m.upload(vec![
            upsert(7, "users", &author, 1, user_row(&author, "mallory was here")),
            upsert(8, "posts", &post, 1, post_row(&post, &author, "mallory's edit")),
            delete(9, "file_reviews", &review, 1),
        ])
        .await,
    );

    let bob_row = |v: &str| (bob.clone(), v.to_owned());
    let pair = |b: &str, m: &str| {
        let mut v = vec![(bob.clone(), b.to_owned()), (mallory.clone(), m.to_owned())];
        v.sort();
        v
    };
    assert_eq!(
        business_rows(&t, "users", "name", &author).await,
        pair("bob", "mallory was here")
    );
    assert_eq!(
        business_rows(&t, "posts", "title", &post).await,
        pair("bob's edit", "mallory's edit")
    );
    assert_eq!(
        business_rows(&t, "posts", "author_id", &post).await,
        pair(&author, &author)
    );
    assert_eq!(
        business_rows(&t, "posts", "title", &gone).await,
        vec![],
        "both deletes applied"
    );
    assert_eq!(
        business_rows(&t, "files", "name", &file).await,
        pair("bob.bin", "squat.bin")
    );
    assert_eq!(
        business_rows(&t, "file_reviews", "review", &review).await,
        vec![bob_row("bob's")],
        "Mallory's delete removed only her review"
    );
    let failures: i64 = db(&t)
        .await
        .query_one(
            "SELECT count(*) FROM sync.materialize_failures WHERE user_id = ANY($1)",
            &[&vec![bob.clone(), mallory.clone()]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 0, "nothing refused: each user writes only their own rows");
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
