//! Backend writes (issue 33, docs/backend-writes.md): plain SQL on a registered business table reaches the owner's
//! devices as a change from the backend, keeps what only devices know, conflicts like another device's write, and
//! a row that cannot be synced fails its statement, named.

use futures_util::SinkExt;
use serde_json::{Value, json};

use crate::support::*;

pub use oversync_protocol::wire::BACKEND_SOURCE as BACKEND;

/// Runs `sql` as the app's backend would: its own connection, plain SQL.
pub async fn backend(t: &Target, sql: &str) -> Result<(), tokio_postgres::Error> {
    db(t).await.batch_execute(sql).await
}

/// Every entry of `d`'s download from 0 that names `pk`.
pub async fn entries_of(d: &Device, pk: &str) -> Vec<Value> {
    let page = d.download("after=0&limit=1000").await;
    page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["pk"] == pk)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_backend_update_reaches_every_device_and_keeps_what_only_devices_know() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let pk = id();
    let sent = json!({"id": pk, "name": "Ann", "email": "ann@x", "created_at": 1767225600, "nickname": "annie"});
    assert!(all_applied(&a.upload(vec![upsert(1, "users", &pk, 0, sent)]).await));
    backend(
        &t,
        &format!("UPDATE business.users SET name = 'Ann B' WHERE owner_id = '{user}' AND id = '{pk}'"),
    )
    .await
    .unwrap();
    for d in [&a, &b] {
        let last = entries_of(d, &pk).await.pop().expect("the backend's change");
        assert_eq!(
            (&last["op"], &last["source_id"], &last["server_version"]),
            (&json!("UPDATE"), &json!(BACKEND), &json!(2))
        );
        // The device-only field survives; the unchanged timestamp keeps the device's own encoding.
        assert_eq!(
            last["payload"],
            json!({"id": pk, "name": "Ann B", "email": "ann@x", "created_at": 1767225600, "nickname": "annie"})
        );
    }
    // The materialisation of device uploads is never captured again: one log row per write.
    assert!(all_applied(
        &b.upload(vec![upsert(1, "users", &pk, 2, user_row(&pk, "b"))]).await
    ));
    assert_eq!(log_rows(&t, &user).await, 3);
    // A timestamp the devices send as Unix seconds comes back as Unix seconds.
    backend(
        &t,
        &format!("UPDATE business.users SET created_at = created_at + interval '1.5 s' WHERE owner_id = '{user}'"),
    )
    .await
    .unwrap();
    let last = entries_of(&a, &pk).await.pop().unwrap();
    assert_eq!(last["payload"]["created_at"], json!(1767225601.5));
    assert_eq!(log_rows(&t, &user).await, 4);
    // An UPDATE that changes nothing a device sees appends nothing.
    backend(
        &t,
        &format!("UPDATE business.users SET name = name WHERE owner_id = '{user}'"),
    )
    .await
    .unwrap();
    assert_eq!(log_rows(&t, &user).await, 4);
}

#[tokio::test]
async fn a_device_edit_on_a_base_older_than_a_backend_write_conflicts_with_the_backends_row() {
    let t = target();
    let user = new_user();
    let a = Device::new(&t, &user, "a");
    let pk = id();
    assert!(all_applied(
        &a.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "a"))]).await
    ));
    backend(
        &t,
        &format!("UPDATE business.users SET email = 'paid@x' WHERE owner_id = '{user}' AND id = '{pk}'"),
    )
    .await
    .unwrap();
    let r = a.upload(vec![upsert(2, "users", &pk, 1, user_row(&pk, "late"))]).await;
    assert_eq!(status_at(&r, 0), WireStatus::Conflict, "{r}");
    let row = &statuses(&r)[0]["server_row"];
    assert_eq!(
        (&row["payload"]["email"], &row["server_version"]),
        (&json!("paid@x"), &json!(2)),
        "{r}"
    );
    let name: String = db(&t)
        .await
        .query_one("SELECT name FROM business.users WHERE owner_id = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "a", "the losing edit did not overwrite the backend's row");
}

#[tokio::test]
async fn new_rows_multi_row_statements_copy_and_cascades_reach_devices_in_order() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (list, i1, i2, u1, u2) = (id(), id(), id(), id(), id());
    backend(
        &t,
        &format!(
            "INSERT INTO business.lists VALUES ('{user}', '{list}', 'groceries');
             INSERT INTO business.items VALUES ('{user}', '{i1}', '{list}', 'milk'), ('{user}', '{i2}', '{list}', 'eggs');"
        ),
    )
    .await
    .unwrap();
    let conn = db(&t).await;
    let sink = conn
        .copy_in("COPY business.users (owner_id, id, name, email, created_at) FROM STDIN")
        .await
        .unwrap();
    let rows = format!("{user}\t{u1}\tcopied\tc@x\t2026-03-02 09:15:27.5+00\n{user}\t{u2}\tcopied\tc@x\t\\N\n");
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(rows)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    backend(&t, &format!("DELETE FROM business.lists WHERE owner_id = '{user}'"))
        .await
        .unwrap();

    let page = d.download("after=0&limit=1000").await;
    let seen: Vec<(String, String)> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap().to_owned(),
                e["pk"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("INSERT", &list),
        ("INSERT", &i1),
        ("INSERT", &i2),
        ("INSERT", &u1),
        ("INSERT", &u2),
        // The client applies a page with its FKs off, so a cascade's rows may come in either order.
        ("DELETE", &list),
        ("DELETE", &i1),
        ("DELETE", &i2),
    ]
    .iter()
    .map(|(op, pk)| (op.to_string(), pk.to_string()))
    .collect();
    let (mut seen, mut want) = (seen, want);
    seen[5..].sort();
    want[5..].sort();
    assert_eq!(seen, want, "{page}");
    let copied = &page["changes"][3]["payload"];
    assert_eq!(
        copied,
        &json!({"id": u1, "name": "copied", "email": "c@x", "created_at": "2026-03-02T09:15:27.500000Z", "updated_at": null})
    );
    assert!(
        page["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["source_id"] == BACKEND),
        "{page}"
    );
}

#[tokio::test]
async fn a_change_of_owner_is_a_move_and_a_shared_row_reaches_its_scopes_members() {
    let t = target();
    let (from, to) = (new_user(), new_user());
    let (df, dt) = (Device::new(&t, &from, "f"), Device::new(&t, &to, "t"));
    let pk = id();
    backend(
        &t,
        &format!(
            "INSERT INTO business.users (owner_id, id, name, email) VALUES ('{from}', '{pk}', 'm', 'm@x');
                  UPDATE business.users SET owner_id = '{to}' WHERE owner_id = '{from}';"
        ),
    )
    .await
    .unwrap();
    let gone = entries_of(&df, &pk).await;
    assert_eq!(
        (&gone[1]["op"], &gone[1]["server_version"]),
        (&json!("DELETE"), &json!(2))
    );
    let arrived = entries_of(&dt, &pk).await;
    assert_eq!(arrived.len(), 1);
    assert_eq!(
        (
            &arrived[0]["op"],
            &arrived[0]["server_version"],
            &arrived[0]["payload"]["name"]
        ),
        (&json!("INSERT"), &json!(3), &json!("m")),
        "newer than the deletion, so a device that saw both keeps the row"
    );

    let scope = format!("team-{}", id());
    let member = new_user();
    join(&t, &scope, &member, Some("reader")).await;
    let post = id();
    backend(
        &t,
        &format!("INSERT INTO business.team_posts (id, team_id, title) VALUES ('{post}', '{scope}', 'from the admin')"),
    )
    .await
    .unwrap();
    let m = Device::new(&t, &member, "m");
    let page = m.download("after=0&limit=100&scopes=1").await;
    let e = &page["changes"][0];
    assert_eq!(
        (
            &e["pk"],
            &e["scope"],
            &e["author"],
            &e["source_id"],
            &e["payload"]["title"]
        ),
        (
            &json!(post),
            &json!(scope),
            &json!(BACKEND),
            &json!(BACKEND),
            &json!("from the admin")
        ),
        "{page}"
    );
}

#[tokio::test]
async fn a_row_that_cannot_be_synced_fails_its_statement_and_names_the_row_and_the_rule() {
    let t = target();
    let user = new_user();
    let pk = id();
    let cases = [
        (
            format!("INSERT INTO other.shared_keys (id, name) VALUES ('{pk}', 'x')"),
            "its owner column owner_id is NULL",
        ),
        (
            format!("INSERT INTO business.notes VALUES ('{user}', 'NOT-A-UUID', 'x')"),
            "its key id is not a canonical UUID",
        ),
        (
            format!(
                "INSERT INTO business.notes VALUES ('{user}', '{}', 'x')",
                pk.to_uppercase()
            ),
            "is not a canonical UUID",
        ),
        (
            format!("INSERT INTO business.typed (owner_id, id, r) VALUES ('{user}', '{pk}', 'NaN')"),
            "column r holds \"NaN\", which the sync encoding cannot carry",
        ),
        (
            format!("INSERT INTO business.typed (owner_id, id, at) VALUES ('{user}', '{pk}', 'infinity')"),
            "column at holds \"infinity\"",
        ),
        (
            format!("INSERT INTO business.team_posts (id, team_id) VALUES ('{pk}', NULL)"),
            "its scope column team_id is NULL",
        ),
        (
            "TRUNCATE business.notes".to_owned(),
            "TRUNCATE of business.notes is not captured",
        ),
    ];
    for (sql, rule) in cases {
        let err = backend(&t, &sql).await.expect_err(&sql);
        let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(message.contains(rule), "{sql}: {message}");
    }
    let conn = db(&t).await;
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM business.notes WHERE owner_id = $1",
            &[&user]
        )
        .await,
        0
    );
    assert_eq!(log_rows(&t, &user).await, 0, "nothing half-synced");
    // A canonical text key is fine.
    backend(
        &t,
        &format!("INSERT INTO business.notes VALUES ('{user}', '{pk}', 'ok')"),
    )
    .await
    .unwrap();
    assert_eq!(log_rows(&t, &user).await, 1);
}

/// Values in the §5 encoding, as a device would send them.
#[tokio::test]
async fn backend_values_are_encoded_as_a_device_would_send_them() {
    let t = target();
    let user = new_user();
    let (pk, reference) = (id(), id());
    backend(
        &t,
        &format!(
            "INSERT INTO business.typed (owner_id, id, n, r, ok, at, doc, blob, ref, label)
             VALUES ('{user}', '{pk}', 9007199254740993, 2, true, '2026-03-02 10:15:27.004512+01', '{{\"k\": [1, 2]}}',
                     '\\x000102ff', '{reference}', 'hi')"
        ),
    )
    .await
    .unwrap();
    let d = Device::new(&t, &user, "d");
    let page = d.download("after=0&limit=10").await;
    let text = page.to_string();
    assert!(
        text.contains("\"n\":9007199254740993"),
        "integers digit for digit: {text}"
    );
    assert_eq!(
        page["changes"][0]["payload"],
        json!({"id": pk, "n": 9007199254740993_i64, "r": 2.0, "ok": 1, "at": "2026-03-02T09:15:27.004512Z",
               "doc": {"k": [1, 2]}, "blob": "AAEC/w==", "ref": reference, "label": "hi"})
    );
}

/// A backend commit wakes the owner's long-polls and streams: natively by NOTIFY from the log's trigger, on the
/// Worker by the long-poll's look at the log and the hub's look every `backend_poll_ms` (default 2 s).
#[tokio::test]
async fn a_backend_commit_wakes_the_owners_long_polls_and_streams() {
    let t = target_with("stream", "watch = true\nmax_watches_per_user = 3");
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let waiting = tokio::spawn({
        let d = d.clone();
        async move {
            let r = d
                .http
                .get(format!("{}/sync/watch?after=0&timeout_s=20", d.base))
                .bearer_auth(&d.token)
                .send();
            read(r.await.unwrap()).await
        }
    });
    let mut ws = crate::stream::open(&t, &d.token, "d").await;
    assert_eq!(crate::stream::next_top(&mut ws).await, 0);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    backend(
        &t,
        &format!("INSERT INTO business.notes VALUES ('{user}', '{}', 'ping')", id()),
    )
    .await
    .unwrap();
    let top = log_top(&t, &user).await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!((status, body), (200, json!({"changed": true, "latest_server_id": top})));
    assert_eq!(crate::stream::next_top(&mut ws).await, top);
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "woke {waited:?} after the commit"
    );
}

async fn log_top(t: &Target, user: &str) -> i64 {
    count(
        &db(t).await,
        "SELECT coalesce(max(server_id), 0) FROM sync.server_change_log WHERE user_id = $1",
        &[&user],
    )
    .await
}
