//! The native server's background compaction (docs/history.md): a pass every `compact_interval_s`, on one pooled
//! connection taken for the pass and given back after it, with progress at debug level and each pass's totals
//! at info level when it removed something.

use std::time::Duration;

use crate::compact::{Horizons, pass};

/// Steps one pass runs at most before it waits for the next interval (the position is kept in the database).
const MAX_STEPS: u64 = 100_000;

/// Runs passes forever; abort the task to stop it.
pub(super) async fn run(pool: deadpool_postgres::Pool, h: Horizons, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let conn = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "compaction skipped: no database connection");
                continue;
            }
        };
        let client: &tokio_postgres::Client = &conn;
        let mut progress = |t: &crate::compact::Totals| {
            tracing::debug!(
                position = t.position,
                compacted = t.compacted,
                pruned = t.pruned,
                "compaction step"
            );
        };
        let done = pass(client, &h, MAX_STEPS, &mut progress).await;
        if let Ok(t) = &done {
            t.record();
        }
        match done {
            Ok(t) if t.compacted + t.pruned + t.expired > 0 => tracing::info!(
                compacted = t.compacted,
                receipts = t.receipts,
                pruned = t.pruned,
                expired = t.expired,
                scanned = t.scanned,
                finished = t.finished,
                "{t}"
            ),
            Ok(t) => tracing::debug!("{t}"),
            Err(e) => tracing::warn!(error = %e, "compaction step failed; the next run goes on from the last step"),
        }
    }
}
