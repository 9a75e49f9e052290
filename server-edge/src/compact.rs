//! Who runs compaction (issue 36, docs/history.md): one pass over the change log in short steps of
//! `sync.compact_step_v1`, on any connection. Natively a background task every `compact_interval_s` and the
//! one-shot `oversync-server compact`; on the Worker the Cron Trigger. Every runner shares the pass's position in
//! the database, and a step that finds another one running answers `busy`, so several processes never do the
//! same batch twice and a pass cut short (the Worker's time limit) goes on where it stopped.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::config::Config;
use crate::runtime::Fixed;
use crate::schema::history::STEP_SQL;

/// The settings a pass runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    /// Superseded entries older than this go.
    pub compact_after: Duration,
    /// Tombstones and receipts older than this go.
    pub tombstone_retention: Duration,
    /// Log rows per step.
    pub batch_rows: i64,
}

impl Horizons {
    /// From the configuration.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            compact_after: Duration::from_secs(cfg.compact_after_s),
            tombstone_retention: Duration::from_secs(cfg.tombstone_retention_s),
            batch_rows: cfg.compact_batch_rows,
        }
    }
}

/// What a pass (or part of one) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Steps run.
    pub steps: u64,
    /// Log rows looked at.
    pub scanned: i64,
    /// Superseded entries removed.
    pub compacted: i64,
    /// Receipts written or advanced for them.
    pub receipts: i64,
    /// Tombstones removed (their last entry and metadata).
    pub pruned: i64,
    /// Receipts removed past the retention.
    pub expired: i64,
    /// The pass reached its end (the next starts from the log's beginning).
    pub finished: bool,
    /// Another runner held the step lock: this one stopped.
    pub busy: bool,
    /// The last log id looked at.
    pub position: i64,
}

impl Totals {
    /// Adds the pass to the compaction metrics (docs/operations.md).
    pub fn record(&self) {
        use crate::observe::names;
        let removed = [
            ("superseded", self.compacted),
            ("tombstone", self.pruned),
            ("receipt", self.expired),
        ];
        for (kind, n) in removed.into_iter().filter(|(_, n)| *n > 0) {
            metrics::counter!(names::COMPACTED, "kind" => kind).increment(n as u64);
        }
        if self.finished {
            metrics::counter!(names::COMPACTION_PASSES).increment(1);
        }
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "compaction: {} steps, {} log rows looked at, {} superseded entries removed ({} receipts kept), \
             {} tombstones removed, {} receipts expired{}",
            self.steps,
            self.scanned,
            self.compacted,
            self.receipts,
            self.pruned,
            self.expired,
            if self.finished {
                ", pass finished"
            } else if self.busy {
                ", another runner is compacting"
            } else {
                ", pass goes on at the next run"
            }
        )
    }
}

/// Runs steps until the pass finishes, another runner holds the lock, or `max_steps` ran. `progress` sees the
/// totals after each step.
pub async fn pass(
    client: &impl Fixed,
    h: &Horizons,
    max_steps: u64,
    progress: &mut impl FnMut(&Totals),
) -> Result<Totals, tokio_postgres::Error> {
    let compact = h.compact_after.as_secs_f64();
    let prune = h.tombstone_retention.as_secs_f64();
    let mut t = Totals::default();
    while t.steps < max_steps {
        let rows = client
            .query_fixed(
                STEP_SQL,
                &[
                    (&h.batch_rows, Type::INT8),
                    (&compact, Type::FLOAT8),
                    (&prune, Type::FLOAT8),
                ],
            )
            .await?;
        let Some(r) = rows.first() else { break };
        if r.get::<_, bool>(0) {
            t.busy = true;
            break;
        }
        t.steps += 1;
        t.position = r.get(2);
        t.scanned += r.get::<_, i64>(3);
        t.compacted += r.get::<_, i64>(4);
        t.receipts += r.get::<_, i64>(5);
        t.pruned += r.get::<_, i64>(6);
        t.expired += r.get::<_, i64>(7);
        t.finished = r.get(8);
        progress(&t);
        if t.finished {
            break;
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_say_what_was_removed_and_where_the_pass_is() {
        let t = Totals {
            steps: 3,
            scanned: 2500,
            compacted: 2000,
            receipts: 10,
            pruned: 4,
            expired: 1,
            finished: true,
            ..Totals::default()
        };
        assert_eq!(
            t.to_string(),
            "compaction: 3 steps, 2500 log rows looked at, 2000 superseded entries removed (10 receipts kept), \
             4 tombstones removed, 1 receipts expired, pass finished"
        );
    }
}
