//! `GET /sync/download` (PROTOCOL.md §4.4, §6.6): one call of a SQL function, so the window bound and the page
//! come from one snapshot.

use oversync_protocol::validate::DownloadQuery;
use oversync_protocol::wire::{ChangeDownload, DownloadResponse};
use serde_json::value::RawValue;
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::schema::read::{DOWNLOAD_SQL, page_budget};

/// Serves one download page on `conn` (of a ready database), cut at `max_page_bytes` of payload.
pub async fn download(
    conn: &Client,
    who: &Principal,
    q: &DownloadQuery,
    max_page_bytes: usize,
) -> Result<DownloadResponse, ApiError> {
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
                (&page_budget(max_page_bytes), Type::INT8),
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
