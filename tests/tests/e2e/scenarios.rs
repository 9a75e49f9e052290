//! PROTOCOL.md §9.1 end-to-end scenarios.

use oversync_client::Resolver;

use crate::support::*;

#[tokio::test]
async fn normal_usage() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let user = d
        .conn()
        .query_row("SELECT user_id FROM _sync_client_info", [], |r| r.get::<_, String>(0))
        .unwrap();
    let ids: Vec<String> = (0..10).map(|_| id()).collect();
    for (i, u) in ids.iter().enumerate() {
        add_user(&d, u, &format!("user {i}"));
        d.sync().await.unwrap();
    }
    for u in &ids[..8] {
        rename_user(&d, u, "updated");
        d.sync().await.unwrap();
    }
    for u in &ids[8..] {
        delete_row(&d, "users", u);
        d.sync().await.unwrap();
    }
    assert_eq!(server_count(&w, &user, "users").await, 8);
    assert_eq!(local_users(&d), server_users(&w, &user).await);
    assert_eq!(pending(&d), 0);
}

#[tokio::test]
async fn fresh_install_guest_writes_reach_the_server_after_sign_in() {
    let w = world(|_| {}).await;
    let mut d = guest(&w, |_| {});
    let users: Vec<String> = (0..5).map(|_| id()).collect();
    let posts: Vec<String> = (0..5).map(|_| id()).collect();
    for (i, (u, p)) in users.iter().zip(&posts).enumerate() {
        add_user(&d, u, &format!("guest {i}"));
        add_post(&d, p, u, "hello");
    }
    for u in &users[..3] {
        rename_user(&d, u, "renamed");
    }
    delete_row(&d, "posts", &posts[4]);
    delete_row(&d, "users", &users[4]);
    let user = sign_in(&w, &mut d, &name()).await;
    d.sync().await.unwrap();
    assert_eq!(
        (
            server_count(&w, &user, "users").await,
            server_count(&w, &user, "posts").await
        ),
        (4, 4)
    );
    assert_eq!(pending(&d), 0);
    rename_user(&d, &users[0], "after sign-in");
    d.sync().await.unwrap();
    assert!(
        server_users(&w, &user)
            .await
            .contains(&(users[0].clone(), "after sign-in".into()))
    );
}

#[tokio::test]
async fn multi_device_sync_keeps_a_deleted_row_deleted() {
    let w = world(|_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    let (a, b) = (id(), id());
    add_user(&d1, &a, "one");
    d1.sync().await.unwrap();
    add_user(&d2, &b, "two");
    d2.sync().await.unwrap();
    delete_row(&d1, "users", &a);
    d1.sync().await.unwrap();
    for _ in 0..2 {
        d1.sync().await.unwrap();
        d2.sync().await.unwrap();
    }
    let want = vec![(b.clone(), "two".to_owned())];
    assert_eq!((local_users(&d1), local_users(&d2)), (want.clone(), want));
}

#[tokio::test]
async fn conflicts_converge_with_server_wins_and_client_wins() {
    let w = world(|_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    let u = id();
    add_user(&d1, &u, "original");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    rename_user(&d1, &u, "from d1");
    rename_user(&d2, &u, "from d2");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap(); // conflict: server wins, d2 adopts d1's value
    assert_eq!(d2.take_conflicts().len(), 1);
    d1.sync().await.unwrap();
    assert_eq!(local_users(&d1), vec![(u.clone(), "from d1".into())]);
    assert_eq!(local_users(&d2), local_users(&d1));
    assert_eq!((pending(&d1), pending(&d2)), (0, 0));

    // Client wins: d4's value prevails everywhere.
    let mut d3 = device(&w, &username).await;
    let mut d4 = guest(&w, |c| c.resolver = Resolver::ClientWins);
    sign_in(&w, &mut d4, &username).await;
    d3.sync().await.unwrap();
    d4.sync().await.unwrap();
    rename_user(&d3, &u, "from d3");
    rename_user(&d4, &u, "from d4");
    d3.sync().await.unwrap();
    d4.sync().await.unwrap(); // conflict, re-sent at the server's version
    d4.sync().await.unwrap();
    for d in [&mut d1, &mut d2, &mut d3] {
        d.sync().await.unwrap();
    }
    for d in [&d1, &d2, &d3, &d4] {
        assert_eq!(local_users(d), vec![(u.clone(), "from d4".into())]);
        assert_eq!(pending(d), 0);
    }
}

#[tokio::test]
async fn update_against_delete_and_insert_insert_converge() {
    let w = world(|_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    let (u, v) = (id(), id());
    add_user(&d1, &u, "x");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    // update (d2) against delete (d1): server wins deletes it on d2 as well.
    delete_row(&d1, "users", &u);
    rename_user(&d2, &u, "edited");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    // delete (d2) against update (d1) of a new row.
    add_user(&d1, &v, "v");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    rename_user(&d1, &v, "v2");
    delete_row(&d2, "users", &v);
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    // insert/insert of the same pk.
    let same = id();
    add_user(&d1, &same, "first");
    add_user(&d2, &same, "second");
    d1.sync().await.unwrap();
    d2.sync().await.unwrap();
    d1.sync().await.unwrap();
    assert_eq!(local_users(&d1), local_users(&d2));
    assert_eq!((pending(&d1), pending(&d2)), (0, 0));
    assert!(local_users(&d1).contains(&(same, "first".into())));
}

#[tokio::test]
async fn fk_batch_retry_uploads_children_after_parents() {
    let w = world(|_| {}).await;
    let mut d = guest(&w, |_| {});
    let mut users = Vec::new();
    {
        let tx = d.conn().unchecked_transaction().unwrap();
        for i in 0..50 {
            let u = id();
            for j in 0..2 {
                tx.execute(
                    "INSERT INTO posts (id, title, content, author_id) VALUES (?1, ?2, 'b', ?3)",
                    [&id(), &format!("{i}/{j}"), &u],
                )
                .unwrap();
            }
            tx.execute("INSERT INTO users (id, name, email) VALUES (?1, 'n', 'e')", [&u])
                .unwrap();
            users.push(u);
        }
        tx.commit().unwrap();
    }
    let user = sign_in(&w, &mut d, &name()).await;
    d.sync().await.unwrap();
    assert_eq!(pending(&d), 0);
    assert_eq!(
        (
            server_count(&w, &user, "users").await,
            server_count(&w, &user, "posts").await
        ),
        (50, 100)
    );
}

#[tokio::test]
async fn files_with_blob_keys_sync_byte_for_byte() {
    let w = world(|_| {}).await;
    let username = name();
    let mut d1 = device(&w, &username).await;
    let files: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
    for (i, f) in files.iter().enumerate() {
        let data: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(i as u8 + 1)).collect();
        d1.conn()
            .execute(
                "INSERT INTO files (id, name, data) VALUES (?1, ?2, ?3)",
                rusqlite::params![f.as_bytes().to_vec(), format!("f{i}"), data],
            )
            .unwrap();
    }
    for (i, f) in [0, 0, 1, 2, 3, 3].iter().enumerate() {
        let r = uuid::Uuid::new_v4();
        d1.conn()
            .execute(
                "INSERT INTO file_reviews (id, review, file_id) VALUES (?1, ?2, ?3)",
                rusqlite::params![r.as_bytes().to_vec(), format!("r{i}"), files[*f].as_bytes().to_vec()],
            )
            .unwrap();
    }
    d1.sync().await.unwrap();
    d1.conn()
        .execute("DELETE FROM files WHERE id = ?1", [files[0].as_bytes().to_vec()])
        .unwrap();
    assert_eq!(
        local_count(&d1, "file_reviews"),
        4,
        "the cascade removed the first file's reviews"
    );
    d1.sync().await.unwrap();
    assert_eq!(pending(&d1), 0);
    let user = d1
        .conn()
        .query_row("SELECT user_id FROM _sync_client_info", [], |r| r.get::<_, String>(0))
        .unwrap();
    assert_eq!(
        (
            server_count(&w, &user, "files").await,
            server_count(&w, &user, "file_reviews").await
        ),
        (3, 4)
    );
    let mut d2 = device(&w, &username).await;
    d2.hydrate(false).await.unwrap();
    let dump = |d: &Device| -> Vec<(Vec<u8>, String, Option<Vec<u8>>)> {
        let mut s = d
            .conn()
            .prepare("SELECT id, name, data FROM files ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(dump(&d2), dump(&d1));
    assert_eq!(local_count(&d2, "file_reviews"), 4);
}

#[tokio::test]
async fn reinstall_with_a_new_or_the_same_device_id() {
    let w = world(|_| {}).await;
    let username = name();
    let mut d = device(&w, &username).await;
    let ids: Vec<String> = (0..5).map(|_| id()).collect();
    for u in &ids {
        add_user(&d, u, "kept");
    }
    d.sync().await.unwrap();
    let before = local_users(&d);
    let device_id = d.source_id().unwrap();
    // (a) new device id.
    let mut fresh = device(&w, &username).await;
    fresh.hydrate(false).await.unwrap();
    assert_eq!(local_users(&fresh), before);
    // (b) same device id: include_self hydration, and the next edit is applied, not swallowed as a replay.
    let mut same = guest(&w, |c| c.device_id = Some(device_id.clone()));
    sign_in(&w, &mut same, &username).await;
    same.hydrate(true).await.unwrap();
    assert_eq!(local_users(&same), before);
    rename_user(&same, &ids[0], "after reinstall");
    let report = same.sync().await.unwrap();
    assert_eq!((report.applied, pending(&same)), (1, 0));
    let user = same
        .conn()
        .query_row("SELECT user_id FROM _sync_client_info", [], |r| r.get::<_, String>(0))
        .unwrap();
    assert!(
        server_users(&w, &user)
            .await
            .contains(&(ids[0].clone(), "after reinstall".into())),
        "applied, not a replay"
    );
}

#[tokio::test]
async fn offline_online_rounds_converge() {
    let w = world(|_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    let mut all = Vec::new();
    for round in 0..3 {
        for d in [&d1, &d2] {
            let u = id();
            add_user(d, &u, &format!("round {round}"));
            all.push(u);
        }
        if round > 0 {
            rename_user(&d1, &all[0], &format!("d1 round {round}"));
        }
        d1.sync().await.unwrap();
        d2.sync().await.unwrap();
        d1.sync().await.unwrap();
    }
    assert_eq!(local_users(&d1), local_users(&d2));
    assert_eq!(local_users(&d1).len(), 6);
    assert_eq!((pending(&d1), pending(&d2)), (0, 0));
}
