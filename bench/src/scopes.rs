//! P12, shared data (docs/sharing.md): what a scope-aware download costs a user in 1, 10 and 1,000 scopes, and how
//! fast a device backfills a scope it joins.
//!
//! - Download: 10,000 rows split evenly over the user's scopes, written straight into the log (the measure is the
//!   read); the user's own log is empty, so every row of the stream is a scope's. Two requests per size, each timed alone: the
//!   page at the top (nothing new: the membership read, the shared locks and one top probe per owner) and the first
//!   page of 1,000 rows from cursor 0 (one index range per owner, merged). The classic download of the same
//!   user is the baseline.
//! - Backfill: a scope of 10,000 posts uploaded through the API by one member; a native engine (file database)
//!   that has synced its own rows joins and runs one cycle; rows/s of that cycle.

use std::time::Instant;

use oversync_client::transport::HttpTransport;
use oversync_client::{Engine, EngineConfig, TableConfig};
use serde_json::{Value, json};

use crate::api::{Env, median, percentile, token};

/// The rows of the stream, split evenly over the user's scopes.
const TOTAL_ROWS: usize = 10_000;

/// One line per size: `(scopes, top p50 ms, top p99 ms, first page p50 ms, rows in it)`.
pub type DownloadCost = (usize, f64, f64, f64, usize);

async fn db(env: &Env) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(&env.db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn timed_get(env: &Env, token: &str, query: &str) -> anyhow::Result<(f64, Value)> {
    let started = Instant::now();
    let body = env
        .http
        .get(format!("{}/sync/download?{query}", env.base))
        .bearer_auth(token)
        .send()
        .await?
        .bytes()
        .await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok((ms, serde_json::from_slice(&body)?))
}

/// The download cost of one user in each of `sizes` scopes, `samples` requests per measure; the first line is the
/// classic download of a user with the same rows in its own log (`scopes` = 0).
pub async fn p12_download(env: &Env, sizes: &[usize], samples: usize) -> anyhow::Result<Vec<DownloadCost>> {
    let db = db(env).await?;
    let mut out = Vec::new();
    for &n in std::iter::once(&0).chain(sizes) {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("p12{run}");
        let user = format!("user-{name}");
        let owners: Vec<String> = if n == 0 {
            vec![user.clone()]
        } else {
            (0..n).map(|i| format!("\u{1f}p12-{run}-{i}")).collect()
        };
        let rows_each = TOTAL_ROWS / n.max(1);
        db.execute(
            "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload, source_id,
               source_change_id, server_version)
             SELECT o, 'business', 'team_posts', 'INSERT', gen_random_uuid(), '{\"title\":\"t\"}', '[\"w\",\"d\"]', g, 1
             FROM unnest($1::text[]) AS o, generate_series(1, $2::int4) AS g ORDER BY g, o",
            &[&owners, &(rows_each as i32)],
        )
        .await?;
        if n > 0 {
            db.execute(
                "INSERT INTO sync.scope_members (scope, user_id, role)
                 SELECT substr(o, 2), $2, 'reader' FROM unnest($1::text[]) AS o",
                &[&owners, &user],
            )
            .await?;
        }
        db.execute("ANALYZE sync.server_change_log", &[]).await?;
        let t = token(env, &name, "p12").await?;
        let scoped = if n == 0 { "" } else { "&scopes=1" };
        let (_, first) = timed_get(env, &t, &format!("after=0&limit=1000{scoped}")).await?;
        let top = first["window_until"].as_i64().unwrap_or(0);
        // A device sends the membership event it knows: the list is not repeated on every poll.
        let scoped = match first["scope_event"].as_i64() {
            Some(event) => format!("{scoped}&scope_event={event}"),
            None => scoped.to_owned(),
        };
        let (mut at_top, mut page) = (Vec::new(), Vec::new());
        let mut rows = 0;
        for _ in 0..samples {
            at_top.push(timed_get(env, &t, &format!("after={top}{scoped}")).await?.0);
            let (ms, body) = timed_get(env, &t, &format!("after=0&limit=1000{scoped}")).await?;
            rows = body["changes"].as_array().map_or(0, Vec::len);
            page.push(ms);
        }
        out.push((
            n,
            percentile(at_top.clone(), 0.5),
            percentile(at_top, 0.99),
            median(page),
            rows,
        ));
    }
    Ok(out)
}

/// Rows per second of a native engine's cycle that backfills a newly joined scope of `rows` posts.
pub async fn p12_backfill(env: &Env, rows: usize) -> anyhow::Result<f64> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let scope = format!("p12b-{run}");
    let (writer, reader) = (format!("w{run}"), format!("r{run}"));
    let db = db(env).await?;
    for u in [&writer, &reader] {
        db.execute(
            "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, 'writer')",
            &[&scope, &format!("user-{u}")],
        )
        .await?;
    }
    let t = token(env, &writer, "seed").await?;
    for b in 0..rows.div_ceil(200) {
        let changes: Vec<Value> = (0..200)
            .map(|i| {
                let pk = uuid::Uuid::new_v4().to_string();
                json!({"source_change_id": b * 200 + i + 1, "schema": "business", "table": "team_posts", "op": "INSERT",
                       "pk": pk, "server_version": 0, "payload": {"id": pk, "team_id": scope, "title": "t", "content": "c"}})
            })
            .collect();
        let r = env
            .http
            .post(format!("{}/sync/upload", env.base))
            .bearer_auth(&t)
            .body(json!({ "changes": changes }).to_string())
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "seed upload answered {}", r.status());
    }
    // The reader's device has synced (its own stream, no scope yet) before it joins.
    db.execute(
        "DELETE FROM sync.scope_members WHERE scope = $1 AND user_id = $2",
        &[&scope, &format!("user-{reader}")],
    )
    .await?;
    let dir = std::env::temp_dir().join(format!("oversync-bench-p12-{run}"));
    std::fs::create_dir_all(&dir)?;
    let conn = rusqlite::Connection::open(dir.join("p12.db"))?;
    conn.execute_batch(
        "CREATE TABLE team_posts (id TEXT PRIMARY KEY, team_id TEXT, title TEXT NOT NULL DEFAULT '',
           content TEXT NOT NULL DEFAULT '');",
    )?;
    let cfg = EngineConfig::new("business", vec![TableConfig::scoped("team_posts", "team_id")]);
    let mut engine = Engine::open(conn, cfg, HttpTransport::new(env.base.clone()))?;
    let t = token(env, &reader, &engine.source_id()?).await?;
    engine.sign_in(&format!("user-{reader}"), t)?;
    engine.cycle().await?;
    db.execute(
        "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, 'reader')",
        &[&scope, &format!("user-{reader}")],
    )
    .await?;
    let started = Instant::now();
    engine.sync().await?;
    let secs = started.elapsed().as_secs_f64();
    let held = engine.scopes()?;
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        held.len() == 1 && held[0].rows as usize == rows.div_ceil(200) * 200 && held[0].state == "held",
        "backfilled {held:?}"
    );
    Ok(held[0].rows as f64 / secs)
}
