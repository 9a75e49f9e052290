//! P3 natively: a new device (the engine over bundled SQLite, a file database) hydrates a user's rows from the
//! server. The browser run (OPFS, wasm) is in `bench/browser/run.mjs`; this one tells engine cost from wasm cost.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use oversync_client::transport::HttpTransport;
use oversync_client::{Engine, EngineConfig, TableConfig};
use oversync_tests::proxy::{Fault, FaultProxy};
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
    let user = seed(env, batches).await?;
    let rate = hydrate_once(env, &env.base, &user, batches * 200, true).await?;
    Ok((batches * 200, rate))
}

/// P3 natively over a link that delays every request by `delay` (a fault proxy on 127.0.0.1): rows/s with one
/// page request in flight and with two (`snapshot_lookahead`), medians of three alternating hydrations each.
pub async fn p3_latency(env: &Env, batches: usize, delay: Duration) -> anyhow::Result<(f64, f64)> {
    let user = seed(env, batches).await?;
    let upstream: SocketAddr = env.base.trim_start_matches("http://").parse()?;
    let proxy = FaultProxy::start(upstream).await?;
    proxy.set(move |_, _| Fault::Delay(delay));
    let base = format!("http://{}", proxy.addr);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        one.push(hydrate_once(env, &base, &user, batches * 200, false).await?);
        two.push(hydrate_once(env, &base, &user, batches * 200, true).await?);
    }
    Ok((crate::api::median(one), crate::api::median(two)))
}

/// Uploads `batches` × 200 rows (half users, half posts) for a new user; returns the user.
async fn seed(env: &Env, batches: usize) -> anyhow::Result<String> {
    let user = format!("hyd{}", uuid::Uuid::new_v4().simple());
    let plan: Vec<Value> = (0..batches).map(|b| batch(1 + b as i64 * 200)).collect();
    upload_batches(env, &user, "seed", &plan).await?;
    Ok(user)
}

/// Hydrates a new device of `user` from `base` into a file database; rows/s.
async fn hydrate_once(env: &Env, base: &str, user: &str, rows: usize, lookahead: bool) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("oversync-bench-p3-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let conn = rusqlite::Connection::open(dir.join("p3.db"))?;
    conn.execute_batch(SCHEMA)?;
    let mut cfg = EngineConfig::new("business", vec![TableConfig::new("users"), TableConfig::new("posts")]);
    cfg.snapshot_lookahead = lookahead;
    let mut engine = Engine::open(conn, cfg, HttpTransport::new(base.to_owned()))?;
    let t = token(env, user, &engine.source_id()?).await?;
    engine.sign_in(&format!("user-{user}"), t)?;
    let started = Instant::now();
    engine.hydrate(false).await?;
    let secs = started.elapsed().as_secs_f64();
    let n = hydrated_rows(engine.conn())?;
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(n as usize == rows, "hydrated {n} rows of {rows}");
    Ok(rows as f64 / secs)
}
