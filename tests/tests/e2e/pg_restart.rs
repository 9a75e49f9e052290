//! PostgreSQL restarted during a run: uploads fail while it is down (nothing lost on the devices), the server's
//! pool reconnects by itself, and afterwards every device converges with every change applied exactly once.

use oversync_tests::pg::OwnCluster;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_nothing() {
    let mut cluster = OwnCluster::start().expect("own cluster");
    let w = world_on(cluster.database("oversync_restart").expect("database"), |_| {}).await;
    let username = name();
    let (mut d1, mut d2) = (device(&w, &username).await, device(&w, &username).await);
    for i in 0..10 {
        add_user(&d1, &id(), &format!("before {i}"));
        add_user(&d2, &id(), &format!("before {i}"));
    }
    d1.sync().await.unwrap();
    let restart = tokio::task::spawn_blocking(move || {
        cluster.restart().expect("restart postgres");
        cluster
    });
    // Writes and syncs go on while the database restarts; failures leave everything pending.
    let mut failed = 0;
    for i in 0..20 {
        add_user(&d1, &id(), &format!("during {i}"));
        add_user(&d2, &id(), &format!("during {i}"));
        failed += usize::from(d1.sync().await.is_err()) + usize::from(d2.sync().await.is_err());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _cluster = restart.await.unwrap();
    eprintln!("{failed} sync cycles failed during the restart");
    // The harness's own connection died with the restart; reconnect for the checks.
    let (db, conn) = tokio_postgres::connect(&w.db_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        d1.sync().await.unwrap();
        d2.sync().await.unwrap();
    }
    assert_eq!((pending(&d1), pending(&d2)), (0, 0));
    assert_eq!(local_users(&d1), local_users(&d2));
    assert_eq!(local_users(&d1).len(), 60);
    let user = user_of(&d1);
    let (rows, distinct): (i64, i64) = {
        let r = db
            .query_one(
                "SELECT count(*), count(DISTINCT (pk_uuid, server_version)) FROM sync.server_change_log WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((rows, distinct), (60, 60), "each change applied exactly once");
}

/// `/ready` follows the database (issue 37): ready while it answers, 503 `not_ready` with `database: unreachable`
/// once it stops (after at most the one second an answer is reused), ready again once it is back; `/health` stays
/// 200 throughout (the process answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flips_when_postgres_stops_and_comes_back() {
    let mut cluster = OwnCluster::start().expect("own cluster");
    let w = world_on(cluster.database("oversync_ready").expect("database"), |_| {}).await;
    let http = reqwest::Client::new();
    let ready = |http: reqwest::Client, base: String| async move {
        let r = http.get(format!("{base}/ready")).send().await.expect("ready");
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.expect("json"))
    };
    let until = |want: u16| {
        let (http, base) = (http.clone(), w.base.clone());
        async move {
            for _ in 0..100 {
                let (status, body) = ready(http.clone(), base.clone()).await;
                if status == want {
                    return body;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            panic!("/ready never answered {want}");
        }
    };
    let up = until(200).await;
    assert_eq!(
        (&up["database"], &up["schema"], &up["listener"]),
        (&"ok".into(), &"ok".into(), &"connected".into())
    );
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop postgres");
        cluster
    })
    .await
    .unwrap();
    let down = until(503).await;
    assert_eq!(
        (&down["status"], &down["database"]),
        (&"not_ready".into(), &"unreachable".into()),
        "{down}"
    );
    let health = http.get(format!("{}/health", w.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "liveness does not follow the database");
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again().expect("start postgres");
        cluster
    })
    .await
    .unwrap();
    let back = until(200).await;
    assert_eq!(back["database"], "ok", "{back}");
}
