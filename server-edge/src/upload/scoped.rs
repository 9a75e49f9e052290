//! Uploads that touch a scoped table (docs/sharing.md §4, §5.1). Every change is written under its row's
//! owner: the user for private tables and drafts, `'\x1f' || scope` for a shared row. One explicit transaction:
//!
//! 1. where each scoped key lives now (read without locks, to know which owners to lock);
//! 2. the owner locks, the user's then the scopes' stripes ascending (`sync.lock_owners_v1`);
//! 3. the same read under the locks (a key that moved meanwhile to an owner not locked: start again), and the
//!    user's roles in those scopes, so a revoked writer is refused by the upload that follows the revocation;
//! 4. per owner, the classic read and decision (`store::read`, `plan::decide`), a move decided against the row
//!    where it lives;
//! 5. the writes: first every move's DELETE in its old owner (so a member of both scopes reads the delete before
//!    the row arrives in the new one), then each owner's writes. The locks make the write function's staleness
//!    check moot, so it is skipped (`top = i64::MAX`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oversync_protocol::validate::Op;
use oversync_protocol::wire::{Reason, Rejection};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, IsolationLevel};

use super::materialize::materialization;
use super::plan::{Outcome, Prepared, RowKey, RowMeta, Write, decide};
use super::route::{Place, payload_scope, places, route, scope_of};
use super::store::{self, Read, WriteSet, Written};
use super::{Decided, count_replays, to_statuses};
use crate::auth::Principal;
use crate::registry::Registry;
use crate::schema::claims::CLAIM_SQL;
use crate::schema::scopes::{LOCK_OWNERS_SQL, ROLES_SQL, scope_source};

/// Scopes one upload writes at most; changes to more are answered `internal_error` (kept and sent again by every
/// client, PROTOCOL.md §4.3), so no upload holds more owner locks, or more round trips under them, than this.
pub(super) const MAX_SCOPES: usize = 16;

/// Members of a scope told of one of its commits by the upload (the rest learn of it at their next cycle).
const MAX_TOLD: i64 = 256;

/// Where a key claimed by another user lives as far as this upload is concerned: nowhere it may see.
const OUT_OF_SIGHT: Place = (
    String::new(),
    RowMeta {
        version: 0,
        deleted: true,
    },
);

/// Claims `keys` for `user`; the keys another user claimed first (docs/sharing.md §4, `sync.claim_keys_v1`).
async fn claim(
    tx: &tokio_postgres::Transaction<'_>,
    user: &str,
    keys: &[RowKey],
) -> Result<HashMap<RowKey, Place>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (s, t, p) = crate::rows::unzip_keys(keys);
    let rows = tx
        .query_typed(
            CLAIM_SQL,
            &[
                (&user, Type::TEXT),
                (&s, Type::TEXT_ARRAY),
                (&t, Type::TEXT_ARRAY),
                (&p, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let table = oversync_protocol::TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1));
            ((table, r.get(2)), OUT_OF_SIGHT)
        })
        .collect())
}

const MEMBERS_SQL: &str = "SELECT user_id FROM sync.scope_members WHERE scope = $1 ORDER BY user_id LIMIT $2";

/// One attempt. `None`: a key moved to an owner this attempt did not lock; try again.
pub(super) async fn run(
    lock_timeout_ms: u64,
    registry: &Registry,
    conn: &mut Client,
    who: &Principal,
    prepared: &[Option<Prepared>],
    members: Option<&mut Vec<super::Member>>,
) -> Result<Option<(Decided, i64)>, tokio_postgres::Error> {
    let (user, device) = (who.user_id.as_str(), who.source_id.as_str());
    let scoped_device = scope_source(user, device);
    let device_for = |owner: &str| {
        if scope_of(owner).is_some() {
            scoped_device.as_str()
        } else {
            device
        }
    };
    let mut outcomes: Vec<Option<Outcome>> = vec![None; prepared.len()];
    // The payload scope of each change to a scoped table (upserts), or its rejection.
    let mut targets: HashMap<usize, Option<String>> = HashMap::new();
    let mut keys: Vec<RowKey> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let Some(p) = p else { continue };
        let Some(column) = registry.scope_column(&p.change.table) else {
            continue;
        };
        keys.push((p.change.table.clone(), p.change.pk.clone()));
        if p.change.op.is_delete() {
            continue;
        }
        match payload_scope(column, &p.change) {
            Ok(scope) => {
                targets.insert(i, scope);
            }
            Err(r) => outcomes[i] = Some(Outcome::Rejected(r)),
        }
    }
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let before = places(&tx, user, &keys).await?;
    // The scopes each change writes, admitted in request order up to MAX_SCOPES: an upload holds the owner locks
    // of all of them (and makes two round trips per owner) until it commits.
    let mut locked: BTreeSet<String> = BTreeSet::new();
    for (i, p) in prepared.iter().enumerate() {
        let Some(p) = p
            .as_ref()
            .filter(|p| outcomes[i].is_none() && registry.scope_column(&p.change.table).is_some())
        else {
            continue;
        };
        let key = (p.change.table.clone(), p.change.pk.clone());
        let mut wants: BTreeSet<String> = targets.get(&i).cloned().flatten().into_iter().collect();
        wants.extend(before.get(&key).and_then(|(o, _)| scope_of(o)).map(str::to_owned));
        if locked.union(&wants).count() > MAX_SCOPES {
            outcomes[i] = Some(Outcome::Rejected(Rejection::with_error(
                Reason::InternalError,
                format!("more than {MAX_SCOPES} scopes in one upload: sent again in a later one"),
            )));
        } else {
            locked.extend(wants);
        }
    }
    let locked: Vec<String> = locked.into_iter().collect();
    let timeout = format!("{lock_timeout_ms}ms");
    tx.query_typed(
        LOCK_OWNERS_SQL,
        &[(&user, Type::TEXT), (&locked, Type::TEXT_ARRAY), (&timeout, Type::TEXT)],
    )
    .await?;
    let at = places(&tx, user, &keys).await?;
    // A key of an admitted change that moved meanwhile into a scope this attempt did not lock: start again (the
    // changes refused above are not written, so where their rows are does not matter).
    let moved_away = prepared.iter().enumerate().any(|(i, p)| {
        let Some(p) = p.as_ref().filter(|_| outcomes[i].is_none()) else {
            return false;
        };
        let place = at.get(&(p.change.table.clone(), p.change.pk.clone()));
        place
            .and_then(|(o, _)| scope_of(o))
            .is_some_and(|s| locked.binary_search(&s.to_owned()).is_err())
    });
    if moved_away {
        return Ok(None);
    }
    let roles: HashMap<String, String> = tx
        .query_typed(ROLES_SQL, &[(&user, Type::TEXT), (&locked, Type::TEXT_ARRAY)])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    // New keys (upserts of keys that live nowhere in sight) are claimed for the user; those another user claimed
    // first (a draft of theirs, out of sight) are out of reach too.
    let fresh: Vec<RowKey> = prepared
        .iter()
        .enumerate()
        .filter(|(i, _)| outcomes[*i].is_none() && targets.contains_key(i))
        .filter_map(|(_, p)| p.as_ref().map(|p| (p.change.table.clone(), p.change.pk.clone())))
        .filter(|k| !at.contains_key(k))
        .collect();
    let foreign = claim(&tx, user, &fresh).await?;

    // Route every change to its owner; refuse those that write a scope the user is not a writer of.
    let mut groups: BTreeMap<String, Vec<Option<Prepared>>> = BTreeMap::new();
    let mut moves: HashMap<usize, Place> = HashMap::new();
    for (i, p) in prepared.iter().enumerate() {
        let Some(p) = p.as_ref().filter(|_| outcomes[i].is_none()) else {
            continue;
        };
        let c = &p.change;
        let owner = if registry.scope_column(&c.table).is_some() {
            let key = (c.table.clone(), c.pk.clone());
            // A row in a scope the user is not a member of is out of sight (docs/sharing.md §5.1, issue 32): a
            // DELETE of it is a DELETE of an unknown row (no answer names the scope, or tells it from a key that
            // never existed), and an upsert conflicts with its deletion, as an edit of a row moved out of reach.
            let hidden = at
                .get(&key)
                .filter(|(o, _)| scope_of(o).is_some_and(|s| !roles.contains_key(s)))
                .or(foreign.get(&key));
            let r = route(user, c.op, targets.get(&i), at.get(&key).filter(|_| hidden.is_none()));
            if let Some(s) = r
                .scopes
                .iter()
                .find(|s| roles.get(*s).is_none_or(|role| role != "writer"))
            {
                outcomes[i] = Some(Outcome::Rejected(Rejection::scope_forbidden(
                    s,
                    &c.table.to_string(),
                    &c.pk,
                )));
                continue;
            }
            if hidden.is_some() && !c.op.is_delete() {
                // Version 0: the deletion the device records must not outrank the row should it come back into
                // sight (the user rejoins its scope: every version of the row is newer), nor tell its version.
                let meta = RowMeta {
                    version: 0,
                    deleted: true,
                };
                outcomes[i] = Some(Outcome::Conflict { row: key, meta });
                continue;
            }
            if let Some(from) = r.from {
                moves.insert(i, from);
            }
            r.owner
        } else {
            user.to_owned()
        };
        groups.entry(owner).or_insert_with(|| vec![None; prepared.len()])[i] = Some(p.clone());
    }

    // Decide per owner; a move is decided against the place it moves from.
    let mut planned: Vec<(String, Read, Vec<Write>)> = Vec::new();
    let mut move_deletes: BTreeMap<String, Vec<Write>> = BTreeMap::new();
    let mut conflicts: BTreeMap<String, Vec<RowKey>> = BTreeMap::new();
    for (owner, group) in &groups {
        let mut read = store::read(&tx, registry, owner, device_for(owner), group).await?;
        for (i, (_, meta)) in moves.iter().filter(|(i, _)| group[**i].is_some()) {
            let c = &group[*i].as_ref().expect("in the group").change;
            read.set.meta.insert((c.table.clone(), c.pk.clone()), *meta);
        }
        let mut plan = decide(registry, group, &read.set);
        for (i, o) in std::mem::take(&mut plan.outcomes).into_iter().enumerate() {
            let Some(mut o) = o else { continue };
            let from = moves.get(&i);
            match (&mut o, from) {
                // The old place's DELETE takes the next version and the row the one after it in the new place: a
                // member of both applies the delete, then a newer row (with one version for both, the version
                // guard would skip the row). Only for a change that writes: a replay (its scid already logged) of
                // an upsert whose row was moved since by someone else is answered with its stored version and
                // moves nothing.
                (Outcome::Applied(Some(version)), Some((old, meta)))
                    if !meta.deleted && plan.writes.iter().any(|w| w.index == i) =>
                {
                    let c = &group[i].as_ref().expect("decided").change;
                    move_deletes.entry(old.clone()).or_default().push(Write {
                        index: i,
                        row: (c.table.clone(), c.pk.clone()),
                        op: Op::Delete,
                        payload: None,
                        scid: c.scid,
                        version: *version,
                    });
                    *version += 1;
                    if let Some(w) = plan.writes.iter_mut().find(|w| w.index == i) {
                        w.version = *version;
                    }
                }
                (Outcome::Conflict { row, meta }, _) if !meta.deleted => {
                    let place = from.map_or(owner, |(o, _)| o);
                    conflicts.entry(place.clone()).or_default().push(row.clone());
                }
                _ => {}
            }
            outcomes[i] = Some(o);
        }
        read.top = i64::MAX;
        planned.push((owner.clone(), read, plan.writes));
    }

    let unlocked = || Read {
        set: Default::default(),
        top: i64::MAX,
        keys: Default::default(),
    };
    for (old, writes) in &move_deletes {
        let m = materialization(registry, writes, scope_of(old).is_some());
        let set = WriteSet {
            writes,
            materialization: &m,
            conflicts: &[],
        };
        store::write(&tx, (old, device_for(old)), lock_timeout_ms, &unlocked(), &set).await?;
    }
    let mut payloads = HashMap::new();
    let (mut top, mut scope_tops) = (None, Vec::new());
    let (no_read, no_writes) = (unlocked(), Vec::new());
    let owners: BTreeSet<&String> = planned.iter().map(|(o, ..)| o).chain(conflicts.keys()).collect();
    for owner in owners {
        let (read, writes) = match planned.iter().find(|(o, ..)| o == owner) {
            Some((_, read, writes)) => (read, writes),
            None => (&no_read, &no_writes),
        };
        let m = materialization(registry, writes, scope_of(owner).is_some());
        let c = conflicts.get(owner).map_or(&[][..], Vec::as_slice);
        let set = WriteSet {
            writes,
            materialization: &m,
            conflicts: c,
        };
        let Written::Done { payloads: p, top: t } =
            store::write(&tx, (owner, device_for(owner)), lock_timeout_ms, read, &set).await?
        else {
            unreachable!("the write's check is skipped under the owner locks");
        };
        payloads.extend(p);
        if owner == user {
            top = Some(t);
        } else if let Some(scope) = scope_of(owner).filter(|_| !writes.is_empty()) {
            scope_tops.push((scope.to_owned(), t));
        }
    }
    // The members to tell of the commit, for a host without a push source of its own (the Worker's hubs;
    // natively the log's trigger notifies them).
    if let Some(members) = members {
        for (scope, t) in &scope_tops {
            let rows = tx
                .query_typed(MEMBERS_SQL, &[(scope, Type::TEXT), (&MAX_TOLD, Type::INT8)])
                .await?;
            for r in rows {
                let member: String = r.get(0);
                let source = if member == user { device } else { &scoped_device };
                members.push((member, source.to_owned(), *t));
            }
        }
    }
    let top = match top {
        Some(t) => t,
        None => store::max_server_id(&tx, user).await?,
    };
    tx.commit().await?;
    let written = planned.iter().flat_map(|(_, _, writes)| writes.iter().map(|w| w.index));
    count_replays(&outcomes, written);
    Ok(Some((to_statuses(outcomes, prepared, &payloads), top)))
}
