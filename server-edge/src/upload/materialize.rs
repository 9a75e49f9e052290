//! Materialisation of applied changes into business tables (PROTOCOL.md §6.7).
//!
//! Each table's rows go in one set-based statement under a savepoint, with constraints checked immediately so
//! a violation is charged to the rows and not to COMMIT. If the batch fails, the rows are retried one by one
//! (each under its own savepoint) to find the failing ones. Failures are recorded in
//! `sync.materialize_failures`; the changes stay applied, because sync state is the source of truth.

use std::collections::{BTreeMap, HashSet};

use serde_json::value::RawValue;
use tokio_postgres::types::Type;
use tokio_postgres::{Error, Transaction};

use super::plan::Write;
use crate::convert::{cast_expr, to_sql_text};
use crate::registry::{Registry, Target};
use crate::sql::quote_ident;

/// A failed row.
struct Failure<'a> {
    write: &'a Write,
    error: String,
}

/// Materialises `writes` (in apply order) and records failures.
pub async fn materialize(tx: &Transaction<'_>, registry: &Registry, user: &str, writes: &[Write]) -> Result<(), Error> {
    let mut failures = Vec::new();
    for group in writes.chunk_by(|a, b| a.row.0 == b.row.0 && a.op.is_delete() == b.op.is_delete()) {
        let Some(target) = registry.get(&group[0].row.0).and_then(|t| t.target.as_ref()) else {
            continue;
        };
        if target.columns.is_empty() {
            let error = format!("target table {}.{} not found", target.schema, target.table);
            failures.extend(group.iter().map(|write| Failure {
                write,
                error: error.clone(),
            }));
        } else if group[0].op.is_delete() {
            delete_group(tx, target, user, group, &mut failures).await?;
        } else {
            upsert_group(tx, target, user, group, &mut failures).await?;
        }
    }
    record_failures(tx, user, &failures).await
}

/// One upsert row converted to SQL text: `(column, value)` pairs in a stable order.
struct RowValues<'a> {
    write: &'a Write,
    values: BTreeMap<String, Option<String>>,
}

async fn upsert_group<'a>(
    tx: &Transaction<'_>,
    target: &Target,
    user: &str,
    group: &'a [Write],
    failures: &mut Vec<Failure<'a>>,
) -> Result<(), Error> {
    // Rows with the same column set share one statement.
    let mut by_columns: BTreeMap<Vec<String>, Vec<RowValues<'a>>> = BTreeMap::new();
    for write in group {
        match convert_row(target, write) {
            Ok(values) => by_columns
                .entry(values.keys().cloned().collect())
                .or_default()
                .push(RowValues { write, values }),
            Err(error) => failures.push(Failure { write, error }),
        }
    }
    for (columns, rows) in by_columns {
        let sql = upsert_sql(target, &columns);
        let run = |rows: &[&RowValues<'a>]| {
            let keys: Vec<String> = rows.iter().map(|r| r.write.row.1.clone()).collect();
            let cols: Vec<Vec<Option<String>>> = columns
                .iter()
                .map(|c| rows.iter().map(|r| r.values[c].clone()).collect())
                .collect();
            let sql = sql.clone();
            async move {
                let mut params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> =
                    vec![(&user, Type::TEXT), (&keys, Type::TEXT_ARRAY)];
                params.extend(
                    cols.iter()
                        .map(|c| (c as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT_ARRAY)),
                );
                let outcome = guarded(tx, tx.query_typed(&sql, &params)).await?;
                Ok::<_, Error>(outcome.map(|rows| rows.iter().map(|r| r.get(0)).collect::<HashSet<String>>()))
            }
        };
        let all: Vec<&RowValues<'a>> = rows.iter().collect();
        let batch = guarded_result(run(&all).await?);
        match batch {
            Ok(done) => note_unowned(&all, &done, failures),
            Err(_) => {
                for row in &all {
                    match guarded_result(run(std::slice::from_ref(row)).await?) {
                        Ok(done) => note_unowned(std::slice::from_ref(row), &done, failures),
                        Err(error) => failures.push(Failure {
                            write: row.write,
                            error,
                        }),
                    }
                }
            }
        }
    }
    Ok(())
}

fn note_unowned<'a>(rows: &[&RowValues<'a>], done: &HashSet<String>, failures: &mut Vec<Failure<'a>>) {
    for row in rows {
        if !done.contains(&row.write.row.1) {
            failures.push(Failure {
                write: row.write,
                error: "row exists and belongs to another user".into(),
            });
        }
    }
}

fn convert_row(target: &Target, write: &Write) -> Result<BTreeMap<String, Option<String>>, String> {
    let payload = write.payload.as_deref().ok_or("upsert without payload")?;
    let map: BTreeMap<String, &RawValue> = serde_json::from_str(payload.get()).map_err(|e| e.to_string())?;
    let mut values = BTreeMap::new();
    for (key, raw) in map {
        let key = key.to_lowercase();
        if key == target.key || Some(&key) == target.owner.as_ref() {
            continue;
        }
        if let Some(col) = target.columns.get(&key) {
            values.insert(key.clone(), to_sql_text(col.kind, &key, raw)?);
        }
    }
    Ok(values)
}

fn upsert_sql(target: &Target, columns: &[String]) -> String {
    let table = format!("{}.{}", quote_ident(&target.schema), quote_ident(&target.table));
    let key = quote_ident(&target.key);
    let mut names = vec![key.clone()];
    let mut exprs = vec![target.key_from_text("u.k")];
    let mut updates = Vec::new();
    let mut aliases = vec!["k".to_owned()];
    for (i, c) in columns.iter().enumerate() {
        let col = &target.columns[c];
        let alias = format!("c{i}");
        names.push(quote_ident(c));
        exprs.push(cast_expr(col.kind, &format!("u.{alias}"), &col.sql_type));
        updates.push(format!("{q} = excluded.{q}", q = quote_ident(c)));
        aliases.push(alias);
    }
    let (mut guard, mut conflict) = (String::new(), key.clone());
    if let Some(owner) = &target.owner {
        names.push(quote_ident(owner));
        exprs.push("$1".into());
        // Owner-scoped keys conflict only with the user's own row. A key unique on its own conflicts with any
        // user's, and the guard leaves another user's row alone (no row comes back: a failure).
        guard = format!(" WHERE {table}.{} = $1", quote_ident(owner));
        if target.owner_scoped {
            conflict = format!("{}, {key}", quote_ident(owner));
        }
    }
    if updates.is_empty() {
        updates.push(format!("{key} = excluded.{key}"));
    }
    let arrays: Vec<String> = (0..aliases.len()).map(|i| format!("${}::text[]", i + 2)).collect();
    format!(
        "INSERT INTO {table} ({names}) SELECT {exprs} FROM unnest({arrays}) AS u({aliases}) \
         ON CONFLICT ({conflict}) DO UPDATE SET {updates}{guard} RETURNING {returned}",
        names = names.join(", "),
        exprs = exprs.join(", "),
        arrays = arrays.join(", "),
        aliases = aliases.join(", "),
        updates = updates.join(", "),
        returned = target.key_as_text(&key),
    )
}

async fn delete_group<'a>(
    tx: &Transaction<'_>,
    target: &Target,
    user: &str,
    group: &'a [Write],
    failures: &mut Vec<Failure<'a>>,
) -> Result<(), Error> {
    let owner = match &target.owner {
        Some(o) => format!("{} = $1", quote_ident(o)),
        None => "$1::text IS NOT NULL".into(),
    };
    let sql = format!(
        "DELETE FROM {}.{} WHERE {} = ANY(ARRAY(SELECT {} FROM unnest($2::text[]) AS d(k))) AND {owner}",
        quote_ident(&target.schema),
        quote_ident(&target.table),
        quote_ident(&target.key),
        target.key_from_text("d.k"),
    );
    let run = |writes: &[Write]| {
        let keys: Vec<String> = writes.iter().map(|w| w.row.1.clone()).collect();
        let sql = sql.clone();
        async move {
            guarded(
                tx,
                tx.execute_typed(&sql, &[(&user, Type::TEXT), (&keys, Type::TEXT_ARRAY)]),
            )
            .await
        }
    };
    if guarded_result(run(group).await?).is_err() {
        for write in group {
            if let Err(error) = guarded_result(run(std::slice::from_ref(write)).await?) {
                failures.push(Failure { write, error });
            }
        }
    }
    Ok(())
}

/// Runs `stmt` under a savepoint with constraints checked immediately. The outer `Result` is a failure of the
/// savepoint handling itself (the transaction is broken); the inner one is the statement's own outcome.
async fn guarded<T>(
    tx: &Transaction<'_>,
    stmt: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<Result<T, Error>, Error> {
    // One round trip when the statement succeeds: the release is sent behind it. When it fails, the release
    // fails too (the transaction is aborted until the rollback to the savepoint), and the rollback follows.
    let setup = tx.batch_execute("SAVEPOINT oversync_materialize; SET CONSTRAINTS ALL IMMEDIATE");
    let release = tx.batch_execute("SET CONSTRAINTS ALL DEFERRED; RELEASE SAVEPOINT oversync_materialize");
    let (setup, result, released) = futures_util::join!(setup, stmt, release);
    setup?;
    if result.is_ok() {
        released?;
    } else {
        tx.batch_execute(
            "ROLLBACK TO SAVEPOINT oversync_materialize; RELEASE SAVEPOINT oversync_materialize; \
             SET CONSTRAINTS ALL DEFERRED",
        )
        .await?;
    }
    // A deadlock or lock timeout on a business row is not the row's fault: restart the whole upload instead.
    match result {
        Err(e) if crate::pg::is_retryable(&e) => Err(e),
        other => Ok(other),
    }
}

fn guarded_result<T>(r: Result<T, Error>) -> Result<T, String> {
    r.map_err(|e| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    })
}

async fn record_failures(tx: &Transaction<'_>, user: &str, failures: &[Failure<'_>]) -> Result<(), Error> {
    if failures.is_empty() {
        return Ok(());
    }
    tracing::warn!(user, count = failures.len(), first = %failures[0].error, "materialisation failed; changes stay applied");
    let col = |f: &dyn Fn(&Failure) -> String| failures.iter().map(f).collect::<Vec<String>>();
    let schemas = col(&|f| f.write.row.0.schema.clone());
    let tables = col(&|f| f.write.row.0.table.clone());
    let pks = col(&|f| f.write.row.1.clone());
    let ops = col(&|f| f.write.op.as_str().to_owned());
    let errors = col(&|f| f.error.clone());
    let versions: Vec<i64> = failures.iter().map(|f| f.write.version).collect();
    let payloads: Vec<Option<&str>> = failures
        .iter()
        .map(|f| f.write.payload.as_deref().map(RawValue::get))
        .collect();
    tx.execute_typed(
        "INSERT INTO sync.materialize_failures (user_id, schema_name, table_name, pk_uuid, attempted_version, op, payload, error)
         SELECT $1, s, t, p::uuid, v, o, pl::json, e
         FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::text[]) AS u(s, t, p, v, o, pl, e)
         ON CONFLICT (user_id, schema_name, table_name, pk_uuid, attempted_version)
         DO UPDATE SET retry_count = sync.materialize_failures.retry_count + 1, error = excluded.error, op = excluded.op",
        &[
            (&user, Type::TEXT),
            (&schemas, Type::TEXT_ARRAY),
            (&tables, Type::TEXT_ARRAY),
            (&pks, Type::TEXT_ARRAY),
            (&versions, Type::INT8_ARRAY),
            (&ops, Type::TEXT_ARRAY),
            (&payloads, Type::TEXT_ARRAY),
            (&errors, Type::TEXT_ARRAY),
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::registry::{Column, Kind};

    fn target(owner_scoped: bool) -> Target {
        let column = |sql_type: &str, kind| Column {
            sql_type: sql_type.into(),
            kind,
        };
        Target {
            schema: "business".into(),
            table: "users".into(),
            key: "id".into(),
            owner: Some("owner_id".into()),
            owner_scoped,
            columns: HashMap::from([
                ("id".into(), column("uuid", Kind::Uuid)),
                ("name".into(), column("text", Kind::Text)),
                ("owner_id".into(), column("text", Kind::Text)),
            ]),
        }
    }

    #[test]
    fn owner_scoped_keys_conflict_on_owner_and_key() {
        assert_eq!(
            upsert_sql(&target(true), &["name".into()]),
            "INSERT INTO \"business\".\"users\" (\"id\", \"name\", \"owner_id\") SELECT CAST(u.k AS uuid), \
             CAST(u.c0 AS text), $1 FROM unnest($2::text[], $3::text[]) AS u(k, c0) ON CONFLICT (\"owner_id\", \"id\") \
             DO UPDATE SET \"name\" = excluded.\"name\" WHERE \"business\".\"users\".\"owner_id\" = $1 RETURNING \"id\"::text"
        );
    }

    #[test]
    fn keys_unique_alone_conflict_on_the_key_and_guard_the_owner() {
        let sql = upsert_sql(&target(false), &["name".into()]);
        assert!(
            sql.contains("ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\" WHERE \"business\".\"users\".\"owner_id\" = $1"),
            "{sql}"
        );
    }
}
