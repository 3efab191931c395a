//! The node side of the binary: what a node needs installed, the containerd keelson owns, the
//! pause image, and the agent (`keelson agent`, and the agent inside `keelson up`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use keelson_cri::Runtime;
use keelson_cri::containerd::{self, Containerd, ContainerdConfig};

/// Flags of the node agent, shared by `keelson agent` and `keelson up`.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The port of the agent's HTTPS endpoint (logs).
    #[arg(long, default_value_t = keelson_agent::node::AGENT_PORT)]
    pub agent_port: u16,
    /// The pod CIDR to use when the controller manager gives the node none.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Registry mirrors for containerd, `REGISTRY=URL` (e.g. `docker.io=http://127.0.0.1:5000`).
    #[arg(long = "registry-mirror", value_delimiter = ',')]
    pub registry_mirrors: Vec<String>,
    /// Use the containerd on this socket instead of starting one.
    #[arg(long)]
    pub containerd_socket: Option<PathBuf>,
    /// On shutdown, stop and remove every pod this node runs (tests use it; by default pods
    /// keep running and are re-adopted at the next start).
    #[arg(long, hide = true)]
    pub remove_pods_on_exit: bool,
    /// The cluster DNS IP written into pods' resolv.conf (the `kube-dns` Service's ClusterIP);
    /// empty: pods use the host's resolvers.
    #[arg(long, default_value = keelson_dns::DEFAULT_CLUSTER_DNS, value_parser = cluster_dns_ip)]
    pub cluster_dns: String,
    /// The cluster domain.
    #[arg(long, default_value = keelson_dns::DEFAULT_DOMAIN)]
    pub cluster_domain: String,
    /// The port of the node's DNS server on its InternalIP (0: none).
    #[arg(long, default_value_t = keelson_dns::DEFAULT_PORT)]
    pub dns_port: u16,
}

/// `--cluster-dns`: an IP address, or empty.
fn cluster_dns_ip(s: &str) -> Result<String, String> {
    if s.is_empty() || s.parse::<std::net::IpAddr>().is_ok() {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an IP address"))
    }
}

/// The Debian packages a node needs, and a binary each provides.
const PACKAGES: [(&str, &str); 5] = [
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("containernetworking-plugins", "bridge"),
    ("nftables", "nft"),
    ("iproute2", "ip"),
];

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Which of the packages a node needs are missing here.
fn missing_packages() -> Vec<&'static str> {
    let cni = ["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"].map(PathBuf::from);
    PACKAGES
        .iter()
        .filter(|(_, bin)| {
            if *bin == "bridge" {
                containerd::find_cni_bin_dir(&cni).is_none()
            } else {
                containerd::find_binary(bin).is_none()
            }
        })
        .map(|(pkg, _)| *pkg)
        .collect()
}

/// Installs what is missing with apt-get (as root), or stops with the command to run.
pub fn ensure_packages(step: &dyn Fn(&str)) -> anyhow::Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() {
        anyhow::bail!(
            "this node needs {}; run as root: sudo {command} (keelson up also needs root to run containers)",
            missing.join(", ")
        );
    }
    if containerd::find_binary("apt-get").is_none() {
        anyhow::bail!(
            "this node needs {} and there is no apt-get here; install them with your package manager",
            missing.join(", ")
        );
    }
    step(&format!("installing {} with apt-get", missing.join(", ")));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")
    };
    if !install()?.success() {
        step("apt-get install failed; updating the package lists and trying again");
        let _ = Command::new("apt-get").arg("update").status();
        anyhow::ensure!(install()?.success(), "`{command}` failed");
    }
    Ok(())
}

/// The containerd of a node: started and owned by keelson, or one it was pointed at.
pub struct NodeRuntime {
    pub runtime: Arc<keelson_cri::client::CriClient>,
    pub containerd: Option<Containerd>,
    pub cni_conf_dir: PathBuf,
}

/// Starts (or reuses) containerd under `data_dir/containerd` and makes the pause image present.
pub async fn start_runtime(
    data_dir: &Path,
    args: &NodeArgs,
    step: &dyn Fn(&str),
) -> anyhow::Result<NodeRuntime> {
    let started = Instant::now();
    let dir = data_dir.join("containerd");
    let config = ContainerdConfig::under(&dir, keelson_oci::PAUSE_IMAGE);
    let mirrors: Vec<(String, String)> = args
        .registry_mirrors
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(r, u)| (r.trim().to_string(), u.trim().to_string()))
                .with_context(|| format!("--registry-mirror {m:?}: want REGISTRY=URL"))
        })
        .collect::<anyhow::Result<_>>()?;
    containerd::write_registry_mirrors(&config.registry_config_dir, &mirrors)
        .context("writing the registry mirrors")?;
    let (client, owned, socket) = match &args.containerd_socket {
        Some(socket) => {
            let client = keelson_cri::client::connect(socket)
                .await
                .with_context(|| format!("connecting to containerd at {}", socket.display()))?;
            (client, None, socket.clone())
        }
        None => {
            let binary = containerd::find_binary("containerd")
                .context("containerd is not installed: apt-get install -y containerd")?;
            let c = Containerd::start(&config, &binary, &dir.join("containerd.log"))
                .await
                .context("starting containerd")?;
            step(&format!(
                "containerd {} on {} ({:.2}s)",
                if c.owned() { "started" } else { "reused" },
                c.socket().display(),
                started.elapsed().as_secs_f64()
            ));
            (c.client(), Some(c), config.socket.clone())
        }
    };
    let runtime = Arc::new(client);
    ensure_pause_image(&socket, data_dir, step).await?;
    Ok(NodeRuntime {
        runtime,
        containerd: owned,

        cni_conf_dir: config.cni_conf_dir,
    })
}

/// Imports the project's own pause image when containerd lacks it (or holds another build).
async fn ensure_pause_image(
    socket: &Path,
    data_dir: &Path,
    step: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let ctr =
        containerd::find_binary("ctr").context("ctr (from the containerd package) is missing")?;
    let (socket, dir) = (socket.to_path_buf(), data_dir.to_path_buf());
    let imported =
        tokio::task::spawn_blocking(move || keelson_oci::ensure_pause_image(&ctr, &socket, &dir))
            .await?
            .context("importing the pause image")?;
    if imported {
        step(&format!(
            "pause image {} imported",
            keelson_oci::PAUSE_IMAGE
        ));
    }
    Ok(())
}

/// Stops and removes every pod sandbox keelson made on this runtime, until none is left.
pub async fn remove_all_pods(runtime: &dyn Runtime) {
    for _ in 0..10 {
        let Ok(sandboxes) = runtime.list_pod_sandboxes().await else {
            return;
        };
        let ours: Vec<_> = sandboxes
            .iter()
            .filter(|s| {
                s.labels
                    .contains_key(keelson_agent::pods::spec::MANAGED_LABEL)
            })
            .collect();
        if ours.is_empty() {
            return;
        }
        futures::future::join_all(ours.into_iter().map(|s| async move {
            let _ = runtime.stop_pod_sandbox(&s.id).await;
            let _ = runtime.remove_pod_sandbox(&s.id).await;
        }))
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
