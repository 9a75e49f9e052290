//! The client process killed with SIGKILL while it applies download pages: afterwards the database holds exactly
//! the pages it committed (never half a page), capture is on again, and the download resumes by itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const ROWS: usize = 12_000;

/// Runs in the child process only (started by the test below with `--ignored --exact`): downloads forever.
#[tokio::test]
#[ignore = "helper process for a_client_killed_mid_apply_resumes_cleanly"]
async fn apply_helper() {
    let spec = std::env::var("OVERSYNC_APPLY_HELPER").expect("helper spec");
    let parts: Vec<&str> = spec.split('|').collect();
    let (base, path, user, token) = (parts[0], parts[1], parts[2], parts[3]);
    let mut d = guest_at_via(base, std::path::Path::new(path));
    d.sign_in(user, token.to_owned()).unwrap();
    loop {
        let _ = d.download().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_apply_resumes_cleanly() {
    let w = world(|_| {}).await;
    let username = name();
    let mut writer = device(&w, &username).await;
    {
        let tx = writer.conn().unchecked_transaction().unwrap();
        for i in 0..ROWS {
            tx.execute(
                "INSERT INTO users (id, name, email) VALUES (?1, ?2, 'e')",
                [&id(), &format!("r{i}")],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    writer.sync().await.unwrap();

    let path = temp_db();
    let mut reader = guest_at(&w, &path, |c| c.download_limit = 500);
    let user = sign_in(&w, &mut reader, &username).await;
    let token = reader.token_for_tests();
    drop(reader);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "kill::apply_helper", "--nocapture"])
        .env(
            "OVERSYNC_APPLY_HELPER",
            format!("{}|{}|{user}|{token}", w.base, path.display()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has committed some pages but not all.
    let watch = rusqlite::Connection::open(&path).unwrap();
    watch.busy_timeout(Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cursor: i64 = watch
            .query_row("SELECT last_server_seq_seen FROM _sync_client_info", [], |r| r.get(0))
            .unwrap();
        if cursor > 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(30));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(watch);

    let mut reader = guest_at(&w, &path, |_| {});
    reader.sign_in(&user, token).unwrap();
    let count = |d: &Device, sql: &str| -> i64 { d.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
    let (rows, metas, cursor) = (
        count(&reader, "SELECT count(*) FROM users"),
        count(&reader, "SELECT count(*) FROM _sync_row_meta WHERE deleted = 0"),
        count(&reader, "SELECT last_server_seq_seen FROM _sync_client_info"),
    );
    assert!(rows < ROWS as i64, "killed mid-run ({rows} rows applied)");
    assert_eq!(
        rows, metas,
        "every applied row has its metadata and no metadata lacks its row"
    );
    let upto: i64 =
        w.db.query_one(
            "SELECT count(*) FROM sync.server_change_log WHERE user_id = $1 AND server_id <= $2",
            &[&user, &cursor],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, upto, "exactly the committed pages, never half a page");
    assert_eq!(count(&reader, "SELECT apply_mode FROM _sync_client_info"), 0);
    assert_eq!(
        count(
            &reader,
            "SELECT (SELECT count(*) FROM _sync_pending) + (SELECT count(*) FROM _sync_capture)"
        ),
        0,
        "applying captured nothing"
    );
    reader.download().await.unwrap();
    assert_eq!(local_users(&reader), server_users(&w, &user).await);
    drop(reader);
    let _ = std::fs::remove_file(path);
}
