//! Backend writes to shared data (issue 33, docs/backend-writes.md §5, §10): read-only tables and data for
//! everyone (the backend writes a catalogue once, into a scope whose member `*` stands for every signed-in user,
//! and every device reads it; no device can write it; on a database of its own, since a scope for everyone is in
//! every other test's downloads), moves between scopes, and the demo's backend writer.

use serde_json::json;

use crate::backend::{BACKEND, backend};
use crate::support::*;

#[tokio::test]
async fn a_catalogue_for_everyone_reaches_every_user_and_no_device_writes_it() {
    let t = target_in_own_db("watch = true");
    let shelf = format!("shelf-{}", id());
    join(&t, &shelf, "*", Some("reader")).await;
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

/// A backend move of a shared row between scopes: a member's stale DELETE of it conflicts with the row where it
/// is now (it does not delete it there as an unknown row).
#[tokio::test]
async fn a_stale_delete_of_a_row_the_backend_moved_between_scopes_conflicts() {
    let t = target();
    let (t0, t1) = (format!("team-{}", id()), format!("team-{}", id()));
    let user = new_user();
    for s in [&t0, &t1] {
        join(&t, s, &user, Some("writer")).await;
    }
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let r = d
        .upload(vec![upsert(
            1,
            "team_posts",
            &pk,
            0,
            json!({"id": pk, "team_id": t1, "title": "x"}),
        )])
        .await;
    assert!(all_applied(&r), "{r}");
    backend(
        &t,
        &format!("UPDATE business.team_posts SET team_id = '{t0}' WHERE id = '{pk}'"),
    )
    .await
    .unwrap();
    let r = d.upload(vec![delete(2, "team_posts", &pk, 1)]).await;
    assert_eq!(status_at(&r, 0), WireStatus::Conflict, "{r}");
}

/// The demo's backend writer (`POST /demo/teams` `{"pin": …}`): a member's request makes the team admin write a
/// post with plain SQL, which capture logs from the backend; an outsider is refused.
#[tokio::test]
async fn the_demo_team_admin_pins_a_note_with_plain_sql_for_members_only() {
    let t = target();
    let (member, outsider) = (new_user(), new_user());
    let scope = format!("team-{}", id());
    join(&t, &scope, &member, Some("reader")).await;
    let pin = |who: &str| {
        let d = Device::new(&t, who, "d");
        let body = json!({"pin": {"team": scope, "text": "standup at ten"}});
        async move {
            let r = d
                .http
                .post(format!("{}/demo/teams", d.base))
                .bearer_auth(&d.token)
                .json(&body)
                .send();
            read(r.await.unwrap()).await
        }
    };
    let (status, body) = pin(&outsider).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = pin(&member).await;
    assert_eq!(status, 200, "{body}");
    let page = Device::new(&t, &member, "d2")
        .download("after=0&limit=10&scopes=1")
        .await;
    let e = &page["changes"][0];
    assert_eq!(
        (&e["author"], &e["payload"]["title"], &e["payload"]["author_name"]),
        (&json!(BACKEND), &json!("📌 standup at ten"), &json!("team admin")),
        "{page}"
    );
}
