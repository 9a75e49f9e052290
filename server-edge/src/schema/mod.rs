//! The `sync` schema (PROTOCOL.md §6.9), created idempotently at start-up (native) or on an isolate's first
//! database request (Worker).
//!
//! Start-ups are frequent on the edge, one per isolate, so on a database that already has the schema they must
//! not touch a lock uploads need: `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on its table even when the index
//! exists, so it waits for every upload in flight, and every upload after it queues behind it. [`ensure`]
//! therefore reads the catalogue first and does nothing when the schema is complete, and the DDL it does run waits
//! at most [`DDL_LOCK_TIMEOUT`] for a lock: the request fails with 503 and the next one tries again.

pub mod capture;
pub mod claims;
pub mod history;
pub mod read;
pub mod scopes;
pub mod write;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// Advisory-lock key serialising concurrent start-ups (several servers or isolates migrating at once).
pub(super) const MIGRATION_LOCK: i64 = 0x6f76_7273_796e_6301;

/// How long start-up DDL (the advisory lock included) waits for a lock before it gives up.
pub const DDL_LOCK_TIMEOUT: &str = "2s";

/// The newest read function of each kind, by signature. They are created last, in the transaction that creates
/// the tables and indexes, so where they exist the whole schema does. A new `…_vN` goes here.
const NEWEST_FUNCTIONS: [&str; 14] = [
    "sync.user_top_v2(text)",
    "sync.changed_since_v2(text, int8, int8, text, text[], text[], text[])",
    "sync.download_page_v5(text, int8, int8, text, bool, text, int8, int8, int8)",
    "sync.latest_change_v2(text, int8, text)",
    "sync.upload_read_v3(text, text, int8[], text[], text[], text[], text[], int4[], text[])",
    "sync.upload_write_v4(text, text, int8, text, text[], text[], text[], text[], text[], text[], text[], text[], int8[], int8[], text[], text[], text[], text[], int4[], int4[], text[], int4[], text[], int4[], text[])",
    "sync.notify_changes_v2()",
    "sync.scope_event_v2()",
    "sync.lock_owners_v1(text, text[], text)",
    "sync.latest_scoped_v2(text, int8, text, text, int8)",
    "sync.download_scoped_v4(text, text, int8, int8, int8, text, bool, text, text, int8, int8, int8, text, int8)",
    "sync.capture_v2()",
    "sync.claim_keys_v1(text, text[], text[], text[])",
    "sync.compact_step_v1(int8, timestamptz, timestamptz)",
];

/// The channel every commit that appends to the change log notifies, with one payload per user and device of
/// the commit: the JSON array `[user_id, source_id, highest server_id]` (see [`NOTIFY_SQL`]).
pub const NOTIFY_CHANNEL: &str = "oversync_changes";

/// A statement trigger on the change log that notifies [`NOTIFY_CHANNEL`]. A notification is delivered when
/// (and only if) its transaction commits, in commit order, costs no round trip of its own, and covers every
/// writer of the log. A payload over PostgreSQL's 8000-byte limit (a user or device id of kilobytes) is skipped
/// rather than failing the upload: that user's waiters hear of the commit at their next long-poll.
///
/// v2 (docs/sharing.md §7): a commit to a scope owner's log notifies every member of the scope as a user of its
/// own, so the hub, the waiters and the streams stay keyed by user; the author's own devices get their device id
/// as the source (the log row carries `[author, device]`), so they ignore their own writes as for private rows.
pub const NOTIFY_SQL: &str = "DO $do$ BEGIN
  IF to_regprocedure('sync.notify_changes_v2()') IS NULL THEN
    CREATE FUNCTION sync.notify_changes_v2() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      PERFORM pg_notify('oversync_changes', p)
      FROM (SELECT json_build_array(user_id, source_id, max(server_id))::text AS p
            FROM new_rows WHERE left(user_id, 1) <> chr(31) GROUP BY user_id, source_id
            UNION ALL
            SELECT json_build_array(m.user_id,
                     CASE WHEN m.user_id = n.source_id::json ->> 0 THEN n.source_id::json ->> 1 ELSE n.source_id END,
                     n.top)::text
            FROM (SELECT user_id, source_id, max(server_id) AS top FROM new_rows WHERE left(user_id, 1) = chr(31)
                  GROUP BY user_id, source_id) n
            JOIN sync.scope_members m ON m.scope = substr(n.user_id, 2)) n
      WHERE octet_length(p) < 8000;
      RETURN NULL;
    END $fn$;
    DROP TRIGGER IF EXISTS server_change_log_notify ON sync.server_change_log;
    CREATE TRIGGER server_change_log_notify AFTER INSERT ON sync.server_change_log
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync.notify_changes_v2();
  END IF;
END $do$;
";

/// The digest under which a start-up SQL text is recorded once it ran.
const DIGEST: &str = "encode(sha256(convert_to($1, 'UTF8')), 'hex')";

/// The layout of §6.9: names kept so classic tooling can read and clean it.
pub const SYNC_SCHEMA_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS sync;
CREATE TABLE IF NOT EXISTS sync.sync_row_meta (
  user_id text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL, pk_uuid uuid NOT NULL,
  server_version bigint NOT NULL, deleted boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, schema_name, table_name, pk_uuid));
CREATE TABLE IF NOT EXISTS sync.sync_state (
  user_id text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL, pk_uuid uuid NOT NULL,
  payload json NOT NULL,
  PRIMARY KEY (user_id, schema_name, table_name, pk_uuid));
CREATE TABLE IF NOT EXISTS sync.server_change_log (
  server_id bigserial PRIMARY KEY, user_id text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL,
  op text NOT NULL CHECK (op IN ('INSERT','UPDATE','DELETE')), pk_uuid uuid NOT NULL,
  payload json, CHECK ((op = 'DELETE') = (payload IS NULL)),
  source_id text NOT NULL, source_change_id bigint NOT NULL, server_version bigint NOT NULL,
  ts timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, source_id, source_change_id));
CREATE INDEX IF NOT EXISTS server_change_log_user_server_id ON sync.server_change_log (user_id, server_id);
CREATE INDEX IF NOT EXISTS server_change_log_user_schema_server_id
  ON sync.server_change_log (user_id, schema_name, server_id);
CREATE TABLE IF NOT EXISTS sync.materialize_failures (
  id bigserial PRIMARY KEY, user_id text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL,
  pk_uuid uuid NOT NULL, attempted_version bigint NOT NULL, op text NOT NULL, payload json,
  error text NOT NULL, first_seen timestamptz NOT NULL DEFAULT now(), retry_count int NOT NULL DEFAULT 0,
  UNIQUE (user_id, schema_name, table_name, pk_uuid, attempted_version));
CREATE TABLE IF NOT EXISTS sync.applied_init_sql (
  digest text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
"#;

/// Start-up schema work that did not finish; nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A lock the DDL needs was held past [`DDL_LOCK_TIMEOUT`] (by an upload, or a long transaction): the
    /// request is answered 503 and a later one tries again.
    #[error("start-up schema work waited {DDL_LOCK_TIMEOUT} for a lock and gave up")]
    LockTimeout(#[source] tokio_postgres::Error),
    /// Any other database failure.
    #[error(transparent)]
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for SchemaError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            Self::LockTimeout(e)
        } else {
            Self::Db(e)
        }
    }
}

/// Creates the sync schema and runs the optional start-up SQL, each only where missing: a complete schema and a
/// start-up SQL text that already ran (recorded by digest in `sync.applied_init_sql`; it is idempotent DDL, so a
/// changed text simply runs again) cost two catalogue reads and take no lock. Otherwise one transaction, serialised
/// by an advisory lock so that concurrent start-ups do not race on `CREATE … IF NOT EXISTS`, bounded by
/// [`DDL_LOCK_TIMEOUT`] for every lock it waits on.
pub async fn ensure(client: &mut Client, init_sql: Option<&str>) -> Result<(), SchemaError> {
    let result = migrate(client, init_sql).await;
    if let Err(e @ SchemaError::LockTimeout(_)) = &result {
        tracing::warn!(error = %e, "sync schema not ready: a later request (or start) tries again");
    }
    result
}

async fn migrate(client: &mut Client, init_sql: Option<&str>) -> Result<(), SchemaError> {
    let (schema, init) = missing(&*client, init_sql).await?;
    if !schema && !init {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'; SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
    ))
    .await?;
    // Another start-up may have done the work while this one waited for the advisory lock.
    let (schema, init) = missing(&tx, init_sql).await?;
    if schema {
        tx.batch_execute(
            &[
                SYNC_SCHEMA_SQL,
                &read::read_functions(),
                &write::write_functions(),
                NOTIFY_SQL,
                scopes::SCOPES_SQL,
                capture::CAPTURE_SQL,
                claims::CLAIMS_SQL,
                &history::history_functions(),
            ]
            .concat(),
        )
        .await?;
    }
    if let Some(sql) = init_sql.filter(|_| init) {
        tx.batch_execute(sql).await?;
        tx.execute_typed(
            &format!("INSERT INTO sync.applied_init_sql (digest) VALUES ({DIGEST}) ON CONFLICT DO NOTHING"),
            &[(&sql, Type::TEXT)],
        )
        .await?;
    }
    Ok(tx.commit().await?)
}

/// What is missing: `(the sync schema, the start-up SQL's run)`. Reads the catalogue, and the record of start-up
/// SQL once the schema (which holds it) is known to be there; one round trip each, no locks.
async fn missing(
    client: &impl tokio_postgres::GenericClient,
    init_sql: Option<&str>,
) -> Result<(bool, bool), SchemaError> {
    let functions = NEWEST_FUNCTIONS.map(|f| format!("to_regprocedure('{f}') IS NOT NULL"));
    let complete: bool = client
        .query_typed_one(&format!("SELECT {}", functions.join(" AND ")), &[])
        .await?
        .get(0);
    let Some(sql) = init_sql else {
        return Ok((!complete, false));
    };
    if !complete {
        return Ok((true, true));
    }
    let ran: bool = client
        .query_typed_one(
            &format!("SELECT EXISTS (SELECT 1 FROM sync.applied_init_sql WHERE digest = {DIGEST})"),
            &[(&sql, Type::TEXT)],
        )
        .await?
        .get(0);
    Ok((false, !ran))
}

#[cfg(test)]
mod tests {
    /// A database keeps a read function as it was first created: a change to this snapshot must come with a new
    /// function name (`…_v2`), or databases created before it keep the old body.
    #[test]
    fn read_functions() {
        insta::assert_snapshot!(super::read::read_functions());
    }

    /// Likewise for the upload's functions.
    #[test]
    fn write_functions() {
        insta::assert_snapshot!(super::write::write_functions());
    }

    #[test]
    fn the_trigger_notifies_the_channel_the_listener_listens_on() {
        assert!(super::NOTIFY_SQL.contains("sync.notify_changes_v2()"));
        assert!(super::NOTIFY_SQL.contains(&format!("pg_notify('{}'", super::NOTIFY_CHANNEL)));
    }

    /// [`super::ensure`] skips the DDL when these exist, so they must be the functions the DDL creates.
    #[test]
    fn the_completeness_check_names_the_functions_the_ddl_creates() {
        let ddl = super::read::read_functions()
            + &super::write::write_functions()
            + super::NOTIFY_SQL
            + super::scopes::SCOPES_SQL
            + super::capture::CAPTURE_SQL
            + super::claims::CLAIMS_SQL
            + &super::history::history_functions();
        for signature in super::NEWEST_FUNCTIONS {
            assert!(ddl.contains(&format!("to_regprocedure('{signature}')")), "{signature}");
        }
        assert_eq!(ddl.matches("to_regprocedure(").count(), super::NEWEST_FUNCTIONS.len());
    }
}
