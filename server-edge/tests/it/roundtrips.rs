//! Round trips and statements per request: a fixed number, whatever the size of the request.
//! Statements are counted with `pg_stat_statements` on a database of its own, round trips at the wire.

use oversync_tests::counting::CountingProxy;

use crate::support::*;

async fn statements(conn: &tokio_postgres::Client) -> i64 {
    conn.query_one(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_200_change_upload_costs_as_many_statements_as_a_2_change_upload() {
    let t = target_in_own_db("");
    let conn = db(&t).await;
    if let Err(e) = conn
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
    {
        // Only possible with an external DATABASE_URL whose server does not preload the module.
        panic!("pg_stat_statements is unavailable ({e}); the harness's own cluster preloads it");
    }
    let d = Device::new(&t, &new_user(), "d");
    d.upload(users(2, 1)).await; // warm-up: catalogue caches, pool connection

    let before = statements(&conn).await;
    d.upload(users(2, 10)).await;
    let small = statements(&conn).await - before;

    let before = statements(&conn).await;
    let r = d.upload(users(200, 100)).await;
    let large = statements(&conn).await - before;
    assert!(all_applied(&r));
    assert_eq!(
        large, small,
        "statements per upload must not grow with the number of changes ({small} for 2, {large} for 200)"
    );
    // BEGIN, lock (2), snapshot (3), ids, writes (4), materialisation (5 for one table), COMMIT, plus this count.
    assert!(small <= 20, "{small} statements for one upload");
}

/// The round trips one request costs.
async fn trips<T>(proxy: &CountingProxy, request: impl std::future::Future<Output = T>) -> (u64, T) {
    let before = proxy.round_trips();
    let out = request.await;
    (proxy.round_trips() - before, out)
}

/// Issue 24: on the edge every database round trip crosses Hyperdrive, so an upload of any size is at most two
/// (one read, one write that commits), and a download page, a snapshot page and a watch look one each. Counted
/// at the wire (`Query` and `Sync` messages), on both front doors, with both FK precheck modes, so the number
/// cannot silently grow.
async fn requests_cost_at_most_their_round_trips(settings: &'static str) {
    let (proxy, t, _server) = proxied_server("oversync_trips", settings).await;
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let other = Device::new(&t, &user, "other");
    // Warm-up: the schema is ready, the pool holds a connection, and (natively) that connection has prepared the
    // download's, the snapshot page's and the watch's statements (one more round trip each, once per connection).
    d.upload(users(1, 1)).await;
    other.download("limit=1").await;
    other.get_raw("/sync/snapshot?limit=1").await;
    other.get_raw("/sync/watch?after=0&timeout_s=1").await;

    let mut costs = Vec::new();
    let (n, r) = trips(&proxy, d.upload(users(1, 10))).await;
    assert!(all_applied(&r));
    costs.push(("upload of 1 change", n, 2));
    // Parents and children in two tables, children first (deferred FK order, §6.5).
    let mut batch = Vec::new();
    for i in 0..100 {
        let (author, post) = (id(), id());
        batch.push(upsert(100 + 2 * i, "posts", &post, 0, post_row(&post, &author, "t")));
        batch.push(upsert(101 + 2 * i, "users", &author, 0, user_row(&author, "a")));
    }
    let (n, r) = trips(&proxy, d.upload(batch.clone())).await;
    assert!(all_applied(&r), "{r}");
    costs.push(("upload of 200 changes in two tables", n, 2));
    let (n, r) = trips(&proxy, d.upload(batch)).await;
    assert!(all_applied(&r), "a replay is answered from the log: {r}");
    costs.push(("replayed upload", n, 2));
    let pk = id();
    other
        .upload(vec![upsert(1, "users", &pk, 0, user_row(&pk, "theirs"))])
        .await;
    let (n, r) = trips(
        &proxy,
        d.upload(vec![upsert(500, "users", &pk, 0, user_row(&pk, "mine"))]),
    )
    .await;
    assert_eq!(status_at(&r, 0), WireStatus::Conflict, "{r}");
    costs.push(("upload with a conflict", n, 2));
    let (n, r) = trips(&proxy, d.upload(vec![delete(501, "users", &pk, 1)])).await;
    assert!(all_applied(&r), "{r}");
    costs.push(("upload of a delete", n, 2));
    let (n, _) = trips(&proxy, d.upload(Vec::new())).await;
    costs.push(("empty upload", n, 1));

    let (n, page) = trips(&proxy, other.download("limit=50")).await;
    assert!(!page["changes"].as_array().unwrap().is_empty());
    costs.push(("download page", n, 1));
    let top = page["window_until"].as_i64().unwrap();
    let (n, _) = trips(&proxy, other.download(&format!("after={top}"))).await;
    costs.push(("download at the top", n, 1));
    let (n, (status, _)) = trips(&proxy, other.get_raw("/sync/snapshot?limit=50")).await;
    assert_eq!(status, 200);
    costs.push(("snapshot page", n, 1));
    let (n, (status, _)) = trips(&proxy, other.get_raw("/sync/watch?after=0&timeout_s=1")).await;
    assert_eq!(status, 200);
    costs.push(("watch with a change waiting", n, 1));

    let over: Vec<_> = costs.iter().filter(|(_, n, most)| n > most).collect();
    assert!(
        over.is_empty(),
        "round trips over their bound (what, counted, bound): {over:?}; all: {costs:?}"
    );
}

#[tokio::test]
async fn requests_cost_at_most_their_round_trips_with_the_sync_state_precheck() {
    requests_cost_at_most_their_round_trips("").await;
}

#[tokio::test]
async fn requests_cost_at_most_their_round_trips_with_the_business_precheck() {
    requests_cost_at_most_their_round_trips("fk_precheck = \"business\"").await;
}
