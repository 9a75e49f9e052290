//! Prometheus metrics natively (docs/operations.md §1): the `metrics` facade's global recorder is the Prometheus
//! exporter's, installed once per process when `metrics_listen` or `metrics_secret` is set, and rendered on each
//! scrape of `GET /metrics` — on the `metrics_listen` address of its own, or on the public port to a bearer of
//! `metrics_secret`. Histograms are exposed as Prometheus histograms (buckets in seconds).

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::observe::{Kind, METRICS, names};

/// Bucket bounds of every `_seconds` histogram: 0.5 ms to 30 s.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's recorder (a process has one; servers started in one process share it).
static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// What `/metrics` renders: the recorder and the pool whose state is read at each scrape.
#[derive(Clone)]
pub(super) struct Exporter {
    handle: PrometheusHandle,
    pool: deadpool_postgres::Pool,
    secret: Option<Arc<str>>,
}

impl Exporter {
    /// Installs the recorder if this process has none yet.
    pub(super) fn new(pool: deadpool_postgres::Pool, secret: Option<String>) -> anyhow::Result<Self> {
        let mut installed = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
        let handle = match &*installed {
            Some(h) => h.clone(),
            None => {
                let h = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
                    .install_recorder()?;
                describe();
                installed.insert(h).clone()
            }
        };
        Ok(Self {
            handle,
            pool,
            secret: secret.map(Into::into),
        })
    }

    /// The exposition, with the pool's state as of now.
    fn render(&self) -> String {
        let s = self.pool.status();
        metrics::gauge!(names::POOL_MAX).set(s.max_size as f64);
        metrics::gauge!(names::POOL_CONNECTIONS, "state" => "in_use").set(s.size.saturating_sub(s.available) as f64);
        metrics::gauge!(names::POOL_CONNECTIONS, "state" => "idle").set(s.available as f64);
        metrics::gauge!(names::POOL_WAITING).set(s.waiting as f64);
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Whether `/metrics` is also served on the public port (to a bearer of `metrics_secret`).
    pub(super) fn guarded(&self) -> bool {
        self.secret.is_some()
    }

    /// `GET /metrics` on the `metrics_listen` address.
    pub(super) fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/metrics", axum::routing::get(open))
            .with_state(self)
    }
}

/// Each metric's `# HELP` text, from the table the docs are checked against.
fn describe() {
    for &(name, kind, _, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
}

type Answer = (StatusCode, [(header::HeaderName, &'static str); 1], String);

fn exposition(e: &Exporter) -> Answer {
    let kind = "text/plain; version=0.0.4; charset=utf-8";
    (StatusCode::OK, [(header::CONTENT_TYPE, kind)], e.render())
}

async fn open(State(e): State<Exporter>) -> Answer {
    exposition(&e)
}

/// `GET /metrics` on the public port: only to a bearer of `metrics_secret` (compared in constant time).
pub(super) async fn guarded_route(State(e): State<Exporter>, headers: axum::http::HeaderMap) -> Answer {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let secret = e.secret.as_deref().unwrap_or_default();
    if secret.is_empty() || !crate::admin::authorized(given, secret) {
        let text = "text/plain; charset=utf-8";
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, text)],
            "metrics_secret required\n".into(),
        );
    }
    exposition(&e)
}
