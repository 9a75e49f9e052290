//! A device offline past the tombstone retention (issue 36, docs/history.md §4): its download is answered
//! `history_pruned`, and the engine re-hydrates from the snapshot, keeping its pending changes and dropping the
//! rows the server deleted meanwhile, without an error.

use std::time::Duration;

use oversync_server::compact::{Horizons, pass};

use crate::support::*;

/// One whole pass with every superseded entry and tombstone old enough to go.
async fn compact_everything(w: &World) -> oversync_server::compact::Totals {
    let h = Horizons {
        compact_after: Duration::ZERO,
        tombstone_retention: Duration::ZERO,
        batch_rows: 7,
    };
    pass(&w.db, &h, u64::MAX, &mut |_| {}).await.expect("compaction")
}

#[tokio::test]
async fn a_device_offline_past_the_retention_rehydrates_keeping_its_pending_edits() {
    let w = world(|_| {}).await;
    let username = name();
    let mut a = device(&w, &username).await;
    let user = user_of(&a);
    let (kept, gone, edited, renamed) = (id(), id(), id(), id());
    for (pk, n) in [
        (&kept, "kept"),
        (&gone, "gone"),
        (&edited, "edited"),
        (&renamed, "renamed"),
    ] {
        add_user(&a, pk, n);
    }
    a.sync().await.unwrap();
    let mut b = device(&w, &username).await;
    b.sync().await.unwrap();
    assert_eq!(local_users(&b), local_users(&a));

    // B goes offline and edits two rows; A deletes one of them and another, renames one, and writes on.
    rename_user(&b, &edited, "edited by b");
    rename_user(&b, &gone, "b edits a row a deletes");
    delete_row(&a, "users", &gone);
    delete_row(&a, "users", &kept);
    rename_user(&a, &renamed, "renamed by a");
    a.sync().await.unwrap();
    let later = id();
    add_user(&a, &later, "later");
    a.sync().await.unwrap();
    let t = compact_everything(&w).await;
    assert_eq!(t.pruned, 2, "{t}");

    // B's download alone first: the re-hydration keeps both pending edits.
    b.download()
        .await
        .expect("a pruned history is re-hydrated, not an error");
    assert_eq!(pending(&b), 2);
    let local: Vec<String> = local_users(&b).into_iter().map(|(k, _)| k).collect();
    assert!(!local.contains(&kept), "a row deleted meanwhile is dropped");
    assert!(local.contains(&gone), "a row with a pending edit stays");
    assert!(local.contains(&later) && local.contains(&renamed));
    assert!(b.status().unwrap().last_error.is_none());

    // Its edits go up, and every device converges with PostgreSQL.
    b.sync().await.unwrap();
    a.sync().await.unwrap();
    let server = server_users(&w, &user).await;
    assert_eq!(local_users(&b), server);
    assert_eq!(local_users(&a), server);
    let names: Vec<&str> = server.iter().map(|(_, n)| n.as_str()).collect();
    assert!(
        names.contains(&"edited by b") && names.contains(&"renamed by a"),
        "{names:?}"
    );
    // The pending edit of a row deleted meanwhile re-created it (its tombstone, the conflict, was gone).
    assert!(names.contains(&"b edits a row a deletes"), "{names:?}");
    assert_eq!(pending(&b), 0);
}
