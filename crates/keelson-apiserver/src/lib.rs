//! The Kubernetes API server: one generic registry over the store, a watch cache, admission,
//! discovery and OpenAPI, served over HTTPS to kubectl and every other component.

mod admission;
mod apply;
mod body;
mod bootstrap;
mod cache;
mod conversion;
mod discovery;
mod fields;
mod keys;
mod limits;
mod list;
mod meta;
mod metrics;
mod patch;
mod pod_logs;
mod pod_stream;
mod priority;
mod proxy;
mod query;
mod quota;
mod registry;
mod request;
mod respond;
mod scale;
mod server;
mod storage;
mod strict;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use keelson_store::SharedStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use admission::ServiceAllocator;
pub use cache::Cache;

/// The Kubernetes version keelson serves.
pub const KUBE_VERSION: &str = "v1.33.0";

/// How the apiserver is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The address clients are told to use (`serverAddressByClientCIDRs`, the `kubernetes`
    /// Service's endpoints).
    pub advertise: SocketAddr,
    /// The range ClusterIPs come from.
    pub service_cidr: String,
    /// The range NodePorts come from.
    pub node_ports: (u16, u16),
    /// The TLS client config (cluster CA, `kube-apiserver-kubelet-client` certificate) used to
    /// reach node agents for `pods/log`; `None` answers those requests 503.
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        let listen: SocketAddr = "127.0.0.1:6443".parse().expect("valid address");
        Config {
            listen,
            advertise: listen,
            service_cidr: "10.43.0.0/16".into(),
            node_ports: (30000, 32767),
            kubelet_client: None,
        }
    }
}

/// Everything a request handler needs.
pub struct Api {
    pub store: SharedStore,
    pub cache: Arc<Cache>,
    pub services: ServiceAllocator,
    discovery: discovery::Discovery,
    openapi: keelson_openapi::OpenApiV3,
    metrics: metrics::Metrics,
    pub config: Config,
}

impl Api {
    /// Fills the watch cache from `store`, seeds the allocators and creates the objects every
    /// cluster has (the system namespaces, the `kubernetes` Service).
    pub async fn new(store: SharedStore, config: Config) -> anyhow::Result<Arc<Api>> {
        let kinds = keelson_kinds::ALL;
        let cache = Cache::start(store.clone(), kinds)
            .await
            .context("filling the watch cache")?;
        let services = ServiceAllocator::new(&config.service_cidr, config.node_ports)?;
        if let Some(svc_kind) = keelson_kinds::lookup("", "v1", "services")
            && let Some(rc) = cache.resource(svc_kind)
        {
            for svc in rc.list(&keys::resource_prefix(svc_kind)) {
                services.seed(&svc.value);
            }
        }
        let api = Arc::new(Api {
            store,
            cache,
            services,
            discovery: discovery::Discovery::new(kinds, &config.advertise.to_string()),
            openapi: keelson_openapi::OpenApiV3::new(kinds),
            metrics: metrics::Metrics::default(),
            config,
        });
        bootstrap::run(&api)
            .await
            .context("creating the system namespaces and the kubernetes service")?;
        Ok(api)
    }
}

/// Serves `api` over HTTPS on `listener` until it fails.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    server::serve(api, listener, tls).await
}

/// The `/version` document.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": format!("{KUBE_VERSION}+keelson-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
