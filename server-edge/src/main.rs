//! `oversync-server --config demo.toml`: the native sync server.

#[cfg(not(target_arch = "wasm32"))]
use std::{path::PathBuf, process::ExitCode};

#[cfg(not(target_arch = "wasm32"))]
use oversync_server::Config;

#[cfg(not(target_arch = "wasm32"))]
const USAGE: &str = "usage: oversync-server --config <file.toml|file.json>
       oversync-server adopt --config <file>   give rows already in the business tables to sync, then exit
       oversync-server compact --config <file> run one history compaction pass (docs/history.md), then exit

Environment overrides: DATABASE_URL, JWT_SECRET, PORT, OVERSYNC_LISTEN, OVERSYNC_DEV_SIGNIN,
OVERSYNC_CORS_ORIGINS, OVERSYNC_MAX_UPLOAD_BATCH_SIZE, OVERSYNC_MAX_PAYLOAD_BYTES, OVERSYNC_MAX_REQUEST_BYTES,
OVERSYNC_FK_PRECHECK, OVERSYNC_POOL_SIZE, OVERSYNC_TOKEN_TTL, OVERSYNC_SCHEMA_VERSION,
OVERSYNC_DEV_SIGNIN_ALLOW_REMOTE, OVERSYNC_REQUIRE_EXP, OVERSYNC_JWT_ISSUER, OVERSYNC_JWT_AUDIENCE,
OVERSYNC_JWT_LEEWAY_S, OVERSYNC_MAX_PAGE_BYTES, OVERSYNC_JWKS_URL, OVERSYNC_JWT_ALGORITHMS, OVERSYNC_USER_CLAIM,
OVERSYNC_DEVICE_CLAIM, OVERSYNC_JWKS_CACHE_MIN_S, OVERSYNC_JWKS_CACHE_MAX_S, OVERSYNC_JWKS_COOLDOWN_S,
OVERSYNC_JWKS_TIMEOUT_MS, OVERSYNC_COMPACT_AFTER_S, OVERSYNC_TOMBSTONE_RETENTION_S, OVERSYNC_COMPACT_INTERVAL_S,
OVERSYNC_METRICS_LISTEN, OVERSYNC_METRICS_SECRET, OVERSYNC_LOG_FORMAT.
Logs: RUST_LOG (default info), log_format = json (OVERSYNC_LOG_FORMAT=json) for JSON lines.";

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oversync-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config: Option<PathBuf> = std::env::var_os("OVERSYNC_CONFIG").map(PathBuf::from);
    let mut command: Option<&str> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "adopt" if command.is_none() => command = Some("adopt"),
            "compact" if command.is_none() => command = Some("compact"),
            "--config" | "-c" => {
                config = Some(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--config needs a path\n{USAGE}"))?
                        .into(),
                )
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let path = config.ok_or_else(|| anyhow::anyhow!("no configuration given\n{USAGE}"))?;
    let mut cfg = Config::from_file(&path)?;
    cfg.apply_env(|k| std::env::var(k).ok())?;
    init_logs(cfg.log_format == "json");
    match command {
        Some("adopt") => oversync_server::native::adopt(cfg).await,
        Some("compact") => oversync_server::native::compact(cfg).await,
        _ => oversync_server::native::serve(cfg).await,
    }
}

/// Log lines on stderr, at `RUST_LOG` (default info): text, or with `log_format = "json"` one JSON object per line
/// with the event's fields at the top level and the request's id from its span (docs/operations.md §3).
#[cfg(not(target_arch = "wasm32"))]
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}
