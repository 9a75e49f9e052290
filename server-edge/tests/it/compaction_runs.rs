//! Who runs compaction (issue 36, docs/history.md §2): the native server's background task, the Worker's
//! scheduled handler (`wrangler dev --test-scheduled`'s `GET /__scheduled`), and `oversync-server compact`.

use std::process::Command;
use std::time::{Duration, Instant};

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
