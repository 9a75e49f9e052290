//! `oversync-server adopt` (issue 33, docs/backend-writes.md §6): rows already in a business table get versions and
//! log entries, so devices hydrate them; a second run adopts nothing; rows that cannot be synced are reported by
//! key and left out, never guessed.

use std::process::Command;

use serde_json::json;

use crate::backend::backend;
use crate::support::*;

/// Runs the command with a configuration that registers `business.notes` alone: (status, stdout, stderr).
fn adopt(t: &Target) -> (bool, String, String) {
    let config = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("adopt.toml");
    std::fs::write(
        &config,
        "[[tables]]\nschema = \"business\"\ntable = \"notes\"\nowner_column = \"owner_id\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oversync-server"))
        .args(["adopt", "--config"])
        .arg(&config)
        .env("DATABASE_URL", &t.db_url)
        .env("JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run oversync-server adopt");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn adopt_gives_existing_rows_to_sync_once_and_reports_those_it_cannot_sync() {
    let t = target();
    let user = new_user();
    let (a, b) = (id(), id());
    // Rows from before sync: written with capture off.
    backend(
        &t,
        &format!(
            "BEGIN; SET LOCAL oversync.capture = off;
             INSERT INTO business.notes VALUES ('{user}', '{a}', 'old a'), ('{user}', '{b}', 'old b'),
                                               ('{user}', 'legacy-{user}', 'x');
             COMMIT;"
        ),
    )
    .await
    .unwrap();
    assert_eq!(log_rows(&t, &user).await, 0);

    let (ok, stdout, stderr) = adopt(&t);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "business.notes: left out the row with key legacy-{user}: its key id is not a canonical UUID"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("business.notes: page "), "progress on stderr: {stderr}");
    assert!(stdout.contains("total: "), "{stdout}");
    assert_eq!(log_rows(&t, &user).await, 2);
    let d = Device::new(&t, &user, "d");
    let mut rows: Vec<_> = d
        .download_all("")
        .await
        .into_iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e.payload.unwrap().get()).unwrap())
        .collect();
    rows.sort_by_key(|r| r["body"].as_str().unwrap().to_owned());
    assert_eq!(
        rows,
        vec![json!({"id": a, "body": "old a"}), json!({"id": b, "body": "old b"})]
    );

    // Again: nothing new, and the edits made since are not touched.
    backend(
        &t,
        &format!("UPDATE business.notes SET body = 'new a' WHERE owner_id = '{user}' AND id = '{a}'"),
    )
    .await
    .unwrap();
    let (ok, stdout, stderr) = adopt(&t);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("business.notes: 0 rows adopted"), "{stdout}");
    assert_eq!(log_rows(&t, &user).await, 3);
}
