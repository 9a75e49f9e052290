//! Scope membership (docs/sharing.md §3): who belongs to which scope, and the record of every join and leave.
//!
//! The app's backend writes `sync.scope_members` with plain SQL (or through the admin route, `crate::admin`);
//! a row trigger records each insert, role change and delete in `sync.scope_events`, in the writing
//! transaction, so a device can tell joins and leaves apart from a later read of the events alone.

/// Tables, index and the events trigger; idempotent (`IF NOT EXISTS`, the trigger function by its name).
pub const SCOPES_SQL: &str = "
CREATE TABLE IF NOT EXISTS sync.scope_members (
  scope text NOT NULL CHECK (octet_length(scope) BETWEEN 1 AND 128),
  user_id text NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 256),
  role text NOT NULL CHECK (role = 'reader' OR role = 'writer'),
  since timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, user_id));
CREATE INDEX IF NOT EXISTS scope_members_by_user ON sync.scope_members (user_id, scope);
CREATE TABLE IF NOT EXISTS sync.scope_events (
  id bigserial PRIMARY KEY, user_id text NOT NULL, scope text NOT NULL,
  role text CHECK (role IS NULL OR role = 'reader' OR role = 'writer'),
  at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS scope_events_by_user ON sync.scope_events (user_id, id);
DO $do$ BEGIN
  IF to_regprocedure('sync.scope_event_v2()') IS NULL THEN
    -- One event per change of a membership: the role it has now, NULL once it is gone. An UPDATE that moves a
    -- membership to another scope or user is a leave of the old and a join of the new. v2 also tells the user's
    -- waiters (docs/sharing.md §7), with a fresh id of the change log's sequence as the top (a gap in the log):
    -- above everything told before, so the news is not taken for old, and below every later commit.
    CREATE FUNCTION sync.scope_event_v2() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
      top int8 := nextval('sync.server_change_log_server_id_seq');
    BEGIN
      IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR OLD.scope <> NEW.scope OR OLD.user_id <> NEW.user_id) THEN
        INSERT INTO sync.scope_events (user_id, scope, role) VALUES (OLD.user_id, OLD.scope, NULL);
        PERFORM pg_notify('oversync_changes', json_build_array(OLD.user_id, 'membership', top)::text);
      END IF;
      IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (OLD.scope, OLD.user_id, OLD.role) IS DISTINCT FROM
                                                   (NEW.scope, NEW.user_id, NEW.role)) THEN
        INSERT INTO sync.scope_events (user_id, scope, role) VALUES (NEW.user_id, NEW.scope, NEW.role);
        PERFORM pg_notify('oversync_changes', json_build_array(NEW.user_id, 'membership', top)::text);
      END IF;
      RETURN NULL;
    END $fn$;
    DROP TRIGGER IF EXISTS scope_members_events ON sync.scope_members;
    CREATE TRIGGER scope_members_events AFTER INSERT OR UPDATE OR DELETE ON sync.scope_members
      FOR EACH ROW EXECUTE FUNCTION sync.scope_event_v2();
  END IF;
END $do$;
CREATE INDEX IF NOT EXISTS sync_row_meta_scoped ON sync.sync_row_meta (schema_name, table_name, pk_uuid)
  WHERE left(user_id, 1) = chr(31);
DO $do$ BEGIN
  IF to_regprocedure('sync.lock_owners_v1(text, text[], text)') IS NULL THEN
    -- The owner locks of an upload (docs/sharing.md §4): the user's, then each scope's stripe, ascending.
    CREATE FUNCTION sync.lock_owners_v1(p_user text, p_scopes text[], p_timeout text) RETURNS void
      LANGUAGE plpgsql VOLATILE AS $fn$
    DECLARE
      stripe int4;
    BEGIN
      PERFORM set_config('lock_timeout', p_timeout, true);
      PERFORM pg_advisory_xact_lock(hashtextextended(p_user, 0));
      FOR stripe IN SELECT DISTINCT (hashtextextended(x, 0) & 63)::int4 FROM unnest(p_scopes) AS x ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(28534, stripe);
      END LOOP;
    END $fn$;
  END IF;
END $do$;
";

/// Locks an upload's owners: the user, then `scopes`' stripes (one call of `sync.lock_owners_v1`).
pub const LOCK_OWNERS_SQL: &str = "SELECT sync.lock_owners_v1($1, $2, $3)";

/// Where each scoped key lives now, among the scope owners and the user (drafts): rows `(schema, table, pk,
/// owner, version, deleted)`; a key may live in several (a tombstone where it moved from). One probe of the
/// partial index on scope owners and one of the primary key per key.
pub const WHERE_ROWS_SQL: &str = "
SELECT m.schema_name, m.table_name, m.pk_uuid::text, m.user_id, m.server_version, m.deleted
FROM unnest($2::text[], $3::text[], $4::text[]) AS k(s, t, p)
CROSS JOIN LATERAL (
  SELECT * FROM sync.sync_row_meta m WHERE left(m.user_id, 1) = chr(31) AND m.schema_name = k.s AND m.table_name = k.t
    AND m.pk_uuid = k.p::uuid
  UNION ALL
  SELECT * FROM sync.sync_row_meta m WHERE m.user_id = $1 AND m.schema_name = k.s AND m.table_name = k.t
    AND m.pk_uuid = k.p::uuid) m";

/// The change log's newest allocated `server_id` (after a membership change, the id `sync.scope_event_v2` drew
/// for it, or a later one): the top the change is told with where the server tells hubs itself (the Worker).
pub const SEQUENCE_TOP_SQL: &str = "SELECT last_value FROM sync.server_change_log_server_id_seq";

/// The user's roles in the given scopes: rows `(scope, role)`.
pub const ROLES_SQL: &str = "SELECT scope, role FROM sync.scope_members WHERE user_id = $1 AND scope = ANY($2::text[])";

/// The `source_id` a scope owner's log rows carry for a device: the JSON array `[user, device]`. Device ids are
/// chosen by clients and are unique per user only, so two members' devices named alike must not share
/// idempotency records (`UNIQUE (user_id, source_id, source_change_id)`) under one scope; the download sends the
/// device back as `source_id` and the user as `author`.
pub fn scope_source(user: &str, device: &str) -> String {
    serde_json::to_string(&(user, device)).expect("strings serialise")
}
