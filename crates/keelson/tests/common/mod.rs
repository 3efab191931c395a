//! Test harness: starts a real `keelson server` on a free port with a temporary data dir and
//! drives the real `kubectl` against it (`$KUBECTL`, default `kubectl` on the PATH).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running server and a kubectl pointed at it.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub kubeconfig: PathBuf,
    pub port: u16,
    pub extra_args: Vec<String>,
    /// `keelson up` (a node agent on containerd) rather than `keelson server`.
    node: bool,
}

/// The kubectl binary the tests use.
pub fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// Whether kubectl can run here; tests that need it say so and skip when it cannot.
pub fn have_kubectl() -> bool {
    let ok = Command::new(kubectl_bin())
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIP: kubectl ({}) is not on PATH; this test drives the real kubectl",
            kubectl_bin()
        );
    }
    ok
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Cluster {
    /// Starts a server with the SQLite store.
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = Cluster {
            kubeconfig: dir.path().join("data/kubeconfig"),
            dir,
            child: None,
            port: free_port(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            node: false,
        };
        c.spawn();
        c
    }

    /// Starts `keelson up` (API server, controllers, scheduler and a node agent on its own
    /// containerd, pulling docker.io images from the local test registry) and waits until the
    /// node is Ready. Call only when [`have_node`] says yes.
    pub fn up(extra: &[&str]) -> Cluster {
        Self::up_with(extra, true)
    }

    /// [`Cluster::up`], choosing whether a clean stop removes the pods (without, they keep
    /// running for the next start to adopt).
    pub fn up_with(extra: &[&str], remove_pods_on_exit: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent_port = free_port().to_string();
        let mut args = vec![
            "--agent-port",
            &agent_port,
            "--registry-mirror",
            "docker.io=http://127.0.0.1:5000",
        ];
        if remove_pods_on_exit {
            args.push("--remove-pods-on-exit");
        }
        args.extend_from_slice(extra);
        let mut c = Cluster {
            kubeconfig: dir.path().join("data/kubeconfig"),
            dir,
            child: None,
            port: free_port(),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            node: true,
        };
        c.spawn();
        eventually(30, || {
            let out = c.kubectl(&["get", "nodes", "--no-headers"]);
            String::from_utf8_lossy(&out.stdout)
                .contains(" Ready ")
                .then_some(())
        });
        c
    }

    /// Stops the process with SIGTERM (a clean shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            terminate(c);
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server process and waits until it answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_keelson"))
            .arg(if self.node { "up" } else { "server" })
            .args(["--no-merge-kubeconfig", "--listen"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.kubeconfig.exists()
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kcache"))
            .args(args);
        cmd
    }

    /// Runs kubectl and returns its output, whatever the exit code.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl, which must succeed; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, which must fail; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} succeeded but should have failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs kubectl with `input` on stdin.
    pub fn with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// `kubectl <verb> -f -` with YAML on stdin, which must succeed; returns stdout.
    #[track_caller]
    pub fn apply_stdin(&self, verb: &str, yaml: &str) -> String {
        let out = self.with_stdin(&[verb, "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl {verb} -f - failed:\n{}\n---\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file under the test's temp dir.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).expect("write file");
        p
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.node {
            // A clean stop removes the pods and stops the containerd this cluster started.
            self.stop();
        } else {
            self.kill();
        }
    }
}

/// Sends SIGTERM and waits up to 30 s for the process to end (then SIGKILL).
pub fn terminate(mut c: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Whether tests that run real containers can run here: root, containerd and the CNI plugins
/// installed, kubectl present. They skip (saying why) where not; where they can run, the test
/// images must be in the local registry (`scripts/test-images`), or they fail saying so.
pub fn have_node() -> bool {
    if !have_kubectl() {
        return false;
    }
    if !is_root() {
        eprintln!("SKIP: this test runs real containers: it needs root (CI runs it as root)");
        return false;
    }
    let found = |p: &str| Path::new(p).exists();
    if !(found("/usr/bin/containerd") || found("/usr/local/bin/containerd")) {
        eprintln!("SKIP: this test runs real containers: containerd is not installed");
        return false;
    }
    let registry = std::net::TcpStream::connect(("127.0.0.1", 5000)).is_ok();
    assert!(
        registry,
        "root and containerd are here but no test registry answers on 127.0.0.1:5000: run scripts/test-images first"
    );
    true
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
#[track_caller]
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /` on `ip:port` from this machine; the response body, or None if nothing answers.
pub fn http_get(ip: &str, port: u16) -> Option<String> {
    use std::io::Read;
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// [`http_get`] until it answers with a body containing `want` (a container is Running
/// before its server listens), for at most 10 s; the body.
#[track_caller]
pub fn http_get_until(ip: &str, port: u16, want: &str) -> String {
    eventually(10, || http_get(ip, port).filter(|b| b.contains(want)))
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Several machines on one host, for multi-node tests (network namespaces on a bridge).
pub mod hosts;
