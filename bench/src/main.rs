//! `oversync-bench [--short] [--out FILE] [--only p1|p2|p2e|p3|p3e|p3l|p4|p6|p8|p9|p10|p11|p12|p13|p14|p15]`: server throughput and latency against ceilings measured side by side
//! in the same run, on the same database (issue: benchmarks). Medians of repeated runs; ratios, not lone times.
//!
//! - P1 upload: batches of 200 upserts (100 users + 100 posts referencing them, children first), 1 device and
//!   32 concurrent devices. Ceiling: the same rows written to the same sync tables by one hand-written set-based
//!   statement per batch.
//! - P2 download: pages of 1000. Ceiling: the bare SELECT of the same rows serialised to JSON in one process.
//! - P3 (native engine): a new device hydrating 100k rows, end to end and the engine alone (pages from memory);
//!   P4 (native): capture triggers vs a plain table.
//! - P6 latency: p50/p99 of a single-change upload and of an empty download, native and under workerd.
//! - P8 fair share: user B's download p50/p99 alone and while user A runs 64 parallel max-size uploads.
//! - Growth: P1/P2 with 10k, 100k and 1M rows already in the user's log, and a window full of own changes.
//! - P12 (`--only p12`): shared data, a download for a user in 1, 10 and 1,000 scopes and a scope's backfill.
//! - P13 backend writes (`backend.rs`), P14 bounded history (`history.rs`, on a database of its own).
//! - P15 (`--only p15`): metrics off vs on, native server processes in alternating rounds (`metrics_cost.rs`).
//!
//! The browser measures (P3 in OPFS, P4 in wasm, P5, P7) are `bench/browser/run.mjs`; `bench/run` runs both.

use std::time::Duration;

use serde_json::json;

mod api;
mod backend;
mod capture;
mod ceiling;
mod fairness;
mod growth;
mod history;
mod hydrate;
mod hydrate_local;
mod metrics_cost;
mod propagate;
mod scopes;
mod stream;
mod watch;

use api::{Env, p1, p2, p6};

/// P6 against the Worker under `wrangler dev` on the same database, if the Worker is built.
async fn p6_edge(db_url: &str, samples: usize) -> anyhow::Result<Option<[f64; 4]>> {
    let root = oversync_tests::edge::repo_root();
    if !root.join("server-edge/build/worker/shim.mjs").exists() {
        eprintln!("P6 under workerd: skipped (build the Worker first: server-edge/build-worker.sh)");
        return Ok(None);
    }
    let mut vars = oversync_tests::edge::worker_vars(&root.join("server-edge/demo/demo.toml"), BENCH_SECRET)?;
    vars.push(("OVERSYNC_DEV_SIGNIN", "true".into()));
    let url = db_url.to_owned();
    let server = tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.clone())).collect();
        oversync_tests::edge::start_wrangler(&url, &vars)
    })
    .await??;
    let env = Env {
        base: server.base_url.clone(),
        db_url: db_url.to_owned(),
        http: reqwest::Client::new(),
    };
    p6(&env, 5).await?; // warm-up: the isolate starts and prepares the schema
    let r = p6(&env, samples).await?;
    tokio::task::spawn_blocking(move || drop(server)).await?;
    Ok(Some(r))
}

fn p10_line(front: stream::Front, streams: usize, idle: Duration, r: &stream::StreamRun) -> String {
    format!(
        "P10 {front:?}: {streams} streams opened in {:.1} s, sent PostgreSQL {} bytes idle in {idle:?}{}; one commit told them in {:.1} ms (p50), {:.1} ms (slowest)",
        r.open_s,
        r.idle_bytes,
        r.rss_per_stream.map_or(String::new(), |b| format!(
            ", server memory {:.1} KiB per stream",
            b / 1024.0
        )),
        r.told_p50_ms,
        r.told_max_ms
    )
}

/// The JWT secret of the benchmarked servers (at least the 32 bytes the server requires).
const BENCH_SECRET: &str = "bench-secret-of-at-least-32-bytes";

/// The delay the fault proxy adds to every request in the P3-over-a-link measure (a round trip to a nearby region).
const LINK_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

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
    // `--only p4` (no server needed) / `--only p1|p3`: one measure alone, for profiling (`perf record`).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // `--only p3e`: the client's side of a hydration alone (no server).
    if only.as_deref() == Some("p3e") {
        for _ in 0..3 {
            println!(
                "P3 engine alone: {:.0} rows/s",
                hydrate_local::p3_engine(100_000).await?
            );
        }
        return Ok(());
    }
    // `--only p2e`: the client applying download pages alone (no server), 4 KiB vs 16 KiB database pages.
    if only.as_deref() == Some("p2e") {
        for _ in 0..3 {
            let (small, large) = (
                hydrate_local::p2_engine(20_000, 4096).await?,
                hydrate_local::p2_engine(20_000, 16384).await?,
            );
            println!("P2 engine alone, download pages: {small:.0} rows/s (4 KiB pages), {large:.0} (16 KiB)");
        }
        return Ok(());
    }
    if only.as_deref() == Some("p4") {
        let r = capture::p4(10_000, 9)?;
        println!(
            "P4 native: captured {:.1} ms ({:.2}× plain, {:.2}× floor), floor {:.1} ms ({:.2}×), plain {:.1} ms; fold {:.1} ms",
            r.captured,
            r.captured / r.plain,
            r.captured / r.floor,
            r.floor,
            r.floor / r.plain,
            r.plain,
            r.fold
        );
        return Ok(());
    }

    let db_url = oversync_tests::pg::database("oversync_bench")?;
    let (p9_waiters, p9_idle) = if short {
        (20, Duration::from_secs(2))
    } else {
        (200, Duration::from_secs(8))
    };
    let (p10_streams, p10_idle) = if short {
        (20, Duration::from_secs(1))
    } else {
        (1000, Duration::from_secs(60))
    };
    if only.as_deref() == Some("p10") {
        // `P10_STREAMS=10000 P10_FRONTS=native`: the native server at ten times the scale.
        let streams = std::env::var("P10_STREAMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(p10_streams);
        let idle = std::env::var("P10_IDLE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(p10_idle, Duration::from_secs);
        let native_only = std::env::var("P10_FRONTS").is_ok_and(|m| m == "native");
        for front in [stream::Front::Native, stream::Front::Edge] {
            if native_only && front == stream::Front::Edge {
                continue;
            }
            let r = stream::p10(&db_url, front, streams, idle).await?;
            println!("{}", p10_line(front, streams, idle, &r));
        }
        return Ok(());
    }
    if only.as_deref() == Some("p9") {
        // `P9_WAITERS=1000 P9_MODES=push`: the fan-out at a larger scale (polling 1,000 waiters takes minutes).
        let p9_waiters = std::env::var("P9_WAITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(p9_waiters);
        let push_only = std::env::var("P9_MODES").is_ok_and(|m| m == "push");
        for listen in [true, false].into_iter().filter(|l| *l || !push_only) {
            let r = watch::p9(&db_url, listen, p9_waiters, p9_idle).await?;
            println!(
                "P9 native {}: {p9_waiters} idle waiters sent PostgreSQL {} bytes in {p9_idle:?}; one commit told them in {:.1} ms (p50), {:.1} ms (slowest)",
                if listen {
                    "push (LISTEN)"
                } else {
                    "poll (watch_listen = false)"
                },
                r.idle_bytes,
                r.wake_p50_ms,
                r.wake_max_ms
            );
        }
        return Ok(());
    }
    if only.as_deref() == Some("p15") {
        // `P15_ROUNDS=n`: more alternating rounds (default 6; 2 with --short).
        let rounds = std::env::var("P15_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if short { 2 } else { 6 });
        let r = metrics_cost::p15(&db_url, rounds, per_device * 10, samples).await?;
        println!("{}", r.line());
        return Ok(());
    }
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../server-edge/demo/demo.toml");
    let mut cfg = oversync_server::Config::from_file(std::path::Path::new(demo))?;
    cfg.listen = "127.0.0.1:0".into();
    cfg.database_url = Some(db_url.clone());
    cfg.jwt_secret = Some(BENCH_SECRET.into());
    cfg.pool_size = 32;
    let server_cfg = cfg.clone();
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
    if only.as_deref() == Some("p1") {
        let (api, ceiling) = p1(&env, 1, per_device * 4, repeats).await?;
        println!(
            "P1 native, 1 device: {api:.0} / {ceiling:.0} changes/s = {:.0}%",
            100.0 * api / ceiling
        );
        return Ok(());
    }
    if only.as_deref() == Some("p6") {
        let [u50, u99, d50, d99] = p6(&env, samples).await?;
        println!("P6 native: upload {u50:.2} / {u99:.2} ms, empty download {d50:.2} / {d99:.2} ms (p50 / p99)");
        if let Some([u50, u99, d50, d99]) = p6_edge(&env.db_url, samples).await? {
            println!("P6 workerd: upload {u50:.2} / {u99:.2} ms, empty download {d50:.2} / {d99:.2} ms (p50 / p99)");
        }
        return Ok(());
    }
    let (p8_parallel, p8_payload) = if short { (8, 16 << 10) } else { (64, 262_144) };
    if only.as_deref() == Some("p8") {
        let ([a50, a99, b50, b99], counts) = fairness::p8(&env, p8_parallel, p8_payload, samples).await?;
        println!(
            "P8 native: B's download alone {a50:.2} / {a99:.2} ms, under A's {p8_parallel} parallel uploads {b50:.2} / {b99:.2} ms (p50 / p99) = {:.2}× at p99; A's answers {counts}",
            b99 / a99
        );
        return Ok(());
    }
    let p11_writes = if short { 3 } else { 40 };
    if only.as_deref() == Some("p11") {
        let (p50, p99) = propagate::p11_native(&env, p11_writes, Duration::from_secs(1)).await?;
        println!("P11 native engines: A's write → B has it over /sync/stream, {p50:.1} / {p99:.1} ms (p50 / p99)");
        return Ok(());
    }
    if only.as_deref() == Some("p2") {
        let (api, ceiling, rows) = p2(&env, p2_batches, repeats).await?;
        println!(
            "P2 native, {rows} rows: {api:.0} / {ceiling:.0} rows/s = {:.0}%",
            100.0 * api / ceiling
        );
        return Ok(());
    }
    if only.as_deref() == Some("p3l") {
        let (one, two) = hydrate::p3_latency(&env, 100, LINK_DELAY).await?;
        println!("P3 native over a 20 ms link: {one:.0} rows/s (one page in flight), {two:.0} (two)");
        return Ok(());
    }
    if only.as_deref() == Some("p3") {
        let (rows, rate) = hydrate::p3_native(&env, 500).await?;
        println!("P3 native: {rows} rows, {rate:.0} rows/s");
        return Ok(());
    }
    if only.as_deref() == Some("p14") {
        let p14 = history::p14_own(&server_cfg, short).await?;
        print!("{}", p14.table());
        return Ok(());
    }
    if only.as_deref() == Some("p13") {
        let p13 = backend::p13(&env, &server_cfg, short).await?;
        print!("{}", p13.table());
        return Ok(());
    }
    if only.as_deref() == Some("p12") {
        let sizes: &[usize] = if short { &[1, 10] } else { &[1, 10, 1000] };
        for (n, top50, top99, page, rows) in scopes::p12_download(&env, sizes, samples).await? {
            let who = if n == 0 {
                "classic, own log".to_owned()
            } else {
                format!("{n} scopes")
            };
            println!(
                "P12 download, {who}: at the top {top50:.2} / {top99:.2} ms (p50 / p99), first page of {rows} rows {page:.1} ms (p50)"
            );
        }
        let rows = if short { 2_000 } else { 10_000 };
        for _ in 0..if short { 1 } else { 3 } {
            println!(
                "P12 backfill of a joined scope, native engine: {:.0} rows/s",
                scopes::p12_backfill(&env, rows).await?
            );
        }
        return Ok(());
    }

    eprintln!("P1: 1 device…");
    let (p1_one, p1_one_ceiling) = p1(&env, 1, per_device * 4, repeats).await?;
    eprintln!("P1: 32 devices…");
    let (p1_many, p1_many_ceiling) = p1(&env, 32, per_device, repeats).await?;
    eprintln!("P2: download…");
    let (p2_api, p2_ceiling, p2_rows) = p2(&env, p2_batches, repeats).await?;
    eprintln!("P6: latency…");
    let [up50, up99, down50, down99] = p6(&env, samples).await?;
    eprintln!("P8: fair share under one tenant's parallel uploads…");
    let ([p8a50, p8a99, p8b50, p8b99], p8_counts) = fairness::p8(&env, p8_parallel, p8_payload, samples).await?;
    eprintln!("P9: idle watch waiters and one commit's fan-out, push vs poll…");
    let p9_push = watch::p9(&env.db_url, true, p9_waiters, p9_idle).await?;
    let p9_poll = watch::p9(&env.db_url, false, p9_waiters, p9_idle).await?;
    eprintln!("P10: idle /sync/stream WebSockets and one commit's fan-out, native (and workerd in the full run)…");
    let mut p10 = vec![(
        stream::Front::Native,
        stream::p10(&env.db_url, stream::Front::Native, p10_streams, p10_idle).await?,
    )];
    let worker_built = oversync_tests::edge::repo_root()
        .join("server-edge/build/worker/shim.mjs")
        .exists();
    if !short && worker_built {
        p10.push((
            stream::Front::Edge,
            stream::p10(&env.db_url, stream::Front::Edge, p10_streams, p10_idle).await?,
        ));
    }
    eprintln!("P11: propagation between two native engines over /sync/stream…");
    let (p11_p50, p11_p99) = propagate::p11_native(&env, p11_writes, Duration::from_secs(1)).await?;
    eprintln!("P3 (native engine): hydration…");
    let (p3_rows, p3_rate) = hydrate::p3_native(&env, if short { 10 } else { 500 }).await?;
    eprintln!("P3 (native engine) over a 20 ms link, one page request in flight vs two…");
    let p3l_rows = if short { 2_000 } else { 20_000 };
    let (p3l_one, p3l_two) = hydrate::p3_latency(&env, p3l_rows / 200, LINK_DELAY).await?;
    eprintln!("P3 (native engine alone, pages from memory)…");
    let p3e_rows = if short { 2_000 } else { 100_000 };
    let mut p3e = Vec::new();
    for _ in 0..if short { 1 } else { 3 } {
        p3e.push(hydrate_local::p3_engine(p3e_rows).await?);
    }
    let p3e_rate = api::median(p3e);
    eprintln!("P2 (native engine alone, download pages from memory), 4 KiB and 16 KiB pages…");
    let p2e_rows = if short { 2_000 } else { 20_000 };
    let (mut p2e_small, mut p2e_large) = (Vec::new(), Vec::new());
    for _ in 0..if short { 1 } else { 3 } {
        p2e_small.push(hydrate_local::p2_engine(p2e_rows, 4096).await?);
        p2e_large.push(hydrate_local::p2_engine(p2e_rows, 16384).await?);
    }
    let (p2e_small, p2e_large) = (api::median(p2e_small), api::median(p2e_large));
    eprintln!("P4 (native): capture overhead…");
    let p4_rows = if short { 1_000 } else { 10_000 };
    // Medians of 15: the plain baseline (~15-25 ms including a commit) moves by half between repeats here.
    let p4 = capture::p4(p4_rows, if short { 1 } else { 15 })?;
    let sizes: &[i64] = if short { &[1_000] } else { &[10_000, 100_000, 1_000_000] };
    let growth = growth::growth(&env, sizes, if short { 1 } else { 10 }).await?;
    eprintln!("P13: backend writes (capture of plain SQL, adopt)…");
    let p13 = backend::p13(&env, &server_cfg, short).await?;
    eprintln!("P14: bounded history (compaction, sizes, a steady workload)…");
    let p14 = history::p14_own(&server_cfg, short).await?;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    eprintln!("P6 under workerd…");
    let edge = p6_edge(&env.db_url, samples).await?;

    let mut results = json!({
        "mode": if short { "short" } else { "full" },
        "p1_upload_1_device": {"changes_per_s": p1_one, "ceiling": p1_one_ceiling, "ratio": p1_one / p1_one_ceiling},
        "p1_upload_32_devices": {"changes_per_s": p1_many, "ceiling": p1_many_ceiling, "ratio": p1_many / p1_many_ceiling},
        "p2_download": {"rows": p2_rows, "rows_per_s": p2_api, "ceiling": p2_ceiling, "ratio": p2_api / p2_ceiling},
        "p6_latency_ms_native": {"upload_p50": up50, "upload_p99": up99, "empty_download_p50": down50, "empty_download_p99": down99},
        "p8_fair_share_ms": {"parallel_uploads": p8_parallel, "payload_bytes": p8_payload,
            "alone_p50": p8a50, "alone_p99": p8a99, "attacked_p50": p8b50, "attacked_p99": p8b99,
            "ratio_p99": p8b99 / p8a99, "attacker_answers": p8_counts},
        "p9_watch": {"waiters": p9_waiters, "idle_s": p9_idle.as_secs(),
            "push": {"idle_bytes_to_postgres": p9_push.idle_bytes, "wake_p50_ms": p9_push.wake_p50_ms, "wake_max_ms": p9_push.wake_max_ms},
            "poll": {"idle_bytes_to_postgres": p9_poll.idle_bytes, "wake_p50_ms": p9_poll.wake_p50_ms, "wake_max_ms": p9_poll.wake_max_ms}},
        "p3_native_hydration": {"rows": p3_rows, "rows_per_s": p3_rate},
        "p3_native_engine_alone": {"rows": p3e_rows, "rows_per_s": p3e_rate},
        "p2_native_engine_alone": {"rows": p2e_rows, "rows_per_s_4k_pages": p2e_small, "rows_per_s_16k_pages": p2e_large},
        "p3_native_over_20ms_link": {"rows": p3l_rows, "one_in_flight_rows_per_s": p3l_one,
            "two_in_flight_rows_per_s": p3l_two, "ratio": p3l_two / p3l_one},
        "p4_native_capture": {"rows": p4_rows, "plain_ms": p4.plain, "with_triggers_ms": p4.captured, "ratio": p4.captured / p4.plain,
            "floor_ms": p4.floor, "floor_ratio": p4.floor / p4.plain, "captured_over_floor": p4.captured / p4.floor,
            "fold_ms": p4.fold},
        "growth": growth,
        "p13_backend_writes": p13.json(),
        "p14_history": p14.json(),
    });
    let mut table = format!(
        "| Measure | oversync | ceiling | ratio | goal |\n|---|---|---|---|---|\n\
         | P1 upload, 1 device (changes/s) | {p1_one:.0} | {p1_one_ceiling:.0} | {:.0}% | ≥ 50% |\n\
         | P1 upload, 32 devices (changes/s) | {p1_many:.0} | {p1_many_ceiling:.0} | {:.0}% | ≥ 50% |\n\
         | P2 download, pages of 1000 ({p2_rows} rows, rows/s) | {p2_api:.0} | {p2_ceiling:.0} | {:.0}% | ≥ 50% |\n\
         | P6 single-change upload p50 / p99 (ms, native) | {up50:.2} / {up99:.2} | | | |\n\
         | P6 empty download p50 / p99 (ms, native) | {down50:.2} / {down99:.2} | | | |\n\
         | P8 user B's download p50 / p99 (ms): alone → under A's {p8_parallel} parallel {p8_payload}-byte-payload uploads | {p8a50:.2} / {p8a99:.2} → {p8b50:.2} / {p8b99:.2} | | {:.2}× (p99) | ≤ 2× |\n",
        100.0 * p1_one / p1_one_ceiling,
        100.0 * p1_many / p1_many_ceiling,
        100.0 * p2_api / p2_ceiling,
        p8b99 / p8a99,
    );
    table += &format!(
        "| P9 {p9_waiters} idle `/sync/watch` waiters of one user: bytes sent to PostgreSQL in {}s, push (LISTEN) / poll | {} / {} | | | 0 (push) |\n\
         | P9 one commit → all {p9_waiters} waiters told, p50 / slowest (ms), push / poll | {:.1} / {:.1} · {:.1} / {:.1} | | | ≤ 300 (push) |\n",
        p9_idle.as_secs(),
        p9_push.idle_bytes,
        p9_poll.idle_bytes,
        p9_push.wake_p50_ms,
        p9_push.wake_max_ms,
        p9_poll.wake_p50_ms,
        p9_poll.wake_max_ms,
    );
    results["p11_native_engines_ms"] = json!({"writes": p11_writes, "p50": p11_p50, "p99": p11_p99});
    table += &format!(
        "| P11 propagation between two native engines over `/sync/stream`: A's write → B has it, p50 / p99 (ms) | {p11_p50:.1} / {p11_p99:.1} | | | ≤ 100 (p50) |\n"
    );
    for (front, r) in &p10 {
        results[format!("p10_stream_{front:?}").to_lowercase()] = json!({"streams": p10_streams, "idle_s": p10_idle.as_secs(),
            "open_s": r.open_s, "idle_bytes_to_postgres": r.idle_bytes, "rss_bytes_per_stream": r.rss_per_stream,
            "told_p50_ms": r.told_p50_ms, "told_max_ms": r.told_max_ms});
        table += &format!(
            "| P10 {p10_streams} idle `/sync/stream`s of one user ({front:?}): bytes to PostgreSQL in {}s · server memory per stream | {} · {} | | | 0 |\n\
             | P10 one commit → all {p10_streams} streams told, p50 / slowest (ms, {front:?}) | {:.1} / {:.1} | | | ≤ 300 |\n",
            p10_idle.as_secs(),
            r.idle_bytes,
            r.rss_per_stream
                .map_or("—".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
            r.told_p50_ms,
            r.told_max_ms,
        );
    }
    if let Some([eu50, eu99, ed50, ed99]) = edge {
        results["p6_latency_ms_workerd"] =
            json!({"upload_p50": eu50, "upload_p99": eu99, "empty_download_p50": ed50, "empty_download_p99": ed99});
        table += &format!(
            "| P6 single-change upload p50 / p99 (ms, workerd) | {eu50:.2} / {eu99:.2} | | | |\n\
             | P6 empty download p50 / p99 (ms, workerd) | {ed50:.2} / {ed99:.2} | | | |\n"
        );
    }
    table += &format!(
        "| P3 hydration, native engine ({p3_rows} rows, rows/s) | {p3_rate:.0} | | | ≥ 50000 |\n\
         | P3 over a 20 ms link, native ({p3l_rows} rows; one page request in flight → two, rows/s) | {p3l_one:.0} → {p3l_two:.0} | | {:.2}× | |\n\
         | P3 the engine alone: snapshot pages from memory ({p3e_rows} rows, rows/s) | {p3e_rate:.0} | | | |\n\
         | P2 the engine alone: download pages from memory ({p2e_rows} rows; 4 KiB / 16 KiB pages, rows/s) | {p2e_small:.0} / {p2e_large:.0} | | | |\n\
         | P4 capture, native ({p4_rows} inserts; triggers / plain, ms) | {:.1} / {:.1} | | {:.2}× | |\n\
         | P4 floor: a trigger writing only (table, key) to a keyed queue (ms) | {:.1} | | {:.2}× | |\n\
         | P4 capture / floor | | | {:.2}× | ≤ 1.3× |\n\
         | P4 fold of the captured log into the pending queue (ms, at the next sync or status read) | {:.1} | | | |\n",
        p3l_two / p3l_one,
        p4.captured,
        p4.plain,
        p4.captured / p4.plain,
        p4.floor,
        p4.floor / p4.plain,
        p4.captured / p4.floor,
        p4.fold
    );
    table += &p13.table();
    table += &p14.table();
    table += "\n| History rows in the log | upload (changes/s) | tail download (rows/s) | own-window download (requests, ms) |\n|---|---|---|---|\n";
    for g in &growth {
        table += &format!(
            "| {} | {:.0} | {:.0} | {}, {:.1} |\n",
            g["history_rows"],
            g["upload_changes_per_s"].as_f64().unwrap_or_default(),
            g["download_rows_per_s"].as_f64().unwrap_or_default(),
            g["own_window_requests"],
            g["own_window_ms"].as_f64().unwrap_or_default()
        );
    }
    println!("{table}");
    if let Some(out) = out {
        std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
        std::fs::write(std::path::Path::new(&out).with_extension("md"), &table)?;
    }
    Ok(())
}
