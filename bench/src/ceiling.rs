//! The ceilings: what PostgreSQL can do for the same work without the server — one hand-written set-based
//! statement per upload batch, and the bare SELECT of a download serialised to JSON in-process.

use std::time::Instant;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;

const WRITE_BATCH: &str = "
WITH input AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) AS u(s, t, p, pl, sc)),
ids AS (SELECT nextval(pg_get_serial_sequence('sync.server_change_log', 'server_id')) AS i, input.* FROM input),
log AS (INSERT INTO sync.server_change_log
          (server_id, user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version)
        SELECT i, $1, s, t, 'INSERT', p::uuid, pl::json, 'ceiling', sc, 1 FROM ids RETURNING 1),
meta AS (INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version)
         SELECT $1, s, t, p::uuid, 1 FROM input RETURNING 1)
INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)
SELECT $1, s, t, p::uuid, pl::json FROM input";

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn write_all(url: String, batches: Vec<Value>) -> anyhow::Result<usize> {
    let client = connect(&url).await?;
    let user = format!("ceiling-{}", uuid::Uuid::new_v4().simple());
    let mut n = 0;
    for b in batches {
        let changes = b["changes"].as_array().cloned().unwrap_or_default();
        let col = |k: &str| {
            changes
                .iter()
                .map(|c| c[k].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<String>>()
        };
        let (schemas, tables, pks) = (col("schema"), col("table"), col("pk"));
        let payloads: Vec<String> = changes.iter().map(|c| c["payload"].to_string()).collect();
        let scids: Vec<i64> = changes
            .iter()
            .map(|c| c["source_change_id"].as_i64().unwrap_or_default())
            .collect();
        client
            .execute_typed(
                WRITE_BATCH,
                &[
                    (&user, Type::TEXT),
                    (&schemas, Type::TEXT_ARRAY),
                    (&tables, Type::TEXT_ARRAY),
                    (&pks, Type::TEXT_ARRAY),
                    (&payloads, Type::TEXT_ARRAY),
                    (&scids, Type::INT8_ARRAY),
                ],
            )
            .await?;
        n += changes.len();
    }
    Ok(n)
}

/// Changes per second writing `plans` (one list of batches per concurrent connection).
pub async fn upload(url: &str, plans: &[Vec<Value>]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut total = 0;
    for r in join_all(plans.iter().map(|p| write_all(url.to_owned(), p.clone()))).await {
        total += r?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Rows per second selecting a user's whole log and serialising every row as a download entry.
pub async fn download(url: &str, user: &str) -> anyhow::Result<f64> {
    let client = connect(url).await?;
    let started = Instant::now();
    let rows = client
        .query(
            "SELECT server_id, schema_name, table_name, op, pk_uuid::text, payload::text, server_version, source_id,
                    source_change_id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
             FROM sync.server_change_log WHERE user_id = $1 ORDER BY server_id",
            &[&user],
        )
        .await?;
    let mut bytes = 0;
    for r in &rows {
        let payload: Option<String> = r.get(5);
        let entry = json!({"server_id": r.get::<_, i64>(0), "schema": r.get::<_, String>(1), "table": r.get::<_, String>(2),
            "op": r.get::<_, String>(3), "pk": r.get::<_, String>(4),
            "payload": payload.map(|p| serde_json::from_str::<Value>(&p).unwrap_or(Value::Null)),
            "server_version": r.get::<_, i64>(6), "source_id": r.get::<_, String>(7),
            "source_change_id": r.get::<_, i64>(8), "ts": r.get::<_, String>(9)});
        bytes += entry.to_string().len();
    }
    anyhow::ensure!(bytes > 0 || rows.is_empty());
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}
