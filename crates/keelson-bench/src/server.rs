//! The server under test: `keelson server` as a child process in a temporary data directory,
//! its readiness, its memory use, and stopping it whatever happens.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http::Method;

use crate::client::{self, Api, ClientError};

/// How long the server may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to exit after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The server's output, in its data directory.
const LOG_FILE: &str = "server.log";

/// The store the server keeps its state in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Memory,
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Memory => "memory",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("creating the temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("finding the keelson executable: {0}")]
    Exe(std::io::Error),
    #[error("finding a free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("creating the server log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("the server exited ({status}) before it was ready; its log ends with:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("the server was not ready within {} s (last error: {last}); its log ends with:\n{log}", READY_TIMEOUT.as_secs())]
    NotReady { last: String, log: String },
    #[error("the admin credentials of the server: {0}")]
    Credentials(#[from] ClientError),
    #[error("reading /proc/{pid}/status: {source}")]
    Proc { pid: u32, source: std::io::Error },
    #[error("/proc/{pid}/status has no {field} line")]
    ProcField { pid: u32, field: &'static str },
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// A running `keelson server`; dropping it kills the server (and removes its data directory
/// unless it is kept).
pub struct ServerProcess {
    process: Process,
    /// `https://127.0.0.1:PORT`
    pub base: String,
    /// The admin TLS configuration (cluster CA, admin client certificate).
    pub tls: rustls::ClientConfig,
}

/// The child process and its data directory; killed and removed on drop.
struct Process {
    child: Child,
    dir: PathBuf,
    // Dropped after the child is killed (Drop::drop runs before the fields are dropped).
    _temp: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts `<this executable> server` on a free port of 127.0.0.1 with the given store and
    /// waits until it answers `/readyz`. With `keep`, the data directory outlives the bench.
    pub async fn start(store: Store, keep: bool) -> Result<ServerProcess> {
        // The API server alone: the controllers and the scheduler would act on the
        // benchmark's pods and measure themselves too.
        Self::start_with(
            store,
            keep,
            &["--disable-controllers", "--disable-scheduler"],
        )
        .await
    }

    /// [`ServerProcess::start`] with `args` added to `keelson server`'s command line.
    pub async fn start_with(store: Store, keep: bool, args: &[&str]) -> Result<ServerProcess> {
        let temp = tempfile::Builder::new()
            .prefix("keelson-bench-")
            .tempdir()
            .map_err(ServerError::TempDir)?;
        let dir = temp.path().to_path_buf();
        let temp = if keep {
            let _ = temp.keep();
            None
        } else {
            Some(temp)
        };
        let port = free_port()?;
        let exe = std::env::current_exe().map_err(ServerError::Exe)?;
        let log_path = dir.join(LOG_FILE);
        let log = std::fs::File::create(&log_path).map_err(|source| ServerError::Log {
            path: log_path.clone(),
            source,
        })?;
        let log2 = log.try_clone().map_err(|source| ServerError::Log {
            path: log_path.clone(),
            source,
        })?;
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--no-merge-kubeconfig")
            .args(args)
            .arg("--store")
            .arg(store.as_str())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| ServerError::Spawn {
            exe: exe.clone(),
            source,
        })?;
        let mut process = Process {
            child,
            dir,
            _temp: temp,
        };
        let base = format!("https://127.0.0.1:{port}");
        let tls = process.wait_ready(&base).await?;
        Ok(ServerProcess { process, base, tls })
    }

    /// A new client of the server with its own HTTP/2 connection.
    pub fn connect(&self) -> Api {
        Api::connect(&self.base, &self.tls)
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Where the server keeps its data (kept after the bench with `--keep`).
    pub fn dir(&self) -> &Path {
        &self.process.dir
    }

    /// The server's resident memory now (VmRSS), in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        self.status_mib("VmRSS")
    }

    /// The server's peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        self.status_mib("VmHWM")
    }

    fn status_mib(&self, field: &'static str) -> Result<f64> {
        let pid = self.pid();
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| ServerError::Proc { pid, source })?;
        let kib = status_kib(&text, field).ok_or(ServerError::ProcField { pid, field })?;
        Ok(kib as f64 / 1024.0)
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        log_tail(self.dir())
    }

    /// Asks the server to stop (SIGINT), killing it if it has not exited after a grace period.
    pub async fn stop(mut self) {
        self.process.interrupt();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Dropping the process kills it.
    }
}

impl Process {
    /// Polls until the server answers `GET /readyz` with 200, failing early when it exits;
    /// returns the admin TLS configuration.
    async fn wait_ready(&mut self, base: &str) -> Result<rustls::ClientConfig> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut api: Option<(Api, rustls::ClientConfig)> = None;
        let mut last = String::from("no kubeconfig written yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::Exited {
                    status,
                    log: log_tail(&self.dir),
                });
            }
            // The kubeconfig is written once the PKI is complete and the port is bound.
            if api.is_none() && self.dir.join("kubeconfig").exists() {
                let tls = client::admin_tls(&self.dir.join("pki"))?;
                api = Some((Api::connect(base, &tls), tls));
            }
            if let Some((api, tls)) = &api {
                match api.fetch(Method::GET, "/readyz", None).await {
                    Ok(_) => return Ok(tls.clone()),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ServerError::NotReady {
            last,
            log: log_tail(&self.dir),
        })
    }

    fn interrupt(&self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last lines of the log `file` in `dir`.
pub(crate) fn log_tail_of(dir: &Path, file: &str) -> String {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn log_tail(dir: &Path) -> String {
    log_tail_of(dir, LOG_FILE)
}

/// Has the kernel kill the server should the bench die without cleaning up (e.g. SIGKILL).
/// The bench spawns the server from its main thread, whose exit is the process's exit.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ServerError::Port)?;
    Ok(listener.local_addr().map_err(ServerError::Port)?.port())
}

/// The value in KiB of a `Field:   1234 kB` line of `/proc/<pid>/status`.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name != field {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let status = "Name:\tkeelson\nVmPeak:\t  120000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   28524 kB\nThreads:\t3\n";
        fn check(status: &str, field: &str, want: Option<u64>) {
            assert_eq!(status_kib(status, field), want, "field {field}");
        }
        check(status, "VmRSS", Some(28524));
        check(status, "VmHWM", Some(40960));
        check(status, "Threads", Some(3));
        check(status, "VmSwap", None);
        check(status, "Vm", None);
        check("VmRSS:\tlots kB\n", "VmRSS", None);
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().expect("a free port");
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }
}
