//! P3, the engine alone: a new device hydrating from snapshot pages served from memory, so the number is the
//! client's apply cost (JSON to SQLite rows, metadata, one transaction per page) without the server's. Next to
//! `hydrate::p3_native` it tells which side a hydration waits on.

use std::cell::Cell;
use std::time::Instant;

use oversync_client::transport::{NetworkError, Reply, Transport};
use oversync_client::{Engine, EngineConfig, TableConfig};
use serde_json::{Value, json};

const PAGE: usize = 1000;

/// Snapshot pages (users and posts, as `api::batch` writes them) answered in order, then an empty download.
struct Pages {
    pages: Vec<Vec<u8>>,
    next: Cell<usize>,
}

impl Transport for Pages {
    async fn post(&self, _: &str, _: &str, _: Vec<u8>) -> Result<Reply, NetworkError> {
        Err(NetworkError("no uploads here".into()))
    }

    async fn get(&self, path: &str, _: &str) -> Result<Reply, NetworkError> {
        let body = if path.starts_with("/sync/capabilities") {
            capabilities().to_string().into_bytes()
        } else if path.starts_with("/sync/snapshot") {
            let i = self.next.replace(self.next.get() + 1);
            self.pages[i].clone()
        } else {
            json!({"changes": [], "has_more": false, "next_after": 1, "window_until": 0})
                .to_string()
                .into_bytes()
        };
        Ok(Reply { status: 200, body })
    }
}

fn capabilities() -> Value {
    json!({"protocol": "oversync", "protocol_version": 1, "schema_version": 1,
        "limits": {"max_upload_batch_size": 200, "max_payload_bytes": 1 << 20, "max_request_bytes": 8 << 20,
                   "download_limit_default": 1000, "download_limit_max": 1000, "snapshot_limit_max": 1000},
        "features": {"replay_returns_version": true, "next_after_jumps": true, "fk_precheck": "sync_state",
                     "snapshot": true, "watch": []}})
}

/// Pages in the server's snapshot order: by table, then by key (half posts, half users).
fn pages(rows: usize) -> Vec<Vec<u8>> {
    let mut all: Vec<(&str, String)> = (0..rows)
        .map(|i| {
            (
                if i < rows / 2 { "posts" } else { "users" },
                uuid::Uuid::new_v4().to_string(),
            )
        })
        .collect();
    all.sort();
    let count = rows.div_ceil(PAGE);
    all.chunks(PAGE)
        .enumerate()
        .map(|(p, chunk)| {
            let rows: Vec<Value> = chunk
                .iter()
                .map(|(table, id)| {
                    let payload = if *table == "users" {
                        json!({"id": id, "name": "n", "email": "e", "created_at": 1767225600})
                    } else {
                        let author = uuid::Uuid::new_v4().to_string();
                        json!({"id": id, "title": "t", "content": "c", "author_id": author, "created_at": 1767225600})
                    };
                    json!({"schema": "business", "table": table, "pk": id, "server_version": 1, "payload": payload})
                })
                .collect();
            json!({"rows": rows, "has_more": p + 1 < count, "next_after_table": "users",
                   "next_after_pk": "00000000-0000-4000-8000-000000000000", "window_until": 1,
                   "max_own_source_change_id": 0})
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// Rows per second of a hydration of `rows` rows from memory into a file database.
pub async fn p3_engine(rows: usize) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("oversync-bench-p3e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conn = rusqlite::Connection::open(dir.join("p3e.db"))?;
    conn.execute_batch(crate::hydrate::SCHEMA)?;
    let cfg = EngineConfig::new("business", vec![TableConfig::new("users"), TableConfig::new("posts")]);
    let transport = Pages {
        pages: pages(rows),
        next: Cell::new(0),
    };
    let mut engine = Engine::open(conn, cfg, transport)?;
    engine.sign_in("bench-user", "token".into())?;
    let started = Instant::now();
    engine.hydrate(false).await?;
    let secs = started.elapsed().as_secs_f64();
    let n = crate::hydrate::hydrated_rows(engine.conn())?;
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(n as usize == rows, "hydrated {n} rows of {rows}");
    Ok(rows as f64 / secs)
}
