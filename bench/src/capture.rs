//! P4 natively: inserts in one transaction into a synced table (the engine's capture triggers) vs the same table
//! without triggers, on a file database. The browser side of P4 is in `bench/browser/run.mjs`.
//!
//! The triggers append to the capture log; folding the log into the pending queue is the engine's work before a
//! freeze or a status read (`oversync_client::capture`). It is timed on its own (`fold`), after each captured
//! run, so what moved from the write to the fold stays visible.

use std::time::Instant;

use oversync_client::transport::HttpTransport;
use oversync_client::{Engine, EngineConfig, TableConfig};
use rusqlite::params;

/// `floor` is the least a trigger-based capture can do: one trigger writing one row per insert into a table keyed
/// by (table, key) — the "two B-tree writes per row" floor — without the `apply_mode` guard or the key check
/// PROTOCOL.md §7.2 asks for.
const SCHEMA: &str = "
CREATE TABLE captured (id TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
CREATE TABLE plain (id TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
CREATE TABLE floor (id TEXT PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
CREATE TABLE floor_queue (table_name TEXT NOT NULL, pk TEXT NOT NULL, PRIMARY KEY (table_name, pk)) WITHOUT ROWID;
CREATE TRIGGER floor_ai AFTER INSERT ON floor BEGIN INSERT INTO floor_queue VALUES ('floor', NEW.id); END;";

/// Median milliseconds of the inserts into each table.
pub struct P4 {
    pub plain: f64,
    pub floor: f64,
    pub captured: f64,
    /// Folding the captured run's log into the pending queue.
    pub fold: f64,
}

/// `rows` inserts into each table in one transaction, `repeats` times each, alternating.
pub fn p4(rows: usize, repeats: usize) -> anyhow::Result<P4> {
    let dir = std::env::temp_dir().join(format!("oversync-bench-p4-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir.join("p4.db"), rows, repeats);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(path: &std::path::Path, rows: usize, repeats: usize) -> anyhow::Result<P4> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(SCHEMA)?;
    // The engine only installs its triggers here; the transport is never used.
    let cfg = EngineConfig::new("business", vec![TableConfig::new("captured")]);
    let engine = Engine::open(conn, cfg, HttpTransport::new("http://127.0.0.1:9"))?;
    let conn = engine.conn();
    let (mut plain, mut floor, mut captured, mut fold) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats {
        conn.execute_batch(
            "DELETE FROM plain; DELETE FROM floor; DELETE FROM floor_queue; DELETE FROM captured; DELETE FROM _sync_pending;
             DELETE FROM _sync_capture;",
        )?;
        for (table, times) in [
            ("plain", &mut plain),
            ("floor", &mut floor),
            ("captured", &mut captured),
        ] {
            let ids: Vec<String> = (0..rows).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            let started = Instant::now();
            let tx = conn.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare(&format!("INSERT INTO {table} (id, name, n) VALUES (?1, ?2, ?3)"))?;
                for (i, id) in ids.iter().enumerate() {
                    stmt.execute(params![id, "name", i as i64])?;
                }
            }
            tx.commit()?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let started = Instant::now();
        let folded = engine.fold_captured()?;
        fold.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(folded == rows, "folded {folded} captured writes, expected {rows}");
    }
    Ok(P4 {
        plain: crate::api::median(plain),
        floor: crate::api::median(floor),
        captured: crate::api::median(captured),
        fold: crate::api::median(fold),
    })
}
