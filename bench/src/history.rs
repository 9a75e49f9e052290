//! P14, bounded history (issue 36, docs/history.md), on a database and server of its own (a pass covers the whole
//! log, and the sizes are the whole tables'):
//!
//! - P14a: `rows` rows written `updates` times each by one device (batches of 200): log rows and the sync tables'
//!   `pg_total_relation_size` after the first write of each row (what a fresh database holding the live rows
//!   takes), after all updates, after a compaction pass, after `VACUUM` and after `VACUUM FULL`.
//! - P14b: a steady workload, 200-change batches of updates at a fixed rate, once with the background compaction
//!   (a pass every second, `compact_after_s` = 5) and then without: the tables' size over time and the upload
//!   p50 / p99.
//! - P14c: a new device's hydration (snapshot, then catch-up; the median of five) and a replay of the whole log
//!   from cursor 0, before and after the compaction.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{Env, download_all, percentile, token};
use oversync_server::compact::{Horizons, pass};

const SIZE_SQL: &str = "SELECT (SELECT count(*) FROM sync.server_change_log),
  (SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['sync.server_change_log', 'sync.sync_row_meta',
     'sync.sync_state', 'sync.upload_receipts', 'sync.history_horizon']::regclass[]) AS c)::int8";

/// What P14 measured.
#[derive(Debug, Default)]
pub struct P14 {
    pub rows: usize,
    pub updates: usize,
    /// `(log rows, bytes)`: fresh, after updates, compacted, vacuumed, vacuumed full.
    pub sizes: [(i64, i64); 5],
    /// The pass: ms and entries removed.
    pub pass_ms: f64,
    pub compacted: i64,
    /// P14b: seconds, then per run (without, with): sizes sampled (bytes), upload p50, p99 (ms).
    pub steady_s: u64,
    pub steady: [(Vec<i64>, f64, f64); 2],
    /// P14c (ms): hydration before / after, replay from 0 before / after.
    pub hydrate: [f64; 4],
}

async fn sizes(db: &tokio_postgres::Client) -> anyhow::Result<(i64, i64)> {
    let r = db.query_one(SIZE_SQL, &[]).await?;
    Ok((r.get(0), r.get(1)))
}

fn update(scid: i64, pk: &str, base: i64, n: usize) -> Value {
    json!({"source_change_id": scid, "schema": "business", "table": "users", "op": "UPDATE", "pk": pk,
           "server_version": base, "payload": {"id": pk, "name": format!("name {n}"), "email": "e", "created_at": 1767225600}})
}

/// A device writing rounds over `pks` (every row once per round) in batches of 200; versions tracked.
struct Writer {
    token: String,
    scid: i64,
    versions: Vec<i64>,
    pks: Vec<String>,
}

impl Writer {
    /// One round over every row, 200 per request: the request latencies (ms).
    async fn round(&mut self, env: &Env, pace: Option<Duration>) -> anyhow::Result<Vec<f64>> {
        let mut ms = Vec::new();
        for chunk in (0..self.pks.len()).collect::<Vec<_>>().chunks(200) {
            let changes: Vec<Value> = chunk
                .iter()
                .map(|&i| {
                    self.scid += 1;
                    update(self.scid, &self.pks[i], self.versions[i], self.scid as usize)
                })
                .collect();
            let began = Instant::now();
            let r = env
                .http
                .post(format!("{}/sync/upload", env.base))
                .bearer_auth(&self.token)
                .body(json!({ "changes": changes }).to_string())
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "upload answered {}", r.status());
            ms.push(began.elapsed().as_secs_f64() * 1e3);
            let body: Value = r.json().await?;
            for (k, &i) in chunk.iter().enumerate() {
                let v = body["statuses"][k]["new_server_version"].as_i64();
                self.versions[i] = v.ok_or_else(|| anyhow::anyhow!("not applied: {}", body["statuses"][k]))?;
            }
            if let Some(p) = pace {
                tokio::time::sleep(p.saturating_sub(began.elapsed())).await;
            }
        }
        Ok(ms)
    }
}

async fn writer(env: &Env, user: &str, rows: usize) -> anyhow::Result<Writer> {
    Ok(Writer {
        token: token(env, user, "writer").await?,
        scid: 0,
        versions: vec![0; rows],
        pks: (0..rows).map(|_| uuid::Uuid::new_v4().to_string()).collect(),
    })
}

/// The median of five new devices' hydrations (ms).
async fn hydrate(env: &Env, user: &str) -> anyhow::Result<f64> {
    let mut ms = Vec::new();
    for _ in 0..5 {
        ms.push(hydrate_once(env, user).await?);
    }
    Ok(crate::api::median(ms))
}

/// A new device's hydration over HTTP: snapshot pages, then the catch-up from the window (ms).
async fn hydrate_once(env: &Env, user: &str) -> anyhow::Result<f64> {
    let t = token(env, user, &format!("fresh-{}", uuid::Uuid::new_v4())).await?;
    let began = Instant::now();
    let mut after = String::new();
    let until = loop {
        let page: Value = env
            .http
            .get(format!("{}/sync/snapshot?limit=1000{after}", env.base))
            .bearer_auth(&t)
            .send()
            .await?
            .json()
            .await?;
        if page["has_more"] != true {
            break page["window_until"].as_i64().unwrap_or_default();
        }
        after = format!(
            "&after_table={}&after_pk={}&until={}",
            page["next_after_table"].as_str().unwrap_or_default(),
            page["next_after_pk"].as_str().unwrap_or_default(),
            page["window_until"]
        );
    };
    download_all(env, &t, until, false).await?;
    Ok(began.elapsed().as_secs_f64() * 1e3)
}

/// A new device replaying the whole log from 0 (ms).
async fn replay(env: &Env, user: &str) -> anyhow::Result<f64> {
    let t = token(env, user, &format!("replay-{}", uuid::Uuid::new_v4())).await?;
    let began = Instant::now();
    download_all(env, &t, 0, false).await?;
    Ok(began.elapsed().as_secs_f64() * 1e3)
}

/// P14 on a database and an in-process server of its own (`cfg` as the other phases', compaction off: the
/// bench runs its passes itself).
pub async fn p14_own(cfg: &oversync_server::Config, short: bool) -> anyhow::Result<P14> {
    let db_url = oversync_tests::pg::database("oversync_bench_p14")?;
    let mut cfg = cfg.clone();
    cfg.database_url = Some(db_url.clone());
    cfg.compact_interval_s = 0;
    // The steady runs outlast the demo's five-minute tokens.
    cfg.token_ttl = 3600;
    let bound = oversync_server::native::Bound::new(cfg).await?;
    let env = Env {
        base: format!("http://{}", bound.addr),
        db_url,
        http: reqwest::Client::new(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));
    let result = p14(&env, short).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    result
}

async fn p14(env: &Env, short: bool) -> anyhow::Result<P14> {
    let (rows, updates, steady_s) = if short { (200, 5, 4) } else { (1000, 1000, 300) };
    let steady_s = std::env::var("P14_STEADY_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(steady_s);
    let (db, conn) = tokio_postgres::connect(&env.db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let mut r = P14 {
        rows,
        updates,
        steady_s,
        ..P14::default()
    };
    let user = format!("p14a{}", uuid::Uuid::new_v4().simple());
    let mut w = writer(env, &user, rows).await?;
    w.round(env, None).await?;
    r.sizes[0] = sizes(&db).await?;
    for i in 1..updates {
        if i % 100 == 0 {
            eprintln!("  P14a: {i} of {updates} rounds");
        }
        w.round(env, None).await?;
    }
    r.sizes[1] = sizes(&db).await?;
    r.hydrate[0] = hydrate(env, &user).await?;
    r.hydrate[2] = replay(env, &user).await?;
    let h = Horizons {
        compact_after: Duration::ZERO,
        tombstone_retention: Duration::from_secs(86_400),
        batch_rows: 1000,
    };
    let began = Instant::now();
    let t = pass(&db, &h, u64::MAX, &mut |_| {}).await?;
    r.pass_ms = began.elapsed().as_secs_f64() * 1e3;
    r.compacted = t.compacted;
    r.sizes[2] = sizes(&db).await?;
    db.batch_execute("VACUUM sync.server_change_log, sync.sync_row_meta, sync.sync_state, sync.upload_receipts")
        .await?;
    r.sizes[3] = sizes(&db).await?;
    r.hydrate[1] = hydrate(env, &user).await?;
    r.hydrate[3] = replay(env, &user).await?;
    db.batch_execute("VACUUM FULL sync.server_change_log, sync.sync_row_meta, sync.sync_state, sync.upload_receipts")
        .await?;
    r.sizes[4] = sizes(&db).await?;

    // P14b: 200 changes every 100 ms.
    // With compaction first: the run without it then grows on top of a compacted table, not the reverse.
    for (run, compacting) in [(1, true), (0, false)] {
        let user = format!("p14b{}", uuid::Uuid::new_v4().simple());
        let mut w = writer(env, &user, 1000).await?;
        w.round(env, None).await?;
        let stop = tokio::sync::watch::channel(false);
        let compactor = compacting.then(|| {
            let (url, mut stopped) = (env.db_url.clone(), stop.1.clone());
            tokio::spawn(async move {
                let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                let h = Horizons {
                    compact_after: Duration::from_secs(5),
                    ..h
                };
                while !*stopped.borrow() {
                    pass(&db, &h, u64::MAX, &mut |_| {}).await?;
                    let _ = tokio::time::timeout(Duration::from_secs(1), stopped.changed()).await;
                }
                anyhow::Ok(())
            })
        });
        let (began, mut ms, mut samples) = (Instant::now(), Vec::new(), Vec::new());
        let mut next_sample = Duration::ZERO;
        while began.elapsed() < Duration::from_secs(steady_s) {
            if began.elapsed() >= next_sample {
                samples.push(sizes(&db).await?.1);
                next_sample += Duration::from_secs(steady_s / 8).max(Duration::from_secs(1));
            }
            ms.extend(w.round(env, Some(Duration::from_millis(100))).await?);
        }
        samples.push(sizes(&db).await?.1);
        let _ = stop.0.send(true);
        if let Some(c) = compactor {
            c.await??;
        }
        r.steady[run] = (samples, percentile(ms.clone(), 0.5), percentile(ms, 0.99));
    }
    Ok(r)
}

impl P14 {
    pub fn table(&self) -> String {
        let mb = |b: i64| b as f64 / (1 << 20) as f64;
        let [fresh, full, compacted, vacuumed, shrunk] = self.sizes;
        let [(without, w50, w99), (with, c50, c99)] = &self.steady;
        let series = |s: &[i64]| {
            s.iter()
                .map(|b| format!("{:.1}", mb(*b)))
                .collect::<Vec<_>>()
                .join(" → ")
        };
        format!(
            "| P14a {} rows × {} writes: log rows fresh → written → compacted | {} → {} → {} | | removed {} in {:.0} ms | ≤ live rows + recent |\n\
             | P14a sync tables (MiB): fresh → written → compacted → VACUUM → VACUUM FULL | {:.1} → {:.1} → {:.1} → {:.1} → {:.1} | | {:.2}× fresh after VACUUM FULL | ≤ 2× fresh |\n\
             | P14b steady updates {} s, sync tables (MiB) without compaction | {} | | | |\n\
             | P14b … with compaction (a pass every second, compact_after_s = 5) | {} | | | flat after the horizon |\n\
             | P14b upload p50 / p99 (ms): without → with compaction | {w50:.1} / {w99:.1} → {c50:.1} / {c99:.1} | | {:.2}× at p99 | ≤ 1.5× |\n\
             | P14c new device, snapshot + catch-up (ms): before → after compaction | {:.0} → {:.0} | | | not slower |\n\
             | P14c replay of the log from 0 (ms): before → after compaction | {:.0} → {:.0} | | | not slower |\n",
            self.rows,
            self.updates,
            fresh.0,
            full.0,
            compacted.0,
            self.compacted,
            self.pass_ms,
            mb(fresh.1),
            mb(full.1),
            mb(compacted.1),
            mb(vacuumed.1),
            mb(shrunk.1),
            shrunk.1 as f64 / fresh.1 as f64,
            self.steady_s,
            series(without),
            series(with),
            c99 / w99,
            self.hydrate[0],
            self.hydrate[1],
            self.hydrate[2],
            self.hydrate[3],
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "rows": self.rows, "writes_per_row": self.updates,
            "sizes": self.sizes.iter().map(|(n, b)| json!({"log_rows": n, "bytes": b})).collect::<Vec<_>>(),
            "pass_ms": self.pass_ms, "compacted": self.compacted,
            "steady_s": self.steady_s,
            "steady": self.steady.iter().map(|(s, p50, p99)| json!({"bytes": s, "upload_p50_ms": p50, "upload_p99_ms": p99})).collect::<Vec<_>>(),
            "hydrate_ms": self.hydrate,
        })
    }
}
