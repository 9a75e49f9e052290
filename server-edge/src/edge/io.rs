//! The Worker's side of what every front door does the same way: answers converted from the core's
//! [`Response`], byte streams read within a limit, and log lines to the Worker's console.

use std::io::Write;

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
