//! The CRI peer of `keelson bench pods`: the bench's pod run straight through CRI on the same
//! containerd (RunPodSandbox with the same CNI network, CreateContainer, StartContainer, with
//! the configs the agent would send), with no control plane, so the report can tell keelson's
//! own overhead from containerd's.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use keelson_agent::pods::{dns, spec};
use keelson_cri::client::CriClient;
use keelson_cri::{Runtime, cri};

use crate::pods::{NAMESPACE, pod_manifest};
use crate::stats::Summary;

/// The cluster DNS and domain `keelson up` gives pods (only their resolv.conf depends on it).
const CLUSTER_DNS: &str = "10.43.0.10";
const CLUSTER_DOMAIN: &str = "cluster.local";

/// Pods run through CRI alone, one after another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CriPeer {
    pub runs: usize,
    pub errors: usize,
    /// From the RunPodSandbox request to the answer of StartContainer.
    pub summary: Summary,
    pub sandbox: Summary,
    pub create: Summary,
    pub start: Summary,
    pub first_error: Option<String>,
}

/// Errors of one run.
#[derive(Debug, thiserror::Error)]
pub enum CriPeerError {
    #[error("the bench's pod manifest is not a valid pod: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error("{step} of pod {pod}: {source}")]
    Call {
        step: &'static str,
        pod: String,
        source: keelson_cri::Error,
    },
}

/// The bench's pod `name` as the API server would hand it to the agent (namespace and UID set).
pub fn peer_pod(name: &str, uid: &str) -> Result<Pod, CriPeerError> {
    let mut pod: Pod = serde_json::from_value(pod_manifest(name))?;
    pod.metadata.namespace = Some(NAMESPACE.to_string());
    pod.metadata.uid = Some(uid.to_string());
    Ok(pod)
}

/// The agent's DNS settings for pods, with the cluster DNS `keelson up` uses.
fn dns_settings() -> dns::Settings {
    dns::Settings {
        cluster_dns: vec![CLUSTER_DNS.to_string()],
        cluster_domain: CLUSTER_DOMAIN.to_string(),
        host: Default::default(),
    }
}

/// The configs of one peer pod: the agent's, without the label that makes a sandbox the
/// agent's own (so the agent of the cluster leaves it alone).
pub fn peer_configs(pod: &Pod, logs: &Path) -> (cri::PodSandboxConfig, cri::ContainerConfig) {
    let mut sandbox = spec::sandbox_config(pod, 0, logs, &dns_settings());
    sandbox.labels.remove(spec::MANAGED_LABEL);
    let c = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .cloned()
        .unwrap_or_default();
    let image = c.image.clone().unwrap_or_default();
    let container = spec::container_config(pod, &c, &image, 0, spec::plain_env(&c));
    (sandbox, container)
}

/// Runs the peer pod `runs` times, one after another, on the containerd of `socket`, with
/// container logs under `logs`; then stops and removes every sandbox it made.
pub async fn cri_peer(socket: &Path, logs: &Path, runs: usize) -> CriPeer {
    let mut peer = CriPeer {
        runs,
        ..CriPeer::default()
    };
    let client = keelson_cri::client::connect_lazy(socket);
    let (mut total, mut sandbox, mut create, mut start) = (vec![], vec![], vec![], vec![]);
    let mut made = Vec::new();
    for k in 0..runs {
        let name = format!("bench-cri-{k}");
        let uid = format!("keelson-bench-cri-{}-{k}", std::process::id());
        match run_once(&client, &name, &uid, logs, &mut made).await {
            Ok(steps) => {
                sandbox.push(steps[0]);
                create.push(steps[1]);
                start.push(steps[2]);
                total.push(steps.iter().sum());
            }
            Err(e) => {
                peer.errors += 1;
                peer.first_error.get_or_insert(e.to_string());
            }
        }
    }
    peer.summary = Summary::of(&total);
    peer.sandbox = Summary::of(&sandbox);
    peer.create = Summary::of(&create);
    peer.start = Summary::of(&start);
    for id in made {
        let _ = client.stop_pod_sandbox(&id).await;
        let _ = client.remove_pod_sandbox(&id).await;
    }
    peer
}

/// One pod: RunPodSandbox, CreateContainer, StartContainer, each timed.
async fn run_once(
    client: &CriClient,
    name: &str,
    uid: &str,
    logs: &Path,
    made: &mut Vec<String>,
) -> Result<[Duration; 3], CriPeerError> {
    let pod = peer_pod(name, uid)?;
    let (sandbox_config, config) = peer_configs(&pod, logs);
    let dir = Path::new(&sandbox_config.log_directory).join(
        config
            .metadata
            .as_ref()
            .map(|m| m.name.as_str())
            .unwrap_or_default(),
    );
    let _ = std::fs::create_dir_all(&dir);
    let call = |step: &'static str| {
        let pod = name.to_string();
        move |source| CriPeerError::Call { step, pod, source }
    };
    let begin = Instant::now();
    let id = client
        .run_pod_sandbox(sandbox_config.clone())
        .await
        .map_err(call("RunPodSandbox"))?;
    made.push(id.clone());
    let ran = Instant::now();
    let container = client
        .create_container(&id, config, sandbox_config)
        .await
        .map_err(call("CreateContainer"))?;
    let created = Instant::now();
    client
        .start_container(&container)
        .await
        .map_err(call("StartContainer"))?;
    let started = Instant::now();
    Ok([ran - begin, created - ran, started - created])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_sends_the_agents_configs_without_its_label() {
        let pod = peer_pod("bench-cri-3", "u-3").expect("pod");
        let (sandbox, container) = peer_configs(&pod, Path::new("/logs"));
        let meta = sandbox.metadata.as_ref().expect("metadata");
        assert_eq!(
            (
                meta.name.as_str(),
                meta.namespace.as_str(),
                meta.uid.as_str()
            ),
            ("bench-cri-3", NAMESPACE, "u-3")
        );
        assert!(!sandbox.labels.contains_key(spec::MANAGED_LABEL));
        assert_eq!(
            sandbox.labels.get("app").map(String::as_str),
            Some("keelson-bench")
        );
        assert_eq!(
            sandbox.log_directory,
            format!("/logs/{NAMESPACE}_bench-cri-3_u-3")
        );
        let dns = sandbox.dns_config.as_ref().expect("dns");
        assert_eq!(dns.servers, vec![CLUSTER_DNS.to_string()]);
        assert_eq!(
            container.image.as_ref().map(|i| i.image.as_str()),
            Some(keelson_oci::PAUSE_IMAGE)
        );
        assert_eq!(container.log_path, "pause/0.log");
    }
}
