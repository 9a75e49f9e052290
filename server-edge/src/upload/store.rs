//! The upload's SQL: a fixed number of set-based statements per phase, whatever the number of changes.
//!
//! Round trips of one upload: BEGIN; lock (one statement, with `lock_timeout`); the read set (pipelined);
//! replayed scids (only when the device's newest logged scid says there can be any); conflict rows (only when
//! there are live conflicts); the four sync-table writes (pipelined);
//! materialisation (a few per touched table); COMMIT.

use std::collections::{HashMap, HashSet};

use oversync_protocol::TableRef;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, GenericClient, Transaction};

use super::plan::{Logged, Prepared, ReadSet, RowKey, RowMeta, Write};
use crate::config::FkPrecheck;
use crate::registry::Registry;
use crate::rows::{META_BY_KEY, unzip_keys};
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

/// Reads everything [`super::plan::decide`] needs, in one pipelined round trip. Also returns the user's
/// highest `server_id` before this upload.
pub async fn read_set(
    tx: &Transaction<'_>,
    registry: &Registry,
    user: &str,
    device: &str,
    prepared: &[Option<Prepared>],
) -> Result<(ReadSet, i64), Error> {
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

    let logged_params: [Param; 3] = [(&user, Type::TEXT), (&device, Type::TEXT), (&scids, Type::INT8_ARRAY)];
    let meta_params: [Param; 4] = [
        (&user, Type::TEXT),
        (&schemas, Type::TEXT_ARRAY),
        (&tables, Type::TEXT_ARRAY),
        (&pks, Type::TEXT_ARRAY),
    ];
    // Replays are rare: the device's highest logged scid (one index probe) tells whether any of these scids can
    // be in the log at all; only then are they looked up one by one (a second round trip).
    let newest_params: [Param; 2] = [(&user, Type::TEXT), (&device, Type::TEXT)];
    let newest = tx.query_typed(
        "SELECT source_change_id FROM sync.server_change_log WHERE user_id = $1 AND source_id = $2
         ORDER BY source_change_id DESC LIMIT 1",
        &newest_params,
    );
    let meta = tx.query_typed(META_BY_KEY, &meta_params);
    let max = max_server_id(tx, user);
    let (newest, meta, max) = futures_util::try_join!(newest, meta, max)?;
    let newest: Option<i64> = newest.first().map(|r| r.get(0));
    let logged = match (newest, scids.iter().min()) {
        (Some(newest), Some(&lowest)) if newest >= lowest => {
            tx.query_typed(
                "SELECT source_change_id, schema_name, table_name, pk_uuid::text, server_version
                 FROM sync.server_change_log WHERE user_id = $1 AND source_id = $2 AND source_change_id = ANY($3)",
                &logged_params,
            )
            .await?
        }
        _ => Vec::new(),
    };
    // Not pipelined with the reads above: a failing lookup aborts the statements sent after it until its
    // savepoint is rolled back.
    let (business_parents, failed_lookups) = business_parents(tx, registry, user, &parents).await?;

    let mut reads = ReadSet {
        business_parents,
        failed_lookups,
        ..ReadSet::default()
    };
    for r in logged {
        let row = (TableRef::new(r.get::<_, String>(1), r.get::<_, String>(2)), r.get(3));
        reads.logged.insert(r.get(0), Logged { row, version: r.get(4) });
    }
    for r in meta {
        let row = (TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1)), r.get(2));
        reads.meta.insert(
            row,
            RowMeta {
                version: r.get(3),
                deleted: r.get(4),
            },
        );
    }
    Ok((reads, max))
}

/// With `fk_precheck = business`: which parents exist in their business table, owned by the user, and the parent
/// tables whose lookup failed (each lookup runs under its own savepoint, so a failure is charged to the changes
/// that need it as `precheck_error` instead of failing the upload). The failure's cause is logged here and never
/// sent: PostgreSQL's text names tables and columns the client has no business knowing.
async fn business_parents(
    tx: &Transaction<'_>,
    registry: &Registry,
    user: &str,
    parents: &[RowKey],
) -> Result<(HashSet<RowKey>, HashSet<TableRef>), Error> {
    let (mut found, mut failed) = (HashSet::new(), HashSet::new());
    if registry.fk_precheck != FkPrecheck::Business {
        return Ok((found, failed));
    }
    let mut by_table: HashMap<&TableRef, Vec<String>> = HashMap::new();
    for (t, pk) in parents {
        by_table.entry(t).or_default().push(pk.clone());
    }
    for (table, pks) in by_table {
        let Some(target) = registry.get(table).and_then(|t| t.target.as_ref()) else {
            tracing::warn!(parent = %table, "FK precheck: the parent has no business table to check");
            failed.insert(table.clone());
            continue;
        };
        let key = quote_ident(&target.key);
        let owner = match &target.owner {
            Some(o) => format!("AND {} = $2", quote_ident(o)),
            None => "AND $2::text IS NOT NULL".into(),
        };
        // Compare in the key's own type (so its index serves), return the canonical text.
        let sql = format!(
            "SELECT {} FROM {}.{} WHERE {key} = ANY(ARRAY(SELECT {} FROM unnest($1::text[]) AS p(k))) {owner}",
            target.key_as_text(&key),
            quote_ident(&target.schema),
            quote_ident(&target.table),
            target.key_from_text("p.k"),
        );
        tx.batch_execute("SAVEPOINT oversync_precheck").await?;
        match tx
            .query_typed(&sql, &[(&pks, Type::TEXT_ARRAY), (&user, Type::TEXT)])
            .await
        {
            Ok(rows) => {
                tx.batch_execute("RELEASE SAVEPOINT oversync_precheck").await?;
                found.extend(rows.into_iter().map(|r| (table.clone(), r.get::<_, String>(0))));
            }
            Err(e) if crate::pg::is_retryable(&e) => return Err(e),
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT oversync_precheck; RELEASE SAVEPOINT oversync_precheck")
                    .await?;
                // The primary message and SQLSTATE only: PostgreSQL puts row values in DETAIL, which stays out.
                let (code, message) = e.as_db_error().map_or_else(
                    || (None, e.to_string()),
                    |d| (Some(d.code().code()), d.message().to_owned()),
                );
                tracing::warn!(parent = %table, keys = pks.len(), ?code, error = %message, "FK precheck lookup failed");
                failed.insert(table.clone());
            }
        }
    }
    Ok((found, failed))
}

/// The current payloads of live rows (for `server_row` of conflicts).
pub async fn live_payloads(
    tx: &Transaction<'_>,
    user: &str,
    keys: &[RowKey],
) -> Result<HashMap<RowKey, String>, Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (schemas, tables, pks) = unzip_keys(keys);
    let rows = tx
        .query_typed(
            "SELECT s.schema_name, s.table_name, s.pk_uuid::text, s.payload::text
             FROM unnest($2::text[], $3::text[], $4::text[]) AS k(s, t, p)
             CROSS JOIN LATERAL (SELECT * FROM sync.sync_state s WHERE s.user_id = $1 AND s.schema_name = k.s
                                 AND s.table_name = k.t AND s.pk_uuid = k.p::uuid LIMIT 1) s",
            &[
                (&user, Type::TEXT),
                (&schemas, Type::TEXT_ARRAY),
                (&tables, Type::TEXT_ARRAY),
                (&pks, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                (TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1)), r.get(2)),
                r.get(3),
            )
        })
        .collect())
}

/// Appends the log rows, updates metadata and row state for every write. Returns the highest `server_id`
/// allocated (0 when there are no writes).
pub async fn apply_writes(tx: &Transaction<'_>, user: &str, device: &str, writes: &[Write]) -> Result<i64, Error> {
    if writes.is_empty() {
        return Ok(0);
    }
    let col = |f: &dyn Fn(&Write) -> String| writes.iter().map(f).collect::<Vec<String>>();
    let schemas = col(&|w| w.row.0.schema.clone());
    let tables = col(&|w| w.row.0.table.clone());
    let pks = col(&|w| w.row.1.clone());
    let ops = col(&|w| w.op.as_str().to_owned());
    let payloads: Vec<Option<&str>> = writes.iter().map(|w| w.payload.as_deref().map(|p| p.get())).collect();
    let scids: Vec<i64> = writes.iter().map(|w| w.scid).collect();
    let versions: Vec<i64> = writes.iter().map(|w| w.version).collect();
    let deleted: Vec<bool> = writes.iter().map(|w| w.op.is_delete()).collect();

    let log_params: [Param; 9] = [
        (&user, Type::TEXT),
        (&device, Type::TEXT),
        (&schemas, Type::TEXT_ARRAY),
        (&tables, Type::TEXT_ARRAY),
        (&ops, Type::TEXT_ARRAY),
        (&pks, Type::TEXT_ARRAY),
        (&payloads, Type::TEXT_ARRAY),
        (&scids, Type::INT8_ARRAY),
        (&versions, Type::INT8_ARRAY),
    ];
    // `server_id` comes from its sequence row by row in apply order (the rows are inserted in `ord` order), so
    // log order follows §6.5; the statement returns the highest id it took.
    let log = tx.query_typed(
        "WITH logged AS (
           INSERT INTO sync.server_change_log
             (user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version, ts)
           SELECT $1, s, t, o, p::uuid, pl::json, $2, sc, v, clock_timestamp()
           FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::int8[])
             WITH ORDINALITY AS u(s, t, o, p, pl, sc, v, ord)
           ORDER BY ord
           RETURNING server_id)
         SELECT max(server_id) FROM logged",
        &log_params,
    );
    let meta_params: [Param; 6] = [
        (&user, Type::TEXT),
        (&schemas, Type::TEXT_ARRAY),
        (&tables, Type::TEXT_ARRAY),
        (&pks, Type::TEXT_ARRAY),
        (&versions, Type::INT8_ARRAY),
        (&deleted, Type::BOOL_ARRAY),
    ];
    let meta = tx.execute_typed(
        "INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version, deleted, updated_at)
         SELECT $1, s, t, p::uuid, v, d, now() FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::bool[]) AS u(s, t, p, v, d)
         ON CONFLICT (user_id, schema_name, table_name, pk_uuid)
         DO UPDATE SET server_version = excluded.server_version, deleted = excluded.deleted, updated_at = excluded.updated_at",
        &meta_params,
    );
    let state_params: [Param; 6] = [
        (&user, Type::TEXT),
        (&schemas, Type::TEXT_ARRAY),
        (&tables, Type::TEXT_ARRAY),
        (&pks, Type::TEXT_ARRAY),
        (&payloads, Type::TEXT_ARRAY),
        (&deleted, Type::BOOL_ARRAY),
    ];
    let upsert_state = tx.execute_typed(
        "INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
         SELECT $1, s, t, p::uuid, pl::json FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bool[]) AS u(s, t, p, pl, d)
         WHERE NOT d
         ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE SET payload = excluded.payload",
        &state_params,
    );
    let gone: Vec<RowKey> = writes
        .iter()
        .filter(|w| w.op.is_delete())
        .map(|w| w.row.clone())
        .collect();
    let (gone_schemas, gone_tables, gone_pks) = unzip_keys(&gone);
    let delete_params: [Param; 4] = [
        (&user, Type::TEXT),
        (&gone_schemas, Type::TEXT_ARRAY),
        (&gone_tables, Type::TEXT_ARRAY),
        (&gone_pks, Type::TEXT_ARRAY),
    ];
    let delete_state = tx.execute_typed(
        // Found by key, deleted by tuple id (a join or `IN` here can be planned as a scan of the user's rows).
        // The tuple ids cannot go stale before the delete: only uploads write `sync_state`, under the user's lock.
        "DELETE FROM sync.sync_state WHERE ctid = ANY(ARRAY(
           SELECT s.ctid FROM unnest($2::text[], $3::text[], $4::text[]) AS u(sc, t, p)
           CROSS JOIN LATERAL (SELECT x.ctid FROM sync.sync_state x WHERE x.user_id = $1 AND x.schema_name = u.sc
                               AND x.table_name = u.t AND x.pk_uuid = u.p::uuid LIMIT 1) s))",
        &delete_params,
    );
    let (highest, ..) = futures_util::try_join!(log, meta, upsert_state, delete_state)?;
    Ok(highest[0].get(0))
}
