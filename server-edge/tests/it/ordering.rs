//! §6.5: parent-first upserts, child-first deletes, the FK precheck on sync state; §9.2 case 15.

use oversync_protocol::encoding::encode_base64;
use oversync_protocol::wire::ChangeDownload;
use serde_json::json;

use crate::support::*;

fn pks_in_log_order(entries: &[ChangeDownload]) -> Vec<String> {
    entries.iter().map(|e| e.pk.clone()).collect()
}

#[tokio::test]
async fn upserts_apply_parent_first_and_deletes_child_first() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (u, p) = (id(), id());
    let r = d
        .upload(vec![
            upsert(21, "posts", &p, 0, post_row(&p, &u, "Hello")),
            upsert(22, "users", &u, 0, user_row(&u, "Dana")),
        ])
        .await;
    assert!(all_applied(&r), "{r}");
    let peer = Device::new(&t, &user, "peer");
    assert_eq!(
        pks_in_log_order(&peer.download_all("").await),
        [u.clone(), p.clone()],
        "log order is parent-first"
    );
    // Materialised too: the deferred business FK is satisfied within the transaction.
    let n: i64 = count(
        &db(&t).await,
        "SELECT count(*) FROM business.posts WHERE id = $1::text::uuid AND owner_id = $2",
        &[&p, &user],
    )
    .await;
    assert_eq!(n, 1);

    let r = d
        .upload(vec![delete(23, "users", &u, 1), delete(24, "posts", &p, 1)])
        .await;
    assert!(all_applied(&r), "{r}");
    let entries = peer.download_all("").await;
    assert_eq!(
        pks_in_log_order(&entries[2..]),
        [p.clone(), u.clone()],
        "deletes are child-first"
    );
    let n: i64 = count(
        &db(&t).await,
        "SELECT count(*) FROM business.users WHERE id = $1::text::uuid",
        &[&u],
    )
    .await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn an_orphan_gets_fk_missing_with_the_value_as_sent_and_is_never_downloaded() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (p, missing) = (id(), id().to_uppercase());
    let r = d
        .upload(vec![upsert(1, "posts", &p, 0, post_row(&p, &missing, "orphan"))])
        .await;
    assert_eq!(
        statuses(&r)[0],
        json!({"source_change_id": 1, "status": "invalid", "invalid": {"reason": "fk_missing", "details": {"missing": [format!("business.users:{missing}")]}}})
    );
    assert!(Device::new(&t, &user, "peer").download_all("").await.is_empty());
}

#[tokio::test]
async fn a_parent_known_only_to_sync_state_satisfies_the_precheck() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (parent, child) = (id(), id());
    d.upload(vec![upsert(1, "app.parents", &parent, 0, json!({"id": parent}))])
        .await;
    // The parent's id as the base64 of its 16 bytes, the way classic clients send BLOB foreign keys.
    let b64 = encode_base64(uuid::Uuid::parse_str(&parent).unwrap().as_bytes());
    let r = d
        .upload(vec![upsert(
            2,
            "app.children",
            &child,
            0,
            json!({"id": child, "parent_id": b64}),
        )])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied, "{r}");
    // A deleted parent no longer satisfies it, and neither does one deleted in the same request.
    let (other, child2, child3) = (id(), id(), id());
    d.upload(vec![upsert(3, "app.parents", &other, 0, json!({"id": other}))])
        .await;
    let r = d
        .upload(vec![
            upsert(4, "app.children", &child2, 0, json!({"id": child2, "parent_id": other})),
            delete(5, "app.parents", &other, 1),
        ])
        .await;
    assert_eq!(statuses(&r)[0]["invalid"]["reason"], "fk_missing");
    assert_eq!(status_at(&r, 1), WireStatus::Applied);
    let r = d
        .upload(vec![upsert(
            6,
            "app.children",
            &child3,
            0,
            json!({"id": child3, "parent_id": other}),
        )])
        .await;
    assert_eq!(
        statuses(&r)[0]["invalid"]["details"],
        json!({"missing": [format!("app.parents:{other}")]})
    );
    let r = d
        .upload(vec![upsert(
            7,
            "app.children",
            &child3,
            0,
            json!({"id": child3, "parent_id": "not-a-uuid"}),
        )])
        .await;
    assert_eq!(
        statuses(&r)[0]["message"],
        format!("bad payload for app.children pk={child3}")
    );
}

#[tokio::test]
async fn self_references_within_one_request_are_satisfied() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    let (root, leaf) = (id(), id());
    let r = d
        .upload(vec![
            upsert(1, "app.nodes", &leaf, 0, json!({"id": leaf, "parent_id": root})),
            upsert(2, "app.nodes", &root, 0, json!({"id": root, "parent_id": null})),
        ])
        .await;
    assert!(all_applied(&r), "{r}");
}

#[tokio::test]
async fn a_large_mixed_batch_with_children_first_applies_completely() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let users: Vec<String> = (0..50).map(|_| id()).collect();
    let mut changes = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (p1, p2) = (id(), id());
        changes.push(upsert(1000 + 2 * i as i64, "posts", &p1, 0, post_row(&p1, u, "one")));
        changes.push(upsert(1001 + 2 * i as i64, "posts", &p2, 0, post_row(&p2, u, "two")));
    }
    for (i, u) in users.iter().enumerate() {
        changes.push(upsert(i as i64 + 1, "users", u, 0, user_row(u, "author")));
    }
    let r = d.upload(changes).await;
    assert!(all_applied(&r));
    let conn = db(&t).await;
    let posts: i64 = count(
        &conn,
        "SELECT count(*) FROM business.posts WHERE owner_id = $1",
        &[&user],
    )
    .await;
    let failures: i64 = count(
        &conn,
        "SELECT count(*) FROM sync.materialize_failures WHERE user_id = $1",
        &[&user],
    )
    .await;
    assert_eq!((posts, failures), (100, 0));
}
