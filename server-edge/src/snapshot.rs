//! `GET /sync/snapshot` (PROTOCOL.md §8.2, extension): pages over the user's live rows (`sync_state`) by keyset
//! `(schema, table, pk)`, so a new device hydrates from current state instead of replaying the whole log.

use oversync_protocol::names::is_valid_name;
use oversync_protocol::pk::canonical_pk;
use oversync_protocol::wire::{SnapshotResponse, SnapshotRow};
use oversync_protocol::{RawValue, TableRef};
use tokio_postgres::types::{ToSql, Type};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::runtime::Runtime;
use crate::service::Service;
use crate::upload::plan::RowKey;
use crate::upload::store::{META_BY_KEY, unzip_keys};

/// Largest snapshot page.
pub const SNAPSHOT_LIMIT_MAX: i64 = 1000;

/// Validated snapshot parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotQuery {
    schema: Option<String>,
    after: Option<(TableRef, String)>,
    limit: i64,
    until: i64,
}

impl SnapshotQuery {
    /// Validates decoded query pairs; a malformed parameter is named in the message.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut first = std::collections::HashMap::new();
        for (k, v) in pairs {
            first.entry(k).or_insert(v);
        }
        let get = |k: &str| first.get(k).copied().filter(|v| !v.is_empty());
        let schema = match get("schema") {
            Some(s) if !is_valid_name(s) => return Err("invalid schema name".into()),
            other => other.map(str::to_owned),
        };
        let after = match (get("after_table"), get("after_pk")) {
            (None, _) => None,
            (Some(t), pk) => {
                let table = TableRef::parse(t)
                    .filter(|r| t.contains('.') && r.to_string() == t)
                    .ok_or("after_table must be <schema>.<table>")?;
                let pk = pk.ok_or("after_pk is required with after_table")?;
                Some((table, canonical_pk(pk).ok_or("after_pk must be a UUID")?))
            }
        };
        let limit = match get("limit") {
            None => 100,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=SNAPSHOT_LIMIT_MAX).contains(n))
                .ok_or("limit must be between 1 and 1000")?,
        };
        let until = match get("until") {
            None => 0,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or("until must be an integer >= 0")?,
        };
        Ok(Self {
            schema,
            after,
            limit,
            until,
        })
    }
}

/// The page query (`ORDER BY … DESC LIMIT 1` rather than `max()`: see `upload/store.rs`); `{KEYSET}` is the keyset
/// predicate on `st`. With a schema filter it is `schema_name = $4 AND
/// (table_name, pk_uuid) > ($5, $6)`: PostgreSQL's btree ignores a row comparison as a scan bound when the same
/// leading column also has an equality, so `schema_name = $4 AND (schema_name, table_name, pk_uuid) > (…)` scanned
/// every row of the earlier tables on each page.
const SNAPSHOT_SQL: &str = "
WITH w AS (SELECT CASE WHEN $2 > 0 THEN $2
                       ELSE coalesce((SELECT server_id FROM sync.server_change_log WHERE user_id >= $1 AND user_id <= $1
                                      ORDER BY user_id DESC, server_id DESC LIMIT 1), 0) END AS w),
own AS (SELECT coalesce((SELECT source_change_id FROM sync.server_change_log WHERE user_id = $1 AND source_id = $3
                         ORDER BY source_change_id DESC LIMIT 1), 0)::int8 AS m)
SELECT w.w, own.m, s.schema_name, s.table_name, s.pk_uuid::text, s.payload
FROM w CROSS JOIN own LEFT JOIN LATERAL (
  SELECT st.schema_name, st.table_name, st.pk_uuid, st.payload::text AS payload
  FROM sync.sync_state st
  WHERE st.user_id = $1 AND {KEYSET}
  ORDER BY st.schema_name, st.table_name, st.pk_uuid
  LIMIT $7
) s ON true
ORDER BY s.schema_name, s.table_name, s.pk_uuid";

/// The versions of the same page: the live metadata rows from the same cursor, in the same order. Every live row
/// has live metadata (uploads write both in one transaction), so this range scan holds the page's versions; it
/// replaced a correlated lookup per row (an index descent each: 60% of a page's time). A join of the two is no
/// option: with stale statistics it was planned as a nested loop over the whole range per row (O(page²)).
/// Tombstones in the range are skipped by the filter, so over a whole hydration each is read once.
const VERSIONS_SQL: &str = "
SELECT m.schema_name, m.table_name, m.pk_uuid::text, m.server_version
FROM sync.sync_row_meta m
WHERE m.user_id = $1 AND {KEYSET} AND NOT m.deleted
ORDER BY m.schema_name, m.table_name, m.pk_uuid
LIMIT $5";

/// The row that ends the page after this one (`OFFSET 2 × limit − 1` from the same cursor), so a client can keep
/// two pages in flight. Read from the live metadata like [`VERSIONS_SQL`] (keys only, nothing returned but one
/// row); a hint, not a promise: rows written in between shift the pages, and the client checks that the next
/// page reached it.
const AHEAD_SQL: &str = "
SELECT m.schema_name, m.table_name, m.pk_uuid::text
FROM sync.sync_row_meta m
WHERE m.user_id = $1 AND {KEYSET} AND NOT m.deleted
ORDER BY m.schema_name, m.table_name, m.pk_uuid
OFFSET $5 LIMIT $6";

const KEYSET_ALL: (&str, &str) = (
    "(st.schema_name, st.table_name, st.pk_uuid) > ($4, $5, $6::uuid)",
    "(m.schema_name, m.table_name, m.pk_uuid) > ($2, $3, $4::uuid)",
);
const KEYSET_SCHEMA: (&str, &str) = (
    "st.schema_name = $4 AND (st.table_name, st.pk_uuid) > ($5, $6::uuid)",
    "m.schema_name = $2 AND (m.table_name, m.pk_uuid) > ($3, $4::uuid)",
);

type Statements = (String, String, String);

fn statements(keyset: (&str, &str)) -> Statements {
    (
        SNAPSHOT_SQL.replace("{KEYSET}", keyset.0),
        VERSIONS_SQL.replace("{KEYSET}", keyset.1),
        AHEAD_SQL.replace("{KEYSET}", keyset.1),
    )
}

static SQL_ALL: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| statements(KEYSET_ALL));
static SQL_SCHEMA: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| statements(KEYSET_SCHEMA));

/// Serves one snapshot page.
pub async fn snapshot<R: Runtime>(
    svc: &Service,
    rt: &R,
    who: &Principal,
    q: &SnapshotQuery,
) -> Result<SnapshotResponse, ApiError> {
    let mut conn = rt.connect().await.map_err(ApiError::download)?;
    svc.ready(&mut conn).await.map_err(ApiError::download)?;
    const START: &str = "00000000-0000-0000-0000-000000000000";
    let (after_schema, after_table, after_pk) = match &q.after {
        Some((t, pk)) => (t.schema.clone(), t.table.clone(), pk.clone()),
        None => (String::new(), String::new(), START.to_owned()),
    };
    // With a schema filter the keyset runs within that schema: a cursor in an earlier schema starts at its
    // beginning, one in a later schema has nothing left (an empty table name sorts first, `fetch = 0` returns
    // nothing but the window).
    let fetch = q.limit + 1;
    let (sql, first, table, pk, fetch) = match &q.schema {
        None => (&*SQL_ALL, after_schema, after_table, after_pk, fetch),
        Some(s) if after_schema == *s => (&*SQL_SCHEMA, s.clone(), after_table, after_pk, fetch),
        Some(s) if after_schema < *s => (&*SQL_SCHEMA, s.clone(), String::new(), START.to_owned(), fetch),
        Some(s) => (&*SQL_SCHEMA, s.clone(), String::new(), START.to_owned(), 0),
    };
    let (page_sql, versions_sql, ahead_sql) = sql;
    let page_params: [(&(dyn ToSql + Sync), Type); 7] = [
        (&who.user_id, Type::TEXT),
        (&q.until, Type::INT8),
        (&who.source_id, Type::TEXT),
        (&first, Type::TEXT),
        (&table, Type::TEXT),
        (&pk, Type::TEXT),
        (&fetch, Type::INT8),
    ];
    let versions_params: [(&(dyn ToSql + Sync), Type); 5] = [
        (&who.user_id, Type::TEXT),
        (&first, Type::TEXT),
        (&table, Type::TEXT),
        (&pk, Type::TEXT),
        (&fetch, Type::INT8),
    ];
    let (offset, one) = (2 * q.limit - 1, fetch.min(1));
    let ahead_params: [(&(dyn ToSql + Sync), Type); 6] = [
        (&who.user_id, Type::TEXT),
        (&first, Type::TEXT),
        (&table, Type::TEXT),
        (&pk, Type::TEXT),
        (&offset, Type::INT8),
        (&one, Type::INT8),
    ];
    let page = conn.query_typed(page_sql, &page_params);
    let versions = conn.query_typed(versions_sql, &versions_params);
    let ahead = conn.query_typed(ahead_sql, &ahead_params);
    // One round trip: the three statements are pipelined.
    let (rows, versions, ahead) = futures_util::try_join!(page, versions, ahead).map_err(ApiError::download)?;
    let (window_until, own): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    let key =
        |r: &tokio_postgres::Row, at: usize| -> (String, String, String) { (r.get(at), r.get(at + 1), r.get(at + 2)) };
    let mut known: std::collections::HashMap<(String, String, String), i64> =
        versions.iter().map(|r| (key(r, 0), r.get(3))).collect();
    // The first keyset row equal to the cursor is excluded by `>`; with no cursor the zero UUID sorts first.
    let live: Vec<&tokio_postgres::Row> = rows
        .iter()
        .filter(|r| r.get::<_, Option<String>>(2).is_some())
        .collect();
    let missing: Vec<(String, String, String)> = live
        .iter()
        .map(|r| key(r, 2))
        .filter(|k| !known.contains_key(k))
        .collect();
    if !missing.is_empty() {
        // Rows the range did not cover (metadata written by something other than an upload): one probe per key.
        let missing: Vec<RowKey> = missing.into_iter().map(|(s, t, p)| (TableRef::new(s, t), p)).collect();
        let (schemas, tables, pks) = unzip_keys(&missing);
        let probed = conn
            .query_typed(
                META_BY_KEY,
                &[
                    (&who.user_id, Type::TEXT),
                    (&schemas, Type::TEXT_ARRAY),
                    (&tables, Type::TEXT_ARRAY),
                    (&pks, Type::TEXT_ARRAY),
                ],
            )
            .await
            .map_err(ApiError::download)?;
        known.extend(probed.iter().map(|r| (key(r, 0), r.get(3))));
    }
    let mut out = Vec::with_capacity(live.len());
    for r in live {
        let k = key(r, 2);
        let server_version = *known
            .get(&k)
            .ok_or_else(|| ApiError::Download(format!("{}.{} {} has no metadata", k.0, k.1, k.2).into()))?;
        let payload: String = r.get(5);
        out.push(SnapshotRow {
            schema: k.0,
            table: k.1,
            pk: k.2,
            server_version,
            payload: RawValue::from_string(payload).map_err(|e| ApiError::Download(e.into()))?,
        });
    }
    let has_more = out.len() as i64 > q.limit;
    out.truncate(q.limit as usize);
    let (next_after_table, next_after_pk) = match out.last() {
        Some(r) => (format!("{}.{}", r.schema, r.table), r.pk.clone()),
        None => q
            .after
            .as_ref()
            .map_or((String::new(), String::new()), |(t, pk)| (t.to_string(), pk.clone())),
    };
    let then_after = ahead
        .first()
        .filter(|_| has_more)
        .map(|r| (format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)), r.get(2)));
    let (then_after_table, then_after_pk) = then_after.unzip();
    Ok(SnapshotResponse {
        then_after_table,
        then_after_pk,
        rows: out,
        has_more,
        next_after_table,
        next_after_pk,
        window_until,
        max_own_source_change_id: own,
    })
}
