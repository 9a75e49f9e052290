//! Faults on the wire (issue: reliability): devices talk to the server through a proxy that drops responses after
//! the server processed them, cuts requests mid-body, delays and duplicates requests. Every change is applied
//! exactly once on the server and every device converges.

use oversync_tests::proxy::{Fault, FaultProxy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_cut_delayed_and_duplicated_requests_apply_exactly_once() {
    let seed = std::env::var("OVERSYNC_PROXY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_u64);
    eprintln!("proxy fault seed {seed} (replay: OVERSYNC_PROXY_SEED={seed})");
    let w = world(|_| {}).await;
    let upstream = w.base.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let mut faults = StdRng::seed_from_u64(seed);
    proxy.set(move |method, _path| {
        let roll = faults.random_range(0..100);
        match (method, roll) {
            ("POST", 0..=24) => Fault::DropResponse,
            ("POST", 25..=34) => Fault::CutRequest,
            ("POST", 35..=44) => Fault::Duplicate,
            (_, 45..=49) => Fault::Delay(std::time::Duration::from_millis(30)),
            ("GET", 50..=64) => Fault::DropResponse,
            _ => Fault::None,
        }
    });
    let via = format!("http://{}", proxy.addr);
    let username = name();
    let paths: Vec<_> = (0..3).map(|_| temp_db()).collect();
    let mut devices = Vec::new();
    for p in &paths {
        let mut d = guest_at_via(&via, p);
        sign_in(&w, &mut d, &username).await;
        devices.push(d);
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut errors = 0;
    for step in 0..120 {
        let i = rng.random_range(0..devices.len());
        let d = &devices[i];
        let users: Vec<String> = {
            let mut s = d.conn().prepare("SELECT id FROM users ORDER BY id").unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        match rng.random_range(0..10) {
            0..=3 => add_user(
                d,
                &uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string(),
                &format!("s{step}"),
            ),
            4..=5 if !users.is_empty() => rename_user(d, &users[rng.random_range(0..users.len())], &format!("s{step}")),
            6 if !users.is_empty() => delete_row(d, "users", &users[rng.random_range(0..users.len())]),
            _ => {
                if devices[i].sync().await.is_err() {
                    errors += 1;
                }
            }
        }
    }
    assert!(errors > 0, "the faults were exercised");
    proxy.set(|_, _| Fault::None);
    quiesce(&mut devices, &format!("seed {seed}")).await;
    let user = user_of(&devices[0]);
    let server = server_users(&w, &user).await;
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(
            local_users(d),
            server,
            "seed {seed}: device {i} differs from the server"
        );
        assert_eq!(pending(d), 0, "seed {seed}: device {i} still has pending rows");
    }
    // Exactly once: every row's log holds versions 1..=n, each once.
    let rows =
        w.db.query(
            "SELECT pk_uuid::text, count(*), count(DISTINCT server_version), max(server_version)
             FROM sync.server_change_log WHERE user_id = $1 GROUP BY pk_uuid",
            &[&user],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let (pk, n, distinct, max): (String, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        assert!(
            n == distinct && n == max,
            "seed {seed}: {pk} has {n} log rows, {distinct} versions, max {max}"
        );
    }
    drop(devices);
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}
