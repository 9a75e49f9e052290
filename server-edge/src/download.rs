//! `GET /sync/download` (PROTOCOL.md §4.4, §6.6): one call of a SQL function, so the window bound and the page
//! come from one snapshot. The function writes the page's JSON; the server wraps it. With `scopes=1` the page
//! covers the user's scopes too (docs/sharing.md §5.2).

use oversync_protocol::validate::DownloadQuery;
use tokio_postgres::types::Type;

use crate::auth::Principal;
use crate::ctx::Settings;
use crate::error::ApiError;
use crate::runtime::Conn;
use crate::schema::read::{DOWNLOAD_SCOPED_SQL, DOWNLOAD_SQL, page_budget};
use crate::schema::scopes::scope_source;

/// Serves one download page on `conn` (of a ready database), cut at `max_page_bytes` of payload: the body of the
/// 200 response, a `DownloadResponse` in JSON, and how many changes it holds.
pub async fn download(
    conn: &impl Conn,
    who: &Principal,
    q: &DownloadQuery,
    s: &Settings,
) -> Result<(String, i64), ApiError> {
    if q.scopes {
        return scoped(conn, who, q, s).await;
    }
    let max_page_bytes = s.max_page_bytes;
    let rows = conn
        .query_fixed(
            DOWNLOAD_SQL,
            &[
                (&who.user_id, Type::TEXT),
                (&q.after, Type::INT8),
                (&q.until, Type::INT8),
                (&q.schema, Type::TEXT),
                (&q.include_self, Type::BOOL),
                (&who.source_id, Type::TEXT),
                (&q.limit, Type::INT8),
                (&page_budget(max_page_bytes), Type::INT8),
                (&scan_rows(s, q), Type::INT8),
            ],
        )
        .await
        .map_err(ApiError::download)?;
    let r = first(&rows)?;
    refuse_pruned(r.get(7))?;
    page_json(r, q, "")
}

/// A cursor below the owner's history horizon may have missed a removed tombstone: 410 `history_pruned`, and the
/// device re-hydrates (docs/history.md).
fn refuse_pruned(horizon: Option<i64>) -> Result<(), ApiError> {
    match horizon {
        Some(h) => Err(ApiError::HistoryPruned(h)),
        None => Ok(()),
    }
}

/// The rows of an owner's log one page may read before its filters: at least the page and its marker.
fn scan_rows(s: &Settings, q: &DownloadQuery) -> i64 {
    i64::try_from(s.download_scan_rows).unwrap_or(i64::MAX).max(q.limit + 1)
}

fn first(rows: &[tokio_postgres::Row]) -> Result<&tokio_postgres::Row, ApiError> {
    rows.first()
        .ok_or_else(|| ApiError::Download("the page function returned no row".into()))
}

/// The page's JSON from the page functions' first seven columns, with `extra` fields at its end, and its number of
/// changes (the rows read before the byte cut, without the marker row past `limit`).
fn page_json(r: &tokio_postgres::Row, q: &DownloadQuery, extra: &str) -> Result<(String, i64), ApiError> {
    let page = Page {
        top: r.get(0),
        window_until: r.get(1),
        read: r.get(2),
        last: r.get(3),
        cut: r.get(4),
        skip: r.get(6),
    };
    let changes: &str = r.get(5);
    let (has_more, next_after) = page.cursor(q.after, q.limit);
    let json = format!(
        r#"{{"changes":[{changes}],"has_more":{has_more},"next_after":{next_after},"window_until":{}{extra}}}"#,
        page.window_until
    );
    Ok((json, page.read.min(q.limit)))
}

/// The scope-aware page: the classic page's fields, the memberships when they changed since the client's
/// `scope_event`, and the newest membership event.
async fn scoped(conn: &impl Conn, who: &Principal, q: &DownloadQuery, s: &Settings) -> Result<(String, i64), ApiError> {
    let max_scopes = i64::try_from(s.max_scopes_per_user).unwrap_or(i64::MAX);
    let timeout = format!("{}ms", s.lock_timeout_ms);
    let scoped_source = scope_source(&who.user_id, &who.source_id);
    let rows = conn
        .query_fixed(
            DOWNLOAD_SCOPED_SQL,
            &[
                (&who.user_id, Type::TEXT),
                (&q.scope, Type::TEXT),
                (&q.scope_event, Type::INT8),
                (&q.after, Type::INT8),
                (&q.until, Type::INT8),
                (&q.schema, Type::TEXT),
                (&q.include_self, Type::BOOL),
                (&who.source_id, Type::TEXT),
                (&scoped_source, Type::TEXT),
                (&q.limit, Type::INT8),
                (&page_budget(s.max_page_bytes), Type::INT8),
                (&max_scopes, Type::INT8),
                (&timeout, Type::TEXT),
                (&scan_rows(s, q), Type::INT8),
            ],
        )
        .await
        .map_err(ApiError::download)?;
    let r = first(&rows)?;
    if r.get::<_, Option<&str>>(10).is_some() {
        return Err(ApiError::ScopeForbidden(q.scope.clone().unwrap_or_default()));
    }
    refuse_pruned(r.get(11))?;
    let (scopes, event, over): (Option<&str>, i64, i64) = (r.get(7), r.get(8), r.get(9));
    let scopes = scopes.map(|s| format!(r#","scopes":{s}"#)).unwrap_or_default();
    let omitted = if over > 0 {
        format!(r#","scopes_omitted":{over}"#)
    } else {
        String::new()
    };
    page_json(r, q, &format!(r#"{scopes},"scope_event":{event}{omitted}"#))
}

/// What the page function says about a page besides its rows.
#[derive(Debug, Clone, Copy)]
struct Page {
    /// The user's highest `server_id`.
    top: i64,
    /// The window's inclusive end.
    window_until: i64,
    /// Rows read before the byte cut: up to `limit + 1`.
    read: i64,
    /// The page's last `server_id`, if it has rows.
    last: Option<i64>,
    /// The byte budget cut the page.
    cut: bool,
    /// Where the scan stopped short of the window, when the page did not fill before it: the cursor jumps there.
    skip: Option<i64>,
}

impl Page {
    /// `(has_more, next_after)` of a page asked for with `after` and `limit`. A page that ends the window moves the
    /// cursor to the window's end (or the top, if the window is past it), never back; a page whose scan stopped
    /// short of the window moves it to where the scan stopped, with more to come.
    fn cursor(self, after: i64, limit: i64) -> (bool, i64) {
        if self.cut || self.read > limit {
            (true, self.last.unwrap_or(after))
        } else if let Some(skip) = self.skip {
            (true, after.max(skip))
        } else {
            (false, after.max(self.window_until.min(self.top)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    fn page(read: i64, last: Option<i64>, cut: bool) -> Page {
        Page {
            top: 90,
            window_until: 80,
            read,
            last,
            cut,
            skip: None,
        }
    }

    #[test]
    fn a_full_page_continues_after_its_last_row() {
        assert_eq!(page(11, Some(40), false).cursor(10, 10), (true, 40));
        assert_eq!(page(3, Some(20), true).cursor(10, 10), (true, 20), "cut by bytes");
    }

    #[test]
    fn a_page_that_ends_the_window_moves_to_its_end_and_never_back() {
        assert_eq!(page(10, Some(70), false).cursor(10, 10), (false, 80));
        assert_eq!(page(0, None, false).cursor(85, 10), (false, 85));
        let past_top = Page {
            top: 50,
            ..page(0, None, false)
        };
        assert_eq!(past_top.cursor(10, 10), (false, 50));
    }

    #[test]
    fn a_page_whose_scan_stopped_short_jumps_to_where_it_stopped() {
        let stopped = Page {
            skip: Some(60),
            ..page(2, Some(30), false)
        };
        assert_eq!(stopped.cursor(10, 10), (true, 60));
        let full = Page {
            skip: Some(60),
            ..page(11, Some(30), false)
        };
        assert_eq!(
            full.cursor(10, 10),
            (true, 30),
            "a full page continues after its last row"
        );
    }
}
