//! Who created each key of a scoped table (issue 32 item 8, docs/sharing.md §4). Keys of scoped tables are global
//! (a row can move between scopes and drafts), and a draft lives under its author, out of every other user's sight:
//! without a record, a user who learnt a draft's key could publish it into their own scope first, after which the
//! author could neither publish nor edit it. The first user to upload a key claims it; an upsert of a key that
//! lives nowhere its uploader can see and that another user claimed conflicts with a deletion, like an edit of a row
//! out of reach (§5.1), so it neither takes the key nor tells whether it exists.

use tokio_postgres::Client;

use crate::registry::Registry;
use crate::schema::{DDL_LOCK_TIMEOUT, MIGRATION_LOCK, SchemaError};

/// The claims, the tables whose existing drafts were recorded, and `sync.claim_keys_v1`; idempotent. Part of the
/// schema DDL (its function is among the newest, so a database created before it gets it).
pub const CLAIMS_SQL: &str = "
CREATE TABLE IF NOT EXISTS sync.scoped_keys (
  schema_name text NOT NULL, table_name text NOT NULL, pk_uuid uuid NOT NULL, author text NOT NULL,
  PRIMARY KEY (schema_name, table_name, pk_uuid));
CREATE TABLE IF NOT EXISTS sync.scoped_keys_filled (
  schema_name text NOT NULL, table_name text NOT NULL, PRIMARY KEY (schema_name, table_name));
DO $do$ BEGIN
  IF to_regprocedure('sync.claim_keys_v1(text, text[], text[], text[])') IS NULL THEN
    -- Claims the keys for the user where nobody has, then answers those another user claimed. Two statements: the
    -- second (a new snapshot under READ COMMITTED) sees a claim a concurrent upload committed while the first
    -- waited on it.
    CREATE FUNCTION sync.claim_keys_v1(p_user text, p_s text[], p_t text[], p_p text[])
      RETURNS TABLE (schema_name text, table_name text, pk text) LANGUAGE plpgsql VOLATILE AS $fn$
    BEGIN
      INSERT INTO sync.scoped_keys (schema_name, table_name, pk_uuid, author)
        SELECT k.s, k.t, k.p::uuid, p_user FROM unnest(p_s, p_t, p_p) AS k(s, t, p)
        ON CONFLICT DO NOTHING;
      RETURN QUERY SELECT c.schema_name, c.table_name, c.pk_uuid::text
        FROM unnest(p_s, p_t, p_p) AS k(s, t, p)
        JOIN sync.scoped_keys c ON c.schema_name = k.s AND c.table_name = k.t AND c.pk_uuid = k.p::uuid
        WHERE c.author <> p_user;
    END $fn$;
  END IF;
END $do$;
";

/// Claims keys `($2, $3, $4)` for user `$1`: rows `(schema, table, pk)` of those another user claimed.
pub const CLAIM_SQL: &str = "SELECT * FROM sync.claim_keys_v1($1, $2, $3, $4)";

const FILLED_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM sync.scoped_keys_filled WHERE schema_name = $1 AND table_name = $2)";

/// The drafts that exist before a table's claims are recorded are claimed for their authors once: a scan of the
/// metadata (no index leads with the table), done at the first start that knows the table as scoped.
const FILL_SQL: &str = "
INSERT INTO sync.scoped_keys (schema_name, table_name, pk_uuid, author)
  SELECT m.schema_name, m.table_name, m.pk_uuid, min(m.user_id) FROM sync.sync_row_meta m
  WHERE m.schema_name = $1 AND m.table_name = $2 AND left(m.user_id, 1) <> chr(31)
  GROUP BY 1, 2, 3
  ON CONFLICT DO NOTHING";

/// Records the existing drafts of every scoped table not recorded yet (docs/sharing.md §4).
pub async fn fill(client: &mut Client, registry: &Registry) -> Result<(), SchemaError> {
    for t in registry.tables().filter(|t| t.scope.is_some()) {
        let (s, n) = (&t.table.schema, &t.table.table);
        if client.query_one(FILLED_SQL, &[s, n]).await?.get(0) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'; SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
        ))
        .await?;
        if tx.query_one(FILLED_SQL, &[s, n]).await?.get::<_, bool>(0) {
            continue;
        }
        let drafts = tx.execute(FILL_SQL, &[s, n]).await?;
        tx.execute(
            "INSERT INTO sync.scoped_keys_filled (schema_name, table_name) VALUES ($1, $2)",
            &[s, n],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(table = %t.table, drafts, "recorded the authors of existing drafts");
    }
    Ok(())
}
