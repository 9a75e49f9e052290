//! The seeded simulation with teams (docs/sharing.md): three users on four devices write, edit, move and delete
//! team posts and drafts while memberships change under them (joins, role changes, leaves), through a proxy that
//! drops responses and cuts, delays and duplicates requests. At the end every device holds exactly the rows of the
//! teams its user is a member of, as the server has them, and its user's drafts. The app's backend writes the team
//! posts too, with plain SQL (issue 33): new posts, edits, moves between teams and deletes.
//!
//! Seeds as in `simulation.rs`: `OVERSYNC_SIM_SEED=<seed>` replays one, `OVERSYNC_SIM_SEEDS=<count>` runs more.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::*;
use oversync_tests::proxy::{Fault, FaultProxy};

const CI_SEEDS: [u64; 3] = [3, 11, 99];

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("OVERSYNC_SIM_SEED") {
        return vec![seed.parse().expect("OVERSYNC_SIM_SEED must be an integer")];
    }
    match std::env::var("OVERSYNC_SIM_SEEDS") {
        Ok(n) => (0..n.parse::<u64>().expect("a count")).map(|i| 20_000 + i).collect(),
        Err(_) => CI_SEEDS.to_vec(),
    }
}

fn seeded_id(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string()
}

type Post = (String, Option<String>, String);

fn ids(d: &Device, sql: &str) -> Vec<String> {
    let mut s = d.conn().prepare(sql).unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn local(d: &Device) -> Vec<Post> {
    let rejected = ids(d, "SELECT pk_uuid FROM _sync_rejections");
    let mut s = d
        .conn()
        .prepare("SELECT id, team_id, title FROM team_posts ORDER BY id")
        .unwrap();
    let rows: Vec<Post> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.into_iter().filter(|p| !rejected.contains(&p.0)).collect()
}

/// What `user`'s devices should hold: the live rows of every team they are in now, and their drafts.
async fn expected(w: &World, user: &str, rejected: &[String]) -> Vec<Post> {
    let rows =
        w.db.query(
            "SELECT s.pk_uuid::text, nullif(s.payload->>'team_id', ''), s.payload->>'title' FROM sync.sync_state s
             WHERE s.table_name = 'team_posts' AND (s.user_id = $1 OR s.user_id IN (
               SELECT chr(31) || m.scope FROM sync.scope_members m WHERE m.user_id = $1))
             ORDER BY 1",
            &[&user],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .filter(|p: &Post| !rejected.contains(&p.0))
        .collect()
}

async fn run(seed: u64) {
    eprintln!("team simulation seed {seed} (replay: OVERSYNC_SIM_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let w = world(|_| {}).await;
    let proxy = FaultProxy::start(w.base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let mut faults = StdRng::seed_from_u64(seed.wrapping_mul(17));
    proxy.set(move |method, _| match (method, faults.random_range(0..100)) {
        ("POST", 0..=7) => Fault::DropResponse,
        ("POST", 8..=11) => Fault::CutRequest,
        ("POST", 12..=15) => Fault::Duplicate,
        ("GET", 16..=20) => Fault::DropResponse,
        (_, 21..=23) => Fault::Delay(std::time::Duration::from_millis(10)),
        _ => Fault::None,
    });
    let via = format!("http://{}", proxy.addr);
    let names: Vec<String> = (0..3).map(|_| name()).collect();
    let mut devices = Vec::new();
    // Four devices: the first user has two.
    for n in [&names[0], &names[0], &names[1], &names[2]] {
        let mut d = guest_at_via(&via, &temp_db());
        sign_in(&w, &mut d, n).await;
        devices.push(d);
    }
    let users: Vec<String> = devices.iter().map(user_of).collect();
    let teams: Vec<String> = (0..2).map(|i| format!("sim-{seed}-{i}")).collect();
    for u in &users {
        w.db.execute(
            "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, 'writer') ON CONFLICT DO NOTHING",
            &[&teams[0], u],
        )
        .await
        .unwrap();
    }
    for step in 0..70 {
        let i = rng.random_range(0..devices.len());
        let d = &devices[i];
        let team = teams[rng.random_range(0..teams.len())].clone();
        let title = format!("s{step}");
        let posts = ids(d, "SELECT id FROM team_posts ORDER BY id");
        let some_post = (!posts.is_empty()).then(|| posts[rng.random_range(0..posts.len())].clone());
        match rng.random_range(0..100) {
            0..=24 => {
                let scope = (rng.random_range(0..4) > 0).then_some(team);
                d.conn()
                    .execute(
                        "INSERT INTO team_posts (id, team_id, title) VALUES (?1, ?2, ?3)",
                        rusqlite::params![seeded_id(&mut rng), scope, title],
                    )
                    .unwrap();
            }
            25..=39 => {
                if let Some(p) = some_post {
                    d.conn()
                        .execute("UPDATE team_posts SET title = ?2 WHERE id = ?1", [&p, &title])
                        .unwrap();
                }
            }
            40..=46 => {
                if let Some(p) = some_post {
                    let to = (rng.random_range(0..3) > 0).then_some(team);
                    d.conn()
                        .execute(
                            "UPDATE team_posts SET team_id = ?2 WHERE id = ?1",
                            rusqlite::params![p, to],
                        )
                        .unwrap();
                }
            }
            47..=52 => {
                if let Some(p) = some_post {
                    delete_row(d, "team_posts", &p);
                }
            }
            53..=62 => {
                let user = &users[rng.random_range(0..users.len())];
                let role = ["writer", "reader", ""][rng.random_range(0..3)];
                if role.is_empty() {
                    w.db.execute(
                        "DELETE FROM sync.scope_members WHERE scope = $1 AND user_id = $2",
                        &[&team, user],
                    )
                    .await
                    .unwrap();
                } else {
                    w.db.execute(
                        "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, $3)
                         ON CONFLICT (scope, user_id) DO UPDATE SET role = excluded.role",
                        &[&team, user, &role],
                    )
                    .await
                    .unwrap();
                }
            }
            63..=69 => {
                // The backend, on the business table (which holds the shared posts; drafts are not there).
                let shared: Vec<String> =
                    w.db.query(
                        "SELECT id::text FROM business.team_posts WHERE team_id = ANY($1) ORDER BY id",
                        &[&teams],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let chosen = (!shared.is_empty()).then(|| shared[rng.random_range(0..shared.len())].clone());
                let sql = match (rng.random_range(0..4), chosen) {
                    (0, Some(p)) => format!("UPDATE business.team_posts SET title = 'b{step}' WHERE id = '{p}'"),
                    (1, Some(p)) => format!("UPDATE business.team_posts SET team_id = '{team}' WHERE id = '{p}'"),
                    (2, Some(p)) => format!("DELETE FROM business.team_posts WHERE id = '{p}'"),
                    _ => format!(
                        "INSERT INTO business.team_posts (id, team_id, title) VALUES ('{}', '{team}', 'b{step}')",
                        seeded_id(&mut rng)
                    ),
                };
                w.db.batch_execute(&sql).await.unwrap();
            }
            70..=89 => {
                let _ = devices[i].sync().await;
            }
            _ => {
                let d = devices.remove(i);
                devices.insert(i, reopen_via(&via, d));
            }
        }
    }
    proxy.set(|_, _| Fault::None);
    quiesce(&mut devices, &format!("team simulation seed {seed}")).await;
    for (d, user) in devices.iter().zip(&users) {
        let rejected = ids(d, "SELECT pk_uuid FROM _sync_rejections");
        let want = expected(&w, user, &rejected).await;
        let have = local(d);
        if have != want {
            let mut history = Vec::new();
            for p in want
                .iter()
                .filter(|p| !have.contains(p))
                .chain(have.iter().filter(|p| !want.contains(p)))
            {
                let log =
                    w.db.query(
                        "SELECT server_id, replace(user_id, chr(31), '~'), op, server_version, source_id, payload::text
                         FROM sync.server_change_log WHERE pk_uuid = $1::text::uuid ORDER BY server_id",
                        &[&p.0],
                    )
                    .await
                    .unwrap();
                let meta: Option<(i64, bool)> = d
                    .conn()
                    .query_row(
                        "SELECT server_version, deleted FROM _sync_row_meta WHERE pk_uuid = ?1",
                        [&p.0],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .ok();
                history.push(format!(
                    "{} local meta {meta:?}; log {:?}",
                    p.0,
                    log.iter()
                        .map(|r| format!(
                            "{} {} {} v{} {} {:?}",
                            r.get::<_, i64>(0),
                            r.get::<_, String>(1),
                            r.get::<_, String>(2),
                            r.get::<_, i64>(3),
                            r.get::<_, String>(4),
                            r.get::<_, Option<String>>(5)
                        ))
                        .collect::<Vec<_>>()
                ));
            }
            panic!(
                "seed {seed}: device of {user} differs from the server:\n{}\nhave {have:?}\nwant {want:?}",
                history.join("\n")
            );
        }
        let left = ids(
            d,
            "SELECT table_name || ':' || pk_uuid || ' ' || op || ' base ' || base_version || ' attempts ' || attempts
               || ' parked ' || parked || ' err ' || coalesce(last_error, '') FROM _sync_pending",
        );
        assert!(left.is_empty(), "seed {seed}: pending left: {left:?}");
    }
}

#[tokio::test]
async fn teams_with_changing_memberships_converge_under_faults() {
    for seed in seeds() {
        run(seed).await;
    }
}
