//! P15 (`--only p15`, issue 37): what metrics cost. Two native server processes on the same database, one with
//! metrics off and one with them on (`OVERSYNC_METRICS_LISTEN`: the Prometheus recorder installed, every request
//! recorded, scraped every second as Prometheus would), measured in alternating rounds with P1's one-device upload
//! throughput and P6's single-change upload and empty download latency; medians over the rounds.
//! Goal: at most 3% less throughput and 0.05 ms more p50.

use std::time::Duration;

use oversync_tests::process::Server;

use crate::api::{Env, p1, p6};

/// Medians over the rounds, off then on.
pub struct P15 {
    pub rounds: usize,
    pub p1: [f64; 2],
    pub upload_p50: [f64; 2],
    pub download_p50: [f64; 2],
}

fn start(db_url: &str, metrics: Option<u16>) -> anyhow::Result<Server> {
    let root = oversync_tests::edge::repo_root();
    let demo = root.join("server-edge/demo/demo.toml");
    let bin = std::env::current_exe()?.with_file_name("oversync-server");
    let mut env = vec![
        ("DATABASE_URL", db_url.to_owned()),
        ("JWT_SECRET", crate::BENCH_SECRET.to_owned()),
        ("OVERSYNC_LISTEN", "127.0.0.1:0".to_owned()),
        ("OVERSYNC_DEV_SIGNIN", "true".to_owned()),
        ("OVERSYNC_POOL_SIZE", "32".to_owned()),
    ];
    if let Some(port) = metrics {
        env.push(("OVERSYNC_METRICS_LISTEN", format!("127.0.0.1:{port}")));
    }
    Server::start_native_file(&bin, &demo, &env)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn p15(db_url: &str, rounds: usize, per_device: usize, samples: usize) -> anyhow::Result<P15> {
    // Both servers run for the whole measure, so drift in the machine (other load, PostgreSQL's caches) hits
    // both alike; the rounds alternate which is measured first.
    let port = oversync_tests::free_port();
    let mut servers = Vec::new();
    for metrics in [None, Some(port)] {
        let url = db_url.to_owned();
        servers.push(tokio::task::spawn_blocking(move || start(&url, metrics)).await??);
    }
    let envs: Vec<Env> = servers
        .iter()
        .map(|s| Env {
            base: s.base_url.clone(),
            db_url: db_url.to_owned(),
            http: reqwest::Client::new(),
        })
        .collect();
    let scraper = tokio::spawn(async move {
        loop {
            let _ = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut runs: [Vec<[f64; 3]>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for on in order {
            let (throughput, _) = p1(&envs[on], 1, per_device, 1).await?;
            let [u50, _, d50, _] = p6(&envs[on], samples).await?;
            runs[on].push([throughput, u50, d50]);
        }
    }
    scraper.abort();
    drop(servers);
    let col = |on: usize, i: usize| median(runs[on].iter().map(|r| r[i]).collect());
    Ok(P15 {
        rounds,
        p1: [col(0, 0), col(1, 0)],
        upload_p50: [col(0, 1), col(1, 1)],
        download_p50: [col(0, 2), col(1, 2)],
    })
}

impl P15 {
    pub fn line(&self) -> String {
        format!(
            "P15 metrics off / on (native, {} alternating rounds): P1 1 device {:.0} / {:.0} changes/s (on = {:.1}% of off); \
             P6 upload p50 {:.3} / {:.3} ms ({:+.3} ms); empty download p50 {:.3} / {:.3} ms ({:+.3} ms)",
            self.rounds,
            self.p1[0],
            self.p1[1],
            100.0 * self.p1[1] / self.p1[0],
            self.upload_p50[0],
            self.upload_p50[1],
            self.upload_p50[1] - self.upload_p50[0],
            self.download_p50[0],
            self.download_p50[1],
            self.download_p50[1] - self.download_p50[0],
        )
    }
}
