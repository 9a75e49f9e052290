//! §6.8 limits: batch size, payload bytes, request bytes; §9.2 case 18.

use serde_json::{Value, json};

use crate::support::*;

/// §9.2 case 18 (server side).
#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let t = target_with("small_batch", "max_upload_batch_size = 2");
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let changes: Vec<Value> = (0..3)
        .map(|i| {
            let pk = id();
            upsert(i + 1, "users", &pk, 0, user_row(&pk, "n"))
        })
        .collect();
    let r = d.upload(changes.clone()).await;
    let message = "batch too large: changes=3 limit=2";
    assert_eq!(r["accepted"], false);
    assert_eq!(r["highest_server_seq"], 0);
    for (i, s) in statuses(&r).iter().enumerate() {
        assert_eq!(
            s,
            &json!({"source_change_id": i + 1, "status": "invalid", "message": message, "invalid": {"reason": "batch_too_large", "details": {"error": message}}})
        );
    }
    assert_eq!(log_rows(&t, &user).await, 0);
    // Halved, it goes through.
    assert!(
        statuses(&d.upload(changes[..2].to_vec()).await)
            .iter()
            .all(|s| s["status"] == "applied")
    );
    assert!(
        statuses(&d.upload(changes[2..].to_vec()).await)
            .iter()
            .all(|s| s["status"] == "applied")
    );
}

#[tokio::test]
async fn payload_and_request_limits_are_enforced() {
    let t = target_with("small_limits", "max_payload_bytes = 64\nmax_request_bytes = 4096");
    let user = new_user();
    let d = Device::new(&t, &user, "d");
    let pk = id();
    let payload = json!({"id": pk, "name": "n".repeat(40)});
    let n = payload.to_string().len();
    let r = d.upload(vec![upsert(1, "users", &pk, 0, payload)]).await;
    assert_eq!(
        statuses(&r)[0]["message"],
        format!("bad_payload: payload too large: {n} > 64")
    );

    let body = json!({"changes": [], "padding": "p".repeat(5000)}).to_string();
    let envelope = json!({"error": "request_too_large", "message": "Request body exceeds 4096 bytes"});
    assert_eq!(d.upload_raw(body.clone()).await, (413, envelope.clone()));
    // Without a Content-Length (chunked), the body is cut off at the limit all the same.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(body.into_bytes())]);
    assert_eq!(d.upload_raw(reqwest::Body::wrap_stream(stream)).await, (413, envelope));
    assert_eq!(log_rows(&t, &user).await, 0);
}
