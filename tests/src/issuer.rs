//! A small identity provider on 127.0.0.1 for tests and the `--jwks` demo: it publishes a JSON Web Key Set of
//! the test keys in `tests/keys` and signs RS256, ES256 and EdDSA tokens with them, as Auth0 or Cognito would.
//!
//! - `GET /.well-known/jwks.json`: the published keys, with `Cache-Control: max-age=<max_age>`; 503 while
//!   [`Issuer::set_down`]. Every request is counted ([`Issuer::fetches`]).
//! - `POST /token` `{"user": "alice"}`: a one-hour RS256 token for `sub = user-alice` with the issuer's `iss`
//!   and `aud` and no device claim (the demo's sign-in; CORS open to any origin).
//!
//! Keys are named after their files (`rsa-1`, `rsa-2`, `ec-1`, `ec-2`, `ed-1`) and their `kid` is the name.
//! The server runs on a thread of its own, so it outlives the test that started it. With an [`App`] it also
//! serves a built web app and `/demo-config.json` (`www/demo --jwks`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The `iss` of the issuer's tokens.
pub const ISSUER: &str = "https://issuer.oversync.test";
/// The `aud` of the issuer's tokens.
pub const AUDIENCE: &str = "oversync-tests";

/// Every test key: name and algorithm.
pub const KEYS: [(&str, Algorithm); 5] = [
    ("rsa-1", Algorithm::RS256),
    ("rsa-2", Algorithm::RS256),
    ("ec-1", Algorithm::ES256),
    ("ec-2", Algorithm::ES256),
    ("ed-1", Algorithm::EdDSA),
];

struct Published {
    keys: Vec<&'static str>,
    max_age: u64,
    down: bool,
    fetches: usize,
}

/// A running issuer.
#[derive(Clone)]
pub struct Issuer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    state: Arc<Mutex<Published>>,
}

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn alg_of(name: &str) -> Algorithm {
    KEYS.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .unwrap_or_else(|| panic!("no test key {name:?}"))
}

/// The private key `name` (a file in `tests/keys`).
pub fn encoding_key(name: &str) -> EncodingKey {
    let pem = std::fs::read(keys_dir().join(format!("{name}.pem"))).expect("test key");
    match alg_of(name) {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .expect("pem")
}

/// The public JWK of key `name`, `kid` = name, `alg` pinned.
pub fn public_jwk(name: &str) -> Value {
    let jwk = Jwk::from_encoding_key(&encoding_key(name), alg_of(name)).expect("jwk");
    let mut jwk = serde_json::to_value(jwk).expect("json");
    jwk["kid"] = json!(name);
    jwk["use"] = json!("sig");
    jwk
}

/// A token signed by key `name` with header `kid` (`None`: no `kid`), over `claims` as given.
pub fn sign(name: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg_of(name));
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, &encoding_key(name)).expect("sign")
}

/// A web app the issuer serves beside its routes, as an app's own backend would (`www/demo --jwks`): the files
/// of `dir`, and `/demo-config.json` telling the app where the sync server is and where its tokens come from.
pub struct App {
    /// The built app.
    pub dir: PathBuf,
    /// The sync server's base URL.
    pub sync_url: String,
}

impl Issuer {
    /// Starts an issuer on a free port publishing `keys` with `max-age=600`.
    pub fn start(keys: &[&'static str]) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0", keys, None)
    }

    /// Starts an issuer on `addr`, serving `app` too when given.
    pub fn start_on(addr: &str, keys: &[&'static str], app: Option<App>) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(Published {
            keys: keys.to_vec(),
            max_age: 600,
            down: false,
            fetches: 0,
        }));
        let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding the issuer to {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let mut router = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(jwks))
            .route("/token", axum::routing::post(token).options(preflight));
        if let Some(app) = app {
            let config = json!({ "syncUrl": app.sync_url, "tokenUrl": "/token" }).to_string();
            router = router
                .route(
                    "/demo-config.json",
                    axum::routing::get(
                        move || async move { json_response(&serde_json::from_str(&config).expect("json")) },
                    ),
                )
                .fallback_service(tower_http::services::ServeDir::new(&app.dir));
        }
        let app = router.with_state(state.clone());
        std::thread::Builder::new().name("test-issuer".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("issuer");
            });
        })?;
        Ok(Self {
            base: format!("http://{addr}"),
            state,
        })
    }

    /// The JWKS URL for the server's `jwks_url`.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Published) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes exactly `keys` from now on (a rotation).
    pub fn publish(&self, keys: &[&'static str]) {
        self.with(|s| s.keys = keys.to_vec());
    }

    /// The `max-age` sent from now on.
    pub fn set_max_age(&self, secs: u64) {
        self.with(|s| s.max_age = secs);
    }

    /// Answers the key set with 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    /// Key set requests received so far.
    pub fn fetches(&self) -> usize {
        self.with(|s| s.fetches)
    }

    /// A token for `claims` signed by key `name` under its own `kid`, with this issuer's `iss` and `aud` and an
    /// `exp` one hour ahead unless `claims` set them.
    pub fn token(&self, name: &str, claims: Value) -> String {
        mint(name, claims)
    }
}

/// [`Issuer::token`]: signed by key `name` under its own `kid`, with the issuer's `iss`, `aud` and a one-hour
/// `exp` unless `claims` set them.
fn mint(name: &str, claims: Value) -> String {
    let mut claims = claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for (claim, value) in [
        ("iss", json!(ISSUER)),
        ("aud", json!(AUDIENCE)),
        ("exp", json!(now + 3600)),
    ] {
        if claims.get(claim).is_none() {
            claims[claim] = value;
        }
    }
    sign(name, Some(name), &claims)
}

async fn jwks(State(state): State<Arc<Mutex<Published>>>) -> Response {
    let (keys, max_age, down) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.fetches += 1;
        (s.keys.clone(), s.max_age, s.down)
    };
    if down {
        return (StatusCode::SERVICE_UNAVAILABLE, "identity provider down").into_response();
    }
    let mut resp = json_response(&json!({ "keys": keys.iter().map(|k| public_jwk(k)).collect::<Vec<_>>() }));
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}")).expect("header");
    resp.headers_mut().insert(header::CACHE_CONTROL, cache);
    resp
}

fn cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    resp
}

async fn preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

async fn token(State(state): State<Arc<Mutex<Published>>>, body: axum::body::Bytes) -> Response {
    let user = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("user").and_then(Value::as_str).map(str::to_owned))
        .filter(|u| !u.is_empty());
    let Some(user) = user else {
        return cors((StatusCode::BAD_REQUEST, "{\"error\":\"user required\"}").into_response());
    };
    let key = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        *s.keys.first().expect("a published key")
    };
    let token = mint(key, json!({ "sub": format!("user-{user}") }));
    cors(json_response(
        &json!({ "token": token, "user_id": format!("user-{user}") }),
    ))
}

fn json_response(body: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
