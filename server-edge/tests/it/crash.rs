//! The native server killed with SIGKILL in the middle of uploads: nothing is half-applied, and once a server is
//! back the clients' re-sends apply every change exactly once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::support::*;

const DEVICES: usize = 4;
const BATCHES: usize = 25;
const PER_BATCH: usize = 40;

/// Sends `batches[from..]` in order; returns the index of the first batch that got no 200 (or `len`).
async fn send_from(d: &Device, batches: &[Value], from: usize) -> usize {
    for (i, b) in batches.iter().enumerate().skip(from) {
        let Some((200, resp)) = d.try_upload_raw(b.to_string()).await else {
            return i;
        };
        assert!(all_applied(&resp), "{resp}");
    }
    batches.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_upload_leaves_nothing_half_applied() {
    // Process crashes are a property of the native binary; tests/run skips this test for the edge target.
    assert!(
        !edge(),
        "run the crash test against the native binary (OVERSYNC_TEST_TARGET=native)"
    );
    let db_url = oversync_tests::pg::database("oversync_crash").expect("database");
    let first = start_server(&db_url, "");
    let user = new_user();
    let mut plans = Vec::new();
    for dev in 0..DEVICES {
        let batches: Vec<Value> = (0..BATCHES)
            .map(|b| {
                let changes: Vec<Value> = (0..PER_BATCH)
                    .map(|i| {
                        let pk = id();
                        upsert(
                            (b * PER_BATCH + i + 1) as i64,
                            "users",
                            &pk,
                            0,
                            user_row(&pk, &format!("d{dev}")),
                        )
                    })
                    .collect();
                serde_json::json!({ "changes": changes })
            })
            .collect();
        plans.push(Arc::new(batches));
    }
    let target = Target {
        base: first.base_url.clone(),
        db_url: db_url.clone(),
        _server: None,
    };
    let progress = Arc::new(Mutex::new(vec![0usize; DEVICES]));
    let tasks: Vec<_> = (0..DEVICES)
        .map(|dev| {
            let d = Device::new(&target, &user, &format!("device-{dev}"));
            let (plan, progress) = (plans[dev].clone(), progress.clone());
            tokio::spawn(async move {
                let stopped = send_from(&d, &plan, 0).await;
                progress.lock().await[dev] = stopped;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    first.kill_hard().expect("kill the server");
    for t in tasks {
        t.await.unwrap();
    }
    let stopped = progress.lock().await.clone();
    assert!(
        stopped.iter().any(|&s| s < BATCHES),
        "the crash happened mid-run: {stopped:?}"
    );

    // Nothing half-applied: every log row has its metadata and state, and each batch is all or nothing.
    let conn = db(&target).await;
    let orphans: i64 = count(
        &conn,
        "SELECT count(*) FROM sync.server_change_log l LEFT JOIN sync.sync_state s
               ON s.user_id = l.user_id AND s.table_name = l.table_name AND s.pk_uuid = l.pk_uuid
             WHERE l.user_id = $1 AND s.pk_uuid IS NULL",
        &[&user],
    )
    .await;
    assert_eq!(orphans, 0);
    let per_device = conn
        .query(
            "SELECT count(*) FROM sync.server_change_log WHERE user_id = $1 GROUP BY source_id",
            &[&user],
        )
        .await
        .unwrap();
    for r in per_device {
        assert_eq!(
            r.get::<_, i64>(0) % PER_BATCH as i64,
            0,
            "a batch was applied partially"
        );
    }

    // A new server on the same database; clients re-send from where they stopped (replays included).
    let second = start_server(&db_url, "");
    let target = Target {
        base: second.base_url.clone(),
        db_url: db_url.clone(),
        _server: None,
    };
    for dev in 0..DEVICES {
        let d = Device::new(&target, &user, &format!("device-{dev}"));
        assert_eq!(send_from(&d, &plans[dev], stopped[dev]).await, BATCHES);
    }
    let logged: i64 = count(
        &conn,
        "SELECT count(*) FROM sync.server_change_log WHERE user_id = $1",
        &[&user],
    )
    .await;
    assert_eq!(
        logged,
        (DEVICES * BATCHES * PER_BATCH) as i64,
        "every change exactly once"
    );
}
