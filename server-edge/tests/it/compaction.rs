//! Bounded history (issue 36, docs/history.md): compaction of superseded entries, idempotency receipts, tombstone
//! retention with `history_pruned`, and the version floor. Each test has a database of its own: a pass covers
//! the whole log, and a retention of 0 would prune other tests' tombstones under their cursors.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

/// Runs a whole pass, 7 log rows per step, with superseded entries older than `after_s` seconds and tombstones
/// older than `retention_s` removed: `(compacted, pruned)`.
pub async fn compact(t: &Target, after_s: f64, retention_s: f64) -> (i64, i64) {
    let db = db(t).await;
    let (mut compacted, mut pruned) = (0, 0);
    loop {
        let r = db
            .query_one(
                "SELECT r_busy, r_compacted, r_pruned, r_wrapped FROM sync.compact_step_v1(7, \
                 now() - make_interval(secs => $1), now() - make_interval(secs => $2))",
                &[&after_s, &retention_s],
            )
            .await
            .unwrap();
        if r.get::<_, bool>(0) {
            continue;
        }
        compacted += r.get::<_, i64>(1);
        pruned += r.get::<_, i64>(2);
        if r.get(3) {
            return (compacted, pruned);
        }
    }
}

/// A device's rows as its downloads leave them: pk → (version, payload or `None` once deleted). The §7.4 guard:
/// an entry at or below the known version is skipped.
pub type Rows = BTreeMap<String, (i64, Option<Value>)>;

pub fn apply(rows: &mut Rows, changes: &[Value]) {
    for c in changes {
        let (pk, v) = (
            c["pk"].as_str().unwrap().to_owned(),
            c["server_version"].as_i64().unwrap(),
        );
        if rows.get(&pk).is_some_and(|(known, _)| *known >= v) {
            continue;
        }
        let payload = (c["op"] != "DELETE").then(|| c["payload"].clone());
        rows.insert(pk, (v, payload));
    }
}

/// Pages from `after` to the end of the log, 5 entries a page, applying each page: the cursor reached.
pub async fn catch_up(d: &Device, rows: &mut Rows, mut after: i64) -> i64 {
    let mut until = 0;
    loop {
        let page = d.download(&format!("after={after}&limit=5&until={until}")).await;
        apply(rows, page["changes"].as_array().unwrap());
        after = page["next_after"].as_i64().unwrap();
        if page["has_more"] != true {
            return after;
        }
        until = page["window_until"].as_i64().unwrap();
    }
}

/// The live rows PostgreSQL holds for `user`: pk → (version, payload).
pub async fn server_rows(t: &Target, user: &str) -> BTreeMap<String, (i64, Value)> {
    db(t)
        .await
        .query(
            "SELECT m.pk_uuid::text, m.server_version, s.payload::text FROM sync.sync_row_meta m
             JOIN sync.sync_state s USING (user_id, schema_name, table_name, pk_uuid) WHERE m.user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), serde_json::from_str(r.get(2)).unwrap())))
        .collect()
}

/// Rows still live, as [`server_rows`] has them.
pub fn live(rows: &Rows) -> BTreeMap<String, (i64, Value)> {
    rows.iter()
        .filter_map(|(k, (v, p))| p.clone().map(|p| (k.clone(), (*v, p))))
        .collect()
}

#[tokio::test]
async fn a_retry_after_compaction_answers_its_stored_version_and_writes_nothing() {
    let t = target_in_own_db("");
    let user = new_user();
    let (d, other) = (Device::new(&t, &user, "d"), Device::new(&t, &user, "other"));
    let a = id();
    d.upload(vec![upsert(1, "users", &a, 0, user_row(&a, "v1"))]).await;
    // Applied, but its answer never reached the device.
    let lost = vec![upsert(2, "users", &a, 1, user_row(&a, "v2"))];
    d.upload(lost.clone()).await;
    other.upload(vec![upsert(1, "users", &a, 2, user_row(&a, "v3"))]).await;
    assert_eq!(compact(&t, 0.0, 1e9).await, (2, 0));
    assert_eq!(log_rows(&t, &user).await, 1);

    let r = d.upload(lost).await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied, "{r}");
    assert_eq!(r["statuses"][0]["new_server_version"], 2, "{r}");
    assert_eq!(log_rows(&t, &user).await, 1, "a replay writes nothing");
    assert_eq!(server_rows(&t, &user).await[&a].0, 3);
    // The receipt still names its row: the scid used again for another row is refused.
    let b = id();
    let r = d.upload(vec![upsert(2, "users", &b, 0, user_row(&b, "b"))]).await;
    assert_eq!(status_at(&r, 0), WireStatus::Invalid, "{r}");
    assert!(r.to_string().contains("already used"), "{r}");
    // A reinstall with the same device id learns its newest scid from the receipt (§8.2).
    let (status, snap) = d.get_raw("/sync/snapshot?limit=10").await;
    assert_eq!((status, &snap["max_own_source_change_id"]), (200, &json!(2)), "{snap}");
}

#[tokio::test]
async fn every_cursor_converges_after_compaction() {
    let t = target_in_own_db("");
    let user = new_user();
    let (d, reader) = (Device::new(&t, &user, "writer"), Device::new(&t, &user, "reader"));
    let pks: Vec<String> = (0..12).map(|_| id()).collect();
    let (mut versions, mut scid, mut cursors) = (vec![0_i64; pks.len()], 0, vec![0_i64]);
    for round in 0..6 {
        let mut changes = Vec::new();
        for (i, pk) in pks.iter().enumerate() {
            scid += 1;
            changes.push(if round == 3 && i % 4 == 0 {
                delete(scid, "users", pk, versions[i])
            } else {
                let base = versions[i];
                upsert(scid, "users", pk, base, user_row(pk, &format!("r{round}")))
            });
        }
        let r = d.upload(changes).await;
        for (i, s) in statuses(&r).iter().enumerate() {
            versions[i] = s["new_server_version"].as_i64().unwrap_or(versions[i]);
        }
        cursors.push(catch_up(&reader, &mut Rows::new(), 0).await);
    }
    // Each cursor's state, as a device that paged up to it before compaction has it.
    let mut states = Vec::new();
    for &c in &cursors {
        let mut rows = Rows::new();
        let entries: Vec<Value> = reader
            .download_all("")
            .await
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .filter(|e| e["server_id"].as_i64().unwrap() <= c)
            .collect();
        apply(&mut rows, &entries);
        states.push(rows);
    }
    let (compacted, pruned) = compact(&t, 0.0, 1e9).await;
    assert_eq!(pruned, 0);
    assert!(compacted >= 60, "{compacted}");
    assert_eq!(log_rows(&t, &user).await, pks.len() as i64, "one entry per row is left");
    let server = server_rows(&t, &user).await;
    for (mut rows, c) in states.into_iter().zip(cursors) {
        catch_up(&reader, &mut rows, c).await;
        assert_eq!(live(&rows), server, "from cursor {c}");
    }
}

#[tokio::test]
async fn a_cursor_below_removed_tombstones_gets_history_pruned_and_the_snapshot_recovers() {
    let t = target_in_own_db("");
    let user = new_user();
    let (d, peer) = (Device::new(&t, &user, "d"), Device::new(&t, &user, "peer"));
    let (a, b) = (id(), id());
    d.upload(vec![
        upsert(1, "users", &a, 0, user_row(&a, "a")),
        upsert(2, "users", &b, 0, user_row(&b, "b")),
    ])
    .await;
    let mut rows = Rows::new();
    let cursor = catch_up(&peer, &mut rows, 0).await;
    d.upload(vec![delete(3, "users", &a, 1)]).await;
    // The owner's newest entry is never removed (its top never goes down): a later write makes the delete older.
    d.upload(vec![upsert(4, "users", &b, 1, user_row(&b, "b2"))]).await;
    let deleted_at: i64 = count(
        &db(&t).await,
        "SELECT server_id FROM sync.server_change_log WHERE user_id = $1 AND op = 'DELETE'",
        &[&user],
    )
    .await;
    assert_eq!(compact(&t, 0.0, 0.0).await, (2, 1));
    let (status, body) = peer.download_raw(&format!("after={cursor}&limit=5")).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"], "history_pruned");
    assert_eq!(body["horizon"], deleted_at);
    // A new device (cursor 0) is never refused: it has no rows to miss a delete of.
    let fresh = peer.download("after=0&limit=5").await;
    assert_eq!(fresh["changes"].as_array().unwrap().len(), 1, "{fresh}");
    // Re-hydration: the snapshot, then downloads from its window.
    let (_, snap) = peer.get_raw("/sync/snapshot?limit=10").await;
    assert_eq!(snap["rows"].as_array().unwrap().len(), 1, "{snap}");
    let w = snap["window_until"].as_i64().unwrap();
    assert!(w >= deleted_at);
    let page = peer.download(&format!("after={w}&limit=5")).await;
    assert_eq!(page["has_more"], false);
}

#[tokio::test]
async fn a_row_re_created_after_its_tombstone_is_gone_starts_above_it() {
    let t = target_in_own_db("");
    let user = new_user();
    let (d, other) = (Device::new(&t, &user, "d"), Device::new(&t, &user, "other"));
    let (a, c) = (id(), id());
    d.upload(vec![
        upsert(1, "users", &a, 0, user_row(&a, "a")),
        upsert(2, "users", &c, 0, user_row(&c, "c")),
    ])
    .await;
    d.upload(vec![delete(3, "users", &a, 1), delete(4, "users", &c, 1)])
        .await;
    let later = id();
    d.upload(vec![upsert(8, "users", &later, 0, user_row(&later, "later"))])
        .await;
    assert_eq!(compact(&t, 0.0, 0.0).await, (2, 2));
    let db = db(&t).await;
    let meta = "SELECT count(*) FROM sync.sync_row_meta WHERE user_id = $1";
    assert_eq!(count(&db, meta, &[&user]).await, 1, "the tombstones' metadata is gone");
    // The device that deleted it re-creates over the tombstone it remembers (base 2): not a conflict with a ghost.
    let r = d.upload(vec![upsert(5, "users", &a, 2, user_row(&a, "again"))]).await;
    assert_eq!(
        (status_at(&r, 0), &r["statuses"][0]["new_server_version"]),
        (WireStatus::Applied, &json!(3))
    );
    // A device that never knew it inserts with base 0, above every version a device may remember.
    let r = other.upload(vec![upsert(1, "users", &c, 0, user_row(&c, "new"))]).await;
    assert_eq!(
        (status_at(&r, 0), &r["statuses"][0]["new_server_version"]),
        (WireStatus::Applied, &json!(3))
    );
    // A backend INSERT too.
    let e = id();
    d.upload(vec![upsert(6, "users", &e, 0, user_row(&e, "e"))]).await;
    d.upload(vec![delete(7, "users", &e, 3)]).await;
    d.upload(vec![upsert(9, "users", &later, 1, user_row(&later, "later2"))])
        .await;
    compact(&t, 0.0, 0.0).await;
    db.execute(
        "INSERT INTO business.users (owner_id, id, name, email) VALUES ($1, $2::text::uuid, 'backend', 'b@x')",
        &[&user, &e],
    )
    .await
    .unwrap();
    let v = "SELECT server_version FROM sync.sync_row_meta WHERE user_id = $1 AND pk_uuid = $2::text::uuid";
    assert_eq!(count(&db, v, &[&user, &e]).await, 5);
    // And a device that kept its tombstone (version 4) takes the row when it downloads it.
    let mut rows = Rows::from([(e.clone(), (4, None))]);
    catch_up(&other, &mut rows, 0).await;
    assert_eq!(rows[&e].0, 5);
}
