//! Backend writes (issue 33, docs/backend-writes.md): every committed INSERT, UPDATE and DELETE on a registered
//! business table by a session other than the server's own materialisation becomes a change in its owner's log,
//! exactly as if a device had uploaded it, in the writing transaction.
//!
//! Three statement triggers per table with transition tables (one per event: PostgreSQL gives each event its
//! own), all running `sync.capture_v2()`, and a `BEFORE TRUNCATE` trigger that refuses a TRUNCATE (it fires no
//! row events, so the devices could never learn of it). Statement triggers see a whole statement's rows at once:
//! a `COPY` of 100k rows is captured by a handful of set-based statements, and the owner locks of a statement are
//! taken in one fixed order (users by lock key, then scope stripes ascending, as uploads and downloads take them),
//! so two capturing statements never deadlock on them.
//!
//! What a capture does, for one statement's rows:
//! 1. refuses the statement, naming the row and the rule, when a row cannot be synced: no owner (or scope), a key
//!    that is not a canonical UUID, a value the encoding cannot carry (NaN, infinite numbers or timestamps). A
//!    row that cannot reach the devices must not reach the table either, or the two would differ for good;
//! 2. takes the owner locks (PROTOCOL.md §6.1.2, docs/sharing.md §4): from here on, until the transaction
//!    commits, no upload of these owners runs, and the log ids it draws are above every committed id of theirs,
//!    so one owner's ids still become visible in commit order (§6.6);
//! 3. appends to the log, from the backend's source ([`BACKEND_SOURCE`]): a DELETE where a row left an owner (a
//!    delete, or the old place of a move or a key change), an INSERT or UPDATE with the row's next version where
//!    a row is new or changed. The payload is the after-image in the §5 encoding, built on the row's last
//!    payload: fields the business table lacks keep their values, and columns the statement did not change keep
//!    the device's own encoding. An UPDATE that changes nothing a device can see appends nothing;
//! 4. writes the metadata and state as an upload's apply does.
//!
//! The server's own materialisation sets `oversync.capture = off` for its transaction (`sync.upload_write_v4`),
//! so applied uploads are never captured a second time.

use tokio_postgres::Client;

use super::{DDL_LOCK_TIMEOUT, MIGRATION_LOCK, SchemaError};
use crate::registry::Registry;
use crate::sql::quote_ident;

pub use oversync_protocol::wire::BACKEND_SOURCE;

/// The trigger functions, created with the schema (all three together, so `sync.capture_v2()` stands for them).
pub const CAPTURE_SQL: &str = r#"DO $do$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'capture_truncate_v1' AND pronamespace = 'sync'::regnamespace) THEN
    -- A business value (as to_jsonb gives it) in the §5 encoding, as JSON text: booleans as 0/1, BLOBs as padded
    -- base64, timestamps with a time zone as RFC 3339 UTC with six fractional digits (or, as 'unix', seconds
    -- since the epoch), floats with a fraction.
    CREATE FUNCTION sync.capture_value_v1(v jsonb, kind text) RETURNS text LANGUAGE sql STABLE AS $fn$
      SELECT CASE
        WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN 'null'
        WHEN kind = 'bool' THEN CASE WHEN v = 'true'::jsonb THEN '1' ELSE '0' END
        WHEN kind = 'bytea' THEN to_json(translate(encode(decode(substr(v #>> '{}', 3), 'hex'), 'base64'), E'\n', ''))::text
        WHEN kind = 'tz' THEN to_json(to_char((v #>> '{}')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
        WHEN kind = 'unix' THEN trim_scale(extract(epoch FROM (v #>> '{}')::timestamptz))::text
        WHEN kind = 'float' AND v::text !~ '[.eE]' THEN v::text || '.0'
        ELSE v::text END
    $fn$;
    CREATE FUNCTION sync.capture_truncate_v1() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      IF coalesce(current_setting('oversync.capture', true), '') <> 'off' THEN
        RAISE EXCEPTION 'oversync: TRUNCATE of %.% is not captured, so devices would keep its rows', TG_TABLE_SCHEMA, TG_TABLE_NAME
          USING ERRCODE = 'feature_not_supported',
                HINT = 'DELETE the rows instead (docs/backend-writes.md), or SET LOCAL oversync.capture = off to truncate without telling devices';
      END IF;
      RETURN NULL;
    END $fn$;
  END IF;
  IF to_regprocedure('sync.capture_v2()') IS NULL THEN
    -- v2: a row new to an owner whose tombstones were removed starts above the owner's version floor
    -- (crate::schema::history).
    -- The capture of one statement's rows (or, from `adopt`, of rows already in the table). p_args: the
    -- registered schema and table, the payload's key field, the key column, the owner column and 'private' (it
    -- holds the user id) or 'scoped' (it holds the scope). A row that cannot be synced fails the statement, or
    -- with p_adopt is answered (r_key, r_why) and left out, as are rows sync already has. The last row answers
    -- r_logged, the entries appended.
    CREATE FUNCTION sync.capture_rows_v2(p_rel oid, p_args text[], olds jsonb[], news jsonb[], p_adopt bool)
      RETURNS TABLE (r_key text, r_why text, r_logged int8) LANGUAGE plpgsql
      -- One generic plan per session for each statement: planning the capture statement costs several times a
      -- one-row write, and PL/pgSQL would plan it afresh, with the values, for its first five calls. A generic plan
      -- cannot know how many rows a statement brings, so no join of them may be a nested loop (quadratic in the
      -- rows); the lookups of sync state are LATERAL index probes, nested by nature. JIT off: a disabled node's
      -- cost is past jit_above_cost, so every run would compile the plan (numbers: bench/results/backend-writes.md).
      SET plan_cache_mode = force_generic_plan SET enable_nestloop = off SET jit = off AS $fn$
    DECLARE
      reg_s text := p_args[1];
      reg_t text := p_args[2];
      key_field text := p_args[3];
      key_col text := p_args[4];
      owner_col text := p_args[5];
      scoped bool := p_args[6] = 'scoped';
      c_name text[];
      c_kind text[];
      key_kind text;
      bad record;
      lock_key int8;
      stripe int4;
      stamp text;
      cached text[];
    BEGIN
      -- The table's columns and their kinds, kept for the session under the version of the table's catalogue row
      -- (an ALTER TABLE writes it anew): one probe of pg_class instead of a read of its columns per statement.
      stamp := (SELECT c.xmin::text FROM pg_class c WHERE c.oid = p_rel);
      cached := nullif(current_setting('oversync.capture_columns_' || p_rel, true), '')::text[];
      IF cached[1] = stamp THEN
        c_name := cached[3 : 2 + cached[2]::int4];
        c_kind := cached[3 + cached[2]::int4 :];
      ELSE
        SELECT array_agg(a.attname::text ORDER BY a.attnum),
               array_agg(CASE coalesce(bt.typname, t.typname)
                           WHEN 'bytea' THEN 'bytea' WHEN 'bool' THEN 'bool' WHEN 'timestamptz' THEN 'tz'
                           WHEN 'timestamp' THEN 'ts' WHEN 'date' THEN 'ts'
                           WHEN 'float4' THEN 'float' WHEN 'float8' THEN 'float' WHEN 'numeric' THEN 'numeric'
                           ELSE 'plain' END ORDER BY a.attnum)
          INTO c_name, c_kind
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
          WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped;
        PERFORM set_config('oversync.capture_columns_' || p_rel,
                           (ARRAY[stamp, cardinality(c_name)::text] || c_name || c_kind)::text, false);
      END IF;
      key_kind := c_kind[array_position(c_name, key_col)];

      -- 1. Rows that cannot be synced fail the statement, named (or, adopting, are answered and left out).
      FOR bad IN SELECT x.j ->> key_col AS k, x.why, x.i FROM (
        SELECT r.j, r.i, CASE
            WHEN nullif(r.j ->> owner_col, '') IS NULL THEN
              CASE WHEN scoped THEN format('its scope column %s is NULL or empty (a row of a shared table belongs to a scope)', owner_col)
                   ELSE format('its owner column %s is NULL or empty (every synced row has an owner)', owner_col) END
            WHEN scoped AND octet_length(r.j ->> owner_col) > 128 THEN format('its scope (%s) is longer than 128 bytes', owner_col)
            WHEN NOT scoped AND left(r.j ->> owner_col, 1) = chr(31) THEN format('its owner (%s) starts with the reserved character U+001F', owner_col)
            WHEN CASE WHEN key_kind = 'bytea' THEN coalesce(r.j ->> key_col, '') !~ '^\\x[0-9a-f]{32}$'
                      ELSE coalesce(r.j ->> key_col, '') !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' END THEN
              format('its key %s is not a canonical UUID (lower-case, dashed; a bytea key holds 16 bytes)', key_col)
            ELSE (SELECT format('column %s holds %s, which the sync encoding cannot carry', c.n, r.j -> c.n)
                  FROM unnest(c_name, c_kind) AS c(n, kind)
                  WHERE (c.kind IN ('float', 'numeric') AND jsonb_typeof(r.j -> c.n) = 'string')
                     OR (c.kind IN ('tz', 'ts') AND r.j ->> c.n IN ('infinity', '-infinity'))
                  LIMIT 1) END AS why
        FROM unnest(news) WITH ORDINALITY AS r(j, i)) x
      WHERE x.why IS NOT NULL LOOP
        IF NOT p_adopt THEN
          RAISE EXCEPTION 'oversync: cannot sync the row of % with key %: %', p_rel::regclass, coalesce(bad.k, 'NULL'), bad.why
            USING ERRCODE = 'check_violation', HINT = 'every write to a synced table reaches the devices (docs/backend-writes.md)';
        END IF;
        news[bad.i] := NULL;
        RETURN QUERY SELECT bad.k, bad.why, NULL::int8;
      END LOOP;
      news := array_remove(news, NULL);

      -- 2. The owner locks: users by lock key, then scope stripes ascending.
      FOR lock_key IN SELECT DISTINCT hashtextextended(x.j ->> owner_col, 0) FROM unnest(olds || news) AS x(j)
                      WHERE NOT scoped AND x.j ->> owner_col IS NOT NULL ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
      END LOOP;
      FOR stripe IN SELECT DISTINCT (hashtextextended(x.j ->> owner_col, 0) & 63)::int4 FROM unnest(olds || news) AS x(j)
                    WHERE scoped AND x.j ->> owner_col IS NOT NULL ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(28534, stripe);
      END LOOP;

      -- 3 and 4, in one statement (a new snapshot, taken under the locks). Sync state is probed by key per row
      -- (LATERAL … LIMIT 1: an index probe whatever the statistics say), the statement's own rows are hash-joined,
      -- and every payload is built in one aggregate over (row, field).
      WITH cols AS (SELECT c.n, lower(c.n) AS f, CASE WHEN c.n = key_col THEN key_field ELSE lower(c.n) END AS pf,
                           c.kind, c.i
                    FROM unnest(c_name, c_kind) WITH ORDINALITY AS c(n, kind, i)
                    WHERE scoped OR c.n <> owner_col),
      keyed AS (SELECT x.j, x.i, x.is_new,
                       CASE WHEN key_kind = 'bytea' AND x.j ->> key_col ~ '^\\x[0-9a-f]{32}$' THEN substr(x.j ->> key_col, 3)::uuid::text
                            WHEN key_kind <> 'bytea' AND x.j ->> key_col ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                            THEN x.j ->> key_col END AS k,
                       CASE WHEN scoped THEN chr(31) ELSE '' END || (x.j ->> owner_col) AS w
                FROM (SELECT y.j, y.i, false AS is_new FROM unnest(olds) WITH ORDINALITY AS y(j, i)
                      UNION ALL SELECT y.j, y.i, true FROM unnest(news) WITH ORDINALITY AS y(j, i)) x),
      -- Old rows a device cannot have (no owner, a key that is no UUID) are not looked for.
      o AS (SELECT j, i, k, w FROM keyed WHERE NOT is_new AND k IS NOT NULL AND w IS NOT NULL),
      n AS (SELECT j, i, k, w FROM keyed WHERE is_new),
      -- Rows that left an owner: deleted, or moved to another owner or key.
      gone AS (SELECT o.*, m.v FROM o
               CROSS JOIN LATERAL (SELECT x.server_version AS v FROM sync.sync_row_meta x
                                   WHERE x.user_id = o.w AND x.schema_name = reg_s AND x.table_name = reg_t
                                     AND x.pk_uuid = o.k::uuid AND NOT x.deleted LIMIT 1) m
               WHERE NOT EXISTS (SELECT 1 FROM n WHERE n.w = o.w AND n.k = o.k)),
      moved AS (SELECT DISTINCT ON (g.k) g.k, g.w, g.j, g.v FROM gone g ORDER BY g.k, g.w),
      -- Each new row with the row before the statement (at the same owner, else where it moved from), its
      -- metadata, and its last payload.
      base AS (
        SELECT n.i, n.w, n.k, n.j, coalesce(ps.j, mv.j) AS pj, m.server_version AS mv_v, m.deleted,
               mv.w AS from_w, mv.v AS from_v, s.payload AS here, coalesce(s.payload, sv.payload) AS last,
               (SELECT h.version_floor FROM sync.history_horizon h WHERE h.user_id = n.w) AS floor
        FROM n
        LEFT JOIN o ps ON ps.w = n.w AND ps.k = n.k
        LEFT JOIN moved mv ON mv.k = n.k AND mv.w <> n.w
        LEFT JOIN LATERAL (SELECT x.server_version, x.deleted FROM sync.sync_row_meta x
                           WHERE x.user_id = n.w AND x.schema_name = reg_s AND x.table_name = reg_t
                             AND x.pk_uuid = n.k::uuid LIMIT 1) m ON true
        LEFT JOIN LATERAL (SELECT x.payload FROM sync.sync_state x
                           WHERE x.user_id = n.w AND x.schema_name = reg_s AND x.table_name = reg_t
                             AND x.pk_uuid = n.k::uuid LIMIT 1) s ON true
        LEFT JOIN LATERAL (SELECT x.payload FROM sync.sync_state x
                           WHERE mv.w IS NOT NULL AND x.user_id = mv.w AND x.schema_name = reg_s AND x.table_name = reg_t
                             AND x.pk_uuid = n.k::uuid LIMIT 1) sv ON true),
      fields AS (
        -- The last payload's fields, in its order: the key, fields the table lacks as they were, unchanged
        -- columns in the device's own encoding, changed ones encoded.
        SELECT b.i, l.ord, l.key AS f,
               CASE WHEN l.key = key_field THEN to_json(b.k)::text
                    WHEN c.n IS NULL THEN l.value::text
                    WHEN b.pj IS NOT NULL AND b.pj -> c.n IS NOT DISTINCT FROM b.j -> c.n THEN l.value::text
                    -- A timestamp the devices send as Unix seconds stays a number.
                    WHEN c.kind IN ('tz', 'ts') AND json_typeof(l.value) = 'number' THEN sync.capture_value_v1(b.j -> c.n, 'unix')
                    ELSE sync.capture_value_v1(b.j -> c.n, c.kind) END
        FROM base b CROSS JOIN LATERAL json_each(b.last) WITH ORDINALITY AS l(key, value, ord)
        LEFT JOIN cols c ON c.f = l.key AND c.n <> key_col
        UNION ALL
        -- Columns the last payload lacks: all of them for a row new to sync, else those that hold a value (a
        -- column added since, say), not every column the devices do not have.
        SELECT b.i, 1000000 + c.i, c.pf,
               CASE WHEN c.n = key_col THEN to_json(b.k)::text ELSE sync.capture_value_v1(b.j -> c.n, c.kind) END
        FROM base b CROSS JOIN cols c
        WHERE b.last IS NULL
           OR (jsonb_typeof(b.j -> c.n) <> 'null' AND NOT EXISTS (SELECT 1 FROM json_each(b.last) AS l WHERE l.key = c.pf))),
      payloads AS (
        SELECT x.i, ('{' || string_agg(to_json(x.f)::text || ':' || x.v, ',' ORDER BY x.ord) || '}')::json AS payload
        FROM fields AS x(i, ord, f, v) GROUP BY x.i),
      e AS (
        SELECT 1 AS part, g.i, g.w, g.k, 'DELETE' AS op, NULL::json AS payload, g.v + 1 AS v FROM gone g
        UNION ALL
        SELECT 2, b.i, b.w, b.k, CASE WHEN b.deleted IS FALSE THEN 'UPDATE' ELSE 'INSERT' END, p.payload,
               greatest(coalesce(b.mv_v, b.floor, 0), coalesce(b.from_v + 1, 0)) + 1
        FROM base b JOIN payloads p ON p.i = b.i
        WHERE (b.deleted IS NOT FALSE OR b.from_w IS NOT NULL OR b.here IS NULL OR b.here::jsonb <> p.payload::jsonb)
          AND NOT (p_adopt AND b.mv_v IS NOT NULL)),
      logged AS (
        INSERT INTO sync.server_change_log
          (server_id, user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version, ts)
        SELECT x.id, x.w, reg_s, reg_t, x.op, x.k::uuid, x.payload,
               CASE WHEN scoped THEN json_build_array(chr(31) || 'backend', chr(31) || 'backend')::text ELSE chr(31) || 'backend' END,
               x.id, x.v, clock_timestamp()
        FROM (SELECT nextval('sync.server_change_log_server_id_seq') AS id, y.*
              FROM (SELECT * FROM e ORDER BY e.part, e.i OFFSET 0) y) x
        RETURNING 1),
      meta AS (
        INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version, deleted, updated_at)
        SELECT e.w, reg_s, reg_t, e.k::uuid, e.v, e.op = 'DELETE', now() FROM e
        ON CONFLICT (user_id, schema_name, table_name, pk_uuid)
        DO UPDATE SET server_version = excluded.server_version, deleted = excluded.deleted, updated_at = excluded.updated_at
        RETURNING 1),
      kept AS (
        INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
        SELECT e.w, reg_s, reg_t, e.k::uuid, e.payload FROM e WHERE e.op <> 'DELETE'
        ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE SET payload = excluded.payload
        RETURNING 1),
      dropped AS (
        -- Found by key, deleted by tuple id (a join here would be a hash join over the whole table).
        DELETE FROM sync.sync_state WHERE ctid = ANY(ARRAY(
          SELECT x.ctid FROM e CROSS JOIN LATERAL (
            SELECT x.ctid FROM sync.sync_state x WHERE x.user_id = e.w AND x.schema_name = reg_s AND x.table_name = reg_t
              AND x.pk_uuid = e.k::uuid LIMIT 1) x
          WHERE e.op = 'DELETE'))
        RETURNING 1)
      -- (Every data-modifying CTE runs to completion, read or not.)
      SELECT count(*) INTO lock_key FROM logged;
      RETURN QUERY SELECT NULL::text, NULL::text, lock_key;
    END $fn$;
    -- TG_ARGV as capture_rows_v2's p_args (from 1: TG_ARGV counts from 0).
    CREATE FUNCTION sync.capture_v2() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
      olds jsonb[] := '{}';
      news jsonb[] := '{}';
    BEGIN
      IF coalesce(current_setting('oversync.capture', true), '') = 'off' THEN
        RETURN NULL;
      END IF;
      IF TG_OP <> 'INSERT' THEN
        SELECT coalesce(array_agg(to_jsonb(old_row.*)), '{}') INTO olds FROM old_rows old_row;
      END IF;
      IF TG_OP <> 'DELETE' THEN
        SELECT coalesce(array_agg(to_jsonb(new_row.*)), '{}') INTO news FROM new_rows new_row;
      END IF;
      IF cardinality(olds) + cardinality(news) > 0 THEN
        PERFORM sync.capture_rows_v2(TG_RELID, ARRAY(SELECT unnest(TG_ARGV)), olds, news, false);
      END IF;
      RETURN NULL;
    END $fn$;
  END IF;
END $do$;
"#;

/// The newest id of a user's logs, the user's own and those of the scopes the user is a member of, scopes for
/// everyone included (`$1` the user): one backward probe per owner.
pub const TOP_SQL: &str = "
SELECT coalesce(max(t.top), 0)
FROM (SELECT $1::text AS o UNION ALL SELECT chr(31) || m.scope FROM sync.scope_members m WHERE m.user_id = $1 OR m.user_id = '*') w
CROSS JOIN LATERAL (SELECT c.server_id AS top FROM sync.server_change_log c WHERE c.user_id >= w.o AND c.user_id <= w.o
                    ORDER BY c.user_id DESC, c.server_id DESC LIMIT 1) t";

/// What those logs gained above `$2` (the newest id known, so the rows since the last look; at most 10,000 per
/// owner): the newest id, and the newest a backend write appended (NULL: none).
pub const BACKEND_NEWS_SQL: &str = "
SELECT max(c.server_id), max(c.server_id) FILTER (WHERE c.source_id IN (chr(31) || 'backend',
         json_build_array(chr(31) || 'backend', chr(31) || 'backend')::text))
FROM (SELECT $1::text AS o UNION ALL SELECT chr(31) || m.scope FROM sync.scope_members m WHERE m.user_id = $1 OR m.user_id = '*') w
CROSS JOIN LATERAL (SELECT c.server_id, c.source_id FROM sync.server_change_log c
                    WHERE (c.user_id, c.server_id) > (w.o, $2::int8) AND c.user_id <= w.o
                    ORDER BY c.user_id, c.server_id LIMIT 10000) c";

/// What a table's capture triggers are given: the registered pair (the log's names), the payload's key field, the
/// business table's key and owner columns, and whether the owner column holds a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The business table, `schema` and `table`.
    pub target: (String, String),
    /// `TG_ARGV` of `sync.capture_v2()`.
    pub args: [String; 6],
}

/// The names of a table's capture triggers, in the order [`install_sql`] creates them.
pub const TRIGGERS: [&str; 4] = [
    "oversync_capture_insert",
    "oversync_capture_update",
    "oversync_capture_delete",
    "oversync_capture_truncate",
];

/// The tables whose backend writes are captured: every materialised table that exists and has an owner (or
/// scope) column. A table without one has no owner to log a row under; the server warns about it at start-up.
pub fn captures(registry: &Registry) -> Vec<Capture> {
    registry
        .tables()
        .filter_map(|info| {
            let t = info.target.as_ref().filter(|t| !t.columns.is_empty())?;
            let owner = t.owner.as_ref()?;
            let key_field = info.sync_key.clone();
            Some(Capture {
                target: (t.schema.clone(), t.table.clone()),
                args: [
                    info.table.schema.clone(),
                    info.table.table.clone(),
                    key_field,
                    t.key.clone(),
                    owner.clone(),
                    if t.scoped { "scoped" } else { "private" }.to_owned(),
                ],
            })
        })
        .collect()
}

/// The DDL that (re)creates one table's capture triggers.
pub fn install_sql(c: &Capture) -> String {
    let table = format!("{}.{}", quote_ident(&c.target.0), quote_ident(&c.target.1));
    let args = c
        .args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let [ins, upd, del, trunc] = TRIGGERS;
    let mut sql = String::new();
    for name in TRIGGERS {
        sql += &format!("DROP TRIGGER IF EXISTS {name} ON {table};\n");
    }
    sql += &format!(
        "CREATE TRIGGER {ins} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows\n  FOR EACH STATEMENT EXECUTE FUNCTION sync.capture_v2({args});\n\
         CREATE TRIGGER {upd} AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows\n  FOR EACH STATEMENT EXECUTE FUNCTION sync.capture_v2({args});\n\
         CREATE TRIGGER {del} AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows\n  FOR EACH STATEMENT EXECUTE FUNCTION sync.capture_v2({args});\n\
         CREATE TRIGGER {trunc} BEFORE TRUNCATE ON {table}\n  FOR EACH STATEMENT EXECUTE FUNCTION sync.capture_truncate_v1();\n"
    );
    sql
}

/// How many of a table's capture triggers are in place with these arguments (`$1` schema, `$2` table, `$3` the
/// arguments as PostgreSQL stores them: each followed by a NUL byte).
const INSTALLED_SQL: &str = "
SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND g.tgname = ANY($4::text[])
  AND (g.tgname = 'oversync_capture_truncate' OR (g.tgargs = $3 AND g.tgfoid = 'sync.capture_v2()'::regprocedure))";

/// Installs the capture triggers of every captured table where they are missing or stale. Like [`super::ensure`],
/// a database that has them costs one catalogue read per table and takes no lock; the DDL runs in one transaction
/// under the migration lock, waiting at most [`DDL_LOCK_TIMEOUT`] for a lock (the triggers' CREATE locks the
/// business table against writes for a moment).
pub async fn ensure(client: &mut Client, registry: &Registry) -> Result<(), SchemaError> {
    let mut missing = Vec::new();
    for c in captures(registry) {
        if !installed(&*client, &c).await? {
            missing.push(c);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'; SET LOCAL client_min_messages = warning; \
         SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
    ))
    .await?;
    for c in &missing {
        if installed(&tx, c).await? {
            continue;
        }
        tracing::info!(table = %format!("{}.{}", c.target.0, c.target.1), "installing backend-write capture");
        tx.batch_execute(&install_sql(c)).await?;
    }
    Ok(tx.commit().await?)
}

async fn installed(client: &impl tokio_postgres::GenericClient, c: &Capture) -> Result<bool, SchemaError> {
    let mut stored = Vec::new();
    for a in &c.args {
        stored.extend_from_slice(a.as_bytes());
        stored.push(0);
    }
    let names: Vec<&str> = TRIGGERS.to_vec();
    let n: i64 = client
        .query_one(INSTALLED_SQL, &[&c.target.0, &c.target.1, &stored, &names])
        .await?
        .get(0);
    Ok(n == TRIGGERS.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like the read and write functions, `sync.capture_v2()` is created once: a change to this snapshot needs a
    /// new name (`…_v2`) and the triggers pointed at it.
    #[test]
    fn capture_functions() {
        insta::assert_snapshot!(CAPTURE_SQL);
    }

    #[test]
    fn a_tables_triggers() {
        let c = Capture {
            target: ("business".into(), "it's".into()),
            args: ["app", "it's", "id", "uuid_key", "team_id", "scoped"].map(String::from),
        };
        insta::assert_snapshot!(install_sql(&c));
    }
}
