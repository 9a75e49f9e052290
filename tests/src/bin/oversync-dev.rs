//! `oversync-dev`: the local stack behind the README's demo command. Starts PostgreSQL (a throwaway cluster
//! unless `DATABASE_URL` is set) and the sync server with the given configuration, prints the URL, and stops
//! everything on Ctrl-C (or when the server exits).

use std::path::PathBuf;

use anyhow::{Context, bail};
use oversync_tests::process::Server;

const USAGE: &str = "usage: oversync-dev --server <oversync-server binary> --config <demo.toml>";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut server, mut config) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => server = args.next().map(PathBuf::from),
            "--config" => config = args.next().map(PathBuf::from),
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    let (Some(server), Some(config)) = (server, config) else {
        bail!("{USAGE}")
    };

    let database_url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            eprintln!("starting a throwaway PostgreSQL cluster…");
            oversync_tests::pg::database("oversync_demo")?
        }
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "dev-secret-change-me".into());
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("JWT_SECRET", secret),
        ("OVERSYNC_LISTEN", format!("127.0.0.1:{port}")),
        ("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
    ];
    let server = Server::start_native_file(&server, &config, &env).context("starting the sync server")?;
    println!();
    println!("  oversync demo is running");
    println!("  sync server:  {}   (try {}/health)", server.base_url, server.base_url);
    println!("  database:     {database_url}");
    println!("  Ctrl-C stops everything.");
    println!();
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping…");
    drop(server);
    Ok(())
}
