//! A PostgreSQL database for tests: in the cluster of `DATABASE_URL`, or in a throwaway cluster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{shell_quote, tempdir, watched};

/// A running throwaway cluster (kept for the life of the test process).
struct Cluster {
    url: String,
    _child: Child,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The URL of the server (maintenance database `postgres`): `DATABASE_URL` if set, else a throwaway cluster.
pub fn server_url() -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(url);
    }
    match CLUSTER.get_or_init(|| start_cluster().map_err(|e| format!("{e:#}"))) {
        Ok(c) => Ok(c.url.clone()),
        Err(e) => bail!("cannot start a throwaway PostgreSQL cluster: {e}"),
    }
}

/// Creates a fresh, empty database and returns its URL.
pub fn database(prefix: &str) -> anyhow::Result<String> {
    let server = server_url()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    let create = format!("CREATE DATABASE \"{name}\"");
    let url = server.clone();
    crate::block_on_thread(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(&create).await
    })
    .with_context(|| format!("creating database {name}"))?;
    Ok(replace_dbname(&server, &name))
}

fn replace_dbname(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..].find('/').map(|i| i + authority_end);
    let head = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{head}/{name}?{q}"),
        None => format!("{head}/{name}"),
    }
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found in /usr/lib/postgresql (apt-get install postgresql)")?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn start_cluster() -> anyhow::Result<Cluster> {
    let bin = bin_dir()?;
    let dir = tempdir("oversync-pg")?;
    let data = dir.join("data");
    let root = is_root();
    // initdb refuses to run as root: hand the directory to the postgres user and run as that user. setpriv execs
    // in place (runuser would fork and swallow SIGINT), so the watchdog's signal reaches postgres itself.
    let as_user = |program: PathBuf, args: Vec<String>| -> (String, Vec<String>) {
        if root {
            let mut a = ["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
                .map(String::from)
                .to_vec();
            a.push(program.display().to_string());
            a.extend(args);
            ("setpriv".to_owned(), a)
        } else {
            (program.display().to_string(), args)
        }
    };
    if root {
        let ok = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()?
            .success();
        if !ok {
            bail!(
                "chown {} to postgres failed (is the postgres user present?)",
                dir.display()
            );
        }
    }
    let (prog, args) = as_user(
        bin.join("initdb"),
        vec![
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--no-sync".into(),
        ],
    );
    let out = Command::new(&prog)
        .args(&args)
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = crate::free_port();
    let (prog, args) = as_user(
        bin.join("postgres"),
        vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            format!("unix_socket_directories={}", dir.display()),
            "-c".into(),
            "fsync=off".into(),
            "-c".into(),
            "synchronous_commit=off".into(),
            "-c".into(),
            "full_page_writes=off".into(),
            "-c".into(),
            "max_connections=300".into(),
            "-c".into(),
            "shared_buffers=256MB".into(),
            // Lets tests count the statements a request costs (see the server's round-trip test).
            "-c".into(),
            "shared_preload_libraries=pg_stat_statements".into(),
        ],
    );
    let log = dir.join("postgres.log");
    let mut cmd = watched(
        &prog,
        &args,
        "INT",
        &format!("rm -rf {}", shell_quote(&dir.display().to_string())),
    );
    let log_file = std::fs::File::create(&log)?;
    cmd.stdout(Stdio::null()).stderr(log_file);
    let child = cmd.spawn().context("starting postgres")?;
    let url = format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()?;
        if ready.success() {
            return Ok(Cluster { url, _child: child });
        }
        if Instant::now() > deadline {
            bail!(
                "postgres did not become ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_replace_the_path_and_keep_the_query() {
        assert_eq!(
            super::replace_dbname("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(super::replace_dbname("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
