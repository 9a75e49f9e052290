//! Bounded history (issue 36, docs/history.md): the tables that keep what compaction must not lose, and the
//! compaction step.
//!
//! - `sync.upload_receipts`: the idempotency record of a device's change whose log row was compacted away (§6.3
//!   answers a replay from it). One per device and row, the newest: a client keeps one pending change per row and
//!   gives a new edit a new, higher scid, so once a later change of the same device to the same row is logged the
//!   earlier scid is never sent again. Kept for `tombstone_retention_s` after the change was applied.
//! - `sync.history_horizon`: per owner (a user, or `'\x1f' || scope`), the highest `server_id` and the highest
//!   version of the tombstones removed. A download whose cursor is above 0 and below `pruned_through` may have
//!   missed a delete: it is answered `history_pruned` (the device re-hydrates). A row created after its tombstone
//!   was removed starts above `version_floor`, so a device that still remembers the tombstone takes it.
//! - `sync.compaction_state`: where the current pass is, shared by every server process and the Worker's cron, so
//!   that each batch of the log is done once.

use crate::sql::procedure;

/// The tables. Created with the schema (`CREATE … IF NOT EXISTS`).
pub const HISTORY_TABLES_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS sync.upload_receipts (
  user_id text NOT NULL, source_id text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL,
  pk_uuid uuid NOT NULL, source_change_id bigint NOT NULL, server_version bigint NOT NULL, ts timestamptz NOT NULL,
  PRIMARY KEY (user_id, source_id, schema_name, table_name, pk_uuid));
CREATE INDEX IF NOT EXISTS upload_receipts_scid ON sync.upload_receipts (user_id, source_id, source_change_id);
CREATE TABLE IF NOT EXISTS sync.history_horizon (
  user_id text PRIMARY KEY, pruned_through bigint NOT NULL, version_floor bigint NOT NULL,
  pruned_at timestamptz NOT NULL DEFAULT now());
-- Compaction deletes in batches: vacuum the log (and the receipts it rewrites) after a fixed number of dead rows
-- rather than a fifth of the table, so that the space is reused soon after it is freed (docs/history.md §8).
ALTER TABLE sync.server_change_log SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000);
ALTER TABLE sync.upload_receipts SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000);
CREATE TABLE IF NOT EXISTS sync.compaction_state (
  id int PRIMARY KEY CHECK (id = 1), next_after bigint NOT NULL DEFAULT 0, passes bigint NOT NULL DEFAULT 0,
  pass_started timestamptz NOT NULL DEFAULT now());
"#;

/// Advisory-lock key of the compaction step: one step at a time over all processes.
pub const COMPACTION_LOCK: i64 = 0x6f76_7273_796e_6302;

/// The body of `sync.compact_step_v1(limit, compact before, prune before)`: one batch of the shared pass, one
/// transaction. Takes the next `limit` log rows after the pass's position; among them removes
///
/// 1. entries older than `compact before` that a later entry of the same row supersedes (the row's metadata has
///    a higher version), keeping a device's newest as its receipt;
/// 2. DELETE entries older than `prune before` that are still their row's last word, with the row's metadata,
///    raising the owner's horizon and version floor, but never the owner's newest entry, so that no owner's top
///    (the end of a download window, a snapshot's `window_until`, a cursor's jump) ever goes down;
///
/// and at the end of a pass (no rows left, or the next rows are younger than `compact before`) the receipts
/// older than `prune before`. Rows are found by the primary key's range and removed by tuple id; the only rows
/// locked that an upload may also lock are the pruned tombstones' metadata. Answers `busy` when another step
/// holds the lock (nothing done).
const STEP: &str = r#"
DECLARE
  lo int8;
  hi int8;
  newest timestamptz;
BEGIN
  r_busy := false; r_from := 0; r_to := 0; r_scanned := 0; r_compacted := 0; r_receipts := 0; r_pruned := 0;
  r_expired := 0; r_wrapped := false;
  IF NOT pg_try_advisory_xact_lock(COMPACTION_LOCK) THEN
    r_busy := true;
    RETURN NEXT;
    RETURN;
  END IF;
  INSERT INTO sync.compaction_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING;
  SELECT s.next_after INTO lo FROM sync.compaction_state s WHERE s.id = 1;
  SELECT count(*), max(x.server_id), max(x.ts) INTO r_scanned, hi, newest
    FROM (SELECT c.server_id, c.ts FROM sync.server_change_log c WHERE c.server_id > lo
          ORDER BY c.server_id LIMIT p_limit) x;
  r_from := lo;
  r_to := coalesce(hi, lo);
  IF r_scanned > 0 THEN
    WITH gone AS (
      DELETE FROM sync.server_change_log d WHERE d.ctid = ANY(ARRAY(
        SELECT c.ctid FROM sync.server_change_log c
        CROSS JOIN LATERAL (SELECT 1 FROM sync.sync_row_meta m
                            WHERE m.user_id = c.user_id AND m.schema_name = c.schema_name
                              AND m.table_name = c.table_name AND m.pk_uuid = c.pk_uuid
                              AND m.server_version > c.server_version LIMIT 1) m
        WHERE c.server_id > lo AND c.server_id <= hi AND c.ts < p_compact_before))
      RETURNING d.user_id, d.source_id, d.schema_name, d.table_name, d.pk_uuid, d.source_change_id,
                d.server_version, d.ts),
    kept AS (
      INSERT INTO sync.upload_receipts AS r
        (user_id, source_id, schema_name, table_name, pk_uuid, source_change_id, server_version, ts)
      SELECT DISTINCT ON (g.user_id, g.source_id, g.schema_name, g.table_name, g.pk_uuid)
             g.user_id, g.source_id, g.schema_name, g.table_name, g.pk_uuid, g.source_change_id, g.server_version, g.ts
      FROM gone g
      WHERE g.source_id NOT IN (chr(31) || 'backend', json_build_array(chr(31) || 'backend', chr(31) || 'backend')::text)
      ORDER BY g.user_id, g.source_id, g.schema_name, g.table_name, g.pk_uuid, g.source_change_id DESC
      ON CONFLICT (user_id, source_id, schema_name, table_name, pk_uuid) DO UPDATE
        SET source_change_id = excluded.source_change_id, server_version = excluded.server_version, ts = excluded.ts
        WHERE r.source_change_id < excluded.source_change_id
      RETURNING 1)
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM kept) INTO r_compacted, r_receipts;
    WITH t AS (
      SELECT c.ctid AS lc, c.server_id, c.user_id, c.schema_name, c.table_name, c.pk_uuid, c.server_version
      FROM sync.server_change_log c
      WHERE c.server_id > lo AND c.server_id <= hi AND c.op = 'DELETE' AND c.ts < p_prune_before
        -- Never the owner's newest entry: an owner's top never goes down (a window, a cursor's jump).
        AND EXISTS (SELECT 1 FROM sync.server_change_log y
                    WHERE (y.user_id, y.server_id) > (c.user_id, c.server_id) AND y.user_id <= c.user_id)),
    m AS (
      DELETE FROM sync.sync_row_meta m USING t
      WHERE m.user_id = t.user_id AND m.schema_name = t.schema_name AND m.table_name = t.table_name
        AND m.pk_uuid = t.pk_uuid AND m.deleted AND m.server_version = t.server_version
      RETURNING t.lc, t.server_id, t.user_id, t.server_version),
    l AS (
      DELETE FROM sync.server_change_log d WHERE d.ctid = ANY(ARRAY(SELECT m.lc FROM m)) RETURNING 1),
    h AS (
      INSERT INTO sync.history_horizon AS h (user_id, pruned_through, version_floor, pruned_at)
      SELECT m.user_id, max(m.server_id), max(m.server_version), now() FROM m GROUP BY m.user_id
      ON CONFLICT (user_id) DO UPDATE
        SET pruned_through = greatest(h.pruned_through, excluded.pruned_through),
            version_floor = greatest(h.version_floor, excluded.version_floor), pruned_at = excluded.pruned_at
      RETURNING 1)
    SELECT count(*) INTO r_pruned FROM l;
  END IF;
  IF r_scanned < p_limit OR newest >= p_compact_before THEN
    r_wrapped := true;
    DELETE FROM sync.upload_receipts r WHERE r.ts < p_prune_before;
    GET DIAGNOSTICS r_expired = ROW_COUNT;
    UPDATE sync.compaction_state s SET next_after = 0, passes = s.passes + 1, pass_started = now() WHERE s.id = 1;
  ELSE
    UPDATE sync.compaction_state s SET next_after = hi WHERE s.id = 1;
  END IF;
  RETURN NEXT;
END"#;

/// The DDL of the compaction step.
pub(super) fn history_functions() -> String {
    [
        HISTORY_TABLES_SQL,
        &procedure(
            "sync.compact_step_v1",
            "p_limit int8, p_compact_before timestamptz, p_prune_before timestamptz",
            "TABLE (r_busy bool, r_from int8, r_to int8, r_scanned int8, r_compacted int8, r_receipts int8, \
             r_pruned int8, r_expired int8, r_wrapped bool)",
            "VOLATILE",
            &STEP.replace("COMPACTION_LOCK", &COMPACTION_LOCK.to_string()),
        ),
    ]
    .concat()
}

/// One step: `$1` rows, `$2` / `$3` the cut-offs as seconds before now.
pub const STEP_SQL: &str = "SELECT * FROM sync.compact_step_v1($1, now() - make_interval(secs => $2::float8), \
     now() - make_interval(secs => $3::float8))";
