//! The node agent: registers its Node, keeps its Lease and conditions current, runs the pods
//! bound to it through CRI, and serves their logs, as the kubelet does.

pub mod exec;
pub mod host;
pub mod logs;
pub mod node;
pub mod pods;
pub mod portforward;
pub mod server;
pub mod storage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use keelson_cri::Runtime;
use kube::{Api, Client};

use crate::host::Host;
use crate::node::NodeFacts;

/// Reports a step of the agent's start-up (`keelson up` prints them).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// How the agent runs.
#[derive(Clone)]
pub struct AgentConfig {
    /// The node's name (default: the host name).
    pub node_name: Option<String>,
    /// Where logs and agent state live.
    pub data_dir: PathBuf,
    /// The pod CIDR to use when the cluster gives the node none.
    pub pod_cidr: Option<String>,
    /// Where the CNI config is written (the containerd config points there).
    pub cni_conf_dir: PathBuf,
    /// The port of the agent's HTTPS endpoint.
    pub port: u16,
    /// The serving config of the agent's endpoint (none: no endpoint, so no `kubectl logs`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub progress: Progress,
    /// Set when the process is stopping: the pod workers stop acting.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The cluster DNS IP pods use (`--cluster-dns`; none: pods get the host's resolvers).
    pub cluster_dns: Option<String>,
    /// The cluster domain (`--cluster-domain`, `cluster.local`).
    pub cluster_domain: String,
    /// The port of the node's DNS server on its InternalIP (0: no DNS server on this node).
    pub dns_port: u16,
}

/// The name this agent registers under.
pub fn node_name(cfg: &AgentConfig, host: &Host) -> String {
    cfg.node_name
        .clone()
        .unwrap_or_else(|| host.hostname.clone())
}

/// Runs the agent until the process ends.
pub async fn run(
    client: Client,
    runtime: Arc<dyn Runtime>,
    cfg: AgentConfig,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let host = Host::read(&cfg.data_dir);
    let version = runtime
        .version()
        .await
        .context("asking the container runtime its version")?;
    let facts = NodeFacts {
        name: node_name(&cfg, &host),
        host,
        port: cfg.port,
        runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
        pods: 110,
    };
    let node = register(&client, &facts, cfg.pod_cidr.as_deref()).await;
    (cfg.progress)(&format!("node {} registered", facts.name));
    let uid = node.metadata.uid.clone();
    let lease_client = client.clone();
    let name = facts.name.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = node::renew_lease(&lease_client, &name, uid.as_deref()).await {
                tracing::warn!(error = %e, "lease");
            }
            tokio::time::sleep(node::LEASE_PERIOD).await;
        }
    });
    let cidr = pod_cidr(&client, &facts.name, node, cfg.pod_cidr.as_deref()).await;
    keelson_cri::cni::write_conflists(&cfg.cni_conf_dir, "keelson", "keelson0", &cidr)
        .with_context(|| {
            format!(
                "writing the CNI config under {}",
                cfg.cni_conf_dir.display()
            )
        })?;
    (cfg.progress)(&format!("pod network {cidr}"));
    // The service proxy: off the path to Ready (it starts once its watches have listed).
    tokio::spawn(keelson_proxy::run(
        client.clone(),
        keelson_proxy::Config::new(&facts.name, Some(&cidr)),
    ));
    let since = Timestamp::now();
    if let Err(e) = node::post_status(&client, &facts, true, "", since).await {
        tracing::warn!(error = %e, "node status");
    }
    (cfg.progress)(&format!(
        "node {} Ready ({:.2}s)",
        facts.name,
        started.elapsed().as_secs_f64()
    ));
    let manager = pods::PodManager::start(
        client.clone(),
        runtime.clone(),
        pods::Config {
            node: facts.name.clone(),
            host_ip: facts.host.address.to_string(),
            logs_dir: cfg.data_dir.join("pods"),
            stopping: cfg.stopping.clone(),
            dns: dns_settings(&cfg),
        },
    );
    if cfg.dns_port != 0 {
        tokio::spawn(start_dns(client.clone(), cfg.clone(), facts.clone()));
    }
    tokio::spawn(manager.clone().run());
    tokio::spawn(storage::run(client.clone(), facts.name.clone()));
    if let Some(tls) = cfg.tls.clone() {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], cfg.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} for the agent endpoint"))?;
        let source = Arc::new(pods::logsource::Logs(manager.clone()));
        let streams: Arc<dyn exec::StreamSource> =
            Arc::new(pods::streams::Streams(manager.clone()));
        tokio::spawn(async move {
            if let Err(e) = server::serve_with_streams(listener, tls, source, Some(streams)).await {
                tracing::error!(error = %e, "the agent endpoint stopped");
            }
        });
    }
    heartbeat(client, runtime, facts, since).await
}

/// What pods' resolv.conf is made from: the cluster DNS and domain, and the host's resolvers.
fn dns_settings(cfg: &AgentConfig) -> pods::dns::Settings {
    let host = match keelson_dns::resolvconf::read_host() {
        Ok((_, conf)) => conf,
        Err(e) => {
            tracing::warn!(error = %e, "pods get no host resolvers");
            Default::default()
        }
    };
    pods::dns::Settings {
        cluster_dns: cfg.cluster_dns.iter().cloned().collect(),
        cluster_domain: cfg.cluster_domain.clone(),
        host,
    }
}

/// Starts the node's DNS server on its InternalIP (a failure is logged: pods still run).
async fn start_dns(client: Client, cfg: AgentConfig, facts: NodeFacts) {
    let upstream = keelson_dns::resolvconf::read_host()
        .map(|(_, c)| c.nameservers)
        .unwrap_or_default();
    let dns = keelson_dns::Config {
        node: facts.name.clone(),
        listen: std::net::SocketAddr::new(facts.host.address, cfg.dns_port),
        domain: cfg.cluster_domain.clone(),
        cluster_ip: cfg.cluster_dns.clone(),
        upstream,
    };
    match keelson_dns::start(client, dns).await {
        Ok(running) => {
            (cfg.progress)(&format!("cluster DNS on {}", running.addr));
            running.wait().await;
        }
        Err(e) => tracing::error!(error = %e, "the node's DNS server did not start"),
    }
}

/// Registers the node, retrying until the apiserver answers.
async fn register(client: &Client, facts: &NodeFacts, cidr: Option<&str>) -> Node {
    let mut delay = Duration::from_millis(100);
    loop {
        match node::register(client, facts, cidr).await {
            Ok(n) => return n,
            Err(e) => tracing::warn!(error = %e, "retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The node's pod CIDR: the one the cluster gave it, waiting for the controller manager to
/// give one, or the configured fallback after a few seconds without.
async fn pod_cidr(client: &Client, name: &str, node: Node, fallback: Option<&str>) -> String {
    let api: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    let mut node = Some(node);
    loop {
        if let Some(cidr) = node
            .as_ref()
            .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
            .filter(|c| !c.is_empty())
        {
            return cidr;
        }
        if started.elapsed() > Duration::from_secs(5) {
            if let Some(f) = fallback {
                return f.to_string();
            }
            if started.elapsed().as_secs() % 30 == 5 {
                tracing::warn!(
                    node = name,
                    "waiting for the controller manager to give this node a pod CIDR"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        node = api.get_opt(name).await.ok().flatten();
    }
}

/// Keeps the node's conditions current: Ready while the runtime answers.
async fn heartbeat(
    client: Client,
    runtime: Arc<dyn Runtime>,
    facts: NodeFacts,
    mut since: Timestamp,
) -> anyhow::Result<()> {
    let mut was_ready = true;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (ready, message) = match runtime.version().await {
            Ok(_) => (true, String::new()),
            Err(e) => (false, format!("container runtime is down: {e}")),
        };
        if ready != was_ready {
            since = Timestamp::now();
            was_ready = ready;
        }
        if let Err(e) = node::post_status(&client, &facts, ready, &message, since).await {
            tracing::warn!(error = %e, "node status");
        }
    }
}
