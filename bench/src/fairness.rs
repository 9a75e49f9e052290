//! P8 fair share (issue 19): user B's download latency alone, and while user A runs parallel max-size uploads
//! from one token. Goal: B's p99 at most 2× its p99 alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::api::{Env, percentile, token, upload_batches};

/// The attacker's answers, counted by kind.
#[derive(Default)]
struct Answers {
    ok: AtomicU64,
    too_many: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
}

/// One request body of `n` upserts whose payloads are `payload_bytes` long (the same body is re-sent: after the
/// first it is a replay, which the server still reads, parses and validates whole).
fn big_body(n: usize, payload_bytes: usize) -> bytes::Bytes {
    let name = "n".repeat(payload_bytes.saturating_sub(100));
    let changes: Vec<Value> = (0..n)
        .map(|i| {
            let pk = uuid::Uuid::new_v4().to_string();
            json!({"source_change_id": i + 1, "schema": "business", "table": "users", "op": "INSERT", "pk": pk,
                   "server_version": 0, "payload": {"id": pk, "name": name, "email": "e", "created_at": 1}})
        })
        .collect();
    bytes::Bytes::from(json!({ "changes": changes }).to_string())
}

async fn downloads(env: &Env, token: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let s = Instant::now();
        let r = env
            .http
            .get(format!("{}/sync/download?after=0&limit=100", env.base))
            .bearer_auth(token)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "B's download answered {}", r.status());
        r.bytes().await?;
        out.push(s.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

/// `[alone p50, alone p99, attacked p50, attacked p99]` in ms, and the attacker's answers as JSON.
pub async fn p8(env: &Env, parallel: usize, payload_bytes: usize, samples: usize) -> anyhow::Result<([f64; 4], Value)> {
    let (a, b) = (
        uuid::Uuid::new_v4().simple().to_string(),
        uuid::Uuid::new_v4().simple().to_string(),
    );
    upload_batches(env, &b, "b", &[crate::api::batch(1)]).await?;
    let tb = token(env, &b, "b").await?;
    downloads(env, &tb, 20).await?; // warm-up
    let alone = downloads(env, &tb, samples).await?;

    let ta = Arc::new(token(env, &a, "a").await?);
    let body = big_body(200, payload_bytes);
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Answers::default());
    let honour = std::env::var("P8_HONOUR").is_ok();
    let attackers: Vec<_> = (0..parallel)
        .map(|_| {
            let (http, url, ta, body) = (
                env.http.clone(),
                format!("{}/sync/upload", env.base),
                ta.clone(),
                body.clone(),
            );
            let (stop, answers) = (stop.clone(), answers.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // Retry-After is ignored on purpose: this is the hostile tenant.
                    let r = http.post(&url).bearer_auth(ta.as_str()).body(body.clone()).send().await;
                    let counter = match r.as_ref().map(|r| r.status().as_u16()) {
                        Ok(200) => &answers.ok,
                        Ok(429) => &answers.too_many,
                        Ok(503) => &answers.busy,
                        _ => &answers.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let refused = r.as_ref().is_ok_and(|r| r.status() != 200);
                    if let Ok(r) = r {
                        let _ = r.bytes().await;
                    }
                    if honour && refused {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let attacked = downloads(env, &tb, samples).await;
    stop.store(true, Ordering::Relaxed);
    for t in attackers {
        let _ = t.await;
    }
    let attacked = attacked?;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let counts = json!({"ok": n(&answers.ok), "too_many_requests": n(&answers.too_many),
                        "server_busy": n(&answers.busy), "other": n(&answers.other)});
    Ok((
        [
            percentile(alone.clone(), 0.5),
            percentile(alone, 0.99),
            percentile(attacked.clone(), 0.5),
            percentile(attacked, 0.99),
        ],
        counts,
    ))
}
