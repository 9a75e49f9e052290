//! P10 stream (issue 21): `streams` open `/sync/stream` WebSockets of one user sit idle, then another device
//! uploads one change. Measured: the bytes the server sends PostgreSQL while idle (through a byte-counting
//! proxy), the server's memory per open stream (native: the server is a process of its own, its RSS read before
//! and after opening), and how soon the commit's `{"top": N}` reaches every stream. Natively the hub is the
//! `LISTEN` connection; under workerd (`wrangler dev`) it is the user's Durable Object.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oversync_tests::counting::CountingProxy;
use oversync_tests::process::Server;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::api::{Env, percentile, token};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The native binary.
    Native,
    /// The Worker under `wrangler dev`.
    Edge,
}

/// One run's numbers.
pub struct StreamRun {
    /// Bytes the server sent PostgreSQL while the streams sat idle.
    pub idle_bytes: u64,
    /// Server RSS growth per open stream, bytes (native only).
    pub rss_per_stream: Option<f64>,
    /// From the upload's start to each stream's `top`: p50 and the slowest, ms.
    pub told_p50_ms: f64,
    /// The slowest stream.
    pub told_max_ms: f64,
    /// How long opening all the streams took.
    pub open_s: f64,
}

fn rss_kib(server: &Server) -> anyhow::Result<u64> {
    server.rss_kib()
}

/// Starts the server on `db_url` through `proxy`.
fn start(front: Front, db_url: &str, streams: usize) -> anyhow::Result<Server> {
    let root = oversync_tests::edge::repo_root();
    let demo = root.join("server-edge/demo/demo.toml");
    match front {
        Front::Native => {
            let bin = std::env::current_exe()?.with_file_name("oversync-server");
            let env = [
                ("DATABASE_URL", db_url.to_owned()),
                ("JWT_SECRET", crate::BENCH_SECRET.to_owned()),
                ("OVERSYNC_LISTEN", "127.0.0.1:0".to_owned()),
                ("OVERSYNC_DEV_SIGNIN", "true".to_owned()),
                ("OVERSYNC_MAX_WATCHES_PER_USER", (streams + 1).to_string()),
                ("OVERSYNC_POOL_SIZE", "32".to_owned()),
            ];
            Server::start_native_file(&bin, &demo, &env)
        }
        Front::Edge => {
            let mut vars = oversync_tests::edge::worker_vars(&demo, crate::BENCH_SECRET)?;
            vars.push(("OVERSYNC_DEV_SIGNIN", "true".into()));
            vars.push(("OVERSYNC_MAX_WATCHES_PER_USER", (streams + 1).to_string()));
            oversync_tests::edge::start_wrangler(db_url, &vars)
        }
    }
}

/// `streams` streams of one user, `idle` without writes, then one upload from another device.
pub async fn p10(db_url: &str, front: Front, streams: usize, idle: Duration) -> anyhow::Result<StreamRun> {
    let cfg: tokio_postgres::Config = db_url.parse()?;
    let port = cfg.get_ports()[0];
    let proxy = CountingProxy::start(format!("127.0.0.1:{port}").parse()?).await?;
    let via_proxy = db_url.replace(&format!("127.0.0.1:{port}"), &proxy.addr.to_string());
    // Started off this runtime's threads, which the proxy needs meanwhile.
    let server = tokio::task::spawn_blocking(move || start(front, &via_proxy, streams)).await??;
    let env = Env {
        base: server.base_url.clone(),
        db_url: db_url.to_owned(),
        http: reqwest::Client::new(),
    };
    let user = uuid::Uuid::new_v4().simple().to_string();
    let writer = token(&env, &user, "writer").await?;
    let rss_before = rss_kib(&server).ok().filter(|_| front == Front::Native);

    let opened = Instant::now();
    let told = Arc::new(Mutex::new(Vec::with_capacity(streams)));
    let url = format!("{}/sync/stream", env.base.replace("http://", "ws://"));
    let mut tasks = Vec::with_capacity(streams);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(streams.max(1));
    for i in 0..streams {
        let device = format!("tab-{i}");
        let t = token(&env, &user, &device).await?;
        let mut req = url.as_str().into_client_request()?;
        let offer = oversync_protocol::wire::stream_offer(&t, &device).join(", ");
        req.headers_mut().insert("sec-websocket-protocol", offer.parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        let (told, ready) = (told.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut first = true;
            while let Some(message) = ws.next().await {
                let Message::Text(text) = message? else { continue };
                let top: Value = serde_json::from_str(&text)?;
                anyhow::ensure!(top["top"].is_i64(), "not a top: {text}");
                if std::mem::take(&mut first) {
                    let _ = ready.send(()).await;
                } else {
                    told.lock().unwrap().push(Instant::now());
                    return Ok(());
                }
            }
            anyhow::bail!("a stream closed before it was told")
        }));
    }
    for _ in 0..streams {
        ready_rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("a stream ended early"))?;
    }
    let open_s = opened.elapsed().as_secs_f64();
    // The looks at open are done when the proxy has been quiet for a while.
    let mut last = proxy.sent();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::mem::replace(&mut last, proxy.sent()) == last {
            break;
        }
    }
    let before = proxy.sent();
    tokio::time::sleep(idle).await;
    let idle_bytes = proxy.sent() - before;
    let rss_after = rss_kib(&server).ok().filter(|_| front == Front::Native);

    let pk = uuid::Uuid::new_v4().to_string();
    let body = json!({"last_server_seq_seen": 0, "changes": [{"source_change_id": 1, "schema": "business",
        "table": "users", "op": "INSERT", "pk": pk, "server_version": 0,
        "payload": {"id": pk, "name": "w", "email": "e", "created_at": 1767225600}}]});
    let started = Instant::now();
    let r = env
        .http
        .post(format!("{}/sync/upload", env.base))
        .bearer_auth(writer)
        .body(body.to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "upload answered {}", r.status());
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t).await???;
    }
    let times: Vec<f64> = told
        .lock()
        .unwrap()
        .iter()
        .map(|at| at.saturating_duration_since(started).as_secs_f64() * 1e3)
        .collect();
    tokio::task::spawn_blocking(move || drop(server)).await?;
    Ok(StreamRun {
        idle_bytes,
        rss_per_stream: rss_before
            .zip(rss_after)
            .map(|(b, a)| (a.saturating_sub(b) * 1024) as f64 / streams.max(1) as f64),
        told_p50_ms: percentile(times.clone(), 0.5),
        told_max_ms: times.iter().copied().fold(0.0, f64::max),
        open_s,
    })
}
