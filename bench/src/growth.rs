//! Growth: P1 and P2 for a user whose log already holds 10k, 100k and 1M rows (cost must not grow with
//! history), and a device whose own changes fill the download window (PROTOCOL.md §6.6: `next_after` jumps).

use std::time::Instant;

use serde_json::{Value, json};

use crate::api::{Env, batch, download_all, token, upload_batches};

/// Appends `rows` history rows for `user` straight into the log (what years of use leave behind).
async fn seed(db_url: &str, user: &str, from: i64, rows: i64) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO sync.server_change_log
               (user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version)
             SELECT $1, 'business', 'users', 'INSERT', gen_random_uuid(),
                    json_build_object('name', 'user ' || g, 'email', 'e'), 'history', g, 1
             FROM generate_series($2::int8 + 1, $2::int8 + $3::int8) g",
            &[&user, &from, &rows],
        )
        .await?;
    client.batch_execute("ANALYZE sync.server_change_log").await?;
    Ok(())
}

/// One row per history size: upload changes/s, tail-download rows/s, and the own-window download.
pub async fn growth(env: &Env, sizes: &[i64], batches: usize) -> anyhow::Result<Vec<Value>> {
    let name = format!("hist{}", uuid::Uuid::new_v4().simple());
    let user = format!("user-{name}");
    let mut have = 0;
    let mut out = Vec::new();
    for (round, &size) in sizes.iter().enumerate() {
        eprintln!("growth: {size} rows of history…");
        seed(&env.db_url, &user, have, size - have).await?;
        have = size;
        // P1: a device uploads `batches` batches on top of the history.
        let device = format!("writer{round}");
        let cursor = latest(env, &name).await?;
        let plan: Vec<Value> = (0..batches).map(|b| batch(1 + b as i64 * 200)).collect();
        let started = Instant::now();
        upload_batches(env, &name, &device, &plan).await?;
        let upload = (batches * 200) as f64 / started.elapsed().as_secs_f64();
        // P2: another device downloads just those (the tail of a long log).
        let reader = token(env, &name, &format!("reader{round}")).await?;
        let started = Instant::now();
        let (rows, _) = download_all(env, &reader, cursor, false).await?;
        let download = rows as f64 / started.elapsed().as_secs_f64();
        // §6.6: the writer itself pages a window holding only its own changes.
        let writer = token(env, &name, &device).await?;
        let started = Instant::now();
        let (own_rows, requests) = download_all(env, &writer, cursor, false).await?;
        let own_ms = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(own_rows == 0, "the writer downloaded {own_rows} of its own changes");
        out.push(json!({
            "history_rows": size, "upload_changes_per_s": upload, "download_rows": rows, "download_rows_per_s": download,
            "own_window_requests": requests, "own_window_ms": own_ms,
        }));
    }
    Ok(out)
}

async fn latest(env: &Env, name: &str) -> anyhow::Result<i64> {
    let (client, conn) = tokio_postgres::connect(&env.db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT coalesce(max(server_id), 0) FROM sync.server_change_log WHERE user_id = $1",
            &[&format!("user-{name}")],
        )
        .await?;
    Ok(row.get(0))
}
