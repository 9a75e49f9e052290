//! Changes the server rejects for good (§7.3 `unregistered_table`): the app lets one go, and retries another
//! once the server accepts the table.

use crate::support::*;

fn add_post(d: &Device, id: &str, author: &str) {
    d.conn()
        .execute(
            "INSERT INTO posts (id, title, content, author_id) VALUES (?1, 't', 'c', ?2)",
            [id, author],
        )
        .unwrap();
}

fn local_posts(d: &Device) -> i64 {
    d.conn()
        .query_row("SELECT count(*) FROM posts", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_rejected_change_is_dropped_locally_on_discard_and_sent_again_on_retry() {
    let db = oversync_tests::pg::database("oversync_e2e").expect("database");
    let full = world_on(db.clone(), |_| {}).await;
    let strict = world_on(db.clone(), |c| c.tables.retain(|t| t.table != "posts")).await;
    let path = temp_db();
    let username = name();
    // The database first syncs with a server that syncs posts; then the server stops syncing them (a deploy):
    // the other tables keep syncing, and changes to posts are rejected as `unregistered_table`.
    let mut d = guest_at(&full, &path, |_| {});
    sign_in(&full, &mut d, &username).await;
    d.sync().await.unwrap();
    drop(d);
    let mut d = guest_at(&strict, &path, |_| {});
    let user = sign_in(&strict, &mut d, &username).await;
    let (author, kept, dropped) = (id(), id(), id());
    add_user(&d, &author, "a");
    add_post(&d, &kept, &author);
    add_post(&d, &dropped, &author);
    d.sync().await.unwrap();
    let rejected = d.rejections().unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.iter().all(|r| r.reason == "unregistered_table"));
    assert_eq!(d.status().unwrap().pending, 0, "a rejection is not pending");

    // Discard: the server never had the post, so it goes locally too; the other stays rejected.
    let gone = rejected.iter().find(|r| r.pk == dropped).unwrap().id;
    assert!(d.discard_rejected(gone).unwrap());
    assert!(!d.discard_rejected(gone).unwrap(), "already gone");
    assert_eq!(local_posts(&d), 1);
    assert_eq!(d.rejections().unwrap().len(), 1);
    assert_eq!(d.status().unwrap().pending, 0, "discarding sends nothing");
    drop(d);

    // The server now syncs posts: a retry queues the row as it is, and the next cycle applies it.
    let mut d = guest_at(&full, &path, |_| {});
    sign_in(&full, &mut d, &username).await;
    let retry = d.rejections().unwrap()[0].id;
    assert!(d.retry_rejected(retry).unwrap());
    assert!(d.rejections().unwrap().is_empty());
    assert_eq!(d.status().unwrap().pending, 1);
    d.sync().await.unwrap();
    assert_eq!(d.status().unwrap().pending, 0);
    assert_eq!(
        server_count(&full, &user, "posts").await,
        1,
        "only the retried post reached the server"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_first_sync_of_a_table_the_server_does_not_sync_fails_with_config_naming_it() {
    // Issue 34: a forgotten `serverSchema` (or a table missing from the server's configuration) failed silently,
    // every change landing in the rejections. At a database's first sync the engine compares its tables with the
    // ones the server's capabilities list.
    let strict = world(|c| c.tables.retain(|t| t.table != "posts")).await;
    let mut d = guest_at(&strict, &temp_db(), |_| {});
    sign_in(&strict, &mut d, &name()).await;
    add_user(&d, &id(), "a");
    let err = d.sync().await.unwrap_err();
    assert_eq!(err.code(), "CONFIG", "{err}");
    assert!(err.to_string().contains("does not sync business.posts"), "{err}");
    assert!(err.to_string().contains("business.users"), "names what it syncs: {err}");
    assert_eq!(
        d.status().unwrap().last_error.map(|e| e.code),
        Some("CONFIG".to_owned())
    );
    assert_eq!(d.status().unwrap().pending, 1, "nothing was sent");
    // The wrong server schema: every table is missing.
    let mut w = guest_at(&strict, &temp_db(), |c| c.schema = "public".into());
    sign_in(&strict, &mut w, &name()).await;
    let err = w.sync().await.unwrap_err();
    assert!(
        err.to_string().contains("does not sync public.users, public.posts"),
        "{err}"
    );
}

/// `Diagnostics` (issue 37, what `db.diagnostics()` shows): the queue and its oldest change, the cursor and the
/// server's top, each synced table's rows and pending rows, the file's size and the versions — before and after a
/// sync.
#[tokio::test]
async fn diagnostics_show_the_queue_the_cursor_and_each_table() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let (a, b) = (id(), id());
    add_user(&d, &a, "a");
    add_user(&d, &b, "b");
    add_post(&d, &id(), &a);
    let before = d.diagnostics().unwrap();
    assert_eq!((before.status.pending, before.status.cursor), (3, 0));
    assert!(
        before.oldest_pending_at.as_deref().is_some_and(|t| t.ends_with('Z')),
        "{before:?}"
    );
    let table = |x: &oversync_client::engine::Diagnostics, t: &str| {
        let found = x
            .tables
            .iter()
            .find(|r| r.table == t)
            .unwrap_or_else(|| panic!("{t} in {x:?}"));
        (found.rows, found.pending)
    };
    assert_eq!((table(&before, "users"), table(&before, "posts")), ((2, 2), (1, 1)));
    assert!(before.database_bytes >= 4096 && before.free_bytes >= 0, "{before:?}");
    assert_eq!(before.engine_version, env!("CARGO_PKG_VERSION"));
    assert!(before.sqlite_version.starts_with('3'), "{before:?}");
    assert_eq!(before.device_id.len(), 36, "{before:?}");
    d.sync().await.unwrap();
    let after = d.diagnostics().unwrap();
    assert_eq!((after.status.pending, after.oldest_pending_at.as_deref()), (0, None));
    assert_eq!(table(&after, "users"), (2, 0));
    assert!(
        after.status.cursor > 0 && after.window_until == 0,
        "caught up: {after:?}"
    );
}

/// An HTTP error names the server's request id (issue 37, docs/operations.md §3): the engine's error carries the
/// `X-Request-Id` the real server answered with (its log line's id), and its message says it.
#[tokio::test]
async fn an_http_error_carries_the_servers_request_id() {
    let w = world(|c| c.max_request_bytes = Some(8192)).await;
    let mut d = device(&w, &name()).await;
    add_user(&d, &id(), &"x".repeat(20_000));
    let e = d.sync().await.unwrap_err();
    match &e {
        oversync_client::engine::SyncError::Http {
            status: 413,
            request_id: Some(id),
            ..
        } => assert_eq!(id.len(), 32, "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("(request id "), "{e}");
}
