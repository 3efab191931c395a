//! An in-memory [`Runtime`] for the agent's unit tests: sandboxes, containers and images that
//! behave as containerd's do (states, exit codes and reasons, name reservations, log paths,
//! labels and annotations round-tripping), with controls to make things fail or exit.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use k8s_cri::v1 as cri;

use crate::runtime::{Error, Result, Runtime};

const READY: i32 = cri::PodSandboxState::SandboxReady as i32;
const NOT_READY: i32 = cri::PodSandboxState::SandboxNotready as i32;
const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;
const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

/// The exit code and reason containerd gives a container that failed to start.
const START_ERROR_EXIT_CODE: i32 = 128;
const START_ERROR_REASON: &str = "StartError";

/// An in-memory container runtime. Every method takes `&self`; it is safe to share.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    next_ip: u32,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, Container>,
    /// Reserved sandbox and container names (as containerd makes them) → the ID holding them.
    names: HashMap<String, String>,
    /// Present images by their normalized tag.
    images: BTreeMap<String, cri::Image>,
    /// Images a pull can fetch (normalized), besides the present ones.
    pullable: Vec<String>,
    fail_create: HashMap<String, String>,
    fail_start: HashMap<String, String>,
    stop_exit_code: Option<i32>,
    exec_results: HashMap<String, cri::ExecSyncResponse>,
    calls: Vec<String>,
}

#[derive(Clone, Debug)]
struct Sandbox {
    id: String,
    config: cri::PodSandboxConfig,
    state: i32,
    created_at: i64,
    ip: String,
    name: String,
}

#[derive(Clone, Debug)]
struct Container {
    id: String,
    sandbox_id: String,
    config: cri::ContainerConfig,
    /// The normalized image reference.
    image: String,
    image_id: String,
    state: i32,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
    message: String,
    log_path: String,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// A reference as containerd normalizes it: `busybox` → `docker.io/library/busybox:latest`,
/// `ghcr.io/x/y` → `ghcr.io/x/y:latest`; image IDs (`sha256:...`) and digests are kept.
pub fn normalize_image(name: &str) -> String {
    if name.starts_with("sha256:") {
        return name.to_string();
    }
    let (repo, digest) = match name.split_once('@') {
        Some((repo, digest)) => (repo, Some(digest)),
        None => (name, None),
    };
    let (first, rest) = match repo.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (repo, None),
    };
    let with_domain = match rest {
        Some(_) if first.contains(['.', ':']) || first == "localhost" => repo.to_string(),
        Some(_) => format!("docker.io/{repo}"),
        None => format!("docker.io/library/{repo}"),
    };
    let last = with_domain.rsplit('/').next().unwrap_or_default();
    match digest {
        Some(digest) => format!("{with_domain}@{digest}"),
        None if last.contains(':') => with_domain,
        None => format!("{with_domain}:latest"),
    }
}

/// A stable fake sha256 hex digest of `text` (FNV-1a, repeated to 64 hex digits).
fn fake_digest(text: &str) -> String {
    let mut out = String::with_capacity(64);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..4u8 {
        for byte in text.bytes().chain([round]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{hash:016x}"));
    }
    out
}

fn image_record(normalized: &str) -> cri::Image {
    let repo = normalized
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map(|(repo, _)| repo)
        .unwrap_or(normalized);
    cri::Image {
        id: format!("sha256:{}", fake_digest(normalized)),
        repo_tags: vec![normalized.to_string()],
        repo_digests: vec![format!(
            "{repo}@sha256:{}",
            fake_digest(&format!("manifest {normalized}"))
        )],
        size: 1_000_000,
        ..Default::default()
    }
}

fn exit_reason(exit_code: i32) -> &'static str {
    if exit_code == 0 { "Completed" } else { "Error" }
}

fn state_name(state: i32) -> &'static str {
    match state {
        CREATED => "CONTAINER_CREATED",
        RUNNING => "CONTAINER_RUNNING",
        EXITED => "CONTAINER_EXITED",
        _ => "CONTAINER_UNKNOWN",
    }
}

fn runtime_error(op: &'static str, message: impl Into<String>) -> Error {
    Error::Runtime {
        op,
        message: message.into(),
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes an image present on the node.
    pub fn add_image(&self, name: &str) {
        let normalized = normalize_image(name);
        self.lock()
            .images
            .insert(normalized.clone(), image_record(&normalized));
    }

    /// Lets a pull of `name` succeed (the image is not present until pulled).
    pub fn add_pullable(&self, name: &str) {
        self.lock().pullable.push(normalize_image(name));
    }

    /// Makes containers of `image` fail to start with `message` (containerd then reports them
    /// exited with code 128, reason `StartError`).
    pub fn fail_start(&self, image: &str, message: &str) {
        self.lock()
            .fail_start
            .insert(normalize_image(image), message.to_string());
    }

    /// Makes creating containers of `image` fail with `message`.
    pub fn fail_create(&self, image: &str, message: &str) {
        self.lock()
            .fail_create
            .insert(normalize_image(image), message.to_string());
    }

    /// The exit code of containers stopped from now on (default: 0 when given a grace period,
    /// as a process that handles SIGTERM; 137 when stopped with timeout 0, i.e. SIGKILL).
    pub fn set_stop_exit_code(&self, exit_code: i32) {
        self.lock().stop_exit_code = Some(exit_code);
    }

    /// Makes a container exit now, as its process would, with `exit_code` and `reason` (empty:
    /// `Completed` for 0, `Error` otherwise, as containerd says; `OOMKilled` for an OOM kill).
    /// Returns false when there is no such container.
    pub fn set_exited(&self, container_id: &str, exit_code: i32, reason: &str) -> bool {
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(container_id) else {
            return false;
        };
        let now = now_nanos();
        if container.started_at == 0 {
            container.started_at = now;
        }
        container.state = EXITED;
        container.finished_at = now;
        container.exit_code = exit_code;
        container.reason = if reason.is_empty() {
            exit_reason(exit_code).to_string()
        } else {
            reason.to_string()
        };
        true
    }

    /// Makes a sandbox not ready, as when its pause container dies.
    pub fn set_sandbox_notready(&self, sandbox_id: &str) -> bool {
        match self.lock().sandboxes.get_mut(sandbox_id) {
            Some(sandbox) => {
                sandbox.state = NOT_READY;
                true
            }
            None => false,
        }
    }

    /// What exec_sync in `container_id` returns from now on (default: exit code 0, no output).
    pub fn set_exec_result(&self, container_id: &str, response: cri::ExecSyncResponse) {
        self.lock()
            .exec_results
            .insert(container_id.to_string(), response);
    }

    /// The calls that changed something, in order: `run_pod_sandbox default/web`,
    /// `stop_pod_sandbox default/web`, `remove_pod_sandbox default/web`,
    /// `create_container web/c1`, `start_container web/c1`, `stop_container web/c1`,
    /// `remove_container web/c1`, `exec_sync web/c1 cat /tmp/ready`, `pull_image busybox`
    /// (pod and container names; the image as asked).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// A streaming call (`exec`, `attach`) on a running container: recorded as
    /// `exec web/c1 sh -c ...`, answered with a URL nothing serves
    /// (`http://127.0.0.1:0/exec/<container id>`).
    fn stream_url(&self, op: &'static str, id: &str, detail: &str) -> Result<String> {
        let mut state = self.lock();
        let Some(c) = state.containers.get(id) else {
            return Err(Error::NotFound(format!("container {id:?}")));
        };
        if c.state != RUNNING {
            let state = cri::ContainerState::try_from(c.state)
                .map(|s| s.as_str_name())
                .unwrap_or("CONTAINER_UNKNOWN");
            return Err(runtime_error(op, format!("container is in {state} state")));
        }
        let label = state.container_label(id);
        let call = format!("{op} {label} {detail}");
        state.calls.push(call.trim_end().to_string());
        Ok(format!("http://127.0.0.1:0/{op}/{id}"))
    }

    /// Forgets the calls made so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The containers of one sandbox, in creation order.
    pub fn containers_in(&self, sandbox_id: &str) -> Vec<cri::Container> {
        let state = self.lock();
        let mut containers: Vec<&Container> = state
            .containers
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .collect();
        containers.sort_by_key(|c| (c.created_at, c.id.clone()));
        containers
            .into_iter()
            .map(|c| state.list_entry(c))
            .collect()
    }
}

impl State {
    fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:0>12}", self.next_id)
    }

    fn find_image(&self, name: &str) -> Option<&cri::Image> {
        let normalized = normalize_image(name);
        self.images.get(&normalized).or_else(|| {
            self.images
                .values()
                .find(|image| image.id == name || image.repo_digests.contains(&normalized))
        })
    }

    fn sandbox_label(&self, sandbox_id: &str) -> String {
        match self.sandboxes.get(sandbox_id) {
            Some(s) => s.name.clone(),
            None => sandbox_id.to_string(),
        }
    }

    fn container_label(&self, id: &str) -> String {
        let Some(container) = self.containers.get(id) else {
            return id.to_string();
        };
        let pod = self
            .sandboxes
            .get(&container.sandbox_id)
            .and_then(|s| s.config.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_else(|| container.sandbox_id.clone());
        let name = container
            .config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        format!("{pod}/{name}")
    }

    fn list_entry(&self, c: &Container) -> cri::Container {
        cri::Container {
            id: c.id.clone(),
            pod_sandbox_id: c.sandbox_id.clone(),
            metadata: c.config.metadata.clone(),
            image: c.config.image.clone(),
            image_ref: c.image_id.clone(),
            state: c.state,
            created_at: c.created_at,
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            ..Default::default()
        }
    }

    /// Stops a running container as a signal would end it.
    fn stop(&mut self, id: &str, timeout_s: i64) {
        let exit_code = self
            .stop_exit_code
            .unwrap_or(if timeout_s > 0 { 0 } else { 137 });
        if let Some(c) = self.containers.get_mut(id)
            && c.state == RUNNING
        {
            c.state = EXITED;
            c.finished_at = now_nanos();
            c.exit_code = exit_code;
            c.reason = exit_reason(exit_code).to_string();
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<cri::VersionResponse> {
        Ok(cri::VersionResponse {
            version: "0.1.0".to_string(),
            runtime_name: "fake".to_string(),
            runtime_version: "0.0.0".to_string(),
            runtime_api_version: "v1".to_string(),
        })
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let mut state = self.lock();
        let Some(meta) = config.metadata.clone() else {
            return Err(runtime_error(
                "run_pod_sandbox",
                "sandbox config must include metadata",
            ));
        };
        let reserved = format!(
            "{}_{}_{}_{}",
            meta.name, meta.namespace, meta.uid, meta.attempt
        );
        if let Some(holder) = state.names.get(&reserved) {
            return Err(runtime_error(
                "run_pod_sandbox",
                format!(
                    "failed to reserve sandbox name {reserved:?}: name {reserved:?} is reserved for {holder:?}"
                ),
            ));
        }
        let id = state.next_id("sandbox-");
        state.next_ip += 1;
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 1)) + state.next_ip);
        let name = format!("{}/{}", meta.namespace, meta.name);
        state.names.insert(reserved, id.clone());
        state.calls.push(format!("run_pod_sandbox {name}"));
        state.sandboxes.insert(
            id.clone(),
            Sandbox {
                id: id.clone(),
                config,
                state: READY,
                created_at: now_nanos(),
                ip: ip.to_string(),
                name,
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if !state.sandboxes.contains_key(id) {
            return Ok(());
        }
        let label = state.sandbox_label(id);
        state.calls.push(format!("stop_pod_sandbox {label}"));
        let members: Vec<String> = state
            .containers
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for member in members {
            state.stop(&member, 0);
        }
        if let Some(sandbox) = state.sandboxes.get_mut(id) {
            sandbox.state = NOT_READY;
            sandbox.ip.clear();
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let Some(sandbox) = state.sandboxes.get(id) else {
            return Ok(());
        };
        if sandbox.state == READY {
            return Err(runtime_error(
                "remove_pod_sandbox",
                format!("sandbox container {id:?} is not fully stopped"),
            ));
        }
        let label = state.sandbox_label(id);
        state.calls.push(format!("remove_pod_sandbox {label}"));
        state.containers.retain(|_, c| c.sandbox_id != id);
        state.sandboxes.remove(id);
        let live: Vec<String> = state
            .sandboxes
            .keys()
            .chain(state.containers.keys())
            .cloned()
            .collect();
        state.names.retain(|_, holder| live.contains(holder));
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let state = self.lock();
        let s = state
            .sandboxes
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?}")))?;
        Ok(cri::PodSandboxStatus {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            state: s.state,
            created_at: s.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: s.ip.clone(),
                additional_ips: Vec::new(),
            }),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            ..Default::default()
        })
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>> {
        let state = self.lock();
        Ok(state
            .sandboxes
            .values()
            .map(|s| cri::PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        _sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let op = "create_container";
        let mut state = self.lock();
        let Some(sandbox) = state.sandboxes.get(sandbox_id).cloned() else {
            return Err(runtime_error(
                op,
                format!("failed to find sandbox id {sandbox_id:?}: not found"),
            ));
        };
        if sandbox.state != READY {
            return Err(runtime_error(
                op,
                format!("sandbox {sandbox_id:?} is not ready"),
            ));
        }
        let Some(meta) = config.metadata.clone() else {
            return Err(runtime_error(op, "container config must include metadata"));
        };
        let asked = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let Some(image) = state.find_image(&asked).cloned() else {
            return Err(runtime_error(
                op,
                format!("failed to get image {asked:?}: not found"),
            ));
        };
        let normalized = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| normalize_image(&asked));
        if let Some(message) = state.fail_create.get(&normalized) {
            return Err(runtime_error(op, message.clone()));
        }
        let pod = sandbox.config.metadata.clone().unwrap_or_default();
        let reserved = format!(
            "{}_{}_{}_{}_{}",
            meta.name, pod.name, pod.namespace, pod.uid, meta.attempt
        );
        if let Some(holder) = state.names.get(&reserved) {
            return Err(runtime_error(
                op,
                format!(
                    "failed to reserve container name {reserved:?}: name {reserved:?} is reserved for {holder:?}"
                ),
            ));
        }
        let log_path = if sandbox.config.log_directory.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            std::path::Path::new(&sandbox.config.log_directory)
                .join(&config.log_path)
                .to_string_lossy()
                .into_owned()
        };
        let id = state.next_id("container-");
        state.names.insert(reserved, id.clone());
        state
            .calls
            .push(format!("create_container {}/{}", pod.name, meta.name));
        state.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                sandbox_id: sandbox_id.to_string(),
                config,
                image: normalized,
                image_id: image.id.clone(),
                state: CREATED,
                created_at: now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                log_path,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let op = "start_container";
        let mut state = self.lock();
        let label = state.container_label(id);
        let failure = {
            let Some(c) = state.containers.get(id) else {
                return Err(Error::NotFound(format!("container {id:?}")));
            };
            if c.state != CREATED {
                return Err(runtime_error(
                    op,
                    format!(
                        "failed to set starting state for container {id:?}: container is in {} state",
                        state_name(c.state)
                    ),
                ));
            }
            let sandbox_ready = state
                .sandboxes
                .get(&c.sandbox_id)
                .is_some_and(|s| s.state == READY);
            if !sandbox_ready {
                Some(format!(
                    "sandbox container {:?} is not running",
                    c.sandbox_id
                ))
            } else {
                state.fail_start.get(&c.image).cloned()
            }
        };
        state.calls.push(format!("{op} {label}"));
        let now = now_nanos();
        let Some(c) = state.containers.get_mut(id) else {
            return Err(Error::NotFound(format!("container {id:?}")));
        };
        match failure {
            Some(message) => {
                c.state = EXITED;
                c.finished_at = now;
                c.exit_code = START_ERROR_EXIT_CODE;
                c.reason = START_ERROR_REASON.to_string();
                c.message = message.clone();
                Err(runtime_error(op, message))
            }
            None => {
                c.state = RUNNING;
                c.started_at = now;
                Ok(())
            }
        }
    }

    async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<()> {
        let mut state = self.lock();
        if !state.containers.contains_key(id) {
            return Err(Error::NotFound(format!("container {id:?}")));
        }
        let label = state.container_label(id);
        state.calls.push(format!("stop_container {label}"));
        state.stop(id, timeout_s);
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let Some(c) = state.containers.get(id) else {
            return Ok(());
        };
        if c.state == RUNNING {
            return Err(runtime_error(
                "remove_container",
                format!(
                    "failed to set removing state for container {id:?}: container is still running, to stop first"
                ),
            ));
        }
        let label = state.container_label(id);
        state.calls.push(format!("remove_container {label}"));
        state.containers.remove(id);
        state.names.retain(|_, holder| holder != id);
        state.exec_results.remove(id);
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<cri::Container>> {
        let state = self.lock();
        Ok(state
            .containers
            .values()
            .map(|c| state.list_entry(c))
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let state = self.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?}")))?;
        let image_ref = state
            .find_image(&c.image)
            .and_then(|i| i.repo_digests.first().cloned())
            .unwrap_or_else(|| c.image_id.clone());
        Ok(cri::ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: c.state,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: Some(cri::ImageSpec {
                image: c.image.clone(),
                ..Default::default()
            }),
            image_ref,
            reason: c.reason.clone(),
            message: c.message.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c.log_path.clone(),
            ..Default::default()
        })
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        _timeout_s: i64,
    ) -> Result<cri::ExecSyncResponse> {
        let mut state = self.lock();
        let Some(c) = state.containers.get(id) else {
            return Err(Error::NotFound(format!("container {id:?}")));
        };
        if c.state != RUNNING {
            return Err(runtime_error(
                "exec_sync",
                "container is not created or running",
            ));
        }
        let label = state.container_label(id);
        state
            .calls
            .push(format!("exec_sync {label} {}", cmd.join(" ")));
        Ok(state.exec_results.get(id).cloned().unwrap_or_default())
    }

    async fn exec(&self, request: cri::ExecRequest) -> Result<String> {
        self.stream_url("exec", &request.container_id, &request.cmd.join(" "))
    }

    async fn attach(&self, request: cri::AttachRequest) -> Result<String> {
        self.stream_url("attach", &request.container_id, "")
    }

    async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        Ok(self.lock().find_image(image).cloned())
    }

    async fn pull_image(&self, image: &str) -> Result<String> {
        let mut state = self.lock();
        state.calls.push(format!("pull_image {image}"));
        let normalized = normalize_image(image);
        if let Some(found) = state.find_image(image) {
            return Ok(found.id.clone());
        }
        if !state.pullable.contains(&normalized) {
            return Err(runtime_error(
                "pull_image",
                format!(
                    "rpc error: code = NotFound desc = failed to pull and unpack image {normalized:?}: failed to resolve reference {normalized:?}: {normalized}: not found"
                ),
            ));
        }
        let record = image_record(&normalized);
        let id = record.id.clone();
        state.images.insert(normalized, record);
        Ok(id)
    }

    async fn list_images(&self) -> Result<Vec<cri::Image>> {
        Ok(self.lock().images.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox_config(namespace: &str, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("uid-{name}"),
                namespace: namespace.to_string(),
                attempt: 0,
            }),
            log_directory: format!("/var/log/pods/{namespace}_{name}_uid-{name}"),
            labels: [("io.kubernetes.pod.name".to_string(), name.to_string())].into(),
            annotations: [("keelson.io/x".to_string(), "1".to_string())].into(),
            ..Default::default()
        }
    }

    fn container_config(name: &str, image: &str, attempt: u32) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_string(),
                attempt,
            }),
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            log_path: format!("{name}/{attempt}.log"),
            labels: [("io.kubernetes.container.name".to_string(), name.to_string())].into(),
            annotations: [(
                "io.kubernetes.container.restartCount".to_string(),
                attempt.to_string(),
            )]
            .into(),
            ..Default::default()
        }
    }

    /// A ready sandbox `default/web` with a running container `c1` of busybox.
    async fn running(fake: &FakeRuntime) -> (String, String) {
        fake.add_image("busybox");
        let sandbox = fake
            .run_pod_sandbox(sandbox_config("default", "web"))
            .await
            .expect("sandbox");
        let id = fake
            .create_container(
                &sandbox,
                container_config("c1", "busybox", 0),
                sandbox_config("default", "web"),
            )
            .await
            .expect("create");
        fake.start_container(&id).await.expect("start");
        (sandbox, id)
    }

    #[test]
    fn image_names_are_normalized_as_containerd_does() {
        let check = |name: &str, want: &str| assert_eq!(normalize_image(name), want, "{name}");
        check("busybox", "docker.io/library/busybox:latest");
        check("busybox:1.36", "docker.io/library/busybox:1.36");
        check("keelson/app:1", "docker.io/keelson/app:1");
        check("ghcr.io/a/b", "ghcr.io/a/b:latest");
        check("localhost:5000/x:2", "localhost:5000/x:2");
        check("localhost/x", "localhost/x:latest");
        check("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc");
        check("sha256:abc", "sha256:abc");
    }

    #[tokio::test]
    async fn a_pod_runs_and_its_metadata_round_trips() {
        let fake = FakeRuntime::new();
        let (sandbox, id) = running(&fake).await;

        let status = fake.pod_sandbox_status(&sandbox).await.expect("status");
        assert_eq!(status.state, READY);
        assert_eq!(status.network.expect("network").ip, "10.42.0.2");
        assert_eq!(status.labels["io.kubernetes.pod.name"], "web");
        assert_eq!(status.annotations["keelson.io/x"], "1");
        let listed = fake.list_pod_sandboxes().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].metadata.as_ref().expect("metadata").uid,
            "uid-web"
        );

        let c = fake.container_status(&id).await.expect("status");
        assert_eq!(c.state, RUNNING);
        assert!(c.started_at > 0);
        assert_eq!(c.log_path, "/var/log/pods/default_web_uid-web/c1/0.log");
        assert_eq!(
            c.image.expect("image").image,
            "docker.io/library/busybox:latest"
        );
        assert!(
            c.image_ref.starts_with("docker.io/library/busybox@sha256:"),
            "{}",
            c.image_ref
        );
        assert_eq!(c.annotations["io.kubernetes.container.restartCount"], "0");
        let containers = fake.list_containers().await.expect("list");
        assert_eq!(containers[0].labels["io.kubernetes.container.name"], "c1");
        assert_eq!(containers[0].pod_sandbox_id, sandbox);
        assert_eq!(fake.containers_in(&sandbox).len(), 1);

        assert_eq!(
            fake.calls(),
            vec![
                "run_pod_sandbox default/web",
                "create_container web/c1",
                "start_container web/c1"
            ]
        );
    }

    #[tokio::test]
    async fn containers_exit_as_told_and_as_stopped() {
        struct Case {
            name: &'static str,
            exit: Option<(i32, &'static str)>,
            stop_timeout: Option<i64>,
            want: (i32, &'static str),
        }
        let cases = [
            Case {
                name: "exits 0",
                exit: Some((0, "")),
                stop_timeout: None,
                want: (0, "Completed"),
            },
            Case {
                name: "exits 1",
                exit: Some((1, "")),
                stop_timeout: None,
                want: (1, "Error"),
            },
            Case {
                name: "oom",
                exit: Some((137, "OOMKilled")),
                stop_timeout: None,
                want: (137, "OOMKilled"),
            },
            Case {
                name: "graceful stop",
                exit: None,
                stop_timeout: Some(30),
                want: (0, "Completed"),
            },
            Case {
                name: "kill",
                exit: None,
                stop_timeout: Some(0),
                want: (137, "Error"),
            },
        ];
        for case in cases {
            let fake = FakeRuntime::new();
            let (_, id) = running(&fake).await;
            if let Some((code, reason)) = case.exit {
                assert!(fake.set_exited(&id, code, reason));
            }
            if let Some(timeout) = case.stop_timeout {
                fake.stop_container(&id, timeout).await.expect("stop");
            }
            let status = fake.container_status(&id).await.expect("status");
            assert_eq!(status.state, EXITED, "{}", case.name);
            assert!(status.finished_at >= status.started_at, "{}", case.name);
            assert_eq!(
                (status.exit_code, status.reason.as_str()),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[tokio::test]
    async fn a_failing_start_leaves_a_start_error() {
        let fake = FakeRuntime::new();
        fake.add_image("busybox");
        fake.fail_start(
            "busybox",
            "failed to create containerd task: exec: \"nope\": executable file not found in $PATH",
        );
        let sandbox = fake
            .run_pod_sandbox(sandbox_config("default", "web"))
            .await
            .expect("sandbox");
        let id = fake
            .create_container(
                &sandbox,
                container_config("c1", "busybox", 0),
                sandbox_config("default", "web"),
            )
            .await
            .expect("create");
        let err = fake.start_container(&id).await.expect_err("start fails");
        assert!(
            err.to_string().contains("executable file not found"),
            "{err}"
        );
        let status = fake.container_status(&id).await.expect("status");
        assert_eq!(
            (status.state, status.exit_code, status.reason.as_str()),
            (EXITED, 128, "StartError")
        );
        assert!(status.message.contains("executable file not found"));
    }

    #[tokio::test]
    async fn names_are_reserved_until_removed() {
        let fake = FakeRuntime::new();
        let (sandbox, id) = running(&fake).await;
        let again = fake
            .create_container(
                &sandbox,
                container_config("c1", "busybox", 0),
                sandbox_config("default", "web"),
            )
            .await
            .expect_err("same name and attempt");
        assert!(
            again
                .to_string()
                .contains("failed to reserve container name \"c1_web_default_uid-web_0\""),
            "{again}"
        );
        fake.create_container(
            &sandbox,
            container_config("c1", "busybox", 1),
            sandbox_config("default", "web"),
        )
        .await
        .expect("next attempt");
        let err = fake.remove_container(&id).await.expect_err("running");
        assert!(err.to_string().contains("still running"), "{err}");
        fake.stop_container(&id, 0).await.expect("stop");
        fake.remove_container(&id).await.expect("remove");
        fake.remove_container(&id)
            .await
            .expect("remove is idempotent");
        fake.create_container(
            &sandbox,
            container_config("c1", "busybox", 0),
            sandbox_config("default", "web"),
        )
        .await
        .expect("the name is free again");
        let dup = fake
            .run_pod_sandbox(sandbox_config("default", "web"))
            .await
            .expect_err("reserved");
        assert!(
            dup.to_string().contains("failed to reserve sandbox name"),
            "{dup}"
        );
    }

    #[tokio::test]
    async fn stopping_and_removing_a_sandbox_takes_its_containers() {
        let fake = FakeRuntime::new();
        let (sandbox, id) = running(&fake).await;
        let err = fake
            .remove_pod_sandbox(&sandbox)
            .await
            .expect_err("still ready");
        assert!(err.to_string().contains("not fully stopped"), "{err}");
        fake.stop_pod_sandbox(&sandbox).await.expect("stop");
        let status = fake.pod_sandbox_status(&sandbox).await.expect("status");
        assert_eq!(status.state, NOT_READY);
        let c = fake.container_status(&id).await.expect("status");
        assert_eq!((c.state, c.exit_code), (EXITED, 137));
        fake.remove_pod_sandbox(&sandbox).await.expect("remove");
        fake.remove_pod_sandbox(&sandbox).await.expect("idempotent");
        fake.stop_pod_sandbox(&sandbox).await.expect("idempotent");
        assert!(fake.list_containers().await.expect("list").is_empty());
        assert!(matches!(
            fake.pod_sandbox_status(&sandbox).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            fake.container_status(&id).await,
            Err(Error::NotFound(_))
        ));
        assert!(
            fake.run_pod_sandbox(sandbox_config("default", "web"))
                .await
                .is_ok()
        );
        let calls = fake.calls();
        assert_eq!(
            calls[3..],
            [
                "stop_pod_sandbox default/web",
                "remove_pod_sandbox default/web",
                "run_pod_sandbox default/web"
            ]
        );
    }

    #[tokio::test]
    async fn images_are_present_pullable_or_missing() {
        let fake = FakeRuntime::new();
        fake.add_image("busybox:1.36");
        fake.add_pullable("keelson/app:1");
        assert!(fake.image_status("nope:1").await.expect("status").is_none());
        let present = fake
            .image_status("docker.io/library/busybox:1.36")
            .await
            .expect("status");
        let present = present.expect("present");
        assert_eq!(present.repo_tags, vec!["docker.io/library/busybox:1.36"]);
        assert!(
            fake.image_status(&present.id)
                .await
                .expect("by id")
                .is_some()
        );

        let id = fake.pull_image("keelson/app:1").await.expect("pull");
        assert!(id.starts_with("sha256:"));
        assert!(
            fake.image_status("keelson/app:1")
                .await
                .expect("status")
                .is_some()
        );
        let err = fake.pull_image("nope:1").await.expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "pull_image: rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nope:1\": failed to resolve reference \"docker.io/library/nope:1\": docker.io/library/nope:1: not found"
        );
        assert_eq!(fake.list_images().await.expect("list").len(), 2);
        let sandbox = fake
            .run_pod_sandbox(sandbox_config("default", "web"))
            .await
            .expect("sandbox");
        let err = fake
            .create_container(
                &sandbox,
                container_config("c1", "nope:1", 0),
                sandbox_config("default", "web"),
            )
            .await
            .expect_err("image missing");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[tokio::test]
    async fn exec_answers_as_set() {
        let fake = FakeRuntime::new();
        let (_, id) = running(&fake).await;
        let default = fake
            .exec_sync(&id, vec!["true".into()], 1)
            .await
            .expect("exec");
        assert_eq!(default.exit_code, 0);
        fake.set_exec_result(
            &id,
            cri::ExecSyncResponse {
                stdout: b"no\n".to_vec(),
                stderr: vec![],
                exit_code: 1,
            },
        );
        let set = fake
            .exec_sync(&id, vec!["cat".into(), "/ready".into()], 1)
            .await
            .expect("exec");
        assert_eq!(
            (set.exit_code, set.stdout.as_slice()),
            (1, b"no\n".as_slice())
        );
        assert!(
            fake.calls()
                .contains(&"exec_sync web/c1 cat /ready".to_string())
        );
        fake.set_exited(&id, 0, "");
        assert!(fake.exec_sync(&id, vec!["true".into()], 1).await.is_err());
    }
}
