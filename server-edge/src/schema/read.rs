//! The change log's read functions (see [`read_function`]): created with the schema, called by the read
//! routes (download, watch) with the statements below.

use crate::sql::read_function;

/// The DDL of every read function.
pub(super) fn read_functions() -> String {
    [page_function(), latest_function()].concat()
}

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
pub const DOWNLOAD_SQL: &str = "SELECT * FROM sync.download_page_v2($1, $2, $3, $4, $5, $6, $7, $8) ORDER BY server_id";

/// The page budget as the page functions take it: 0 (unlimited) is the largest budget.
pub fn page_budget(max_page_bytes: usize) -> i64 {
    match max_page_bytes {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    }
}

/// The body of `sync.latest_change_v1(user, after, source)`: the user's newest change from another device above
/// `after`, or NULL. A backward scan of the `(user_id, server_id)` index from the user's newest change down to
/// `after` (planned by [`read_function`]'s rules; `max()` was planned as a walk of the primary key past every newer
/// change of every user, each second of a watch).
const LATEST_BODY: &str = "SELECT server_id FROM sync.server_change_log
  WHERE (user_id, server_id) > ($1, $2) AND user_id <= $1 AND source_id <> $3
  ORDER BY user_id DESC, server_id DESC LIMIT 1";

/// `sync.latest_change_v1`, created at start-up.
pub fn latest_function() -> String {
    read_function("sync.latest_change_v1", "text, int8, text", "int8", LATEST_BODY)
}

/// The watch's look: one call of [`latest_function`]'s function.
pub const LATEST_SQL: &str = "SELECT sync.latest_change_v1($1, $2, $3)";
