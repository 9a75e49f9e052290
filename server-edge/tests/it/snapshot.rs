//! §8.2 snapshot pages: versions come from a range scan of the metadata beside the page, with a per-key probe
//! for rows that range does not cover.

use serde_json::Value;

use crate::support::*;

async fn snapshot(d: &Device, query: &str) -> Value {
    let (status, page) = d.get_raw(&format!("/sync/snapshot?schema=business&{query}")).await;
    assert_eq!(status, 200, "{page}");
    page
}

fn versions(page: &Value) -> Vec<(String, i64)> {
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pk"].as_str().unwrap().to_owned(),
                r["server_version"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Uploads eight users from `a`, version 1 each; their ids in key order.
async fn eight_users(a: &Device) -> Vec<String> {
    let mut ids: Vec<String> = (0..8).map(|_| id()).collect();
    ids.sort();
    let changes = ids
        .iter()
        .enumerate()
        .map(|(i, pk)| upsert(i as i64 + 1, "users", pk, 0, user_row(pk, "n")))
        .collect();
    a.upload(changes).await;
    ids
}

#[tokio::test]
async fn every_row_carries_its_own_version_across_tombstones_and_pages() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let ids = eight_users(&a).await;
    // Versions 2 and 3 on some rows, tombstones between live rows (they are in the metadata range, not the page).
    let mut scid = 100;
    let mut bump = |pk: &str, base: i64| {
        scid += 1;
        upsert(scid, "users", pk, base, user_row(pk, "again"))
    };
    let changes = vec![bump(&ids[1], 1), bump(&ids[4], 1)];
    a.upload(changes).await;
    a.upload(vec![
        bump(&ids[4], 2),
        delete(200, "users", &ids[2], 1),
        delete(201, "users", &ids[5], 1),
    ])
    .await;
    let expected: Vec<(String, i64)> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2 && *i != 5)
        .map(|(i, pk)| (pk.clone(), [1, 2, 1, 1, 3, 1, 1, 1][i]))
        .collect();
    let first = snapshot(&b, "limit=3").await;
    let after = format!("limit=3&after_table=business.users&after_pk={}", expected[2].0);
    let second = snapshot(&b, &after).await;
    let got: Vec<(String, i64)> = versions(&first).into_iter().chain(versions(&second)).collect();
    assert_eq!(got, expected[..6]);

    // Metadata the range scan skips (a live row whose metadata something else marked deleted): the probe finds it.
    db(&t)
        .await
        .execute(
            "UPDATE sync.sync_row_meta SET deleted = true WHERE user_id = $1 AND pk_uuid = $2::text::uuid",
            &[&user, &ids[1]],
        )
        .await
        .unwrap();
    assert_eq!(versions(&snapshot(&b, "limit=3").await), expected[..3]);
}

#[tokio::test]
async fn then_after_names_the_row_that_ends_the_following_page() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let ids = eight_users(&a).await;
    // A tombstone inside the following page: the hint counts live rows only.
    a.upload(vec![delete(100, "users", &ids[4], 1)]).await;
    let live: Vec<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, pk)| pk)
        .collect();
    let first = snapshot(&b, "limit=3").await;
    assert_eq!(first["then_after_table"], "business.users");
    assert_eq!(first["then_after_pk"], live[5].as_str());
    // The hint is what the following page really ends with.
    let after = format!("limit=3&after_table=business.users&after_pk={}", live[2]);
    let second = snapshot(&b, &after).await;
    assert_eq!(second["next_after_pk"], live[5].as_str());
    // Fewer live rows than two pages from here (7 live, the cursor after the 4th): no hint, and none on the last.
    let after = format!("limit=3&after_table=business.users&after_pk={}", live[3]);
    let third = snapshot(&b, &after).await;
    assert_eq!(third["has_more"], false, "{third}");
    assert!(third.get("then_after_pk").is_none(), "{third}");
    let after = format!("limit=2&after_table=business.users&after_pk={}", live[1]);
    let short = snapshot(&b, &after).await;
    assert_eq!(short["then_after_pk"], live[5].as_str(), "{short}");
}

/// An upload that commits while a page is read must not pair a row's old payload with its new version: the
/// catch-up download would then skip that change as already known, and the device would keep the old payload.
/// Deterministic: the metadata table is held while the page is requested; once the page's reads wait on it, the
/// row changes (payload and version together, as an upload writes them) and the table is let go.
#[tokio::test]
async fn a_page_reads_its_rows_and_their_versions_from_one_snapshot() {
    let t = target_in_own_db("");
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let pk = id();
    a.upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "old"))]).await;

    let mut conn = db(&t).await;
    let tx = conn.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE sync.sync_row_meta IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let page = tokio::spawn(async move { snapshot(&b, "limit=10").await });
    // Until the page's reads wait on the lock (seen from another connection: a transaction's view of
    // `pg_stat_activity` is frozen).
    let watcher = db(&t).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count(
        &watcher,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        &[],
    )
    .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the page never reached the held table"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tx.execute(
        "UPDATE sync.sync_state SET payload = json_build_object('id', $1::text, 'name', 'new') WHERE pk_uuid::text = $1",
        &[&pk],
    )
    .await
    .unwrap();
    tx.execute(
        "UPDATE sync.sync_row_meta SET server_version = 2 WHERE pk_uuid::text = $1",
        &[&pk],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let page = page.await.unwrap();
    let row = &page["rows"][0];
    let seen = (row["payload"]["name"].as_str(), row["server_version"].as_i64());
    assert!(
        seen == (Some("old"), Some(1)) || seen == (Some("new"), Some(2)),
        "a payload and a version from different moments: {row}"
    );
}
