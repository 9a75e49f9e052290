//! Pushed wake-ups for `/sync/watch` (issue 21, native): every commit to the change log notifies, one `LISTEN`
//! connection per server hears it, and waiters are told without looking at the log again. The server reaches
//! PostgreSQL through a byte-counting proxy, so "idle waiters cost the database nothing" is measured, not
//! assumed. (The Worker has no push source yet: its waiters poll, covered by `watch.rs` on both front doors.)

use std::time::{Duration, Instant};

use oversync_tests::counting::CountingProxy;
use serde_json::{Value, json};

use crate::support::*;

/// Waiters of one user, each its own device.
const WAITERS: usize = 50;

async fn watch(d: &Device, after: i64) -> Value {
    let r = d
        .http
        .get(format!("{}/sync/watch?after={after}&timeout_s=15", d.base))
        .bearer_auth(&d.token)
        .send()
        .await
        .expect("watch");
    read(r).await.1
}

/// A server of its own on a database of its own, reached through a counting proxy.
async fn pushed_server() -> (CountingProxy, Target, oversync_tests::process::Server) {
    proxied_server("oversync_push", "watch = true\nmax_watches_per_user = 0").await
}

/// Waits until the proxy has seen no bytes for `quiet` (at most 10 s: a server that never goes quiet then fails
/// the idle check that follows).
async fn settle(proxy: &CountingProxy, quiet: Duration) {
    let mut last = proxy.sent();
    for _ in 0..(10_000 / quiet.as_millis().max(1)) {
        tokio::time::sleep(quiet).await;
        let now = proxy.sent();
        if now == last {
            return;
        }
        last = now;
    }
}

fn waiters(t: &Target, user: &str, after: i64) -> Vec<tokio::task::JoinHandle<Value>> {
    (0..WAITERS)
        .map(|i| {
            let d = Device::new(t, user, &format!("tab-{i}"));
            tokio::spawn(async move { watch(&d, after).await })
        })
        .collect()
}

async fn listener_pid(t: &Target) -> Option<i32> {
    db(t)
        .await
        .query_opt("SELECT pid FROM pg_stat_activity WHERE application_name = 'oversync-listen' AND datname = current_database()", &[])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test]
async fn idle_waiters_cost_the_database_nothing_and_one_commit_wakes_them_all() {
    if edge() {
        return;
    }
    let (proxy, t, _server) = pushed_server().await;
    let user = new_user();
    let writer = Device::new(&t, &user, "writer");
    let waiting = waiters(&t, &user, 0);
    // Each waiter looks at the log once when it starts; then nothing.
    settle(&proxy, Duration::from_millis(500)).await;
    let before = proxy.sent();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        proxy.sent() - before,
        0,
        "{WAITERS} idle waiters sent bytes to PostgreSQL"
    );

    let pk = id();
    let started = Instant::now();
    let resp = writer
        .upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "w"))])
        .await;
    let top = resp["highest_server_seq"].as_i64().unwrap();
    for w in waiting {
        assert_eq!(w.await.unwrap(), json!({"changed": true, "latest_server_id": top}));
    }
    eprintln!(
        "push: {WAITERS} waiters told {} ms after the upload began",
        started.elapsed().as_millis()
    );
}

#[tokio::test]
async fn a_killed_listen_connection_reconnects_and_nothing_committed_meanwhile_is_missed() {
    if edge() {
        return;
    }
    let (proxy, t, _server) = pushed_server().await;
    let user = new_user();
    let writer = Device::new(&t, &user, "writer");
    let pid = listener_pid(&t).await.expect("the server listens");
    let waiting = waiters(&t, &user, 0);
    settle(&proxy, Duration::from_millis(300)).await;
    // The listener dies; a commit lands before (or while) it is back.
    db(&t)
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let pk = id();
    let top = writer
        .upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "w"))])
        .await["highest_server_seq"]
        .as_i64()
        .unwrap();
    for w in waiting {
        let got = w.await.unwrap();
        // Told of the commit, or ended early while the hub was down (the client watches again and looks).
        assert!(
            got == json!({"changed": true, "latest_server_id": top}) || got["changed"] == false,
            "{got}"
        );
    }
    // Reconnected: a new listener, and pushes work (and cost nothing idle) again.
    let mut back = None;
    for _ in 0..100 {
        back = listener_pid(&t).await.filter(|p| *p != pid);
        if back.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back.is_some(), "the LISTEN connection came back");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = waiters(&t, &user, top);
    settle(&proxy, Duration::from_millis(500)).await;
    let before = proxy.sent();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(proxy.sent() - before, 0, "idle again after the reconnect");
    let pk = id();
    let top2 = writer
        .upload(vec![upsert(2, "users", &pk, 0, user_row(&pk, "w2"))])
        .await["highest_server_seq"]
        .as_i64()
        .unwrap();
    for w in waiting {
        assert_eq!(w.await.unwrap(), json!({"changed": true, "latest_server_id": top2}));
    }
}

#[tokio::test]
async fn streams_outlive_a_killed_listen_connection_and_are_told_what_committed_meanwhile() {
    if edge() {
        return;
    }
    let (proxy, t, _server) = pushed_server().await;
    let user = new_user();
    let writer = Device::new(&t, &user, "writer");
    let pid = listener_pid(&t).await.expect("the server listens");
    let mut streams = Vec::new();
    for i in 0..5 {
        let device = format!("tab-{i}");
        let mut ws = crate::stream::open(&t, &crate::stream::token(&user, &device), &device).await;
        assert_eq!(crate::stream::next_top(&mut ws).await, 0);
        streams.push(ws);
    }
    db(&t)
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let pk = id();
    let top = writer
        .upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "w"))])
        .await["highest_server_seq"]
        .as_i64()
        .unwrap();
    // Pushed, polled while the hub was down, or looked up on the resync after the reconnect: told either way,
    // and the streams stay open.
    for ws in &mut streams {
        assert_eq!(crate::stream::next_top(ws).await, top);
    }
    let mut back = None;
    for _ in 0..100 {
        back = listener_pid(&t).await.filter(|p| *p != pid);
        if back.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back.is_some(), "the LISTEN connection came back");
    settle(&proxy, Duration::from_millis(1500)).await;
    let before = proxy.sent();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(proxy.sent() - before, 0, "open streams idle again after the reconnect");
    let pk = id();
    let top2 = writer
        .upload(vec![upsert(2, "users", &pk, 0, user_row(&pk, "w2"))])
        .await["highest_server_seq"]
        .as_i64()
        .unwrap();
    for ws in &mut streams {
        assert_eq!(crate::stream::next_top(ws).await, top2);
    }
}
