//! PROTOCOL.md §9.1, continued: scenarios across devices and users (device replacement, user switch, the
//! complex multi-batch run, the multi-device sequence, snapshot hydration across chunks).
use crate::support::*;

#[tokio::test]
async fn device_replacement_hydrates_then_both_devices_converge() {
    let w = world(|_| {}).await;
    let username = name();
    let mut old = device(&w, &username).await;
    for i in 0..5 {
        add_user(&old, &id(), &format!("u{i}"));
    }
    old.sync().await.unwrap();
    let mut new = device(&w, &username).await;
    new.hydrate(false).await.unwrap();
    assert!(new.hydrated().unwrap());
    assert_eq!(local_users(&new), local_users(&old));
    assert!(
        new.transport()
            .gets
            .borrow()
            .iter()
            .any(|p| p.starts_with("/sync/snapshot")),
        "hydrated from a snapshot"
    );
    // Against a classic server (no capabilities, no snapshot) hydration replays the log instead.
    let mut classic = guest(&w, |_| {});
    classic.transport().classic.set(true);
    sign_in(&w, &mut classic, &username).await;
    classic.hydrate(false).await.unwrap();
    assert_eq!(local_users(&classic), local_users(&old));
    assert!(
        !classic
            .transport()
            .gets
            .borrow()
            .iter()
            .any(|p| p.starts_with("/sync/snapshot"))
    );
    add_user(&new, &id(), "from new");
    let first = local_users(&old)[0].0.clone();
    rename_user(&old, &first, "from old");
    new.sync().await.unwrap();
    old.sync().await.unwrap();
    new.sync().await.unwrap();
    assert_eq!(local_users(&new), local_users(&old));
    assert_eq!(local_users(&old), server_users(&w, &user_of(&old)).await);
}

#[tokio::test]
async fn users_on_one_device_use_separate_databases_and_never_touch_each_other() {
    let w = world(|_| {}).await;
    let (alice, bob) = (name(), name());
    let path_a = temp_db();
    let path_b = temp_db();
    let mut a = guest_at(&w, &path_a, |_| {});
    sign_in(&w, &mut a, &alice).await;
    let shared = id();
    add_user(&a, &shared, "alice's");
    a.sync().await.unwrap();
    // The same database refuses another user.
    let other_token = "x".to_owned();
    assert!(a.sign_in("user-someone-else", other_token).is_err());
    let mut b = guest_at(&w, &path_b, |_| {});
    sign_in(&w, &mut b, &bob).await;
    b.sync().await.unwrap();
    assert!(local_users(&b).is_empty(), "bob sees none of alice's rows");
    add_user(&b, &shared, "bob reuses the uuid");
    b.sync().await.unwrap();
    // Business keys are owner-scoped (server-edge/demo/business.sql): the uuid names a row of each user's own.
    let mut owners: Vec<String> =
        w.db.query(
            "SELECT owner_id || ':' || name FROM business.users WHERE id = $1::text::uuid",
            &[&shared],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    owners.sort();
    let mut expected = vec![
        format!("{}:alice's", user_of(&a)),
        format!("{}:bob reuses the uuid", user_of(&b)),
    ];
    expected.sort();
    assert_eq!(
        owners, expected,
        "bob cannot change alice's business row, and gets his own"
    );
    a.sync().await.unwrap();
    assert_eq!(local_users(&a), vec![(shared, "alice's".into())]);
    for p in [path_a, path_b] {
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test]
async fn complex_multi_batch() {
    let w = world(|_| {}).await;
    let username = name();
    let mut phone = guest(&w, |c| c.chunk_size = 50);
    sign_in(&w, &mut phone, &username).await;
    let user = user_of(&phone);
    let users: Vec<String> = (0..60).map(|_| id()).collect();
    let mut posts: Vec<(String, usize)> = Vec::new();
    {
        let tx = phone.conn().unchecked_transaction().unwrap();
        for (i, u) in users.iter().enumerate() {
            for _ in 0..2 {
                let p = id();
                tx.execute(
                    "INSERT INTO posts (id, title, content, author_id) VALUES (?1, 't', 'c', ?2)",
                    [&p, u],
                )
                .unwrap();
                posts.push((p, i));
            }
            tx.execute("INSERT INTO users (id, name, email) VALUES (?1, 'v0', 'e')", [u])
                .unwrap();
        }
        for round in 1..=4 {
            for u in &users[..30] {
                tx.execute(
                    "UPDATE users SET name = ?2 WHERE id = ?1",
                    [u.as_str(), &format!("v{round}")],
                )
                .unwrap();
            }
        }
        for (p, i) in &posts {
            if *i >= 50 {
                tx.execute("DELETE FROM posts WHERE id = ?1", [p]).unwrap();
            }
        }
        for u in &users[50..] {
            tx.execute("DELETE FROM users WHERE id = ?1", [u]).unwrap();
        }
        tx.commit().unwrap();
    }
    assert_eq!(pending(&phone), 150);
    phone.sync().await.unwrap();
    assert_eq!(pending(&phone), 0);
    assert_eq!(
        (
            server_count(&w, &user, "users").await,
            server_count(&w, &user, "posts").await
        ),
        (50, 100)
    );
    assert!(local_users(&phone)[..].iter().filter(|(_, n)| n == "v4").count() == 30);

    let mut laptop = guest(&w, |c| c.chunk_size = 50);
    sign_in(&w, &mut laptop, &username).await;
    laptop.hydrate(false).await.unwrap();
    assert_eq!(
        (local_count(&laptop, "users"), local_count(&laptop, "posts")),
        (50, 100)
    );
    {
        let tx = laptop.conn().unchecked_transaction().unwrap();
        for _ in 0..20 {
            let u = id();
            tx.execute("INSERT INTO users (id, name, email) VALUES (?1, 'laptop', 'e')", [&u])
                .unwrap();
            for _ in 0..20 {
                tx.execute(
                    "INSERT INTO posts (id, title, content, author_id) VALUES (?1, 't', 'c', ?2)",
                    [&id(), &u],
                )
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    assert_eq!(pending(&laptop), 420);
    laptop.upload().await.unwrap();
    assert_eq!(
        laptop.download().await.unwrap(),
        0,
        "its own changes are not applied back"
    );
    assert_eq!(phone.download().await.unwrap(), 420);
    for d in [&phone, &laptop] {
        assert_eq!((local_count(d, "users"), local_count(d, "posts")), (70, 500));
    }

    // Reinstall the phone with its device id: the same rows, and scids above every one it used.
    let used: i64 =
        w.db.query_one(
            "SELECT max(source_change_id) FROM sync.server_change_log WHERE user_id = $1 AND source_id = $2",
            &[&user, &phone.source_id().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    let device_id = phone.source_id().unwrap();
    let mut again = guest(&w, |c| c.device_id = Some(device_id.clone()));
    sign_in(&w, &mut again, &username).await;
    again.hydrate(true).await.unwrap();
    assert_eq!((local_count(&again, "users"), local_count(&again, "posts")), (70, 500));
    let next: i64 = again
        .conn()
        .query_row("SELECT next_change_id FROM _sync_client_info", [], |r| r.get(0))
        .unwrap();
    assert!(next > used, "next scid {next} must be above {used}");
}

#[tokio::test]
async fn multi_device_complex_sequence() {
    let w = world(|_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    let [a1, a2, a3, b1, b2, b3] = std::array::from_fn(|_| id());
    macro_rules! step {
        ($d:expr, $body:expr) => {{
            $body;
            $d.sync().await.unwrap();
        }};
    }
    step!(d1, {
        add_user(&d1, &a1, "A1");
        add_user(&d1, &a2, "A2");
        add_user(&d1, &a3, "A3");
    });
    step!(d2, {
        add_user(&d2, &b1, "B1");
        add_user(&d2, &b2, "B2");
    });
    step!(d1, rename_user(&d1, &a2, "A2 updated"));
    step!(d2, delete_row(&d2, "users", &a1));
    step!(d1, add_user(&d1, &b3, "B3"));
    step!(d2, rename_user(&d2, &b2, "B2 updated"));
    step!(d1, {
        delete_row(&d1, "users", &a3);
        add_user(&d1, &a3, "A3 again");
        rename_user(&d1, &a3, "A3 again updated");
    });
    for _ in 0..2 {
        d1.sync().await.unwrap();
        d2.sync().await.unwrap();
    }
    let mut want = vec![
        (a2, "A2 updated".to_owned()),
        (a3, "A3 again updated".to_owned()),
        (b1, "B1".to_owned()),
        (b2, "B2 updated".to_owned()),
        (b3, "B3".to_owned()),
    ];
    want.sort();
    assert_eq!(local_users(&d1), want);
    assert_eq!(local_users(&d2), want);
    assert_eq!(server_users(&w, &user_of(&d1)).await, want);
}

/// Snapshot pages are written in multi-row statements, chunked by table and payload columns: more rows than a
/// chunk, two tables, rows whose payloads lack columns (uploaded by another client) in between, and rows
/// updated since their insert — all must arrive with their values and versions.
#[tokio::test]
async fn snapshot_hydration_writes_every_row_across_chunks_and_column_sets() {
    let w = world(|_| {}).await;
    let username = name();
    let mut old = device(&w, &username).await;
    let users: Vec<String> = (0..150).map(|_| id()).collect();
    for (i, u) in users.iter().enumerate() {
        add_user(&old, u, &format!("u{i}"));
        add_post(&old, &id(), u, &format!("p{i}"));
    }
    old.sync().await.unwrap();
    for u in users.iter().step_by(7) {
        rename_user(&old, u, &format!("renamed {u}"));
    }
    old.sync().await.unwrap();
    // Another client's users without the optional columns.
    let sparse: Vec<String> = (0..5).map(|_| id()).collect();
    upload_bare_users(&w.base, &username, &sparse, "sparse").await;
    old.sync().await.unwrap();

    let mut new = device(&w, &username).await;
    new.hydrate(false).await.unwrap();
    assert_eq!(local_users(&new), local_users(&old));
    assert_eq!(local_count(&new, "users"), 155);
    assert_eq!(local_count(&new, "posts"), 150);
    let posts = |d: &Device| -> Vec<(String, String, String)> {
        let mut stmt = d
            .conn()
            .prepare("SELECT id, title, author_id FROM posts ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(posts(&new), posts(&old));
    let meta = |d: &Device| -> Vec<(String, String, i64, i64)> {
        let mut stmt = d
            .conn()
            .prepare("SELECT table_name, pk_uuid, server_version, deleted FROM _sync_row_meta ORDER BY 1, 2")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(meta(&new), meta(&old));
    assert_eq!(meta(&new).iter().filter(|m| m.2 == 2).count(), users.len().div_ceil(7));
    let sparse_row: (String, Option<i64>) = new
        .conn()
        .query_row("SELECT name, created_at FROM users WHERE id = ?1", [&sparse[0]], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(sparse_row, ("sparse 0".to_owned(), None));
    assert_eq!(pending(&new), 0);
}
