//! A real Prometheus (Debian's, installed by the test command) scrapes a running server's `metrics_listen`
//! (docs/operations.md §5): the target is up, every query of the shipped Grafana dashboard is valid PromQL and the
//! ones the workload feeds return data, the shipped alert rules load healthy, and `promtool` accepts both the rules
//! and the exposition.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ops");

/// Runs a PromQL query against Prometheus' HTTP API; the `data.result` array, or the error.
async fn query(http: &reqwest::Client, prom: &str, q: &str) -> Result<Vec<Value>, String> {
    let url =
        reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), [("query", q)]).map_err(|e| e.to_string())?;
    let r: Value = http
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    match r["status"].as_str() {
        Some("success") => Ok(r["data"]["result"].as_array().cloned().unwrap_or_default()),
        _ => Err(r.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_server_and_runs_the_dashboard_and_the_alerts() {
    let port = oversync_tests::free_port();
    let w = world(|c| c.metrics_listen = Some(format!("127.0.0.1:{port}"))).await;
    let username = name();
    let (mut a, mut b) = (device(&w, &username).await, device(&w, &username).await);
    for i in 0..5 {
        add_user(&a, &id(), &format!("user {i}"));
    }
    a.sync().await.unwrap();
    b.sync().await.unwrap();

    let exposition = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed by tests/setup.sh ensure_prometheus)");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    let problems = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check metrics: {problems}");
    let rules = Command::new("promtool")
        .args(["check", "rules", &format!("{DOCS}/alerts.yml")])
        .output()
        .unwrap();
    assert!(rules.status.success(), "{}", String::from_utf8_lossy(&rules.stdout));

    let dir = oversync_tests::process::tempdir("oversync-prometheus").unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{DOCS}/alerts.yml]\n\
         scrape_configs:\n  - job_name: oversync\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let web = oversync_tests::free_port();
    let args: Vec<String> = [
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{web}"),
        "--log.level=warn".into(),
    ]
    .into();
    let cleanup = format!(
        "rm -rf {}",
        oversync_tests::process::shell_quote(&dir.display().to_string())
    );
    let mut prometheus = oversync_tests::process::watched("prometheus", &args, "TERM", &cleanup)
        .stdout(Stdio::null())
        .spawn()
        .expect("prometheus");
    let (http, prom) = (reqwest::Client::new(), format!("http://127.0.0.1:{web}"));
    let mut up = false;
    for _ in 0..120 {
        if let Ok(r) = query(&http, &prom, "up{job=\"oversync\"} == 1").await
            && !r.is_empty()
            && !query(&http, &prom, "oversync_upload_changes_total")
                .await
                .unwrap_or_default()
                .is_empty()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(up, "Prometheus never scraped the server");
    // A second scrape after more work, so rates over the window have two points.
    add_user(&a, &id(), "later");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(DOCS).join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let result = query(&http, &prom, expr).await;
            assert!(result.is_ok(), "panel {:?}: {expr}: {result:?}", panel["title"]);
            exprs += 1;
        }
    }
    assert!(exprs >= 20, "{exprs} queries");
    for fed in [
        "sum by (route) (rate(oversync_http_requests_total[5m]))",
        "sum by (outcome) (rate(oversync_upload_changes_total[5m]))",
        "histogram_quantile(0.99, sum by (le, route) (rate(oversync_http_request_duration_seconds_bucket[5m])))",
        "sum by (state) (oversync_pool_connections)",
        "min(oversync_listen_connected)",
    ] {
        let result = query(&http, &prom, fed).await.unwrap();
        assert!(!result.is_empty(), "no data for {fed}");
    }
    let rules: Value = http
        .get(format!("{prom}/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    let loaded: Vec<&Value> = groups.iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(loaded.len(), 7, "{rules}");
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    let firing = query(&http, &prom, "ALERTS{alertstate=\"firing\"}").await.unwrap();
    assert!(firing.is_empty(), "a healthy server fires no alert: {firing:?}");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(prometheus.id().to_string())
        .status();
    let _ = prometheus.wait();
}
