//! The upload's two functions (issue 24): an upload costs two round trips, one call of each, whatever its size.
//!
//! - `sync.upload_read_v3` reads everything `plan::decide` needs, without the user's lock, in one snapshot (a
//!   `STABLE` function runs all its statements in its caller's snapshot): the user's top `server_id` first, the
//!   idempotency records of the request's scids, the metadata of every named row and parent, and (with
//!   `fk_precheck = business`) the parents found in their business tables, each lookup under its own exception
//!   block so that a failing one is charged to its changes.
//! - `sync.upload_write_v4` is one implicit transaction: it takes the per-user lock (§6.1.2), checks that nothing
//!   the read saw has changed since, and only then writes the log, metadata and state, materialises into the
//!   business tables (each group under an exception block, i.e. a savepoint, retried row by row when it fails) and
//!   records failures. Its statements each take a snapshot after the lock (`VOLATILE`, READ COMMITTED), so they
//!   see every upload that committed before it.
//!
//! The check (`sync.changed_since_v2`) is what makes the read safe outside the lock. Every write to a user's sync state appends to the
//! user's log under the lock, with `server_id`s above every id the user had committed before: so the read stays
//! valid exactly when no log row above the read's top names one of the read's keys or comes from the same device
//! (its scids). If one does, the function writes nothing and answers `stale`, and the server reads again.

use crate::sql::read_procedure;

/// `sync.upload_read_v3(user, device, scids, key schemas, key tables, key pks, lookup sqls, lookup sizes, lookup
/// pks)`: rows `(kind, schema, table, pk, n, v, deleted, error)`, kinds `top` (n), `logged` (scid n, version v),
/// `meta` (version v), `floor` (the owner's version floor n, docs/history.md), `parent` (lookup n's parent pk) and `failed` (lookup n, SQLSTATE in schema, message in
/// error). A lookup statement takes `$1` its pks and `$2` the user and returns one `text[]` of the pks found.
const READ: &str = r#"DO $do$ BEGIN
  IF to_regprocedure('sync.upload_read_v3(text, text, int8[], text[], text[], text[], text[], int4[], text[])') IS NULL THEN
    CREATE FUNCTION sync.upload_read_v3(p_user text, p_device text, p_scids int8[],
        k_s text[], k_t text[], k_p text[], l_sql text[], l_len int4[], l_pks text[])
      RETURNS TABLE (r_kind text, r_schema text, r_table text, r_pk text, r_n int8, r_v int8, r_deleted bool, r_error text)
      LANGUAGE plpgsql STABLE AS $fn$
    #variable_conflict use_column
    DECLARE
      newest int8;
      found text[];
      failed bool;
      l_off int := 0;
    BEGIN
      RETURN QUERY SELECT 'top', NULL::text, NULL::text, NULL::text, sync.user_top_v2(p_user), NULL::int8, NULL::bool,
        NULL::text;
      -- v3: a record whose log row was compacted away is a receipt (crate::schema::history).
      newest := greatest(
        (SELECT c.source_change_id FROM sync.server_change_log c
         WHERE c.user_id = p_user AND c.source_id = p_device ORDER BY c.source_change_id DESC LIMIT 1),
        (SELECT r.source_change_id FROM sync.upload_receipts r
         WHERE r.user_id = p_user AND r.source_id = p_device ORDER BY r.source_change_id DESC LIMIT 1));
      IF newest >= (SELECT min(x) FROM unnest(p_scids) AS x) THEN
        RETURN QUERY SELECT 'logged', c.schema_name, c.table_name, c.pk_uuid::text, c.source_change_id, c.server_version,
            NULL::bool, NULL::text
          FROM sync.server_change_log c
          WHERE c.user_id = p_user AND c.source_id = p_device AND c.source_change_id = ANY(p_scids)
          UNION ALL
          SELECT 'logged', r.schema_name, r.table_name, r.pk_uuid::text, r.source_change_id, r.server_version,
            NULL::bool, NULL::text
          FROM sync.upload_receipts r
          WHERE r.user_id = p_user AND r.source_id = p_device AND r.source_change_id = ANY(p_scids);
      END IF;
      -- v3: the owner's version floor, when tombstones were removed (crate::schema::history).
      RETURN QUERY SELECT 'floor', NULL::text, NULL::text, NULL::text, h.version_floor, NULL::int8, NULL::bool, NULL::text
        FROM sync.history_horizon h WHERE h.user_id = p_user;
      RETURN QUERY SELECT 'meta', m.schema_name, m.table_name, m.pk_uuid::text, NULL::int8, m.server_version, m.deleted,
          NULL::text
        FROM unnest(k_s, k_t, k_p) AS k(s, t, p)
        CROSS JOIN LATERAL (SELECT * FROM sync.sync_row_meta m WHERE m.user_id = p_user AND m.schema_name = k.s
                            AND m.table_name = k.t AND m.pk_uuid = k.p::uuid LIMIT 1) m;
      FOR i IN 1 .. coalesce(array_length(l_sql, 1), 0) LOOP
        failed := false;
        BEGIN
          EXECUTE l_sql[i] INTO found USING l_pks[l_off + 1 : l_off + l_len[i]], p_user;
        EXCEPTION WHEN OTHERS THEN
          IF SQLSTATE IN ('40001', '40P01', '55P03') THEN RAISE; END IF;
          failed := true;
          RETURN QUERY SELECT 'failed', SQLSTATE::text, NULL::text, NULL::text, i::int8, NULL::int8, NULL::bool, SQLERRM::text;
        END;
        IF NOT failed THEN
          RETURN QUERY SELECT 'parent', NULL::text, NULL::text, x, i::int8, NULL::int8, NULL::bool, NULL::text
            FROM unnest(found) AS x;
        END IF;
        l_off := l_off + l_len[i];
      END LOOP;
    END $fn$;
  END IF;
END $do$;
"#;

/// `sync.upload_write_v4(user, device, seen top, lock timeout, read keys (3), writes (7: schema, table, op, pk,
/// payload, scid, version, in apply order), conflict keys (3), materialisation groups (sql, rows per group,
/// write index per row, keys, columns per group, column arrays), failures known before (write index, error))`:
/// rows `(kind, schema, table, pk, n, text)`, kinds `stale` (nothing was written), `payload` (a conflict row's
/// current payload in text), `failures` (n recorded, the first error in text) and `top` (n, the user's highest
/// `server_id` after the writes).
///
/// A group statement takes `$1` the user, `$2` its keys, `$3` its column arrays (each a `text[]` literal, read
/// once per statement) and `$4` a row number to run alone (NULL: all rows); an upsert returns the `text[]` of
/// keys it wrote (a key not in it belongs to another user), a delete NULL.
const WRITE: &str = r#"DO $do$ BEGIN
  IF to_regprocedure('sync.upload_write_v4(text, text, int8, text, text[], text[], text[], text[], text[], text[], text[], text[], int8[], int8[], text[], text[], text[], text[], int4[], int4[], text[], int4[], text[], int4[], text[])') IS NULL THEN
    CREATE FUNCTION sync.upload_write_v4(p_user text, p_device text, p_seen int8, p_timeout text,
        k_s text[], k_t text[], k_p text[],
        w_s text[], w_t text[], w_o text[], w_p text[], w_pl text[], w_sc int8[], w_v int8[],
        c_s text[], c_t text[], c_p text[],
        m_sql text[], m_rows int4[], m_idx int4[], m_keys text[], m_ncols int4[], m_cols text[],
        f_idx int4[], f_err text[])
      RETURNS TABLE (r_kind text, r_schema text, r_table text, r_pk text, r_n int8, r_text text)
      LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
      top int8;
      done text[];
      keys text[];
      cols text[];
      idx int4[];
      j int8;
      row_cols text[];
      fi int4[] := coalesce(f_idx, '{}');
      fe text[] := coalesce(f_err, '{}');
      roff int := 0;
      coff int := 0;
    BEGIN
      PERFORM set_config('lock_timeout', p_timeout, true);
      -- v4: this transaction's writes to business tables are the materialisation of what it logs, not backend
      -- writes to capture (crate::schema::capture).
      PERFORM set_config('oversync.capture', 'off', true);
      PERFORM pg_advisory_xact_lock(hashtextextended(p_user, 0));
      top := sync.user_top_v2(p_user);
      IF top > p_seen AND sync.changed_since_v2(p_user, p_seen, top, p_device, k_s, k_t, k_p) THEN
        RETURN QUERY SELECT 'stale', NULL::text, NULL::text, NULL::text, NULL::int8, NULL::text;
        RETURN;
      END IF;
      RETURN QUERY SELECT 'payload', s.schema_name, s.table_name, s.pk_uuid::text, NULL::int8, s.payload::text
        FROM unnest(c_s, c_t, c_p) AS k(ks, kt, kp)
        CROSS JOIN LATERAL (SELECT * FROM sync.sync_state s WHERE s.user_id = p_user AND s.schema_name = k.ks
                            AND s.table_name = k.kt AND s.pk_uuid = k.kp::uuid LIMIT 1) s;
      IF coalesce(array_length(w_s, 1), 0) > 0 THEN
        -- server_id comes from its sequence row by row in apply order (§6.5).
        WITH logged AS (
          INSERT INTO sync.server_change_log
            (user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version, ts)
          SELECT p_user, u.s, u.t, u.o, u.p::uuid, u.pl::json, p_device, u.sc, u.v, clock_timestamp()
          FROM unnest(w_s, w_t, w_o, w_p, w_pl, w_sc, w_v) WITH ORDINALITY AS u(s, t, o, p, pl, sc, v, ord)
          ORDER BY u.ord
          RETURNING server_id)
        SELECT coalesce(max(server_id), top) INTO top FROM logged;
        INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version, deleted, updated_at)
          SELECT p_user, u.s, u.t, u.p::uuid, u.v, u.o = 'DELETE', now() FROM unnest(w_s, w_t, w_p, w_v, w_o) AS u(s, t, p, v, o)
          ON CONFLICT (user_id, schema_name, table_name, pk_uuid)
          DO UPDATE SET server_version = excluded.server_version, deleted = excluded.deleted, updated_at = excluded.updated_at;
        INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
          SELECT p_user, u.s, u.t, u.p::uuid, u.pl::json FROM unnest(w_s, w_t, w_p, w_pl, w_o) AS u(s, t, p, pl, o)
          WHERE u.o <> 'DELETE'
          ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE SET payload = excluded.payload;
        IF 'DELETE' = ANY(w_o) THEN
          -- Found by key, deleted by tuple id (a join or IN here can be planned as a scan of the user's rows).
          DELETE FROM sync.sync_state WHERE ctid = ANY(ARRAY(
            SELECT x.ctid FROM unnest(w_s, w_t, w_p, w_o) AS u(s, t, p, o)
            CROSS JOIN LATERAL (SELECT x.ctid FROM sync.sync_state x WHERE x.user_id = p_user AND x.schema_name = u.s
                                AND x.table_name = u.t AND x.pk_uuid = u.p::uuid LIMIT 1) x
            WHERE u.o = 'DELETE'));
        END IF;
      END IF;
      FOR g IN 1 .. coalesce(array_length(m_sql, 1), 0) LOOP
        keys := m_keys[roff + 1 : roff + m_rows[g]];
        idx := m_idx[roff + 1 : roff + m_rows[g]];
        cols := m_cols[coff + 1 : coff + m_ncols[g]];
        BEGIN
          SET CONSTRAINTS ALL IMMEDIATE;
          EXECUTE m_sql[g] INTO done USING p_user, keys, cols, NULL::int8;
          SET CONSTRAINTS ALL DEFERRED;
          IF done IS NOT NULL THEN
            SELECT fi || coalesce(array_agg(x), '{}'), fe || coalesce(array_agg('row exists and belongs to another user'::text), '{}')
              INTO fi, fe FROM unnest(idx, keys) AS u(x, k) WHERE k NOT IN (SELECT unnest(done));
          END IF;
        EXCEPTION WHEN OTHERS THEN
          IF SQLSTATE IN ('40001', '40P01', '55P03') THEN RAISE; END IF;
          SET CONSTRAINTS ALL DEFERRED;
          -- Row by row, each row alone: its key and its column values, cut from the group's columns in one pass
          -- (passing the whole group with the row's index re-parsed every column per row: O(rows²) bytes, under
          -- the user's lock).
          FOR j, row_cols IN
            SELECT s.j, coalesce(array_agg(ARRAY[r.v]::text ORDER BY r.c) FILTER (WHERE r.c IS NOT NULL), '{}')
            FROM generate_series(1, m_rows[g]) AS s(j)
            LEFT JOIN (SELECT c.n AS c, e.j, e.v FROM unnest(cols) WITH ORDINALITY AS c(x, n)
                       CROSS JOIN LATERAL unnest(c.x::text[]) WITH ORDINALITY AS e(v, j)) r ON r.j = s.j
            GROUP BY s.j ORDER BY s.j
          LOOP
            BEGIN
              SET CONSTRAINTS ALL IMMEDIATE;
              EXECUTE m_sql[g] INTO done USING p_user, keys[j:j], row_cols, 1::int8;
              SET CONSTRAINTS ALL DEFERRED;
              IF done IS NOT NULL AND NOT keys[j] = ANY(done) THEN
                fi := fi || idx[j];
                fe := fe || 'row exists and belongs to another user'::text;
              END IF;
            EXCEPTION WHEN OTHERS THEN
              IF SQLSTATE IN ('40001', '40P01', '55P03') THEN RAISE; END IF;
              SET CONSTRAINTS ALL DEFERRED;
              fi := fi || idx[j];
              fe := fe || SQLERRM::text;
            END;
          END LOOP;
        END;
        roff := roff + m_rows[g];
        coff := coff + m_ncols[g];
      END LOOP;
      IF coalesce(array_length(fi, 1), 0) > 0 THEN
        INSERT INTO sync.materialize_failures (user_id, schema_name, table_name, pk_uuid, attempted_version, op, payload, error)
          SELECT p_user, w_s[f.x], w_t[f.x], w_p[f.x]::uuid, w_v[f.x], w_o[f.x], w_pl[f.x]::json, f.e
          FROM unnest(fi, fe) AS f(x, e)
          ON CONFLICT (user_id, schema_name, table_name, pk_uuid, attempted_version)
          DO UPDATE SET retry_count = sync.materialize_failures.retry_count + 1, error = excluded.error, op = excluded.op;
        RETURN QUERY SELECT 'failures', NULL::text, NULL::text, NULL::text, array_length(fi, 1)::int8, fe[1];
      END IF;
      RETURN QUERY SELECT 'top', NULL::text, NULL::text, NULL::text, top, NULL::text;
    END $fn$;
  END IF;
END $do$;
"#;

/// The body of `sync.changed_since_v2(user, seen, top, device, key schemas, key tables, key pks)`: whether a log row
/// of the user in `(seen, top]` comes from `device` or names one of the keys. Asked only when the user's top moved
/// since the read, so it reads only the rows of uploads that raced this one: a range scan of the `(user_id,
/// server_id)` index, which [`read_procedure`]'s rules make sure of (left to statistics that have not seen the
/// user, a plain `EXISTS` can be planned as a scan of the whole log). A scalar subquery, because `EXISTS` drops its
/// `ORDER BY`.
const CHANGED_SINCE: &str = "BEGIN
  RETURN (SELECT c.server_id FROM sync.server_change_log c
          WHERE (c.user_id, c.server_id) > (p_user, p_seen) AND (c.user_id, c.server_id) <= (p_user, p_top)
            AND (c.source_id = p_device OR (c.schema_name, c.table_name, c.pk_uuid) IN (
                 SELECT k.s, k.t, k.p::uuid FROM unnest(p_s, p_t, p_p) AS k(s, t, p)))
          ORDER BY c.user_id, c.server_id LIMIT 1) IS NOT NULL;
END";

/// The body of `sync.user_top_v2(user)`: the user's highest `server_id`, or 0. A function of its own so that it is
/// planned by [`read_procedure`]'s rules: with statistics that have not seen the user, a top-N sort of all the
/// user's rows in the other index looks as cheap as the backward scan. `ORDER BY … DESC LIMIT 1`, not `max()`: see
/// `upload/store.rs`.
const USER_TOP: &str = "BEGIN
  RETURN coalesce((SELECT c.server_id FROM sync.server_change_log c WHERE c.user_id >= p_user AND c.user_id <= p_user
                   ORDER BY c.user_id DESC, c.server_id DESC LIMIT 1), 0);
END";

/// The DDL of the upload's functions.
pub(super) fn write_functions() -> String {
    [
        &read_procedure("sync.user_top_v2", "p_user text", "int8", USER_TOP),
        &read_procedure(
            "sync.changed_since_v2",
            "p_user text, p_seen int8, p_top int8, p_device text, p_s text[], p_t text[], p_p text[]",
            "bool",
            CHANGED_SINCE,
        ),
        READ,
        WRITE,
    ]
    .concat()
}

/// The upload's read: one call.
pub const READ_SQL: &str = "SELECT * FROM sync.upload_read_v3($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The upload's write: one call, its own transaction.
pub const WRITE_SQL: &str = "SELECT * FROM sync.upload_write_v4($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
     $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)";
