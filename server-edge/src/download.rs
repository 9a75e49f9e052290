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
const PAGE_BODY: &str = "
WITH m AS (SELECT coalesce((SELECT server_id FROM sync.server_change_log WHERE user_id >= $1 AND user_id <= $1
                             ORDER BY user_id DESC, server_id DESC LIMIT 1), 0)::int8 AS m),
w AS (SELECT m, CASE WHEN $3 > 0 THEN $3 ELSE m END AS w FROM m)
SELECT w.m, w.w, l.server_id, l.schema_name, l.table_name, l.op, l.pk_uuid::text, l.payload::text, l.server_version,
       l.source_id, l.source_change_id, to_char(l.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
FROM w LEFT JOIN LATERAL (
  SELECT * FROM sync.server_change_log c
  WHERE (c.user_id, c.server_id) > ($1, $2) AND (c.user_id, c.server_id) <= ($1, w.w)
    AND ($4::text IS NULL OR c.schema_name = $4) AND ($5 OR c.source_id <> $6)
  ORDER BY c.user_id, c.server_id LIMIT $7
) l ON true";

/// `sync.download_page_v1(user, after, until, schema, include_self, source, limit)`, created at start-up.
pub fn page_function() -> String {
    read_function(
        "sync.download_page_v1",
        "text, int8, int8, text, bool, text, int8",
        "TABLE (m int8, w int8, server_id int8, schema_name text, table_name text, op text, pk text, payload text,
                server_version int8, source_id text, source_change_id int8, ts text)",
        PAGE_BODY,
    )
}

/// One statement, so the window bound and the page come from one snapshot (PROTOCOL.md §4.4, §6.6).
const DOWNLOAD_SQL: &str = "SELECT * FROM sync.download_page_v1($1, $2, $3, $4, $5, $6, $7) ORDER BY server_id";

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
    for r in rows.iter().filter(|r| r.get::<_, Option<i64>>(2).is_some()) {
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
    let has_more = changes.len() as i64 > q.limit;
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
