//! Issue 33: the app's backend writes PostgreSQL with plain SQL and the devices' SQLite follows; the device's next
//! edit builds on the backend's row instead of putting the old one back; a column added on the server reaches
//! devices with pending changes without costing them their edits.
use crate::support::*;

async fn backend(w: &World, sql: &str) {
    w.db.batch_execute(sql).await.unwrap();
}

async fn business_name(w: &World, id: &str) -> String {
    w.db.query_one("SELECT name FROM business.users WHERE id = $1::text::uuid", &[&id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_backend_update_reaches_the_device_and_its_next_edit_builds_on_it() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let u = id();
    add_user(&d, &u, "typo");
    d.sync().await.unwrap();
    backend(
        &w,
        &format!("UPDATE business.users SET name = 'fixed by admin' WHERE id = '{u}'"),
    )
    .await;
    d.sync().await.unwrap();
    assert_eq!(local_users(&d), vec![(u.clone(), "fixed by admin".to_owned())]);

    // The next local edit is applied on top of the backend's version, not lost to a conflict.
    rename_user(&d, &u, "edited on the phone");
    d.sync().await.unwrap();
    assert_eq!(pending(&d), 0);
    assert_eq!(business_name(&w, &u).await, "edited on the phone");

    // A row the backend creates, and one it deletes.
    let created = id();
    let user = user_of(&d);
    backend(
        &w,
        &format!(
            "INSERT INTO business.users (owner_id, id, name, email) VALUES ('{user}', '{created}', 'imported', 'i@x');
             DELETE FROM business.users WHERE id = '{u}';"
        ),
    )
    .await;
    d.sync().await.unwrap();
    assert_eq!(local_users(&d), vec![(created, "imported".to_owned())]);
}

#[tokio::test]
async fn a_column_added_on_the_server_reaches_a_device_with_pending_changes_without_a_conflict() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let u = id();
    add_user(&d, &u, "before");
    d.sync().await.unwrap();
    rename_user(&d, &u, "pending edit");
    assert_eq!(pending(&d), 1);

    // ALTER TABLE fires no row triggers: no row gets a new version, so the pending edit still applies.
    backend(
        &w,
        "ALTER TABLE business.users ADD COLUMN tier text NOT NULL DEFAULT 'free'",
    )
    .await;
    d.sync().await.unwrap();
    assert_eq!(pending(&d), 0);
    assert_eq!(business_name(&w, &u).await, "pending edit");

    // The column is in the row's next payload; the device (whose table lacks it) keeps its own columns.
    backend(&w, &format!("UPDATE business.users SET tier = 'gold' WHERE id = '{u}'")).await;
    d.sync().await.unwrap();
    assert_eq!(local_users(&d), vec![(u.clone(), "pending edit".to_owned())]);
    let payload: String =
        w.db.query_one(
            "SELECT payload::text FROM sync.sync_state WHERE pk_uuid = $1::text::uuid",
            &[&u],
        )
        .await
        .unwrap()
        .get(0);
    let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        (&payload["tier"], &payload["name"]),
        (&serde_json::json!("gold"), &serde_json::json!("pending edit"))
    );
    // Once the app adds the column locally too, the device's edits carry it.
    rename_user(&d, &u, "after");
    d.sync().await.unwrap();
    assert_eq!(pending(&d), 0);
}
