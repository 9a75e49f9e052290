//! §9.2 case 9: several devices of one user upload concurrently while a peer pages downloads; the peer sees every
//! `server_id` exactly once, in order.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn a_paging_peer_sees_every_server_id_exactly_once_in_order() {
    // Without the per-user share, the four writers' transactions really meet at the advisory lock.
    let t = target_with("no_user_share", "max_uploads_per_user = 0");
    let user = new_user();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let d = Device::new(&t, &user, &format!("writer-{w}"));
            tokio::spawn(async move {
                for round in 0..15 {
                    let changes: Vec<Value> = (0..8)
                        .map(|j| {
                            let pk = id();
                            upsert(round * 8 + j + 1, "users", &pk, 0, user_row(&pk, "w"))
                        })
                        .collect();
                    let r = d.upload(changes).await;
                    assert!(all_applied(&r));
                }
            })
        })
        .collect();
    let peer = Device::new(&t, &user, "peer");
    let seen = page_while_writing(&peer, "", 7, || writers.iter().all(|w| w.is_finished())).await;
    for w in writers {
        w.await.unwrap();
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    let logged: BTreeSet<i64> = db(&t)
        .await
        .query(
            "SELECT server_id FROM sync.server_change_log WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logged.len(), 4 * 15 * 8);
    assert_eq!(
        seen.into_iter().collect::<BTreeSet<_>>(),
        logged,
        "no server_id skipped"
    );
}

/// Issue 24: an upload reads without the lock and its write checks that nothing it read has changed. Twelve devices
/// of one user racing on one row: exactly one applies, every other one is a conflict against the version that
/// won (a stale read that slipped through would apply twice, or conflict against version 0).
#[tokio::test]
async fn devices_racing_on_one_row_give_one_applied_change_and_conflicts_against_it() {
    let t = target_with("no_user_share", "max_uploads_per_user = 0");
    let user = new_user();
    let pk = id();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let d = Device::new(&t, &user, &format!("racer-{i}"));
            let pk = pk.clone();
            tokio::spawn(async move { d.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "r"))]).await })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match status_at(&r, 0) {
            WireStatus::Applied => applied += 1,
            WireStatus::Conflict => assert_eq!(r["statuses"][0]["server_row"]["server_version"], 1, "{r}"),
            other => panic!("{other:?}: {r}"),
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(log_rows(&t, &user).await, 1);
}

/// The other side of the check: racing devices of one user writing different rows never see each other's writes as
/// a reason to conflict, and every change lands once.
#[tokio::test]
async fn devices_racing_on_different_rows_all_apply() {
    let t = target_with("no_user_share", "max_uploads_per_user = 0");
    let user = new_user();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let d = Device::new(&t, &user, &format!("racer-{i}"));
            tokio::spawn(async move { d.upload(users(20, 1)).await })
        })
        .collect();
    for task in tasks {
        let r = task.await.unwrap();
        assert!(all_applied(&r), "{r}");
    }
    assert_eq!(log_rows(&t, &user).await, 240);
}
