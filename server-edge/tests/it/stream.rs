//! `/sync/stream` (issue 21, docs/realtime.md): a WebSocket that says `{"top": N}` at open and on every other
//! device's commit, answers `ping` with `pong`, and closes with 4001 for a bad or expired token and 4029 past the
//! user's share. Runs against both front doors: natively the hub is the `LISTEN` connection, on the Worker a
//! Durable Object per user.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use oversync_protocol::wire::{STREAM_PROTOCOL, stream_offer};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn stream_target() -> std::sync::Arc<Target> {
    target_with("stream", "watch = true\nmax_watches_per_user = 3")
}

/// Opens a stream offering `protocols`; the server must select `oversync.v1`.
pub(crate) async fn open_with(t: &Target, protocols: &str) -> Ws {
    let mut req = format!("{}/sync/stream", t.base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.expect("upgrade");
    assert_eq!(resp.headers()["sec-websocket-protocol"], STREAM_PROTOCOL);
    ws
}

pub(crate) async fn open(t: &Target, token: &str, device: &str) -> Ws {
    open_with(t, &stream_offer(token, device).join(", ")).await
}

/// The next text message, or the close code and reason; panics after `within`.
pub(crate) async fn next(ws: &mut Ws, within: Duration) -> Result<String, (u16, String)> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(Some(f)))) => return Err((f.code.into(), f.reason.to_string())),
            Some(Ok(Message::Close(None))) | None => return Err((1005, String::new())),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("stream failed: {e}"),
        }
    }
}

pub(crate) async fn next_top(ws: &mut Ws) -> i64 {
    let text = next(ws, Duration::from_secs(10)).await.expect("a top");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["top"].as_i64().unwrap_or_else(|| panic!("not a top: {text}"))
}

/// Nothing arrives within `quiet`.
async fn silent(ws: &mut Ws, quiet: Duration) {
    if let Ok(m) = tokio::time::timeout(quiet, ws.next()).await {
        panic!("expected silence, got {m:?}");
    }
}

async fn add_user(d: &Device, scid: i64) -> i64 {
    let pk = id();
    let r = d.upload(vec![upsert(scid, "users", &pk, 0, user_row(&pk, "s"))]).await;
    r["highest_server_seq"].as_i64().unwrap()
}

pub(crate) fn token(user: &str, device: &str) -> String {
    token_with(json!({"sub": user, "did": device}))
}

#[tokio::test]
async fn capabilities_advertise_the_stream() {
    let t = stream_target();
    let d = Device::new(&t, &new_user(), "d");
    let (status, body) = d.get_raw("/sync/capabilities").await;
    assert_eq!(
        (status, &body["features"]["watch"]),
        (200, &json!(["long_poll", "stream"]))
    );
}

#[tokio::test]
async fn the_top_is_told_at_open_and_on_other_devices_commits_only() {
    let t = stream_target();
    let user = new_user();
    let (phone, laptop) = (Device::new(&t, &user, "phone"), Device::new(&t, &user, "laptop"));
    // A stream opened after a commit (a reconnect, or a hub that restarted) is told the top at once.
    let first = add_user(&phone, 1).await;
    let mut ws = open(&t, &token(&user, "laptop"), "laptop").await;
    assert_eq!(next_top(&mut ws).await, first);

    let started = Instant::now();
    let second = add_user(&phone, 2).await;
    assert_eq!(next_top(&mut ws).await, second);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "pushed, took {:?}",
        started.elapsed()
    );

    // The laptop's own commit is not news to the laptop; another user's neither.
    add_user(&laptop, 1).await;
    add_user(&Device::new(&t, &new_user(), "phone"), 1).await;
    silent(&mut ws, Duration::from_millis(1500)).await;
    let third = add_user(&phone, 3).await;
    assert_eq!(next_top(&mut ws).await, third);

    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(next(&mut ws, Duration::from_secs(10)).await, Ok("pong".into()));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn a_device_from_the_offer_stands_in_for_the_header() {
    let t = stream_target();
    let user = new_user();
    // No device claim: the device comes from the offer, as from `Oversync-Device-Id` on a request.
    let mut ws = open(&t, &token_with(json!({"sub": user})), "tab:1/x").await;
    assert_eq!(next_top(&mut ws).await, 0);
    let own = Device::with_token(&t, token_with(json!({"sub": user})), Some("tab:1/x"));
    add_user(&own, 1).await;
    silent(&mut ws, Duration::from_millis(1500)).await;
    let other = Device::with_token(&t, token_with(json!({"sub": user})), Some("tab:2"));
    let seq = add_user(&other, 1).await;
    assert_eq!(next_top(&mut ws).await, seq);
}

#[tokio::test]
async fn bad_tokens_close_with_4001_and_say_which_check_failed() {
    let t = stream_target();
    let user = new_user();
    let forged = format!("{}x", token(&user, "d"));
    let mut ws = open(&t, &forged, "d").await;
    assert_eq!(
        next(&mut ws, Duration::from_secs(10)).await,
        Err((4001, "Invalid token: bad signature".into()))
    );
    let mut ws = open_with(&t, STREAM_PROTOCOL).await;
    assert_eq!(
        next(&mut ws, Duration::from_secs(10)).await,
        Err((4001, "Authorization header required".into()))
    );

    // Without the subprotocol the handshake itself is refused.
    let plain = reqwest::Client::new()
        .get(format!("{}/sync/stream", t.base))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
}

#[tokio::test]
async fn a_stream_closes_with_4001_when_its_token_expires() {
    let t = stream_target();
    let user = new_user();
    let short = token_with(json!({"sub": user, "did": "d", "exp": now_secs() + 3}));
    let mut ws = open(&t, &short, "d").await;
    assert_eq!(next_top(&mut ws).await, 0);
    let started = Instant::now();
    assert_eq!(
        next(&mut ws, Duration::from_secs(15)).await,
        Err((4001, "Invalid token: expired".into()))
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A fresh token opens again.
    let mut ws = open(&t, &token(&user, "d"), "d").await;
    assert_eq!(next_top(&mut ws).await, 0);
}

#[tokio::test]
async fn a_user_past_the_share_of_streams_is_closed_with_4029() {
    let t = stream_target();
    let user = new_user();
    let mut open_ones = Vec::new();
    for i in 0..3 {
        let device = format!("tab-{i}");
        let mut ws = open(&t, &token(&user, &device), &device).await;
        assert_eq!(next_top(&mut ws).await, 0);
        open_ones.push(ws);
    }
    let mut fourth = open(&t, &token(&user, "tab-3"), "tab-3").await;
    let (code, _) = next(&mut fourth, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(code, 4029);
    // Another user is not affected, and a closed stream gives its share back.
    let mut other = open(&t, &token(&new_user(), "d"), "d").await;
    assert_eq!(next_top(&mut other).await, 0);
    let mut gone = open_ones.pop().unwrap();
    gone.close(None).await.unwrap();
    while gone.next().await.is_some() {}
    let mut again = None;
    for _ in 0..50 {
        let mut ws = open(&t, &token(&user, "tab-4"), "tab-4").await;
        if let Ok(text) = next(&mut ws, Duration::from_secs(10)).await {
            again = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again.as_deref(), Some(r#"{"top":0}"#));
}

#[tokio::test]
async fn anything_but_ping_from_the_client_closes_the_stream() {
    let t = stream_target();
    let user = new_user();
    for frame in [
        Message::text("hello"),
        Message::text("x".repeat(4096)),
        Message::binary(vec![0u8; 16]),
    ] {
        let mut ws = open(&t, &token(&user, "d"), "d").await;
        assert_eq!(next_top(&mut ws).await, 0);
        ws.send(frame).await.unwrap();
        let (code, _) = next(&mut ws, Duration::from_secs(10)).await.unwrap_err();
        // 1008: not a ping; 1009: past the 1 KiB a client may send (natively caught while reading).
        assert!(code == 1008 || code == 1009, "closed with {code}");
    }
}

/// docs/sharing.md §7: a commit to a scope tells every member's streams, but not the writing device.
#[tokio::test]
async fn a_commit_to_a_scope_is_told_to_every_members_streams_but_the_writers_own_device() {
    let t = stream_target();
    let (a, b) = (new_user(), new_user());
    let scope = format!("team-{}", id());
    let db = db(&t).await;
    for u in [&a, &b] {
        db.execute(
            "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, 'writer')",
            &[&scope, u],
        )
        .await
        .unwrap();
    }
    let mut member = open(&t, &token(&b, "b1"), "b1").await;
    assert_eq!(next_top(&mut member).await, 0);
    let mut writer = open(&t, &token(&a, "a1"), "a1").await;
    assert_eq!(next_top(&mut writer).await, 0);
    let pk = id();
    let post = upsert(
        1,
        "business.team_posts",
        &pk,
        0,
        json!({"id": pk, "team_id": scope, "title": "t"}),
    );
    let r = Device::new(&t, &a, "a1").upload(vec![post]).await;
    assert!(all_applied(&r), "{r}");
    let top = next_top(&mut member).await;
    assert!(top > 0);
    silent(&mut writer, Duration::from_millis(1500)).await;
}

/// docs/sharing.md §7: joining or leaving a scope tells the user's streams, so a device fetches the new membership
/// list (and backfills or purges) without waiting for its timer.
#[tokio::test]
async fn a_membership_change_is_told_to_the_users_streams() {
    let t = stream_target();
    let user = new_user();
    let mut ws = open(&t, &token(&user, "phone"), "phone").await;
    let at_open = next_top(&mut ws).await;
    let teams = |body: Value| {
        let url = format!("{}/demo/teams", t.base);
        let token = token(&user, "laptop");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            read(r).await
        }
    };
    let (status, created) = teams(json!({"create": "club"})).await;
    assert_eq!(status, 200, "{created}");
    let joined = next_top(&mut ws).await;
    assert!(joined > at_open, "told {joined} after {at_open}");
    let (status, _) = teams(json!({"leave": created["scope"]})).await;
    assert_eq!(status, 200);
    assert!(next_top(&mut ws).await >= joined);
}

#[tokio::test]
async fn a_loop_of_pings_is_closed_with_1008_and_gives_its_share_back() {
    if edge() {
        // On the Worker the runtime answers `ping` itself (the hub's auto-response) without running our code;
        // the flood costs workerd, whose limits are Cloudflare's.
        return;
    }
    let t = target_with("stream_one", "watch = true\nmax_watches_per_user = 1");
    let user = new_user();
    let mut ws = open(&t, &token(&user, "d"), "d").await;
    assert_eq!(next_top(&mut ws).await, 0);
    // Sent without reading a pong (the audit's flood got ~900k pongs a second): the eleventh is past the burst.
    for _ in 0..11 {
        ws.send(Message::text("ping")).await.unwrap();
    }
    let mut closed = None;
    while closed.is_none() {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "pong"),
            Some(Ok(Message::Close(Some(f)))) => closed = Some(Some((u16::from(f.code), f.reason.to_string()))),
            // A reset is a close too (the server's socket may still hold unread frames when it closes).
            Some(Err(_)) | None | Some(Ok(Message::Close(None))) => closed = Some(None),
            Some(Ok(_)) => {}
        }
    }
    if let Some(Some(close)) = closed {
        assert_eq!(close, (1008, "too many pings: one a second at most".to_owned()));
    }
    // The stream's share is given back: the user's one allowed stream opens again.
    let mut again = open(&t, &token(&user, "d2"), "d2").await;
    assert_eq!(next_top(&mut again).await, 0);
}
