//! P13, backend writes (issue 33, docs/backend-writes.md): what capture costs the app's own SQL, and adoption.
//!
//! - P13a: a single-row UPDATE by primary key on `business.users` (captured) against the same UPDATE on a copy of
//!   the table without triggers (`bench_plain.users`), alternating, each sample its own autocommit statement.
//! - P13b: 100k new rows for 100 owners in one statement, `INSERT … SELECT` and `COPY … FROM STDIN`, captured
//!   against plain (alternating, medians).
//! - P13d: `adopt` of 1M rows of 1,000 owners written with capture off: rows/s, and the peak resident memory the
//!   command's process added (PostgreSQL's own memory per slice is bounded by the slice).

use std::time::Instant;

use futures_util::SinkExt;

use crate::api::{Env, median, percentile};

/// What P13 measured.
#[derive(Debug)]
pub struct P13 {
    /// Samples of P13a.
    pub samples: usize,
    /// P13a p50 / p99, captured and plain (ms).
    pub update: [f64; 4],
    /// Rows of P13b.
    pub rows: usize,
    /// P13b medians (ms): INSERT … SELECT captured, plain; COPY captured, plain.
    pub bulk: [f64; 4],
    /// Rows adopted in P13d.
    pub adopted: u64,
    /// P13d rows/s.
    pub adopt_rate: f64,
    /// P13d peak resident memory added, bytes (None where /proc is not there).
    pub adopt_peak: Option<u64>,
}

async fn connect(env: &Env) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(&env.db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Runs P13 against the server's database (`cfg` is the server's, for the registry `adopt` reads).
pub async fn p13(env: &Env, cfg: &oversync_server::Config, short: bool) -> anyhow::Result<P13> {
    let db = connect(env).await?;
    db.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS bench_plain;
         CREATE TABLE IF NOT EXISTS bench_plain.users (LIKE business.users INCLUDING ALL);",
    )
    .await?;
    let (samples, rows, adopt_rows) = if short {
        (20, 2_000, 10_000)
    } else {
        (500, 100_000, 1_000_000)
    };

    // P13a.
    let (owner, pk) = (
        format!("p13-{}", uuid::Uuid::new_v4()),
        uuid::Uuid::new_v4().to_string(),
    );
    for table in ["business.users", "bench_plain.users"] {
        db.execute(
            &format!("INSERT INTO {table} (owner_id, id, name, email) VALUES ($1, $2::text::uuid, 'n', 'e')"),
            &[&owner, &pk],
        )
        .await?;
    }
    let (mut captured, mut plain) = (Vec::new(), Vec::new());
    for i in 0..samples {
        for (table, into) in [("business.users", &mut captured), ("bench_plain.users", &mut plain)] {
            let name = format!("n{i}");
            let t = Instant::now();
            db.execute(
                &format!("UPDATE {table} SET name = $1 WHERE owner_id = $2 AND id = $3::text::uuid"),
                &[&name, &owner, &pk],
            )
            .await?;
            into.push(ms(t));
        }
    }
    let update = [
        percentile(captured.clone(), 0.5),
        percentile(captured, 0.99),
        percentile(plain.clone(), 0.5),
        percentile(plain, 0.99),
    ];

    // P13b.
    let repeats = if short { 1 } else { 3 };
    let mut bulk: [Vec<f64>; 4] = Default::default();
    for r in 0..repeats {
        for (i, table) in ["business.users", "bench_plain.users"].into_iter().enumerate() {
            let t = Instant::now();
            db.execute(
                &format!(
                    "INSERT INTO {table} (owner_id, id, name, email, created_at)
                     SELECT 'p13b-{r}-' || (g % 100), gen_random_uuid(), 'row ' || g, 'e@x', now()
                     FROM generate_series(1, $1::int8) g"
                ),
                &[&(rows as i64)],
            )
            .await?;
            bulk[i].push(ms(t));
            let mut text = String::with_capacity(rows * 80);
            for g in 0..rows {
                text += &format!("p13c-{r}-{}\t{}\trow {g}\te@x\n", g % 100, uuid::Uuid::new_v4());
            }
            let t = Instant::now();
            let sink = db
                .copy_in(&format!("COPY {table} (owner_id, id, name, email) FROM STDIN"))
                .await?;
            futures_util::pin_mut!(sink);
            sink.send(bytes::Bytes::from(text)).await?;
            sink.finish().await?;
            bulk[2 + i].push(ms(t));
        }
    }
    let bulk = bulk.map(median);

    // P13d.
    db.batch_execute(&format!(
        "BEGIN; SET LOCAL oversync.capture = off;
         INSERT INTO business.users (owner_id, id, name, email, created_at)
         SELECT 'p13d-' || (g % 1000), gen_random_uuid(), 'old ' || g, 'e@x', now() FROM generate_series(1, {adopt_rows}) g;
         COMMIT;"
    ))
    .await?;
    let mut client = connect(env).await?;
    let service = oversync_server::Service::new(cfg, None)?;
    let registry = service.ready(&mut client).await?;
    let before = rss("VmRSS");
    reset_peak();
    let t = Instant::now();
    let done = oversync_server::adopt::adopt(&client, registry, &mut |_: &str| {}).await?;
    let secs = t.elapsed().as_secs_f64();
    let adopted: u64 = done.iter().map(|a| a.logged).sum();
    let adopt_peak = rss("VmHWM")
        .zip(before)
        .map(|(peak, before)| peak.saturating_sub(before));
    Ok(P13 {
        samples,
        update,
        rows,
        bulk,
        adopted,
        adopt_rate: adopted as f64 / secs,
        adopt_peak,
    })
}

/// A `/proc/self/status` size in bytes.
fn rss(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident size (`VmHWM`) to the current one.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

impl P13 {
    /// The results table's rows.
    pub fn table(&self) -> String {
        let [c50, c99, p50, p99] = self.update;
        let [ic, ip, cc, cp] = self.bulk;
        format!(
            "| P13a single-row backend UPDATE p50 / p99 (ms): captured → plain ({} samples) | {c50:.2} / {c99:.2} → {p50:.2} / {p99:.2} | | {:.2}× / {:.2}× (+{:.2} ms p50) | ≤ 2× and ≤ +1 ms |\n\
             | P13b {} rows in one INSERT … SELECT (ms): captured / plain | {ic:.0} / {ip:.0} | | {:.2}× | ≤ 3× |\n\
             | P13b {} rows by COPY (ms): captured / plain | {cc:.0} / {cp:.0} | | {:.2}× | ≤ 3× |\n\
             | P13d adopt of {} rows (rows/s; peak memory the command added) | {:.0} | | {} | |\n",
            self.samples,
            c50 / p50,
            c99 / p99,
            c50 - p50,
            self.rows,
            ic / ip,
            self.rows,
            cc / cp,
            self.adopted,
            self.adopt_rate,
            self.adopt_peak
                .map_or("—".to_owned(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        )
    }

    /// The JSON record.
    pub fn json(&self) -> serde_json::Value {
        let [c50, c99, p50, p99] = self.update;
        let [ic, ip, cc, cp] = self.bulk;
        serde_json::json!({
            "p13a_update_ms": {"samples": self.samples, "captured_p50": c50, "captured_p99": c99, "plain_p50": p50, "plain_p99": p99},
            "p13b_bulk_ms": {"rows": self.rows, "insert_captured": ic, "insert_plain": ip, "copy_captured": cc, "copy_plain": cp},
            "p13d_adopt": {"rows": self.adopted, "rows_per_s": self.adopt_rate, "peak_rss_added_bytes": self.adopt_peak},
        })
    }
}
