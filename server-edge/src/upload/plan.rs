//! The upload decision, without IO (PROTOCOL.md §6.3–§6.5).
//!
//! The store reads what the decision needs in a few set-based queries (idempotency records, row metadata of
//! every row and parent the request names), [`decide`] walks the changes in apply order against that snapshot,
//! and the store writes the resulting [`Write`]s set-based. Keeping this pure makes the ordering and version
//! rules unit-testable and keeps round trips independent of the number of changes.

use std::collections::{HashMap, HashSet};

use oversync_protocol::TableRef;
use oversync_protocol::encoding::fk_value_to_uuid;
use oversync_protocol::validate::{Op, ValidChange};
use oversync_protocol::wire::{Reason, Rejection};
use serde_json::value::RawValue;

use crate::config::FkPrecheck;
use crate::registry::Registry;

pub use crate::rows::{RowKey, RowMeta};

/// The log row recorded for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The row it applied to.
    pub row: RowKey,
    /// The version it produced.
    pub version: i64,
}

/// What the store read before deciding (its read set; not to be confused with `/sync/snapshot`).
#[derive(Debug, Default)]
pub struct ReadSet {
    /// Idempotency records of the request's scids for this device.
    pub logged: HashMap<i64, Logged>,
    /// Metadata of the request's rows and of every referenced parent.
    pub meta: HashMap<RowKey, RowMeta>,
    /// With `fk_precheck = business`: referenced parents that exist in their business table for this user.
    pub business_parents: HashSet<RowKey>,
    /// With `fk_precheck = business`: parent tables whose lookup failed (the cause is logged by the store).
    pub failed_lookups: HashSet<TableRef>,
    /// The owner's version floor: the highest version of its removed tombstones (docs/history.md), 0 if none.
    pub floor: i64,
}

/// A FK reference of an upsert, converted to a UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FkRef {
    /// The parent row.
    pub parent: RowKey,
    /// `<parent schema>.<parent table>:<value exactly as in the payload>`.
    pub label: String,
}

/// A valid change with its FK references resolved (or the precheck's `bad_payload` verdict).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The validated change.
    pub change: ValidChange,
    /// FK references in column order, or the payload's rejection: an unconvertible FK value, or a timestamp that
    /// is not one.
    pub refs: Result<Vec<FkRef>, Rejection>,
}

/// The per-change result, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `applied`, with the version produced or stored (none for a DELETE of a never-known row).
    Applied(Option<i64>),
    /// `conflict`; the store attaches the server row.
    Conflict {
        /// The conflicting row.
        row: RowKey,
        /// Its current metadata.
        meta: RowMeta,
    },
    /// `invalid`.
    Rejected(Rejection),
}

/// One applied change to write.
#[derive(Debug, Clone)]
pub struct Write {
    /// Index in the request.
    pub index: usize,
    /// The row.
    pub row: RowKey,
    /// Operation as uploaded.
    pub op: Op,
    /// The after-image (upserts).
    pub payload: Option<Box<RawValue>>,
    /// The change's scid.
    pub scid: i64,
    /// The version produced.
    pub version: i64,
}

/// The decision for a whole request.
#[derive(Debug, Default)]
pub struct Plan {
    /// Outcomes by request index (`None` for indices that failed validation).
    pub outcomes: Vec<Option<Outcome>>,
    /// Writes in apply order: upserts parent-first, then deletes child-first.
    pub writes: Vec<Write>,
}

/// Checks an upsert's timestamps and resolves its FK references (§6.5 step 1).
pub fn prepare(registry: &Registry, change: ValidChange) -> Prepared {
    let refs = match (&change.payload, registry.get(&change.table)) {
        (Some(payload), Some(info)) => crate::convert::check_timestamps(&change, payload, info).and_then(|()| {
            if !info.fks.is_empty() && registry.fk_precheck != FkPrecheck::Off {
                fk_refs(&change, payload, &info.fks)
            } else {
                Ok(Vec::new())
            }
        }),
        _ => Ok(Vec::new()),
    };
    Prepared { change, refs }
}

fn fk_refs(
    change: &ValidChange,
    payload: &RawValue,
    fks: &[crate::registry::FkColumn],
) -> Result<Vec<FkRef>, Rejection> {
    let bad = || Rejection::bad_payload(format!("bad payload for {} pk={}", change.table, change.pk));
    let map: HashMap<String, &RawValue> = serde_json::from_str(payload.get()).map_err(|_| bad())?;
    let map: HashMap<String, &RawValue> = map.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    let mut refs = Vec::new();
    for fk in fks {
        let Some(raw) = map.get(&fk.column) else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|_| bad())?;
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            _ => return Err(bad()),
        };
        let uuid = fk_value_to_uuid(&text).ok_or_else(bad)?;
        refs.push(FkRef {
            parent: (fk.parent.clone(), uuid.hyphenated().to_string()),
            label: format!("{}:{text}", fk.parent),
        });
    }
    Ok(refs)
}

/// Apply order: upserts by (table rank, request index), then deletes by (reverse rank, request index).
pub fn apply_order(registry: &Registry, changes: &[(usize, &ValidChange)]) -> Vec<usize> {
    let mut upserts: Vec<_> = changes
        .iter()
        .filter(|(_, c)| !c.op.is_delete())
        .map(|(i, c)| (registry.rank(&c.table), *i))
        .collect();
    let mut deletes: Vec<_> = changes
        .iter()
        .filter(|(_, c)| c.op.is_delete())
        .map(|(i, c)| (registry.rank(&c.table), *i))
        .collect();
    upserts.sort();
    deletes.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    upserts.into_iter().chain(deletes).map(|(_, i)| i).collect()
}

/// Decides every valid change against the snapshot. `prepared[i]` is `None` where validation failed.
pub fn decide(registry: &Registry, prepared: &[Option<Prepared>], reads: &ReadSet) -> Plan {
    let valid: Vec<(usize, &ValidChange)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| (i, &p.change)))
        .collect();
    let deleted_here: HashSet<RowKey> = valid
        .iter()
        .filter(|(_, c)| c.op.is_delete())
        .map(|(_, c)| (c.table.clone(), c.pk.clone()))
        .collect();
    let upserted_here: HashSet<RowKey> = valid
        .iter()
        .filter(|(_, c)| !c.op.is_delete())
        .map(|(_, c)| (c.table.clone(), c.pk.clone()))
        .collect();
    let mut meta = reads.meta.clone();
    let mut applied_here: HashSet<RowKey> = HashSet::new();
    let mut plan = Plan {
        outcomes: vec![None; prepared.len()],
        writes: Vec::new(),
    };

    for index in apply_order(registry, &valid) {
        let p = prepared[index].as_ref().expect("valid index");
        let c = &p.change;
        let row: RowKey = (c.table.clone(), c.pk.clone());
        let outcome = if let Some(logged) = reads.logged.get(&c.scid) {
            if logged.row == row {
                Outcome::Applied(Some(logged.version))
            } else {
                Outcome::Rejected(Rejection::bad_payload(format!(
                    "source_change_id {} already used for {} pk={}",
                    c.scid, logged.row.0, logged.row.1
                )))
            }
        } else if let Some(rejection) = precheck(
            registry,
            p,
            &row,
            &meta,
            reads,
            &applied_here,
            &deleted_here,
            &upserted_here,
        ) {
            Outcome::Rejected(rejection)
        } else {
            version_check(c, &row, meta.get(&row).copied(), reads.floor)
        };
        if let Outcome::Applied(Some(version)) = outcome
            && !reads.logged.contains_key(&c.scid)
            && is_write(c.op, meta.get(&row).copied(), version)
        {
            meta.insert(
                row.clone(),
                RowMeta {
                    version,
                    deleted: c.op.is_delete(),
                },
            );
            applied_here.insert(row.clone());
            plan.writes.push(Write {
                index,
                row,
                op: c.op,
                payload: c.payload.clone(),
                scid: c.scid,
                version,
            });
        }
        plan.outcomes[index] = Some(outcome);
    }
    plan
}

/// An `applied` outcome writes unless it is a DELETE of a tombstone (answered with the tombstone's version).
fn is_write(op: Op, current: Option<RowMeta>, version: i64) -> bool {
    !(op.is_delete() && current.is_some_and(|m| m.deleted && m.version == version))
}

#[allow(clippy::too_many_arguments)]
fn precheck(
    registry: &Registry,
    p: &Prepared,
    row: &RowKey,
    meta: &HashMap<RowKey, RowMeta>,
    reads: &ReadSet,
    applied_here: &HashSet<RowKey>,
    deleted_here: &HashSet<RowKey>,
    upserted_here: &HashSet<RowKey>,
) -> Option<Rejection> {
    if p.change.op.is_delete() {
        return None;
    }
    // The payload's own verdict (a timestamp that is not one, an unconvertible FK value) holds with prechecks off.
    let refs = match &p.refs {
        Ok(refs) => refs,
        Err(rejection) => return Some(rejection.clone()),
    };
    if registry.fk_precheck == FkPrecheck::Off {
        return None;
    }
    if refs.iter().any(|r| reads.failed_lookups.contains(&r.parent.0)) {
        // §4.3's fixed text in both places; the database's error never reaches the body.
        let message = format!("FK precheck failed for {} pk={}", row.0, row.1);
        return Some(Rejection::with_error(Reason::PrecheckError, message));
    }
    let missing: Vec<String> = refs
        .iter()
        .filter(|r| {
            if deleted_here.contains(&r.parent) {
                return true;
            }
            // Self-references: another (or the same) upsert of this table in the request satisfies them.
            let self_ref = r.parent.0 == row.0 && upserted_here.contains(&r.parent);
            let live = match registry.fk_precheck {
                FkPrecheck::Business => reads.business_parents.contains(&r.parent) || applied_here.contains(&r.parent),
                _ => meta.get(&r.parent).is_some_and(|m| !m.deleted),
            };
            !(live || self_ref)
        })
        .map(|r| r.label.clone())
        .collect();
    (!missing.is_empty()).then(|| Rejection::fk_missing(missing))
}

/// The version rules of §6.4. A row the server does not know may have had a tombstone that was removed
/// (docs/history.md): its owner's `floor` is at least that tombstone's version, so the row starts above it, and
/// a base up to the floor is a re-create over the forgotten tombstone, not a conflict with a ghost.
fn version_check(c: &ValidChange, row: &RowKey, current: Option<RowMeta>, floor: i64) -> Outcome {
    let base = c.base_version;
    match (current, c.op.is_delete()) {
        (None, true) => Outcome::Applied(None),
        (None, false) if (0..=floor).contains(&base) => Outcome::Applied(Some(floor + 1)),
        (None, false) => Outcome::Rejected(Rejection::conflict_without_server_row(&row.0.to_string(), &row.1)),
        (Some(m), true) if m.deleted => Outcome::Applied(Some(m.version)),
        (Some(m), _) if base == m.version => Outcome::Applied(Some(m.version + 1)),
        (Some(m), _) => Outcome::Conflict {
            row: row.clone(),
            meta: m,
        },
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
