//! The change log's read functions (see [`read_procedure`]): created with the schema, called by the read
//! routes (download, watch) with the statements below.

use crate::sql::{procedure, read_procedure};

/// The DDL of every read function.
pub(super) fn read_functions() -> String {
    [
        page_function(),
        latest_function(),
        scoped_page_function(),
        latest_scoped_function(),
    ]
    .concat()
}

/// The page function's body. `ORDER BY … DESC LIMIT 1`, not `max()`: see `upload/store.rs`. The window comes
/// first: at (or past) its end the answer is the user's top alone, one probe of the index, and the page statement
/// is not run. The page is bounded by row comparisons on `(user_id, server_id)` and ordered by both columns, so
/// the btree scan starts after `after` and stops at the window's end, and the primary key cannot serve the order
/// (see [`read_procedure`]). A STABLE function's statements all read the calling statement's
/// snapshot, so the window bound and the page agree (PROTOCOL.md §4.4, §6.6).
///
/// Pages are also cut by payload bytes (`p_max`, `max_page_bytes`), in SQL, so that PostgreSQL never reads more
/// than the budget and one row: a row is in the page while the payload bytes *before* it are under the budget (so
/// a first row larger than the budget goes alone), and the first row past it only says that the page was cut
/// (`cut`): more rows follow. The sizes are running sums in scan order, in two steps, because the exact size of a
/// json value means reading all of it (decompressed, through its text output). First the stored sizes, free to
/// read from the values' headers, pre-cut the page: a stored size less 8 header bytes is never more than the text
/// (compression is kept only when it saves), so the pre-cut keeps every row the exact cut keeps, and its marker.
/// Only the rows it keeps are measured exactly; without it, a page of large rows read the next `limit` payloads
/// whole to send a few of them, and paging through large rows cost O(rows × limit). Compressible payloads are
/// still measured past the cut, as far as their compression ratio reaches (at most `limit` rows). `OFFSET 0`
/// measures each row once (each window function would read the payload again), and the windows are ordered like
/// the scan, so no sort is planned.
///
/// The page's JSON (the `changes` array's elements, PROTOCOL.md §4.4) is written here, by concatenation in scan
/// order: the stored payload text goes out as it came in, and the server only wraps the page. `n` counts the rows
/// read before the cut (up to `p_limit + 1`: more than `p_limit` means more rows follow), `last_id` is the last
/// row of the page.
const PAGE_TOP: &str = "  m := coalesce((SELECT c.server_id FROM sync.server_change_log c WHERE c.user_id >= p_user AND c.user_id <= p_user
                 ORDER BY c.user_id DESC, c.server_id DESC LIMIT 1), 0);
";

/// The scan of [`page_body`] for one user: a range of the `(user_id, server_id)` index, read at most `p_scan` rows
/// deep before the filters (see [`page_body`]).
const PAGE_SCAN: &str = "FROM (SELECT * FROM sync.server_change_log x
                        WHERE (x.user_id, x.server_id) > (p_user, p_after) AND (x.user_id, x.server_id) <= (p_user, e)
                        ORDER BY x.user_id, x.server_id LIMIT p_scan) c
                  WHERE (p_schema IS NULL OR c.schema_name = p_schema) AND (p_self OR c.source_id <> p_source)
                  ORDER BY c.user_id, c.server_id LIMIT p_limit + 1) s";

/// Where the classic page's scan stopped short of the window: the `p_scan`-th row of the range, or NULL.
const PAGE_BOUND: &str = "(SELECT x.server_id FROM sync.server_change_log x
             WHERE (x.user_id, x.server_id) > (p_user, p_after) AND (x.user_id, x.server_id) <= (p_user, e)
             ORDER BY x.user_id, x.server_id OFFSET p_scan - 1 LIMIT 1)";

/// The parts of a page function: the statement that sets the top `m` (and whatever else the function answers
/// besides its page), the FROM clause of the rows in order, the order of the windows over them with its table
/// alias left to `{t}`, the entry's `source_id` and the entry fields after `source_change_id`, and the bound of
/// its scan (see [`page_body`]).
struct PageParts<'a> {
    declare: &'a str,
    top: &'a str,
    scan: &'a str,
    order: &'a str,
    source: &'a str,
    scope: &'a str,
    bound: &'a str,
    /// The owners whose history horizon the page is checked against (docs/history.md).
    owners: &'a str,
    /// Whether rows past `skip` can be in the page (several owners' scans merged): then it is read again.
    rerun: bool,
}

/// The page statement around a scan.
///
/// **The work of one page is bounded** whatever the filters hide: the scan reads at most `p_scan` rows of each
/// owner's range (`e`, the window's end as far as the scan goes) before the own-device and schema filters, so a
/// device whose window is a million of its own changes costs `p_scan` rows per request, not the whole window.
/// When a page did not fill (no more rows than `p_limit`, not cut) and an owner's scan reached `p_scan` rows, the
/// page ends where that scan stopped (`skip`, the `p_scan`-th row of the range; the least over owners): the rows
/// up to it that passed the filters are the page, and the cursor jumps to it with `has_more` (PROTOCOL.md §6.6's
/// `next_after` jump, taken before the window's end). With several owners the page is read again up to `skip`, so
/// that no row past the cursor is sent twice.
fn page_body(p: &PageParts<'_>) -> String {
    let PageParts {
        declare,
        top,
        scan,
        order,
        source,
        scope,
        bound,
        owners,
        rerun,
    } = p;
    let [c, q, s, b] = ["c", "q", "s", "b"].map(|t| order.replace("{t}", t));
    let select = format!(
        r#"SELECT count(*) FILTER (WHERE NOT p.is_cut), max(p.server_id) FILTER (WHERE NOT p.is_cut AND p.rn <= p_limit),
         coalesce(bool_or(p.is_cut), false),
         coalesce(string_agg(
           '{{"server_id":' || p.server_id || ',"schema":' || to_json(p.schema_name) || ',"table":' || to_json(p.table_name)
           || ',"op":' || to_json(p.op) || ',"pk":"' || p.pk_uuid || '"' || coalesce(',"payload":' || p.json_text, '')
           || ',"server_version":' || p.server_version || ',"deleted":' || (p.op = 'DELETE')
           || ',"source_id":' || {source} || ',"source_change_id":' || p.source_change_id{scope}
           || ',"ts":"' || to_char(p.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"}}',
           ',' ORDER BY p.server_id) FILTER (WHERE NOT p.is_cut AND p.rn <= p_limit), '')
    INTO n, last_id, cut, page
  FROM (
    SELECT q.*, q.before >= p_max AS is_cut, row_number() OVER (ORDER BY {q}) AS rn
    FROM (
      SELECT b.*, coalesce(sum(b.bytes) OVER r, 0) AS before, coalesce(lag(b.bytes) OVER r, 0) AS last
      FROM (SELECT s.*, s.payload::text AS json_text, octet_length(s.payload::text) AS bytes
            FROM (SELECT c.*, coalesce(sum(greatest(pg_column_size(c.payload) - 8, 0)) OVER (
                                   ORDER BY {c} ROWS BETWEEN UNBOUNDED PRECEDING AND 2 PRECEDING), 0) AS stored
                  {scan}
            WHERE s.stored < p_max ORDER BY {s} OFFSET 0) b
      WINDOW r AS (ORDER BY {b} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) q
    WHERE q.before - q.last < p_max) p;"#
    );
    let again = if *rerun { select.as_str() } else { "" };
    format!(
        r#"
#variable_conflict use_column
{declare}BEGIN
{top}  w := CASE WHEN p_until > 0 THEN p_until ELSE m END;
  e := w; n := 0; cut := false; page := ''; skip := NULL;
  IF p_after >= w THEN
    RETURN NEXT;
    RETURN;
  END IF;
  {select}
  IF n <= p_limit AND NOT cut THEN
    skip := {bound};
    IF skip IS NOT NULL AND skip < w THEN
      e := skip;
      {again}
    ELSE
      skip := NULL;
    END IF;
  END IF;
  -- Last, after every read of the log, so that a page that missed removed tombstones is refused (docs/history.md).
  pruned := (SELECT max(h.pruned_through) FROM sync.history_horizon h WHERE h.user_id = ANY({owners}));
  IF p_after = 0 OR p_after >= pruned THEN
    pruned := NULL;
  END IF;
  RETURN NEXT;
END"#
    )
}

/// `sync.download_page_v5(user, after, until, schema, include_self, source, limit, max_bytes, scan)`, created at
/// start-up (`max_bytes` > 0; the server passes `i64::MAX` for unlimited). One row: the user's top `m`, the
/// window's end `w`, the page, `skip` (see [`page_body`]), and `pruned`: the owner's history horizon when the
/// cursor is above 0 and below it (v5, docs/history.md; the page is then not to be sent).
pub fn page_function() -> String {
    read_procedure(
        "sync.download_page_v5",
        "p_user text, p_after int8, p_until int8, p_schema text, p_self bool, p_source text, p_limit int8, \
         p_max int8, p_scan int8",
        "TABLE (m int8, w int8, n int8, last_id int8, cut bool, page text, skip int8, pruned int8)",
        &page_body(&PageParts {
            declare: "DECLARE\n  e int8;\n",
            top: PAGE_TOP,
            scan: PAGE_SCAN,
            order: "{t}.user_id, {t}.server_id",
            source: "to_json(p.source_id)",
            scope: "",
            bound: PAGE_BOUND,
            owners: "ARRAY[p_user]",
            rerun: false,
        }),
    )
}

/// One statement, so the window bound and the page come from one snapshot (PROTOCOL.md §4.4, §6.6).
pub const DOWNLOAD_SQL: &str =
    "SELECT m, w, n, last_id, cut, page, skip, pruned FROM sync.download_page_v5($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The page budget as the page functions take it: 0 (unlimited) is the largest budget.
pub fn page_budget(max_page_bytes: usize) -> i64 {
    match max_page_bytes {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    }
}

/// The body of `sync.latest_change_v2(user, after, source)`: the user's newest change from another device above
/// `after`, or NULL. A backward scan of the `(user_id, server_id)` index from the user's newest change down to
/// `after` (planned by [`read_procedure`]'s rules; `max()` was planned as a walk of the primary key past every newer
/// change of every user, each second of a watch).
const LATEST_BODY: &str = "BEGIN
  RETURN (SELECT c.server_id FROM sync.server_change_log c
          WHERE (c.user_id, c.server_id) > (p_user, p_after) AND c.user_id <= p_user AND c.source_id <> p_source
          ORDER BY c.user_id DESC, c.server_id DESC LIMIT 1);
END";

/// `sync.latest_change_v2`, created at start-up.
pub fn latest_function() -> String {
    read_procedure(
        "sync.latest_change_v2",
        "p_user text, p_after int8, p_source text",
        "int8",
        LATEST_BODY,
    )
}

/// The body of `sync.latest_scoped_v2(user, after, source, the source in scope owners' rows, max scopes)`: the
/// newest change from another device above `after` of the user or of the first `max scopes` scopes the user is a
/// member of, the scopes for everyone (`user_id = '*'`, docs/backend-writes.md §5) included (docs/sharing.md §7;
/// `max_scopes_per_user`, as the download), or NULL. One backward probe per owner, as [`LATEST_BODY`]'s.
const LATEST_SCOPED_BODY: &str = "BEGIN
  RETURN (SELECT max(l.id) FROM (SELECT p_user AS o UNION ALL
                                 (SELECT DISTINCT chr(31) || m.scope FROM sync.scope_members m
                                  WHERE m.user_id = p_user OR m.user_id = '*' ORDER BY 1 LIMIT p_max)) w
          CROSS JOIN LATERAL (
            SELECT c.server_id AS id FROM sync.server_change_log c
            WHERE (c.user_id, c.server_id) > (w.o, p_after) AND c.user_id <= w.o
              AND c.source_id <> CASE WHEN left(w.o, 1) = chr(31) THEN p_scoped_source ELSE p_source END
            ORDER BY c.user_id DESC, c.server_id DESC LIMIT 1) l);
END";

/// `sync.latest_scoped_v2`, created at start-up.
pub fn latest_scoped_function() -> String {
    read_procedure(
        "sync.latest_scoped_v2",
        "p_user text, p_after int8, p_source text, p_scoped_source text, p_max int8",
        "int8",
        LATEST_SCOPED_BODY,
    )
}

/// A scope-aware watch's look: one call of [`latest_scoped_function`]'s function.
pub const LATEST_SCOPED_SQL: &str = "SELECT sync.latest_scoped_v2($1, $2, $3, $4, $5)";

/// The watch's look: one call of [`latest_function`]'s function.
pub const LATEST_SQL: &str = "SELECT sync.latest_change_v2($1, $2, $3)";

/// The scope-aware page's head (docs/sharing.md §5.2): the user's memberships and newest membership event, the
/// first `p_max_scopes` of them by name (the rest are counted, not served), then the shared form of every owner lock the page reads (the user's, then each scope's stripe in
/// ascending order), then the memberships again among those locked, so a leave committed before the locks is
/// honoured at once, then the owners' top. While the shared locks are held no upload of any owner is in flight,
/// so the statements after them all see the same log for those owners, and the top bounds everything that can
/// still commit for them: one cursor across owners is safe.
const SCOPED_TOP: &str = r#"  m := 0; w := 0; n := 0; cut := false; page := ''; skip := NULL; r_scopes := NULL; r_over := 0; refused := NULL;
  SELECT coalesce(array_agg(DISTINCT x.scope ORDER BY x.scope), '{}') INTO held FROM sync.scope_members x
    WHERE x.user_id = p_user OR x.user_id = '*';
  r_event := coalesce((SELECT max(t.id) FROM unnest(ARRAY[p_user, '*']) AS u(id) CROSS JOIN LATERAL (
                         SELECT e.id FROM sync.scope_events e WHERE e.user_id >= u.id AND e.user_id <= u.id
                         ORDER BY e.user_id DESC, e.id DESC LIMIT 1) t), 0);
  r_over := greatest(cardinality(held) - p_max_scopes, 0);
  held := held[1:least(p_max_scopes, 2147483647)::int4];
  IF p_scope IS NOT NULL THEN
    held := ARRAY(SELECT x FROM unnest(held) AS x WHERE x = p_scope);
  END IF;
  PERFORM set_config('lock_timeout', p_timeout, true);
  PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_user, 0));
  FOR stripe IN SELECT DISTINCT (hashtextextended(x, 0) & 63)::int4 FROM unnest(held) AS x ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock_shared(28534, stripe);
  END LOOP;
  SELECT coalesce(array_agg(x.scope ORDER BY x.scope), '{}'),
         coalesce(json_agg(json_build_object('scope', x.scope, 'role', x.role) ORDER BY x.scope), '[]')::text
    INTO held, r_scopes
    FROM (SELECT y.scope, max(CASE WHEN y.user_id = '*' THEN 'reader' ELSE y.role END) AS role FROM sync.scope_members y
          WHERE (y.user_id = p_user OR y.user_id = '*') AND y.scope = ANY(held) GROUP BY y.scope) x;
  IF p_scope IS NOT NULL AND cardinality(held) = 0 THEN
    refused := 'scope_forbidden';
    RETURN NEXT;
    RETURN;
  END IF;
  IF r_event = p_known THEN
    r_scopes := NULL;
  END IF;
  owners := ARRAY(SELECT chr(31) || x FROM unnest(held) AS x);
  IF p_scope IS NULL THEN
    owners := p_user || owners;
  END IF;
  m := coalesce((SELECT max(t.top) FROM unnest(owners) AS o(owner) CROSS JOIN LATERAL (
                   SELECT c.server_id AS top FROM sync.server_change_log c WHERE c.user_id >= o.owner AND c.user_id <= o.owner
                   ORDER BY c.user_id DESC, c.server_id DESC LIMIT 1) t), 0);
"#;

/// The scope-aware page's scan: each owner's range of the `(user_id, server_id)` index (at most `p_scan` rows
/// deep, then at most a page each after the filters), merged by `server_id`.
const SCOPED_SCAN: &str = "FROM (SELECT x.* FROM unnest(owners) AS o(owner) CROSS JOIN LATERAL (
                          SELECT * FROM (SELECT * FROM sync.server_change_log y
                                         WHERE (y.user_id, y.server_id) > (o.owner, p_after) AND (y.user_id, y.server_id) <= (o.owner, e)
                                         ORDER BY y.user_id, y.server_id LIMIT p_scan) x
                          WHERE (p_schema IS NULL OR x.schema_name = p_schema)
                            AND (p_self OR x.source_id <> CASE WHEN left(o.owner, 1) = chr(31) THEN p_scoped_source ELSE p_source END)
                          ORDER BY x.user_id, x.server_id LIMIT p_limit + 1) x) c
                  ORDER BY c.server_id LIMIT p_limit + 1) s";

/// Where the first owner's scan stopped short of the window: the least `p_scan`-th row of an owner's range, or NULL.
const SCOPED_BOUND: &str = "(SELECT min(b.id) FROM unnest(owners) AS o(owner) CROSS JOIN LATERAL (
               SELECT y.server_id AS id FROM sync.server_change_log y
               WHERE (y.user_id, y.server_id) > (o.owner, p_after) AND (y.user_id, y.server_id) <= (o.owner, e)
               ORDER BY y.user_id, y.server_id OFFSET p_scan - 1 LIMIT 1) b)";

/// Entries of a scope owner name their scope and their author, and send the device alone as `source_id`
/// (`crate::schema::scopes::scope_source`).
const SCOPED_FIELD: &str =
    "\n           || CASE WHEN left(p.user_id, 1) = chr(31) THEN ',\"scope\":' || to_json(substr(p.user_id, 2))
                || ',\"author\":' || to_json(p.source_id::json ->> 0) ELSE '' END";

/// A scope owner's `source_id` is `[user, device]`.
const SCOPED_SOURCE: &str =
    "CASE WHEN left(p.user_id, 1) = chr(31) THEN to_json(p.source_id::json ->> 1) ELSE to_json(p.source_id) END";

/// `sync.download_scoped_v4(user, scope, known event, after, until, schema, include_self, source, the source in
/// scope owners' rows, limit, max_bytes, max scopes, lock timeout, scan)`: the scope-aware page (docs/sharing.md
/// §5.2), or with `scope` one scope's (§5.3). One row: `m`, `w`, the page and `skip` as [`page_function`]'s, the
/// memberships as JSON (NULL when the newest membership event is still `known`), that event, the memberships past
/// `max scopes` (not served: the first by name are), `refused` (`scope_forbidden`) with nothing else, and `pruned`
/// as [`page_function`]'s over every owner read (v4).
pub fn scoped_page_function() -> String {
    procedure(
        "sync.download_scoped_v4",
        "p_user text, p_scope text, p_known int8, p_after int8, p_until int8, p_schema text, p_self bool, \
         p_source text, p_scoped_source text, p_limit int8, p_max int8, p_max_scopes int8, p_timeout text, p_scan int8",
        "TABLE (m int8, w int8, n int8, last_id int8, cut bool, page text, skip int8, r_scopes text, r_event int8, \
         r_over int8, refused text, pruned int8)",
        "VOLATILE",
        &page_body(&PageParts {
            declare: "DECLARE\n  held text[];\n  owners text[];\n  stripe int4;\n  e int8;\n",
            top: SCOPED_TOP,
            scan: SCOPED_SCAN,
            order: "{t}.server_id",
            source: SCOPED_SOURCE,
            scope: SCOPED_FIELD,
            bound: SCOPED_BOUND,
            owners: "owners",
            rerun: true,
        }),
    )
}

/// The scope-aware page: one call.
pub const DOWNLOAD_SCOPED_SQL: &str = "SELECT m, w, n, last_id, cut, page, skip, r_scopes, r_event, r_over, refused, \
     pruned FROM sync.download_scoped_v4($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
