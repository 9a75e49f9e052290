//! §8.3 `/sync/watch` long-poll (extension, `watch = true`): wakes for other devices' changes only, answers at
//! the timeout otherwise, validates its parameters. (Off by default: `routes.rs` checks the 404.)

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

fn watch_target() -> std::sync::Arc<Target> {
    target_with("watch", "watch = true")
}

async fn watch(d: &Device, query: &str) -> (u16, Value) {
    let r = d
        .http
        .get(format!("{}/sync/watch?{query}", d.base))
        .bearer_auth(&d.token)
        .send()
        .await
        .expect("watch");
    read(r).await
}

async fn add_user(d: &Device, scid: i64) -> i64 {
    let pk = id();
    let r = d.upload(vec![upsert(scid, "users", &pk, 0, user_row(&pk, "w"))]).await;
    r["highest_server_seq"].as_i64().unwrap()
}

#[tokio::test]
async fn capabilities_advertise_long_poll() {
    let t = watch_target();
    let d = Device::new(&t, &new_user(), "d");
    let r = d
        .http
        .get(format!("{}/sync/capabilities", d.base))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let (status, body) = read(r).await;
    assert_eq!(
        (status, &body["features"]["watch"]),
        (200, &json!(["long_poll", "stream"]))
    );
}

#[tokio::test]
async fn another_devices_change_answers_at_once_and_own_changes_do_not_wake() {
    let t = watch_target();
    let user = new_user();
    let (phone, laptop) = (Device::new(&t, &user, "phone"), Device::new(&t, &user, "laptop"));
    let seq = add_user(&phone, 1).await;

    let started = Instant::now();
    assert_eq!(
        watch(&laptop, "after=0&timeout_s=30").await,
        (200, json!({"changed": true, "latest_server_id": seq}))
    );
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once");

    let started = Instant::now();
    let own = watch(&phone, &format!("after={}&timeout_s=1", seq - 1)).await;
    assert_eq!(
        own,
        (200, json!({"changed": false, "latest_server_id": seq - 1})),
        "own change"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the timeout"
    );
    // Nothing above the cursor: no wake either.
    assert_eq!(
        watch(&laptop, &format!("after={seq}&timeout_s=1")).await.1["changed"],
        false
    );
}

#[tokio::test]
async fn a_waiting_poll_wakes_when_another_device_uploads_and_other_users_do_not_wake_it() {
    let t = watch_target();
    let user = new_user();
    let (phone, laptop) = (Device::new(&t, &user, "phone"), Device::new(&t, &user, "laptop"));
    let stranger = Device::new(&t, &new_user(), "phone");
    let started = Instant::now();
    let waiting = tokio::spawn({
        let laptop = laptop.clone();
        async move { watch(&laptop, "after=0&timeout_s=20").await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    add_user(&stranger, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "another user's change does not wake the poll");
    let seq = add_user(&phone, 1).await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!((status, body), (200, json!({"changed": true, "latest_server_id": seq})));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woke within a poll interval of the upload"
    );
}

#[tokio::test]
async fn bad_parameters_are_named_and_a_token_is_required() {
    let t = watch_target();
    let d = Device::new(&t, &new_user(), "d");
    for (query, message) in [
        ("after=-1", "after must be a non-negative integer"),
        ("after=1&timeout_s=0", "timeout_s must be between 1 and 60"),
        ("timeout_s=abc", "timeout_s must be between 1 and 60"),
    ] {
        let (status, body) = watch(&d, query).await;
        assert_eq!(
            (status, body["error"].as_str(), body["message"].as_str()),
            (400, Some("invalid_request"), Some(message))
        );
    }
    let r = d
        .http
        .get(format!("{}/sync/watch?after=0", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
