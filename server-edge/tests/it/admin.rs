//! docs/sharing.md §3: the admin route sets and removes scope memberships with its own secret, and every change
//! of `sync.scope_members` (by the route or by the app's own SQL) is recorded in `sync.scope_events`.

use serde_json::{Value, json};

use crate::support::*;

const ADMIN: &str = "admin-secret-for-the-tests-32-bytes!";

fn admin_target() -> std::sync::Arc<Target> {
    target_with("admin", &format!("admin_secret = {ADMIN:?}"))
}

async fn post(t: &Target, auth: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/sync/admin/members", t.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    read(req.send().await.unwrap()).await
}

async fn set(t: &Target, scope: &str, user: &str, role: Option<&str>) -> Value {
    let (status, body) = post(
        t,
        Some(&format!("Bearer {ADMIN}")),
        json!({"scope": scope, "user": user, "role": role}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn events(t: &Target, user: &str) -> Vec<(String, Option<String>)> {
    let db = db(t).await;
    db.query(
        "SELECT scope, role FROM sync.scope_events WHERE user_id = $1 ORDER BY id",
        &[&user],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn memberships_are_set_changed_and_removed_and_every_change_is_an_event() {
    let t = admin_target();
    let (user, scope) = (new_user(), format!("team-{}", id()));
    assert_eq!(
        set(&t, &scope, &user, Some("writer")).await,
        json!({"scope": scope, "user": user, "role": "writer", "changed": true})
    );
    assert_eq!(
        set(&t, &scope, &user, Some("writer")).await["changed"],
        false,
        "a repeat changes nothing"
    );
    assert_eq!(set(&t, &scope, &user, Some("reader")).await["changed"], true);
    assert_eq!(set(&t, &scope, &user, None).await["changed"], true);
    assert_eq!(set(&t, &scope, &user, None).await["changed"], false);
    // The app's backend writes the table directly; its changes are recorded the same way.
    let db = db(&t).await;
    db.execute(
        "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, 'reader')",
        &[&scope, &user],
    )
    .await
    .unwrap();
    let role = |r: &str| Some(r.to_owned());
    assert_eq!(
        events(&t, &user).await,
        vec![
            (scope.clone(), role("writer")),
            (scope.clone(), role("reader")),
            (scope.clone(), None),
            (scope.clone(), role("reader")),
        ]
    );
}

#[tokio::test]
async fn the_route_wants_its_own_secret_and_a_well_formed_request() {
    let t = admin_target();
    let body = json!({"scope": "team", "user": new_user(), "role": "writer"}).to_string();
    // A user's token is not the admin secret, nor is a near miss.
    let user_token = Device::new(&t, &new_user(), "d").token;
    for auth in [
        None,
        Some(format!("Bearer {user_token}")),
        Some(format!("Bearer {}", &ADMIN[..ADMIN.len() - 1])),
        Some(format!("Bearer {ADMIN}x")),
        Some(ADMIN.to_owned()),
    ] {
        let (status, reply) = post(&t, auth.as_deref(), body.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (401, Some("unauthorized")),
            "{auth:?}"
        );
    }
    let auth = format!("Bearer {ADMIN}");
    for bad in [
        json!({"scope": "", "user": "u", "role": "writer"}).to_string(),
        json!({"scope": "s".repeat(129), "user": "u"}).to_string(),
        json!({"scope": "t", "user": "u", "role": "owner"}).to_string(),
        json!({"scope": "t", "user": "\u{1f}t"}).to_string(),
        "{".to_owned(),
    ] {
        let (status, reply) = post(&t, Some(&auth), bad.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
    // The body is bounded before it is read (by its declared length) and while it is read (chunked).
    let (status, _) = post(&t, Some(&auth), vec![b' '; 5000]).await;
    assert_eq!(status, 413);
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![b' '; 5000])]);
    let (status, _) = post(&t, Some(&auth), reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(status, 413);
    let (status, _) = read(reqwest::get(format!("{}/sync/admin/members", t.base)).await.unwrap()).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn without_an_admin_secret_there_is_no_admin_route() {
    let t = target();
    let (status, reply) = post(&t, Some(&format!("Bearer {ADMIN}")), "{}").await;
    assert_eq!((status, reply["error"].as_str()), (404, Some("not_found")));
}

/// The demo's team routes (dev sign-in only): a user creates a team, another joins it by its code, and leaves.
#[tokio::test]
async fn the_demo_team_route_creates_joins_and_leaves_teams_for_the_signed_in_user() {
    let t = target();
    let (a, b) = (new_user(), new_user());
    let post = |user: &str, body: Value| {
        let token = token_with(json!({"sub": user, "did": "d"}));
        let url = format!("{}/demo/teams", t.base);
        async move {
            read(
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, created) = post(&a, json!({"create": "Hiking Club!"})).await;
    assert_eq!(status, 200, "{created}");
    let code = created["scope"].as_str().unwrap().to_owned();
    assert!(code.starts_with("hiking-club-"), "{code}");
    assert_eq!(
        (created["user"].as_str(), created["role"].as_str()),
        (Some(a.as_str()), Some("writer"))
    );
    let (status, joined) = post(&b, json!({"join": code})).await;
    assert_eq!((status, joined["role"].as_str()), (200, Some("writer")), "{joined}");
    assert_eq!(events(&t, &b).await, vec![(code.clone(), Some("writer".to_owned()))]);
    let (status, left) = post(&b, json!({"leave": code})).await;
    assert_eq!((status, left["changed"].as_bool()), (200, Some(true)), "{left}");
    let (status, body) = post(&b, json!({"join": "no-such-team"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let anonymous = reqwest::Client::new()
        .post(format!("{}/demo/teams", t.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}
