//! P3, the engine alone: a new device hydrating from snapshot pages served from memory, so the number is the
//! client's apply cost (JSON to SQLite rows, metadata, one transaction per page) without the server's. Next to
//! `hydrate::p3_native` it tells which side a hydration waits on. [`p2_engine`] is the same for download pages
//! (other devices' changes, the steady state), with the database's page size as a parameter.

use std::cell::Cell;
use std::time::Instant;

use oversync_client::transport::{Credentials, NetworkError, Reply, Transport};
use oversync_client::{Engine, EngineConfig, TableConfig};
use serde_json::{Value, json};

const PAGE: usize = 1000;

/// Snapshot pages (users and posts, as `api::batch` writes them) answered in order, then an empty download;
/// or, with `download`, no snapshot capability and the pages as download pages.
struct Pages {
    pages: Vec<Vec<u8>>,
    next: Cell<usize>,
    download: bool,
}

impl Transport for Pages {
    async fn post(&self, _: &str, _: Credentials<'_>, _: Vec<u8>) -> Result<Reply, NetworkError> {
        Err(NetworkError("no uploads here".into()))
    }

    async fn get(&self, path: &str, _: Credentials<'_>) -> Result<Reply, NetworkError> {
        let body = if path.starts_with("/sync/capabilities") {
            capabilities(!self.download).to_string().into_bytes()
        } else if path.starts_with("/sync/snapshot") || (self.download && self.next.get() < self.pages.len()) {
            let i = self.next.replace(self.next.get() + 1);
            self.pages[i].clone()
        } else {
            json!({"changes": [], "has_more": false, "next_after": 1, "window_until": 0})
                .to_string()
                .into_bytes()
        };
        Ok(Reply {
            status: 200,
            body,
            retry_after: None,
            request_id: None,
        })
    }
}

fn capabilities(snapshot: bool) -> Value {
    json!({"protocol": "oversync", "protocol_version": 1, "schema_version": 1,
        "limits": {"max_upload_batch_size": 200, "max_payload_bytes": 1 << 20, "max_request_bytes": 8 << 20,
                   "download_limit_default": 1000, "download_limit_max": 1000, "snapshot_limit_max": 1000},
        "features": {"replay_returns_version": true, "next_after_jumps": true, "fk_precheck": "sync_state",
                     "snapshot": snapshot, "watch": []}})
}

/// Pages in the server's snapshot order: by table, then by key (half posts, half users). As download pages
/// (`download`), the same rows are log entries of another device, in that order.
fn pages(rows: usize, download: bool) -> Vec<Vec<u8>> {
    let total = rows as i64;
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
            if download {
                let base = p * PAGE;
                let changes: Vec<Value> = rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut r)| {
                        let extra = json!({"server_id": base + i + 1, "op": "INSERT", "deleted": false,
                            "source_id": "other-device", "source_change_id": base + i + 1, "ts": "2026-12-01T00:00:00Z"});
                        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                        r
                    })
                    .collect();
                let last = (base + changes.len()) as i64;
                return json!({"changes": changes, "has_more": p + 1 < count, "next_after": last, "window_until": total})
                    .to_string()
                    .into_bytes();
            }
            json!({"rows": rows, "has_more": p + 1 < count, "next_after_table": "business.users",
                   "next_after_pk": "00000000-0000-4000-8000-000000000000", "window_until": 1,
                   "max_own_source_change_id": 0})
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// Rows per second of a hydration of `rows` rows from memory into a file database.
pub async fn p3_engine(rows: usize) -> anyhow::Result<f64> {
    apply_from_memory(rows, false, None).await
}

/// Rows per second of applying `rows` rows of download pages (1000 entries each) from memory into a file
/// database with pages of `page_size` bytes (the browser's databases use 16 KiB).
pub async fn p2_engine(rows: usize, page_size: u32) -> anyhow::Result<f64> {
    apply_from_memory(rows, true, Some(page_size)).await
}

async fn apply_from_memory(rows: usize, download: bool, page_size: Option<u32>) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("oversync-bench-p3e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conn = rusqlite::Connection::open(dir.join("p3e.db"))?;
    if let Some(size) = page_size {
        conn.pragma_update(None, "page_size", size)?;
    }
    conn.execute_batch(crate::hydrate::SCHEMA)?;
    let cfg = EngineConfig::new("business", vec![TableConfig::new("users"), TableConfig::new("posts")]);
    let transport = Pages {
        pages: pages(rows, download),
        next: Cell::new(0),
        download,
    };
    let mut engine = Engine::open(conn, cfg, transport)?;
    engine.sign_in("bench-user", "token".into())?;
    let started = Instant::now();
    engine.hydrate(false).await?;
    let secs = started.elapsed().as_secs_f64();
    let n = crate::hydrate::hydrated_rows(engine.conn())?;
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(n as usize == rows, "applied {n} rows of {rows}");
    Ok(rows as f64 / secs)
}
