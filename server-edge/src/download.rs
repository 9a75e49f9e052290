//! `GET /sync/download` (PROTOCOL.md §4.4, §6.6): one call of a SQL function, so the window bound and the page
//! come from one snapshot. The function writes the page's JSON; the server wraps it.

use oversync_protocol::validate::DownloadQuery;
use tokio_postgres::types::Type;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::runtime::Conn;
use crate::schema::read::{DOWNLOAD_SQL, page_budget};

/// Serves one download page on `conn` (of a ready database), cut at `max_page_bytes` of payload: the body of the
/// 200 response, a `DownloadResponse` in JSON.
pub async fn download(
    conn: &impl Conn,
    who: &Principal,
    q: &DownloadQuery,
    max_page_bytes: usize,
) -> Result<String, ApiError> {
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
            ],
        )
        .await
        .map_err(ApiError::download)?;
    let r = rows
        .first()
        .ok_or_else(|| ApiError::Download("the page function returned no row".into()))?;
    let page = Page {
        top: r.get(0),
        window_until: r.get(1),
        read: r.get(2),
        last: r.get(3),
        cut: r.get(4),
    };
    let changes: &str = r.get(5);
    let (has_more, next_after) = page.cursor(q.after, q.limit);
    Ok(format!(
        r#"{{"changes":[{changes}],"has_more":{has_more},"next_after":{next_after},"window_until":{}}}"#,
        page.window_until
    ))
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
}

impl Page {
    /// `(has_more, next_after)` of a page asked for with `after` and `limit`. A page that ends the window moves the
    /// cursor to the window's end (or the top, if the window is past it), never back.
    fn cursor(self, after: i64, limit: i64) -> (bool, i64) {
        let has_more = self.cut || self.read > limit;
        let next_after = if has_more {
            self.last.unwrap_or(after)
        } else {
            after.max(self.window_until.min(self.top))
        };
        (has_more, next_after)
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
}
