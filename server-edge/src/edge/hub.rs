//! Push on the Worker (issue 21): Hyperdrive carries no `LISTEN`, so each user has a Durable Object, `UserHub`
//! (binding `HUB`), that holds the user's `/sync/stream` WebSockets with the Hibernation API. The Worker
//! authenticates a stream, looks at the log once for the top and hands the socket to the hub; after an upload
//! that applied changes it tells the hub the new top, fire-and-forget after the answer (`ctx.wait_until`).
//!
//! Backend writes (issue 33) do not pass through the Worker, so while a hub holds streams it also looks at its
//! user's logs every `backend_poll_ms` (its alarm) for changes the backend wrote since the newest id it knows, and
//! tells every stream of one; that newest id is kept in the hub's storage, so a hub that was evicted does not tell
//! old news again or miss new.
//!
//! The hub keeps nothing but its sockets (each with its device and token expiry as attachment): an idle one is
//! evicted from memory while the sockets stay open, and pings are answered by the runtime (`ping` → `pong`)
//! without waking it. A hub that restarted has lost nothing a client needs, since every stream is told the top
//! when it opens, and a lost socket reconnects.

use oversync_protocol::wire::{PING, PONG, STREAM_PROTOCOL, StreamTop, close_reason, stream_close};
use serde::{Deserialize, Serialize};
use worker::{
    DurableObject, Env, Method, Request, RequestInit, Response, ResponseBuilder, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, durable_object,
};

use crate::http::Pushed;
use crate::schema::capture::{BACKEND_NEWS_SQL, TOP_SQL};
use crate::stream::Refusal;

/// The storage key of the newest log id the hub knows.
const KNOWN: &str = "top";

/// The Durable Object namespace binding.
pub const BINDING: &str = "HUB";

/// What the hub keeps with each socket (survives hibernation).
#[derive(Debug, Serialize, Deserialize)]
struct Attachment {
    device: String,
    /// Seconds since the Unix epoch; `None`: the token has no `exp`.
    exp: Option<u64>,
    /// The user (the hub's name), for the look at the logs.
    #[serde(default)]
    user: String,
    /// How often to look for backend writes, ms (0: never).
    #[serde(default)]
    poll_ms: u64,
}

/// A stream the Worker has authenticated, handed to the user's hub.
pub struct Admitted<'a> {
    /// The user (names the hub).
    pub user: &'a str,
    /// The device (its own commits are not news to it).
    pub device: &'a str,
    /// The token's `exp`.
    pub exp: Option<u64>,
    /// The top to tell at once; `None` when the Worker could not look.
    pub top: Option<i64>,
    /// Streams per user (`max_watches_per_user`; 0: no limit).
    pub limit: usize,
    /// `backend_poll_ms`.
    pub poll_ms: u64,
}

/// Hands an authenticated stream to the user's hub; the hub's 101 response goes back to the client.
pub async fn connect(env: &Env, stream: Admitted<'_>) -> Result<Response> {
    let headers = worker::Headers::new();
    headers.set("upgrade", "websocket")?;
    headers.set("x-device", &hex(stream.device.as_bytes()))?;
    headers.set("x-exp", &stream.exp.map_or(String::new(), |e| e.to_string()))?;
    headers.set("x-top", &stream.top.map_or(String::new(), |t| t.to_string()))?;
    headers.set("x-limit", &stream.limit.to_string())?;
    headers.set("x-user", &hex(stream.user.as_bytes()))?;
    headers.set("x-poll", &stream.poll_ms.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init("https://hub/connect", &init)?;
    hub(env, stream.user)?.fetch_with_request(req).await
}

/// Tells the user's hub about a commit, and the hubs of the members of the scopes it wrote (after the upload's
/// answer; a failure only costs latency).
pub async fn notify(env: Env, pushed: Pushed) {
    let first = (pushed.user, pushed.source, pushed.top);
    for (user, source, top) in std::iter::once(first).chain(pushed.also) {
        let body = serde_json::json!({ "source": source, "top": top }).to_string();
        let sent = async {
            let mut init = RequestInit::new();
            init.with_method(Method::Post).with_body(Some(body.into()));
            let req = Request::new_with_init("https://hub/notify", &init)?;
            hub(&env, &user)?.fetch_with_request(req).await
        };
        if let Err(e) = sent.await {
            worker::console_warn!("telling the hub of a commit: {e}");
        }
    }
}

fn hub(env: &Env, user: &str) -> Result<worker::Stub> {
    env.durable_object(BINDING)?.get_by_name(user)
}

/// A stream refused before it reached a hub: accepted, then closed with its code (a browser cannot read a
/// refused handshake's status).
pub fn refuse(refusal: &Refusal) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    pair.server.accept()?;
    pair.server
        .close(Some(refusal.code), Some(close_reason(&refusal.reason)))?;
    upgraded(pair.client)
}

fn upgraded(client: WebSocket) -> Result<Response> {
    Ok(ResponseBuilder::new()
        .with_header("sec-websocket-protocol", STREAM_PROTOCOL)?
        .with_status(101)
        .with_websocket(client)
        .empty())
}

/// Device ids travel hex-encoded between the Worker and the hub (a header value must be ASCII).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

fn now_secs() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// One user's hub.
#[durable_object]
pub struct UserHub {
    state: State,
    env: Env,
}

impl DurableObject for UserHub {
    fn new(state: State, env: Env) -> Self {
        // Answered by the runtime, without waking a hibernated hub.
        if let Ok(pair) = worker::worker_sys::WebSocketRequestResponsePair::new(PING, PONG) {
            state.set_websocket_auto_response(&pair);
        }
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/connect" => self.accept(&req).await,
            "/notify" => {
                #[derive(Deserialize)]
                struct Notice {
                    source: String,
                    top: i64,
                }
                let notice: Notice = req.json().await?;
                self.tell(&notice.source, notice.top);
                self.remember(notice.top).await;
                Response::empty().map(|r| r.with_status(204))
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.close_expired();
        if let Err(e) = self.look().await {
            worker::console_warn!("hub: looking for backend writes: {e}");
        }
        self.arm().await?;
        Response::empty()
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        // Pings are auto-answered; this catches one that raced an awakening. Anything else closes the stream,
        // so a client cannot keep its hub awake with traffic.
        if matches!(message, WebSocketIncomingMessage::String(ref s) if s == PING) {
            let _ = ws.send_with_str(PONG);
        } else {
            let refusal = Refusal::unexpected();
            let _ = ws.close(Some(refusal.code), Some(close_reason(&refusal.reason)));
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _clean: bool) -> Result<()> {
        let _ = ws.close(Some(1000), Some("closed"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }
}

impl UserHub {
    async fn accept(&self, req: &Request) -> Result<Response> {
        let header = |name: &str| req.headers().get(name).ok().flatten().unwrap_or_default();
        let device = unhex(&header("x-device")).unwrap_or_default();
        let exp = header("x-exp").parse().ok();
        let top: Option<i64> = header("x-top").parse().ok();
        let limit: usize = header("x-limit").parse().unwrap_or(0);
        let user = unhex(&header("x-user")).unwrap_or_default();
        let poll_ms: u64 = header("x-poll").parse().unwrap_or(0);
        if limit > 0 && self.state.get_websockets().len() >= limit {
            return refuse(&Refusal {
                code: stream_close::TOO_MANY,
                reason: "Too many watches in flight for this user".into(),
            });
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(Attachment {
            device,
            exp,
            user,
            poll_ms,
        })?;
        if let Some(top) = top {
            pair.server.send(&StreamTop { top })?;
            self.remember(top).await;
        }
        self.arm().await?;
        upgraded(pair.client)
    }

    /// Tells every socket but `source`'s the new top; closes those whose token expired meanwhile.
    fn tell(&self, source: &str, top: i64) {
        let now = now_secs();
        for ws in self.state.get_websockets() {
            let Ok(Some(a)) = ws.deserialize_attachment::<Attachment>() else {
                continue;
            };
            if a.exp.is_some_and(|exp| exp <= now) {
                close_expired(&ws);
            } else if a.device != source {
                let _ = ws.send(&StreamTop { top });
            }
        }
    }

    fn close_expired(&self) {
        let now = now_secs();
        for ws in self.state.get_websockets() {
            if let Ok(Some(a)) = ws.deserialize_attachment::<Attachment>()
                && a.exp.is_some_and(|exp| exp <= now)
            {
                close_expired(&ws);
            }
        }
    }

    /// The alarm rings at the earliest token expiry of the open sockets, or sooner for the next look for backend
    /// writes (none without either).
    async fn arm(&self) -> Result<()> {
        let now = js_sys::Date::now() as i64;
        let next = self
            .attachments()
            .flat_map(|a| {
                [
                    a.exp.map(|exp| exp as i64 * 1000 - now),
                    (a.poll_ms > 0).then_some(a.poll_ms as i64),
                ]
            })
            .flatten()
            .min();
        let storage = self.state.storage();
        match next {
            Some(ms) => storage.set_alarm(ms.max(0)).await,
            None => storage.delete_alarm().await,
        }
    }

    fn attachments(&self) -> impl Iterator<Item = Attachment> {
        self.state
            .get_websockets()
            .into_iter()
            .filter_map(|ws| ws.deserialize_attachment::<Attachment>().ok().flatten())
    }

    /// The newest log id of the user's this hub has told of (or heard told).
    async fn known(&self) -> Option<i64> {
        self.state.storage().get::<i64>(KNOWN).await.ok().flatten()
    }

    async fn remember(&self, top: i64) {
        if self.known().await.is_none_or(|known| top > known) {
            let _ = self.state.storage().put(KNOWN, top).await;
        }
    }

    /// Looks at the user's logs for backend writes above the newest id known, and tells every stream of one
    /// (`crate::schema::capture::BACKEND_NEWS_SQL`). A hub that knows no id yet only learns the top.
    async fn look(&self) -> Result<()> {
        let Some(user) = self
            .attachments()
            .find(|a| a.poll_ms > 0 && !a.user.is_empty())
            .map(|a| a.user)
        else {
            return Ok(());
        };
        let known = self.known().await;
        let (client, closed) = crate::edge::open_db(&self.env)
            .await
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        let answer = match known {
            None => client.query_one(TOP_SQL, &[&user]).await.map(|r| (r.get(0), None)),
            Some(after) => client
                .query_one(BACKEND_NEWS_SQL, &[&user, &after])
                .await
                .map(|r| (r.get::<_, Option<i64>>(0).unwrap_or(after), r.get(1))),
        };
        drop(client);
        let _ = closed.await;
        let (newest, backend): (i64, Option<i64>) = answer.map_err(|e| worker::Error::RustError(e.to_string()))?;
        if backend.is_some() {
            self.tell("", newest);
        }
        self.remember(newest).await;
        Ok(())
    }
}

fn close_expired(ws: &WebSocket) {
    let refusal = Refusal::expired();
    let _ = ws.close(Some(refusal.code), Some(close_reason(&refusal.reason)));
}
