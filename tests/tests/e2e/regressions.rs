//! Client-side §9.2 regressions.

use crate::support::*;

/// §9.2 case 8.
#[tokio::test]
async fn null_blob_stays_null_and_empty_blob_stays_empty() {
    let w = world(|_| {}).await;
    let username = name();
    let mut d1 = device(&w, &username).await;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    d1.conn()
        .execute(
            "INSERT INTO files (id, name, data) VALUES (?1, 'null', NULL)",
            [a.as_bytes().to_vec()],
        )
        .unwrap();
    d1.conn()
        .execute(
            "INSERT INTO files (id, name, data) VALUES (?1, 'empty', x'')",
            [b.as_bytes().to_vec()],
        )
        .unwrap();
    d1.sync().await.unwrap();
    let mut d2 = device(&w, &username).await;
    d2.sync().await.unwrap();
    let data: Vec<Option<Vec<u8>>> = {
        let mut s = d2.conn().prepare("SELECT data FROM files ORDER BY name DESC").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(data, vec![None, Some(vec![])]);
}

/// §9.2 case 2.
#[tokio::test]
async fn guest_writes_then_sign_in_then_an_edit_all_arrive() {
    let w = world(|_| {}).await;
    let mut d = guest(&w, |_| {});
    let u = id();
    add_user(&d, &u, "guest");
    let user = sign_in(&w, &mut d, &name()).await;
    d.sync().await.unwrap();
    rename_user(&d, &u, "edited");
    d.sync().await.unwrap();
    assert_eq!(server_users(&w, &user).await, vec![(u, "edited".into())]);
}

/// §9.2 case 3.
#[tokio::test]
async fn delete_reinsert_delete_leaves_a_tombstone() {
    let w = world(|_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    let u = id();
    add_user(&d1, &u, "x");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    delete_row(&d1, "users", &u);
    add_user(&d1, &u, "again");
    delete_row(&d1, "users", &u);
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    assert!(local_users(&d2).is_empty());
    let user = d1
        .conn()
        .query_row("SELECT user_id FROM _sync_client_info", [], |r| r.get::<_, String>(0))
        .unwrap();
    let deleted: bool =
        w.db.query_one("SELECT deleted FROM sync.sync_row_meta WHERE user_id = $1", &[&user])
            .await
            .unwrap()
            .get(0);
    assert!(deleted);
}

/// §9.2 case 7.
#[tokio::test]
async fn a_peer_updating_a_parent_does_not_cascade_away_children() {
    let w = world(|_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    let (u, p) = (id(), id());
    add_user(&d1, &u, "author");
    add_post(&d1, &p, &u, "child");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    rename_user(&d1, &u, "renamed author");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    assert_eq!(local_count(&d2, "posts"), 1);
    assert_eq!(local_users(&d2), vec![(u, "renamed author".into())]);
}

/// §9.2 case 17.
#[tokio::test]
async fn conflict_without_server_row_is_rebased_to_zero_and_applied() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let u = id();
    // Local metadata claims a version the server never produced (e.g. a wiped server).
    d.conn()
        .execute(
            "INSERT INTO _sync_row_meta (table_name, pk_uuid, server_version, updated_at) VALUES ('users', ?1, 5, 'x')",
            [&u],
        )
        .unwrap();
    add_user(&d, &u, "orphaned version");
    let first = d.sync().await.unwrap();
    assert_eq!(
        (first.retried, first.applied),
        (1, 1),
        "internal_error: rebased to 0, then applied in the same cycle"
    );
    assert_eq!(pending(&d), 0);
    assert_eq!(d.row_meta("users", &u).unwrap(), Some((1, false)));
}

/// §9.2 case 18 (client side).
#[tokio::test]
async fn the_chunk_halves_on_batch_too_large_and_converges() {
    let w = world(|c| c.max_upload_batch_size = 2).await;
    let mut d = device(&w, &name()).await;
    for _ in 0..7 {
        add_user(&d, &id(), "n");
    }
    d.sync().await.unwrap();
    assert_eq!(d.chunk_size(), 2);
    assert_eq!(pending(&d), 0);
}

/// A non-canonical TEXT key is refused by the triggers (§9.2 case 19, client side).
#[tokio::test]
async fn non_canonical_keys_are_rejected_locally() {
    let w = world(|_| {}).await;
    let d = guest(&w, |_| {});
    let upper = id().to_uppercase();
    let err = d
        .conn()
        .execute("INSERT INTO users (id, name, email) VALUES (?1, 'n', 'e')", [&upper])
        .unwrap_err();
    assert!(err.to_string().contains("canonical"), "{err}");
    assert_eq!(pending(&d), 0);
}

/// A 401 asks the token provider once for a new token and repeats the request; without one it surfaces.
#[tokio::test]
async fn a_rejected_token_is_refreshed_once_through_the_provider() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let valid = d.token_for_tests();
    add_user(&d, &id(), "n");
    d.set_token("expired".into());
    assert!(matches!(
        d.sync().await,
        Err(oversync_client::SyncError::Unauthorized(_))
    ));
    assert_eq!(pending(&d), 1, "nothing lost");
    d.set_token_provider(move || Some(valid.clone()));
    d.sync().await.unwrap();
    assert_eq!(pending(&d), 0);
}
