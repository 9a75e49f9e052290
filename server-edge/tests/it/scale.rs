//! §9.3 scale: large payloads, paging many changes, concurrent clients.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn an_85_kb_payload_uploads_and_downloads() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let pk = id();
    let big = "lorem ipsum ".repeat(85 * 1024 / 12);
    let started = Instant::now();
    let r = a
        .upload(vec![upsert(
            1,
            "posts",
            &pk,
            0,
            json!({"id": pk, "title": "big", "content": big, "author_id": null}),
        )])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    let entries = b.download_all("").await;
    let payload: Value = serde_json::from_str(entries[0].payload.as_ref().expect("a payload").get()).unwrap();
    assert_eq!(payload["content"].as_str().map(str::len), Some(big.len()));
    // §9.3 bound; generous for a loaded CI machine, and far above what it takes here.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn five_hundred_changes_page_through_in_order() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    for chunk in 0..3 {
        let changes: Vec<Value> = (0..200)
            .map(|i| {
                let pk = id();
                upsert(chunk * 200 + i + 1, "users", &pk, 0, user_row(&pk, "bulk"))
            })
            .take(if chunk == 2 { 100 } else { 200 })
            .collect();
        let r = a.upload(changes).await;
        assert!(all_applied(&r));
    }
    let started = Instant::now();
    let seen: Vec<i64> = b
        .download_pages(50, "")
        .await
        .iter()
        .flat_map(|p| p.changes.iter().map(|c| c.server_id))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(seen.len(), 500);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert!(500.0 / elapsed > 10.0, "paged at {:.0} changes/s", 500.0 / elapsed);
}

#[tokio::test]
async fn concurrent_clients_get_distinct_ordered_server_ids() {
    let t = target();
    let users: Vec<String> = (0..6).map(|_| new_user()).collect();
    let tasks: Vec<_> = users
        .iter()
        .map(|u| {
            let d = Device::new(&t, u, "d");
            tokio::spawn(async move {
                for i in 0..5 {
                    let changes: Vec<Value> = (0..10)
                        .map(|j| {
                            let pk = id();
                            upsert(i * 10 + j + 1, "users", &pk, 0, user_row(&pk, "c"))
                        })
                        .collect();
                    d.upload(changes).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut all = Vec::new();
    for u in &users {
        let ids: Vec<i64> = Device::new(&t, u, "reader")
            .download_all("")
            .await
            .iter()
            .map(|e| e.server_id)
            .collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        all.extend(ids);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 300, "server ids are distinct across users");
}
