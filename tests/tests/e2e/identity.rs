//! Tokens from an identity provider (issue 20): they carry no device claim, so the engine names its device in
//! the `Oversync-Device-Id` header of every request; and a token of another user than the one the database
//! belongs to is refused before anything is sent, so that user's pending writes never reach the other account.

use std::cell::RefCell;
use std::collections::VecDeque;

use jsonwebtoken::{EncodingKey, Header};
use oversync_client::transport::{Credentials, NetworkError, Reply, Transport};
use oversync_client::{Engine, EngineConfig, SyncError, TableConfig};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::support::{
    JWT_SECRET, LOCAL_SCHEMA, add_user, dev_token, device, guest, id, local_count, name, pending, server_count,
    server_users, user_of, world,
};

/// What an identity provider issues: a user, an expiry, no `did` (signed with the e2e server's HS256 secret).
fn provider_token(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": user, "exp": exp});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_token_without_a_device_claim_syncs_as_the_device_in_the_header() {
    let w = world(|_| {}).await;
    let user = format!("user-{}", name());
    let mut d = guest(&w, |_| {});
    d.sign_in(&user, provider_token(&user)).unwrap();
    add_user(&d, &id(), "Ann");
    d.sync().await.unwrap();
    assert_eq!(pending(&d), 0);
    // The server could only know the device from the header: the token names none.
    let sources: Vec<String> =
        w.db.query(
            "SELECT DISTINCT source_id FROM sync.server_change_log WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sources, [d.source_id().unwrap()]);
}

#[tokio::test]
async fn a_token_of_another_user_is_refused_before_anything_is_sent_and_loses_nothing() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    let a = user_of(&d);
    let a_token = d.token_for_tests();
    let pks = [id(), id()];
    for pk in &pks {
        add_user(&d, pk, "Ann");
    }
    // A valid, server-signed token of user B, even for this very device.
    let b_name = name();
    let (b, b_token) = dev_token(&w, &b_name, &d.source_id().unwrap()).await;
    d.set_token(b_token);

    let err = d.sync().await.unwrap_err();
    match &err {
        SyncError::TokenUserMismatch { token_user, bound_user } => assert_eq!((token_user, bound_user), (&b, &a)),
        other => panic!("expected TokenUserMismatch, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!(
            "the token is for user {b} but this database belongs to user {a}"
        )),
        "{err}"
    );
    assert_eq!(pending(&d), 2, "A's writes are still pending");
    assert!(
        d.transport().gets.borrow().is_empty(),
        "no download was asked for either"
    );
    assert_eq!(server_count(&w, &b, "users").await, 0);
    assert_eq!(server_count(&w, &a, "users").await, 0);
    let mut b_device = guest(&w, |_| {});
    let (_, token) = dev_token(&w, &b_name, &b_device.source_id().unwrap()).await;
    b_device.sign_in(&b, token).unwrap();
    b_device.sync().await.unwrap();
    assert_eq!(local_count(&b_device, "users"), 0, "B downloads nothing");

    // A's own token sends them where they belong.
    d.set_token(a_token);
    d.sync().await.unwrap();
    assert_eq!(pending(&d), 0);
    let mut want: Vec<_> = pks.iter().map(|pk| (pk.clone(), "Ann".to_owned())).collect();
    want.sort();
    assert_eq!(server_users(&w, &a).await, want);
}

#[tokio::test]
async fn another_users_token_from_the_provider_after_a_401_is_refused_too() {
    let w = world(|_| {}).await;
    let mut d = device(&w, &name()).await;
    add_user(&d, &id(), "Ann");
    let (b, b_token) = dev_token(&w, &name(), &d.source_id().unwrap()).await;
    d.set_token("expired".into());
    d.set_token_provider(move || Some(b_token.clone()));

    let err = d.sync().await.unwrap_err();
    assert!(
        matches!(&err, SyncError::TokenUserMismatch { token_user, .. } if *token_user == b),
        "{err:?}"
    );
    assert_eq!(pending(&d), 1);
    assert_eq!(server_count(&w, &b, "users").await, 0);
}

/// Answers each request with the next scripted reply and records the device each one named.
#[derive(Default)]
struct Scripted {
    replies: RefCell<VecDeque<(u16, Value)>>,
    devices: RefCell<Vec<String>>,
}

impl Scripted {
    fn next(&self, auth: Credentials<'_>) -> Result<Reply, NetworkError> {
        self.devices.borrow_mut().push(auth.device.to_owned());
        let (status, body) = self
            .replies
            .borrow_mut()
            .pop_front()
            .ok_or_else(|| NetworkError("script exhausted".into()))?;
        Ok(Reply {
            status,
            body: body.to_string().into_bytes(),
            retry_after: None,
            request_id: None,
        })
    }
}

impl Transport for Scripted {
    async fn post(&self, _: &str, auth: Credentials<'_>, _: Vec<u8>) -> Result<Reply, NetworkError> {
        self.next(auth)
    }
    async fn get(&self, _: &str, auth: Credentials<'_>) -> Result<Reply, NetworkError> {
        self.next(auth)
    }
}

#[tokio::test]
async fn another_users_token_after_a_401_in_the_middle_of_a_hydration_is_refused() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(LOCAL_SCHEMA).unwrap();
    let cfg = EngineConfig::new("business", vec![TableConfig::new("users")]);
    let mut e = Engine::open(conn, cfg, Scripted::default()).unwrap();
    e.sign_in("user-a", "opaque".into()).unwrap();
    e.set_token_provider(|| Some(provider_token("user-b")));
    let caps = json!({"protocol": "oversync", "protocol_version": 1, "schema_version": 1,
        "limits": {"max_upload_batch_size": 200, "max_payload_bytes": 262144, "max_request_bytes": 8388608,
                   "download_limit_default": 100, "download_limit_max": 1000, "snapshot_limit_max": 1000},
        "features": {"replay_returns_version": true, "next_after_jumps": true, "fk_precheck": "sync_state",
                     "snapshot": true, "watch": []}});
    let pk = id();
    let first_page = json!({"rows": [{"schema": "business", "table": "users", "pk": pk, "server_version": 1,
        "payload": {"id": pk, "name": "Ann", "email": "a@x"}}], "has_more": true,
        "next_after_table": "business.users", "next_after_pk": pk, "window_until": 1, "max_own_source_change_id": 0});
    let unauthorized = json!({"error": "unauthorized", "message": "token expired"});
    e.transport()
        .replies
        .borrow_mut()
        .extend([(200, caps), (200, first_page), (401, unauthorized)]);

    // The second page is refused: the provider's fresh token is user B's, and it is not sent again.
    let err = e.hydrate(false).await.unwrap_err();
    assert!(
        matches!(&err, SyncError::TokenUserMismatch { token_user, bound_user }
            if token_user == "user-b" && bound_user == "user-a"),
        "{err:?}"
    );
    assert!(!e.hydrated().unwrap());
    let device = e.source_id().unwrap();
    assert_eq!(
        *e.transport().devices.borrow(),
        [device.clone(), device.clone(), device],
        "three requests, each naming this database's device"
    );
}
