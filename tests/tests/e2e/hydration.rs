//! Snapshot hydration with two page requests in flight (`then_after` hints), pages sized by their apply time,
//! and rows written on the server between those requests: a hint is not a promise, and no older row may fall
//! between two requests.

use crate::support::*;

#[tokio::test]
async fn hydration_keeps_two_pages_in_flight_and_loses_no_row_when_writes_shift_the_pages() {
    let w = world(|_| {}).await;
    let username = name();
    let mut old = device(&w, &username).await;
    let mut ids: Vec<String> = (0..300).map(|_| id()).collect();
    for (i, u) in ids.iter().enumerate() {
        add_user(&old, u, &format!("u{i}"));
    }
    old.sync().await.unwrap();
    ids.sort();
    // Pages of 25: the first ends at ids[24] and hints ids[49] as the end of the next one. Three rows inserted
    // between them just before that next page is asked for push ids[47..=49] out of it; the request after the
    // hint starts past ids[49], and the catch-up only brings rows newer than the window.
    let between: Vec<String> = std::iter::repeat_with(id)
        .filter(|k| *k > ids[26] && *k < ids[46])
        .take(3)
        .collect();
    let mut new = guest(&w, |c| c.download_limit = 25);
    sign_in(&w, &mut new, &username).await;
    let (base, who) = (w.base.clone(), username.clone());
    let hook = async move { upload_bare_users(&base, &who, &between, "late").await };
    *new.transport().before_get.borrow_mut() = Some((format!("after_pk={}", ids[24]), Box::pin(hook)));
    new.hydrate(false).await.unwrap();
    assert!(
        new.transport().before_get.borrow().is_none(),
        "the write ran during the hydration"
    );
    assert!(new.transport().most_gets_in_flight.get() >= 2, "two pages in flight");
    let server = server_users(&w, &user_of(&old)).await;
    assert_eq!(server.len(), 303);
    assert_eq!(local_count(&new, "users"), 303, "every row arrived");
    assert_eq!(local_users(&new), server);
}

#[tokio::test]
async fn hydration_starts_with_small_pages_and_grows_them_to_the_limit() {
    let (.., limits) = paced_hydration("/sync/snapshot", false).await;
    assert!(limits.iter().all(|l| (100..=1000).contains(l)), "{limits:?}");
}

#[tokio::test]
async fn downloads_are_paced_too_for_a_hydration_from_a_classic_server() {
    // No snapshot endpoint: the hydration replays the log through download pages.
    paced_hydration("/sync/download", true).await;
}

#[tokio::test]
async fn a_later_download_resumes_from_the_page_size_the_hydration_ended_with() {
    let (w, mut old, mut new, limits) = paced_hydration("/sync/snapshot", false).await;
    let learned = *limits.last().unwrap();
    assert!(learned > 100, "{limits:?}");
    for i in 0..600 {
        add_user(&old, &id(), &format!("later{i}"));
    }
    old.sync().await.unwrap();
    new.transport().gets.borrow_mut().clear();
    new.sync().await.unwrap();
    let downloads = limits_of(&new, "/sync/download");
    // The size a loop ends with is the pacer's after timing its last page, which a loaded machine may have
    // shrunk below that page's request; a restart would ask for exactly the pacer's first size, 100.
    assert!(
        downloads[0] > 100,
        "no restart at 100 rows: {downloads:?} after {limits:?}"
    );
    assert_eq!(local_count(&new, "users"), 3600, "every row arrived");
    assert_eq!(local_users(&new), server_users(&w, &user_of(&old)).await);
}

/// A new device hydrates 3000 users with the browser's default budget (30 ms a page; off natively; a native
/// apply of a few hundred rows takes a few ms): every row arrives, and the requests to `route` start at 100
/// rows and grow. Returns the world, both devices and the requests' limits.
async fn paced_hydration(route: &str, classic: bool) -> (World, Device, Device, Vec<i64>) {
    let w = world(|_| {}).await;
    let username = name();
    let mut old = device(&w, &username).await;
    for i in 0..3000 {
        add_user(&old, &id(), &format!("u{i}"));
    }
    old.sync().await.unwrap();
    let mut new = guest(&w, |c| c.page_budget_ms = Some(30.0));
    new.transport().classic.set(classic);
    sign_in(&w, &mut new, &username).await;
    new.hydrate(false).await.unwrap();
    let limits = limits_of(&new, route);
    assert_eq!(limits.first(), Some(&100), "the first page is small: {limits:?}");
    assert!(limits.iter().any(|l| *l > 100), "pages grow: {limits:?}");
    assert_eq!(local_count(&new, "users"), 3000, "every row arrived");
    assert_eq!(local_users(&new), server_users(&w, &user_of(&old)).await);
    (w, old, new, limits)
}

/// The `limit` of each request of `device` to `route`, in order.
fn limits_of(device: &Device, route: &str) -> Vec<i64> {
    device
        .transport()
        .gets
        .borrow()
        .iter()
        .filter(|p| p.starts_with(route))
        .map(|p| {
            let (_, rest) = p.split_once("limit=").expect("a limit");
            rest.split('&').next().unwrap().parse().unwrap()
        })
        .collect()
}
