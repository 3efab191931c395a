//! `keelson up` (a whole single-node cluster in one process) and `keelson agent` (a node that
//! joins a cluster).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use keelson_pki::tls;

use crate::node::{self, NodeArgs};
use crate::server::{self, ServerArgs};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Kubeconfig of the cluster to join (the one the server wrote).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The API server's URL, when this node reaches it at another address than the
    /// kubeconfig names (e.g. `https://10.0.0.1:6443`).
    #[arg(long)]
    pub server: Option<String>,
    /// The server's PKI directory (its `ca.crt` and `ca.key`), to issue this node's serving
    /// certificate for `kubectl logs`.
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// Where containerd, logs and agent state live.
    #[arg(long, default_value = "/var/lib/keelson-agent")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

fn stepper(started: Instant) -> impl Fn(&str) + Send + Sync + Clone + 'static {
    move |what: &str| eprintln!("[{:>6.2}s] {what}", started.elapsed().as_secs_f64())
}

/// Ctrl-C and SIGTERM, caught from the moment this is called (a signal during start-up is not
/// lost, and never kills the process before the containerd it started is stopped).
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn catch() -> anyhow::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Shutdown {
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Runs the agent against `client` until it fails or the process is told to stop.
async fn run_node(
    client: kube::Client,
    data_dir: PathBuf,
    args: NodeArgs,
    ca: Option<(String, String)>,
    started: Instant,
    control_plane: Option<tokio::task::JoinSet<(&'static str, anyhow::Result<()>)>>,
) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::catch()?;
    let step = stepper(started);
    node::ensure_packages(&step)?;
    let rt = node::start_runtime(&data_dir, &args, &step).await?;
    let host = keelson_agent::host::Host::read(&data_dir);
    let name = args
        .node_name
        .clone()
        .unwrap_or_else(|| host.hostname.clone());
    let tls = match &ca {
        Some((cert, key)) => Some(
            keelson_agent::server::agent_tls(
                cert,
                key,
                &name,
                &[host.address, [127, 0, 0, 1].into()],
            )
            .context("issuing the agent's serving certificate")?,
        ),
        None => None,
    };
    let progress_step = step.clone();
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cfg = keelson_agent::AgentConfig {
        node_name: Some(name),
        data_dir: data_dir.join("agent"),
        pod_cidr: args.pod_cidr.clone(),
        cni_conf_dir: rt.cni_conf_dir.clone(),
        port: args.agent_port,
        tls,
        progress: Arc::new(move |s: &str| progress_step(s)),
        stopping: stopping.clone(),
        cluster_dns: Some(args.cluster_dns.clone()).filter(|s| !s.is_empty()),
        cluster_domain: args.cluster_domain.clone(),
        dns_port: args.dns_port,
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let runtime: Arc<dyn keelson_cri::Runtime> = rt.runtime.clone();
    let agent = tokio::spawn(keelson_agent::run(client, runtime, cfg));
    let mut control_plane = control_plane.unwrap_or_default();
    let result = tokio::select! {
        r = agent => r.context("the agent task failed")?.context("the agent stopped"),
        Some(Ok((name, result))) = control_plane.join_next() => {
            result.with_context(|| format!("the {name} stopped")).and(Err(anyhow::anyhow!("the {name} stopped")))
        }
        _ = shutdown.wait() => {
            eprintln!("shutting down");
            Ok(())
        }
    };
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    if args.remove_pods_on_exit {
        // Let actions already under way finish, then remove everything.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        node::remove_all_pods(rt.runtime.as_ref()).await;
        let pods_dir = data_dir.join("agent").join("pods");
        if let Err(e) = keelson_agent::pods::volumes::cleanup_all(
            &keelson_agent::pods::volumes::HostMounter,
            &pods_dir,
        ) {
            tracing::warn!(dir = %pods_dir.display(), error = %e, "removing pod volumes");
        }
    }
    // Services stop carrying traffic with the node: remove the proxy's table.
    if let Err(e) = keelson_proxy::cleanup(&keelson_proxy::nft::Nft::default()) {
        tracing::warn!(error = %e, "removing the service proxy's nftables table");
    }
    if let Some(c) = rt.containerd {
        c.stop().await;
    }
    result
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let step = stepper(started);
    step("starting keelson: API server, controller manager, scheduler, node agent");
    let (api, listener, tls_config) = server::start(&args.server).await?;
    let mut components = tokio::task::JoinSet::new();
    components.spawn(async move {
        (
            "apiserver",
            keelson_apiserver::serve(api, listener, tls_config)
                .await
                .map_err(anyhow::Error::from),
        )
    });
    let kubeconfig = args.server.data_dir.join("kubeconfig");
    server::spawn_components(&args.server, &kubeconfig, &mut components).await?;
    let pki = tls::load_or_create(&args.server.data_dir.join("pki"), &[])
        .context("loading the cluster CA")?;
    let client = crate::client::from_kubeconfig(&kubeconfig).await?;
    run_node(
        client,
        args.server.data_dir.clone(),
        args.node,
        Some((pki.ca_cert_pem, pki.ca_key_pem)),
        started,
        Some(components),
    )
    .await
}

pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = crate::client::with_server(&args.kubeconfig, args.server.as_deref()).await?;
    let ca = match &args.pki_dir {
        Some(dir) => {
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .with_context(|| format!("reading {}", dir.join(f).display()))
            };
            Some((read(tls::CA_CERT_FILE)?, read(tls::CA_KEY_FILE)?))
        }
        None => None,
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    run_node(client, args.data_dir, args.node, ca, started, None).await
}
