//! A server that cuts pages by payload bytes (`max_page_bytes`): a client hydrates and downloads every row over
//! pages far shorter than it asked for, paging by `has_more`.

use crate::support::*;

/// How many GETs `device` sent to `route`.
fn requests(device: &Device, route: &str) -> usize {
    device
        .transport()
        .gets
        .borrow()
        .iter()
        .filter(|p| p.starts_with(route))
        .count()
}

/// A name of about 20 KiB, so that three rows and a bit fill a page of 64 KiB.
fn big_name(label: &str) -> String {
    format!("{label}-{}", "x".repeat(20 * 1024))
}

#[tokio::test]
async fn a_client_hydrates_and_downloads_everything_from_a_server_with_a_small_page_budget() {
    let w = world(|c| c.max_page_bytes = 65_536).await;
    let username = name();
    let mut old = device(&w, &username).await;
    let ids: Vec<String> = (0..40).map(|_| id()).collect();
    for (i, u) in ids.iter().enumerate() {
        add_user(&old, u, &big_name(&format!("u{i}")));
    }
    old.sync().await.unwrap();

    // 40 rows of 20 KiB, four to a page of 64 KiB: ten snapshot pages, where rows alone would make one.
    let mut new = guest(&w, |_| {});
    sign_in(&w, &mut new, &username).await;
    new.hydrate(false).await.unwrap();
    assert!(
        requests(&new, "/sync/snapshot") >= 10,
        "{:?}",
        new.transport().gets.borrow()
    );
    let server = server_users(&w, &user_of(&old)).await;
    assert_eq!(server.len(), 40);
    assert_eq!(local_users(&new), server, "every row arrived whole");

    // Then the log: 20 more rows, two renamed, one deleted, all in cut download pages.
    for i in 0..20 {
        add_user(&old, &id(), &big_name(&format!("later{i}")));
    }
    rename_user(&old, &ids[3], &big_name("renamed"));
    rename_user(&old, &ids[7], "small again");
    delete_row(&old, "users", &ids[11]);
    old.sync().await.unwrap();
    new.transport().gets.borrow_mut().clear();
    new.sync().await.unwrap();
    assert!(
        requests(&new, "/sync/download") >= 5,
        "{:?}",
        new.transport().gets.borrow()
    );
    let server = server_users(&w, &user_of(&old)).await;
    assert_eq!(server.len(), 59);
    assert_eq!(local_users(&new), server, "every change arrived");
}
