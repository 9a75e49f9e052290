//! `GET /sync/download` (PROTOCOL.md §4.4, §6.6): one call of a SQL function, so the window bound and the page
//! come from one snapshot.

use oversync_protocol::validate::DownloadQuery;
use oversync_protocol::wire::{ChangeDownload, DownloadResponse};
use serde_json::value::RawValue;
use tokio_postgres::types::Type;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::runtime::Runtime;
use crate::service::Service;
use crate::sql::read_function;

/// The page function's body. `ORDER BY … DESC LIMIT 1`, not `max()`: see `upload/store.rs`. `M` comes from the
/// CTE; the LEFT JOIN keeps one row even when the page is empty, so `M` is always read. The page is bounded by row
/// comparisons on `(user_id, server_id)` and ordered by both columns, so the btree scan starts after `after` and
/// stops at the window's end, and the primary key cannot serve the order (see [`read_function`]).
///
/// Pages are also cut by payload bytes (`$8`, `max_page_bytes`), in SQL, so that PostgreSQL never sends (nor the
/// client buffers) more than the budget and one row: a row is returned while the payload bytes *before* it are
/// under the budget (so a first row larger than the budget goes alone), and the first row past it comes back as
/// a marker without its payload (`cut`): the page was cut, more rows follow. The sizes are running sums in scan
/// order, in two steps, because the exact size of a json value means reading all of it (decompressed, through
/// its text output). First the stored sizes, free to read from the values' headers, pre-cut the page: a stored
/// size less 8 header bytes is never more than the text (compression is kept only when it saves), so the pre-cut
/// keeps every row the exact cut keeps, and its marker. Only the rows it keeps are measured exactly; without it, a
/// page of large rows read the next `limit` payloads whole to send a few of them, and paging through large rows
/// cost O(rows × limit). Compressible payloads are still measured past the cut, as far as their compression
/// ratio reaches (at most `limit` rows). `OFFSET 0` measures each row once (each window function would read the
/// payload again), and the windows are ordered like the scan, so no sort is planned.
const PAGE_BODY: &str = "
WITH m AS (SELECT coalesce((SELECT server_id FROM sync.server_change_log WHERE user_id >= $1 AND user_id <= $1
                             ORDER BY user_id DESC, server_id DESC LIMIT 1), 0)::int8 AS m),
w AS (SELECT m, CASE WHEN $3 > 0 THEN $3 ELSE m END AS w FROM m)
SELECT w.m, w.w, l.server_id, l.schema_name, l.table_name, l.op, l.pk_uuid::text,
       CASE WHEN l.before < $8 THEN l.payload::text END, l.server_version, l.source_id, l.source_change_id,
       to_char(l.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), l.before >= $8
FROM w LEFT JOIN LATERAL (
  SELECT * FROM (
    SELECT b.*, coalesce(sum(b.bytes) OVER r, 0) AS before, coalesce(lag(b.bytes) OVER r, 0) AS last
    FROM (SELECT s.*, octet_length(s.payload::text) AS bytes
          FROM (SELECT c.*, coalesce(sum(greatest(pg_column_size(c.payload) - 8, 0)) OVER (
                                 ORDER BY c.user_id, c.server_id ROWS BETWEEN UNBOUNDED PRECEDING AND 2 PRECEDING), 0) AS stored
                FROM sync.server_change_log c
                WHERE (c.user_id, c.server_id) > ($1, $2) AND (c.user_id, c.server_id) <= ($1, w.w)
                  AND ($4::text IS NULL OR c.schema_name = $4) AND ($5 OR c.source_id <> $6)
                ORDER BY c.user_id, c.server_id LIMIT $7) s
          WHERE s.stored < $8 ORDER BY s.user_id, s.server_id OFFSET 0) b
    WINDOW r AS (ORDER BY b.user_id, b.server_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) p
  WHERE p.before - p.last < $8
) l ON true";

/// `sync.download_page_v2(user, after, until, schema, include_self, source, limit, max_bytes)`, created at
/// start-up (`max_bytes` > 0; the server passes `i64::MAX` for unlimited).
pub fn page_function() -> String {
    read_function(
        "sync.download_page_v2",
        "text, int8, int8, text, bool, text, int8, int8",
        "TABLE (m int8, w int8, server_id int8, schema_name text, table_name text, op text, pk text, payload text,
                server_version int8, source_id text, source_change_id int8, ts text, cut bool)",
        PAGE_BODY,
    )
}

/// One statement, so the window bound and the page come from one snapshot (PROTOCOL.md §4.4, §6.6).
const DOWNLOAD_SQL: &str = "SELECT * FROM sync.download_page_v2($1, $2, $3, $4, $5, $6, $7, $8) ORDER BY server_id";

/// The page budget as the page functions take it: 0 (unlimited) is the largest budget.
pub fn page_budget(max_page_bytes: usize) -> i64 {
    match max_page_bytes {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    }
}

/// Serves one download page.
pub async fn download<R: Runtime>(
    svc: &Service,
    rt: &R,
    who: &Principal,
    q: &DownloadQuery,
) -> Result<DownloadResponse, ApiError> {
    let mut conn = rt.connect().await.map_err(ApiError::download)?;
    svc.ready(&mut conn).await.map_err(ApiError::download)?;
    let fetch = q.limit + 1;
    let rows = conn
        .query_typed(
            DOWNLOAD_SQL,
            &[
                (&who.user_id, Type::TEXT),
                (&q.after, Type::INT8),
                (&q.until, Type::INT8),
                (&q.schema, Type::TEXT),
                (&q.include_self, Type::BOOL),
                (&who.source_id, Type::TEXT),
                (&fetch, Type::INT8),
                (&page_budget(svc.settings.max_page_bytes), Type::INT8),
            ],
        )
        .await
        .map_err(ApiError::download)?;
    let (m, w): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    if q.after >= w {
        return Ok(DownloadResponse {
            changes: vec![],
            has_more: false,
            next_after: q.after,
            window_until: w,
        });
    }
    let mut changes = Vec::with_capacity(rows.len());
    // The marker of a page cut by the byte budget is not sent; it only says that more rows follow.
    let mut cut = false;
    for r in rows.iter().filter(|r| r.get::<_, Option<i64>>(2).is_some()) {
        if r.get::<_, bool>(12) {
            cut = true;
            continue;
        }
        let op: String = r.get(5);
        let payload: Option<String> = r.get(7);
        changes.push(ChangeDownload {
            server_id: r.get(2),
            schema: r.get(3),
            table: r.get(4),
            deleted: op == "DELETE",
            op,
            pk: r.get(6),
            payload: payload
                .map(RawValue::from_string)
                .transpose()
                .map_err(|e| ApiError::Download(e.into()))?,
            server_version: r.get(8),
            source_id: r.get(9),
            source_change_id: r.get(10),
            ts: r.get(11),
        });
    }
    let has_more = cut || changes.len() as i64 > q.limit;
    changes.truncate(q.limit as usize);
    let next_after = if has_more {
        changes.last().map_or(q.after, |c| c.server_id)
    } else {
        q.after.max(w.min(m))
    };
    Ok(DownloadResponse {
        changes,
        has_more,
        next_after,
        window_until: w,
    })
}
