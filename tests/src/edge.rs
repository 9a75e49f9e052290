//! The Worker under `wrangler dev` (real workerd, local mode), with its Hyperdrive binding pointed at a local
//! PostgreSQL database. The Worker must have been built first (`server-edge/build-worker.sh`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::process::{Server, StartFailed, shell_quote, tempdir, watched_group};

/// Held while a `wrangler dev` starts (see [`start_wrangler_with`]).
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Starts `wrangler dev` for the built Worker with `vars` (strings, as wrangler `[vars]`) and the Hyperdrive
/// binding `DB` pointed at `database_url` (which must carry a password, even with trust auth).
pub fn start_wrangler(database_url: &str, vars: &[(&str, String)]) -> anyhow::Result<Server> {
    start_wrangler_with(database_url, vars, None, None)
}

/// [`start_wrangler`] on `port` (a free one if `None`), with `assets` served as static files in front of the
/// Worker (wrangler's `[assets]`; the demo app).
pub fn start_wrangler_with(
    database_url: &str,
    vars: &[(&str, String)],
    port: Option<u16>,
    assets: Option<&Path>,
) -> anyhow::Result<Server> {
    let root = repo_root();
    let shim = root.join("server-edge/build/worker/shim.mjs");
    if !shim.exists() {
        bail!(
            "{} is missing: build the Worker with server-edge/build-worker.sh",
            shim.display()
        );
    }
    let wrangler = root.join("server-edge/node_modules/.bin/wrangler");
    if !wrangler.exists() {
        bail!("wrangler is not installed: run npm ci in server-edge/");
    }
    let mut doc = toml::Table::new();
    doc.insert("name".into(), "oversync-edge-test".into());
    doc.insert("main".into(), shim.display().to_string().into());
    doc.insert("compatibility_date".into(), crate::edge::COMPATIBILITY_DATE.into());
    let mut hyperdrive = toml::Table::new();
    hyperdrive.insert("binding".into(), "DB".into());
    hyperdrive.insert("id".into(), "local".into());
    hyperdrive.insert("localConnectionString".into(), database_url.into());
    doc.insert("hyperdrive".into(), toml::Value::Array(vec![hyperdrive.into()]));
    // The users' change hubs (`/sync/stream`), as in the repository's wrangler.toml.
    let hubs: toml::Table = toml::from_str(HUB_CONFIG).expect("hub configuration");
    doc.extend(hubs);
    // Request metrics to Analytics Engine (docs/operations.md §4): `wrangler dev` simulates the dataset, so every
    // test request runs the write path.
    let analytics: toml::Table = toml::from_str(ANALYTICS_CONFIG).expect("analytics configuration");
    doc.extend(analytics);
    let vars: toml::Table = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), toml::Value::from(v.as_str())))
        .collect();
    doc.insert("vars".into(), vars.into());
    if let Some(dir) = assets {
        let mut table = toml::Table::new();
        table.insert("directory".into(), dir.display().to_string().into());
        doc.insert("assets".into(), table.into());
    }
    // One start-up at a time per process: each bundles the Worker and boots workerd, and a test binary starting
    // several side by side on two cores, next to tests loading PostgreSQL, saw one miss the 90 s deadline.
    let _one_at_a_time = STARTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A free port can be taken by another socket before wrangler binds it, and workerd then fails to start: try
    // again on fresh ports, a few times.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start_once(&wrangler, &doc, port) {
            Err(e) if attempt < 3 && e.chain().any(|c| c.is::<StartFailed>()) => {
                eprintln!("wrangler dev failed to start (attempt {attempt}), trying again: {e:#}");
            }
            result => return result,
        }
    }
}

/// Wrangler's own words for a start-up that will not become ready.
const WRANGLER_FAILED: &[&str] = &["The Workers runtime failed to start", "Address already in use"];

fn start_once(wrangler: &Path, doc: &toml::Table, port: Option<u16>) -> anyhow::Result<Server> {
    let dir = tempdir("oversync-wrangler")?;
    let config = dir.join("wrangler.toml");
    std::fs::write(&config, toml::to_string(doc)?)?;
    let (port, inspector) = (port.unwrap_or_else(crate::free_port), crate::free_port());
    let args: Vec<String> = [
        "dev",
        "--config",
        &config.display().to_string(),
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--inspector-port",
        &inspector.to_string(),
        "--show-interactive-dev-session=false",
        // GET /__scheduled runs the scheduled handler (history compaction, docs/history.md).
        "--test-scheduled",
    ]
    .map(String::from)
    .to_vec();
    let cleanup = format!("rm -rf {}", shell_quote(&dir.display().to_string()));
    let mut cmd = watched_group(&wrangler.display().to_string(), &args, "TERM", &cleanup);
    cmd.current_dir(&dir);
    let env = [
        ("WRANGLER_SEND_METRICS", "false".to_owned()),
        ("CLOUDFLARE_CF_FETCH_ENABLED", "false".to_owned()),
        ("WRANGLER_HIDE_BANNER", "true".to_owned()),
        ("WRANGLER_LOG_PATH", dir.join("logs").display().to_string()),
        ("XDG_CONFIG_HOME", dir.join("config").display().to_string()),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let server = Server::wait_ready(cmd, wrangler, &env, "Ready on", Some(base), WRANGLER_FAILED)
        .context("starting wrangler dev")?;
    server.wait_http(std::time::Duration::from_secs(30))?;
    Ok(server)
}

/// The Durable Object binding and migration of `wrangler.toml` (the test below keeps them equal).
pub const HUB_CONFIG: &str = r#"
[[durable_objects.bindings]]
name = "HUB"
class_name = "UserHub"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["UserHub"]
"#;

/// The Analytics Engine binding, as commented in `wrangler.toml`.
pub const ANALYTICS_CONFIG: &str = r#"
[[analytics_engine_datasets]]
binding = "OVERSYNC_ANALYTICS"
dataset = "oversync_requests"
"#;

/// The `compatibility_date` used for tests; kept equal to the one in `wrangler.toml`.
pub const COMPATIBILITY_DATE: &str = "2026-04-20";

/// The Worker's vars for a native TOML configuration file: the configuration as `OVERSYNC_CONFIG` JSON (without
/// `listen`), the `init_sql` file's text as `OVERSYNC_INIT_SQL`, and `JWT_SECRET`.
pub fn worker_vars(config: &Path, secret: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    table.remove("listen");
    let init_sql = match table.remove("init_sql") {
        Some(toml::Value::String(path)) => {
            let path = config.parent().unwrap_or(Path::new(".")).join(path);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        }
        _ => String::new(),
    };
    // `wrangler dev` listens on 127.0.0.1 only: the Worker's dev sign-in (if the file turns it on) needs the
    // explicit opt-out there, since a Worker cannot tell that it is local.
    if table.get("dev_signin").and_then(toml::Value::as_bool) == Some(true) {
        table.insert("dev_signin_allow_remote".into(), toml::Value::Boolean(true));
    }
    Ok(vec![
        ("OVERSYNC_CONFIG", serde_json::to_string(&table)?),
        ("OVERSYNC_INIT_SQL", init_sql),
        ("JWT_SECRET", secret.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hub_configuration_matches_wrangler_toml() {
        let text = std::fs::read_to_string(super::repo_root().join("wrangler.toml")).unwrap();
        let deployed: toml::Table = toml::from_str(&text).unwrap();
        let tested: toml::Table = toml::from_str(super::HUB_CONFIG).unwrap();
        for key in ["durable_objects", "migrations"] {
            assert_eq!(deployed.get(key), tested.get(key), "{key}");
        }
        assert_eq!(deployed["compatibility_date"].as_str(), Some(super::COMPATIBILITY_DATE));
    }
}
