//! Cluster DNS, one server per node: answers `<svc>.<ns>.svc.<domain>` and friends from a
//! watch cache of Services and EndpointSlices, forwards other names to the node's upstream
//! resolvers, and registers itself as an endpoint of the `kube-dns` Service.

pub mod cache;
pub mod kubedns;
pub mod lookup;
pub mod resolvconf;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

/// The port a node's DNS server listens on by default (not 53, so a DNS server of the host
/// never conflicts; the `kube-dns` Service maps 53 to it).
pub const DEFAULT_PORT: u16 = 10053;
/// The cluster DNS IP by default (in the default Service CIDR 10.43.0.0/16).
pub const DEFAULT_CLUSTER_DNS: &str = "10.43.0.10";
/// The cluster domain by default.
pub const DEFAULT_DOMAIN: &str = "cluster.local";

/// Errors starting the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Zone(#[from] lookup::Error),
    #[error(transparent)]
    Server(#[from] server::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a node's DNS server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node's name (its EndpointSlice is `kube-dns-<node>`).
    pub node: String,
    /// Where to answer: the node's InternalIP and [`DEFAULT_PORT`].
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// The `kube-dns` Service's ClusterIP; none: do not register the Service.
    pub cluster_ip: Option<String>,
    /// The upstream name servers (from the host's resolv.conf).
    pub upstream: Vec<String>,
}

/// Starts the server: binds UDP and TCP (an error when the address is taken), then keeps the
/// cache and the `kube-dns` registration current in the background.
pub async fn start(client: Client, cfg: Config) -> Result<server::Running> {
    let zone = lookup::Zone::new(&cfg.domain)?;
    let cache = cache::Shared::default();
    let handler = server::Handler {
        cache: cache.clone(),
        zone,
        upstream: Arc::new(upstream::Resolvers::from_nameservers(&cfg.upstream)),
    };
    let running = server::serve(cfg.listen, handler).await?;
    tokio::spawn(cache::run(client.clone(), cache));
    if let Some(cluster_ip) = cfg.cluster_ip {
        let reg = kubedns::Registration {
            node: cfg.node,
            addr: running.addr,
            cluster_ip,
        };
        tokio::spawn(async move {
            // Re-checked now and then: the Service or the slice may be deleted by hand.
            let mut delay = Duration::from_millis(200);
            loop {
                match kubedns::ensure(&client, &reg).await {
                    Ok(()) => delay = Duration::from_secs(30),
                    Err(e) => {
                        tracing::warn!(error = %e, "registering the cluster DNS");
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
                tokio::time::sleep(delay).await;
            }
        });
    }
    Ok(running)
}
