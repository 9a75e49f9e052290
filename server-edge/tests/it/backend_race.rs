//! Backend writes and the cursor (issue 33, PROTOCOL.md §6.6): a backend transaction takes its owners' locks, so
//! one owner's log ids still become visible in commit order, with backend writers, device uploads and paging
//! downloads all at once.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::backend::{BACKEND, backend};
use crate::support::*;

/// A backend transaction holds a row of the user's, logged but not committed (a lower `server_id`), while a device
/// of the user uploads. Without the backend's owner lock the upload commits a higher id first, a download moves its
/// cursor past the backend's id, and that change is never downloaded.
#[tokio::test]
async fn an_upload_waits_for_a_backend_transaction_of_its_owner_so_no_download_skips_it() {
    let t = target();
    let user = new_user();
    let (a, peer) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "peer"));
    let (mut held, conn) = tokio_postgres::connect(&t.db_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let tx = held.transaction().await.unwrap();
    let slow = id();
    tx.batch_execute(&format!(
        "INSERT INTO business.users (owner_id, id, name, email) VALUES ('{user}', '{slow}', 'slow', 's@x')"
    ))
    .await
    .unwrap();
    let fast = id();
    let row = user_row(&fast, "fast");
    let upload = tokio::spawn(async move { a.upload(vec![upsert(1, "users", &fast, 0, row)]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = peer.download("after=0&limit=100").await;
    let upload_done = upload.is_finished();
    tx.commit().await.unwrap();
    assert!(all_applied(&upload.await.unwrap()));
    assert!(
        !upload_done,
        "the upload committed while a backend write of its owner was in flight"
    );
    let rest = peer.download(&format!("after={}&limit=100", first["next_after"])).await;
    let pks: Vec<&str> = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["changes"].as_array().unwrap())
        .map(|e| e["pk"].as_str().unwrap())
        .collect();
    assert_eq!(pks.len(), 2, "{first} {rest}");
    assert_eq!(pks[0], slow, "the backend's row, first in commit order");
}

/// Backend writers (transactions of several rows, moves between two users, deletes), device uploads and paging
/// downloads at once: every change of the owner is seen once and in order, whole transactions at a time, and the
/// devices' view converges with PostgreSQL.
#[tokio::test]
async fn backend_writers_device_uploads_and_paging_downloads_race_and_converge() {
    let t = target();
    let (user, other) = (new_user(), new_user());
    let device = Device::new(&t, &user, "dev");
    let mut writers = Vec::new();
    for w in 0..3 {
        let t = t.clone();
        let (user, other) = (user.clone(), other.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..12 {
                let pks: Vec<String> = (0..4).map(|_| id()).collect();
                let values: Vec<String> = pks
                    .iter()
                    .map(|pk| format!("('{user}', '{pk}', 'w{w}r{round}', 'b@x')"))
                    .collect();
                let mut sql = format!(
                    "BEGIN; INSERT INTO business.users (owner_id, id, name, email) VALUES {};
                     UPDATE business.users SET name = name || '!' WHERE owner_id = '{user}' AND id = '{}';",
                    values.join(", "),
                    pks[0]
                );
                if round % 3 == 0 {
                    sql += &format!(
                        "UPDATE business.users SET owner_id = '{other}' WHERE owner_id = '{user}' AND id = '{}';",
                        pks[1]
                    );
                }
                if round % 4 == 0 {
                    sql += &format!(
                        "DELETE FROM business.users WHERE owner_id = '{user}' AND id = '{}';",
                        pks[2]
                    );
                }
                backend(&t, &(sql + "COMMIT;")).await.unwrap();
            }
        }));
    }
    for w in 0..2 {
        let d = Device::new(&t, &user, &format!("up{w}"));
        writers.push(tokio::spawn(async move {
            for round in 0..12 {
                let r = d.upload(users(4, round * 4 + 1)).await;
                assert!(all_applied(&r), "{r}");
            }
        }));
    }
    let seen = page_while_writing(&device, "", 7, || writers.iter().all(|w| w.is_finished())).await;
    for w in writers {
        w.await.unwrap();
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    let conn = db(&t).await;
    let logged: BTreeSet<i64> = conn
        .query(
            "SELECT server_id FROM sync.server_change_log WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        seen.into_iter().collect::<BTreeSet<_>>(),
        logged,
        "no server_id skipped"
    );

    // What a fresh device of each user hydrates is what PostgreSQL holds.
    for owner in [&user, &other] {
        let fresh = Device::new(&t, owner, "fresh");
        let mut rows = std::collections::BTreeMap::new();
        for e in fresh.download_all("").await {
            match e.payload {
                Some(p) => rows.insert(
                    e.pk.clone(),
                    serde_json::from_str::<serde_json::Value>(p.get()).unwrap()["name"].clone(),
                ),
                None => rows.remove(&e.pk),
            };
        }
        let table: std::collections::BTreeMap<String, serde_json::Value> = conn
            .query(
                "SELECT id::text, name FROM business.users WHERE owner_id = $1",
                &[owner],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), json!(r.get::<_, String>(1))))
            .collect();
        assert_eq!(rows, table, "{owner}");
    }
    let moved = count(
        &conn,
        "SELECT count(*) FROM sync.server_change_log WHERE user_id = $1 AND source_id = $2",
        &[&other, &BACKEND],
    )
    .await;
    assert_eq!(moved, 3 * 4, "every move arrived at the other user");
}
