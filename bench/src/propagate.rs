//! P11 with the native engine (issue 21): device A writes a row into its SQLite database and syncs at once (as
//! the browser host's scheduler does for an isolated write); device B holds a `/sync/stream` and syncs whenever
//! it is told a `top` above its cursor. Timed from just before A's local write to the moment B's database has
//! the row. The browser run (two Chromium profiles, OPFS) is `bench/browser/run.mjs --only p11`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oversync_client::transport::HttpTransport;
use oversync_client::{Engine, EngineConfig, TableConfig};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::api::{Env, percentile, token};
use crate::hydrate::SCHEMA;

/// `writes` isolated writes, `gap` apart: p50 and p99 of A's write → B has it, ms.
pub async fn p11_native(env: &Env, writes: usize, gap: Duration) -> anyhow::Result<(f64, f64)> {
    let user = format!("p11{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(format!("oversync-bench-p11-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let device = |name: &str| -> anyhow::Result<Engine<HttpTransport>> {
        let conn = rusqlite::Connection::open(dir.join(format!("{name}.db")))?;
        conn.execute_batch(SCHEMA)?;
        let cfg = EngineConfig::new("business", vec![TableConfig::new("users"), TableConfig::new("posts")]);
        Ok(Engine::open(conn, cfg, HttpTransport::new(env.base.clone()))?)
    };
    let (mut a, mut b) = (device("a")?, device("b")?);
    for engine in [&mut a, &mut b] {
        let t = token(env, &user, &engine.source_id()?).await?;
        engine.sign_in(&format!("user-{user}"), t)?;
        engine.sync().await?;
    }
    let b_token = token(env, &user, &b.source_id()?).await?;
    let mut req = format!("{}/sync/stream", env.base.replace("http://", "ws://")).into_client_request()?;
    let offer = oversync_protocol::wire::stream_offer(&b_token, &b.source_id()?).join(", ");
    req.headers_mut().insert("sec-websocket-protocol", offer.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;

    let mut latencies = Vec::with_capacity(writes);
    for i in 0..writes {
        let author = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        a.conn().execute_batch(&format!(
            "BEGIN; INSERT INTO users (id, name, email) VALUES ('{author}', 'A', 'a@example.com');
             INSERT INTO posts (id, title, content, author_id) VALUES ('{}', 'w{i}', 'x', '{author}'); COMMIT;",
            uuid::Uuid::new_v4()
        ))?;
        // A uploads while B waits for its top; both in this task, as two hosts would each in their own.
        let upload = a.sync();
        let told = async {
            loop {
                let Some(message) = ws.next().await else {
                    anyhow::bail!("the stream closed")
                };
                let Message::Text(text) = message? else { continue };
                let top: Value = serde_json::from_str(&text)?;
                if top["top"].as_i64().unwrap_or(0) > b.status()?.cursor {
                    b.sync().await?;
                    let seen: i64 =
                        b.conn()
                            .query_row("SELECT count(*) FROM posts WHERE title = ?1", [format!("w{i}")], |r| {
                                r.get(0)
                            })?;
                    if seen == 1 {
                        return Ok::<_, anyhow::Error>(started.elapsed());
                    }
                }
            }
        };
        let (uploaded, told) = futures_util::future::join(upload, told).await;
        uploaded?;
        latencies.push(told?.as_secs_f64() * 1e3);
        tokio::time::sleep(gap).await;
    }
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
    Ok((percentile(latencies.clone(), 0.5), percentile(latencies, 0.99)))
}
