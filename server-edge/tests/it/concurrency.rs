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
    let mut seen: Vec<i64> = Vec::new();
    let (mut after, mut until) = (0_i64, 0_i64);
    let mut writers_done = false;
    loop {
        let page = peer.download(&format!("after={after}&limit=7&until={until}")).await;
        seen.extend(
            page["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["server_id"].as_i64().unwrap()),
        );
        after = page["next_after"].as_i64().unwrap();
        until = if page["has_more"].as_bool().unwrap() {
            page["window_until"].as_i64().unwrap()
        } else {
            0
        };
        if until == 0 {
            if writers_done {
                break;
            }
            writers_done = writers.iter().all(|w| w.is_finished());
        }
    }
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
