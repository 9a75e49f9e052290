//! §6.7 materialisation: conversions, owner scoping, failures recorded while changes stay applied.

use oversync_protocol::encoding::encode_base64;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn classic_values_convert_to_the_column_types() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (pk, reference) = (id(), id());
    let payload = json!({
        "id": pk, "n": 42, "r": 2.5e-7, "ok": 1, "at": 1767225600, "doc": {"k": [1, 2]},
        "blob": encode_base64(&[0, 1, 2, 255]), "ref": encode_base64(uuid::Uuid::parse_str(&reference).unwrap().as_bytes()),
        "label": "hello", "ignored_key": "x"
    });
    let r = d.upload(vec![upsert(1, "typed", &pk, 0, payload)]).await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    let row = db(&t)
        .await
        .query_one(
            "SELECT n, r, ok, extract(epoch FROM at)::int8, doc::text, blob, ref::text, label, owner_id FROM business.typed WHERE id = $1::text::uuid",
            &[&pk],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert!((row.get::<_, f64>(1) - 2.5e-7).abs() < 1e-15);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, i64>(3), 1_767_225_600);
    assert_eq!(row.get::<_, String>(4), r#"{"k": [1, 2]}"#);
    assert_eq!(row.get::<_, Vec<u8>>(5), vec![0, 1, 2, 255]);
    assert_eq!(row.get::<_, String>(6), reference);
    assert_eq!(
        (row.get::<_, String>(7), row.get::<_, String>(8)),
        ("hello".to_owned(), user.clone())
    );

    // RFC 3339 timestamps, NULL and empty BLOBs, and updates that leave unlisted columns alone.
    let r = d
        .upload(vec![upsert(
            2,
            "typed",
            &pk,
            1,
            json!({"id": pk, "at": "2026-03-02T09:15:27.5+01:00", "blob": null, "label": "x"}),
        )])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    let row = db(&t)
        .await
        .query_one(
            "SELECT extract(epoch FROM at)::float8, blob IS NULL, n FROM business.typed WHERE id = $1::text::uuid",
            &[&pk],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 1_772_439_327.5);
    assert!(row.get::<_, bool>(1), "a NULL BLOB stays NULL");
    assert_eq!(row.get::<_, i64>(2), 42);
    let r = d
        .upload(vec![upsert(3, "typed", &pk, 2, json!({"id": pk, "blob": ""}))])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    let empty: Vec<u8> = db(&t)
        .await
        .query_one("SELECT blob FROM business.typed WHERE id = $1::text::uuid", &[&pk])
        .await
        .unwrap()
        .get(0);
    assert!(empty.is_empty(), "an empty BLOB stays empty");
}

#[tokio::test]
async fn a_failure_is_recorded_while_the_change_stays_applied() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (good, bad, unconvertible) = (id(), id(), id());
    let r = d
        .upload(vec![
            upsert(1, "typed", &good, 0, json!({"id": good, "label": "fine"})),
            upsert(2, "typed", &bad, 0, json!({"id": bad, "label": "forbidden"})),
            upsert(
                3,
                "typed",
                &unconvertible,
                0,
                json!({"id": unconvertible, "ref": "not a uuid"}),
            ),
        ])
        .await;
    assert!(all_applied(&r), "{r}");
    let conn = db(&t).await;
    let live: i64 = count(
        &conn,
        "SELECT count(*) FROM sync.sync_state WHERE user_id = $1",
        &[&user],
    )
    .await;
    let business: i64 = count(
        &conn,
        "SELECT count(*) FROM business.typed WHERE owner_id = $1",
        &[&user],
    )
    .await;
    assert_eq!(
        (live, business),
        (3, 1),
        "sync state holds all three, the business table only the good row"
    );
    let rows = conn
        .query("SELECT pk_uuid::text, attempted_version, op, retry_count, error FROM sync.materialize_failures WHERE user_id = $1 ORDER BY error", &[&user])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            (row.get::<_, i64>(1), row.get::<_, String>(2), row.get::<_, i32>(3)),
            (1, "INSERT".to_owned(), 0)
        );
    }
    let errors: Vec<String> = rows.iter().map(|r| r.get(4)).collect();
    assert!(errors.iter().any(|e| e.contains("check constraint")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("column ref")), "{errors:?}");
}

#[tokio::test]
async fn repeated_failures_increment_retry_count() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let bad = id();
    let change = upsert(1, "typed", &bad, 0, json!({"id": bad, "label": "forbidden"}));
    d.upload(vec![change.clone()]).await;
    // Operators' tooling cleans a user's sync state between runs (§6.9); the same version then fails again.
    let conn = db(&t).await;
    for table in ["server_change_log", "sync_row_meta", "sync_state"] {
        conn.execute(&format!("DELETE FROM sync.{table} WHERE user_id = $1"), &[&user])
            .await
            .unwrap();
    }
    d.upload(vec![change]).await;
    let n: i32 = conn
        .query_one(
            "SELECT retry_count FROM sync.materialize_failures WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn files_with_blob_data_materialise_byte_for_byte() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let (f, rv) = (id(), id());
    let data: Vec<u8> = (0..=255).collect();
    // Classic clients send the BLOB key of the parent as base64.
    let file_b64 = encode_base64(uuid::Uuid::parse_str(&f).unwrap().as_bytes());
    let r = d
        .upload(vec![
            upsert(
                2,
                "file_reviews",
                &rv,
                0,
                json!({"id": rv, "review": "nice", "file_id": file_b64}),
            ),
            upsert(
                1,
                "files",
                &f,
                0,
                json!({"id": f, "name": "a.bin", "data": encode_base64(&data)}),
            ),
        ])
        .await;
    assert!(all_applied(&r), "{r}");
    let conn = db(&t).await;
    let stored: Vec<u8> = conn
        .query_one("SELECT data FROM business.files WHERE id = $1::text::uuid", &[&f])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, data);
    let parent: String = conn
        .query_one(
            "SELECT file_id::text FROM business.file_reviews WHERE id = $1::text::uuid",
            &[&rv],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(parent, f);
}

#[tokio::test]
async fn bytea_business_keys_hold_the_uuids_16_bytes() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let r = d
        .upload(vec![upsert(1, "blobs", &pk, 0, json!({"id": pk, "label": "one"}))])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    let r = d
        .upload(vec![upsert(2, "blobs", &pk, 1, json!({"id": pk, "label": "two"}))])
        .await;
    assert_eq!(status_at(&r, 0), WireStatus::Applied);
    let bytes = uuid::Uuid::parse_str(&pk).unwrap().as_bytes().to_vec();
    let conn = db(&t).await;
    let label: String = conn
        .query_one("SELECT label FROM business.blobs WHERE id = $1", &[&bytes])
        .await
        .unwrap()
        .get(0);
    assert_eq!(label, "two");
    d.upload(vec![delete(3, "blobs", &pk, 2)]).await;
    let left: i64 = count(&conn, "SELECT count(*) FROM business.blobs WHERE id = $1", &[&bytes]).await;
    let failures: i64 = count(
        &conn,
        "SELECT count(*) FROM sync.materialize_failures WHERE user_id = $1",
        &[&user],
    )
    .await;
    assert_eq!((left, failures), (0, 0));
}

/// Values reach the write function as `text[]` literals (issue 24): quotes, backslashes, braces, commas, the word
/// NULL and non-ASCII text arrive exactly as sent (NULLs: `classic_values_convert_to_the_column_types`), and a U+0000 (which PostgreSQL text
/// cannot hold) is a recorded failure of that row alone.
#[tokio::test]
async fn text_values_arrive_exactly_whatever_their_characters() {
    let t = target();
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let labels = [
        json!(r#"a "quoted" \ back\\slash {x,y} 'single'"#),
        json!("NULL"),
        json!("{}"),
        json!(""),
        json!("é ✓ 𝄞 \t\n"),
        json!("nul \u{0} inside"),
    ];
    let pks: Vec<String> = labels.iter().map(|_| id()).collect();
    let changes = labels
        .iter()
        .zip(&pks)
        .enumerate()
        .map(|(i, (label, pk))| upsert(i as i64 + 1, "typed", pk, 0, json!({"id": pk, "label": label})))
        .collect();
    let r = d.upload(changes).await;
    assert!(all_applied(&r), "{r}");
    let conn = db(&t).await;
    for (label, pk) in labels.iter().zip(&pks).take(5) {
        let got: Option<String> = conn
            .query_one("SELECT label FROM business.typed WHERE id = $1::text::uuid", &[pk])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got.as_deref(), label.as_str(), "{label}");
    }
    let failed: String = conn
        .query_one(
            "SELECT error FROM sync.materialize_failures WHERE user_id = $1 AND pk_uuid = $2::text::uuid",
            &[&user, &pks[5]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(failed.contains("U+0000"), "{failed}");
    let failures = count(
        &conn,
        "SELECT count(*) FROM sync.materialize_failures WHERE user_id = $1",
        &[&user],
    )
    .await;
    assert_eq!(failures, 1);
}
