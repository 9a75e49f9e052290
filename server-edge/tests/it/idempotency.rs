//! §6.3 idempotency; §9.2 case 13.

use serde_json::{Value, json};

use crate::support::*;

fn versions(resp: &Value) -> Vec<Value> {
    statuses(resp)
        .iter()
        .map(|s| s.get("new_server_version").cloned().unwrap_or(Value::Null))
        .collect()
}

#[tokio::test]
async fn full_partial_and_reordered_replays_return_the_stored_versions() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (a, b, c) = (id(), id(), id());
    let first = vec![
        upsert(1, "users", &a, 0, user_row(&a, "a")),
        upsert(2, "users", &b, 0, user_row(&b, "b")),
    ];
    assert_eq!(versions(&d.upload(first.clone()).await), [json!(1), json!(1)]);
    d.upload(vec![upsert(3, "users", &a, 1, user_row(&a, "a2"))]).await;
    let logged = log_rows(&t, &user).await;
    // Full replay: the stored versions, whatever the row's version is now.
    assert_eq!(versions(&d.upload(first.clone()).await), [json!(1), json!(1)]);
    // Reordered, and partial with a new change.
    let r = d
        .upload(vec![
            first[1].clone(),
            upsert(4, "users", &c, 0, user_row(&c, "c")),
            first[0].clone(),
        ])
        .await;
    assert_eq!(versions(&r), [json!(1), json!(1), json!(1)]);
    assert_eq!(log_rows(&t, &user).await, logged + 1);
    // A replay's payload and op do not matter.
    let r = d
        .upload(vec![
            json!({"source_change_id": 2, "schema": "business", "table": "users", "op": "DELETE", "pk": b}),
        ])
        .await;
    assert_eq!(versions(&r), [json!(1)]);
}

#[tokio::test]
async fn the_same_scid_from_another_device_is_independent() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let (x, y) = (id(), id());
    a.upload(vec![upsert(1, "users", &x, 0, user_row(&x, "x"))]).await;
    let r = b.upload(vec![upsert(1, "users", &y, 0, user_row(&y, "y"))]).await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    assert_eq!(log_rows(&t, &user).await, 2);
}

#[tokio::test]
async fn an_scid_reused_for_another_row_is_reported() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (x, y) = (id(), id());
    d.upload(vec![upsert(7, "users", &x, 0, user_row(&x, "x"))]).await;
    let message = format!("source_change_id 7 already used for business.users pk={x}");
    for change in [upsert(7, "users", &y, 0, user_row(&y, "y")), delete(7, "posts", &x, 1)] {
        let r = d.upload(vec![change]).await;
        assert_eq!(
            statuses(&r)[0],
            json!({"source_change_id": 7, "status": "invalid", "message": message, "invalid": {"reason": "bad_payload", "details": {"error": message}}})
        );
    }
    assert_eq!(log_rows(&t, &user).await, 1);
}

#[tokio::test]
async fn concurrent_identical_uploads_produce_one_log_row() {
    // Without the per-user share, the twelve transactions really meet at the advisory lock.
    let t = target_with("no_user_share", "max_uploads_per_user = 0");
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pks: Vec<String> = (0..5).map(|_| id()).collect();
    let changes: Vec<Value> = pks
        .iter()
        .enumerate()
        .map(|(i, pk)| upsert(i as i64 + 1, "users", pk, 0, user_row(pk, "n")))
        .collect();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (d, changes) = (d.clone(), changes.clone());
            tokio::spawn(async move { d.upload(changes).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(versions(&task.await.unwrap()), vec![json!(1); 5]);
    }
    assert_eq!(log_rows(&t, &user).await, 5);
}

#[tokio::test]
async fn conflicts_and_rejections_leave_no_idempotency_record() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let x = id();
    a.upload(vec![upsert(1, "users", &x, 0, user_row(&x, "a"))]).await;
    assert_eq!(
        statuses(&b.upload(vec![upsert(5, "users", &x, 0, user_row(&x, "b"))]).await)[0]["status"],
        "conflict"
    );
    // The same scid is evaluated afresh once the base is right.
    assert_eq!(
        statuses(&b.upload(vec![upsert(5, "users", &x, 1, user_row(&x, "b"))]).await)[0]["new_server_version"],
        2
    );
}
