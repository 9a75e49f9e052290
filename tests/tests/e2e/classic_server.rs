//! Our engine against a classic server's documented defects (issue 32's interop run against go-oversync's classic
//! server), scripted: a losing change logged at the winner's version (D1), and replays acknowledged without their
//! version (D5).

use serde_json::{Value, json};

use super::hostile_server::{engine, page};
use crate::support::id;

fn entry(server_id: i64, pk: &str, op: &str, version: i64, name: Option<&str>) -> Value {
    let mut e = json!({"server_id": server_id, "schema": "business", "table": "users", "op": op, "pk": pk,
                       "server_version": version, "deleted": op == "DELETE", "source_id": "other",
                       "source_change_id": server_id, "ts": "2026-01-01T00:00:00.000000Z"});
    if let Some(name) = name {
        e["payload"] = json!({"id": pk, "name": name, "email": "e"});
    }
    e
}

fn local(
    e: &oversync_client::Engine<super::hostile_server::Scripted>,
    pk: &str,
) -> (Option<String>, Option<(i64, bool)>) {
    let c = e.conn();
    let name = c
        .query_row("SELECT name FROM users WHERE id = ?1", [pk], |r| r.get(0))
        .ok();
    let meta = c
        .query_row(
            "SELECT server_version, deleted FROM _sync_row_meta WHERE pk_uuid = ?1",
            [pk],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    (name, meta)
}

/// D1: a classic server logs a change that lost to a delete at the delete's version. In one page the version
/// guard must see the delete it has just applied (its metadata is still queued), or the loser resurrects the row
/// on this device only, for good.
#[tokio::test]
async fn a_loser_logged_at_the_deletes_version_in_the_same_page_does_not_resurrect_the_row() {
    let pk = id();
    let entries = json!([
        entry(1, &pk, "INSERT", 1, Some("first")),
        entry(2, &pk, "DELETE", 2, None),
        entry(3, &pk, "UPDATE", 2, Some("the loser")),
    ]);
    let mut e = engine(vec![page(entries, 3)]);
    e.download().await.unwrap();
    assert_eq!(
        local(&e, &pk),
        (None, Some((2, true))),
        "deleted, as on every other device"
    );
}

/// D5: a classic server answers a replay `applied` without `new_server_version`. The change was applied at its
/// base + 1; sending the row's next edit on the old base would conflict with the device's own write and the
/// default resolver (server wins) would drop the edit.
#[tokio::test]
async fn an_edit_after_a_replay_acknowledged_without_its_version_is_not_lost() {
    let pk = id();
    let mut e = engine(vec![page(json!([entry(1, &pk, "INSERT", 1, Some("synced"))]), 1)]);
    e.download().await.unwrap();
    e.conn()
        .execute("UPDATE users SET name = 'first edit' WHERE id = ?1", [&pk])
        .unwrap();
    let replayed = json!({"accepted": true, "highest_server_seq": 2,
                          "statuses": [{"source_change_id": 1, "status": "applied"}]});
    e.transport().then(vec![(200, replayed.to_string())]);
    assert_eq!(e.upload().await.unwrap().applied, 1);
    e.conn()
        .execute("UPDATE users SET name = 'second edit' WHERE id = ?1", [&pk])
        .unwrap();
    let applied = json!({"accepted": true, "highest_server_seq": 3,
                         "statuses": [{"source_change_id": 2, "status": "applied", "new_server_version": 3}]});
    e.transport().then(vec![(200, applied.to_string())]);
    assert_eq!(e.upload().await.unwrap().applied, 1);
    let sent: Value = serde_json::from_slice(e.transport().1.borrow().last().unwrap()).unwrap();
    assert_eq!(
        sent["changes"][0]["server_version"], 2,
        "the second edit is based on the version the first was applied at: {sent}"
    );
    assert_eq!(local(&e, &pk), (Some("second edit".into()), Some((3, false))));
}
