//! `GET /sync/stream` on the native server: one task per open WebSocket, woken by the process's change hub
//! (one `LISTEN` connection for all of them), so an idle stream costs the database nothing. Without a live hub
//! the task looks at the log once per second, as a long-poll would.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use oversync_protocol::wire::{PING, PONG, STREAM_PROTOCOL, StreamOffer, StreamTop, close_reason, stream_close};

use super::AppState;
use crate::error::ApiError;
use crate::stream::{IDLE_TIMEOUT, PingBudget, Refusal, Step, WRITE_TIMEOUT, on_notice, until_expiry};

/// How often a stream without a live hub looks at the log, and how soon it retries a look that found no share.
const POLL: Duration = Duration::from_secs(1);
const BUSY_RETRY: Duration = Duration::from_millis(50);

/// Upgrades, then authenticates: a refused stream is accepted and closed with its code, which a browser can
/// read (a refused handshake only shows as a failed connection).
pub(super) async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return api_error(ApiError::InvalidRequest("a WebSocket upgrade is required".into()));
    };
    let offer = StreamOffer::parse(
        headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok()),
    );
    if !offer.protocol {
        return api_error(ApiError::InvalidRequest(format!(
            "offer the {STREAM_PROTOCOL} subprotocol"
        )));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let opened = state.service.open_stream(&state.runtime, &offer, now).await;
    // A client only ever sends `ping`: small buffers (tungstenite's defaults are 128 KiB each way per socket) and
    // a 1 KiB bound on what it may send.
    ws.protocols([STREAM_PROTOCOL])
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 << 10)
        .max_message_size(1024)
        .max_frame_size(1024)
        .on_upgrade(move |socket| async move {
            let mut socket = socket;
            let outcome = match opened {
                Ok(who) => serve(&state, &mut socket, who, now).await,
                Err(refused) => Err(refused),
            };
            if let Err(refused) = outcome {
                let frame = CloseFrame {
                    code: refused.code,
                    reason: close_reason(&refused.reason).into(),
                };
                // Bounded like every write: a device that stopped reading gets no close frame.
                let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
            }
        })
        .into_response()
}

fn api_error(e: ApiError) -> Response {
    let resp = e.into_response();
    let mut out = Response::new(axum::body::Body::from(resp.body));
    *out.status_mut() = axum::http::StatusCode::from_u16(resp.status).unwrap_or_default();
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    out
}

/// Tells the device the top at once, then every other device's commit, until the device leaves (`Ok`) or the
/// stream must close (`Err`: token expired, too many streams, server stopping, silent for too long).
async fn serve(
    state: &AppState,
    socket: &mut WebSocket,
    who: crate::auth::Principal,
    opened_at: Duration,
) -> Result<(), Refusal> {
    let (svc, rt) = (&state.service, &state.runtime);
    // A stream counts as a watch: one share per user for both.
    let _slot = svc.admission.watch(&who.user_id)?;
    let _open = crate::observe::Open::new(crate::observe::names::STREAMS);
    let hub = rt.hub.clone();
    let mut notices = hub.as_deref().map(|h| h.subscribe(&who.user_id));
    let mut closing = state.closing.subscribe();
    let expiry = until_expiry(&who, opened_at).unwrap_or(Duration::MAX);
    let expiry = tokio::time::sleep(expiry.min(Duration::from_secs(400 * 86_400)));
    tokio::pin!(expiry);
    let mut idle_until = tokio::time::Instant::now() + IDLE_TIMEOUT;
    let started = tokio::time::Instant::now();
    let mut pings = PingBudget::new(Duration::ZERO);
    // -1: nothing told yet, so the first look is sent even when it is 0.
    let (mut told, mut look_in) = (-1_i64, Some(Duration::ZERO));
    loop {
        if look_in == Some(Duration::ZERO) {
            look_in = match crate::watch::look(&svc.ctx(), rt, &who, told.max(0), true).await? {
                None => Some(BUSY_RETRY),
                Some(found) => {
                    let top = found.unwrap_or(told.max(0));
                    if top > told {
                        send_top(socket, top).await?;
                        told = top;
                    }
                    None
                }
            };
        }
        let live = hub.as_deref().is_some_and(|h| h.is_live()) && notices.is_some();
        let wait = look_in.or((!live).then_some(POLL)).unwrap_or(Duration::MAX);
        let next_notice = async {
            match notices.as_mut() {
                Some(n) if live => n.next().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            notice = next_notice => match notice {
                Some(notice) => match on_notice(&notice, &who.source_id, told) {
                    Step::Tell(top) => {
                        send_top(socket, top).await?;
                        told = top;
                    }
                    Step::Look => look_in = Some(Duration::ZERO),
                    Step::Ignore => {}
                },
                None => notices = None,
            },
            _ = tokio::time::sleep(wait.min(Duration::from_secs(86_400))) => look_in = Some(Duration::ZERO),
            message = socket.recv() => {
                idle_until = tokio::time::Instant::now() + IDLE_TIMEOUT;
                match message {
                    Some(Ok(Message::Text(text))) if text.as_str() == PING => {
                        if !pings.take(started.elapsed()) {
                            return Err(Refusal::ping_flood());
                        }
                        send(socket, PONG.into()).await?;
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    // A frame past the 1 KiB bound, or broken: refused like any frame but a ping.
                    Some(Err(_)) => return Err(Refusal::unexpected()),
                    // Control frames: tungstenite answers pings itself, but they count against the ping budget.
                    Some(Ok(Message::Ping(_))) if !pings.take(started.elapsed()) => return Err(Refusal::ping_flood()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(_)) => return Err(Refusal::unexpected()),
                }
            }
            _ = &mut expiry => return Err(Refusal::expired()),
            _ = closing.changed() => return Err(going_away("the server is shutting down")),
            _ = tokio::time::sleep_until(idle_until) => return Err(going_away("no ping for 95 s")),
        }
    }
}

fn going_away(reason: &str) -> Refusal {
    Refusal {
        code: stream_close::GOING_AWAY,
        reason: reason.into(),
    }
}

async fn send_top(socket: &mut WebSocket, top: i64) -> Result<(), Refusal> {
    let text = serde_json::to_string(&StreamTop { top }).expect("serialises");
    send(socket, text).await
}

/// A send that fails, or waits past [`WRITE_TIMEOUT`] for the device to read, means the device is gone: the stream
/// ends (its share and socket are given back).
async fn send(socket: &mut WebSocket, text: String) -> Result<(), Refusal> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Refusal {
            code: stream_close::GOING_AWAY,
            reason: String::new(),
        }),
    }
}
