//! `oversync-dev`: the local stack behind the README's demo command. Starts PostgreSQL (a throwaway cluster
//! unless `DATABASE_URL` is set) and the sync server with the given configuration — the native binary, or the
//! Worker under `wrangler dev` with `--edge` — optionally serving a built web app on the same origin, prints the
//! URL, and stops everything on Ctrl-C (or when the server exits).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use oversync_tests::process::Server;

const USAGE: &str =
    "usage: oversync-dev --server <oversync-server binary> --config <demo.toml> [--static <dir>] [--edge]
  --static <dir>  serve this directory (the built demo app) on the sync server's origin
  --edge          run the Worker under `wrangler dev` (build it first: server-edge/build-worker.sh)
environment: PORT (default 8080), DATABASE_URL (default: a throwaway cluster), JWT_SECRET, RUST_LOG";

struct Args {
    server: PathBuf,
    config: PathBuf,
    static_dir: Option<PathBuf>,
    edge: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut server, mut config, mut static_dir, mut edge) = (None, None, None, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => server = args.next().map(PathBuf::from),
            "--config" => config = args.next().map(PathBuf::from),
            "--static" => static_dir = args.next().map(PathBuf::from),
            "--edge" => edge = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    let (Some(server), Some(config)) = (server, config) else {
        bail!("{USAGE}")
    };
    let static_dir = match static_dir {
        Some(d) => Some(std::fs::canonicalize(&d).with_context(|| format!("--static {}", d.display()))?),
        None => None,
    };
    Ok(Args {
        server,
        config,
        static_dir,
        edge,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let database_url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            eprintln!("starting a throwaway PostgreSQL cluster…");
            oversync_tests::pg::database("oversync_demo")?
        }
    };
    let port: u16 = std::env::var("PORT")
        .unwrap_or_else(|_| "8080".into())
        .parse()
        .context("PORT")?;
    // The server refuses secrets under 32 bytes. This one guards nothing: dev sign-in hands out tokens anyway.
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "oversync-dev-secret-for-loopback-only".into());
    let server = if args.edge {
        eprintln!("starting the Worker under wrangler dev…");
        start_edge(&args.config, &database_url, &secret, port, args.static_dir.as_deref())?
    } else {
        let mut env = vec![
            ("DATABASE_URL", database_url.clone()),
            ("JWT_SECRET", secret),
            ("OVERSYNC_LISTEN", format!("127.0.0.1:{port}")),
            ("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
        ];
        if let Some(dir) = &args.static_dir {
            env.push(("OVERSYNC_STATIC_DIR", dir.display().to_string()));
        }
        Server::start_native_file(&args.server, &args.config, &env).context("starting the sync server")?
    };
    let front = if args.edge { "Worker (wrangler dev)" } else { "native" };
    println!();
    println!("  oversync demo is running");
    if args.static_dir.is_some() {
        println!("  app:          {}/   (open it in a browser)", server.base_url);
    }
    println!(
        "  sync server:  {}   ({front}; try {}/health)",
        server.base_url, server.base_url
    );
    println!("  database:     {database_url}");
    println!("  Ctrl-C stops everything.");
    println!();
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping…");
    drop(server);
    Ok(())
}

/// The Worker gets the native configuration as `OVERSYNC_CONFIG` JSON and the init SQL's text as a var.
fn start_edge(
    config: &Path,
    database_url: &str,
    secret: &str,
    port: u16,
    assets: Option<&Path>,
) -> anyhow::Result<Server> {
    let vars = oversync_tests::edge::worker_vars(config, secret)?;
    oversync_tests::edge::start_wrangler_with(database_url, &vars, Some(port), assets)
}
