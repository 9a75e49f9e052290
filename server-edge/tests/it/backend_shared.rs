//! Read-only tables and data for everyone (issue 33, docs/backend-writes.md §5): the backend writes a catalogue
//! once, into a scope whose member `*` stands for every signed-in user, and every device reads it; no device can
//! write it. On a database of its own: a scope for everyone is in every other test's downloads.

use serde_json::json;

use crate::backend::backend;
use crate::support::*;

#[tokio::test]
async fn a_catalogue_for_everyone_reaches_every_user_and_no_device_writes_it() {
    let t = target_in_own_db("watch = true");
    let shelf = format!("shelf-{}", id());
    db(&t)
        .await
        .execute(
            "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, '*', 'reader')",
            &[&shelf],
        )
        .await
        .unwrap();
    let (a, b) = (Device::new(&t, &new_user(), "a"), Device::new(&t, &new_user(), "b"));
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.get_raw("/sync/watch?after=0&timeout_s=20&scopes=1").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let item = id();
    backend(
        &t,
        &format!("INSERT INTO business.catalog VALUES ('{item}', '{shelf}', 'tea', 4.50)"),
    )
    .await
    .unwrap();
    let (status, woken) = waiting.await.unwrap();
    assert_eq!((status, woken["changed"].as_bool()), (200, Some(true)), "{woken}");

    for d in [&a, &b] {
        let page = d.download("after=0&limit=100&scopes=1").await;
        let e = &page["changes"][0];
        assert_eq!(
            (&e["pk"], &e["scope"], &e["payload"]["name"], &e["payload"]["price"]),
            (&json!(item), &json!(shelf), &json!("tea"), &json!(4.50)),
            "{page}"
        );
        assert_eq!(page["scopes"], json!([{"scope": shelf, "role": "reader"}]), "{page}");
    }

    // No device writes the table, and a reader for everyone is not a writer of the scope.
    let r = a
        .upload(vec![upsert(
            1,
            "business.catalog",
            &item,
            1,
            json!({"id": item, "shelf": shelf, "name": "free tea"}),
        )])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Invalid, "{r}");
    assert_eq!(statuses(&r)[0]["invalid"]["reason"], "read_only_table", "{r}");
    let post = id();
    let r = a
        .upload(vec![upsert(
            2,
            "team_posts",
            &post,
            0,
            json!({"id": post, "team_id": shelf, "title": "spam"}),
        )])
        .await;
    assert_eq!(statuses(&r)[0]["invalid"]["reason"], "scope_forbidden", "{r}");
    let name: String = db(&t)
        .await
        .query_one("SELECT name FROM business.catalog WHERE id = $1::text::uuid", &[&item])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "tea");
}
