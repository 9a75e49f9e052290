//! `POST /sync/upload` (PROTOCOL.md §4.2, §6.1–§6.5): validation, then two round trips per attempt (issue 24): a
//! read without the lock, the pure decision, and a write that takes the per-user advisory lock, checks the read
//! is still current and commits. Attempts are retried on serialisation failures, deadlocks and lock timeouts;
//! a read gone stale is read again, and after [`STALE_READS`] of them under the lock.

mod materialize;
pub mod plan;
mod route;
mod scoped;
pub mod store;

use std::time::Duration;

use crate::pg::is_retryable;
use oversync_protocol::TableRef;
use oversync_protocol::validate::validate_batch;
use oversync_protocol::wire::{
    BoundedError, BoundedUpload, ChangeStatus, Rejection, ServerRow, UploadRequest, UploadResponse,
};
use serde_json::value::RawValue;
use tokio_postgres::IsolationLevel;

use crate::auth::Principal;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::runtime::{Fixed, Runtime};
use plan::{Outcome, Prepared, decide, prepare};
use store::Written;

/// Attempts per upload (§6.1.4).
pub(crate) const ATTEMPTS: u32 = 3;

/// Reads that went stale (another upload of the user wrote one of the rows between read and write) before the
/// upload takes the lock first and reads under it, which cannot go stale: contention costs round trips, never
/// an unbounded number of them.
pub(crate) const STALE_READS: u32 = 2;

/// Handles one upload body for an admitted caller whose turn it is. The body is read under the batch limit
/// (past twice the limit it is not read on: 413); parsing and validation run through [`Runtime::compute`].
pub async fn upload<R: Runtime>(
    svc: &Ctx<'_>,
    rt: &R,
    who: &Principal,
    body: &[u8],
) -> Result<(UploadResponse, Vec<Member>), ApiError> {
    let limit = svc.settings.max_upload_batch_size;
    let changes = match rt.compute(|| UploadRequest::from_json_bounded(body, limit)) {
        Ok(BoundedUpload::Within(req)) => req.changes.unwrap_or_default(),
        Ok(BoundedUpload::TooLarge { scids }) => return Ok((too_large(rt, who, &scids, limit).await?, Vec::new())),
        Err(BoundedError::Flood { limit, cap }) => return Err(ApiError::TooManyChanges { limit, cap }),
        Err(BoundedError::Invalid(_)) => return Err(ApiError::InvalidRequest("Failed to parse upload request".into())),
    };
    let mut conn = rt.connect().await.map_err(ApiError::upload)?;
    let out = upload_on(svc, rt, who, &changes, &mut conn).await;
    if body.len() >= RETIRE_AFTER_BYTES {
        rt.retire(conn);
    }
    out
}

/// The body size from which the connection that wrote an upload is closed rather than pooled ([`Runtime::retire`]).
const RETIRE_AFTER_BYTES: usize = 4 << 20;

async fn upload_on<R: Runtime>(
    svc: &Ctx<'_>,
    rt: &R,
    who: &Principal,
    changes: &[oversync_protocol::wire::ChangeUpload],
    conn: &mut R::Conn,
) -> Result<(UploadResponse, Vec<Member>), ApiError> {
    let registry = svc.ready(conn).await.map_err(ApiError::upload)?;
    if changes.is_empty() {
        let highest = store::max_server_id(&**conn, &who.user_id)
            .await
            .map_err(ApiError::upload)?;
        let empty = UploadResponse {
            accepted: true,
            highest_server_seq: highest,
            statuses: Vec::new(),
        };
        return Ok((empty, Vec::new()));
    }

    let validated = rt.compute(|| {
        validate_batch(
            changes,
            &|t: &TableRef| registry.contains(t),
            svc.settings.max_payload_bytes,
        )
    });
    let accepted = !validated
        .iter()
        .any(|r| matches!(r, Err(e) if e.reason == oversync_protocol::Reason::UnregisteredTable));
    let mut statuses: Vec<Option<ChangeStatus>> = Vec::with_capacity(changes.len());
    let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(changes.len());
    for (c, r) in changes.iter().zip(validated) {
        match r {
            Ok(v) if registry.get(&v.table).is_some_and(|t| !t.devices_write) => {
                let rejection = Rejection::read_only(&v.table.schema, &v.table.table);
                statuses.push(Some(ChangeStatus::invalid(c.source_change_id, rejection)));
                prepared.push(None);
            }
            Ok(v) => {
                statuses.push(None);
                prepared.push(Some(prepare(registry, v)));
            }
            Err(rejection) => {
                statuses.push(Some(ChangeStatus::invalid(c.source_change_id, rejection)));
                prepared.push(None);
            }
        }
    }

    let scoped = prepared
        .iter()
        .flatten()
        .any(|p| registry.scope_column(&p.change.table).is_some());
    let (mut highest, mut members) = (0, Vec::new());
    let slices = slices(registry, &prepared, scoped);
    let whole = slices.len() == 1;
    for slice in slices {
        // A slice is the whole request, or its changes alone (taken out: each is written by one slice).
        let part: Vec<Option<Prepared>> = if whole {
            std::mem::take(&mut prepared)
        } else {
            let mut part = vec![None; prepared.len()];
            for i in slice {
                part[i] = prepared[i].take();
            }
            part
        };
        let (decided, top, told) = attempts(svc, rt, registry, conn, who, &part, scoped).await?;
        for (slot, d) in statuses.iter_mut().zip(decided) {
            if let Some(d) = d {
                *slot = Some(d);
            }
        }
        highest = top;
        members.extend(told);
    }
    let statuses = statuses
        .into_iter()
        .map(|s| s.expect("every change has a status"))
        .collect();
    let response = UploadResponse {
        accepted,
        highest_server_seq: highest,
        statuses,
    };
    Ok((response, members))
}

/// Payload bytes of scoped changes one transaction writes at most (at least one change). A scoped upload holds the
/// owner locks of its scopes, striped and so shared with unrelated scopes, until it commits; a batch of large rows
/// commits in slices, so another member's upload waits for one slice, not the batch (issue 32; numbers in
/// bench/results/hostile-load.md). Slices follow the apply order (parents' upserts first, children's deletes
/// first), so each is decided as the same changes sent in consecutive requests would be; each change's status is
/// its own (§6.3), so a retry after a failed slice finds the slices before it as replays.
pub(crate) const SCOPED_SLICE_BYTES: usize = 2 << 20;

/// The changes written one transaction each, by index: all of them, or for an upload that touches a scoped table,
/// slices of the apply order ([`plan::apply_order`]) of at most [`SCOPED_SLICE_BYTES`] of scoped payload.
fn slices(registry: &Registry, prepared: &[Option<Prepared>], scoped: bool) -> Vec<Vec<usize>> {
    let valid: Vec<_> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| (i, &p.change)))
        .collect();
    let size = |i: usize| {
        prepared[i]
            .as_ref()
            .filter(|p| scoped && registry.scope_column(&p.change.table).is_some())
            .and_then(|p| p.change.payload.as_ref())
            .map_or(0, |v| v.get().len())
    };
    let (mut out, mut slice, mut bytes) = (Vec::new(), Vec::new(), 0);
    for i in plan::apply_order(registry, &valid) {
        let n = size(i);
        if !slice.is_empty() && bytes + n > SCOPED_SLICE_BYTES {
            out.push(std::mem::take(&mut slice));
            bytes = 0;
        }
        slice.push(i);
        bytes += n;
    }
    out.push(slice);
    out
}

/// Writes `prepared` in one transaction, retried as §6.1.4 says: its statuses (aligned with it), the user's top
/// and the members to tell.
async fn attempts<R: Runtime>(
    svc: &Ctx<'_>,
    rt: &R,
    registry: &Registry,
    conn: &mut R::Conn,
    who: &Principal,
    prepared: &[Option<Prepared>],
    scoped: bool,
) -> Result<(Decided, i64, Vec<Member>), ApiError> {
    let (mut attempt, mut stale) = (1, 0);
    loop {
        // Members are told by the upload only where no trigger notification reaches the host's waiters.
        let mut members = Vec::new();
        let tell = rt.hub().is_none().then_some(&mut members);
        let result = if scoped {
            scoped::run(svc.settings.lock_timeout_ms, registry, conn, who, prepared, tell).await
        } else if stale < STALE_READS {
            run(svc, registry, &*conn, who, prepared).await
        } else {
            locked(svc, registry, conn, who, prepared).await
        };
        match result {
            Ok(Some((decided, highest))) => return Ok((decided, highest, members)),
            Ok(None) if scoped && stale >= STALE_READS => return Err(ApiError::Busy(crate::error::RETRY_AFTER_S)),
            Ok(None) => {
                tracing::debug!(stale, "upload read went stale; reading again");
                stale += 1;
            }
            Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                tracing::info!(attempt, error = %e, "upload transaction retried");
                rt.sleep(Duration::from_millis(20 * u64::from(attempt * attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(ApiError::upload(e)),
        }
    }
}

/// The fallback after [`STALE_READS`]: one explicit transaction that takes the lock, then reads and writes under
/// it (READ COMMITTED explicitly, §6.1.3: under REPEATABLE READ the snapshot would predate the lock wait).
async fn locked(
    svc: &Ctx<'_>,
    registry: &Registry,
    conn: &mut tokio_postgres::Client,
    who: &Principal,
    prepared: &[Option<Prepared>],
) -> Result<Option<(Decided, i64)>, tokio_postgres::Error> {
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    store::lock_user(&tx, &who.user_id, svc.settings.lock_timeout_ms).await?;
    let out = run(svc, registry, &tx, who, prepared).await?;
    tx.commit().await?;
    Ok(Some(out.expect("a read under the lock cannot go stale")))
}

/// §6.2.2: more changes than the limit (at most twice it): every status `batch_too_large`, nothing written.
async fn too_large<R: Runtime>(
    rt: &R,
    who: &Principal,
    scids: &[i64],
    limit: usize,
) -> Result<UploadResponse, ApiError> {
    let conn = rt.connect().await.map_err(ApiError::upload)?;
    let highest = store::max_server_id(&*conn, &who.user_id)
        .await
        .map_err(ApiError::upload)?;
    let rejection = Rejection::batch_too_large(scids.len(), limit);
    Ok(UploadResponse {
        accepted: false,
        highest_server_seq: highest,
        statuses: scids
            .iter()
            .map(|&scid| ChangeStatus::invalid(scid, rejection.clone()))
            .collect(),
    })
}

type Decided = Vec<Option<ChangeStatus>>;

/// A member of a scope an upload wrote, to be told of it: user, the source as their devices compare it, and the
/// scope's top.
pub type Member = (String, String, i64);

/// One attempt: read, decide, write. `None` when the read went stale.
async fn run(
    svc: &Ctx<'_>,
    registry: &Registry,
    client: &impl Fixed,
    who: &Principal,
    prepared: &[Option<Prepared>],
) -> Result<Option<(Decided, i64)>, tokio_postgres::Error> {
    let (user, device) = (who.user_id.as_str(), who.source_id.as_str());
    let read = store::read(client, registry, user, device, prepared).await?;
    let plan = decide(registry, prepared, &read.set);
    let conflicts: Vec<plan::RowKey> = plan
        .outcomes
        .iter()
        .flatten()
        .filter_map(|o| match o {
            Outcome::Conflict { row, meta } if !meta.deleted => Some(row.clone()),
            _ => None,
        })
        .collect();
    let materialization = materialize::materialization(registry, &plan.writes, false);
    let set = store::WriteSet {
        writes: &plan.writes,
        materialization: &materialization,
        conflicts: &conflicts,
    };
    let Written::Done { payloads, top } =
        store::write(client, (user, device), svc.settings.lock_timeout_ms, &read, &set).await?
    else {
        return Ok(None);
    };
    count_replays(&plan.outcomes, plan.writes.iter().map(|w| w.index));
    let decided = to_statuses(plan.outcomes, prepared, &payloads);
    Ok(Some((decided, top)))
}

/// Counts the replays among written outcomes (docs/operations.md): `applied` with a version, but not written now.
/// Inside a transaction that may still roll back, a rare over-count.
fn count_replays(outcomes: &[Option<Outcome>], written: impl Iterator<Item = usize>) {
    let written: std::collections::HashSet<usize> = written.collect();
    let replays = outcomes
        .iter()
        .enumerate()
        .filter(|(i, o)| matches!(o, Some(Outcome::Applied(Some(_)))) && !written.contains(i))
        .count();
    if replays > 0 {
        metrics::counter!(crate::observe::names::REPLAYS).increment(replays as u64);
    }
}

/// The statuses of decided outcomes, in request order; conflicts carry their row's payload from `payloads`.
fn to_statuses(
    outcomes: Vec<Option<Outcome>>,
    prepared: &[Option<Prepared>],
    payloads: &std::collections::HashMap<plan::RowKey, String>,
) -> Decided {
    outcomes
        .into_iter()
        .zip(prepared)
        .map(|(o, p)| {
            let scid = p.as_ref()?.change.scid;
            Some(match o? {
                Outcome::Applied(v) => ChangeStatus::applied(scid, v),
                Outcome::Rejected(r) => ChangeStatus::invalid(scid, r),
                Outcome::Conflict { row, meta } => {
                    let payload = if meta.deleted {
                        None
                    } else {
                        payloads.get(&row).and_then(|p| RawValue::from_string(p.clone()).ok())
                    };
                    ChangeStatus::conflict(
                        scid,
                        ServerRow {
                            id: row.1.clone(),
                            deleted: meta.deleted,
                            payload,
                            table_name: row.0.table.clone(),
                            schema_name: row.0.schema.clone(),
                            server_version: meta.version,
                        },
                    )
                }
            })
        })
        .collect()
}
