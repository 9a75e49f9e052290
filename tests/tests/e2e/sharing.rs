//! Shared data end to end (docs/sharing.md): devices of different users in one team, against the real server.
//! Membership is written the way an app's backend writes it, with SQL on `sync.scope_members`.

use crate::support::*;

async fn join(w: &World, scope: &str, user: &str, role: Option<&str>) {
    match role {
        Some(role) => {
            w.db.execute(
                "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (scope, user_id) DO UPDATE SET role = excluded.role",
                &[&scope, &user, &role],
            )
            .await
            .unwrap()
        }
        None => {
            w.db.execute(
                "DELETE FROM sync.scope_members WHERE scope = $1 AND user_id = $2",
                &[&scope, &user],
            )
            .await
            .unwrap()
        }
    };
}

fn write_post(d: &Device, id: &str, team: Option<&str>, title: &str) {
    d.conn()
        .execute(
            "INSERT INTO team_posts (id, team_id, title) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET team_id = excluded.team_id, title = excluded.title",
            rusqlite::params![id, team, title],
        )
        .unwrap();
}

fn posts(d: &Device) -> Vec<(String, Option<String>, String)> {
    let mut stmt = d
        .conn()
        .prepare("SELECT id, team_id, title FROM team_posts ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn team() -> String {
    format!("team-{}", id())
}

/// Two signed-in users who are writers of a new team.
async fn pair(w: &World) -> (String, Device, Device) {
    let scope = team();
    let (a, b) = (device(w, &name()).await, device(w, &name()).await);
    for d in [&a, &b] {
        join(w, &scope, &user_of(d), Some("writer")).await;
    }
    (scope, a, b)
}

#[tokio::test]
async fn two_members_see_each_others_posts_both_ways_and_drafts_stay_private() {
    let w = world(|_| {}).await;
    let (scope, mut a, mut b) = pair(&w).await;
    let (shared, draft) = (id(), id());
    write_post(&a, &shared, Some(&scope), "from a");
    write_post(&a, &draft, None, "a's draft");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert_eq!(posts(&b), vec![(shared.clone(), Some(scope.clone()), "from a".into())]);
    let held = b.status().unwrap().scopes;
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].scope.as_str(), held[0].state.as_str(), held[0].rows),
        (scope.as_str(), "held", 1)
    );
    write_post(&b, &shared, Some(&scope), "edited by b");
    b.sync().await.unwrap();
    a.sync().await.unwrap();
    let mine = posts(&a);
    assert!(
        mine.contains(&(shared.clone(), Some(scope.clone()), "edited by b".into())),
        "{mine:?}"
    );
    assert!(mine.contains(&(draft.clone(), None, "a's draft".into())));
    assert_eq!(
        b.scopes().unwrap(),
        a.scopes()
            .unwrap()
            .into_iter()
            .map(|mut s| {
                s.rows = 1;
                s
            })
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_revoked_member_drops_the_teams_posts_without_uploading_deletes() {
    let w = world(|_| {}).await;
    let (scope, mut a, mut b) = pair(&w).await;
    let (p1, p2) = (id(), id());
    write_post(&a, &p1, Some(&scope), "one");
    write_post(&a, &p2, Some(&scope), "two");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert_eq!(posts(&b).len(), 2);
    // b edits one post offline, then loses the membership.
    write_post(&b, &p1, Some(&scope), "b's unsent edit");
    join(&w, &scope, &user_of(&b), None).await;
    b.sync().await.unwrap();
    assert!(posts(&b).is_empty(), "the team's posts are dropped locally");
    assert!(b.status().unwrap().scopes.is_empty());
    let rejections = b.rejections().unwrap();
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(
        (rejections[0].pk.as_str(), rejections[0].reason.as_str()),
        (p1.as_str(), "scope_forbidden")
    );
    assert_eq!(pending(&b), 0);
    // Nothing was deleted on the server: a still has both, unchanged.
    a.sync().await.unwrap();
    let titles: Vec<String> = posts(&a).into_iter().map(|p| p.2).collect();
    assert_eq!(titles.len(), 2);
    assert!(!titles.contains(&"b's unsent edit".to_owned()));
    let deletes: i64 =
        w.db.query_one(
            "SELECT count(*) FROM sync.server_change_log WHERE user_id = chr(31) || $1 AND op = 'DELETE'",
            &[&scope],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(deletes, 0);
    // A new post after the revocation never reaches b.
    write_post(&a, &id(), Some(&scope), "after");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert!(posts(&b).is_empty());
}

#[tokio::test]
async fn two_members_editing_one_post_conflict_and_converge() {
    let w = world(|_| {}).await;
    let (scope, mut a, mut b) = pair(&w).await;
    let pk = id();
    write_post(&a, &pk, Some(&scope), "v1");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    write_post(&a, &pk, Some(&scope), "a's edit");
    write_post(&b, &pk, Some(&scope), "b's edit");
    a.sync().await.unwrap();
    let report = b.sync().await.unwrap();
    assert_eq!(report.conflicts, 1, "{report:?}");
    let mut devices = [a, b];
    quiesce(&mut devices, "after the conflict").await;
    let [a, b] = devices;
    assert_eq!(posts(&a), posts(&b));
    assert_eq!(posts(&a)[0].2, "a's edit", "server wins");
}

#[tokio::test]
async fn joining_a_team_with_10000_posts_backfills_that_team_alone() {
    let w = world(|_| {}).await;
    let (scope, mut a, _) = pair(&w).await;
    {
        let tx = a.conn().unchecked_transaction().unwrap();
        for i in 0..10_000 {
            write_post(&a, &id(), Some(&scope), &format!("post {i}"));
        }
        tx.commit().unwrap();
    }
    a.sync().await.unwrap();
    // The newcomer has synced its own rows before it joins.
    let mut n = device(&w, &name()).await;
    add_user(&n, &id(), "newcomer");
    n.sync().await.unwrap();
    let before = n.transport().gets.borrow().len();
    join(&w, &scope, &user_of(&n), Some("reader")).await;
    n.sync().await.unwrap();
    assert_eq!(local_count(&n, "team_posts"), 10_000);
    assert_eq!(n.status().unwrap().scopes[0].rows, 10_000);
    let gets: Vec<String> = n.transport().gets.borrow()[before..].to_vec();
    assert!(
        gets.iter()
            .any(|p| p.starts_with("/sync/snapshot") && p.contains("scope=")),
        "{gets:?}"
    );
    assert!(
        !gets
            .iter()
            .any(|p| p.starts_with("/sync/snapshot") && !p.contains("scope=")),
        "nothing but the team is snapshotted again: {gets:?}"
    );
    assert_eq!(local_count(&n, "users"), 1);
}

#[tokio::test]
async fn a_client_without_scoped_tables_keeps_syncing_classically() {
    let w = world(|_| {}).await;
    let username = name();
    let mut scoped = device(&w, &username).await;
    let mut classic = guest_tables(&w, &["users", "posts"]);
    sign_in(&w, &mut classic, &username).await;
    let scope = team();
    join(&w, &scope, &user_of(&scoped), Some("writer")).await;
    write_post(&scoped, &id(), Some(&scope), "shared");
    add_user(&scoped, &id(), "from scoped");
    scoped.sync().await.unwrap();
    add_user(&classic, &id(), "from classic");
    classic.sync().await.unwrap();
    scoped.sync().await.unwrap();
    assert_eq!(local_users(&scoped), local_users(&classic));
    assert_eq!(local_users(&classic).len(), 2);
    let gets = classic.transport().gets.borrow();
    assert!(
        gets.iter()
            .filter(|p| p.starts_with("/sync/download"))
            .all(|p| !p.contains("scopes=")),
        "{gets:?}"
    );
    assert!(scoped.transport().gets.borrow().iter().any(|p| p.contains("scopes=1")));
}

#[tokio::test]
async fn a_post_moved_between_two_teams_lands_in_the_new_one_on_a_member_of_both() {
    let w = world(|_| {}).await;
    let (first, mut a, mut b) = pair(&w).await;
    let second = team();
    for d in [&a, &b] {
        join(&w, &second, &user_of(d), Some("writer")).await;
    }
    let pk = id();
    write_post(&a, &pk, Some(&first), "moving");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    write_post(&a, &pk, Some(&second), "moved");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert_eq!(posts(&b), vec![(pk.clone(), Some(second.clone()), "moved".into())]);
    // And back to a draft: it leaves both teams' members.
    write_post(&a, &pk, None, "mine again");
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert!(posts(&b).is_empty());
    assert_eq!(posts(&a), vec![(pk, None, "mine again".into())]);
}
