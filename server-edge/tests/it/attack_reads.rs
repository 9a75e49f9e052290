//! Hostile reads (issue 32): a user whose window is mostly its own history cannot make one page cost O(history),
//! and its parallel pages cannot starve other users of the pool.

use std::time::{Duration, Instant};

use crate::support::*;

/// Appends `n` rows to the change log directly (seeding load, not sync semantics): row `i` belongs to the scope
/// owner of `scope` when `i % 3 == 0` (if a scope is given), else to `user`; every `other_every`-th row comes from
/// another device (another member's, for the scope), the rest from `user`'s device `d`. Returns the server ids of
/// the rows from elsewhere, which are what `d` downloads.
async fn seed(t: &Target, user: &str, scope: Option<&str>, n: i64, other_every: i64) -> Vec<i64> {
    let own_scoped = serde_json::to_string(&(user, "d")).unwrap();
    let rows = db(t)
        .await
        .query(
            "INSERT INTO sync.server_change_log
               (user_id, schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version)
             SELECT CASE WHEN s.scoped THEN chr(31) || $2 ELSE $1 END, 'business', 'users', 'INSERT', gen_random_uuid(),
                    '{\"name\":\"x\"}'::json,
                    CASE WHEN s.i % $5 = 0 THEN (CASE WHEN s.scoped THEN '[\"someone\",\"x\"]' ELSE 'other' END)
                         WHEN s.scoped THEN $3 ELSE 'd' END,
                    s.i, 1
             FROM (SELECT i, $2::text IS NOT NULL AND i % 3 = 0 AS scoped FROM generate_series(1::int8, $4) i) s
             RETURNING server_id, source_id IN ('other', '[\"someone\",\"x\"]') AS elsewhere",
            &[&user, &scope, &own_scoped, &n, &other_every],
        )
        .await
        .expect("seed the log");
    let mut elsewhere: Vec<i64> = rows.iter().filter(|r| r.get(1)).map(|r| r.get(0)).collect();
    elsewhere.sort_unstable();
    elsewhere
}

/// Follows `d`'s download cursor from 0 with `extra` parameters: every page's entries and `next_after`.
async fn follow(d: &Device, extra: &str) -> (Vec<i64>, Vec<(usize, i64)>) {
    let (mut after, mut until, mut ids, mut pages) = (0i64, 0i64, Vec::new(), Vec::new());
    loop {
        let page = d
            .download(&format!("after={after}&until={until}&limit=1000{extra}"))
            .await;
        let entries = page["changes"].as_array().unwrap();
        ids.extend(entries.iter().map(|e| e["server_id"].as_i64().unwrap()));
        let next = page["next_after"].as_i64().unwrap();
        assert!(next >= after, "the cursor never goes back");
        pages.push((entries.len(), next));
        after = next;
        if page["has_more"] == false {
            return (ids, pages);
        }
        until = page["window_until"].as_i64().unwrap();
    }
}

#[tokio::test]
async fn a_window_of_own_changes_is_scanned_a_bounded_number_of_rows_per_page() {
    let t = target_with("attack_scan", "download_scan_rows = 10000");
    let user = new_user();
    let elsewhere = seed(&t, &user, None, 35_000, 9_000).await;
    let d = Device::new(&t, &user, "d");
    let first = d.download("after=0&limit=1000").await;
    let ten_thousandth: i64 = db(&t)
        .await
        .query_one(
            "SELECT server_id FROM sync.server_change_log WHERE user_id = $1 ORDER BY server_id OFFSET 9999 LIMIT 1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first["has_more"], true, "{first}");
    assert_eq!(
        first["next_after"].as_i64(),
        Some(ten_thousandth),
        "the page ends at the 10,000th row scanned"
    );
    assert_eq!(
        first["changes"].as_array().unwrap()[0]["server_id"].as_i64(),
        Some(elsewhere[0])
    );
    let (ids, pages) = follow(&d, "").await;
    assert_eq!(ids, elsewhere, "every other device's change once, in order: {pages:?}");
    assert_eq!(pages.len(), 4, "35,000 rows in scans of 10,000: {pages:?}");
}

#[tokio::test]
async fn a_scope_aware_window_is_bounded_per_owner_and_sends_nothing_twice() {
    let t = target_with("attack_scan", "download_scan_rows = 10000");
    let (user, scope) = (new_user(), format!("team-{}", id()));
    db(&t)
        .await
        .execute(
            "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, 'writer')",
            &[&scope, &user],
        )
        .await
        .unwrap();
    let elsewhere = seed(&t, &user, Some(&scope), 45_000, 4_000).await;
    let d = Device::new(&t, &user, "d");
    let (ids, pages) = follow(&d, "&scopes=1").await;
    assert_eq!(ids, elsewhere, "every change from elsewhere once, in order: {pages:?}");
    assert!(
        pages.len() >= 4,
        "30,000 private and 15,000 scope rows in scans of at most 10,000 each: {pages:?}"
    );
}

/// One request's latency and status.
async fn timed(f: impl std::future::Future<Output = u16>) -> (Duration, u16) {
    let start = Instant::now();
    let status = f.await;
    (start.elapsed(), status)
}

/// Another user's downloads and uploads (of new rows from `first_scid` on), one at a time: latencies and statuses.
async fn victim_round(d: &Device, first_scid: i64, rounds: i64) -> Vec<(Duration, u16)> {
    let mut out = Vec::new();
    for i in 0..rounds {
        out.push(timed(async { d.download_raw("after=0&limit=100").await.0 }).await);
        let body = serde_json::json!({"changes": users(1, first_scid + i)}).to_string();
        out.push(timed(async { d.upload_raw(body).await.0 }).await);
    }
    out
}

fn p99(samples: &[(Duration, u16)]) -> Duration {
    let mut v: Vec<Duration> = samples.iter().map(|s| s.0).collect();
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test]
async fn one_users_parallel_downloads_of_its_own_history_do_not_starve_others() {
    let t = target_with("attack_reads", "pool_size = 16");
    let attacker = new_user();
    seed(&t, &attacker, None, 300_000, 1_000_000).await;
    let victim_user = new_user();
    let victim = Device::new(&t, &victim_user, "v");
    let alone = victim_round(&victim, 1, 10).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops: Vec<_> = (0..48)
        .map(|_| {
            let (d, stop) = (Device::new(&t, &attacker, "d"), stop.clone());
            tokio::spawn(async move {
                let mut seen: Vec<u16> = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seen.push(d.download_raw("after=0").await.0);
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attacked = victim_round(&victim, 11, 10).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses: Vec<u16> = Vec::new();
    for l in loops {
        statuses.extend(l.await.unwrap());
    }
    eprintln!(
        "attack parallel own-history downloads: victim p99 alone {:?}, under attack {:?}; attacker answers: {} × 200, {} × 429",
        p99(&alone),
        p99(&attacked),
        statuses.iter().filter(|&&s| s == 200).count(),
        statuses.iter().filter(|&&s| s == 429).count(),
    );
    assert!(
        attacked.iter().all(|s| s.1 == 200),
        "the victim is always served: {attacked:?}"
    );
    assert!(statuses.iter().all(|&s| s == 200 || s == 429), "{statuses:?}");
    assert!(statuses.contains(&429), "the attacker is held to its share");
    assert_eq!(
        log_rows(&t, &victim_user).await,
        20,
        "every upload of the victim applied"
    );
}
