//! Load: 50 devices (5 users × 10) each write 1000 rows and sync concurrently against the real server, while a
//! paging reader per user downloads. Nothing is lost or duplicated, no reader skips a `server_id`, and the
//! server never holds more PostgreSQL connections than its pool. Bounded: 50,000 changes on loopback.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use futures_util::future::join_all;
use serde_json::Value;

use crate::support::*;

const USERS: usize = 5;
const DEVICES_PER_USER: usize = 10;
const ROWS_PER_DEVICE: usize = 1000;
const POOL: usize = 8;

/// Pages every window of `user`'s log as a device that writes nothing, until `done` and drained.
async fn reader(base: String, token: String, done: Arc<AtomicBool>) -> Vec<i64> {
    let http = reqwest::Client::new();
    let (mut after, mut until, mut seen) = (0_i64, 0_i64, Vec::new());
    loop {
        let page: Value = http
            .get(format!("{base}/sync/download?after={after}&limit=500&until={until}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["server_id"].as_i64().unwrap()),
        );
        after = page["next_after"].as_i64().unwrap();
        let more = page["has_more"].as_bool().unwrap();
        until = if more {
            page["window_until"].as_i64().unwrap()
        } else {
            0
        };
        if !more {
            if done.load(Ordering::SeqCst) {
                // One last full pass after the writers finished.
                let last: Value = http
                    .get(format!("{base}/sync/download?after={after}&limit=1"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if last["changes"].as_array().unwrap().is_empty() {
                    return seen;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn sign_in_token(w: &World, username: &str, device: &str) -> (String, String) {
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/signin", w.base))
        .body(serde_json::json!({"username": username, "device_id": device}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        resp["user_id"].as_str().unwrap().to_owned(),
        resp["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_devices_times_a_thousand_changes_lose_nothing() {
    let w = world(|c| c.pool_size = POOL).await;
    let usernames: Vec<String> = (0..USERS).map(|_| name()).collect();
    let mut devices = Vec::new();
    for u in &usernames {
        for _ in 0..DEVICES_PER_USER {
            let d = device(&w, u).await;
            {
                let tx = d.conn().unchecked_transaction().unwrap();
                for i in 0..ROWS_PER_DEVICE {
                    tx.execute(
                        "INSERT INTO users (id, name, email) VALUES (?1, ?2, 'e')",
                        [&id(), &format!("r{i}")],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
            }
            devices.push(d);
        }
    }
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut user_ids = Vec::new();
    for u in &usernames {
        let (user_id, token) = sign_in_token(&w, u, "paging-reader").await;
        user_ids.push(user_id);
        readers.push(tokio::spawn(reader(w.base.clone(), token, done.clone())));
    }
    // Connection watcher: the most server connections to this database seen during the load (the server's one
    // LISTEN connection for watch wake-ups is outside the pool and not counted).
    let peak = Arc::new(AtomicI64::new(0));
    let watcher = {
        let (peak, done, url) = (peak.clone(), done.clone(), w.db_url.clone());
        tokio::spawn(async move {
            let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            while !done.load(Ordering::SeqCst) {
                let n: i64 = db
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
                         AND application_name <> 'oversync-listen'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        })
    };
    // Ten devices of one user upload at once: past the server's per-user share (2 in flight) they are refused
    // with 429 + Retry-After and, as the sync cycle does, try again after it. Pending and server counts below
    // prove every row arrived exactly once.
    let results = join_all(devices.iter_mut().map(|d| async move {
        let mut refusals = 0;
        loop {
            match d.upload().await {
                Ok(report) => return (report, refusals),
                Err(e) if e.is_overload() => {
                    refusals += 1;
                    tokio::time::sleep(e.retry_after().expect("a 429 or 503 says when to come back")).await;
                }
                Err(e) => panic!("upload failed: {e:?}"),
            }
        }
    }))
    .await;
    done.store(true, Ordering::SeqCst);
    let refused: usize = results.iter().map(|(_, refusals)| refusals).sum();
    assert!(
        refused > 0,
        "ten concurrent devices of one user meet the per-user share"
    );
    assert!(results.iter().all(|(last, _)| last.applied <= ROWS_PER_DEVICE));
    watcher.await.unwrap();
    for d in &devices {
        assert_eq!(pending(d), 0);
    }
    for (user_id, reader) in user_ids.iter().zip(readers) {
        let seen = reader.await.unwrap();
        assert!(seen.windows(2).all(|p| p[0] < p[1]), "in order, no repeats");
        let logged: BTreeSet<i64> =
            w.db.query(
                "SELECT server_id FROM sync.server_change_log WHERE user_id = $1",
                &[user_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(logged.len(), DEVICES_PER_USER * ROWS_PER_DEVICE, "0 lost, 0 duplicated");
        assert_eq!(
            seen.into_iter().collect::<BTreeSet<_>>(),
            logged,
            "the reader skipped no server_id"
        );
        assert_eq!(
            server_count(&w, user_id, "users").await,
            (DEVICES_PER_USER * ROWS_PER_DEVICE) as i64
        );
    }
    // The pool bounds the server's connections (the harness's own connection is excluded... except the world's).
    assert!(
        peak.load(Ordering::SeqCst) <= POOL as i64 + 1,
        "peak connections {}",
        peak.load(Ordering::SeqCst)
    );
}
