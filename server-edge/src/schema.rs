//! The `sync` schema (PROTOCOL.md §6.9), created idempotently at start-up.

use tokio_postgres::Client;

/// Advisory-lock key serialising concurrent start-ups (several servers or isolates migrating at once).
const MIGRATION_LOCK: i64 = 0x6f76_7273_796e_6301;

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
"#;

/// Creates the sync schema (and runs the optional start-up SQL) in one transaction, serialised by an
/// advisory lock so that concurrent start-ups do not race on `CREATE … IF NOT EXISTS`.
pub async fn ensure(client: &mut Client, init_sql: Option<&str>) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(&[SYNC_SCHEMA_SQL, &read_functions()].concat()).await?;
    if let Some(sql) = init_sql {
        tx.batch_execute(sql).await?;
    }
    tx.commit().await
}

/// The DDL of the change log's read functions (see [`crate::sql::read_function`]).
fn read_functions() -> String {
    [crate::download::page_function(), crate::watch::latest_function()].concat()
}

#[cfg(test)]
mod tests {
    /// A database keeps a read function as it was first created: a change to this snapshot must come with a new
    /// function name (`…_v2`), or databases created before it keep the old body.
    #[test]
    fn read_functions() {
        insta::assert_snapshot!(super::read_functions());
    }
}
