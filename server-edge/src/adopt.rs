//! Adopting an existing database (issue 33, docs/backend-writes.md §6): rows already in a business table when it is
//! registered get versions and log entries, so devices hydrate them. `oversync-server adopt --config FILE`, or at
//! start-up with `adopt_on_start`.
//!
//! Each table is read in slices of its heap (`ctid` ranges, a TID range scan: no index needed, any key), each
//! slice given to `sync.capture_rows_v2` in adopt mode, one statement and one transaction per slice: the rows sync
//! does not have yet are logged exactly as a backend INSERT would be (same encoding, same owner locks), rows it has
//! are skipped, and rows that cannot be synced (no owner, a key that is no canonical UUID, a value the encoding
//! cannot carry) are reported and left out, never guessed. So memory is bounded by a slice, an interrupted run
//! loses nothing and simply runs again, and rows written meanwhile are the capture triggers' (installed before).
//!
//! A slice aims at [`ROWS_PER_SLICE`] rows (from the table's statistics) because a slice takes one advisory lock
//! per distinct owner: a slice PostgreSQL's lock table cannot hold (`out of shared memory`) is halved and retried.

use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::registry::Registry;
use crate::schema::capture::{Capture, captures};
use crate::sql::quote_ident;

/// Rows a slice aims at.
pub const ROWS_PER_SLICE: i64 = 1000;

/// Rejected rows named one by one per table; the rest are counted.
const NAMED: u64 = 100;

/// What one table's adoption did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// The business table.
    pub table: String,
    /// Log entries appended (rows sync did not have).
    pub logged: u64,
    /// Rows that cannot be synced, left out.
    pub rejected: u64,
}

/// Progress and rejected rows, as text lines (stderr for the command, the log at start-up).
pub trait Report {
    /// A line of progress or a rejected row.
    fn line(&mut self, text: &str);
}

impl<F: FnMut(&str)> Report for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}

/// Adopts every captured table of `registry` (the schema and capture triggers must be ready: see
/// `crate::ctx::Readiness::ready`).
pub async fn adopt(
    client: &Client,
    registry: &Registry,
    report: &mut impl Report,
) -> Result<Vec<Adopted>, tokio_postgres::Error> {
    let mut done = Vec::new();
    for c in captures(registry) {
        done.push(table(client, &c, report).await?);
    }
    Ok(done)
}

async fn table(client: &Client, c: &Capture, report: &mut impl Report) -> Result<Adopted, tokio_postgres::Error> {
    let name = format!("{}.{}", c.target.0, c.target.1);
    let rel = format!("{}.{}", quote_ident(&c.target.0), quote_ident(&c.target.1));
    let stats = client
        .query_one(
            &format!(
                "SELECT pg_relation_size('{rel}'::regclass) / current_setting('block_size')::int8, \
                 c.reltuples::int8, c.relpages::int8 FROM pg_class c WHERE c.oid = '{rel}'::regclass"
            ),
            &[],
        )
        .await?;
    let (pages, tuples, stat_pages): (i64, i64, i64) = (stats.get(0), stats.get(1), stats.get(2));
    let per_page = if tuples > 0 && stat_pages > 0 {
        (tuples / stat_pages).max(1)
    } else {
        50
    };
    let mut step = (ROWS_PER_SLICE / per_page).max(1);
    let sql = format!(
        "SELECT r_key, r_why, r_logged FROM sync.capture_rows_v2('{rel}'::regclass, $1, '{{}}', ARRAY(
           SELECT to_jsonb(b.*) FROM {rel} b WHERE b.ctid >= format('(%s,0)', $2::int8)::tid
             AND b.ctid < format('(%s,0)', $3::int8)::tid), true)"
    );
    let args: Vec<String> = c.args.to_vec();
    let mut out = Adopted {
        table: name.clone(),
        ..Default::default()
    };
    let (mut page, mut shown) = (0_i64, Instant::now());
    report.line(&format!("{name}: adopting {pages} pages (~{} rows)", tuples.max(0)));
    while page < pages {
        let end = (page + step).min(pages);
        let rows = match client
            .query_typed(
                &sql,
                &[(&args, Type::TEXT_ARRAY), (&page, Type::INT8), (&end, Type::INT8)],
            )
            .await
        {
            Err(e) if e.code() == Some(&SqlState::OUT_OF_MEMORY) && step > 1 => {
                step = (step / 2).max(1);
                continue;
            }
            result => result?,
        };
        for row in rows {
            match row.get::<_, Option<i64>>(2) {
                Some(n) => out.logged += n as u64,
                None => {
                    out.rejected += 1;
                    if out.rejected <= NAMED {
                        let key: Option<String> = row.get(0);
                        let why: String = row.get(1);
                        report.line(&format!(
                            "{name}: left out the row with key {}: {why}",
                            key.as_deref().unwrap_or("NULL")
                        ));
                    }
                }
            }
        }
        page = end;
        if shown.elapsed() >= Duration::from_secs(1) || page >= pages {
            shown = Instant::now();
            report.line(&format!(
                "{name}: page {page}/{pages} ({}%), {} rows adopted, {} left out",
                if pages > 0 { page * 100 / pages } else { 100 },
                out.logged,
                out.rejected
            ));
        }
    }
    Ok(out)
}

/// The summary printed at the end.
pub fn summary(done: &[Adopted]) -> String {
    let mut text = String::from("adopted:\n");
    for a in done {
        text += &format!("  {}: {} rows adopted, {} left out\n", a.table, a.logged, a.rejected);
    }
    let (logged, rejected) = done.iter().fold((0, 0), |(l, r), a| (l + a.logged, r + a.rejected));
    text += &format!("  total: {logged} rows adopted, {rejected} left out");
    if rejected > 0 {
        text += " (fix those rows and run adopt again: the rows adopted are skipped)";
    }
    text
}
