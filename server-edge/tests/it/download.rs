//! §4.4 and §6.6: paging, windows, filters and the `next_after` jump; §9.2 case 14.

use serde_json::{Value, json};

use crate::support::*;

fn ids(page: &Value) -> Vec<i64> {
    page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["server_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn an_empty_log_downloads_as_an_empty_page() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    assert_eq!(
        d.download("").await,
        json!({"changes": [], "has_more": false, "next_after": 0, "window_until": 0})
    );
}

#[tokio::test]
async fn entries_have_the_wire_shape() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "dev-a"), Device::new(&t, &user, "dev-b"));
    let pk = id();
    a.upload(vec![upsert(22, "users", &pk, 0, user_row(&pk, "Dana"))]).await;
    a.upload(vec![delete(23, "users", &pk, 1)]).await;
    let page = b.download("").await;
    let c = &page["changes"][0];
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "server_id",
        "schema",
        "table",
        "op",
        "pk",
        "payload",
        "server_version",
        "deleted",
        "source_id",
        "source_change_id",
        "ts",
    ];
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(
        (c["schema"].as_str(), c["table"].as_str(), c["op"].as_str()),
        (Some("business"), Some("users"), Some("INSERT"))
    );
    assert_eq!(
        (c["payload"].clone(), c["server_version"].clone(), c["deleted"].clone()),
        (user_row(&pk, "Dana"), json!(1), json!(false))
    );
    assert_eq!(
        (c["source_id"].as_str(), c["source_change_id"].as_i64()),
        (Some("dev-a"), Some(22))
    );
    let ts = c["ts"].as_str().unwrap();
    assert!(
        ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
        "ts {ts} has six fractional digits"
    );
    let del = &page["changes"][1];
    assert!(
        del.get("payload").is_none(),
        "DELETE entries carry no payload key: {del}"
    );
    assert_eq!(
        (
            del["op"].as_str(),
            del["deleted"].as_bool(),
            del["server_version"].as_i64()
        ),
        (Some("DELETE"), Some(true), Some(2))
    );
}

#[tokio::test]
async fn pages_follow_limit_has_more_and_frozen_windows() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let changes: Vec<Value> = (0..7)
        .map(|i| {
            let pk = id();
            upsert(i + 1, "users", &pk, 0, user_row(&pk, "n"))
        })
        .collect();
    a.upload(changes).await;
    let first = b.download("limit=3").await;
    let all = ids(&b.download("limit=1000").await);
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ordered by server_id");
    assert_eq!(ids(&first), all[..3]);
    assert_eq!(
        (first["has_more"].as_bool(), first["next_after"].as_i64()),
        (Some(true), Some(all[2]))
    );
    let w = first["window_until"].as_i64().unwrap();
    assert_eq!(w, all[6]);
    // Writes after the first page do not enter the frozen window.
    let pk = id();
    a.upload(vec![upsert(50, "users", &pk, 0, user_row(&pk, "late"))]).await;
    let second = b.download(&format!("after={}&limit=3&until={w}", all[2])).await;
    assert_eq!(ids(&second), all[3..6]);
    let third = b.download(&format!("after={}&limit=3&until={w}", all[5])).await;
    assert_eq!(ids(&third), all[6..]);
    assert_eq!(
        (
            third["has_more"].as_bool(),
            third["next_after"].as_i64(),
            third["window_until"].as_i64()
        ),
        (Some(false), Some(w), Some(w))
    );
    // The next window picks up the late write; after >= W is an empty page that keeps the cursor.
    let next = b.download(&format!("after={w}")).await;
    assert_eq!(ids(&next).len(), 1);
    let done = b.download(&format!("after={}&until={w}", w + 5)).await;
    assert_eq!(
        done,
        json!({"changes": [], "has_more": false, "next_after": w + 5, "window_until": w})
    );
}

/// §9.2 case 14.
#[tokio::test]
async fn own_changes_are_filtered_and_the_cursor_jumps_over_them() {
    let t = target();
    let user = new_user();
    let a = Device::new(&t, &user, "a");
    let changes: Vec<Value> = (0..3)
        .map(|i| {
            let pk = id();
            upsert(i + 1, "users", &pk, 0, user_row(&pk, "n"))
        })
        .collect();
    let r = a.upload(changes).await;
    let top = r["highest_server_seq"].as_i64().unwrap();
    assert_eq!(
        a.download("").await,
        json!({"changes": [], "has_more": false, "next_after": top, "window_until": top})
    );
    let mine = a.download("include_self=true").await;
    assert_eq!(ids(&mine).len(), 3);
    assert_eq!(
        ids(&a.download("include_self=TRUE").await).len(),
        0,
        "only the exact string true enables include_self"
    );
}

#[tokio::test]
async fn the_schema_filter_is_exact_and_its_cursor_jumps() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let (x, y) = (id(), id());
    let r = a
        .upload(vec![
            upsert(1, "users", &x, 0, user_row(&x, "x")),
            upsert(2, "other.users", &y, 0, json!({"id": y, "name": "y"})),
        ])
        .await;
    let top = r["highest_server_seq"].as_i64().unwrap();
    let business = b.download("schema=business").await;
    assert_eq!(business["changes"].as_array().unwrap().len(), 1);
    assert_eq!(business["changes"][0]["pk"], x.as_str());
    let other = b.download("schema=other").await;
    assert_eq!(
        (other["changes"][0]["pk"].as_str(), other["next_after"].as_i64()),
        (Some(y.as_str()), Some(top))
    );
    assert_eq!(b.download("schema=nothing").await["next_after"], top);
}

#[tokio::test]
async fn bad_parameters_are_400_in_validation_order() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    for (q, message) in [
        ("after=abc", "after must be an integer"),
        ("after=-1", "after must be >= 0"),
        ("after=1.0", "after must be an integer"),
        ("limit=x", "limit must be an integer"),
        ("limit=0", "limit must be between 1 and 1000"),
        ("limit=1001", "limit must be between 1 and 1000"),
        ("after=-1&limit=0", "after must be >= 0"),
        ("schema=Business", "invalid schema name"),
        ("schema=a%3Bdrop", "invalid schema name"),
        ("until=x", "until must be an integer"),
        ("until=-3", "until must be >= 0"),
        ("after=99999999999999999999", "after must be an integer"),
    ] {
        assert_eq!(
            d.download_raw(q).await,
            (400, json!({"error": "invalid_request", "message": message})),
            "{q}"
        );
    }
    // Unknown parameters are ignored; the first of a repeated one counts.
    assert_eq!(d.download_raw("after=0&after=x&foo=bar").await.0, 200);
}

#[tokio::test]
async fn snapshots_page_live_rows_by_keyset() {
    let t = target();
    let user = new_user();
    let (a, b) = (Device::new(&t, &user, "a"), Device::new(&t, &user, "b"));
    let mut ids: Vec<String> = (0..4).map(|_| id()).collect();
    let changes: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, pk)| upsert(i as i64 + 1, "users", pk, 0, user_row(pk, "n")))
        .collect();
    a.upload(changes).await;
    let gone = ids.pop().unwrap();
    let r = a.upload(vec![delete(10, "users", &gone, 1)]).await;
    let top = r["highest_server_seq"].as_i64().unwrap();
    ids.sort();
    let get = |d: &Device, q: String| {
        let d = d.clone();
        async move { d.get_raw(&format!("/sync/snapshot?{q}")).await }
    };
    let (status, page) = get(&b, "schema=business&limit=2".into()).await;
    assert_eq!(status, 200, "{page}");
    let pks: Vec<&str> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pk"].as_str().unwrap())
        .collect();
    assert_eq!(pks, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(
        (page["has_more"].as_bool(), page["window_until"].as_i64()),
        (Some(true), Some(top))
    );
    assert_eq!(page["max_own_source_change_id"], 0, "device b logged nothing");
    assert_eq!(page["rows"][0]["server_version"], 1);
    assert_eq!(page["rows"][0]["payload"], user_row(&ids[0], "n"));
    let q = format!(
        "schema=business&limit=2&until={top}&after_table={}&after_pk={}",
        page["next_after_table"].as_str().unwrap(),
        ids[1]
    );
    let (_, last) = get(&b, q).await;
    let pks: Vec<&str> = last["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pk"].as_str().unwrap())
        .collect();
    assert_eq!(pks, [ids[2].as_str()], "live rows only: the deleted one is absent");
    assert_eq!(last["has_more"], false);
    let (_, mine) = get(&a, String::new()).await;
    assert_eq!(mine["max_own_source_change_id"], 10);
    for (q, message) in [
        ("after_table=users&after_pk=x", "after_table must be <schema>.<table>"),
        ("after_table=business.users", "after_pk is required with after_table"),
        ("after_table=business.users&after_pk=nope", "after_pk must be a UUID"),
        ("limit=0", "limit must be between 1 and 1000"),
        ("schema=Bad", "invalid schema name"),
        ("until=-1", "until must be an integer >= 0"),
    ] {
        assert_eq!(
            get(&b, q.into()).await,
            (400, json!({"error": "invalid_request", "message": message})),
            "{q}"
        );
    }
}
