//! A malicious or broken server never corrupts the local database or loses pending changes: wrong status counts,
//! unknown statuses, garbage bodies and payloads, non-canonical keys, huge pages.

use std::cell::RefCell;
use std::collections::VecDeque;

use oversync_client::transport::{Credentials, NetworkError, Reply, Transport};
use oversync_client::{Engine, EngineConfig, SyncError, TableConfig};
use rusqlite::Connection;
use serde_json::json;

use crate::support::{LOCAL_SCHEMA, id};

/// Answers every request with the next scripted reply, and keeps the bodies it was sent.
pub(super) struct Scripted(RefCell<VecDeque<(u16, String)>>, pub(super) RefCell<Vec<Vec<u8>>>);

impl Scripted {
    fn new(replies: Vec<(u16, String)>) -> Self {
        Self(RefCell::new(replies.into()), RefCell::default())
    }

    /// Adds replies to the script.
    pub(super) fn then(&self, replies: Vec<(u16, String)>) {
        self.0.borrow_mut().extend(replies);
    }

    fn next(&self) -> Result<Reply, NetworkError> {
        let (status, body) = self
            .0
            .borrow_mut()
            .pop_front()
            .ok_or_else(|| NetworkError("script exhausted".into()))?;
        Ok(Reply {
            status,
            body: body.into_bytes(),
            retry_after: None,
            request_id: None,
        })
    }
}

impl Transport for Scripted {
    async fn post(&self, _: &str, _: Credentials<'_>, body: Vec<u8>) -> Result<Reply, NetworkError> {
        self.1.borrow_mut().push(body);
        self.next()
    }
    async fn get(&self, _: &str, _: Credentials<'_>) -> Result<Reply, NetworkError> {
        self.next()
    }
}

pub(super) fn engine(replies: Vec<(u16, String)>) -> Engine<Scripted> {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(LOCAL_SCHEMA).unwrap();
    let cfg = EngineConfig::new("business", vec![TableConfig::new("users"), TableConfig::new("posts")]);
    let mut e = Engine::open(conn, cfg, Scripted::new(replies)).unwrap();
    e.sign_in("user-x", "token".into()).unwrap();
    e
}

fn snapshot(e: &Engine<Scripted>) -> (i64, i64, Vec<(String, String)>) {
    e.fold_captured().unwrap();
    let c = e.conn();
    let pending: i64 = c
        .query_row("SELECT count(*) FROM _sync_pending", [], |r| r.get(0))
        .unwrap();
    let cursor: i64 = c
        .query_row("SELECT last_server_seq_seen FROM _sync_client_info", [], |r| r.get(0))
        .unwrap();
    let mut s = c.prepare("SELECT id, name FROM users ORDER BY id").unwrap();
    let users = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (pending, cursor, users)
}

pub(super) fn page(entries: serde_json::Value, next_after: i64) -> (u16, String) {
    (
        200,
        json!({"changes": entries, "has_more": false, "next_after": next_after, "window_until": next_after})
            .to_string(),
    )
}

#[tokio::test]
async fn broken_upload_responses_keep_every_pending_change() {
    for reply in [
        (
            200,
            json!({"accepted": true, "highest_server_seq": 1, "statuses": []}).to_string(),
        ),
        (200, "not json".to_owned()),
        (200, json!({"accepted": true}).to_string()),
        (500, "{}".to_owned()),
        (302, String::new()),
    ] {
        let mut e = engine(vec![reply.clone()]);
        let u = id();
        e.conn()
            .execute("INSERT INTO users (id, name, email) VALUES (?1, 'n', 'e')", [&u])
            .unwrap();
        let before = snapshot(&e);
        assert!(e.upload().await.is_err(), "{reply:?}");
        assert_eq!(snapshot(&e), before, "{reply:?}: nothing changed locally");
        let frozen: Option<i64> = e
            .conn()
            .query_row("SELECT sent_change_id FROM _sync_pending", [], |r| r.get(0))
            .unwrap();
        assert!(frozen.is_some(), "the frozen send is kept for an exact re-send");
    }
}

#[tokio::test]
async fn an_unknown_status_keeps_the_change_for_a_retry() {
    let mut e = engine(vec![(
        200,
        json!({"accepted": true, "highest_server_seq": 0, "statuses": [{"source_change_id": 1, "status": "materialize_error"}]})
            .to_string(),
    )]);
    e.conn()
        .execute("INSERT INTO users (id, name, email) VALUES (?1, 'n', 'e')", [&id()])
        .unwrap();
    let report = e.upload().await.unwrap();
    assert_eq!(report.retried, 1);
    let (pending, attempts): (i64, i64) = e
        .conn()
        .query_row("SELECT count(*), max(attempts) FROM _sync_pending", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((pending, attempts), (1, 1));
}

#[tokio::test]
async fn garbage_download_pages_change_nothing() {
    let good = id();
    let entry = |pk: &str, payload: serde_json::Value| {
        json!({"server_id": 5, "schema": "business", "table": "users", "op": "INSERT", "pk": pk, "payload": payload,
               "server_version": 1, "deleted": false, "source_id": "other", "source_change_id": 1, "ts": "2026-01-01T00:00:00.000000Z"})
    };
    for reply in [
        (200, "{\"changes\": 7}".to_owned()),
        page(
            json!([
                entry(&good, json!({"id": good, "name": "ok", "email": "e"})),
                entry(&id(), json!("not an object"))
            ]),
            5,
        ),
        page(
            json!([entry(
                &good.to_uppercase(),
                json!({"id": good, "name": "x", "email": "e"})
            )]),
            5,
        ),
        page(
            json!([entry(&good, json!({"id": good, "name": null, "email": "e"}))]),
            5,
        ),
        (500, "oops".to_owned()),
    ] {
        let mut e = engine(vec![reply.clone()]);
        e.conn()
            .execute("INSERT INTO users (id, name, email) VALUES (?1, 'local', 'e')", [&id()])
            .unwrap();
        let before = snapshot(&e);
        assert!(e.download().await.is_err(), "{reply:?}");
        assert_eq!(
            snapshot(&e),
            before,
            "{reply:?}: page rolled back, cursor kept, pending kept"
        );
        let apply_mode: i64 = e
            .conn()
            .query_row("SELECT apply_mode FROM _sync_client_info", [], |r| r.get(0))
            .unwrap();
        assert_eq!(apply_mode, 0, "capture is on again");
    }
}

#[tokio::test]
async fn a_huge_page_of_unknown_tables_advances_the_cursor_only() {
    let entries: Vec<_> = (1..=5000)
        .map(|i| json!({"server_id": i, "schema": "business", "table": "unknown", "op": "INSERT", "pk": id(), "payload": {"x": i},
                        "server_version": 1, "deleted": false, "source_id": "other", "source_change_id": i, "ts": "2026-01-01T00:00:00.000000Z"}))
        .collect();
    let mut e = engine(vec![page(json!(entries), 5000)]);
    assert_eq!(e.download().await.unwrap(), 0);
    let (pending, cursor, users) = snapshot(&e);
    assert_eq!((pending, cursor, users.len()), (0, 5000, 0));
    assert!(
        matches!(e.download().await, Err(SyncError::Network(_))),
        "script exhausted"
    );
}

#[tokio::test]
async fn mixed_case_names_are_refused_at_open() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(LOCAL_SCHEMA).unwrap();
    let cfg = EngineConfig::new("Business", vec![TableConfig::new("users")]);
    assert!(matches!(
        Engine::open(conn, cfg, Scripted::new(Vec::new())),
        Err(SyncError::Config(_))
    ));
}

#[tokio::test]
async fn a_status_that_cannot_be_written_locally_backs_off_alone() {
    let (bad, good) = (id(), id());
    // Adopting the server's row for `bad` violates the local NOT NULL on name; `good` is applied.
    let statuses = json!({"accepted": true, "highest_server_seq": 9, "statuses": [
        {"source_change_id": 1, "status": "conflict", "server_row": {"id": bad, "deleted": false,
            "payload": {"id": bad, "name": null, "email": "e"}, "table_name": "users", "schema_name": "business", "server_version": 3}},
        {"source_change_id": 2, "status": "applied", "new_server_version": 1}]});
    let mut e = engine(vec![(200, statuses.to_string())]);
    e.conn()
        .execute("INSERT INTO users (id, name, email) VALUES (?1, 'mine', 'e')", [&bad])
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(10)); // queued_at orders the chunk: bad first
    e.conn()
        .execute("INSERT INTO users (id, name, email) VALUES (?1, 'ok', 'e')", [&good])
        .unwrap();
    let report = e.upload().await.unwrap();
    assert_eq!((report.applied, report.retried), (1, 1));
    let left: Vec<(String, i64)> = {
        let mut s = e.conn().prepare("SELECT pk_uuid, attempts FROM _sync_pending").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        left,
        vec![(bad.clone(), 1)],
        "only the row that failed stays, backing off"
    );
    let name: String = e
        .conn()
        .query_row("SELECT name FROM users WHERE id = ?1", [&bad], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "mine", "its local row is untouched");
}

/// Download pages are written in multi-row statements; the page's log order must still hold: the latest version of a
/// row that appears several times wins, and a delete sees the rows queued before it.
#[tokio::test]
async fn a_page_with_several_versions_of_a_row_applies_in_log_order() {
    let (a, b, c, p) = (id(), id(), id(), id());
    let user = |sid: i64, pk: &str, op: &str, v: i64, name: &str| {
        json!({"server_id": sid, "schema": "business", "table": "users", "op": op, "pk": pk,
               "payload": {"id": pk, "name": name, "email": "e"}, "server_version": v, "deleted": false,
               "source_id": "other", "source_change_id": sid, "ts": "2026-01-01T00:00:00.000000Z"})
    };
    let entries = json!([
        user(1, &a, "INSERT", 1, "a1"),
        {"server_id": 2, "schema": "business", "table": "posts", "op": "INSERT", "pk": p,
         "payload": {"id": p, "title": "t", "content": "c", "author_id": a}, "server_version": 1, "deleted": false,
         "source_id": "other", "source_change_id": 2, "ts": "2026-01-01T00:00:00.000000Z"},
        user(3, &a, "UPDATE", 2, "a2"),
        user(4, &b, "INSERT", 1, "b1"),
        {"server_id": 5, "schema": "business", "table": "users", "op": "DELETE", "pk": b, "server_version": 2,
         "deleted": true, "source_id": "other", "source_change_id": 5, "ts": "2026-01-01T00:00:00.000000Z"},
        user(6, &c, "INSERT", 1, "c1"),
        user(7, &a, "UPDATE", 3, "a3"),
    ]);
    let mut e = engine(vec![page(entries, 7)]);
    assert_eq!(e.download().await.unwrap(), 7);
    let (pending, cursor, users) = snapshot(&e);
    let mut want = vec![(a.clone(), "a3".to_owned()), (c.clone(), "c1".to_owned())];
    want.sort();
    assert_eq!((pending, cursor, users), (0, 7, want));
    let meta: Vec<(String, i64, bool)> = {
        let mut s = e
            .conn()
            .prepare("SELECT pk_uuid, server_version, deleted FROM _sync_row_meta ORDER BY pk_uuid")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut want = vec![(a, 3, false), (b, 2, true), (c, 1, false), (p.clone(), 1, false)];
    want.sort();
    assert_eq!(meta, want);
    let post: i64 = e
        .conn()
        .query_row("SELECT count(*) FROM posts WHERE id = ?1", [&p], |r| r.get(0))
        .unwrap();
    assert_eq!(post, 1);
}
