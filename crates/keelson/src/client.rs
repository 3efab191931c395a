//! Kubernetes API clients for the components: every component reaches the cluster only through
//! the API, with a kubeconfig, as an outside program would.

use std::path::Path;

use anyhow::Context;

/// A client for the cluster `path` (a kubeconfig file) describes.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building the API client")
}
