//! The upload path is set-based: a 200-change upload runs exactly as many statements as a 2-change upload.
//! Counted with `pg_stat_statements` on a database of its own.

use crate::support::*;

async fn statements(conn: &tokio_postgres::Client) -> i64 {
    conn.query_one(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_200_change_upload_costs_as_many_statements_as_a_2_change_upload() {
    let t = target_in_own_db("");
    let conn = db(&t).await;
    if let Err(e) = conn
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
    {
        // Only possible with an external DATABASE_URL whose server does not preload the module.
        panic!("pg_stat_statements is unavailable ({e}); the harness's own cluster preloads it");
    }
    let d = Device::new(&t, &new_user(), "d");
    d.upload(users(2, 1)).await; // warm-up: catalogue caches, pool connection

    let before = statements(&conn).await;
    d.upload(users(2, 10)).await;
    let small = statements(&conn).await - before;

    let before = statements(&conn).await;
    let r = d.upload(users(200, 100)).await;
    let large = statements(&conn).await - before;
    assert!(all_applied(&r));
    assert_eq!(
        large, small,
        "statements per upload must not grow with the number of changes ({small} for 2, {large} for 200)"
    );
    // BEGIN, lock (2), snapshot (3), ids, writes (4), materialisation (5 for one table), COMMIT, plus this count.
    assert!(small <= 20, "{small} statements for one upload");
}
