//! Root-only tests against a real containerd that keelson starts: start and reuse, the CRI
//! client's answers, and (when skopeo, umoci, ctr and busybox are there) a container that runs
//! `echo hi` with its CRI log file checked.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_cri::cni::{render_conflist, write_conflist};
use keelson_cri::containerd::{
    CNI_BIN_DIR_CANDIDATES, Containerd, ContainerdConfig, find_binary, find_cni_bin_dir,
    write_registry_mirrors_offline,
};
use keelson_cri::{CriClient, Runtime, cri};

/// The containerd binary when the test can run (root, containerd installed), else None after
/// saying why.
fn containerd_binary() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root and containerd (not root)");
        return None;
    }
    let binary = find_binary("containerd");
    if binary.is_none() {
        eprintln!("skipping: needs root and containerd (containerd not found)");
    }
    binary
}

/// A config with everything in `dir` (short: unix socket paths are limited to 108 bytes).
fn config(dir: &Path, sandbox_image: &str) -> ContainerdConfig {
    ContainerdConfig::under(dir, sandbox_image)
}

/// Kills a containerd the test started if the test ends (or panics) before stopping it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if process_alive(self.0) {
            // SAFETY: kill(2) has no memory effects.
            unsafe {
                libc::kill(self.0 as i32, libc::SIGKILL);
            }
        }
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[tokio::test]
async fn an_owned_containerd_answers_and_is_reused() {
    let Some(binary) = containerd_binary() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("kc")
        .tempdir()
        .expect("tempdir");
    let config = config(dir.path(), "keelson.test/pause:1");
    let log = dir.path().join("containerd.log");

    let started = Instant::now();
    let first = Containerd::start(&config, &binary, &log)
        .await
        .expect("start");
    let took = started.elapsed();
    eprintln!("containerd answered after {} ms", took.as_millis());
    assert!(first.owned());
    let pid = first.pid().expect("pid");
    let _guard = KillOnDrop(pid);
    assert!(config.config_file().is_file());

    let client = first.client();
    let version = client.version().await.expect("version");
    assert_eq!(version.runtime_name, "containerd");
    assert!(client.list_pod_sandboxes().await.expect("list").is_empty());
    assert!(
        client
            .image_status("nope:1")
            .await
            .expect("image status")
            .is_none()
    );
    assert!(matches!(
        client.container_status("nope").await,
        Err(keelson_cri::Error::NotFound(_))
    ));
    client
        .remove_container("nope")
        .await
        .expect("idempotent remove");
    client
        .stop_pod_sandbox("nope")
        .await
        .expect("idempotent stop");
    client
        .remove_pod_sandbox("nope")
        .await
        .expect("idempotent remove");

    let second = Containerd::start(&config, &binary, &log)
        .await
        .expect("reuse");
    assert!(
        !second.owned(),
        "a running containerd is reused, not started twice"
    );
    assert_eq!(
        second
            .client()
            .version()
            .await
            .expect("version")
            .runtime_name,
        "containerd"
    );
    second.stop().await;
    assert!(
        process_alive(pid),
        "stopping a reused containerd leaves it running"
    );

    // As a previous keelson run would, leave it running (dropping does not stop it); a changed
    // config then replaces it with a containerd that reads the new config.
    drop(first);
    let mut changed = config.clone();
    changed.sandbox_image = "keelson.test/pause:2".to_string();
    let third = Containerd::start(&changed, &binary, &log)
        .await
        .expect("restart with the new config");
    assert!(third.owned(), "a containerd with an old config is replaced");
    assert!(!process_alive(pid), "the old containerd {pid} is gone");
    let pid = third.pid().expect("pid");
    let _guard3 = KillOnDrop(pid);
    third.stop().await;
    assert!(
        !process_alive(pid),
        "containerd {pid} still running after stop"
    );
    let err = keelson_cri::connect(&config.socket).await.map(|_| ());
    assert!(err.is_err(), "nothing answers after stop");
}

#[tokio::test]
async fn a_failing_containerd_reports_its_log() {
    let Some(binary) = containerd_binary() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("kc")
        .tempdir()
        .expect("tempdir");
    let mut config = config(dir.path(), "keelson.test/pause:1");
    // A root that is a file makes containerd exit at once.
    std::fs::write(dir.path().join("root"), "not a directory").expect("write");
    config.root = dir.path().join("root");
    let log = dir.path().join("containerd.log");
    let err = Containerd::start(&config, &binary, &log)
        .await
        .expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("exited"), "{text}");
    assert!(text.contains("root"), "the log is quoted: {text}");
}

/// Builds `docker-archive` `out` holding image `name`: busybox-static with `cmd` as its command.
fn build_busybox_image(work: &Path, name: &str, cmd: &[&str], out: &Path) -> Result<(), String> {
    let run = |program: &str, args: &[&str]| -> Result<(), String> {
        let output = Command::new(program)
            .args(args)
            .current_dir(work)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    let busybox = find_binary("busybox").ok_or("busybox not found")?;
    run("umoci", &["init", "--layout", "layout"])?;
    run("umoci", &["new", "--image", "layout:1"])?;
    run("umoci", &["unpack", "--image", "layout:1", "bundle"])?;
    let bin = work.join("bundle/rootfs/bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::fs::copy(&busybox, bin.join("busybox")).map_err(|e| e.to_string())?;
    for applet in ["sh", "sleep", "echo", "cat", "ip"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).map_err(|e| e.to_string())?;
    }
    run("umoci", &["repack", "--image", "layout:1", "bundle"])?;
    let mut config_args = vec!["config", "--image", "layout:1"];
    for part in cmd {
        config_args.push("--config.cmd");
        config_args.push(part);
    }
    run("umoci", &config_args)?;
    let dest = format!("docker-archive:{}:{name}", out.display());
    run("skopeo", &["copy", "oci:layout:1", &dest])
}

const IMAGE: &str = "keelson.test/busybox:1";
const TEST_NETWORK: &str = "keelson-cri-test";
const TEST_BRIDGE: &str = "kctest0";
const TEST_CIDR: &str = "10.250.123.0/24";

/// Says why and returns false when a tool the image tests need is missing.
fn image_tools_present() -> bool {
    for tool in ["umoci", "skopeo", "ctr", "busybox", "ip", "umount"] {
        if find_binary(tool).is_none() {
            eprintln!("skipping: needs {tool}");
            return false;
        }
    }
    true
}

fn run_ok(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Unmounts whatever is still mounted under `dir` (deepest first).
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").arg(point).output();
    }
}

/// Stops and removes every pod, so no shim, network namespace or mount outlives the test.
async fn remove_all_pods(client: &CriClient) {
    for sandbox in client.list_pod_sandboxes().await.unwrap_or_default() {
        if let Err(e) = client.stop_pod_sandbox(&sandbox.id).await {
            eprintln!("cleanup: stop {}: {e}", sandbox.id);
        }
        if let Err(e) = client.remove_pod_sandbox(&sandbox.id).await {
            eprintln!("cleanup: remove {}: {e}", sandbox.id);
        }
    }
}

/// Removes the test bridge and its IPAM data when dropped, even after a panic.
struct BridgeCleanup;

impl Drop for BridgeCleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", TEST_BRIDGE])
            .output();
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(TEST_NETWORK));
    }
}

/// A containerd under test, which a test may restart.
#[derive(Clone)]
struct Node {
    dir: PathBuf,
    config: ContainerdConfig,
    binary: PathBuf,
    log: PathBuf,
    running: Arc<tokio::sync::Mutex<Option<Containerd>>>,
}

impl Node {
    async fn client(&self) -> CriClient {
        let running = self.running.lock().await;
        running.as_ref().expect("containerd is running").client()
    }

    /// Stops containerd — SIGTERM, or SIGKILL when `crash` — and starts a new one on the same
    /// root and state; returns how long the new one took to answer.
    async fn restart(&self, crash: bool) -> Result<Duration, String> {
        let mut running = self.running.lock().await;
        if let Some(old) = running.take() {
            if let (true, Some(pid)) = (crash, old.pid()) {
                // SAFETY: kill(2) has no memory effects.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            old.stop().await;
        }
        let started = Instant::now();
        let new = Containerd::start(&self.config, &self.binary, &self.log)
            .await
            .map_err(|e| e.to_string())?;
        let took = started.elapsed();
        let owned = new.owned();
        *running = Some(new);
        if !owned {
            return Err("the old containerd still answered".to_string());
        }
        Ok(took)
    }
}

/// Starts a containerd in a fresh tempdir with the busybox image [`IMAGE`] imported (also its
/// sandbox image: its command sleeps, as pause would), runs `body`, and then — whatever `body`
/// did, error or panic — removes every pod, stops containerd and unmounts what is left before
/// reporting.
async fn with_containerd<F, Fut>(
    binary: &Path,
    prepare: impl FnOnce(&mut ContainerdConfig),
    body: F,
) where
    F: FnOnce(Node) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let dir = tempfile::Builder::new()
        .prefix("kc")
        .tempdir()
        .expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    let work = dir.path().join("build");
    std::fs::create_dir_all(&work).expect("mkdir");
    build_busybox_image(&work, IMAGE, &["/bin/sleep", "1000000"], &archive).expect("build image");

    let mut config = config(dir.path(), IMAGE);
    prepare(&mut config);
    let log = dir.path().join("containerd.log");
    let containerd = Containerd::start(&config, binary, &log)
        .await
        .expect("start");
    let socket = config.socket.to_string_lossy().into_owned();
    let node = Node {
        dir: dir.path().to_path_buf(),
        config,
        binary: binary.to_path_buf(),
        log: log.clone(),
        running: Arc::new(tokio::sync::Mutex::new(Some(containerd))),
    };
    let running = node.running.clone();
    let outcome = tokio::spawn(async move {
        let archive = archive.to_string_lossy().into_owned();
        run_ok(
            "ctr",
            &["-a", &socket, "-n", "k8s.io", "images", "import", &archive],
        )?;
        body(node).await
    })
    .await;

    if let Some(containerd) = running.lock().await.take() {
        remove_all_pods(&containerd.client()).await;
        containerd.stop().await;
    }
    unmount_under(dir.path());
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "{e}; containerd log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

async fn wait_exited(client: &CriClient, id: &str) -> Result<cri::ContainerStatus, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client
            .container_status(id)
            .await
            .map_err(|e| e.to_string())?;
        if status.state == cri::ContainerState::ContainerExited as i32 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "container still in state {} after 20s",
                status.state
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_container_runs_and_logs_in_cri_format() {
    let Some(binary) = containerd_binary() else {
        return;
    };
    if !image_tools_present() {
        return;
    }
    with_containerd(&binary, |_| {}, run_echo).await;
}

async fn run_echo(node: Node) -> Result<(), String> {
    let (client, dir) = (node.client().await, node.dir.clone());
    let found = client
        .image_status(IMAGE)
        .await
        .map_err(|e| e.to_string())?;
    let found = found.ok_or("imported image not found")?;
    assert!(
        found.repo_tags.iter().any(|t| t == IMAGE),
        "{:?}",
        found.repo_tags
    );

    let logs = dir.join("logs");
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "echo".into(),
            uid: "uid-echo".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // No hostname: a host-network sandbox has no UTS namespace of its own (kubelet sets
        // it only for pods on the pod network).
        log_directory: logs.to_string_lossy().into_owned(),
        labels: [("keelson.io/test".to_string(), "yes".to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                // Host network: this test needs no CNI plugins and changes nothing on the host.
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let sandbox = client
        .run_pod_sandbox(sandbox_config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let container_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c1".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["/bin/echo".into()],
        args: vec!["hi".into()],
        log_path: "c1/0.log".into(),
        annotations: [(
            "io.kubernetes.container.restartCount".to_string(),
            "0".to_string(),
        )]
        .into(),
        ..Default::default()
    };
    let id = client
        .create_container(&sandbox, container_config, sandbox_config)
        .await
        .map_err(|e| e.to_string())?;
    client
        .start_container(&id)
        .await
        .map_err(|e| e.to_string())?;
    let status = wait_exited(&client, &id).await?;
    eprintln!(
        "sandbox + container ran to exit in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(status.exit_code, 0);
    assert_eq!(status.reason, "Completed");
    assert_eq!(
        status.annotations["io.kubernetes.container.restartCount"],
        "0"
    );
    assert_eq!(PathBuf::from(&status.log_path), logs.join("c1/0.log"));
    let listed = client
        .list_pod_sandboxes()
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].labels["keelson.io/test"], "yes");

    let text = std::fs::read_to_string(&status.log_path).map_err(|e| e.to_string())?;
    let line = text.lines().next().ok_or("empty log")?;
    let (timestamp, rest) = line.split_once(' ').ok_or("no timestamp")?;
    assert_eq!(rest, "stdout F hi", "log line {line:?}");
    assert!(
        timestamp.len() >= 20 && timestamp.contains('T'),
        "RFC 3339 timestamp: {timestamp:?}"
    );

    client
        .stop_pod_sandbox(&sandbox)
        .await
        .map_err(|e| e.to_string())?;
    client
        .remove_pod_sandbox(&sandbox)
        .await
        .map_err(|e| e.to_string())?;
    let left = client.list_containers().await.map_err(|e| e.to_string())?;
    assert!(left.is_empty(), "containers left: {left:?}");
    Ok(())
}

#[tokio::test]
async fn a_pod_on_the_bridge_network_gets_an_address_and_exec_works() {
    let Some(binary) = containerd_binary() else {
        return;
    };
    if !image_tools_present() {
        return;
    }
    let candidates = CNI_BIN_DIR_CANDIDATES.map(PathBuf::from);
    let Some(cni_bin) = find_cni_bin_dir(&candidates) else {
        eprintln!("skipping: needs the CNI plugins (containernetworking-plugins)");
        return;
    };
    let _bridge = BridgeCleanup;
    let prepare = move |config: &mut ContainerdConfig| {
        config.cni_bin_dirs = vec![cni_bin];
        let conflist = render_conflist(TEST_NETWORK, TEST_BRIDGE, TEST_CIDR, true);
        write_conflist(&config.cni_conf_dir, &conflist).expect("conflist");
    };
    with_containerd(&binary, prepare, run_on_bridge).await;
}

async fn run_on_bridge(node: Node) -> Result<(), String> {
    let (client, dir) = (node.client().await, node.dir.clone());
    // The network becomes ready once containerd has loaded the conflist.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.status().await.map_err(|e| e.to_string())?;
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.r#type == "NetworkReady" && c.status)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("network not ready: {conditions:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-web".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        log_directory: dir.join("logs").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let started = Instant::now();
    let sandbox = client
        .run_pod_sandbox(sandbox_config.clone())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "pod-network sandbox ready in {} ms",
        started.elapsed().as_millis()
    );
    let status = client
        .pod_sandbox_status(&sandbox)
        .await
        .map_err(|e| e.to_string())?;
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    assert!(
        ip.starts_with("10.250.123."),
        "sandbox IP {ip:?} not in {TEST_CIDR}"
    );

    let container_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c1".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        log_path: "c1/0.log".into(),
        ..Default::default()
    };
    let id = client
        .create_container(&sandbox, container_config, sandbox_config)
        .await
        .map_err(|e| e.to_string())?;
    client
        .start_container(&id)
        .await
        .map_err(|e| e.to_string())?;
    let ip_addr = ["/bin/busybox", "ip", "-4", "addr"]
        .map(String::from)
        .to_vec();
    let exec = client
        .exec_sync(&id, ip_addr, 10)
        .await
        .map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&exec.stdout);
    assert_eq!(exec.exit_code, 0, "{out}");
    assert!(
        out.contains(&format!("inet {ip}/24")),
        "eth0 has the sandbox IP: {out}"
    );
    assert!(out.contains("inet 127.0.0.1/8"), "loopback is up: {out}");
    let exit_3 = ["/bin/sh", "-c", "exit 3"].map(String::from).to_vec();
    let failing = client
        .exec_sync(&id, exit_3, 10)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(failing.exit_code, 3);

    // busybox's sleep dies of SIGTERM (143); one that ignored it would be killed after the
    // grace period (137).
    client
        .stop_container(&id, 1)
        .await
        .map_err(|e| e.to_string())?;
    let status = client
        .container_status(&id)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    assert!(
        [137, 143].contains(&status.exit_code),
        "exit code {}",
        status.exit_code
    );
    assert_eq!(status.reason, "Error");

    client
        .remove_container(&id)
        .await
        .map_err(|e| e.to_string())?;
    client
        .stop_pod_sandbox(&sandbox)
        .await
        .map_err(|e| e.to_string())?;
    client
        .remove_pod_sandbox(&sandbox)
        .await
        .map_err(|e| e.to_string())?;
    assert!(
        client
            .list_pod_sandboxes()
            .await
            .map_err(|e| e.to_string())?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn containers_keep_running_across_containerd_restarts() {
    let Some(binary) = containerd_binary() else {
        return;
    };
    if !image_tools_present() {
        return;
    }
    with_containerd(&binary, |_| {}, run_across_restarts).await;
}

async fn run_across_restarts(node: Node) -> Result<(), String> {
    let client = node.client().await;
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "long".into(),
            uid: "uid-long".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: node.dir.join("logs").to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = client
        .run_pod_sandbox(sandbox_config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let container_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "sleeper".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        log_path: "sleeper/0.log".into(),
        ..Default::default()
    };
    let id = client
        .create_container(&sandbox, container_config, sandbox_config)
        .await
        .map_err(|e| e.to_string())?;
    client
        .start_container(&id)
        .await
        .map_err(|e| e.to_string())?;
    let before = client
        .container_status(&id)
        .await
        .map_err(|e| e.to_string())?;

    for crash in [false, true] {
        let took = node.restart(crash).await?;
        eprintln!(
            "containerd restarted (crash: {crash}) in {} ms",
            took.as_millis()
        );
        let client = node.client().await;
        let sandboxes = client
            .list_pod_sandboxes()
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(sandboxes.len(), 1);
        assert_eq!(sandboxes[0].id, sandbox);
        assert_eq!(
            sandboxes[0].state,
            cri::PodSandboxState::SandboxReady as i32
        );
        let after = client
            .container_status(&id)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(
            after.state,
            cri::ContainerState::ContainerRunning as i32,
            "crash: {crash}"
        );
        assert_eq!(
            after.started_at, before.started_at,
            "the same process, not a restart"
        );
    }
    Ok(())
}

/// A docker-registry on a free loopback port, killed when dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Result<Registry, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let config = dir.join("registry.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry").display()
        );
        std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("docker-registry: {e}"))?;
        let registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("docker-registry did not listen within 10s".to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn pulls_of_docker_io_images_go_to_the_mirror() {
    let Some(binary) = containerd_binary() else {
        return;
    };
    if !image_tools_present() || find_binary("docker-registry").is_none() {
        eprintln!("skipping: needs docker-registry");
        return;
    }
    let registry_dir = tempfile::Builder::new()
        .prefix("kr")
        .tempdir()
        .expect("tempdir");
    let registry = Registry::start(registry_dir.path()).expect("registry");
    let mirror = format!("http://127.0.0.1:{}", registry.port);
    let prepare = move |config: &mut ContainerdConfig| {
        // No fall-back to docker.io: this machine may not reach it.
        write_registry_mirrors_offline(
            &config.registry_config_dir,
            &[("docker.io", mirror.as_str())],
        )
        .expect("hosts.toml");
    };
    let port = registry.port;
    with_containerd(&binary, prepare, move |node| {
        pull_through_mirror(node, port)
    })
    .await;
    drop(registry);
}

async fn pull_through_mirror(node: Node, port: u16) -> Result<(), String> {
    // The image the node imported, pushed to the mirror as docker.io/keelson/mirrored:1.
    let layout = format!("oci:{}:1", node.dir.join("build/layout").display());
    let dest = format!("docker://127.0.0.1:{port}/keelson/mirrored:1");
    run_ok(
        "skopeo",
        &["copy", "--dest-tls-verify=false", &layout, &dest],
    )?;

    let client = node.client().await;
    let started = Instant::now();
    let image_ref = client
        .pull_image("keelson/mirrored:1")
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "pulled through the mirror in {} ms",
        started.elapsed().as_millis()
    );
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let image = client
        .image_status("docker.io/keelson/mirrored:1")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("pulled image not present")?;
    assert_eq!(image.id, image_ref);

    let started = Instant::now();
    let err = client
        .pull_image("keelson/missing:1")
        .await
        .expect_err("not in the mirror");
    eprintln!(
        "missing image failed in {} ms: {err}",
        started.elapsed().as_millis()
    );
    let text = err.to_string();
    assert!(
        text.contains("failed to pull and unpack image \"docker.io/keelson/missing:1\""),
        "{text}"
    );
    assert!(
        text.contains("rpc error: code = NotFound desc = "),
        "{text}"
    );
    assert!(
        text.ends_with("docker.io/keelson/missing:1: not found"),
        "{text}"
    );
    Ok(())
}
