//! The containerd keelson owns: its config (rendered as a value, then written), registry
//! mirrors in containerd's hosts format, and the process itself — started in its own process
//! group, or reused when a previous run left it answering on the socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::{self, CriClient};
use crate::cni::{HOSTPORT_HANDLER, hostport_conf_dir, write_atomic};
use crate::runtime::Runtime;

/// Where CNI plugins are installed by the distributions' packages, in order of preference.
pub const CNI_BIN_DIR_CANDIDATES: [&str; 3] = ["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"];
/// Directories searched for binaries after `PATH`.
const EXTRA_BIN_DIRS: [&str; 3] = ["/usr/bin", "/usr/local/bin", "/usr/sbin"];
/// Directories containerd's `PATH` always has, so its shims find `runc` (in /usr/sbin on
/// Debian) even when keelson runs with a short `PATH`.
const SYSTEM_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// How often [`Containerd::start`] asks a starting containerd whether it answers.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long [`Containerd::start`] waits for a starting containerd.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Containerd::stop`] waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of containerd's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 15;

/// Errors starting containerd or writing its files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid registry name {0:?}")]
    InvalidRegistry(String),
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{binary} exited ({status}) before answering on {socket}; its log ends with:\n{log}")]
    Exited {
        binary: PathBuf,
        socket: PathBuf,
        status: String,
        log: String,
    },
    #[error("containerd did not answer on {socket} within {}s ({reason}); its log ends with:\n{log}", .waited.as_secs())]
    NotReady {
        socket: PathBuf,
        waited: Duration,
        reason: String,
        log: String,
    },
}

/// The config of the containerd keelson owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// Persistent data: images, snapshots, container metadata.
    pub root: PathBuf,
    /// Runtime state: sockets of shims, runc state.
    pub state: PathBuf,
    /// The gRPC (CRI) socket; the ttrpc socket is beside it with `.ttrpc` appended.
    pub socket: PathBuf,
    pub cni_conf_dir: PathBuf,
    /// CNI plugin directories; containerd 1.6 takes one, the first (see [`find_cni_bin_dir`]).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The image of each pod's sandbox (pause) container.
    pub sandbox_image: String,
    /// containerd's hosts directory (`<registry>/hosts.toml`, see [`write_registry_mirrors`]).
    pub registry_config_dir: PathBuf,
}

impl ContainerdConfig {
    /// Everything under `dir` (usually `<data-dir>/containerd`): `root`, `state`,
    /// `containerd.sock`, `net.d`, `certs.d`, with the CNI plugins of this machine.
    pub fn under(dir: &Path, sandbox_image: &str) -> Self {
        let candidates: Vec<PathBuf> = CNI_BIN_DIR_CANDIDATES.iter().map(PathBuf::from).collect();
        let bin_dir = find_cni_bin_dir(&candidates).unwrap_or_else(|| candidates[0].clone());
        ContainerdConfig {
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            cni_conf_dir: dir.join("net.d"),
            cni_bin_dirs: vec![bin_dir],
            sandbox_image: sandbox_image.to_string(),
            registry_config_dir: dir.join("certs.d"),
        }
    }

    /// Where [`Containerd::start`] writes the config: `containerd.toml` beside `root`.
    pub fn config_file(&self) -> PathBuf {
        self.root.with_file_name("containerd.toml")
    }

    /// The ttrpc socket, beside the gRPC one.
    pub fn ttrpc_socket(&self) -> PathBuf {
        let mut name = self.socket.clone().into_os_string();
        name.push(".ttrpc");
        PathBuf::from(name)
    }

    /// containerd's config.toml (config version 2, read by containerd 1.6 and 1.7).
    pub fn render(&self) -> String {
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let bin_dir = self
            .cni_bin_dirs
            .first()
            .map(|d| quote_path(d))
            .unwrap_or_else(|| quote(CNI_BIN_DIR_CANDIDATES[0]));
        let disabled = [
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ]
        .iter()
        .map(|p| quote(p))
        .collect::<Vec<_>>()
        .join(", ");
        format!(
            r#"# Written by keelson: the containerd it owns. Changes are overwritten at start.
version = 2
root = {root}
state = {state}
disabled_plugins = [{disabled}]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  sandbox_image = {sandbox_image}
  enable_selinux = false
  # Never ask for an oom_score_adj below containerd's own: lowering it needs CAP_SYS_RESOURCE,
  # which root in a container or a micro-VM may lack (runc then fails every sandbox).
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  # The streaming server behind CRI Exec, Attach and PortForward: loopback only (the agent is
  # its only client), plain HTTP, a port the kernel picks (several containerds may run).
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {runc_root}

# The same runc for the sandboxes of pods with hostPorts, on the same network with portmap
# (which every other pod would pay an exec for at its start and at its end).
[{cri}.containerd.runtimes.{hostport}]
  runtime_type = "io.containerd.runc.v2"
  cni_conf_dir = {hostport_conf_dir}
  cni_max_conf_num = 1

[{cri}.containerd.runtimes.{hostport}.options]
  SystemdCgroup = false
  Root = {runc_root}

[{cri}.cni]
  bin_dir = {bin_dir}
  conf_dir = {conf_dir}
  max_conf_num = 1

[{cri}.registry]
  config_path = {registry}
"#,
            root = quote_path(&self.root),
            state = quote_path(&self.state),
            socket = quote_path(&self.socket),
            ttrpc = quote_path(&self.ttrpc_socket()),
            opt = quote_path(&self.root.join("opt")),
            runc_root = quote_path(&self.state.join("runc")),
            sandbox_image = quote(&self.sandbox_image),
            conf_dir = quote_path(&self.cni_conf_dir),
            hostport = HOSTPORT_HANDLER,
            hostport_conf_dir = quote_path(&hostport_conf_dir(&self.cni_conf_dir)),
            registry = quote_path(&self.registry_config_dir),
        )
    }
}

/// A TOML basic string (JSON's string escapes are valid TOML ones).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

/// The first of `candidates` that holds the `bridge` plugin.
pub fn find_cni_bin_dir(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|dir| dir.join("bridge").is_file())
        .cloned()
}

/// An executable named `name` on `PATH`, or in /usr/bin, /usr/local/bin, /usr/sbin.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

/// `path` (a `PATH` value) with the [`SYSTEM_PATH`] directories it lacks appended.
fn child_path(path: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    for dir in SYSTEM_PATH.map(PathBuf::from) {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| path.to_os_string())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// containerd's `certs.d/<registry>/hosts.toml` sending pulls of `registry` to `mirror_url`
/// first (plain HTTP or self-signed HTTPS allowed), falling back to the registry itself.
pub fn render_registry_hosts(registry: &str, mirror_url: &str) -> String {
    let server = if registry == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{registry}")
    };
    hosts_toml(&server, mirror_url)
}

/// Like [`render_registry_hosts`] without the fall-back: for machines that cannot reach the
/// registry, so that an image the mirror lacks fails at once with containerd's `not found`
/// (gRPC NotFound), as on a connected node, instead of with a DNS or dial error.
pub fn render_registry_hosts_offline(mirror_url: &str) -> String {
    hosts_toml(mirror_url, mirror_url)
}

fn hosts_toml(server: &str, mirror_url: &str) -> String {
    format!(
        "# Written by keelson.\nserver = {server}\n\n[host.{mirror}]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n",
        server = quote(server),
        mirror = quote(mirror_url),
    )
}

/// Writes `dir/<registry>/hosts.toml` for each `(registry, mirror_url)` (see
/// [`render_registry_hosts`]).
pub fn write_registry_mirrors<R: AsRef<str>, M: AsRef<str>>(
    dir: &Path,
    mirrors: &[(R, M)],
) -> Result<(), Error> {
    write_hosts(dir, mirrors, |registry, mirror| {
        render_registry_hosts(registry, mirror)
    })
}

/// Writes `dir/<registry>/hosts.toml` for each `(registry, mirror_url)` with no fall-back to
/// the registry itself (see [`render_registry_hosts_offline`]).
pub fn write_registry_mirrors_offline<R: AsRef<str>, M: AsRef<str>>(
    dir: &Path,
    mirrors: &[(R, M)],
) -> Result<(), Error> {
    write_hosts(dir, mirrors, |_, mirror| {
        render_registry_hosts_offline(mirror)
    })
}

fn write_hosts<R: AsRef<str>, M: AsRef<str>>(
    dir: &Path,
    mirrors: &[(R, M)],
    render: impl Fn(&str, &str) -> String,
) -> Result<(), Error> {
    for (registry, mirror) in mirrors {
        let registry = registry.as_ref();
        let valid = !registry.is_empty()
            && registry != "."
            && registry != ".."
            && !registry.contains(['/', '\\', '\0']);
        if !valid {
            return Err(Error::InvalidRegistry(registry.to_string()));
        }
        let path = dir.join(registry).join("hosts.toml");
        write_atomic(&path, render(registry, mirror.as_ref()).as_bytes())
            .map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

/// A containerd answering on a socket: one keelson started (owned), or one a previous run left
/// running (reused).
#[derive(Debug)]
pub struct Containerd {
    socket: PathBuf,
    client: CriClient,
    child: Option<tokio::process::Child>,
}

impl Containerd {
    /// Writes the config (see [`ContainerdConfig::config_file`]) and returns the containerd
    /// answering on `config.socket`: the one already there if any, else a new `binary --config
    /// FILE` in its own process group (so a terminal's Ctrl-C reaches keelson only), logging to
    /// `log_file` (appended). Containers keep running under their shims whatever happens to
    /// containerd later.
    pub async fn start(
        config: &ContainerdConfig,
        binary: &Path,
        log_file: &Path,
    ) -> Result<Containerd, Error> {
        let config_file = config.config_file();
        let rendered = config.render();
        let changed = std::fs::read(&config_file).map_or(true, |old| old != rendered.as_bytes());
        write_atomic(&config_file, rendered.as_bytes()).map_err(|source| Error::Write {
            path: config_file.clone(),
            source,
        })?;
        for dir in [config.socket.parent(), log_file.parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).map_err(|source| Error::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }

        if let Ok(client) = answering(&config.socket, Duration::from_secs(2)).await {
            // A containerd a previous run started from an older config is replaced, so the new
            // config (e.g. another sandbox image) takes effect; its containers keep running.
            let previous = changed.then(|| find_containerd(&config_file)).flatten();
            match previous {
                Some(pid) => {
                    tracing::info!(pid, "the containerd config changed; restarting containerd");
                    terminate_pid(pid, STOP_TIMEOUT).await;
                }
                None => {
                    tracing::info!(socket = %config.socket.display(), "reusing the containerd already running");
                    return Ok(Containerd {
                        socket: config.socket.clone(),
                        client: client.with_hostport_handler(HOSTPORT_HANDLER),
                        child: None,
                    });
                }
            }
        }

        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .map_err(|source| Error::Write {
                path: log_file.to_path_buf(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| Error::Write {
            path: log_file.to_path_buf(),
            source,
        })?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(binary)
            .arg("--config")
            .arg(&config_file)
            .env(
                "PATH",
                child_path(&std::env::var_os("PATH").unwrap_or_default()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| Error::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;

        let mut last_error;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Exited {
                    binary: binary.to_path_buf(),
                    socket: config.socket.clone(),
                    status: status.to_string(),
                    log: log_tail(log_file),
                });
            }
            match answering(&config.socket, Duration::from_secs(1)).await {
                Ok(client) => {
                    tracing::info!(
                        socket = %config.socket.display(),
                        pid = child.id(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "containerd started"
                    );
                    return Ok(Containerd {
                        socket: config.socket.clone(),
                        client: client.with_hostport_handler(HOSTPORT_HANDLER),
                        child: Some(child),
                    });
                }
                Err(e) => last_error = e,
            }
            if started.elapsed() >= START_TIMEOUT {
                terminate(&mut child, Duration::from_secs(2)).await;
                return Err(Error::NotReady {
                    socket: config.socket.clone(),
                    waited: START_TIMEOUT,
                    reason: last_error,
                    log: log_tail(log_file),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Whether this process started containerd (false when it reused one already running).
    pub fn owned(&self) -> bool {
        self.child.is_some()
    }

    /// The process ID of the containerd this process started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// The CRI socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A CRI client connected to this containerd (sandboxes with port mappings go to the
    /// runtime handler whose network has portmap).
    pub fn client(&self) -> CriClient {
        self.client.clone()
    }

    /// Stops the containerd this process started: SIGTERM, then SIGKILL after 10 s. A reused
    /// containerd is left running. Containers keep running under their shims either way.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_TIMEOUT).await;
        }
    }
}

/// A client to the runtime on `socket` if it answers a Version call within `timeout`.
async fn answering(socket: &Path, timeout: Duration) -> Result<CriClient, String> {
    let attempt = async {
        let client = client::connect(socket).await.map_err(|e| e.to_string())?;
        client.version().await.map_err(|e| e.to_string())?;
        Ok(client)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}ms", timeout.as_millis())))
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child.
async fn terminate(child: &mut tokio::process::Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a PID of our own unreaped child has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(pid, "containerd ignored SIGTERM; killing it");
    }
    let _ = child.kill().await;
}

/// The process ID of a running `containerd --config <config_file>`.
fn find_containerd(config_file: &Path) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        is_containerd_for(&cmdline, config_file).then_some(pid)
    })
}

/// Whether a `/proc/PID/cmdline` is containerd's with `--config <config_file>`.
fn is_containerd_for(cmdline: &[u8], config_file: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_containerd = args
        .first()
        .and_then(|a| a.rsplit(|b| *b == b'/').next())
        .is_some_and(|name| name == b"containerd");
    let wanted = config_file.as_os_str().as_encoded_bytes();
    is_containerd
        && args
            .windows(2)
            .any(|w| w[0] == b"--config" && w[1] == wanted)
}

/// SIGTERM to a process that is not our child, then SIGKILL if it is still there after `grace`.
async fn terminate_pid(pid: u32, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else { return };
    // A zombie (state Z) has exited; its parent has yet to reap it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.starts_with(" Z"))
        })
    };
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(raw, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while alive() && Instant::now() < deadline {
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    if alive() {
        // SAFETY: as above.
        unsafe {
            libc::kill(raw, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive() && Instant::now() < deadline {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The last lines of a log file, or a note that it cannot be read.
fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerdConfig {
        ContainerdConfig {
            root: PathBuf::from("/data/containerd/root"),
            state: PathBuf::from("/data/containerd/state"),
            socket: PathBuf::from("/data/containerd/containerd.sock"),
            cni_conf_dir: PathBuf::from("/data/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            sandbox_image: "keelson.local/pause:1".to_string(),
            registry_config_dir: PathBuf::from("/data/containerd/certs.d"),
        }
    }

    fn lookup<'a>(value: &'a toml::Value, path: &[&str]) -> Option<&'a toml::Value> {
        path.iter().try_fold(value, |v, key| v.get(key))
    }

    #[test]
    fn the_rendered_config_has_what_keelson_needs() {
        let parsed: toml::Value = toml::from_str(&config().render()).expect("valid TOML");
        let cri = "io.containerd.grpc.v1.cri";
        let check = |path: &[&str], want: toml::Value| {
            assert_eq!(
                lookup(&parsed, path),
                Some(&want),
                "{path:?} in {parsed:#?}"
            );
        };
        check(&["version"], 2.into());
        check(&["root"], "/data/containerd/root".into());
        check(&["state"], "/data/containerd/state".into());
        check(
            &["grpc", "address"],
            "/data/containerd/containerd.sock".into(),
        );
        check(
            &["ttrpc", "address"],
            "/data/containerd/containerd.sock.ttrpc".into(),
        );
        check(
            &["plugins", "io.containerd.internal.v1.opt", "path"],
            "/data/containerd/root/opt".into(),
        );
        check(
            &["plugins", cri, "sandbox_image"],
            "keelson.local/pause:1".into(),
        );
        check(
            &["plugins", cri, "stream_server_address"],
            "127.0.0.1".into(),
        );
        check(&["plugins", cri, "stream_server_port"], "0".into());
        check(&["plugins", cri, "enable_tls_streaming"], false.into());
        check(
            &["plugins", cri, "containerd", "snapshotter"],
            "overlayfs".into(),
        );
        check(
            &["plugins", cri, "containerd", "default_runtime_name"],
            "runc".into(),
        );
        check(
            &[
                "plugins",
                cri,
                "containerd",
                "runtimes",
                "runc",
                "runtime_type",
            ],
            "io.containerd.runc.v2".into(),
        );
        check(
            &[
                "plugins",
                cri,
                "containerd",
                "runtimes",
                "runc",
                "options",
                "SystemdCgroup",
            ],
            false.into(),
        );
        check(
            &[
                "plugins",
                cri,
                "containerd",
                "runtimes",
                "runc",
                "options",
                "Root",
            ],
            "/data/containerd/state/runc".into(),
        );
        check(&["plugins", cri, "restrict_oom_score_adj"], true.into());
        let hostport = ["plugins", cri, "containerd", "runtimes", "runc-hostport"];
        let at = |key: &'static str| {
            let mut path = hostport.to_vec();
            path.push(key);
            path
        };
        check(&at("runtime_type"), "io.containerd.runc.v2".into());
        check(&at("cni_conf_dir"), "/data/cni/net.d-hostport".into());
        check(&at("cni_max_conf_num"), 1.into());
        check(
            &[hostport.as_slice(), &["options", "Root"]].concat(),
            "/data/containerd/state/runc".into(),
        );
        check(&["plugins", cri, "cni", "bin_dir"], "/usr/lib/cni".into());
        check(
            &["plugins", cri, "cni", "conf_dir"],
            "/data/cni/net.d".into(),
        );
        check(
            &["plugins", cri, "registry", "config_path"],
            "/data/containerd/certs.d".into(),
        );
        let disabled = lookup(&parsed, &["disabled_plugins"])
            .and_then(|v| v.as_array())
            .expect("disabled_plugins");
        for plugin in ["aufs", "btrfs", "zfs", "devmapper"] {
            let name = format!("io.containerd.snapshotter.v1.{plugin}");
            assert!(
                disabled.contains(&name.as_str().into()),
                "{name} not disabled"
            );
        }
    }

    #[test]
    fn paths_with_quotes_and_backslashes_stay_valid_toml() {
        let mut config = config();
        config.root = PathBuf::from("/data/we\"ird\\dir/root");
        let parsed: toml::Value = toml::from_str(&config.render()).expect("valid TOML");
        assert_eq!(parsed["root"].as_str(), Some("/data/we\"ird\\dir/root"));
    }

    #[test]
    fn the_config_file_and_ttrpc_socket_sit_beside_root_and_socket() {
        let config = ContainerdConfig::under(Path::new("/data/containerd"), "pause:1");
        assert_eq!(
            config.config_file(),
            PathBuf::from("/data/containerd/containerd.toml")
        );
        assert_eq!(
            config.socket,
            PathBuf::from("/data/containerd/containerd.sock")
        );
        assert_eq!(
            config.ttrpc_socket(),
            PathBuf::from("/data/containerd/containerd.sock.ttrpc")
        );
        assert_eq!(config.cni_bin_dirs.len(), 1);
    }

    #[test]
    fn find_cni_bin_dir_picks_the_first_with_bridge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (empty, with_bridge, also) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        for d in [&empty, &with_bridge, &also] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(with_bridge.join("bridge"), "").expect("write");
        std::fs::write(also.join("bridge"), "").expect("write");
        let missing = dir.path().join("missing");
        assert_eq!(
            find_cni_bin_dir(&[missing.clone(), empty.clone(), with_bridge.clone(), also]),
            Some(with_bridge)
        );
        assert_eq!(find_cni_bin_dir(&[missing, empty]), None);
    }

    #[test]
    fn find_binary_finds_sh_and_not_nonsense() {
        assert!(find_binary("sh").is_some());
        assert_eq!(find_binary("keelson-no-such-binary"), None);
        assert_eq!(find_binary(""), None);
    }

    #[test]
    fn containerd_gets_the_system_directories_on_its_path() {
        let check = |path: &str, want: &str| {
            assert_eq!(
                child_path(std::ffi::OsStr::new(path)),
                std::ffi::OsStr::new(want),
                "{path}"
            );
        };
        check(
            "/usr/bin:/bin",
            "/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin",
        );
        check(
            "/opt/x:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "/opt/x:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        check(
            "",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }

    #[test]
    fn a_containerd_is_recognized_by_its_config_file() {
        let file = Path::new("/data/containerd/containerd.toml");
        let check = |cmdline: &[u8], want: bool| {
            assert_eq!(
                is_containerd_for(cmdline, file),
                want,
                "{}",
                String::from_utf8_lossy(cmdline)
            );
        };
        check(
            b"/usr/bin/containerd\0--config\0/data/containerd/containerd.toml\0",
            true,
        );
        check(
            b"containerd\0--config\0/data/containerd/containerd.toml",
            true,
        );
        check(
            b"/usr/bin/containerd\0--config\0/other/containerd.toml\0",
            false,
        );
        check(
            b"/usr/bin/containerd-shim-runc-v2\0--config\0/data/containerd/containerd.toml\0",
            false,
        );
        check(b"/usr/bin/containerd\0", false);
        check(b"", false);
    }

    #[test]
    fn registry_hosts_send_pulls_to_the_mirror() {
        let check = |text: &str, server: &str| {
            let parsed: toml::Value = toml::from_str(text).expect("valid TOML");
            assert_eq!(parsed["server"].as_str(), Some(server));
            let host = &parsed["host"]["http://127.0.0.1:5000"];
            let caps: Vec<_> = host["capabilities"]
                .as_array()
                .expect("capabilities")
                .iter()
                .filter_map(|c| c.as_str())
                .collect();
            assert_eq!(caps, vec!["pull", "resolve"]);
            assert_eq!(host["skip_verify"].as_bool(), Some(true));
        };
        check(
            &render_registry_hosts("docker.io", "http://127.0.0.1:5000"),
            "https://registry-1.docker.io",
        );
        check(
            &render_registry_hosts("registry.k8s.io", "http://127.0.0.1:5000"),
            "https://registry.k8s.io",
        );
        check(
            &render_registry_hosts_offline("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000",
        );
    }

    #[test]
    fn registry_mirrors_are_written_per_registry() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_registry_mirrors(
            dir.path(),
            &[
                ("docker.io", "http://127.0.0.1:5000"),
                ("quay.io", "http://127.0.0.1:5001"),
            ],
        )
        .expect("write");
        let text = std::fs::read_to_string(dir.path().join("quay.io/hosts.toml")).expect("read");
        assert!(text.contains("[host.\"http://127.0.0.1:5001\"]"), "{text}");
        assert!(dir.path().join("docker.io/hosts.toml").is_file());
        let owned: Vec<(String, String)> = vec![("ghcr.io".into(), "http://127.0.0.1:5002".into())];
        write_registry_mirrors_offline(dir.path(), &owned).expect("write owned strings");
        let text = std::fs::read_to_string(dir.path().join("ghcr.io/hosts.toml")).expect("read");
        assert!(
            text.contains("server = \"http://127.0.0.1:5002\""),
            "{text}"
        );
        let err =
            write_registry_mirrors(dir.path(), &[("../etc", "http://x")]).expect_err("bad name");
        assert_eq!(err.to_string(), "invalid registry name \"../etc\"");
    }
}
