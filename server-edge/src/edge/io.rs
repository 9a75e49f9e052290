//! The Worker's side of what every front door does the same way: answers converted from the core's
//! [`Response`], byte streams read within a limit, and log lines to the Worker's console.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use worker::ByteStream;

use crate::http::{BodyError, Response, append_chunk};

/// A core response as a Worker response: status, every header (content type, CORS, `Retry-After`) and body.
pub fn to_worker(resp: Response) -> worker::Result<worker::Response> {
    let mut out = if resp.body.is_empty() {
        worker::Response::empty()?
    } else {
        worker::Response::from_bytes(resp.body)?
    };
    out = out.with_status(resp.status);
    for (name, value) in resp.headers {
        out.headers_mut().set(name, &value)?;
    }
    Ok(out)
}

/// Reads a byte stream (a request or a fetched response body) whole, stopping as soon as it passes `limit`
/// bytes (a chunked body has no length to check first), or as soon as `arrived`, told the bytes so far after each
/// chunk, answers false.
pub async fn read_within(
    mut stream: ByteStream,
    limit: usize,
    mut arrived: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Failed(e.to_string()))?;
        append_chunk(&mut body, &chunk, limit, &mut arrived)?;
    }
    Ok(body)
}

/// Installs a `tracing` subscriber that writes each event as one console line (warnings and errors, such as a
/// 5xx's cause chain that [`crate::error::ApiError::into_response`] logs). Once per isolate.
pub fn install_console_log() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| ConsoleLine(Vec::new()))
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_ansi(false)
        .try_init();
}

/// One formatted event, sent to the console when the formatter drops it.
struct ConsoleLine(Vec<u8>);

impl Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0);
        let line = line.trim_end();
        if !line.is_empty() {
            worker::console_error!("{line}");
        }
    }
}

/// The Analytics Engine dataset binding (optional, `[[analytics_engine_datasets]]` in wrangler.toml).
pub const ANALYTICS_BINDING: &str = "OVERSYNC_ANALYTICS";

/// A request's report on the Worker (docs/operations.md §4): with `log_format = "json"` one JSON line on the
/// console, and with the Analytics Engine binding one data point — index the route; blobs route, status class,
/// error code, refusal cause, method; doubles ms, status, applied, conflicts, invalid, page bytes, page rows.
pub fn report(env: &worker::Env, r: &crate::observe::Report, method: &str, status: u16, elapsed: Duration, json: bool) {
    if json {
        let now = js_sys::Date::new_0().to_iso_string();
        let line = r.json_line(method, status, elapsed, &String::from(now));
        worker::console_log!("{line}");
    }
    let Ok(dataset) = env.analytics_engine(ANALYTICS_BINDING) else {
        return;
    };
    let point = worker::AnalyticsEngineDataPointBuilder::new()
        .indexes([r.route])
        .blobs([
            r.route,
            crate::observe::status_class(status),
            r.code.unwrap_or_default(),
            r.refusal.unwrap_or_default(),
            method,
        ])
        .doubles([
            elapsed.as_secs_f64() * 1000.0,
            f64::from(status),
            f64::from(r.applied),
            f64::from(r.conflicts),
            f64::from(r.invalid_total()),
            r.read.map_or(0.0, |x| x.1 as f64),
            r.rows as f64,
        ])
        .build();
    if let Err(e) = dataset.write_data_point(&point) {
        tracing::warn!(error = %e, "writing the request's data point");
    }
}
