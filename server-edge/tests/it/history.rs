//! Cost must not grow with a user's history (issue: benchmarks, "growth"), whatever the planner's statistics
//! say. The classic failure: statistics gathered before a heavy user existed estimate that user's rows at one, so
//! lookups by key are planned as scans over all of the user's rows. Measured in buffers touched per statement
//! (`pg_stat_statements`), which do not depend on the machine's speed.

use crate::support::*;

/// Rows of history the heavy user gets behind the planner's back.
const HISTORY: i64 = 300_000;

/// The most buffers any one statement of an upload, a download or a snapshot page may touch. Writing or probing a
/// few hundred keys costs a few blocks each (≤ ~1,700 here); scanning the user's rows in any of the three tables
/// costs over 6,000.
const MAX_BLOCKS: i64 = 3_000;

/// A server on a database of its own whose statements are tracked nested too (`pg_stat_statements.track = all`):
/// an upload is one call of a function per round trip, and the statements inside it are what must stay bounded.
async fn history_target(settings: &str) -> Target {
    let db_url = oversync_tests::pg::database("oversync_history").expect("database");
    let (conn, task) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(task);
    conn.batch_execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pg_stat_statements.track = ''all''', current_database()); END $$",
    )
    .await
    .unwrap();
    drop(conn);
    let _ = task.await;
    let server = start_server(&db_url, settings);
    Target {
        base: server.base_url.clone(),
        db_url,
        _server: Some(server),
    }
}

/// A database whose statistics know only one small user (the device returned, with two changes), with autovacuum
/// off so that they stay that way, and `pg_stat_statements` on.
async fn stale_statistics(t: &Target) -> (tokio_postgres::Client, Device) {
    let conn = db(t).await;
    if let Err(e) = conn
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
    {
        panic!("pg_stat_statements is unavailable ({e}); the harness's own cluster preloads it");
    }
    let other = Device::new(t, &new_user(), "o");
    other.upload(users(2, 1)).await;
    conn.batch_execute(
        "ALTER TABLE sync.server_change_log SET (autovacuum_enabled = false);
         ALTER TABLE sync.sync_row_meta SET (autovacuum_enabled = false);
         ALTER TABLE sync.sync_state SET (autovacuum_enabled = false);
         ANALYZE sync.server_change_log, sync.sync_row_meta, sync.sync_state;",
    )
    .await
    .unwrap();
    (conn, other)
}

/// The `user_id` of the log rows that device `source` uploaded.
async fn user_id_of(conn: &tokio_postgres::Client, source: &str) -> String {
    conn.query_one(
        "SELECT user_id FROM sync.server_change_log WHERE source_id = $1 LIMIT 1",
        &[&source],
    )
    .await
    .unwrap()
    .get(0)
}

async fn reset_statements(conn: &tokio_postgres::Client) {
    conn.execute(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
        &[],
    )
    .await
    .unwrap();
}

/// Buffers touched per call by each statement since the reset, costliest first (the statement's first 160
/// characters).
async fn costly_statements(conn: &tokio_postgres::Client) -> Vec<(String, i64)> {
    conn.query(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 160),
                ((shared_blks_hit + shared_blks_read) / greatest(calls, 1))::int8
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat_statements%'
           -- Calls of the upload's functions sum the buffers of the statements inside them, counted on their own.
           AND query NOT LIKE 'SELECT * FROM sync.upload_%'
         ORDER BY 2 DESC",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn uploads_downloads_and_snapshots_stay_bounded_with_stale_statistics() {
    let t = history_target("").await;
    let (conn, _) = stale_statistics(&t).await;

    // The heavy user: a first upload through the API, then a long history written directly.
    let user = new_user();
    let (d, e) = (Device::new(&t, &user, "d"), Device::new(&t, &user, "e"));
    d.upload(users(2, 1)).await;
    let user_id = user_id_of(&conn, "d").await;
    conn.execute(
        "WITH h AS (SELECT g, gen_random_uuid() AS pk FROM generate_series(1, $2::int8) g),
         log AS (INSERT INTO sync.server_change_log
                   (user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version)
                 SELECT $1, 'business', 'users', 'INSERT', pk, '{}'::json, 'history', g, 1 FROM h RETURNING 1),
         meta AS (INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version)
                  SELECT $1, 'business', 'users', pk, 1 FROM h RETURNING 1)
         INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
         SELECT $1, 'business', 'users', pk, '{}'::json FROM h",
        &[&user_id, &HISTORY],
    )
    .await
    .unwrap();

    reset_statements(&conn).await;
    let r = d.upload(users(200, 10)).await;
    assert!(all_applied(&r), "{r}");
    let newest = r["highest_server_seq"].as_i64().unwrap();
    let page = e.download(&format!("after={}&limit=100", newest - 150)).await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 100);
    let (status, snapshot) = e.get_raw("/sync/snapshot?schema=business&limit=100").await;
    assert_eq!(status, 200, "{snapshot}");

    let costly = costly_statements(&conn).await;
    assert!(
        costly.first().is_some_and(|(_, blocks)| *blocks <= MAX_BLOCKS),
        "statements touching more than {MAX_BLOCKS} buffers per call with {HISTORY} rows of history: {costly:#?}"
    );
}

/// Other users' changes written before this user's: the new device's first pages must not walk them (the primary
/// key serves `ORDER BY server_id` too, and with the window's end unknown at planning time it looked cheaper), nor
/// read the rest of the window on every page (a bitmap scan and a sort, when the statistics have never seen the
/// user's rows). And a watch of a user whose newest change is older than everyone else's must not walk theirs.
#[tokio::test]
async fn download_pages_stay_bounded_behind_other_users_history() {
    let t = history_target("watch = true").await;
    let (conn, other) = stale_statistics(&t).await;
    let user = new_user();
    let (d, e) = (Device::new(&t, &user, "d"), Device::new(&t, &user, "e"));
    d.upload(users(1, 1)).await;
    let user_id = user_id_of(&conn, "d").await;
    // 200,000 changes of other users, then 100,000 of this user's, all after the first upload's.
    conn.execute(
        "INSERT INTO sync.server_change_log
           (user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version)
         SELECT CASE WHEN g <= 200000 THEN 'someone-' || g % 50 ELSE $1 END, 'business', 'users', 'INSERT',
                gen_random_uuid(), '{}'::json, 'history', g, 1
         FROM generate_series(1, 300000) g",
        &[&user_id],
    )
    .await
    .unwrap();

    reset_statements(&conn).await;
    let first = e.download("after=0&limit=1000").await;
    assert_eq!(first["changes"].as_array().unwrap().len(), 1000);
    assert_eq!(first["has_more"], true);
    let second = e
        .download(&format!(
            "after={}&until={}&limit=1000",
            first["next_after"], first["window_until"]
        ))
        .await;
    assert_eq!(second["changes"].as_array().unwrap().len(), 1000);
    assert_eq!(
        second["changes"][0]["server_id"].as_i64().unwrap(),
        first["next_after"].as_i64().unwrap() + 1
    );
    // More pages on the same connection: from the sixth call on, PL/pgSQL may plan its statement once for any
    // parameters (a generic plan), which must be as bounded as the plans made for the first calls' parameters.
    let mut page = second;
    for _ in 0..8 {
        page = e
            .download(&format!(
                "after={}&until={}&limit=1000",
                page["next_after"], page["window_until"]
            ))
            .await;
        assert_eq!(page["changes"].as_array().unwrap().len(), 1000);
    }

    let (status, quiet) = other.get_raw("/sync/watch?after=0&timeout_s=1").await;
    assert_eq!((status, &quiet["changed"]), (200, &false.into()), "{quiet}");

    // A page or a look costs ~40–70 buffers on a warm connection. Under the Worker every request is a new
    // connection, and the functions' bodies are parsed and planned inside the statement, so its catalogue reads
    // count too: ~450–550. Without the functions' settings a page cost ~3,000 here (a walk of the others' 200,000
    // changes, or the rest of the 100,000-row window read per page).
    let costly = costly_statements(&conn).await;
    assert!(
        costly.first().is_some_and(|(_, blocks)| *blocks <= 1_000),
        "statements touching more than 1,000 buffers per call: {costly:#?}"
    );
}
