//! The upload's IO: two round trips whatever the number of changes, one call of `sync.upload_read_v3` (the read
//! set, without the lock) and one of `sync.upload_write_v4` (lock, check, writes, materialisation, in one implicit
//! transaction); see `crate::schema::write`. Under contention on the same rows the write answers `stale` and the
//! upload reads again; [`lock_user`] serves the fallback that takes the lock before reading.

use std::collections::HashMap;

use oversync_protocol::TableRef;
use serde_json::value::RawValue;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, GenericClient, Transaction};

use super::materialize::Materialization;
use super::plan::{Logged, Prepared, ReadSet, RowKey, RowMeta, Write};
use crate::config::FkPrecheck;
use crate::registry::Registry;
use crate::rows::unzip_keys;
use crate::runtime::Fixed;
use crate::schema::write::{READ_SQL, WRITE_SQL};
use crate::sql::quote_ident;

type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// Takes the per-user transaction-scoped advisory lock (§6.1.2), bounded by `lock_timeout`.
///
/// One statement: the materialised CTE sets the timeout before the lock is asked for. (Two pipelined
/// statements cost two answers, and under workerd each answer after the first in a pipeline could wait ~40 ms
/// on the local Hyperdrive proxy's socket.)
pub async fn lock_user(tx: &Transaction<'_>, user: &str, lock_timeout_ms: u64) -> Result<(), Error> {
    let timeout = format!("{lock_timeout_ms}ms");
    let params: [Param; 2] = [(&timeout, Type::TEXT), (&user, Type::TEXT)];
    tx.execute_typed(
        "WITH t AS MATERIALIZED (SELECT set_config('lock_timeout', $1, true))
         SELECT pg_advisory_xact_lock(hashtextextended($2, 0)) FROM t",
        &params,
    )
    .await?;
    Ok(())
}

/// The user's highest `server_id`, or 0.
///
/// Every lookup in this module is written so that it stays O(batch) whatever the planner's statistics say:
/// `ORDER BY … DESC LIMIT 1` instead of `max()` (for the newest `server_id`, `user_id` is bounded by a range and
/// is part of the order, so only the `(user_id, server_id)` index serves it: with `user_id = $1` the planner
/// drops it from the order and may walk the primary key backwards past every newer change of every user), a `LATERAL … LIMIT 1` probe per key or `= ANY(array)` instead
/// of a join. A heavy user who appeared after the last ANALYZE is not in the sampled values, so their rows are
/// estimated at a handful, and joins and aggregates were then planned as scans over all of the user's rows (an
/// upload that cost O(user's history)).
pub async fn max_server_id(client: &impl GenericClient, user: &str) -> Result<i64, Error> {
    let rows = client
        .query_typed(
            "SELECT coalesce((SELECT server_id FROM sync.server_change_log WHERE user_id >= $1 AND user_id <= $1
                               ORDER BY user_id DESC, server_id DESC LIMIT 1), 0)::int8",
            &[(&user, Type::TEXT)],
        )
        .await?;
    Ok(rows[0].get(0))
}

/// The keys a read looked at (its rows and their parents), which the write checks for changes since.
#[derive(Debug, Default)]
pub struct ReadKeys {
    schemas: Vec<String>,
    tables: Vec<String>,
    pks: Vec<String>,
}

/// What the read saw: the read set, the user's top `server_id` when it read, and the keys it read.
pub struct Read {
    /// For [`super::plan::decide`].
    pub set: ReadSet,
    /// The user's highest `server_id` in the read's snapshot.
    pub top: i64,
    /// The keys read.
    pub keys: ReadKeys,
}

/// Reads everything [`super::plan::decide`] needs in one call of `sync.upload_read_v3`.
pub async fn read(
    client: &impl Fixed,
    registry: &Registry,
    user: &str,
    device: &str,
    prepared: &[Option<Prepared>],
) -> Result<Read, Error> {
    let valid = prepared.iter().flatten();
    let scids: Vec<i64> = valid.clone().map(|p| p.change.scid).collect();
    let mut keys: Vec<RowKey> = valid
        .clone()
        .map(|p| (p.change.table.clone(), p.change.pk.clone()))
        .collect();
    let parents: Vec<RowKey> = valid
        .flat_map(|p| p.refs.iter().flatten().map(|r| r.parent.clone()))
        .collect();
    keys.extend(parents.iter().cloned());
    keys.sort();
    keys.dedup();
    let (schemas, tables, pks) = unzip_keys(&keys);
    let lookups = parent_lookups(registry, &parents);
    let mut failed_lookups: std::collections::HashSet<TableRef> = lookups.unchecked;
    let l_len: Vec<i32> = lookups
        .pks
        .iter()
        .map(|p| i32::try_from(p.len()).unwrap_or(i32::MAX))
        .collect();
    let l_pks: Vec<String> = lookups.pks.concat();
    let params: [Param; 9] = [
        (&user, Type::TEXT),
        (&device, Type::TEXT),
        (&scids, Type::INT8_ARRAY),
        (&schemas, Type::TEXT_ARRAY),
        (&tables, Type::TEXT_ARRAY),
        (&pks, Type::TEXT_ARRAY),
        (&lookups.sql, Type::TEXT_ARRAY),
        (&l_len, Type::INT4_ARRAY),
        (&l_pks, Type::TEXT_ARRAY),
    ];
    let rows = client.query_fixed(READ_SQL, &params).await?;
    let mut set = ReadSet::default();
    let mut top = 0;
    for r in rows {
        let table = || TableRef::new(r.get::<_, String>(1), r.get::<_, String>(2));
        let lookup = || &lookups.tables[usize::try_from(r.get::<_, i64>(4)).expect("a lookup number") - 1];
        match r.get::<_, &str>(0) {
            "top" => top = r.get(4),
            "floor" => set.floor = r.get(4),
            "logged" => {
                let row = (table(), r.get(3));
                set.logged.insert(r.get(4), Logged { row, version: r.get(5) });
            }
            "meta" => {
                let meta = RowMeta {
                    version: r.get(5),
                    deleted: r.get(6),
                };
                set.meta.insert((table(), r.get(3)), meta);
            }
            "parent" => {
                set.business_parents.insert((lookup().clone(), r.get(3)));
            }
            "failed" => {
                // The cause is logged here and never sent: PostgreSQL's text names tables and columns the client has
                // no business knowing. The primary message and SQLSTATE only (row values would be in DETAIL).
                let (code, message): (&str, &str) = (r.get(1), r.get(7));
                tracing::warn!(parent = %lookup(), code, error = %message, "FK precheck lookup failed");
                failed_lookups.insert(lookup().clone());
            }
            other => unreachable!("upload_read_v3 answered a {other} row"),
        }
    }
    set.failed_lookups = failed_lookups;
    Ok(Read {
        set,
        top,
        keys: ReadKeys { schemas, tables, pks },
    })
}

/// With `fk_precheck = business`, the lookups of parents in their business tables, one per parent table: which
/// exist, owned by the user. Each runs under its own exception block in the read, so a failure is charged to the
/// changes that need it as `precheck_error` instead of failing the upload.
struct Lookups {
    tables: Vec<TableRef>,
    sql: Vec<String>,
    pks: Vec<Vec<String>>,
    /// Parent tables with no business table to look in.
    unchecked: std::collections::HashSet<TableRef>,
}

fn parent_lookups(registry: &Registry, parents: &[RowKey]) -> Lookups {
    let mut lookups = Lookups {
        tables: Vec::new(),
        sql: Vec::new(),
        pks: Vec::new(),
        unchecked: Default::default(),
    };
    if registry.fk_precheck != FkPrecheck::Business {
        return lookups;
    }
    let mut by_table: HashMap<&TableRef, Vec<String>> = HashMap::new();
    for (t, pk) in parents {
        by_table.entry(t).or_default().push(pk.clone());
    }
    for (table, pks) in by_table {
        let Some(target) = registry.get(table).and_then(|t| t.target.as_ref()) else {
            tracing::warn!(parent = %table, "FK precheck: the parent has no business table to check");
            lookups.unchecked.insert(table.clone());
            continue;
        };
        let key = quote_ident(&target.key);
        let owner = match &target.owner {
            Some(o) => format!("AND {} = {}", quote_ident(o), target.owner_value("$2")),
            None => "AND $2::text IS NOT NULL".into(),
        };
        // Compare in the key's own type (so its index serves), return the canonical text.
        lookups.sql.push(format!(
            "SELECT coalesce(array_agg(x), '{{}}') FROM (SELECT {} FROM {}.{} \
             WHERE {key} = ANY(ARRAY(SELECT {} FROM unnest($1::text[]) AS p(k))) {owner}) q(x)",
            target.key_as_text(&key),
            quote_ident(&target.schema),
            quote_ident(&target.table),
            target.key_from_text("p.k"),
        ));
        lookups.tables.push(table.clone());
        lookups.pks.push(pks);
    }
    lookups
}

/// The write's answer.
pub enum Written {
    /// A log row above the read's top names a key the read looked at, or comes from this device: nothing was
    /// written, read again.
    Stale,
    /// Committed (or, inside the fallback's transaction, done).
    Done {
        /// The current payloads of the live conflict rows asked for.
        payloads: HashMap<RowKey, String>,
        /// The user's highest `server_id` after the writes.
        top: i64,
    },
}

/// What one write sends besides the read: its writes in apply order, their materialisation and the live conflict
/// rows whose payloads the answer needs.
pub struct WriteSet<'a> {
    /// Applied changes, in apply order.
    pub writes: &'a [Write],
    /// Their materialisation.
    pub materialization: &'a Materialization,
    /// Rows in conflict that are live.
    pub conflicts: &'a [RowKey],
}

/// Writes in one call of `sync.upload_write_v4`: the lock (bounded by `lock_timeout_ms`), the check against `read`,
/// the log, metadata and state, materialisation and its failures.
pub async fn write(
    client: &impl Fixed,
    who: (&str, &str),
    lock_timeout_ms: u64,
    read: &Read,
    set: &WriteSet<'_>,
) -> Result<Written, Error> {
    let (user, device) = who;
    let timeout = format!("{lock_timeout_ms}ms");
    let writes = set.writes;
    let col = |f: &dyn Fn(&Write) -> String| writes.iter().map(f).collect::<Vec<String>>();
    let (w_s, w_t, w_p) = (
        col(&|w| w.row.0.schema.clone()),
        col(&|w| w.row.0.table.clone()),
        col(&|w| w.row.1.clone()),
    );
    let w_o = col(&|w| w.op.as_str().to_owned());
    let w_pl: Vec<Option<&str>> = writes.iter().map(|w| w.payload.as_deref().map(RawValue::get)).collect();
    let w_sc: Vec<i64> = writes.iter().map(|w| w.scid).collect();
    let w_v: Vec<i64> = writes.iter().map(|w| w.version).collect();
    let (c_s, c_t, c_p) = unzip_keys(set.conflicts);
    let m = set.materialization;
    let k = &read.keys;
    let params: [Param; 25] = [
        (&user, Type::TEXT),
        (&device, Type::TEXT),
        (&read.top, Type::INT8),
        (&timeout, Type::TEXT),
        (&k.schemas, Type::TEXT_ARRAY),
        (&k.tables, Type::TEXT_ARRAY),
        (&k.pks, Type::TEXT_ARRAY),
        (&w_s, Type::TEXT_ARRAY),
        (&w_t, Type::TEXT_ARRAY),
        (&w_o, Type::TEXT_ARRAY),
        (&w_p, Type::TEXT_ARRAY),
        (&w_pl, Type::TEXT_ARRAY),
        (&w_sc, Type::INT8_ARRAY),
        (&w_v, Type::INT8_ARRAY),
        (&c_s, Type::TEXT_ARRAY),
        (&c_t, Type::TEXT_ARRAY),
        (&c_p, Type::TEXT_ARRAY),
        (&m.sql, Type::TEXT_ARRAY),
        (&m.rows, Type::INT4_ARRAY),
        (&m.index, Type::INT4_ARRAY),
        (&m.keys, Type::TEXT_ARRAY),
        (&m.columns, Type::INT4_ARRAY),
        (&m.values, Type::TEXT_ARRAY),
        (&m.failed, Type::INT4_ARRAY),
        (&m.errors, Type::TEXT_ARRAY),
    ];
    let rows = client.query_fixed(WRITE_SQL, &params).await?;
    let (mut payloads, mut top) = (HashMap::new(), 0);
    for r in rows {
        match r.get::<_, &str>(0) {
            "stale" => return Ok(Written::Stale),
            "payload" => {
                let row = (TableRef::new(r.get::<_, String>(1), r.get::<_, String>(2)), r.get(3));
                payloads.insert(row, r.get(5));
            }
            "failures" => {
                let (count, first): (i64, &str) = (r.get(4), r.get(5));
                metrics::counter!(crate::observe::names::MATERIALIZE_FAILURES).increment(count.max(0) as u64);
                tracing::warn!(count, first, "materialisation failed; changes stay applied");
            }
            "top" => top = r.get(4),
            other => unreachable!("upload_write_v4 answered a {other} row"),
        }
    }
    Ok(Written::Done { payloads, top })
}
