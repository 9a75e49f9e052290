//! Who runs compaction (issue 36, docs/history.md §2): the native server's background task, the Worker's
//! scheduled handler (`wrangler dev --test-scheduled`'s `GET /__scheduled`), and `oversync-server compact`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// A user with one row written four times: three superseded entries.
async fn rewritten_row(t: &Target) -> String {
    let user = new_user();
    let d = Device::new(t, &user, "d");
    let a = id();
    for v in 0..4 {
        d.upload(vec![upsert(v + 1, "users", &a, v, user_row(&a, &format!("v{v}")))])
            .await;
    }
    assert_eq!(log_rows(t, &user).await, 4);
    user
}

#[tokio::test]
async fn the_servers_own_runner_compacts_on_both_front_doors() {
    let t = target_in_own_db("compact_after_s = 0\ncompact_interval_s = 1");
    let user = rewritten_row(&t).await;
    if edge() {
        let r = reqwest::get(format!("{}/__scheduled?cron=*/5+*+*+*+*", t.base))
            .await
            .unwrap();
        assert!(r.status().is_success(), "the scheduled handler: {}", r.status());
    }
    let began = Instant::now();
    while log_rows(&t, &user).await > 1 {
        assert!(began.elapsed() < Duration::from_secs(30), "nothing was compacted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let receipts = count(
        &db(&t).await,
        "SELECT count(*) FROM sync.upload_receipts WHERE user_id = $1",
        &[&user],
    )
    .await;
    assert_eq!(receipts, 1, "one receipt for the device and row");
}

#[tokio::test]
async fn oversync_server_compact_runs_one_pass_and_prints_what_it_removed() {
    if edge() {
        return; // A native command; the database is the same on both front doors.
    }
    let t = target_in_own_db("");
    let user = rewritten_row(&t).await;
    let config = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compact.toml");
    std::fs::write(
        &config,
        "[[tables]]\nschema = \"business\"\ntable = \"users\"\nowner_column = \"owner_id\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oversync-server"))
        .args(["compact", "--config"])
        .arg(&config)
        .env("DATABASE_URL", &t.db_url)
        .env("JWT_SECRET", SECRET)
        .env("OVERSYNC_COMPACT_AFTER_S", "0")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run oversync-server compact");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 superseded entries removed (1 receipts kept), 0 tombstones removed"),
        "{stdout}"
    );
    assert!(stdout.contains("pass finished"), "{stdout}");
    assert_eq!(log_rows(&t, &user).await, 1);
}

/// A scope's log is an owner like any other (docs/history.md §7): its superseded entries go, its removed
/// tombstones raise its horizon, and a member's scope-aware download below it is refused.
#[tokio::test]
async fn a_scopes_log_is_compacted_and_pruned_like_a_users() {
    let t = target_in_own_db("");
    let team = format!("team-{}", id());
    let (author, member) = (new_user(), new_user());
    join(&t, &team, &author, Some("writer")).await;
    join(&t, &team, &member, Some("reader")).await;
    let (w, r) = (Device::new(&t, &author, "w"), Device::new(&t, &member, "r"));
    let (kept, gone) = (id(), id());
    w.upload(vec![
        team_post(1, &kept, 0, Some(&team), "kept"),
        team_post(2, &gone, 0, Some(&team), "gone"),
    ])
    .await;
    let before = r.download("after=0&limit=100&scopes=1").await;
    let cursor = before["next_after"].as_i64().unwrap();
    w.upload(vec![team_post(3, &kept, 1, Some(&team), "kept 2")]).await;
    w.upload(vec![
        json!({"source_change_id": 4, "schema": "business", "table": "team_posts", "op": "DELETE",
                         "pk": gone, "server_version": 1}),
    ])
    .await;
    w.upload(vec![team_post(5, &kept, 2, Some(&team), "kept 3")]).await;
    let owner = format!("\u{1f}{team}");
    assert_eq!(log_rows(&t, &owner).await, 5);
    assert_eq!(crate::compaction::compact(&t, 0.0, 0.0).await, (3, 1));
    assert_eq!(log_rows(&t, &owner).await, 1);
    let (status, body) = r.download_raw(&format!("after={cursor}&limit=100&scopes=1")).await;
    assert_eq!((status, &body["error"]), (410, &json!("history_pruned")), "{body}");
    let fresh = r.download("after=0&limit=100&scopes=1").await;
    assert_eq!(fresh["changes"].as_array().unwrap().len(), 1, "{fresh}");
    assert_eq!(fresh["changes"][0]["payload"]["title"], "kept 3", "{fresh}");
}
