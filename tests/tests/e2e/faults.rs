//! Client-side §9.2 cases with injected faults and resolvers: 4, 5, 6, 10, 11, and a custom merge.

use oversync_client::{Resolution, Resolver};
use serde_json::json;

use crate::support::*;

/// §9.2 case 5: the response is lost after the server applied the change; a retry, then an edit (and: lost, then
/// an edit, then the retry) — no spurious conflict, and the last edit reaches the server.
#[tokio::test]
async fn a_lost_response_is_repeated_exactly_and_later_edits_arrive() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let user = user_of(&d);
    for edit_before_retry in [false, true] {
        let u = id();
        add_user(&d, &u, "v1");
        d.transport().drop_next_upload_response.set(true);
        assert!(d.sync().await.is_err(), "the response was lost");
        if edit_before_retry {
            rename_user(&d, &u, "v2");
            d.sync().await.unwrap();
        } else {
            d.sync().await.unwrap();
            rename_user(&d, &u, "v2");
            d.sync().await.unwrap();
        }
        assert!(d.take_conflicts().is_empty(), "no spurious conflict");
        assert_eq!(pending(&d), 0);
        assert!(server_users(&w, &user).await.contains(&(u.clone(), "v2".into())));
        assert_eq!(d.row_meta("users", &u).unwrap(), Some((2, false)));
    }
}

/// §9.2 case 6: an edit made while an upload is in flight stays pending with the new base.
#[tokio::test]
async fn an_edit_during_an_upload_is_not_lost() {
    let w = world(|_| {}).await;
    let path = temp_db();
    let mut d = guest_at(&w, &path, |_| {});
    sign_in(&w, &mut d, &name()).await;
    let user = user_of(&d);
    let u = id();
    add_user(&d, &u, "sent");
    let (p, key) = (path.clone(), u.clone());
    *d.transport().before_next_upload.borrow_mut() = Some(Box::new(move || {
        // Another connection to the same file writes while the request is on the wire.
        let other = rusqlite::Connection::open(&p).unwrap();
        other
            .execute("UPDATE users SET name = 'edited in flight' WHERE id = ?1", [&key])
            .unwrap();
    }));
    let report = d.upload().await.unwrap();
    // The first send is acknowledged while the row changed: it stays pending with the new base and is sent again
    // in the same cycle.
    assert_eq!((report.applied, pending(&d)), (2, 0));
    assert!(d.take_conflicts().is_empty());
    assert_eq!(server_users(&w, &user).await, vec![(u, "edited in flight".into())]);
    let _ = std::fs::remove_file(path);
}

/// §9.2 case 4: a local update against a remote delete: server-wins deletes the row locally; client-wins
/// re-creates it at the tombstone's version.
#[tokio::test]
async fn update_against_remote_delete_resolves_both_ways() {
    let w = world(|_| {}).await;
    let username = name();
    let mut remote = device(&w, &username).await;
    for client_wins in [false, true] {
        let mut local = guest(&w, |c| {
            if client_wins {
                c.resolver = Resolver::ClientWins;
            }
        });
        sign_in(&w, &mut local, &username).await;
        let u = id();
        add_user(&remote, &u, "x");
        remote.sync().await.unwrap();
        local.sync().await.unwrap();
        delete_row(&remote, "users", &u);
        remote.sync().await.unwrap();
        rename_user(&local, &u, "still wanted");
        local.sync().await.unwrap();
        local.sync().await.unwrap();
        remote.sync().await.unwrap();
        assert_eq!(pending(&local), 0, "not wedged");
        let has = |d: &Device| local_users(d).iter().any(|(i, _)| *i == u);
        assert_eq!((has(&local), has(&remote)), (client_wins, client_wins));
        if client_wins {
            assert_eq!(
                local.row_meta("users", &u).unwrap(),
                Some((3, false)),
                "re-created at the tombstone's version"
            );
        }
    }
}

/// §9.2 case 10: after downloading a peer's update, a client-wins resolver re-uploads the local intent, not the
/// server's data.
#[tokio::test]
async fn client_wins_after_a_download_reuploads_the_local_intent() {
    let w = world(|_| {}).await;
    let username = name();
    let mut peer = device(&w, &username).await;
    let mut me = guest(&w, |c| c.resolver = Resolver::ClientWins);
    sign_in(&w, &mut me, &username).await;
    let u = id();
    add_user(&peer, &u, "start");
    peer.sync().await.unwrap();
    me.sync().await.unwrap();
    rename_user(&me, &u, "mine");
    rename_user(&peer, &u, "theirs");
    peer.sync().await.unwrap();
    me.download().await.unwrap(); // the peer's update overwrites the table row; the intent stays pending
    me.sync().await.unwrap();
    me.sync().await.unwrap();
    peer.sync().await.unwrap();
    assert_eq!(local_users(&peer), vec![(u.clone(), "mine".into())]);
    assert_eq!(local_users(&me), vec![(u, "mine".into())]);
}

/// A custom resolver merges both sides; the conflict is observable.
#[tokio::test]
async fn a_custom_merge_is_written_everywhere_and_reported() {
    let w = world(|_| {}).await;
    let username = name();
    let mut peer = device(&w, &username).await;
    let mut me = guest(&w, |c| {
        c.resolver = Resolver::Custom(Box::new(|_, _, server, local| {
            let mut merged = server.payload.clone().unwrap_or_default();
            let theirs = merged.get("name").and_then(|v| v.as_str()).unwrap_or("").to_owned();
            let mine = local
                .payload
                .as_ref()
                .and_then(|p| p.get("name"))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            merged.insert("name".into(), json!(format!("{theirs}+{mine}")));
            Ok(Resolution::Merge(merged))
        }))
    });
    sign_in(&w, &mut me, &username).await;
    let u = id();
    add_user(&peer, &u, "base");
    peer.sync().await.unwrap();
    me.sync().await.unwrap();
    rename_user(&peer, &u, "theirs");
    rename_user(&me, &u, "mine");
    peer.sync().await.unwrap();
    me.sync().await.unwrap();
    let conflicts = me.take_conflicts();
    assert_eq!(conflicts.len(), 1);
    assert!(matches!(conflicts[0].resolution, Resolution::Merge(_)));
    me.sync().await.unwrap();
    peer.sync().await.unwrap();
    assert_eq!(local_users(&peer), vec![(u.clone(), "theirs+mine".into())]);
    assert_eq!(local_users(&me), local_users(&peer));
}

/// §9.2 case 11: a page with an unknown table and unknown columns applies the rest and advances the cursor.
#[tokio::test]
async fn unknown_tables_and_columns_are_skipped_and_the_cursor_advances() {
    let w = world(|_| {}).await;
    let username = name();
    // A peer whose local users table has an extra column, and which syncs a table the other device lacks.
    let peer = device(&w, &username).await;
    peer.conn()
        .execute_batch("ALTER TABLE users ADD COLUMN nickname TEXT;")
        .unwrap();
    let mut peer = reopen(&w, peer);
    let mut narrow = guest_tables(&w, &["users"]);
    sign_in(&w, &mut narrow, &username).await;
    let (u, p) = (id(), id());
    add_user(&peer, &u, "n");
    peer.conn()
        .execute("UPDATE users SET nickname = 'nick' WHERE id = ?1", [&u])
        .unwrap();
    add_post(&peer, &p, &u, "t");
    peer.sync().await.unwrap();
    narrow.sync().await.unwrap();
    assert_eq!(local_users(&narrow), vec![(u, "n".into())]);
    let status = narrow.status().unwrap();
    assert!(status.cursor > 0 && status.pending == 0);
    assert_eq!(narrow.download().await.unwrap(), 0, "nothing left to apply");
}
