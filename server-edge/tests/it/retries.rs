//! §6.1: the per-user advisory lock, `lock_timeout`, retries, and 503 when the lock never comes.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// Holds `user`'s advisory lock in another session for `hold`.
async fn hold_user_lock(t: &Target, user: &str, hold: Duration) -> tokio::task::JoinHandle<()> {
    let conn = db(t).await;
    conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&user])
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        conn.execute("SELECT pg_advisory_unlock_all()", &[]).await.unwrap();
    })
}

#[tokio::test]
async fn an_upload_waits_for_the_users_lock_and_retries_after_a_lock_timeout() {
    let t = target_with("short_lock", "lock_timeout_ms = 150");
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    // Released after the first attempt timed out: a retry succeeds.
    let holder = hold_user_lock(&t, &user, Duration::from_millis(250)).await;
    let r = d.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "x"))]).await;
    assert_eq!(statuses(&r)[0]["new_server_version"], 1);
    holder.await.unwrap();
}

#[tokio::test]
async fn an_upload_that_never_gets_the_lock_is_answered_busy_and_applies_nothing() {
    let t = target_with("short_lock", "lock_timeout_ms = 150");
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let holder = hold_user_lock(&t, &user, Duration::from_secs(3)).await;
    let r = d
        .http
        .post(format!("{}/sync/upload", d.base))
        .bearer_auth(&d.token)
        .body(json!({"changes": [upsert(1, "users", &pk, 0, user_row(&pk, "x"))]}).to_string())
        .send()
        .await
        .unwrap();
    // Waiting past `lock_timeout` on every attempt is overload (issue 32), not a failure: 503 + Retry-After.
    assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(
        read(r).await,
        (
            503,
            json!({"error": "server_busy", "message": "Server busy, retry later"})
        )
    );
    assert_eq!(log_rows(&t, &user).await, 0, "nothing was applied");
    holder.await.unwrap();
    // The same upload goes through once the lock is free.
    let r = d.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "x"))]).await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
}

#[tokio::test]
async fn the_business_precheck_reads_owner_scoped_parents() {
    let t = target_with("business_precheck", "fk_precheck = \"business\"");
    let (alice, bob) = (new_user(), new_user());
    let (a, b) = (Device::new(&t, &alice, "d"), Device::new(&t, &bob, "d"));
    let (u, p, q) = (id(), id(), id());
    a.upload(vec![upsert(1, "users", &u, 0, user_row(&u, "alice"))]).await;
    let r = a
        .upload(vec![upsert(2, "posts", &p, 0, post_row(&p, &u, "mine"))])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied, "{r}");
    // Bob cannot hang a post on Alice's business row.
    let r = b
        .upload(vec![upsert(1, "posts", &q, 0, post_row(&q, &u, "theirs"))])
        .await;
    assert_eq!(
        statuses(&r)[0]["invalid"]["details"],
        json!({"missing": [format!("business.users:{u}")]})
    );
}

#[tokio::test]
async fn a_failing_parent_lookup_is_a_precheck_error_not_a_500() {
    // The parent's business table has no such owner column: its lookup fails inside the upload.
    let extra = r#"fk_precheck = "business"
[[tables]]
schema = "app"
table = "broken_parent"
target = "business.users"
owner_column = "no_such_column"
[[tables]]
schema = "app"
table = "broken_child"
materialize = false
fks = [{ column = "parent_id", parent = "app.broken_parent" }]
"#;
    let t = target_with("broken_precheck", extra);
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (child, good) = (id(), id());
    let r = d
        .upload(vec![
            upsert(
                1,
                "app.broken_child",
                &child,
                0,
                json!({"id": child, "parent_id": id()}),
            ),
            upsert(2, "users", &good, 0, user_row(&good, "fine")),
        ])
        .await;
    let s = &statuses(&r)[0];
    assert_eq!(s["invalid"]["reason"], "precheck_error", "{s}");
    let message = format!("FK precheck failed for app.broken_child pk={child}");
    assert_eq!(s["message"], message);
    // The database's error ("column no_such_column does not exist") is logged, never sent.
    assert_eq!(s["invalid"]["details"], json!({ "error": message }), "{s}");
    assert!(!r.to_string().contains("no_such_column"), "{r}");
    assert_eq!(status_at(&r, 1), WireStatus::Applied);
}
