//! Kubernetes API clients for the components: every component reaches the cluster only through
//! the API, with a kubeconfig, as an outside program would.

use std::path::Path;

use anyhow::Context;

/// A client for the cluster `path` (a kubeconfig file) describes.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    with_server(path, None).await
}

/// A client for the cluster `path` describes, at `server` instead of the kubeconfig's URL when
/// one is given (a node reaching the control plane at another address).
pub async fn with_server(path: &Path, server: Option<&str>) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    let mut config = config;
    if let Some(url) = server {
        config.cluster_url = url
            .parse()
            .with_context(|| format!("--server {url:?} is not a URL"))?;
    }
    kube::Client::try_from(config).context("building the API client")
}

/// A client for the cluster `path` describes that keeps at most `max` requests in flight. kube's
/// client speaks HTTP/1.1, so every concurrent request holds a TLS connection of its own (and
/// its buffers) in the pool: the controller manager's bursts of pod creations and their Events
/// opened hundreds. Watches hold a slot only until their response headers arrive.
pub async fn limited(path: &Path, max: usize) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    let builder =
        kube::client::ClientBuilder::try_from(config).context("building the API client")?;
    Ok(builder
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(max))
        .build())
}
