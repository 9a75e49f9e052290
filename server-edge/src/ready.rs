//! `GET /ready` (docs/operations.md §2), for load balancers and Kubernetes readiness probes: whether this server can
//! serve sync now. `/health` stays "the process answers" (liveness). Ready means the database answers a query within
//! [`PROBE_TIMEOUT`] and the sync schema is prepared; natively, with `watch_listen`, the `LISTEN` connection is
//! reported too (down only slows realtime to polling, so it does not make the server unready). A saturated pool is
//! reported as `busy` and stays ready: taking a loaded server out of rotation would move its load onto the rest.
//!
//! The probe is unauthenticated, so it is bounded: one probe at a time per process (isolate), and an answer is
//! reused for [`REUSE`], however many probes arrive.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::{Either, select};
use serde::Serialize;

use crate::ctx::Readiness;
use crate::http::Response;
use crate::runtime::{PoolBusy, Runtime};

/// How long an answer is reused.
pub const REUSE: Duration = Duration::from_secs(1);

/// How long the database may take to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/ready`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok`, `busy` (no pooled connection free in time), `unreachable` or `timeout`.
    pub database: &'static str,
    /// `ok`, `failed` (the schema could not be prepared) or `unknown` (the database did not answer).
    pub schema: &'static str,
    /// Natively with `watch_listen`: `connected` or `disconnected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<&'static str>,
}

/// The last answer and whether a probe runs.
#[derive(Debug, Default)]
pub struct Probe {
    last: Mutex<Option<(Duration, Answer)>>,
    running: AtomicBool,
}

impl Probe {
    /// Answers `/ready` at `now`: the last answer if it is younger than [`REUSE`] or another probe runs, else a
    /// fresh one (before the first answer, every probe runs).
    pub async fn check<R: Runtime>(&self, rt: &R, db: &Readiness, now: Duration) -> Response {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let answer = match (last, Probing::start(&self.running)) {
            (Some((at, a)), _) if now.saturating_sub(at) < REUSE => a,
            (Some((_, a)), None) => a,
            (_, _probing) => {
                let a = probe(rt, db).await;
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, a.clone()));
                a
            }
        };
        let status = if answer.status == "ready" { 200 } else { 503 };
        let mut resp = Response::json(status, &answer);
        if status == 503 {
            resp.headers.push(("retry-after", "1".into()));
        }
        resp
    }
}

/// The one running probe; ends with it, also when the request is dropped half way (a client that went away).
struct Probing<'a>(&'a AtomicBool);

impl<'a> Probing<'a> {
    fn start(running: &'a AtomicBool) -> Option<Self> {
        (!running.swap(true, Ordering::AcqRel)).then_some(Self(running))
    }
}

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

async fn probe<R: Runtime>(rt: &R, db: &Readiness) -> Answer {
    let listener = rt.hub().map(|h| if h.is_live() { "connected" } else { "disconnected" });
    let checked = async {
        let mut conn = match rt.connect().await {
            Ok(c) => c,
            Err(e) if e.is::<PoolBusy>() => return ("busy", "unknown"),
            Err(_) => return ("unreachable", "unknown"),
        };
        if conn.simple_query("SELECT 1").await.is_err() {
            return ("unreachable", "unknown");
        }
        match db.ready(&mut conn).await {
            Ok(_) => ("ok", "ok"),
            Err(_) => ("ok", "failed"),
        }
    };
    let checked = std::pin::pin!(checked);
    let timeout = std::pin::pin!(rt.sleep(PROBE_TIMEOUT));
    let (database, schema) = match select(checked, timeout).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => ("timeout", "unknown"),
    };
    let ready = matches!(database, "ok" | "busy") && schema != "failed";
    Answer {
        status: if ready { "ready" } else { "not_ready" },
        database,
        schema,
        listener,
    }
}
