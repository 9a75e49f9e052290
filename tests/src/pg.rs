//! A PostgreSQL database for tests: in the cluster of `DATABASE_URL`, or in a throwaway cluster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{shell_quote, tempdir, watched};

/// The shared throwaway cluster, kept for the life of the test process (statics are never dropped; the
/// watchdog stops it when the process ends).
static CLUSTER: OnceLock<Result<OwnCluster, String>> = OnceLock::new();

/// The URL of the server (maintenance database `postgres`): `DATABASE_URL` if set, else a throwaway cluster.
pub fn server_url() -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(url);
    }
    match CLUSTER.get_or_init(|| OwnCluster::start().map_err(|e| format!("{e:#}"))) {
        Ok(c) => Ok(c.url.clone()),
        Err(e) => bail!("cannot start a throwaway PostgreSQL cluster: {e}"),
    }
}

/// Creates a fresh, empty database and returns its URL.
pub fn database(prefix: &str) -> anyhow::Result<String> {
    create_database(&server_url()?, prefix)
}

fn create_database(server: &str, prefix: &str) -> anyhow::Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    let create = format!("CREATE DATABASE \"{name}\"");
    let url = server.to_owned();
    crate::block_on_thread(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(&create).await
    })
    .with_context(|| format!("creating database {name}"))?;
    Ok(replace_dbname(server, &name))
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

/// A throwaway cluster, which can be restarted (fast shutdown, then start on the same data directory and port), as
/// an operator restart would. Removed when the test process ends.
pub struct OwnCluster {
    /// `postgres://…/postgres` of this cluster.
    pub url: String,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnCluster {
    /// Initialises a cluster in a temporary directory and starts it on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempdir("oversync-pg")?;
        if is_root() {
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
        let data = dir.join("data").display().to_string();
        let (prog, args) = as_user(
            bin.join("initdb"),
            ["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
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
        let url = format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres");
        let mut c = Self {
            url,
            bin,
            dir,
            port,
            child: None,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let data = self.dir.join("data").display().to_string();
        let socket_dir = format!("unix_socket_directories={}", self.dir.display());
        let port = self.port.to_string();
        let (prog, args) = as_user(
            self.bin.join("postgres"),
            [
                "-D",
                &data,
                "-p",
                &port,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &socket_dir,
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
                // Lets tests count the statements a request costs (see the server's round-trip test).
                "-c",
                "shared_preload_libraries=pg_stat_statements",
            ],
        );
        let dir = shell_quote(&self.dir.display().to_string());
        // The directory goes with the test process, not with a restart (marked by the `restarting` file).
        let cleanup = format!("[ -e {dir}/restarting ] || rm -rf {dir}");
        let mut cmd = watched(&prog, &args, "INT", &cleanup);
        let log = self.dir.join("postgres.log");
        cmd.stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log)?);
        self.child = Some(cmd.spawn().context("starting postgres")?);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port, "-q"])
                .status()?;
            if ready.success() {
                return Ok(());
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

    /// Stops the server (fast shutdown: sessions are terminated), keeping its data for [`OwnCluster::start_again`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let marker = self.dir.join("restarting");
        std::fs::write(&marker, b"")?;
        if let Some(mut child) = self.child.take() {
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts a server stopped by [`OwnCluster::stop`] on the same data and port.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        std::fs::remove_file(self.dir.join("restarting"))?;
        self.spawn()
    }

    /// Stops the server (fast shutdown: sessions are terminated) and starts it again on the same data and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// A fresh database in this cluster.
    pub fn database(&self, prefix: &str) -> anyhow::Result<String> {
        create_database(&self.url, prefix)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

/// Runs `program` as the `postgres` user when we are root (initdb refuses root). setpriv execs in place (runuser
/// would fork and swallow SIGINT), so the watchdog's signal reaches postgres itself.
fn as_user<const N: usize>(program: PathBuf, args: [&str; N]) -> (String, Vec<String>) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if is_root() {
        let mut a = ["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
            .map(String::from)
            .to_vec();
        a.push(program.display().to_string());
        a.extend(args);
        ("setpriv".to_owned(), a)
    } else {
        (program.display().to_string(), args)
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
