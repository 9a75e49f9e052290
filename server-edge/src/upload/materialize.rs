//! Materialisation of applied changes into business tables (PROTOCOL.md §6.7), planned here without IO and run by
//! `sync.upload_write_v4` in the upload's write (see `crate::schema::write`).
//!
//! Each table's rows go in one set-based statement under an exception block (a savepoint), with constraints
//! checked immediately so a violation is charged to the rows and not to COMMIT. If the statement fails, the rows
//! are retried one by one (each under its own block) to find the failing ones. Failures are recorded in
//! `sync.materialize_failures`; the changes stay applied, because sync state is the source of truth.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::plan::Write;
use crate::convert::{cast_expr, to_sql_text};
use crate::registry::{Registry, Target};
use crate::sql::quote_ident;

/// The statements and data of one upload's materialisation, in the arrays the write function takes: groups of
/// rows in apply order, each with its statement; rows are numbered by their 1-based index in the writes.
#[derive(Debug, Default, PartialEq)]
pub struct Materialization {
    /// Each group's statement (`$1` user, `$2` keys, `$3` column arrays, `$4` the row to run alone or NULL).
    pub sql: Vec<String>,
    /// Rows per group.
    pub rows: Vec<i32>,
    /// Each row's write index, groups one after another.
    pub index: Vec<i32>,
    /// Each row's key, likewise.
    pub keys: Vec<String>,
    /// Column arrays per group.
    pub columns: Vec<i32>,
    /// The column arrays, groups one after another: each a `text[]` literal of one column's values in row order.
    pub values: Vec<String>,
    /// Rows that failed before any statement (no business table, or a value the column cannot take): write index.
    pub failed: Vec<i32>,
    /// Their errors.
    pub errors: Vec<String>,
}

/// Plans the materialisation of `writes` (in apply order) of one owner. A user's rows of a scoped table are
/// drafts (docs/sharing.md §2) and are not materialised: the business table's owner column is the scope.
pub fn materialization(registry: &Registry, writes: &[Write], owner_is_scope: bool) -> Materialization {
    let mut m = Materialization::default();
    let mut at = 0;
    for group in writes.chunk_by(|a, b| a.row.0 == b.row.0 && a.op.is_delete() == b.op.is_delete()) {
        let first = at;
        at += group.len();
        let Some(target) = registry.get(&group[0].row.0).and_then(|t| t.target.as_ref()) else {
            continue;
        };
        if target.scoped != owner_is_scope {
            continue;
        }
        let numbered = group.iter().enumerate().map(|(i, w)| (first + i + 1, w));
        if target.columns.is_empty() {
            let error = format!("target table {}.{} not found", target.schema, target.table);
            for (i, _) in numbered {
                m.fail(i, error.clone());
            }
        } else if group[0].op.is_delete() {
            m.group(delete_sql(target), numbered.map(|(i, w)| (i, w, BTreeMap::new())), 0);
        } else {
            // Rows with the same column set share one statement.
            let mut by_columns: BTreeMap<Vec<String>, Vec<_>> = BTreeMap::new();
            for (i, write) in numbered {
                match convert_row(target, write) {
                    Ok(values) => by_columns
                        .entry(values.keys().cloned().collect())
                        .or_default()
                        .push((i, write, values)),
                    Err(error) => m.fail(i, error),
                }
            }
            for (columns, rows) in by_columns {
                m.group(upsert_sql(target, &columns), rows, columns.len());
            }
        }
    }
    m
}

impl Materialization {
    fn fail(&mut self, index: usize, error: String) {
        self.failed.push(index_i32(index));
        self.errors.push(error);
    }

    fn group<'a>(
        &mut self,
        sql: String,
        rows: impl IntoIterator<Item = (usize, &'a Write, BTreeMap<String, Option<String>>)>,
        width: usize,
    ) {
        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); width];
        let mut n = 0;
        for (index, write, values) in rows {
            self.index.push(index_i32(index));
            self.keys.push(write.row.1.clone());
            for (column, value) in columns.iter_mut().zip(values.into_values()) {
                column.push(value);
            }
            n += 1;
        }
        self.sql.push(sql);
        self.rows.push(n);
        self.columns.push(index_i32(width));
        self.values.extend(columns.iter().map(|c| array_literal(c)));
    }
}

/// Batches are bounded far below `i32::MAX` rows (`max_upload_batch_size`).
fn index_i32(n: usize) -> i32 {
    i32::try_from(n).expect("an upload's rows fit in int4")
}

/// A `text[]` literal: every element double-quoted with `"` and `\` escaped, `NULL` unquoted.
pub fn array_literal(values: &[Option<String>]) -> String {
    let mut out = String::with_capacity(
        2 + values
            .iter()
            .map(|v| v.as_ref().map_or(4, |s| s.len() + 3))
            .sum::<usize>(),
    );
    out.push('{');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            None => out.push_str("NULL"),
            Some(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
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
            let value = to_sql_text(col.kind, &key, raw)?;
            // PostgreSQL text cannot hold U+0000; the statement would fail to bind, with every row of the upload.
            if value.as_deref().is_some_and(|v| v.contains('\0')) {
                return Err(format!(
                    "column {key}: PostgreSQL text cannot contain the character U+0000"
                ));
            }
            values.insert(key.clone(), value);
        }
    }
    Ok(values)
}

/// The rows to run: all, or only row `$4`.
const ROW_FILTER: &str = "WHERE $4::int8 IS NULL OR u.o = $4";

fn upsert_sql(target: &Target, columns: &[String]) -> String {
    let table = format!("{}.{}", quote_ident(&target.schema), quote_ident(&target.table));
    let key = quote_ident(&target.key);
    let mut names = vec![key.clone()];
    let mut exprs = vec![target.key_from_text("u.k")];
    let mut updates = Vec::new();
    let mut aliases = vec!["k".to_owned()];
    let mut arrays = vec!["$2::text[]".to_owned()];
    for (i, c) in columns.iter().enumerate() {
        let col = &target.columns[c];
        let alias = format!("c{i}");
        names.push(quote_ident(c));
        exprs.push(cast_expr(col.kind, &format!("u.{alias}"), &col.sql_type));
        updates.push(format!("{q} = excluded.{q}", q = quote_ident(c)));
        aliases.push(alias);
        arrays.push(format!("($3::text[])[{}]::text[]", i + 1));
    }
    aliases.push("o".into());
    let (mut guard, mut conflict) = (String::new(), key.clone());
    if let Some(owner) = &target.owner {
        names.push(quote_ident(owner));
        let value = target.owner_value("$1");
        exprs.push(value.clone());
        // Owner-scoped keys conflict only with the user's own row. A key unique on its own conflicts with any
        // user's, and the guard leaves another user's row alone (no row comes back: a failure).
        guard = format!(" WHERE {table}.{} = {value}", quote_ident(owner));
        if target.owner_scoped {
            conflict = format!("{}, {key}", quote_ident(owner));
        }
    }
    if updates.is_empty() {
        updates.push(format!("{key} = excluded.{key}"));
    }
    format!(
        "WITH done AS (INSERT INTO {table} ({names}) SELECT {exprs} FROM unnest({arrays}) WITH ORDINALITY AS u({aliases}) \
         {ROW_FILTER} ON CONFLICT ({conflict}) DO UPDATE SET {updates}{guard} RETURNING {returned} AS k) \
         SELECT coalesce(array_agg(k), '{{}}') FROM done",
        names = names.join(", "),
        exprs = exprs.join(", "),
        arrays = arrays.join(", "),
        aliases = aliases.join(", "),
        updates = updates.join(", "),
        returned = target.key_as_text(&key),
    )
}

fn delete_sql(target: &Target) -> String {
    let owner = match &target.owner {
        Some(o) => format!("{} = {}", quote_ident(o), target.owner_value("$1")),
        None => "$1::text IS NOT NULL".into(),
    };
    format!(
        "WITH gone AS (DELETE FROM {}.{} WHERE {} = ANY(ARRAY(SELECT {} FROM unnest($2::text[]) WITH ORDINALITY AS u(k, o) \
         {ROW_FILTER})) AND {owner}) SELECT NULL::text[]",
        quote_ident(&target.schema),
        quote_ident(&target.table),
        quote_ident(&target.key),
        target.key_from_text("u.k"),
    )
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
            scoped: false,
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
            "WITH done AS (INSERT INTO \"business\".\"users\" (\"id\", \"name\", \"owner_id\") SELECT CAST(u.k AS uuid), \
             CAST(u.c0 AS text), $1 FROM unnest($2::text[], ($3::text[])[1]::text[]) WITH ORDINALITY AS u(k, c0, o) \
             WHERE $4::int8 IS NULL OR u.o = $4 ON CONFLICT (\"owner_id\", \"id\") \
             DO UPDATE SET \"name\" = excluded.\"name\" WHERE \"business\".\"users\".\"owner_id\" = $1 RETURNING \"id\"::text AS k) \
             SELECT coalesce(array_agg(k), '{}') FROM done"
        );
    }

    #[test]
    fn array_literals_quote_every_element_and_escape_quotes_and_backslashes() {
        let values = [
            Some("plain".into()),
            None,
            Some("NULL".into()),
            Some("a \"q\" \\ {x,y}".into()),
            Some(String::new()),
        ];
        assert_eq!(array_literal(&values), r#"{"plain",NULL,"NULL","a \"q\" \\ {x,y}",""}"#);
        assert_eq!(array_literal(&[]), "{}");
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
