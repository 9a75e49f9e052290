//! An overloaded server (429 `too_many_requests`, 503 `server_busy`, both with `Retry-After`) costs the client
//! nothing: every pending change stays, no row is penalised, and the engine hands the server's delay to the
//! scheduler.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use oversync_client::transport::{Credentials, HttpTransport, NetworkError, Reply, Transport};
use oversync_client::{Engine, EngineConfig, SyncError, TableConfig};
use rusqlite::Connection;
use serde_json::json;

use crate::support::{LOCAL_SCHEMA, id};

/// Answers each request with the next scripted reply and records the paths asked for.
#[derive(Default)]
struct Scripted {
    replies: RefCell<VecDeque<Reply>>,
    paths: RefCell<Vec<String>>,
    /// Capabilities come from the script too; else they are answered as a classic server does (404).
    scripted_caps: std::cell::Cell<bool>,
}

impl Scripted {
    fn next(&self, path: &str) -> Result<Reply, NetworkError> {
        // A classic server: no capabilities (the engine asks once, before its first sync).
        if path == "/sync/capabilities" && !self.scripted_caps.get() {
            return Ok(reply(404, json!({"error": "not_found", "message": "Not found"}), None));
        }
        self.paths
            .borrow_mut()
            .push(path.split('?').next().unwrap_or(path).to_owned());
        self.replies
            .borrow_mut()
            .pop_front()
            .ok_or_else(|| NetworkError("script exhausted".into()))
    }
}

impl Transport for Scripted {
    async fn post(&self, path: &str, _: Credentials<'_>, _: Vec<u8>) -> Result<Reply, NetworkError> {
        self.next(path)
    }
    async fn get(&self, path: &str, _: Credentials<'_>) -> Result<Reply, NetworkError> {
        self.next(path)
    }
}

fn reply(status: u16, body: serde_json::Value, retry_after: Option<u64>) -> Reply {
    Reply {
        status,
        body: body.to_string().into_bytes(),
        retry_after: retry_after.map(Duration::from_secs),
        request_id: None,
    }
}

fn overloaded(status: u16, code: &str, secs: u64) -> Reply {
    reply(status, json!({"error": code, "message": "come back later"}), Some(secs))
}

fn empty_page() -> Reply {
    reply(
        200,
        json!({"changes": [], "has_more": false, "next_after": 0, "window_until": 0}),
        None,
    )
}

/// An engine with `n` pending users.
fn engine(n: usize) -> Engine<Scripted> {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(LOCAL_SCHEMA).unwrap();
    let cfg = EngineConfig::new("business", vec![TableConfig::new("users"), TableConfig::new("posts")]);
    let mut e = Engine::open(conn, cfg, Scripted::default()).unwrap();
    e.sign_in("user-x", "token".into()).unwrap();
    for _ in 0..n {
        e.conn()
            .execute("INSERT INTO users (id, name, email) VALUES (?1, 'n', 'e')", [&id()])
            .unwrap();
    }
    e
}

fn script(e: &Engine<Scripted>, replies: impl IntoIterator<Item = Reply>) {
    e.transport().replies.borrow_mut().extend(replies);
}

/// `(pending, penalised)`: penalised rows have an attempt, a backoff time, an error or are parked.
fn queue(e: &Engine<Scripted>) -> (i64, i64) {
    e.fold_captured().unwrap();
    e.conn()
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE attempts > 0 OR next_attempt_at IS NOT NULL
                                               OR last_error IS NOT NULL OR parked = 1)
             FROM _sync_pending",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[tokio::test]
async fn a_429_on_upload_keeps_every_change_penalises_no_row_and_surfaces_retry_after() {
    let mut e = engine(3);
    script(&e, [overloaded(429, "too_many_requests", 7), empty_page()]);
    let err = e.sync().await.unwrap_err();
    assert!(
        matches!(err, SyncError::Http { status: 429, .. }) && err.is_overload(),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(queue(&e), (3, 0), "all 3 rows pending, none counted as an attempt");
    assert_eq!(
        *e.transport().paths.borrow(),
        ["/sync/upload", "/sync/download"],
        "a 429 limits uploads only: the download still runs"
    );
    assert!(
        e.status()
            .unwrap()
            .last_error
            .is_some_and(|e| e.message.contains("429"))
    );

    // The retry sends the same frozen changes and they land.
    let statuses: Vec<_> = (1..=3)
        .map(|scid| json!({"source_change_id": scid, "status": "applied", "new_server_version": 1}))
        .collect();
    script(
        &e,
        [
            reply(
                200,
                json!({"accepted": true, "highest_server_seq": 3, "statuses": statuses}),
                None,
            ),
            empty_page(),
        ],
    );
    let report = e.sync().await.unwrap();
    assert_eq!((report.applied, queue(&e)), (3, (0, 0)));
}

#[tokio::test]
async fn a_503_on_upload_waits_out_the_server_without_downloading() {
    let mut e = engine(2);
    script(&e, [overloaded(503, "server_busy", 2)]);
    let err = e.sync().await.unwrap_err();
    assert!(err.is_overload());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(queue(&e), (2, 0));
    assert_eq!(
        *e.transport().paths.borrow(),
        ["/sync/upload"],
        "a busy server is not asked again in the same cycle"
    );
}

#[tokio::test]
async fn a_retry_after_on_download_and_hydration_is_surfaced_too() {
    let mut e = engine(0);
    script(&e, [overloaded(503, "server_busy", 4)]);
    let err = e.download().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(4)));

    // Hydration from a snapshot-capable server whose first page is refused.
    let caps = json!({"protocol": "oversync", "protocol_version": 1, "schema_version": 1,
        "limits": {"max_upload_batch_size": 200, "max_payload_bytes": 262144, "max_request_bytes": 8388608,
                   "download_limit_default": 100, "download_limit_max": 1000, "snapshot_limit_max": 1000},
        "features": {"replay_returns_version": true, "next_after_jumps": true, "fk_precheck": "sync_state",
                     "snapshot": true, "watch": []}});
    e.transport().scripted_caps.set(true);
    script(&e, [reply(200, caps, None), overloaded(429, "too_many_requests", 9)]);
    let err = e.hydrate(false).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(9)));
    assert!(!e.hydrated().unwrap());
}

#[tokio::test]
async fn other_http_errors_carry_no_retry_hint() {
    let mut e = engine(1);
    script(
        &e,
        [
            reply(500, json!({"error": "internal_error", "message": "x"}), None),
            empty_page(),
        ],
    );
    let err = e.sync().await.unwrap_err();
    assert!(!err.is_overload());
    assert_eq!(err.retry_after(), None);
    assert_eq!(queue(&e), (1, 0));
}

#[tokio::test]
async fn the_http_transport_reads_retry_after() {
    // A one-shot server that answers like an overloaded sync server (the header in an odd case).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).unwrap();
        let body = r#"{"error":"too_many_requests","message":"2 uploads in flight"}"#;
        write!(
            conn,
            "HTTP/1.1 429 Too Many Requests\r\nretry-AFTER: 3\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let reply = HttpTransport::new(format!("http://{addr}"))
        .post(
            "/sync/upload",
            Credentials {
                token: "token",
                device: "d1",
            },
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    server.join().unwrap();
    assert_eq!((reply.status, reply.retry_after), (429, Some(Duration::from_secs(3))));
}
