//! The CRI operations the node agent needs, as one trait, so the agent's pod logic can be unit
//! tested against a fake.

use async_trait::async_trait;
use k8s_cri::v1 as cri;

/// Errors of a CRI call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime could not be reached (socket missing, connection refused, ...).
    #[error("cannot reach the container runtime at {path}: {reason}")]
    Connect { path: String, reason: String },
    /// The object the call names does not exist (gRPC NotFound).
    #[error("{0} not found")]
    NotFound(String),
    /// Any other failure the runtime reported, with its message.
    #[error("{op}: {message}")]
    Runtime { op: &'static str, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The CRI calls the agent makes. Identifiers are the runtime's sandbox and container IDs.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name and version (e.g. `containerd`, `1.6.20`).
    async fn version(&self) -> Result<cri::VersionResponse>;

    /// Creates and starts a pod sandbox (network namespace, pause container); returns its ID.
    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String>;
    /// Stops a sandbox's containers and tears down its network. Idempotent.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    /// Removes a stopped sandbox. Idempotent (a missing sandbox is not an error).
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    /// The status of one sandbox (its IP under `network`).
    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus>;
    /// Every sandbox the runtime knows, ready or not.
    async fn list_pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>>;

    /// Creates a container in a sandbox; returns its ID.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a container: SIGTERM (or the image's stop signal), SIGKILL after `timeout_s`.
    async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<()>;
    /// Removes a container. Idempotent.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Every container the runtime knows, in any state.
    async fn list_containers(&self) -> Result<Vec<cri::Container>>;
    /// The status of one container (state, exit code, reason, log path, timestamps).
    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus>;
    /// Runs a command in a running container and waits for it (exec probes, `kubectl exec`
    /// without a terminal).
    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_s: i64,
    ) -> Result<cri::ExecSyncResponse>;

    /// Prepares a streaming exec in a running container (`kubectl exec`); returns the URL on
    /// the runtime's streaming server that carries it.
    async fn exec(&self, request: cri::ExecRequest) -> Result<String>;
    /// Prepares a streaming attach to a running container's stdio (`kubectl attach`); returns
    /// the URL on the runtime's streaming server that carries it.
    async fn attach(&self, request: cri::AttachRequest) -> Result<String>;

    /// The image if it is present on the node.
    async fn image_status(&self, image: &str) -> Result<Option<cri::Image>>;
    /// Pulls an image; returns its reference (the image ID).
    async fn pull_image(&self, image: &str) -> Result<String>;
    /// Every image present on the node.
    async fn list_images(&self) -> Result<Vec<cri::Image>>;
}
