//! `max_page_bytes`: download and snapshot pages are cut by payload bytes as well as by rows. A page ends with the
//! row that reaches the budget (so it holds less than the budget plus one row), a row larger than the budget comes
//! alone, and paging by `has_more` returns every row exactly once, in order.

use serde_json::Value;

use crate::support::*;

const BUDGET: i64 = 65_536;

fn small_pages() -> std::sync::Arc<Target> {
    target_with("small_pages", &format!("max_page_bytes = {BUDGET}"))
}

/// Payload sizes in KiB of the rows, in the order they are paged; `None` is a delete. The 100 KiB row is larger
/// than the budget and starts a page, so it must come alone.
const KIB: [Option<usize>; 12] = [
    Some(20),
    Some(20),
    Some(20),
    Some(20),
    Some(100),
    Some(20),
    Some(1),
    Some(1),
    None,
    Some(30),
    Some(30),
    Some(30),
];

/// The pages `sizes` must be cut into with `budget` and `limit`: rows while the bytes before them are under the
/// budget, at most `limit`.
fn expected_pages(sizes: &[i64], budget: i64, limit: usize) -> Vec<usize> {
    let mut pages = Vec::new();
    let (mut rows, mut bytes) = (0, 0);
    for &size in sizes {
        if rows == limit || bytes >= budget {
            pages.push(rows);
            (rows, bytes) = (0, 0);
        }
        rows += 1;
        bytes += size;
    }
    pages.push(rows);
    pages
}

/// A `business.users` payload of about `kib` KiB (the rest of the row is under 100 bytes).
fn user_of_kib(pk: &str, kib: usize) -> Value {
    serde_json::json!({"id": pk, "name": "x".repeat(kib * 1024 - 100), "email": "e@example.com", "created_at": 1767225600})
}

/// Bytes of each payload as the server stores (and sends) it, by `server_id` or by pk.
async fn stored_sizes(t: &Target, sql: &str, keys: &[String]) -> Vec<i64> {
    let db = db(t).await;
    let mut out = Vec::new();
    for k in keys {
        out.push(
            db.query_one(sql, &[k])
                .await
                .unwrap()
                .get::<_, Option<i32>>(0)
                .map_or(0, i64::from),
        );
    }
    out
}

#[tokio::test]
async fn download_pages_are_cut_by_payload_bytes_and_page_on_by_has_more() {
    let t = small_pages();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let ids: Vec<String> = (0..KIB.len()).map(|_| id()).collect();
    let mut changes = Vec::new();
    for (i, (pk, kib)) in ids.iter().zip(KIB).enumerate() {
        let scid = i as i64 + 1;
        match kib {
            Some(kib) => changes.push(upsert(scid, "users", pk, 0, user_of_kib(pk, kib))),
            // A delete of the row before it.
            None => changes.push(delete(scid, "users", &ids[i - 1], 1)),
        }
    }
    // One change per upload, so that the delete's row exists when it arrives.
    for c in &changes {
        let r = a.upload(vec![c.clone()]).await;
        assert_eq!(status_at(&r, 0), WireStatus::Applied, "{r}");
    }

    let (mut after, mut until, mut pages, mut seen) = (0_i64, 0_i64, Vec::new(), Vec::new());
    loop {
        let page = b.download(&format!("after={after}&limit=1000&until={until}")).await;
        let changes = page["changes"].as_array().unwrap().clone();
        assert!(
            !changes.is_empty(),
            "a page of a non-empty window is never empty: {page}"
        );
        pages.push(changes.len());
        seen.extend(changes.iter().cloned());
        until = page["window_until"].as_i64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            assert_eq!(
                page["next_after"].as_i64(),
                Some(until),
                "the last page moves the cursor to the window"
            );
            break;
        }
        assert_eq!(
            page["next_after"],
            changes.last().unwrap()["server_id"],
            "a cut page continues after its last row"
        );
        after = page["next_after"].as_i64().unwrap();
        assert!(pages.len() < 20, "paging does not end: {pages:?}");
    }
    let server_ids: Vec<String> = seen.iter().map(|c| c["server_id"].to_string()).collect();
    let sizes = stored_sizes(
        &t,
        "SELECT octet_length(payload::text) FROM sync.server_change_log WHERE server_id = $1::text::int8",
        &server_ids,
    )
    .await;
    assert_eq!(pages, [4, 1, 6, 1], "pages of {sizes:?} with a budget of {BUDGET}");
    assert_eq!(pages, expected_pages(&sizes, BUDGET, 1000));
    assert_eq!(pages[1], 1, "the row larger than the budget comes alone");
    // Every change exactly once, in order, with its payload.
    let got: Vec<(i64, Option<Value>)> = seen
        .iter()
        .map(|c| (c["source_change_id"].as_i64().unwrap(), c.get("payload").cloned()))
        .collect();
    let want: Vec<(i64, Option<Value>)> = changes
        .iter()
        .map(|c| (c["source_change_id"].as_i64().unwrap(), c.get("payload").cloned()))
        .collect();
    assert_eq!(got, want);

    // The row limit still cuts first where the rows are small: three rows of 1 KiB and a delete, two per page.
    let rest = b.download(&format!("after={}&limit=2", seen[5]["server_id"])).await;
    assert_eq!(rest["changes"].as_array().unwrap().len(), 2, "{rest}");
    assert_eq!(rest["has_more"], true);
}

#[tokio::test]
async fn snapshot_pages_are_cut_by_payload_bytes_and_page_on_by_has_more() {
    let t = small_pages();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    // Live rows only: the sizes without the delete, given in key order.
    let kib: Vec<usize> = KIB.iter().flatten().copied().collect();
    let mut ids: Vec<String> = (0..kib.len()).map(|_| id()).collect();
    ids.sort();
    let changes: Vec<Value> = ids
        .iter()
        .zip(&kib)
        .enumerate()
        .map(|(i, (pk, &kib))| upsert(i as i64 + 1, "users", pk, 0, user_of_kib(pk, kib)))
        .collect();
    a.upload(changes.clone()).await;

    let (mut cursor, mut until, mut pages, mut seen) = (String::new(), 0_i64, Vec::new(), Vec::new());
    loop {
        let (status, page) = b
            .get_raw(&format!(
                "/sync/snapshot?schema=business&limit=1000&until={until}{cursor}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let rows = page["rows"].as_array().unwrap().clone();
        assert!(!rows.is_empty(), "{page}");
        pages.push(rows.len());
        seen.extend(rows.iter().cloned());
        until = page["window_until"].as_i64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        assert_eq!(
            page["next_after_pk"],
            rows.last().unwrap()["pk"],
            "a cut page continues after its last row"
        );
        cursor = format!(
            "&after_table={}&after_pk={}",
            page["next_after_table"].as_str().unwrap(),
            page["next_after_pk"].as_str().unwrap()
        );
        assert!(pages.len() < 20, "paging does not end: {pages:?}");
    }
    let sizes = stored_sizes(
        &t,
        "SELECT octet_length(payload::text) FROM sync.sync_state WHERE pk_uuid = $1::text::uuid",
        &ids,
    )
    .await;
    // Without the delete: 4 rows of 20 KiB, the 100 KiB row alone, then 20 + 1 + 1 + 30 + 30 KiB, then 30 KiB.
    assert_eq!(pages, [4, 1, 5, 1], "pages of {sizes:?} with a budget of {BUDGET}");
    assert_eq!(pages, expected_pages(&sizes, BUDGET, 1000));
    let got: Vec<(String, i64, Value)> = seen
        .iter()
        .map(|r| {
            (
                r["pk"].as_str().unwrap().to_owned(),
                r["server_version"].as_i64().unwrap(),
                r["payload"].clone(),
            )
        })
        .collect();
    let want: Vec<(String, i64, Value)> = changes
        .iter()
        .map(|c| (c["pk"].as_str().unwrap().to_owned(), 1, c["payload"].clone()))
        .collect();
    assert_eq!(got, want, "every live row exactly once, in key order");
}

#[tokio::test]
async fn capabilities_advertise_the_page_budget() {
    for (t, budget) in [(small_pages(), BUDGET), (target(), 4 << 20)] {
        let d = Device::new(&t, &new_user(), "d");
        let (status, caps) = d.get_raw("/sync/capabilities").await;
        assert_eq!(status, 200, "{caps}");
        assert_eq!(caps["limits"]["max_page_bytes"], budget, "{caps}");
    }
}
