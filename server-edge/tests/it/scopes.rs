//! docs/sharing.md §4–§5: rows of a scoped table belong to the scope named in their scope column. Members
//! read them in one stream with their private rows, writers write them, everyone else is refused; revocation
//! takes effect on the next request; two members editing one row conflict like two devices of one user.

use serde_json::{Value, json};

use crate::support::*;

const TABLE: &str = "business.team_posts";

/// Every entry of a scope-aware download from `after` on (with `extra` parameters), and the last page.
async fn scoped(d: &Device, after: i64, extra: &str) -> (Vec<Value>, Value) {
    let (mut after, mut until, mut all) = (after, 0, Vec::new());
    loop {
        let page = d
            .download(&format!(
                "scopes=1&after={after}&until={until}&limit=2&include_self=true{extra}"
            ))
            .await;
        all.extend(page["changes"].as_array().unwrap().iter().cloned());
        (after, until) = (
            page["next_after"].as_i64().unwrap(),
            page["window_until"].as_i64().unwrap(),
        );
        if page["has_more"] == false {
            return (all, page);
        }
    }
}

fn titles(entries: &[Value], pk: &str) -> Vec<(String, Option<String>)> {
    entries
        .iter()
        .filter(|e| e["pk"] == pk)
        .map(|e| {
            let title = e["payload"]["title"].as_str().map(str::to_owned);
            (e["op"].as_str().unwrap().to_owned(), title)
        })
        .collect()
}

async fn materialised(t: &Target, pk: &str) -> i64 {
    let db = db(t).await;
    count(
        &db,
        "SELECT count(*) FROM business.team_posts WHERE id = $1::text::uuid",
        &[&pk],
    )
    .await
}

struct Team {
    t: std::sync::Arc<Target>,
    scope: String,
    a: (String, Device),
    b: (String, Device),
}

async fn team() -> Team {
    let t = target();
    let scope = format!("team-{}", id());
    let (a, b) = (new_user(), new_user());
    join(&t, &scope, &a, Some("writer")).await;
    join(&t, &scope, &b, Some("writer")).await;
    let (da, db) = (Device::new(&t, &a, "a1"), Device::new(&t, &b, "b1"));
    Team {
        t,
        scope,
        a: (a, da),
        b: (b, db),
    }
}

#[tokio::test]
async fn two_members_see_each_others_rows_both_ways_and_the_business_table_holds_one_row() {
    let Team { t, scope, a, b } = team().await;
    let pk = id();
    assert!(all_applied(
        &a.1.upload(vec![team_post(1, &pk, 0, Some(&scope), "from a")]).await
    ));
    let (entries, last) = scoped(&b.1, 0, "").await;
    assert_eq!(titles(&entries, &pk), vec![("INSERT".into(), Some("from a".into()))]);
    let entry = entries.iter().find(|e| e["pk"] == pk).unwrap();
    assert_eq!(entry["scope"], scope.as_str());
    assert_eq!(
        (entry["author"].as_str(), entry["source_id"].as_str()),
        (Some(a.0.as_str()), Some("a1"))
    );
    assert_eq!(last["scopes"], json!([{"scope": scope, "role": "writer"}]));
    assert!(last["scope_event"].as_i64().unwrap() > 0);

    let resp =
        b.1.upload(vec![team_post(1, &pk, 1, Some(&scope), "edited by b")])
            .await;
    assert_eq!(status_at(&resp, 0), WireStatus::Applied, "{resp}");
    assert_eq!(resp["statuses"][0]["new_server_version"], 2);
    let (entries, _) = scoped(&a.1, 0, "").await;
    assert_eq!(
        titles(&entries, &pk),
        vec![
            ("INSERT".into(), Some("from a".into())),
            ("UPDATE".into(), Some("edited by b".into()))
        ]
    );
    let db = db(&t).await;
    let rows = db
        .query(
            "SELECT team_id, title FROM business.team_posts WHERE id = $1::text::uuid",
            &[&pk],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].get::<_, String>(0), rows[0].get::<_, String>(1)),
        (scope.clone(), "edited by b".into())
    );
    // A classic download is the private stream alone: the shared row is not the user's.
    let classic = a.1.download("after=0&include_self=true").await;
    assert!(
        titles(classic["changes"].as_array().unwrap(), &pk).is_empty(),
        "{classic}"
    );
}

#[tokio::test]
async fn a_non_member_or_a_reader_can_neither_write_nor_read_a_scope() {
    let Team { t, scope, a, .. } = team().await;
    let pk = id();
    a.1.upload(vec![team_post(1, &pk, 0, Some(&scope), "secret")]).await;
    let (outsider, reader) = (new_user(), new_user());
    join(&t, &scope, &reader, Some("reader")).await;
    let own_team = format!("team-{}", id());
    join(&t, &own_team, &outsider, Some("writer")).await;
    let (o, r) = (Device::new(&t, &outsider, "o1"), Device::new(&t, &reader, "r1"));

    // Writes into the scope, or over its row there: refused, naming the scope the change named.
    let attempts = vec![
        team_post(1, &id(), 0, Some(&scope), "new row"),
        team_post(2, &pk, 1, Some(&scope), "overwrite"),
    ];
    for change in attempts {
        let resp = o.upload(vec![change]).await;
        assert_eq!(status_at(&resp, 0), WireStatus::Invalid, "{resp}");
        assert_eq!(resp["statuses"][0]["invalid"]["reason"], "scope_forbidden", "{resp}");
        assert_eq!(
            resp["statuses"][0]["invalid"]["details"]["scope"],
            scope.as_str(),
            "{resp}"
        );
    }
    // Changes that name only the row's key are answered as if the row did not exist (issue 32: no existence or
    // scope oracle): moving it into a scope of one's own conflicts with a deletion, and deleting it is the delete
    // of an unknown key, exactly as for a key nobody ever wrote.
    let steal = o.upload(vec![team_post(3, &pk, 1, Some(&own_team), "steal")]).await;
    assert_eq!(status_at(&steal, 0), WireStatus::Conflict, "{steal}");
    assert_eq!(steal["statuses"][0]["server_row"]["deleted"], true, "{steal}");
    assert!(!steal.to_string().contains(&scope), "{steal}");
    let known = o.upload(vec![delete(4, TABLE, &pk, 1)]).await;
    let unknown = o.upload(vec![delete(5, TABLE, &id(), 1)]).await;
    assert_eq!(status_at(&known, 0), WireStatus::Applied, "{known}");
    assert_eq!(status_at(&unknown, 0), WireStatus::Applied, "{unknown}");
    assert_eq!(
        known["statuses"][0]["new_server_version"], unknown["statuses"][0]["new_server_version"],
        "{known} {unknown}"
    );
    let resp = r.upload(vec![team_post(1, &pk, 1, Some(&scope), "reader edit")]).await;
    assert_eq!(resp["statuses"][0]["invalid"]["reason"], "scope_forbidden", "{resp}");

    let (entries, last) = scoped(&o, 0, "").await;
    assert!(entries.is_empty(), "{entries:?}");
    assert_eq!(last["scopes"], json!([{"scope": own_team, "role": "writer"}]));
    let (status, body) = o.download_raw(&format!("scopes=1&scope={scope}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("scope_forbidden")),
        "{body}"
    );
    // The reader reads; the row is as its writer left it.
    let (entries, _) = scoped(&r, 0, "").await;
    assert_eq!(titles(&entries, &pk), vec![("INSERT".into(), Some("secret".into()))]);
    let db = db(&t).await;
    let title: String = db
        .query_one(
            "SELECT title FROM business.team_posts WHERE id = $1::text::uuid",
            &[&pk],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "secret");
}

#[tokio::test]
async fn a_revoked_member_is_refused_by_the_next_request() {
    let Team { t, scope, a, b } = team().await;
    a.1.upload(vec![team_post(1, &id(), 0, Some(&scope), "before")]).await;
    let (_, last) = scoped(&b.1, 0, "").await;
    let seen = last["next_after"].as_i64().unwrap();
    let event = last["scope_event"].as_i64().unwrap();
    let unchanged =
        b.1.download(&format!("scopes=1&after={seen}&scope_event={event}"))
            .await;
    assert!(
        unchanged.get("scopes").is_none(),
        "memberships are listed only when they changed: {unchanged}"
    );

    join(&t, &scope, &b.0, None).await;
    let after = id();
    a.1.upload(vec![team_post(2, &after, 0, Some(&scope), "after")]).await;
    let page =
        b.1.download(&format!("scopes=1&after={seen}&scope_event={event}"))
            .await;
    assert_eq!(page["changes"], json!([]), "{page}");
    assert_eq!(page["scopes"], json!([]), "the leave is listed: {page}");
    assert!(page["scope_event"].as_i64().unwrap() > event);
    let resp =
        b.1.upload(vec![team_post(1, &after, 1, Some(&scope), "still here?")])
            .await;
    assert_eq!(resp["statuses"][0]["invalid"]["reason"], "scope_forbidden", "{resp}");
}

#[tokio::test]
async fn two_members_editing_one_row_conflict_and_the_loser_gets_the_winners_row() {
    let Team { scope, a, b, .. } = team().await;
    let pk = id();
    a.1.upload(vec![team_post(1, &pk, 0, Some(&scope), "v1")]).await;
    let first = a.1.upload(vec![team_post(2, &pk, 1, Some(&scope), "a wins")]).await;
    assert_eq!(status_at(&first, 0), WireStatus::Applied);
    let second = b.1.upload(vec![team_post(1, &pk, 1, Some(&scope), "b loses")]).await;
    assert_eq!(status_at(&second, 0), WireStatus::Conflict, "{second}");
    let row = &second["statuses"][0]["server_row"];
    assert_eq!(
        (row["server_version"].as_i64(), row["payload"]["title"].as_str()),
        (Some(2), Some("a wins"))
    );
    // The loser rebases on the winner's version and converges.
    let third = b.1.upload(vec![team_post(2, &pk, 2, Some(&scope), "b after a")]).await;
    assert_eq!(third["statuses"][0]["new_server_version"], 3, "{third}");
    // A retry of an applied change is answered from the log, whoever's row it is.
    let again = b.1.upload(vec![team_post(2, &pk, 2, Some(&scope), "b after a")]).await;
    assert_eq!(again["statuses"][0]["new_server_version"], 3, "{again}");
}

#[tokio::test]
async fn a_move_deletes_the_row_in_the_old_scope_and_inserts_it_in_the_new() {
    let Team { t, scope, a, b } = team().await;
    let (other, c) = (format!("team-{}", id()), new_user());
    join(&t, &other, &a.0, Some("writer")).await;
    join(&t, &other, &c, Some("reader")).await;
    let dc = Device::new(&t, &c, "c1");
    let pk = id();
    a.1.upload(vec![team_post(1, &pk, 0, Some(&scope), "in the first")])
        .await;
    let moved = a.1.upload(vec![team_post(2, &pk, 1, Some(&other), "moved")]).await;
    assert_eq!(
        moved["statuses"][0]["new_server_version"], 3,
        "the delete is version 2: {moved}"
    );
    // b is only in the first scope: the row is deleted there. c is only in the second: it arrives.
    let (entries, _) = scoped(&b.1, 0, "").await;
    assert_eq!(
        titles(&entries, &pk),
        vec![("INSERT".into(), Some("in the first".into())), ("DELETE".into(), None)]
    );
    let (entries, _) = scoped(&dc, 0, "").await;
    assert_eq!(titles(&entries, &pk), vec![("UPDATE".into(), Some("moved".into()))]);
    assert_eq!(entries[0]["scope"], other.as_str());
    // a, in both, reads the delete before the row arrives in the second scope.
    let (entries, _) = scoped(&a.1, 0, "").await;
    let ops: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["pk"] == pk)
        .map(|e| {
            (
                e["op"].as_str().unwrap().to_owned(),
                e["scope"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("INSERT".into(), scope.clone()),
            ("DELETE".into(), scope.clone()),
            ("UPDATE".into(), other.clone())
        ]
    );
    let db = db(&t).await;
    let team: String = db
        .query_one(
            "SELECT team_id FROM business.team_posts WHERE id = $1::text::uuid",
            &[&pk],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(team, other);
}

#[tokio::test]
async fn drafts_stay_private_to_their_author_and_are_not_materialised() {
    let Team { t, scope, a, b } = team().await;
    let pk = id();
    assert!(all_applied(
        &a.1.upload(vec![team_post(1, &pk, 0, None, "my draft")]).await
    ));
    assert!(titles(&scoped(&b.1, 0, "").await.0, &pk).is_empty());
    let (mine, _) = scoped(&a.1, 0, "").await;
    assert_eq!(titles(&mine, &pk), vec![("INSERT".into(), Some("my draft".into()))]);
    assert!(mine.iter().find(|e| e["pk"] == pk).unwrap().get("scope").is_none());
    assert_eq!(materialised(&t, &pk).await, 0);
    // Publishing the draft moves it into the scope: the team sees it, the business table holds it.
    a.1.upload(vec![team_post(2, &pk, 1, Some(&scope), "published")]).await;
    assert_eq!(
        titles(&scoped(&b.1, 0, "").await.0, &pk),
        vec![("UPDATE".into(), Some("published".into()))]
    );
    assert_eq!(materialised(&t, &pk).await, 1);
}

#[tokio::test]
async fn bad_scope_values_are_bad_payloads_and_memberships_past_the_limit_are_left_out() {
    let Team { t, scope, a, .. } = team().await;
    let resp =
        a.1.upload(vec![
            upsert(1, TABLE, &id(), 0, json!({"team_id": 7, "title": "x"})),
            upsert(2, TABLE, &id(), 0, json!({"team_id": "s".repeat(129), "title": "x"})),
            upsert(3, TABLE, &id(), 0, json!({"team_id": "a\u{1}b", "title": "x"})),
        ])
        .await;
    for i in 0..3 {
        assert_eq!(resp["statuses"][i]["invalid"]["reason"], "bad_payload", "{resp}");
    }
    let db = db(&t).await;
    db.execute(
        "INSERT INTO sync.scope_members (scope, user_id, role) SELECT 'many-' || i, $1, 'reader' FROM generate_series(1, 1000) i",
        &[&a.0],
    )
    .await
    .unwrap();
    // Past `max_scopes_per_user` (1000) the user keeps its private rows and the first scopes by name; the
    // page says how many were left out (the team, named after them).
    let own = id();
    assert!(all_applied(
        &a.1.upload(vec![upsert(4, "users", &own, 0, user_row(&own, "me"))])
            .await
    ));
    let writer = Device::new(&t, &a.0, "a2");
    let (status, body) = writer.download_raw("scopes=1&after=0").await;
    assert_eq!((status, &body["scopes_omitted"]), (200, &json!(1)), "{body}");
    let served: Vec<&str> = body["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].as_str().unwrap())
        .collect();
    assert_eq!(served.len(), 1000);
    assert!(served.iter().all(|s| s.starts_with("many-")) && !served.contains(&scope.as_str()));
    assert!(
        body["changes"].as_array().unwrap().iter().any(|c| c["pk"] == own),
        "{body}"
    );
    let classic = a.1.download_raw("after=0").await;
    assert_eq!(classic.0, 200, "the classic stream does not read memberships");
}

#[tokio::test]
async fn a_joining_member_backfills_the_scope_alone_by_snapshot_and_a_bounded_replay() {
    let Team { t, scope, a, .. } = team().await;
    let other = format!("team-{}", id());
    join(&t, &other, &a.0, Some("writer")).await;
    let pks: Vec<String> = (0..5).map(|_| id()).collect();
    let posts = pks
        .iter()
        .enumerate()
        .map(|(i, pk)| team_post(i as i64 + 1, pk, 0, Some(&scope), "p"))
        .collect();
    a.1.upload(posts).await;
    a.1.upload(vec![
        delete(6, TABLE, &pks[0], 1),
        team_post(7, &id(), 0, Some(&other), "elsewhere"),
    ])
    .await;
    // The newcomer has a private stream of its own and its cursor at its top.
    let newcomer = new_user();
    let n = Device::new(&t, &newcomer, "n1");
    n.upload(vec![upsert(1, "business.users", &id(), 0, user_row(&id(), "me"))])
        .await;
    let (status, body) = n.get_raw(&format!("/sync/snapshot?scope={scope}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("scope_forbidden")),
        "{body}"
    );
    join(&t, &scope, &newcomer, Some("reader")).await;

    let (mut rows, mut after, mut until) = (Vec::new(), String::new(), 0);
    loop {
        let page = n
            .get_raw(&format!("/sync/snapshot?scope={scope}&limit=2&until={until}{after}"))
            .await
            .1;
        rows.extend(
            page["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["pk"].as_str().unwrap().to_owned()),
        );
        until = page["window_until"].as_i64().unwrap();
        after = format!(
            "&after_table={}&after_pk={}",
            page["next_after_table"].as_str().unwrap(),
            page["next_after_pk"].as_str().unwrap()
        );
        if page["has_more"] == false {
            break;
        }
    }
    let mut live: Vec<String> = pks[1..].to_vec();
    live.sort();
    assert_eq!(
        rows, live,
        "the scope's live rows, nothing of the user's or of another scope"
    );
    // Writes after the snapshot's window come by the bounded replay, up to where the device's stream is.
    let late = id();
    a.1.upload(vec![
        team_post(8, &late, 0, Some(&scope), "late"),
        team_post(9, &id(), 0, Some(&other), "no"),
    ])
    .await;
    let cursor = scoped(&n, 0, "").await.1["next_after"].as_i64().unwrap();
    let (replayed, _) = scoped(&n, until, &format!("&scope={scope}")).await;
    let replayed: Vec<&str> = replayed.iter().map(|e| e["pk"].as_str().unwrap()).collect();
    assert_eq!(replayed, vec![late.as_str()]);
    let bounded = n
        .download(&format!("scopes=1&scope={scope}&after={until}&until={until}"))
        .await;
    assert_eq!(bounded["changes"], json!([]), "nothing past until: {bounded}");
    assert!(cursor > until);
}

/// §4's reason for the shared locks: writers of different scopes commit in any order, and a member of all of them
/// paging one cursor across the owners still sees every `server_id` exactly once, in order.
#[tokio::test]
async fn a_member_paging_one_cursor_across_scopes_sees_every_write_of_racing_writers_exactly_once() {
    let t = target();
    let scopes: Vec<String> = (0..3).map(|_| format!("team-{}", id())).collect();
    let peer_user = new_user();
    for s in &scopes {
        join(&t, s, &peer_user, Some("reader")).await;
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let user = new_user();
        for s in &scopes {
            join(&t, s, &user, Some("writer")).await;
        }
        let d = Device::new(&t, &user, "w");
        let scopes = scopes.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..15_i64 {
                let scope = &scopes[(w + round as usize) % scopes.len()];
                let changes = (0..8)
                    .map(|j| team_post(round * 8 + j + 1, &id(), 0, Some(scope), "w"))
                    .collect();
                let r = d.upload(changes).await;
                assert!(all_applied(&r), "{r}");
            }
        }));
    }
    let peer = Device::new(&t, &peer_user, "peer");
    let seen = page_while_writing(&peer, "&scopes=1", 7, || writers.iter().all(|w| w.is_finished())).await;
    for w in writers {
        w.await.unwrap();
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    let owners: Vec<String> = scopes.iter().map(|s| format!("\u{1f}{s}")).collect();
    let logged: std::collections::BTreeSet<i64> = db(&t)
        .await
        .query(
            "SELECT server_id FROM sync.server_change_log WHERE user_id = ANY($1)",
            &[&owners],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logged.len(), 4 * 15 * 8);
    assert_eq!(
        seen.into_iter().collect::<std::collections::BTreeSet<_>>(),
        logged,
        "no server_id skipped"
    );
}

/// The same, made deterministic: an upload into one scope holds its owner lock with its log row written but not
/// committed (a lower `server_id`) while another scope's upload commits a higher one. A member's download waits
/// for the first instead of answering the second and moving its cursor past the first's id.
#[tokio::test]
async fn a_download_across_scopes_waits_for_an_upload_in_flight_in_any_of_them() {
    let t = target();
    let db = db(&t).await;
    let stripe = |s: String| {
        let db = &db;
        async move {
            db.query_one("SELECT (hashtextextended($1, 0) & 63)::int4", &[&s])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    };
    let first = format!("team-{}", id());
    let mut second = format!("team-{}", id());
    while stripe(second.clone()).await == stripe(first.clone()).await {
        second = format!("team-{}", id());
    }
    let (writer, peer_user) = (new_user(), new_user());
    for s in [&first, &second] {
        join(&t, s, &writer, Some("writer")).await;
        join(&t, s, &peer_user, Some("reader")).await;
    }
    let mut held = tokio_postgres::connect(&t.db_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(held.1);
    let tx = held.0.transaction().await.unwrap();
    let in_flight = id();
    tx.execute(
        "SELECT sync.lock_owners_v1('another-uploader', ARRAY[$1], '5s')",
        &[&first],
    )
    .await
    .unwrap();
    tx.execute(
        "INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload, source_id,
           source_change_id, server_version)
         VALUES (chr(31) || $1, 'business', 'team_posts', 'INSERT', $2::text::uuid, '{\"title\":\"slow\"}', '[\"x\",\"y\"]', 1, 1)",
        &[&first, &in_flight],
    )
    .await
    .unwrap();
    let later = id();
    let w = Device::new(&t, &writer, "w");
    assert!(all_applied(
        &w.upload(vec![team_post(1, &later, 0, Some(&second), "fast")]).await
    ));
    let peer = Device::new(&t, &peer_user, "p");
    let page = tokio::spawn(async move { peer.download("scopes=1&after=0").await });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !page.is_finished(),
        "the download answered while an upload of one of its scopes was in flight"
    );
    tx.commit().await.unwrap();
    let page = page.await.unwrap();
    let pks: Vec<&str> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pk"].as_str().unwrap())
        .collect();
    assert_eq!(pks, vec![in_flight.as_str(), later.as_str()], "{page}");
}

/// A row moved away (here into another member's draft) leaves a tombstone in its scope: an edit of the old version
/// by someone who cannot see where it went is a conflict against that deletion, wherever the edit would put it.
#[tokio::test]
async fn an_edit_of_a_row_moved_out_of_reach_conflicts_with_its_deletion() {
    let Team { scope, a, b, .. } = team().await;
    let pk = id();
    a.1.upload(vec![team_post(1, &pk, 0, Some(&scope), "shared")]).await;
    let taken = b.1.upload(vec![team_post(1, &pk, 1, None, "b's draft now")]).await;
    assert_eq!(status_at(&taken, 0), WireStatus::Applied, "{taken}");
    for (scid, to) in [(2, Some(scope.as_str())), (3, None)] {
        let resp = a.1.upload(vec![team_post(scid, &pk, 1, to, "a's late edit")]).await;
        assert_eq!(status_at(&resp, 0), WireStatus::Conflict, "{resp}");
        let row = &resp["statuses"][0]["server_row"];
        assert_eq!(
            (row["deleted"].as_bool(), row["server_version"].as_i64()),
            (Some(true), Some(2)),
            "{resp}"
        );
    }
}

/// Issue 32: a row another member moved into a scope the editor is not in is out of the editor's reach like a row
/// moved into a draft: the stale edit conflicts with its deletion, and nothing names the scope it went to.
#[tokio::test]
async fn an_edit_of_a_row_moved_into_a_scope_the_editor_is_not_in_conflicts_with_its_deletion() {
    let Team { t, scope, a, b } = team().await;
    let elsewhere = format!("team-{}", id());
    join(&t, &elsewhere, &b.0, Some("writer")).await;
    let pk = id();
    a.1.upload(vec![team_post(1, &pk, 0, Some(&scope), "shared")]).await;
    let moved = b.1.upload(vec![team_post(1, &pk, 1, Some(&elsewhere), "moved")]).await;
    assert_eq!(status_at(&moved, 0), WireStatus::Applied, "{moved}");
    let resp =
        a.1.upload(vec![team_post(2, &pk, 1, Some(&scope), "a's late edit")])
            .await;
    assert_eq!(status_at(&resp, 0), WireStatus::Conflict, "{resp}");
    assert_eq!(resp["statuses"][0]["server_row"]["deleted"], true, "{resp}");
    assert!(!resp.to_string().contains(&elsewhere), "{resp}");
}

/// docs/sharing.md §7: a scope-aware long-poll (`scopes=1`) counts the user's scopes: it answers at once for a
/// scope write it has not seen, and wakes for one while it waits (pushed natively, polled on the Worker). A
/// classic long-poll does not look at scopes.
#[tokio::test]
async fn a_scope_aware_long_poll_sees_and_wakes_for_writes_in_the_users_scopes() {
    let Team { scope, a, b, .. } = team().await;
    let first = a.1.upload(vec![team_post(1, &id(), 0, Some(&scope), "one")]).await;
    assert!(all_applied(&first));
    let seen = b.1.download("scopes=1&after=0").await["next_after"].as_i64().unwrap();
    let classic = b.1.get_raw("/sync/watch?after=0&timeout_s=1").await.1;
    assert_eq!(classic["changed"], false, "{classic}");
    let (status, at_once) = b.1.get_raw("/sync/watch?after=0&timeout_s=5&scopes=1").await;
    assert_eq!((status, at_once["changed"].as_bool()), (200, Some(true)), "{at_once}");
    let waiter = {
        let b = b.1.clone();
        tokio::spawn(async move {
            b.get_raw(&format!("/sync/watch?after={seen}&timeout_s=20&scopes=1"))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    a.1.upload(vec![team_post(2, &id(), 0, Some(&scope), "two")]).await;
    let (status, woken) = waiter.await.unwrap();
    assert_eq!((status, woken["changed"].as_bool()), (200, Some(true)), "{woken}");
    assert!(woken["latest_server_id"].as_i64().unwrap() > seen);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// An upload holds the owner locks of every scope it writes until it commits: past 16 scopes in one upload the
/// rest are answered `internal_error` (every client keeps and re-sends those), and go through in the next upload.
#[tokio::test]
async fn an_upload_writes_at_most_16_scopes_and_the_rest_follow_in_the_next() {
    let t = target();
    let user = new_user();
    let scopes: Vec<String> = (0..20).map(|i| format!("many-{i}-{}", id())).collect();
    for s in &scopes {
        join(&t, s, &user, Some("writer")).await;
    }
    let d = Device::new(&t, &user, "d");
    let changes: Vec<Value> = scopes
        .iter()
        .enumerate()
        .map(|(i, s)| team_post(i as i64 + 1, &id(), 0, Some(s), "p"))
        .collect();
    let resp = d.upload(changes.clone()).await;
    let statuses = statuses(&resp);
    assert!(statuses[..16].iter().all(|s| s["status"] == "applied"), "{resp}");
    for s in &statuses[16..] {
        assert_eq!(s["invalid"]["reason"], "internal_error", "{resp}");
        assert!(s["message"].as_str().unwrap().contains("more than 16 scopes"), "{resp}");
    }
    let again = d.upload(changes[16..].to_vec()).await;
    assert!(all_applied(&again), "{again}");
    // Edits of existing rows in 20 scopes: the refused ones' rows live in scopes the upload did not lock, which
    // must not make it start over.
    let edits: Vec<Value> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| team_post(100 + i as i64, c["pk"].as_str().unwrap(), 1, Some(&scopes[i]), "edited"))
        .collect();
    let resp = d.upload(edits).await;
    let answered = crate::support::statuses(&resp);
    assert!(answered[..16].iter().all(|s| s["status"] == "applied"), "{resp}");
    assert!(
        answered[16..]
            .iter()
            .all(|s| s["invalid"]["reason"] == "internal_error"),
        "{resp}"
    );
}

/// A scope-aware look reads at most `max_scopes_per_user` memberships (the first by name), like the download: a
/// user given more scopes than that cannot make every look probe them all. The looks are what is measured, so the
/// waiters poll: natively a pushed notice is a hint that answers without a look, and the notices of this test's
/// own joins and writes may reach the hub after the next watch subscribed (CI, under load).
#[tokio::test]
async fn a_scope_aware_look_reads_at_most_max_scopes_per_user_memberships() {
    let t = target_with("two_scopes", "max_scopes_per_user = 2\nwatch_listen = false");
    let (writer, reader) = (new_user(), new_user());
    let run = id();
    let scopes: Vec<String> = (0..3).map(|i| format!("cap-{run}-{i}")).collect();
    for s in &scopes {
        join(&t, s, &writer, Some("writer")).await;
        join(&t, s, &reader, Some("reader")).await;
    }
    let (w, r) = (Device::new(&t, &writer, "w"), Device::new(&t, &reader, "r"));
    w.upload(vec![team_post(1, &id(), 0, Some(&scopes[2]), "past the cap")])
        .await;
    let past = r.get_raw("/sync/watch?after=0&timeout_s=1&scopes=1").await.1;
    assert_eq!(past["changed"], false, "{past}");
    w.upload(vec![team_post(2, &id(), 0, Some(&scopes[0]), "within")]).await;
    let within = r.get_raw("/sync/watch?after=0&timeout_s=5&scopes=1").await.1;
    assert_eq!(within["changed"], true, "{within}");
}

/// A retried upload (its answer was lost) of a row that another member moved to another scope meanwhile is a
/// replay: answered with its stored version, and it moves nothing (it once wrote a DELETE of the row where it was
/// now, with the replay's old version, which members holding the row skipped for good).
#[tokio::test]
async fn a_replayed_upsert_of_a_row_moved_since_moves_nothing() {
    let Team { t, scope, a, b } = team().await;
    let other = format!("team-{}", id());
    join(&t, &other, &a.0, Some("writer")).await;
    join(&t, &other, &b.0, Some("writer")).await;
    let pk = id();
    let first = vec![team_post(1, &pk, 0, Some(&scope), "a")];
    assert!(all_applied(&a.1.upload(first.clone()).await));
    assert!(all_applied(
        &b.1.upload(vec![team_post(1, &pk, 1, Some(&other), "moved")]).await
    ));
    let replay = a.1.upload(first).await;
    assert!(all_applied(&replay), "{replay}");
    assert_eq!(statuses(&replay)[0]["new_server_version"], 1, "{replay}");
    let (entries, _) = scoped(&b.1, 0, "").await;
    let ops: Vec<(String, Option<String>)> = titles(&entries, &pk);
    assert_eq!(
        ops,
        vec![
            ("INSERT".to_owned(), Some("a".to_owned())),
            ("DELETE".to_owned(), None),
            ("UPDATE".to_owned(), Some("moved".to_owned())),
        ]
    );
}
