//! Child processes tied to the life of the test process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Wraps `program args…` in a watchdog: the program is stopped with `signal` once the test process (or the
/// program itself) is gone, and `cleanup` (a shell snippet) runs afterwards.
pub fn watched(program: &str, args: &[String], signal: &str, cleanup: &str) -> Command {
    watched_inner(program, args, signal, cleanup, false)
}

/// Like [`watched`], but the program runs in its own process group and the whole group is signalled (for
/// programs such as wrangler that start children of their own).
pub fn watched_group(program: &str, args: &[String], signal: &str, cleanup: &str) -> Command {
    watched_inner(program, args, signal, cleanup, true)
}

fn watched_inner(program: &str, args: &[String], signal: &str, cleanup: &str, group: bool) -> Command {
    let quoted: Vec<String> = std::iter::once(program.to_owned())
        .chain(args.iter().cloned())
        .map(|a| shell_quote(&a))
        .collect();
    let (prefix, target) = if group { ("setsid ", "-$child") } else { ("", "$child") };
    let script = format!(
        "{prefix}{cmd} & child=$!\n\
         trap 'kill -{signal} {target} 2>/dev/null' TERM INT\n\
         while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done\n\
         kill -{signal} {target} 2>/dev/null; wait $child; status=$?\n{cleanup}\nexit $status",
        cmd = quoted.join(" "),
        parent = std::process::id(),
    );
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

/// Single-quotes a shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A program that exited or reported a failure before it was ready; the text says what it printed.
#[derive(Debug)]
pub struct StartFailed(pub String);

impl std::fmt::Display for StartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartFailed {}

/// A running server process and its base URL.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    child: Child,
}

impl Server {
    /// Starts `binary --config <file>` with `env`; the configuration's `listen` should use port 0. Waits for the
    /// `listening on http://…` line and returns the URL it names.
    pub fn start_native(binary: &Path, config_toml: &str, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let dir = tempdir("oversync-server")?;
        let config = dir.join("server.toml");
        std::fs::write(&config, config_toml)?;
        Self::spawn(binary, &config, &dir, env)
    }

    /// Starts `binary --config <path>` with an existing configuration file (its `listen` overridden through
    /// `env` when needed).
    pub fn start_native_file(binary: &Path, config: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let dir = tempdir("oversync-server")?;
        Self::spawn(binary, config, &dir, env)
    }

    /// [`Server::start_native`] that also writes the server's stderr (its log lines, at `RUST_LOG` from `env`
    /// or `info`) to `log`.
    pub fn start_native_logged(
        binary: &Path,
        config_toml: &str,
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let dir = tempdir("oversync-server")?;
        let config = dir.join("server.toml");
        std::fs::write(&config, config_toml)?;
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            env.push(("RUST_LOG", "info".into()));
        }
        let cmd = Self::command(binary, &config, &dir);
        Self::wait_ready_logged(cmd, binary, &env, "listening on ", None, &[], Some(log))
    }

    fn spawn(binary: &Path, config: &Path, dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::wait_ready(
            Self::command(binary, config, dir),
            binary,
            env,
            "listening on ",
            None,
            &[],
        )
    }

    fn command(binary: &Path, config: &Path, dir: &Path) -> Command {
        let args = vec!["--config".to_owned(), config.display().to_string()];
        let cleanup = format!("rm -rf {}", shell_quote(&dir.display().to_string()));
        watched(&binary.display().to_string(), &args, "TERM", &cleanup)
    }

    /// Spawns `cmd` with `env` and waits (up to 90 s) for a stdout line containing `marker`. The base URL is the
    /// text after the marker, or `known_url` when given. Fails at once, with [`StartFailed`] in the error chain,
    /// when the program exits first or prints a line containing one of `fail_markers` (on stdout or stderr;
    /// stderr is passed through).
    pub fn wait_ready(
        cmd: Command,
        what: &Path,
        env: &[(&str, String)],
        marker: &'static str,
        known_url: Option<String>,
        fail_markers: &'static [&'static str],
    ) -> anyhow::Result<Self> {
        Self::wait_ready_logged(cmd, what, env, marker, known_url, fail_markers, None)
    }

    /// [`Server::wait_ready`], also appending stderr's lines to `log` when given.
    fn wait_ready_logged(
        mut cmd: Command,
        what: &Path,
        env: &[(&str, String)],
        marker: &'static str,
        known_url: Option<String>,
        fail_markers: &'static [&'static str],
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let binary = what;
        let mut log = match log {
            Some(path) => Some(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
            None => None,
        };
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let failed = tx.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sent {
                    continue;
                }
                if let Some(url) = line.split(marker).nth(1) {
                    let _ = tx.send(Ok(url.trim().to_owned()));
                    sent = true;
                } else if fail_markers.iter().any(|m| line.contains(m)) {
                    let _ = tx.send(Err(line));
                    sent = true;
                }
            }
            let _ = tx.send(Err("exited before it was ready".to_owned()));
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Some(file) = log.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(file, "{line}");
                }
                if fail_markers.iter().any(|m| line.contains(m)) {
                    let _ = failed.send(Err(line));
                }
            }
        });
        let outcome = rx.recv_timeout(Duration::from_secs(90));
        if let Ok(Ok(url)) = outcome {
            return Ok(Self {
                base_url: known_url.unwrap_or(url),
                child,
            });
        }
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let _ = child.wait();
        match outcome {
            Ok(Err(why)) => Err(anyhow::Error::new(StartFailed(why)))
                .with_context(|| format!("{} failed to start", binary.display())),
            _ => bail!("{} did not report {marker:?} within 90 s", binary.display()),
        }
    }

    /// Polls `path` until it answers 2xx or `timeout` passes.
    pub fn wait_http(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let addr = self.base_url.trim_start_matches("http://").to_owned();
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} is not accepting connections", self.base_url)
    }
}

impl Server {
    /// The pids of the server itself (the watchdog's children).
    fn server_pids(&self) -> anyhow::Result<Vec<String>> {
        let out = Command::new("pgrep")
            .arg("-P")
            .arg(self.child.id().to_string())
            .output()?;
        // The watchdog's own `sleep 0.3` is a child too, for a moment: it is not the server.
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() != "sleep"))
            .map(str::to_owned)
            .collect();
        if pids.is_empty() {
            bail!("the server process is not running");
        }
        Ok(pids)
    }

    /// Kills the server itself with SIGKILL (not its watchdog), as a crash would.
    pub fn kill_hard(&self) -> anyhow::Result<()> {
        for pid in self.server_pids()? {
            Command::new("kill").arg("-KILL").arg(pid).status()?;
        }
        Ok(())
    }

    /// Resets the server process's peak resident set size (Linux `clear_refs` 5), so [`Server::peak_rss_kib`]
    /// measures from now.
    pub fn reset_peak_rss(&self) -> anyhow::Result<()> {
        for pid in self.server_pids()? {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting the peak RSS")?;
        }
        Ok(())
    }

    /// The server process's peak resident set size in KiB (`VmHWM`) since start or the last reset.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:")
    }

    /// The server process's resident set size in KiB (`VmRSS`) now.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// A `/proc/PID/status` field in kB, summed over the server's processes.
    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let mut total = 0;
        for pid in self.server_pids()? {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .with_context(|| format!("no {field} in /proc/PID/status"))?;
            total += line.trim().trim_end_matches("kB").trim().parse::<u64>()?;
        }
        Ok(total)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM to the watchdog forwards the signal to the server.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the system temp dir.
pub fn tempdir(prefix: &str) -> anyhow::Result<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
