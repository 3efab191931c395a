//! `keelson server`: the API server over its store, with the cluster CA and an admin kubeconfig.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use keelson_pki::{kubeconfig, tls};
use keelson_store::{MemoryStore, SharedStore, SqliteOptions, SqliteStore};

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where the store, the cluster CA and the admin kubeconfig live.
    #[arg(long, default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Address and port to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Address other machines reach this server at (default: the listen address, or the
    /// host's address when listening on all interfaces).
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// The range Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// The range NodePorts are allocated from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Extra names and addresses for the serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub tls_sans: Vec<String>,
    /// Keep state in memory only (for tests and benchmarks).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// Do not merge the admin kubeconfig into the user's kubeconfig.
    #[arg(long)]
    pub no_merge_kubeconfig: bool,
    /// Do not run the controller manager in this process.
    #[arg(long)]
    pub disable_controllers: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    pub disable_scheduler: bool,
    /// How long a node's Lease may go unrenewed before the node turns Unknown and its pods
    /// are evicted (as kube-controller-manager's flag; `40s`).
    #[arg(long, default_value = "40s", value_parser = parse_seconds)]
    pub node_monitor_grace_period: std::time::Duration,
    /// Give LoadBalancer Services their EXTERNAL-IP from this IPv4 CIDR (default: the Ready
    /// nodes' InternalIPs, as k3s's ServiceLB does).
    #[arg(long)]
    pub service_lb_pool: Option<String>,
    #[command(flatten)]
    pub pod_gc: PodGcArgs,
    #[command(flatten)]
    pub scheduler: SchedulerConfigArgs,
}

/// The scheduler's `--config`, shared by `server`/`up` and `scheduler`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SchedulerConfigArgs {
    /// The scheduler's configuration file: a KubeSchedulerConfiguration
    /// (kubescheduler.config.k8s.io/v1, YAML or JSON) with its profiles, as kube-scheduler's
    /// flag; read and checked at start-up.
    #[arg(long = "config", value_name = "FILE", value_parser = parse_scheduler_config)]
    pub config: Option<keelson_scheduler::config::Configuration>,
}

impl SchedulerConfigArgs {
    /// The scheduler's options: the file's profiles, or the default profile.
    pub fn options(&self) -> keelson_scheduler::Options {
        keelson_scheduler::Options {
            config: self.config.clone().unwrap_or_default(),
        }
    }
}

fn parse_scheduler_config(path: &str) -> Result<keelson_scheduler::config::Configuration, String> {
    keelson_scheduler::config::load(Path::new(path)).map_err(|e| e.to_string())
}

/// The pod garbage collector's flags, shared by `server`/`up` and `controller-manager`.
#[derive(clap::Args, Clone, Debug)]
pub struct PodGcArgs {
    /// How many terminated pods (Succeeded or Failed) may exist before the pod garbage
    /// collector deletes the oldest; 0 disables it (as kube-controller-manager's flag).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs; pods of a deleted node go after twice this
    /// (for tests; upstream's 20s).
    #[arg(long, default_value = "20s", value_parser = parse_seconds, hide = true)]
    pub pod_gc_period: std::time::Duration,
}

impl PodGcArgs {
    /// Sets the pod garbage collector's part of the controller manager's options.
    pub fn apply(&self, options: &mut keelson_controllers::Options) {
        options.pod_gc.terminated_threshold = self.terminated_pod_gc_threshold;
        options.pod_gc.period = self.pod_gc_period.max(std::time::Duration::from_secs(1));
        options.pod_gc.quarantine = options.pod_gc.period * 2;
    }
}

/// `40s`, `2m` or plain seconds.
pub fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (s.strip_suffix('s').unwrap_or(s), 1),
    };
    num.trim()
        .parse::<u64>()
        .map(|n| std::time::Duration::from_secs(n * unit))
        .map_err(|_| format!("{s:?} is not a duration like 40s or 2m"))
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum StoreKind {
    Sqlite,
    Memory,
}

pub fn default_data_dir() -> PathBuf {
    if std::env::var_os("USER").is_some_and(|u| u == "root") || is_root() {
        PathBuf::from("/var/lib/keelson")
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/keelson")
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn parse_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("port range {s:?} is not FROM-TO"))?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "port range {s:?} is empty");
    Ok((a, b))
}

/// The address to advertise: the explicit one, the listen address, or (on 0.0.0.0) the
/// address of the interface that routes outward.
fn advertise(args: &ServerArgs) -> IpAddr {
    if let Some(a) = args.advertise_address {
        return a;
    }
    if !args.listen.ip().is_unspecified() {
        return args.listen.ip();
    }
    // A UDP "connect" picks the outgoing interface without sending anything.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn step(started: Instant, what: &str) {
    eprintln!("[{:>6.2}s] {what}", started.elapsed().as_secs_f64());
}

/// Starts everything the server needs; returns once it is listening.
pub async fn start(
    args: &ServerArgs,
) -> anyhow::Result<(
    Arc<keelson_apiserver::Api>,
    tokio::net::TcpListener,
    Arc<rustls::ServerConfig>,
)> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let adv = advertise(args);
    let mut sans = vec![adv.to_string(), args.listen.ip().to_string()];
    sans.extend(args.tls_sans.iter().cloned());
    let sans: Vec<String> = sans
        .into_iter()
        .filter(|s| s != "0.0.0.0" && s != "::")
        .collect();
    let pki = tls::load_or_create(&args.data_dir.join("pki"), &sans).with_context(|| {
        format!(
            "loading the cluster CA under {}",
            args.data_dir.join("pki").display()
        )
    })?;
    step(started, "cluster CA and certificates ready");
    let store: SharedStore = match args.store {
        StoreKind::Sqlite => {
            let dir = args.data_dir.join("db");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join("state.db");
            Arc::new(
                SqliteStore::open(&path, SqliteOptions::default())
                    .with_context(|| format!("opening store {}", path.display()))?,
            )
        }
        StoreKind::Memory => Arc::new(MemoryStore::new()),
    };
    step(started, "store open");
    let config = keelson_apiserver::Config {
        listen: args.listen,
        advertise: SocketAddr::new(adv, args.listen.port()),
        service_cidr: args.service_cidr.clone(),
        node_ports: parse_range(&args.service_node_port_range)?,
        kubelet_client: Some(kubelet_client(&pki)?),
    };
    let api = keelson_apiserver::Api::new(store, config).await?;
    step(started, "watch cache filled");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let port = listener.local_addr()?.port();
    let host = if args.listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        args.listen.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("https://{host}:{port}");
    let text = kubeconfig::render(
        &url,
        &pki.ca_cert_pem,
        &pki.admin_cert_pem,
        &pki.admin_key_pem,
        "keelson",
    );
    let kc = args.data_dir.join("kubeconfig");
    kubeconfig::write(&kc, &text).with_context(|| format!("writing {}", kc.display()))?;
    if !args.no_merge_kubeconfig {
        merge_user_kubeconfig(&text)?;
    }
    let tls = tls::server_config(&pki).context("building the TLS configuration")?;
    step(
        started,
        &format!("serving on {url}; admin kubeconfig at {}", kc.display()),
    );
    Ok((api, listener, tls))
}

/// The TLS client the apiserver reaches node agents with (`pods/log`): a fresh
/// `kube-apiserver-kubelet-client` certificate from the cluster CA.
fn kubelet_client(pki: &tls::Pki) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let (cert, key) = tls::issue_client_cert(
        &pki.ca_cert_pem,
        &pki.ca_key_pem,
        tls::KUBELET_CLIENT_USER,
        &[],
    )
    .context("issuing the apiserver's client certificate for node agents")?;
    tls::client_config(&pki.ca_cert_pem, &cert, &key)
        .context("building the TLS client for node agents")
}

fn merge_user_kubeconfig(text: &str) -> anyhow::Result<()> {
    let Some(path) = kubeconfig::default_user_kubeconfig() else {
        return Ok(());
    };
    kubeconfig::merge_into(&path, text, "keelson")
        .with_context(|| format!("merging into {}", path.display()))?;
    give_to_sudo_user(&path);
    eprintln!(
        "         context \"keelson\" merged into {}",
        display(&path)
    );
    Ok(())
}

/// Under `sudo`, hands the merged kubeconfig (and its directory) back to the invoking user.
fn give_to_sudo_user(path: &Path) {
    let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) {
        for p in [Some(path), path.parent()].into_iter().flatten() {
            let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
        }
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Starts the controller manager and the scheduler (unless disabled) on `components`; they
/// reach the apiserver over HTTPS, as outside programs.
/// The Leases the controller manager and the scheduler hold in kube-system (upstream's names).
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";
pub const SCHEDULER_LEASE: &str = "kube-scheduler";
/// How many API requests the controller manager keeps in flight (each is a connection).
pub const CONTROLLER_MANAGER_IN_FLIGHT: usize = 32;

pub async fn spawn_components(
    args: &ServerArgs,
    kubeconfig: &Path,
    components: &mut tokio::task::JoinSet<(&'static str, anyhow::Result<()>)>,
) -> anyhow::Result<()> {
    // A restarted server keeps its identity, so it takes its Leases back at once.
    let identity = keelson_leader::stable_identity(&args.data_dir)
        .context("choosing the leader-election identity")?;
    let leader = crate::leader::LeaderArgs::default();
    if !args.disable_controllers {
        let client = crate::client::limited(kubeconfig, CONTROLLER_MANAGER_IN_FLIGHT).await?;
        let mut options = keelson_controllers::Options::default();
        options.node_lifecycle.grace = args.node_monitor_grace_period;
        options.service_lb_pool = args.service_lb_pool.clone();
        args.pod_gc.apply(&mut options);
        options.node_lifecycle.period = (args.node_monitor_grace_period / 8).clamp(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(5),
        );
        let (leader, identity) = (leader.clone(), identity.clone());
        components.spawn(async move {
            let work = || keelson_controllers::run(client.clone(), options.clone());
            let lease = CONTROLLER_MANAGER_LEASE;
            let result = leader.run(client.clone(), lease, identity, work).await;
            ("controller manager", result)
        });
    }
    if !args.disable_scheduler {
        let client = crate::client::from_kubeconfig(kubeconfig).await?;
        let options = args.scheduler.options();
        components.spawn(async move {
            let work = || keelson_scheduler::run(client.clone(), options.clone());
            let result = leader
                .run(client.clone(), SCHEDULER_LEASE, identity, work)
                .await;
            ("scheduler", result)
        });
    }
    Ok(())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let (api, listener, tls) = start(&args).await?;
    let serving = tokio::spawn(keelson_apiserver::serve(api, listener, tls));
    let kubeconfig = args.data_dir.join("kubeconfig");
    let mut components = tokio::task::JoinSet::new();
    spawn_components(&args, &kubeconfig, &mut components).await?;
    tokio::select! {
        r = serving => r.context("the apiserver task failed")?.context("serving")?,
        Some(Ok((name, result))) = components.join_next() => {
            result.with_context(|| format!("the {name} stopped"))?;
            anyhow::bail!("the {name} stopped");
        }
        _ = tokio::signal::ctrl_c() => eprintln!("shutting down"),
    }
    Ok(())
}
