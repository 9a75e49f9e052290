//! P3 natively: a new device (the engine over bundled SQLite, a file database) hydrates a user's rows from the
//! server. The browser run (OPFS, wasm) is in `bench/browser/run.mjs`; this one tells engine cost from wasm cost.

use std::time::Instant;

use oversync_client::transport::HttpTransport;
use oversync_client::{Engine, EngineConfig, TableConfig};
use serde_json::Value;

use crate::api::{Env, batch, token, upload_batches};

pub const SCHEMA: &str = "
CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, created_at TEXT, updated_at TEXT);
CREATE TABLE posts (id TEXT PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL,
  author_id TEXT REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED, created_at TEXT, updated_at TEXT);";

/// Rows in the hydrated tables.
pub fn hydrated_rows(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM posts)",
        [],
        |r| r.get(0),
    )
}

/// Rows per second of a native hydration of `batches` × 200 rows.
pub async fn p3_native(env: &Env, batches: usize) -> anyhow::Result<(usize, f64)> {
    let user = format!("hyd{}", uuid::Uuid::new_v4().simple());
    let plan: Vec<Value> = (0..batches).map(|b| batch(1 + b as i64 * 200)).collect();
    upload_batches(env, &user, "seed", &plan).await?;
    let dir = std::env::temp_dir().join(format!("oversync-bench-p3-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conn = rusqlite::Connection::open(dir.join("p3.db"))?;
    conn.execute_batch(SCHEMA)?;
    let cfg = EngineConfig::new("business", vec![TableConfig::new("users"), TableConfig::new("posts")]);
    let mut engine = Engine::open(conn, cfg, HttpTransport::new(env.base.clone()))?;
    let t = token(env, &user, &engine.source_id()?).await?;
    engine.sign_in(&format!("user-{user}"), t)?;
    let started = Instant::now();
    engine.hydrate(false).await?;
    let secs = started.elapsed().as_secs_f64();
    let rows = hydrated_rows(engine.conn())?;
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        rows as usize == batches * 200,
        "hydrated {rows} rows of {}",
        batches * 200
    );
    Ok((rows as usize, rows as f64 / secs))
}
