//! `GET /sync/snapshot` (PROTOCOL.md §8.2, extension): pages over the user's live rows (`sync_state`) by keyset
//! `(schema, table, pk)`, so a new device hydrates from current state instead of replaying the whole log.

use oversync_protocol::query::SnapshotQuery;
use oversync_protocol::wire::{SnapshotResponse, SnapshotRow};
use oversync_protocol::{RawValue, TableRef};
use tokio_postgres::types::{ToSql, Type};

use crate::auth::Principal;
use crate::auth::claims::SCOPE_OWNER_PREFIX;
use crate::error::ApiError;
use crate::rows::{META_BY_KEY, RowKey, unzip_keys};
use crate::runtime::Conn;

/// A page in one statement, so that everything in it comes from one snapshot: the window and the device's newest
/// scid (part 0), the page's rows (part 1, numbered in key order as the index returns them), the live metadata
/// versions from the same cursor (part 2), and the row that ends the page after this one (part 3). `{KEYSET}` is
/// the keyset predicate on a table aliased `t`.
///
/// - The versions were a second statement pipelined behind the page; an upload committed between the two gave a
///   row's old payload with its new version, and the catch-up download then skipped the change as already known.
/// - Versions come from a range scan of the metadata, matched by key, not a join: with stale statistics the join
///   was planned as a nested loop over the whole range per row (O(page²)), and a correlated lookup per row cost
///   60% of the page. Every live row has live metadata (uploads write both in one transaction), so the range
///   holds the page's versions; tombstones in it are skipped by the filter, so over a hydration each is read once.
/// - Pages are cut by payload bytes (`$10`, `max_page_bytes`) as download pages are, in the same two steps (see
///   `crate::schema::read`'s page function): the rows while the payload bytes before them are under the budget,
///   then the first row past it as a marker without its payload (`sync_state` payloads are never NULL). The
///   `then_after` hint below still counts rows; a client pages on until a page reaches it.
/// - The row two pages ahead (`OFFSET 2 × limit − 1`) lets a client keep two pages in flight: a hint, not a
///   promise, since rows written in between shift the pages, and the client checks that the next page reached it.
/// - `ORDER BY … DESC LIMIT 1`, not `max()`: see `upload/store.rs`. With a schema filter the keyset is
///   `schema_name = $4 AND (table_name, pk_uuid) > ($5, $6)`: PostgreSQL's btree ignores a row comparison as a scan
///   bound when the same leading column also has an equality, so `schema_name = $4 AND (schema_name, table_name,
///   pk_uuid) > (…)` scanned every row of the earlier tables on each page.
const SNAPSHOT_SQL: &str = "
WITH w AS (SELECT CASE WHEN $2 > 0 THEN $2
                       ELSE coalesce((SELECT server_id FROM sync.server_change_log WHERE user_id >= $1 AND user_id <= $1
                                      ORDER BY user_id DESC, server_id DESC LIMIT 1), 0) END AS w),
own AS (SELECT coalesce(greatest((SELECT source_change_id FROM sync.server_change_log WHERE user_id = $1 AND source_id = $3
                                  ORDER BY source_change_id DESC LIMIT 1),
                                 (SELECT source_change_id FROM sync.upload_receipts WHERE user_id = $1 AND source_id = $3
                                  ORDER BY source_change_id DESC LIMIT 1)), 0)::int8 AS m),
page AS (SELECT row_number() OVER r AS n, b.schema_name, b.table_name, b.pk_uuid,
                CASE WHEN coalesce(sum(b.bytes) OVER r, 0) < $10 THEN b.payload::text END AS payload,
                coalesce(sum(b.bytes) OVER r, 0) - coalesce(lag(b.bytes) OVER r, 0) AS before_last
         FROM (SELECT s.*, octet_length(s.payload::text) AS bytes
               FROM (SELECT t.schema_name, t.table_name, t.pk_uuid, t.payload,
                            coalesce(sum(greatest(pg_column_size(t.payload) - 8, 0)) OVER (
                              ORDER BY t.schema_name, t.table_name, t.pk_uuid
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 2 PRECEDING), 0) AS stored
                     FROM sync.sync_state t
                     WHERE t.user_id = $1 AND {KEYSET}
                     ORDER BY t.schema_name, t.table_name, t.pk_uuid
                     LIMIT $7) s
               WHERE s.stored < $10 ORDER BY s.schema_name, s.table_name, s.pk_uuid OFFSET 0) b
         WINDOW r AS (ORDER BY b.schema_name, b.table_name, b.pk_uuid
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
versions AS (SELECT t.schema_name, t.table_name, t.pk_uuid, t.server_version
             FROM sync.sync_row_meta t
             WHERE t.user_id = $1 AND {KEYSET} AND NOT t.deleted
             ORDER BY t.schema_name, t.table_name, t.pk_uuid
             LIMIT $7),
ahead AS (SELECT t.schema_name, t.table_name, t.pk_uuid
          FROM sync.sync_row_meta t
          WHERE t.user_id = $1 AND {KEYSET} AND NOT t.deleted
          ORDER BY t.schema_name, t.table_name, t.pk_uuid
          OFFSET $8 LIMIT $9)
SELECT 0 AS part, w.w::int8, own.m, NULL::text, NULL::text, NULL::text, NULL::text, NULL::int8 FROM w CROSS JOIN own
UNION ALL
SELECT 1, NULL, NULL, schema_name, table_name, pk_uuid::text, payload, n FROM page WHERE before_last < $10
UNION ALL
SELECT 2, NULL, NULL, schema_name, table_name, pk_uuid::text, NULL, server_version FROM versions
UNION ALL
SELECT 3, NULL, NULL, schema_name, table_name, pk_uuid::text, NULL, NULL FROM ahead";

const KEYSET_ALL: &str = "(t.schema_name, t.table_name, t.pk_uuid) > ($4, $5, $6::uuid)";
const KEYSET_SCHEMA: &str = "t.schema_name = $4 AND (t.table_name, t.pk_uuid) > ($5, $6::uuid)";

static SQL_ALL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| SNAPSHOT_SQL.replace("{KEYSET}", KEYSET_ALL));
static SQL_SCHEMA: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| SNAPSHOT_SQL.replace("{KEYSET}", KEYSET_SCHEMA));

/// Whether the user is a member of the scope (any role).
const MEMBER_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM sync.scope_members WHERE (user_id = $1 OR user_id = '*') AND scope = $2)";

/// Serves one snapshot page on `conn` (of a ready database), cut at `max_page_bytes` of payload. The two forms
/// of the page statement are fixed strings, so a native connection prepares each once (`Fixed`). With `scope`
/// the page is that scope's (docs/sharing.md §5.3), for a member only: membership is read on every page, so a
/// revoked member's next page is refused.
pub async fn snapshot(
    conn: &impl Conn,
    who: &Principal,
    q: &SnapshotQuery,
    max_page_bytes: usize,
) -> Result<SnapshotResponse, ApiError> {
    let (owner, source) = match &q.scope {
        None => (who.user_id.clone(), who.source_id.clone()),
        Some(scope) => {
            let member: bool = conn
                .query_fixed(MEMBER_SQL, &[(&who.user_id, Type::TEXT), (scope, Type::TEXT)])
                .await
                .map_err(ApiError::download)?
                .first()
                .is_some_and(|r| r.get(0));
            if !member {
                return Err(ApiError::ScopeForbidden(scope.clone()));
            }
            (
                format!("{SCOPE_OWNER_PREFIX}{scope}"),
                crate::schema::scopes::scope_source(&who.user_id, &who.source_id),
            )
        }
    };
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
    let (offset, one) = (2 * q.limit - 1, fetch.min(1));
    let budget = crate::schema::read::page_budget(max_page_bytes);
    let params: [(&(dyn ToSql + Sync), Type); 10] = [
        (&owner, Type::TEXT),
        (&q.until, Type::INT8),
        (&source, Type::TEXT),
        (&first, Type::TEXT),
        (&table, Type::TEXT),
        (&pk, Type::TEXT),
        (&fetch, Type::INT8),
        (&offset, Type::INT8),
        (&one, Type::INT8),
        (&budget, Type::INT8),
    ];
    let sql: &'static str = sql.as_str();
    let rows = conn.query_fixed(sql, &params).await.map_err(ApiError::download)?;
    let key = |r: &tokio_postgres::Row| -> (String, String, String) { (r.get(3), r.get(4), r.get(5)) };
    let (mut window_until, mut own, mut cut) = (0, 0, false);
    let (mut live, mut known, mut ahead) = (Vec::new(), std::collections::HashMap::new(), None);
    for r in &rows {
        match r.get::<_, i32>(0) {
            0 => (window_until, own) = (r.get(1), r.get(2)),
            // The marker of a page cut by the byte budget: more rows follow, this one is not sent.
            1 if r.get::<_, Option<&str>>(6).is_none() => cut = true,
            1 => live.push(r),
            2 => {
                known.insert(key(r), r.get::<_, i64>(7));
            }
            _ => ahead = Some(key(r)),
        }
    }
    // In key order (the first keyset row equal to the cursor is excluded by `>`; with no cursor the zero UUID
    // sorts first).
    live.sort_by_key(|r| r.get::<_, i64>(7));
    let missing: Vec<(String, String, String)> =
        live.iter().map(|r| key(r)).filter(|k| !known.contains_key(k)).collect();
    if !missing.is_empty() {
        // Rows the range did not cover (metadata written by something other than an upload): one probe per key.
        let missing: Vec<RowKey> = missing.into_iter().map(|(s, t, p)| (TableRef::new(s, t), p)).collect();
        let (schemas, tables, pks) = unzip_keys(&missing);
        let probed = conn
            .query_fixed(
                META_BY_KEY,
                &[
                    (&owner, Type::TEXT),
                    (&schemas, Type::TEXT_ARRAY),
                    (&tables, Type::TEXT_ARRAY),
                    (&pks, Type::TEXT_ARRAY),
                ],
            )
            .await
            .map_err(ApiError::download)?;
        known.extend(probed.iter().map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3))));
    }
    let mut out = Vec::with_capacity(live.len());
    for r in live {
        let k = key(r);
        let server_version = *known
            .get(&k)
            .ok_or_else(|| ApiError::Download(format!("{}.{} {} has no metadata", k.0, k.1, k.2).into()))?;
        let payload: String = r.get(6);
        out.push(SnapshotRow {
            schema: k.0,
            table: k.1,
            pk: k.2,
            server_version,
            payload: RawValue::from_string(payload).map_err(|e| ApiError::Download(e.into()))?,
        });
    }
    let has_more = cut || out.len() as i64 > q.limit;
    out.truncate(q.limit as usize);
    let (next_after_table, next_after_pk) = match out.last() {
        Some(r) => (format!("{}.{}", r.schema, r.table), r.pk.clone()),
        None => q
            .after
            .as_ref()
            .map_or((String::new(), String::new()), |(t, pk)| (t.to_string(), pk.clone())),
    };
    let then_after = ahead
        .filter(|_| has_more)
        .map(|(schema, table, pk)| (format!("{schema}.{table}"), pk));
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
