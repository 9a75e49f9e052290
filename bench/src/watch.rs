//! P9 watch (issue 21): what idle `/sync/watch` waiters cost the database, and how soon one commit reaches all
//! of them, with the native push (one `LISTEN` connection) and with the per-second poll (`watch_listen =
//! false`). Each mode gets an in-process server of its own that reaches PostgreSQL through a byte-counting
//! proxy: the bytes it sends while nobody writes are the database work of the waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oversync_tests::counting::CountingProxy;
use serde_json::{Value, json};

use crate::api::{Env, percentile, token};

/// One mode's numbers.
pub struct WatchRun {
    /// Bytes the server sent to PostgreSQL during the idle window.
    pub idle_bytes: u64,
    /// From the upload's start to each waiter's answer: p50 and the slowest, ms.
    pub wake_p50_ms: f64,
    /// The slowest waiter.
    pub wake_max_ms: f64,
}

/// `waiters` long-polls of one user, `idle` without writes, then one upload from another device.
pub async fn p9(db_url: &str, listen: bool, waiters: usize, idle: Duration) -> anyhow::Result<WatchRun> {
    let cfg: tokio_postgres::Config = db_url.parse()?;
    let port = cfg.get_ports()[0];
    let proxy = CountingProxy::start(format!("127.0.0.1:{port}").parse()?).await?;
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../server-edge/demo/demo.toml");
    let mut cfg = oversync_server::Config::from_file(std::path::Path::new(demo))?;
    cfg.listen = "127.0.0.1:0".into();
    cfg.database_url = Some(db_url.replace(&format!("127.0.0.1:{port}"), &proxy.addr.to_string()));
    cfg.jwt_secret = Some(crate::BENCH_SECRET.into());
    cfg.pool_size = 32;
    cfg.watch = true;
    cfg.watch_listen = listen;
    cfg.max_watches_per_user = 0;
    let bound = oversync_server::native::Bound::new(cfg).await?;
    let env = Env {
        base: format!("http://{}", bound.addr),
        db_url: db_url.to_owned(),
        http: reqwest::Client::new(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));

    let user = uuid::Uuid::new_v4().simple().to_string();
    let answered = Arc::new(Mutex::new(Vec::with_capacity(waiters)));
    let mut tasks = Vec::with_capacity(waiters);
    for i in 0..waiters {
        let t = token(&env, &user, &format!("tab-{i}")).await?;
        let (http, url, answered) = (
            env.http.clone(),
            format!("{}/sync/watch?after=0&timeout_s=60", env.base),
            answered.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r: Value = http.get(url).bearer_auth(t).send().await?.json().await?;
            answered.lock().unwrap().push(Instant::now());
            anyhow::ensure!(r["changed"] == true, "a waiter was not told: {r}");
            Ok(())
        }));
    }
    // Every waiter has looked once (or is polling) when the proxy has been quiet for a while, or after 10 s.
    let mut last = proxy.sent();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::mem::replace(&mut last, proxy.sent()) == last && answered.lock().unwrap().is_empty() {
            break;
        }
    }
    let before = proxy.sent();
    tokio::time::sleep(idle).await;
    let idle_bytes = proxy.sent() - before;

    let writer = token(&env, &user, "writer").await?;
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
        t.await??;
    }
    let wakes: Vec<f64> = answered
        .lock()
        .unwrap()
        .iter()
        .map(|at| at.saturating_duration_since(started).as_secs_f64() * 1e3)
        .collect();
    let _ = stop.send(());
    server.await??;
    Ok(WatchRun {
        idle_bytes,
        wake_p50_ms: percentile(wakes.clone(), 0.5),
        wake_max_ms: wakes.iter().copied().fold(0.0, f64::max),
    })
}
