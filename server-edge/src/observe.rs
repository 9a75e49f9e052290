//! What operators see (docs/operations.md): a report of every request, filled by the service and read by the
//! front door once the response is built, which turns it into metrics (through the `metrics` facade: natively the
//! Prometheus exporter records them, on the Worker nothing does) and one log line; the Worker also sends it to
//! Analytics Engine. Labels are routes, status classes, reasons and causes: a closed set, never a user or device.

use std::time::Duration;

use metrics::{counter, histogram};
use oversync_protocol::wire::{ChangeStatus, Reason, Status};

/// A metric's type as exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (seconds).
    Histogram,
}

/// Every metric: name, type, labels and meaning. docs/operations.md has the same table (a test compares them), and
/// the exporter sends each meaning as its `# HELP`.
pub const METRICS: &[(&str, Kind, &str, &str)] = &[
    (
        names::REQUESTS,
        Kind::Counter,
        "route, status",
        "Requests answered, by route and status class (2xx … 5xx).",
    ),
    (
        names::DURATION,
        Kind::Histogram,
        "route",
        "Seconds from a request's arrival to its response.",
    ),
    (
        names::CHANGES,
        Kind::Counter,
        "outcome",
        "Uploaded changes by status: applied, conflict, invalid.",
    ),
    (
        names::INVALID,
        Kind::Counter,
        "reason",
        "Invalid uploaded changes by reason (other for a reason not listed).",
    ),
    (
        names::REPLAYS,
        Kind::Counter,
        "",
        "Applied changes that were replays of changes applied before.",
    ),
    (names::PAGES, Kind::Counter, "kind", "Pages served: download, snapshot."),
    (
        names::READ_BYTES,
        Kind::Counter,
        "kind",
        "Bytes of the pages served: download, snapshot.",
    ),
    (
        names::READ_ROWS,
        Kind::Counter,
        "kind",
        "Changes of the download pages and rows of the snapshot pages served.",
    ),
    (
        names::REFUSALS,
        Kind::Counter,
        "cause",
        "Requests refused for load: uploads, reads, watches (429), busy, auth_unavailable (503).",
    ),
    (names::ERRORS, Kind::Counter, "code", "Error envelopes sent, by code."),
    (names::WATCHES, Kind::Gauge, "", "Long-polls (/sync/watch) waiting."),
    (names::STREAMS, Kind::Gauge, "", "Streams (/sync/stream) open."),
    (
        names::LISTEN,
        Kind::Gauge,
        "",
        "1 while the LISTEN connection for pushed changes is up, else 0.",
    ),
    (
        names::NOTICES,
        Kind::Counter,
        "kind",
        "Change notifications received on the LISTEN connection: device, backend, membership.",
    ),
    (
        names::JWKS,
        Kind::Counter,
        "result",
        "Identity provider key set fetches: ok, error.",
    ),
    (
        names::MATERIALIZE_FAILURES,
        Kind::Counter,
        "",
        "Applied changes whose business-table write failed (they stay in the log).",
    ),
    (
        names::COMPACTED,
        Kind::Counter,
        "kind",
        "History removed by compaction: superseded, tombstone, receipt.",
    ),
    (
        names::COMPACTION_PASSES,
        Kind::Counter,
        "",
        "Compaction passes finished.",
    ),
    (names::POOL_MAX, Kind::Gauge, "", "The connection pool's size limit."),
    (
        names::POOL_CONNECTIONS,
        Kind::Gauge,
        "state",
        "Pooled connections: in_use, idle.",
    ),
    (
        names::POOL_WAITING,
        Kind::Gauge,
        "",
        "Requests waiting for a pooled connection.",
    ),
    (
        names::POOL_WAIT,
        Kind::Histogram,
        "",
        "Seconds a request waited for a pooled connection.",
    ),
    (
        names::POOL_TIMEOUTS,
        Kind::Counter,
        "",
        "Waits for a pooled connection that timed out (answered 503).",
    ),
];

/// The metric names (see [`METRICS`] for each one's meaning).
#[allow(missing_docs)]
pub mod names {
    pub const REQUESTS: &str = "oversync_http_requests_total";
    pub const DURATION: &str = "oversync_http_request_duration_seconds";
    pub const CHANGES: &str = "oversync_upload_changes_total";
    pub const INVALID: &str = "oversync_upload_invalid_total";
    pub const REPLAYS: &str = "oversync_upload_replays_total";
    pub const PAGES: &str = "oversync_read_pages_total";
    pub const READ_BYTES: &str = "oversync_read_bytes_total";
    pub const READ_ROWS: &str = "oversync_read_rows_total";
    pub const REFUSALS: &str = "oversync_refusals_total";
    pub const ERRORS: &str = "oversync_errors_total";
    pub const WATCHES: &str = "oversync_watches_open";
    pub const STREAMS: &str = "oversync_streams_open";
    pub const LISTEN: &str = "oversync_listen_connected";
    pub const NOTICES: &str = "oversync_listen_notices_total";
    pub const JWKS: &str = "oversync_jwks_fetches_total";
    pub const MATERIALIZE_FAILURES: &str = "oversync_materialize_failures_total";
    pub const COMPACTED: &str = "oversync_compaction_removed_total";
    pub const COMPACTION_PASSES: &str = "oversync_compaction_passes_total";
    pub const POOL_MAX: &str = "oversync_pool_max_connections";
    pub const POOL_CONNECTIONS: &str = "oversync_pool_connections";
    pub const POOL_WAITING: &str = "oversync_pool_waiting";
    pub const POOL_WAIT: &str = "oversync_pool_wait_seconds";
    pub const POOL_TIMEOUTS: &str = "oversync_pool_wait_timeouts_total";
}

/// While alive, one more of a gauge (open streams, waiting long-polls).
#[derive(Debug)]
pub struct Open(&'static str);

impl Open {
    /// One more of `gauge` until dropped.
    pub fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// The reasons counted by name (their wire strings are the labels); any other is counted as `other`.
static REASONS: [Reason; 8] = [
    Reason::BadPayload,
    Reason::UnregisteredTable,
    Reason::FkMissing,
    Reason::PrecheckError,
    Reason::InternalError,
    Reason::BatchTooLarge,
    Reason::ScopeForbidden,
    Reason::ReadOnlyTable,
];

/// What one request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The request id: the client's `X-Request-Id` if usable, else a fresh one; echoed in the response.
    pub request_id: String,
    /// The route's label (`other` for an unknown path).
    pub route: &'static str,
    /// The error envelope's code, for a non-2xx answer.
    pub code: Option<&'static str>,
    /// For a refusal for load: `uploads`, `reads`, `watches` (429) or `busy`, `auth_unavailable` (503).
    pub refusal: Option<&'static str>,
    /// An upload's statuses: applied, conflict, invalid (by [`REASONS`] index; the last is `other`).
    pub applied: u32,
    /// Conflicts.
    pub conflicts: u32,
    /// Invalid changes by reason.
    pub invalid: [u32; REASONS.len() + 1],
    /// A read's kind (`download`, `snapshot`) and the bytes of its page.
    pub read: Option<(&'static str, u64)>,
    /// A download page's changes or a snapshot page's rows.
    pub rows: u64,
}

impl Report {
    /// Counts an upload's statuses.
    pub fn count(&mut self, statuses: &[ChangeStatus]) {
        for s in statuses {
            match s.status {
                Status::Applied => self.applied += 1,
                Status::Conflict => self.conflicts += 1,
                _ => {
                    let reason = s.reason();
                    let i = REASONS
                        .iter()
                        .position(|r| Some(r) == reason.as_ref())
                        .unwrap_or(REASONS.len());
                    self.invalid[i] += 1;
                }
            }
        }
    }

    /// Invalid changes, all reasons.
    pub fn invalid_total(&self) -> u32 {
        self.invalid.iter().sum()
    }

    /// Records the request's metrics: it answered `status` after `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = status_class(status);
        counter!(names::REQUESTS, "route" => self.route, "status" => class).increment(1);
        histogram!(names::DURATION, "route" => self.route).record(elapsed.as_secs_f64());
        if let Some(code) = self.code {
            counter!(names::ERRORS, "code" => code).increment(1);
        }
        if let Some(cause) = self.refusal {
            counter!(names::REFUSALS, "cause" => cause).increment(1);
        }
        if self.applied > 0 {
            counter!(names::CHANGES, "outcome" => "applied").increment(self.applied.into());
        }
        if self.conflicts > 0 {
            counter!(names::CHANGES, "outcome" => "conflict").increment(self.conflicts.into());
        }
        if self.invalid_total() > 0 {
            counter!(names::CHANGES, "outcome" => "invalid").increment(self.invalid_total().into());
            for (i, &n) in self.invalid.iter().enumerate().filter(|(_, n)| **n > 0) {
                let reason = REASONS.get(i).map_or("other", Reason::as_str);
                counter!(names::INVALID, "reason" => reason).increment(n.into());
            }
        }
        if let Some((kind, bytes)) = self.read {
            counter!(names::PAGES, "kind" => kind).increment(1);
            counter!(names::READ_BYTES, "kind" => kind).increment(bytes);
            counter!(names::READ_ROWS, "kind" => kind).increment(self.rows);
        }
    }

    /// The request's log line: request id, route, status, milliseconds and what it moved. No user or device id
    /// (personal data): a user's report is matched by the request id their client saw.
    pub fn log(&self, method: &str, status: u16, elapsed: Duration) {
        tracing::info!(
            request_id = %self.request_id,
            method,
            route = self.route,
            status,
            ms = elapsed.as_secs_f64() * 1000.0,
            code = self.code.unwrap_or_default(),
            applied = self.applied,
            conflicts = self.conflicts,
            invalid = self.invalid_total(),
            bytes = self.read.map_or(0, |r| r.1),
            rows = self.rows,
            "request"
        );
    }

    /// The request's log line as one JSON object, as the native server's `log_format = "json"` writes it (the
    /// Worker's console has no `tracing` JSON formatter).
    pub fn json_line(&self, method: &str, status: u16, elapsed: Duration, timestamp: &str) -> String {
        serde_json::json!({
            "timestamp": timestamp,
            "level": "INFO",
            "message": "request",
            "request_id": self.request_id,
            "method": method,
            "route": self.route,
            "status": status,
            "ms": elapsed.as_secs_f64() * 1000.0,
            "code": self.code.unwrap_or_default(),
            "applied": self.applied,
            "conflicts": self.conflicts,
            "invalid": self.invalid_total(),
            "bytes": self.read.map_or(0, |r| r.1),
            "rows": self.rows,
        })
        .to_string()
    }
}

/// `2xx` … `5xx`.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The longest client request id kept.
const REQUEST_ID_MAX: usize = 128;

/// The client's `X-Request-Id` when it is 1 to 128 characters of `A-Z a-z 0-9 - _ . :` (anything else could forge
/// log lines or carry personal data), else a fresh random id.
pub fn request_id(given: Option<&str>) -> String {
    match given {
        Some(id)
            if (1..=REQUEST_ID_MAX).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oversync_protocol::wire::Rejection;

    #[test]
    fn a_usable_request_id_is_kept_and_anything_else_replaced() {
        assert_eq!(request_id(Some("req-1.a:b_C")), "req-1.a:b_C");
        for bad in ["", "a b", "x\ny", "é", &"a".repeat(129)] {
            let id = request_id(Some(bad));
            assert_eq!(id.len(), 32, "{bad:?} → {id}");
            assert_ne!(id, bad);
        }
        assert_ne!(request_id(None), request_id(None));
    }

    /// docs/operations.md's table lists every metric with its type, labels and meaning, and nothing else.
    #[test]
    fn the_operations_guide_documents_every_metric() {
        let doc = include_str!("../../docs/operations.md");
        for &(name, kind, labels, help) in METRICS {
            let kind = format!("{kind:?}").to_lowercase();
            let labels = if labels.is_empty() { "—" } else { labels };
            let row = format!("| `{name}` | {kind} | {labels} | {help} |");
            assert!(doc.contains(&row), "docs/operations.md lacks the row\n{row}");
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `oversync_")).count();
        assert_eq!(rows, METRICS.len(), "a documented metric the server does not have");
    }

    /// The Worker's JSON line has the native line's fields (docs/operations.md §3).
    #[test]
    fn the_workers_json_line_has_the_native_fields() {
        let r = Report {
            request_id: "r1".into(),
            route: "upload",
            applied: 2,
            ..Report::default()
        };
        let line: serde_json::Value =
            serde_json::from_str(&r.json_line("POST", 200, Duration::from_millis(3), "2026-12-07T00:00:00Z")).unwrap();
        for key in [
            "timestamp",
            "level",
            "message",
            "request_id",
            "method",
            "route",
            "status",
            "ms",
            "code",
        ] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
        assert_eq!(
            (&line["applied"], &line["ms"]),
            (&serde_json::json!(2), &serde_json::json!(3.0))
        );
    }

    #[test]
    fn statuses_are_counted_by_outcome_and_reason() {
        let mut r = Report::default();
        let other = Rejection::with_error(Reason::Other("new".into()), "x");
        r.count(&[
            ChangeStatus::applied(1, Some(1)),
            ChangeStatus::invalid(2, Rejection::bad_payload("x")),
            ChangeStatus::invalid(3, Rejection::bad_payload("y")),
            ChangeStatus::invalid(4, other),
        ]);
        assert_eq!((r.applied, r.conflicts, r.invalid_total()), (1, 0, 3));
        assert_eq!((r.invalid[0], r.invalid[REASONS.len()]), (2, 1));
        assert_eq!(status_class(429), "4xx");
    }
}
