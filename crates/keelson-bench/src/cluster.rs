//! The cluster under test of `keelson bench pods`: `keelson up` as a child process in a
//! temporary data directory, the time until its node is Ready, the memory of it and of its
//! containerd, and stopping it with SIGTERM whatever happens (so no pods are left behind).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;

use crate::client::{self, Api, ClientError};
use crate::server::status_kib;

/// How long `keelson up` may take until its node is Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `keelson up` may take to exit after SIGTERM (it removes its pods and stops its
/// containerd) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// How often the node is polled while waiting for it to be Ready.
const READY_POLL: Duration = Duration::from_millis(10);

/// The output of `keelson up`, in its data directory.
const LOG_FILE: &str = "up.log";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("creating the temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("finding the keelson executable: {0}")]
    Exe(std::io::Error),
    #[error("finding a free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("creating the log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {exe} up: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("keelson up exited ({status}) before its node was ready; its log ends with:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("the node of keelson up was not ready within {} s (last: {last}); its log ends with:\n{log}", READY_TIMEOUT.as_secs())]
    NotReady { last: String, log: String },
    #[error("the admin credentials of keelson up: {0}")]
    Credentials(#[from] ClientError),
    #[error("reading /proc/{pid}/status: {source}")]
    Proc { pid: u32, source: std::io::Error },
    #[error("/proc/{pid}/status has no VmRSS line")]
    ProcField { pid: u32 },
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// A running `keelson up`; dropping it stops it (SIGTERM, then SIGKILL after a grace period)
/// and removes its data directory unless it is kept.
pub struct Cluster {
    process: UpProcess,
    /// `https://127.0.0.1:PORT`
    pub base: String,
    /// The admin TLS configuration (cluster CA, admin client certificate).
    pub tls: rustls::ClientConfig,
    /// From spawning `keelson up` to the first poll that saw its node's Ready condition True.
    pub start_to_ready: Duration,
}

/// The child process and its data directory.
struct UpProcess {
    child: Child,
    dir: PathBuf,
    // Dropped after the child is stopped (Drop::drop runs before the fields are dropped).
    _temp: Option<tempfile::TempDir>,
}

/// The processes of the cluster's container runtime, with their resident memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeMemory {
    /// containerd itself (none found: 0).
    pub containerd_mib: f64,
    /// All containerd shims together (one per pod sandbox or `ctr run` container).
    pub shims_mib: f64,
    pub shims: usize,
}

/// What a process of the cluster's container runtime is, from its command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeProcess {
    Containerd,
    Shim,
}

impl Cluster {
    /// Starts `<this executable> up` on free ports of 127.0.0.1 and waits until its node is
    /// Ready. With `keep`, the data directory outlives the bench.
    pub async fn start(keep: bool) -> Result<Cluster> {
        let temp = tempfile::Builder::new()
            .prefix("keelson-bench-pods-")
            .tempdir()
            .map_err(ClusterError::TempDir)?;
        let dir = temp.path().to_path_buf();
        let temp = if keep {
            let _ = temp.keep();
            None
        } else {
            Some(temp)
        };
        let port = free_port()?;
        let agent_port = free_port()?;
        let exe = std::env::current_exe().map_err(ClusterError::Exe)?;
        let log_path = dir.join(LOG_FILE);
        let log = std::fs::File::create(&log_path).map_err(|source| ClusterError::Log {
            path: log_path.clone(),
            source,
        })?;
        let log2 = log.try_clone().map_err(|source| ClusterError::Log {
            path: log_path.clone(),
            source,
        })?;
        let mut cmd = Command::new(&exe);
        cmd.arg("up")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--no-merge-kubeconfig")
            .arg("--agent-port")
            .arg(agent_port.to_string())
            .arg("--remove-pods-on-exit")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        stop_with_parent(&mut cmd);
        let spawned = Instant::now();
        let child = cmd.spawn().map_err(|source| ClusterError::Spawn {
            exe: exe.clone(),
            source,
        })?;
        let mut process = UpProcess {
            child,
            dir,
            _temp: temp,
        };
        let base = format!("https://127.0.0.1:{port}");
        let tls = process.wait_node_ready(&base).await?;
        Ok(Cluster {
            process,
            base,
            tls,
            start_to_ready: spawned.elapsed(),
        })
    }

    /// A new client of the API server with its own HTTP/2 connection.
    pub fn connect(&self) -> Api {
        Api::connect(&self.base, &self.tls)
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// The data directory (kept after the bench with `--keep`).
    pub fn dir(&self) -> &Path {
        &self.process.dir
    }

    /// The socket of the containerd that `keelson up` started.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir().join("containerd").join("containerd.sock")
    }

    /// The resident memory (VmRSS) of the whole `keelson up` process now, in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        rss_mib(self.pid())
    }

    /// The resident memory of this cluster's containerd and of its shims now.
    pub fn runtime_memory(&self) -> RuntimeMemory {
        let mut mem = RuntimeMemory::default();
        for (pid, argv) in processes() {
            let Some(kind) = runtime_process(&argv, self.dir()) else {
                continue;
            };
            let Ok(mib) = rss_mib(pid) else { continue };
            match kind {
                RuntimeProcess::Containerd => mem.containerd_mib += mib,
                RuntimeProcess::Shim => {
                    mem.shims_mib += mib;
                    mem.shims += 1;
                }
            }
        }
        mem
    }

    /// The last lines `keelson up` logged.
    pub fn log_tail(&self) -> String {
        log_tail(self.dir())
    }

    /// Stops `keelson up` with SIGTERM (it removes its pods and stops its containerd), killing
    /// it if it has not exited after a grace period. Returns what is still running of its
    /// container runtime afterwards (nothing, normally), as `pid command` lines.
    pub async fn stop(mut self) -> Vec<String> {
        self.process.terminate();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dir = self.dir().to_path_buf();
        // Dropping the process kills it if it is still running.
        drop(self);
        leftovers(&dir)
    }
}

impl UpProcess {
    /// Polls until the API server lists a node whose Ready condition is True, failing early
    /// when `keelson up` exits; returns the admin TLS configuration.
    async fn wait_node_ready(&mut self, base: &str) -> Result<rustls::ClientConfig> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut api: Option<(Api, rustls::ClientConfig)> = None;
        let mut last = String::from("no kubeconfig written yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ClusterError::Exited {
                    status,
                    log: log_tail(&self.dir),
                });
            }
            // The kubeconfig is written once the PKI is complete and the port is bound.
            if api.is_none() && self.dir.join("kubeconfig").exists() {
                let tls = client::admin_tls(&self.dir.join("pki"))?;
                api = Some((Api::connect(base, &tls), tls));
                last = String::from("no node registered yet");
            }
            if let Some((api, tls)) = &api {
                match api.json::<Value>(Method::GET, "/api/v1/nodes", None).await {
                    Ok(nodes) if any_node_ready(&nodes) => return Ok(tls.clone()),
                    Ok(_) => last = String::from("no node is Ready yet"),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(READY_POLL).await;
        }
        Err(ClusterError::NotReady {
            last,
            log: log_tail(&self.dir),
        })
    }

    fn terminate(&self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

impl Drop for UpProcess {
    /// Reached on errors and on Ctrl-C (the bench future is dropped): SIGTERM first, so that
    /// `keelson up` removes its pods and stops its containerd, then SIGKILL.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Whether a list of nodes (`GET /api/v1/nodes`) has a node whose Ready condition is True.
pub fn any_node_ready(nodes: &Value) -> bool {
    nodes
        .get("items")
        .and_then(Value::as_array)
        .is_some_and(|items| items.iter().any(node_ready))
}

/// Whether a node's Ready condition is True.
pub fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conds| {
            conds.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Which process of the container runtime under `dir` a command line is, if any: containerd
/// started with `dir`'s configuration, or a shim serving `dir`'s containerd socket.
pub fn runtime_process(argv: &[String], dir: &Path) -> Option<RuntimeProcess> {
    let program = argv.first()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    let runtime = dir.join("containerd");
    let mentions = |file: &str| {
        let want = runtime.join(file);
        argv.iter().any(|a| Path::new(a) == want)
    };
    if name == "containerd" && mentions("containerd.toml") {
        Some(RuntimeProcess::Containerd)
    } else if name.starts_with("containerd-shim") && mentions("containerd.sock") {
        Some(RuntimeProcess::Shim)
    } else {
        None
    }
}

/// Every process's pid and command line (processes that vanish meanwhile are skipped).
fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, argv))
        })
        .collect()
}

/// The processes of the container runtime under `dir` still running, as `pid command` lines.
fn leftovers(dir: &Path) -> Vec<String> {
    processes()
        .into_iter()
        .filter(|(_, argv)| runtime_process(argv, dir).is_some())
        .map(|(pid, argv)| format!("{pid} {}", argv.join(" ")))
        .collect()
}

/// The resident memory (VmRSS) of a process, in MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|source| ClusterError::Proc { pid, source })?;
    let kib = status_kib(&text, "VmRSS").ok_or(ClusterError::ProcField { pid })?;
    Ok(kib as f64 / 1024.0)
}

/// The last lines of the log in `dir`.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Has the kernel send `keelson up` SIGTERM should the bench die without stopping it (e.g.
/// SIGKILL), so that it still removes its pods. The bench spawns it from its main thread,
/// whose exit is the process's exit.
fn stop_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ClusterError::Port)?;
    Ok(listener.local_addr().map_err(ClusterError::Port)?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_readiness() {
        fn check(nodes: Value, want: bool) {
            assert_eq!(any_node_ready(&nodes), want, "{nodes}");
        }
        let node =
            |conds: Value| json!({"metadata": {"name": "vm"}, "status": {"conditions": conds}});
        check(json!({"items": []}), false);
        check(json!({}), false);
        check(json!({"items": [{"metadata": {"name": "vm"}}]}), false);
        check(
            json!({"items": [node(json!([{"type": "Ready", "status": "True"}]))]}),
            true,
        );
        check(
            json!({"items": [node(json!([{"type": "Ready", "status": "False"}]))]}),
            false,
        );
        check(
            json!({"items": [node(json!([{"type": "MemoryPressure", "status": "True"}, {"type": "Ready", "status": "Unknown"}]))]}),
            false,
        );
        check(
            json!({"items": [node(json!([])), node(json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]))]}),
            true,
        );
    }

    #[test]
    fn runtime_processes() {
        let dir = Path::new("/d");
        fn check(cmdline: &str, dir: &Path, want: Option<RuntimeProcess>) {
            let argv: Vec<String> = cmdline.split(' ').map(String::from).collect();
            assert_eq!(runtime_process(&argv, dir), want, "{cmdline}");
        }
        check(
            "/usr/bin/containerd --config /d/containerd/containerd.toml",
            dir,
            Some(RuntimeProcess::Containerd),
        );
        check(
            "/usr/bin/containerd --config /other/containerd/containerd.toml",
            dir,
            None,
        );
        check("/usr/bin/containerd", dir, None);
        check(
            "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc -address /d/containerd/containerd.sock",
            dir,
            Some(RuntimeProcess::Shim),
        );
        check(
            "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc -address /run/containerd/containerd.sock",
            dir,
            None,
        );
        check("vi /d/containerd/containerd.toml", dir, None);
        check("", dir, None);
    }
}
