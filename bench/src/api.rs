//! The measured operations against the sync server's HTTP API: P1 uploads, P2 paged downloads, P6 latency.

use std::time::Instant;

use anyhow::Context;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::ceiling;

pub struct Env {
    pub base: String,
    pub db_url: String,
    pub http: reqwest::Client,
}

pub async fn token(env: &Env, user: &str, device: &str) -> anyhow::Result<String> {
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
pub fn batch(first_scid: i64) -> Value {
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

pub async fn upload_batches(env: &Env, user: &str, device: &str, batches: &[Value]) -> anyhow::Result<()> {
    let t = token(env, user, device).await?;
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

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Changes per second of `devices` concurrent devices each uploading `per_device` batches, API vs ceiling.
pub async fn p1(env: &Env, devices: usize, per_device: usize, repeats: usize) -> anyhow::Result<(f64, f64)> {
    let (mut api, mut ceil) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let plans: Vec<Vec<Value>> = (0..devices)
            .map(|_| (0..per_device).map(|b| batch(1 + b as i64 * 200)).collect())
            .collect();
        let users: Vec<String> = (0..devices)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let started = Instant::now();
        for r in join_all(
            users
                .iter()
                .zip(&plans)
                .map(|(u, p)| upload_batches(env, u, "bench", p)),
        )
        .await
        {
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
pub async fn p2(env: &Env, batches: usize, repeats: usize) -> anyhow::Result<(f64, f64, usize)> {
    let user = uuid::Uuid::new_v4().simple().to_string();
    let plan: Vec<Value> = (0..batches).map(|b| batch(1 + b as i64 * 200)).collect();
    upload_batches(env, &user, "bench", &plan).await?;
    let reader = token(env, &user, "reader").await?;
    let (mut api, mut ceil, mut rows) = (Vec::new(), Vec::new(), 0);
    for _ in 0..repeats {
        let started = Instant::now();
        let (n, _) = download_all(env, &reader, 0, false).await?;
        api.push(n as f64 / started.elapsed().as_secs_f64());
        rows = n;
        ceil.push(ceiling::download(&env.db_url, &format!("user-{user}")).await?);
    }
    Ok((median(api), median(ceil), rows))
}

/// p50/p99 milliseconds of single-change uploads and empty downloads.
pub async fn p6(env: &Env, samples: usize) -> anyhow::Result<[f64; 4]> {
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

/// What the bench reads of a download page: the paging fields; the changes are counted, not parsed (the server's
/// work is measured, not a client's JSON parsing, which the ceiling does not do either).
#[derive(serde::Deserialize)]
struct Page {
    changes: Vec<serde::de::IgnoredAny>,
    has_more: bool,
    next_after: i64,
    window_until: i64,
}

/// Pages from `after` until the window is drained: `(rows, requests)`.
pub async fn download_all(
    env: &Env,
    token: &str,
    mut after: i64,
    include_self: bool,
) -> anyhow::Result<(usize, usize)> {
    let (mut until, mut rows, mut requests) = (0_i64, 0usize, 0usize);
    loop {
        let body = env
            .http
            .get(format!(
                "{}/sync/download?after={after}&limit=1000&until={until}&include_self={include_self}",
                env.base
            ))
            .bearer_auth(token)
            .send()
            .await?
            .bytes()
            .await?;
        let page: Page = serde_json::from_slice(&body).context("download page")?;
        requests += 1;
        rows += page.changes.len();
        after = page.next_after;
        until = page.window_until;
        if !page.has_more {
            return Ok((rows, requests));
        }
    }
}
