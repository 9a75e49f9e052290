//! Start-up schema work (at native start-up, and on the first request of every Worker isolate) never makes
//! uploads wait. `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on its table even when the index exists: it waits
//! for every upload in flight (they hold ROW EXCLUSIVE), and every upload after it queues behind it. So on a
//! complete schema a start-up takes no lock, and DDL it does need gives up after its lock timeout (2 s): a 503 on
//! the Worker, a failed start natively, and the next attempt tries again.

use std::time::Duration;

use crate::support::*;

/// What an upload in flight holds on the tables start-up DDL touches, held by an open transaction until COMMIT.
async fn upload_in_flight(t: &Target) -> tokio_postgres::Client {
    let holder = db(t).await;
    holder
        .batch_execute(
            "BEGIN; LOCK TABLE sync.server_change_log, sync.sync_state, sync.sync_row_meta, business.users,
             business.posts, business.files, business.file_reviews IN ROW EXCLUSIVE MODE",
        )
        .await
        .unwrap();
    holder
}

/// A second server on `t`'s database, started cold (the schema is already there, made by `t`'s server).
async fn second_server(t: &Target) -> anyhow::Result<Target> {
    let db_url = t.db_url.clone();
    let server = tokio::task::spawn_blocking(move || start_cold(&db_url, ""))
        .await
        .unwrap()?;
    Ok(Target {
        base: server.base_url.clone(),
        db_url: t.db_url.clone(),
        _server: Some(server),
    })
}

/// Waits until some session of the database waits for a lock.
async fn until_a_session_waits_for_a_lock(t: &Target) {
    let watcher = db(t).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count(
        &watcher,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        &[],
    )
    .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no start-up ever waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn one_user_row(scid: i64) -> serde_json::Value {
    let pk = id();
    upsert(scid, "users", &pk, 0, user_row(&pk, "n"))
}

#[tokio::test]
async fn a_cold_start_on_a_complete_schema_takes_no_lock_an_upload_in_flight_holds() {
    let t = target_in_own_db("");
    let holder = upload_in_flight(&t).await;
    let b = tokio::time::timeout(Duration::from_secs(120), second_server(&t))
        .await
        .expect("the second server started (no start-up DDL waiting on the held tables)")
        .expect("the second server started");
    let d = Device::new(&b, &new_user(), "d");
    // On the Worker this request is the cold start.
    let within = Duration::from_secs(20);
    let (status, page) = tokio::time::timeout(within, d.download_raw(""))
        .await
        .expect("the first request did not wait for the held tables");
    assert_eq!(status, 200, "{page}");
    let r = tokio::time::timeout(within, d.upload(vec![one_user_row(1)]))
        .await
        .expect("an upload beside the one in flight");
    assert_eq!(status_at(&r, 0), WireStatus::Applied, "{r}");
    holder.batch_execute("COMMIT").await.unwrap();
    let recorded: i64 = count(&db(&t).await, "SELECT count(*) FROM sync.applied_init_sql", &[]).await;
    assert_eq!(recorded, 1, "the start-up SQL ran once, for the first server");
}

#[tokio::test]
async fn start_up_ddl_gives_up_after_its_lock_timeout_and_uploads_do_not_queue_behind_it() {
    let t = target_in_own_db("");
    let user = new_user();
    let a = Device::new(&t, &user, "a");
    // A schema from before the newest page function: a start-up has DDL to run.
    let newest_page = "sync.download_page_v5(text, int8, int8, text, bool, text, int8, int8, int8)";
    db(&t)
        .await
        .batch_execute(&format!("DROP FUNCTION {newest_page}"))
        .await
        .unwrap();
    let holder = upload_in_flight(&t).await;

    let started = std::time::Instant::now();
    let upload_behind = |a: Device| tokio::spawn(async move { a.upload(vec![one_user_row(1)]).await });
    // While the start-up DDL waits for its SHARE lock, an upload asks for ROW EXCLUSIVE and queues behind it; it
    // goes on once the DDL gives up.
    let (second, upload) = if edge() {
        // The Worker starts without the database; its first request runs the DDL.
        let b = second_server(&t).await.expect("wrangler dev started");
        let d = Device::new(&b, &new_user(), "d");
        let first = tokio::spawn(async move { d.download_raw("").await });
        until_a_session_waits_for_a_lock(&t).await;
        let upload = upload_behind(a.clone());
        let (status, body) = tokio::time::timeout(Duration::from_secs(60), first)
            .await
            .expect("the first request gave up instead of waiting for the held table")
            .unwrap();
        assert_eq!((status, body["error"].as_str()), (503, Some("server_busy")), "{body}");
        (Some(b), upload)
    } else {
        let db_url = t.db_url.clone();
        let start = tokio::task::spawn_blocking(move || start_cold(&db_url, ""));
        until_a_session_waits_for_a_lock(&t).await;
        let upload = upload_behind(a.clone());
        let failed = tokio::time::timeout(Duration::from_secs(60), start)
            .await
            .expect("the start-up gave up instead of waiting for the held table")
            .unwrap();
        assert!(failed.is_err(), "the start-up could not have run its DDL");
        (None, upload)
    };
    let r = tokio::time::timeout(Duration::from_secs(20), upload)
        .await
        .expect("an upload did not stay queued behind the start-up DDL")
        .unwrap();
    assert_eq!(status_at(&r, 0), WireStatus::Applied, "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "gave up after {:?}",
        started.elapsed()
    );

    // Once the tables are free, the next attempt runs the DDL.
    holder.batch_execute("COMMIT").await.unwrap();
    let b = match second {
        Some(b) => b,
        None => second_server(&t).await.expect("the next start-up"),
    };
    let d = Device::new(&b, &user, "d");
    let page = d.download("").await;
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(1), "{page}");
    let back: bool = db(&t)
        .await
        .query_one(&format!("SELECT to_regprocedure('{newest_page}') IS NOT NULL"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(back, "the page function was created again");
}
