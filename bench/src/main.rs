//! `oversync-bench [--short] [--out FILE]`: server throughput and latency against ceilings measured side by side
//! in the same run, on the same database (issue: benchmarks). Medians of repeated runs; ratios, not lone times.
//!
//! - P1 upload: batches of 200 upserts (100 users + 100 posts referencing them, children first), 1 device and
//!   32 concurrent devices. Ceiling: the same rows written to the same sync tables by one hand-written set-based
//!   statement per batch.
//! - P2 download: pages of 1000. Ceiling: the bare SELECT of the same rows serialised to JSON in one process.
//! - P6 latency: p50/p99 of a single-change upload and of an empty download (native).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::join_all;
use serde_json::{Value, json};

mod ceiling;

struct Env {
    base: String,
    db_url: String,
    http: reqwest::Client,
}

async fn token(env: &Env, user: &str, device: &str) -> anyhow::Result<String> {
    let r: Value = env
        .http
        .post(format!("{}/signin", env.base))
        .body(json!({"username": user, "device_id": device}).to_string())
        .send()
        .await?
        .json()
        .await?;
    Ok(r["token"].as_str().context("token")?.to_owned())
}

/// One batch of 200 changes: 100 posts (first) referencing 100 users.
fn batch(first_scid: i64) -> Value {
    let users: Vec<String> = (0..100).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let mut changes = Vec::with_capacity(200);
    for (i, u) in users.iter().enumerate() {
        let p = uuid::Uuid::new_v4().to_string();
        changes.push(json!({"source_change_id": first_scid + 100 + i as i64, "schema": "business", "table": "posts", "op": "INSERT",
            "pk": p, "server_version": 0, "payload": {"id": p, "title": "t", "content": "c", "author_id": u, "created_at": 1767225600}}));
    }
    for (i, u) in users.iter().enumerate() {
        changes.push(
            json!({"source_change_id": first_scid + i as i64, "schema": "business", "table": "users", "op": "INSERT",
            "pk": u, "server_version": 0, "payload": {"id": u, "name": "n", "email": "e", "created_at": 1767225600}}),
        );
    }
    json!({ "changes": changes })
}

async fn upload_batches(env: &Env, user: &str, batches: &[Value]) -> anyhow::Result<()> {
    let t = token(env, user, "bench").await?;
    for b in batches {
        let r = env
            .http
            .post(format!("{}/sync/upload", env.base))
            .bearer_auth(&t)
            .body(b.to_string())
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "upload answered {}", r.status());
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Changes per second of `devices` concurrent devices each uploading `per_device` batches, API vs ceiling.
async fn p1(env: &Env, devices: usize, per_device: usize, repeats: usize) -> anyhow::Result<(f64, f64)> {
    let (mut api, mut ceil) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let plans: Vec<Vec<Value>> = (0..devices)
            .map(|_| (0..per_device).map(|b| batch(1 + b as i64 * 200)).collect())
            .collect();
        let users: Vec<String> = (0..devices)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let started = Instant::now();
        for r in join_all(users.iter().zip(&plans).map(|(u, p)| upload_batches(env, u, p))).await {
            r?;
        }
        api.push((devices * per_device * 200) as f64 / started.elapsed().as_secs_f64());
        let plans: Vec<Vec<Value>> = (0..devices)
            .map(|_| (0..per_device).map(|b| batch(1 + b as i64 * 200)).collect())
            .collect();
        ceil.push(ceiling::upload(&env.db_url, &plans).await?);
    }
    Ok((median(api), median(ceil)))
}

/// Rows per second paging a user's `rows` changes in pages of 1000, API vs ceiling.
async fn p2(env: &Env, batches: usize, repeats: usize) -> anyhow::Result<(f64, f64, usize)> {
    let user = uuid::Uuid::new_v4().simple().to_string();
    let plan: Vec<Value> = (0..batches).map(|b| batch(1 + b as i64 * 200)).collect();
    upload_batches(env, &user, &plan).await?;
    let reader = token(env, &user, "reader").await?;
    let (mut api, mut ceil, mut rows) = (Vec::new(), Vec::new(), 0);
    for _ in 0..repeats {
        let started = Instant::now();
        let (mut after, mut until, mut n) = (0_i64, 0_i64, 0usize);
        loop {
            let page: Value = env
                .http
                .get(format!(
                    "{}/sync/download?after={after}&limit=1000&until={until}",
                    env.base
                ))
                .bearer_auth(&reader)
                .send()
                .await?
                .json()
                .await?;
            n += page["changes"].as_array().context("changes")?.len();
            after = page["next_after"].as_i64().context("next_after")?;
            until = page["window_until"].as_i64().context("window_until")?;
            if !page["has_more"].as_bool().context("has_more")? {
                break;
            }
        }
        api.push(n as f64 / started.elapsed().as_secs_f64());
        rows = n;
        ceil.push(ceiling::download(&env.db_url, &format!("user-{user}")).await?);
    }
    Ok((median(api), median(ceil), rows))
}

/// p50/p99 milliseconds of single-change uploads and empty downloads.
async fn p6(env: &Env, samples: usize) -> anyhow::Result<[f64; 4]> {
    let user = uuid::Uuid::new_v4().simple().to_string();
    let t = token(env, &user, "latency").await?;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let pk = uuid::Uuid::new_v4().to_string();
        let body = json!({"changes": [{"source_change_id": i + 1, "schema": "business", "table": "users", "op": "INSERT", "pk": pk,
            "server_version": 0, "payload": {"id": pk, "name": "n", "email": "e"}}]});
        let s = Instant::now();
        env.http
            .post(format!("{}/sync/upload", env.base))
            .bearer_auth(&t)
            .body(body.to_string())
            .send()
            .await?
            .bytes()
            .await?;
        up.push(s.elapsed().as_secs_f64() * 1e3);
        let s = Instant::now();
        env.http
            .get(format!("{}/sync/download?after=999999999", env.base))
            .bearer_auth(&t)
            .send()
            .await?
            .bytes()
            .await?;
        down.push(s.elapsed().as_secs_f64() * 1e3);
    }
    Ok([
        percentile(up.clone(), 0.5),
        percentile(up, 0.99),
        percentile(down.clone(), 0.5),
        percentile(down, 0.99),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let short = args.iter().any(|a| a == "--short");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let (per_device, repeats, p2_batches, samples) = if short { (2, 1, 5, 20) } else { (10, 3, 100, 300) };

    let db_url = oversync_tests::pg::database("oversync_bench")?;
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../server-edge/demo/demo.toml");
    let mut cfg = oversync_server::Config::from_file(std::path::Path::new(demo))?;
    cfg.listen = "127.0.0.1:0".into();
    cfg.database_url = Some(db_url.clone());
    cfg.jwt_secret = Some("bench".into());
    cfg.pool_size = 32;
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

    eprintln!("P1: 1 device…");
    let (p1_one, p1_one_ceiling) = p1(&env, 1, per_device * 4, repeats).await?;
    eprintln!("P1: 32 devices…");
    let (p1_many, p1_many_ceiling) = p1(&env, 32, per_device, repeats).await?;
    eprintln!("P2: download…");
    let (p2_api, p2_ceiling, p2_rows) = p2(&env, p2_batches, repeats).await?;
    eprintln!("P6: latency…");
    let [up50, up99, down50, down99] = p6(&env, samples).await?;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;

    let results = json!({
        "mode": if short { "short" } else { "full" },
        "p1_upload_1_device": {"changes_per_s": p1_one, "ceiling": p1_one_ceiling, "ratio": p1_one / p1_one_ceiling},
        "p1_upload_32_devices": {"changes_per_s": p1_many, "ceiling": p1_many_ceiling, "ratio": p1_many / p1_many_ceiling},
        "p2_download": {"rows": p2_rows, "rows_per_s": p2_api, "ceiling": p2_ceiling, "ratio": p2_api / p2_ceiling},
        "p6_latency_ms_native": {"upload_p50": up50, "upload_p99": up99, "empty_download_p50": down50, "empty_download_p99": down99},
    });
    let table = format!(
        "| Measure | oversync | ceiling | ratio | goal |\n|---|---|---|---|---|\n\
         | P1 upload, 1 device (changes/s) | {p1_one:.0} | {p1_one_ceiling:.0} | {:.0}% | ≥ 50% |\n\
         | P1 upload, 32 devices (changes/s) | {p1_many:.0} | {p1_many_ceiling:.0} | {:.0}% | ≥ 50% |\n\
         | P2 download, pages of 1000 ({p2_rows} rows, rows/s) | {p2_api:.0} | {p2_ceiling:.0} | {:.0}% | ≥ 50% |\n\
         | P6 single-change upload p50 / p99 (ms, native) | {up50:.2} / {up99:.2} | | | |\n\
         | P6 empty download p50 / p99 (ms, native) | {down50:.2} / {down99:.2} | | | |\n",
        100.0 * p1_one / p1_one_ceiling,
        100.0 * p1_many / p1_many_ceiling,
        100.0 * p2_api / p2_ceiling,
    );
    println!("{table}");
    if let Some(out) = out {
        std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
        std::fs::write(std::path::Path::new(&out).with_extension("md"), &table)?;
    }
    Ok(())
}
