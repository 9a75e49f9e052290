//! `oversync-dev`: the local stack behind the README's demo command. Starts PostgreSQL (a throwaway cluster
//! unless `DATABASE_URL` is set) and the sync server with the given configuration — the native binary, or the
//! Worker under `wrangler dev` with `--edge` — optionally serving a built web app on the same origin, prints the
//! URL, and stops everything on Ctrl-C (or when the server exits). With `--jwks` a test identity provider serves
//! the app and signs its tokens, and the sync server checks them against the provider's JWKS.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use oversync_tests::issuer::{App, Issuer};
use oversync_tests::process::Server;

const USAGE: &str =
    "usage: oversync-dev --server <oversync-server binary> --config <demo.toml> [--static <dir>] [--edge] [--jwks]
  --static <dir>  serve this directory (the built demo app) on the sync server's origin
  --edge          run the Worker under `wrangler dev` (build it first: server-edge/build-worker.sh)
  --jwks          run a test identity provider on PORT that also serves the app (--static) as its backend
                  would; the sync server moves to PORT+1 and checks the provider's RS256 tokens against its
                  JWKS (use with server-edge/demo/jwks.toml)
environment: PORT (default 8080), DATABASE_URL (default: a throwaway cluster), JWT_SECRET, RUST_LOG";

struct Args {
    server: PathBuf,
    config: PathBuf,
    static_dir: Option<PathBuf>,
    edge: bool,
    jwks: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut server, mut config, mut static_dir, mut edge, mut jwks) = (None, None, None, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => server = args.next().map(PathBuf::from),
            "--config" => config = args.next().map(PathBuf::from),
            "--static" => static_dir = args.next().map(PathBuf::from),
            "--edge" => edge = true,
            "--jwks" => jwks = true,
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
        jwks,
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
    // With --jwks the identity provider (and the app) take PORT and the sync server PORT+1.
    let sync_port = if args.jwks { port + 1 } else { port };
    let mut extra = Vec::new();
    let idp = if args.jwks {
        let app = args.static_dir.clone().map(|dir| App {
            dir,
            sync_url: format!("http://127.0.0.1:{sync_port}"),
        });
        let idp = Issuer::start_on(&format!("127.0.0.1:{port}"), &["rsa-1", "ec-1"], app)?;
        extra.push(("OVERSYNC_JWKS_URL", idp.jwks_url()));
        extra.push((
            "OVERSYNC_CORS_ORIGINS",
            format!("http://127.0.0.1:{port},http://localhost:{port}"),
        ));
        Some(idp)
    } else {
        None
    };
    let same_origin_app = args.static_dir.as_deref().filter(|_| !args.jwks);
    let server = if args.edge {
        eprintln!("starting the Worker under wrangler dev…");
        start_edge(&args.config, &database_url, &secret, sync_port, same_origin_app, &extra)?
    } else {
        let mut env = vec![
            ("DATABASE_URL", database_url.clone()),
            ("JWT_SECRET", secret),
            ("OVERSYNC_LISTEN", format!("127.0.0.1:{sync_port}")),
            ("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
        ];
        if let Some(dir) = same_origin_app {
            env.push(("OVERSYNC_STATIC_DIR", dir.display().to_string()));
        }
        env.extend(extra);
        Server::start_native_file(&args.server, &args.config, &env).context("starting the sync server")?
    };
    let front = if args.edge { "Worker (wrangler dev)" } else { "native" };
    println!();
    println!("  oversync demo is running");
    match &idp {
        Some(idp) if args.static_dir.is_some() => {
            println!(
                "  app:          {}/   (open it in a browser; tokens from the test identity provider)",
                idp.base
            )
        }
        _ if args.static_dir.is_some() => println!("  app:          {}/   (open it in a browser)", server.base_url),
        _ => {}
    }
    if let Some(idp) = &idp {
        println!(
            "  identity:     {}   (RS256 tokens; the server checks them against it)",
            idp.jwks_url()
        );
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
    extra: &[(&'static str, String)],
) -> anyhow::Result<Server> {
    let mut vars = oversync_tests::edge::worker_vars(config, secret)?;
    vars.extend(extra.iter().cloned());
    oversync_tests::edge::start_wrangler_with(database_url, &vars, Some(port), assets)
}
