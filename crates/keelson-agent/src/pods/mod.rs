//! The pods bound to this node: a watch of them, a periodic relist of the runtime, and one
//! worker per pod that plans ([`plan`]), acts through CRI, and writes the status ([`status`])
//! when it changed.

pub mod backoff;
pub mod claims;
pub mod dns;
pub mod env;
pub mod hooks;
pub mod logsource;
pub mod observe;
pub mod plan;
pub mod probes;
pub mod spec;
pub mod status;
pub mod streams;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use keelson_controllers::events::{EventType, Recorder};
use keelson_cri::{Runtime, cri};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, watch};

use self::backoff::Backoff;
use self::observe::{PodRuntime, State};
use self::plan::{Action, backoff_key};
use self::status::WaitingReasons;

/// How often the runtime is relisted when nothing pokes it.
const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// How often every pod is looked at even when nothing changed.
const SWEEP_PERIOD: Duration = Duration::from_secs(2);
/// The tracing target of the steps of starting a pod, each with the time it took
/// (`KEELSON_LOG=keelson_agent::podstart=debug` shows them).
const TIMING: &str = "keelson_agent::podstart";

/// What the pod manager needs to know about its node.
#[derive(Clone, Debug)]
pub struct Config {
    pub node: String,
    pub host_ip: String,
    /// Where container logs go (`<dir>/<ns>_<pod>_<uid>/<container>/<attempt>.log`).
    pub logs_dir: PathBuf,
    /// Set when the process is stopping: workers stop acting.
    pub stopping: Arc<AtomicBool>,
    /// What pods' /etc/resolv.conf is made from.
    pub dns: dns::Settings,
}

/// One relist of the runtime.
#[derive(Default)]
pub struct Snapshot {
    pub generation: u64,
    /// When the listing began: a snapshot shows an action only if it began after it.
    pub taken_at: Option<Instant>,
    pub sandboxes: Vec<cri::PodSandbox>,
    pub containers: Vec<cri::Container>,
}

/// The pods of this node and the runtime they run on.
pub struct PodManager {
    client: Client,
    runtime: Arc<dyn Runtime>,
    cfg: Config,
    pods: Store<Pod>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    poke: Arc<Notify>,
    recorder: Recorder,
    probes: probes::Prober,
    state: Mutex<Shared>,
    /// Set once the pod cache holds the first full list: before that, a pod missing from it
    /// may still exist, so nothing is judged an orphan.
    ready: AtomicBool,
}

#[derive(Default)]
struct Shared {
    restarts: Backoff,
    pulls: Backoff,
    /// Why containers wait after a failed step, by pod UID.
    errors: HashMap<String, WaitingReasons>,
    /// When an image pull last failed, by back-off key.
    pull_failed_ns: HashMap<String, i64>,
    /// Container statuses by (id, CRI state): a state's status does not change.
    statuses: HashMap<(String, i32), cri::ContainerStatus>,
    /// Sandbox IPs by sandbox ID.
    ips: HashMap<String, Option<String>>,
    workers: HashMap<String, Arc<Notify>>,
    /// The last FailedMount message of each pod, and when it was reported.
    mount_errors: HashMap<String, (String, Instant)>,
}

fn now_ns() -> i64 {
    Timestamp::now().as_nanosecond() as i64
}

fn now_time() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl PodManager {
    /// Starts watching the node's pods and relisting the runtime; call [`PodManager::run`].
    pub fn start(client: Client, runtime: Arc<dyn Runtime>, cfg: Config) -> Arc<PodManager> {
        let api: Api<Pod> = Api::all(client.clone());
        let (pods, writer) = reflector::store();
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let poke = Arc::new(Notify::new());
        let manager = Arc::new(PodManager {
            recorder: Recorder::new(client.clone(), "kubelet"),
            probes: probes::Prober::default(),
            client,
            runtime: runtime.clone(),
            pods,
            snapshot: rx,
            poke: poke.clone(),
            state: Mutex::default(),
            ready: AtomicBool::new(false),
            cfg,
        });
        let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", manager.cfg.node));
        let m = manager.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, wc)
                .default_backoff()
                .reflect(writer)
                .touched_objects()
                .boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(pod) => {
                        if let Some(uid) = pod.metadata.uid.as_deref() {
                            tracing::debug!(target: TIMING, pod = %pod.name_any(), "watch event");
                            m.wake(uid);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "pod watch failed; retrying"),
                }
            }
        });
        tokio::spawn(relist(runtime, tx, poke));
        manager
    }

    /// The pods bound to this node, as last seen.
    pub fn pods(&self) -> Store<Pod> {
        self.pods.clone()
    }

    /// Dispatches every relist to the pods' workers; runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        let _ = self.pods.wait_until_ready().await;
        self.ready.store(true, Ordering::SeqCst);
        let mut snapshots = self.snapshot.clone();
        let mut before: HashMap<String, u64> = HashMap::new();
        let mut last_sweep = Instant::now();
        loop {
            let snap = snapshots.borrow_and_update().clone();
            // Wake the pods whose runtime state changed; every pod now and then, for what
            // time alone changes (back-off ending, volume contents).
            let now = fingerprints(&snap);
            let sweep = last_sweep.elapsed() >= SWEEP_PERIOD;
            if sweep {
                last_sweep = Instant::now();
            }
            let mut uids: HashSet<String> = self
                .pods
                .state()
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            uids.extend(now.keys().cloned());
            uids.extend(before.keys().cloned());
            for uid in uids {
                if sweep || now.get(&uid) != before.get(&uid) {
                    self.wake(&uid);
                }
            }
            before = now;
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    }

    /// Wakes the worker of `uid`, starting one if needed.
    fn wake(self: &Arc<Self>, uid: &str) {
        if !self.ready.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(n) = st.workers.get(uid) {
            n.notify_one();
            return;
        }
        let n = Arc::new(Notify::new());
        n.notify_one();
        st.workers.insert(uid.to_string(), n.clone());
        tokio::spawn(self.clone().worker(uid.to_string(), n));
    }

    async fn worker(self: Arc<Self>, uid: String, notify: Arc<Notify>) {
        loop {
            notify.notified().await;
            for _ in 0..8 {
                if self.cfg.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let (acted, finished) = self.sync(&uid).await;
                let acted_at = Instant::now();
                if finished {
                    if let Ok(mut st) = self.state.lock() {
                        st.workers.remove(&uid);
                        st.errors.remove(&uid);
                        st.restarts.forget_pod(&uid);
                        st.pulls.forget_pod(&uid);
                    }
                    return;
                }
                if !acted {
                    break;
                }
                // Look again once the runtime has been relisted after what we did.
                self.poke.notify_one();
                let mut rx = self.snapshot.clone();
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    rx.wait_for(|s| s.taken_at.is_some_and(|t| t > acted_at)),
                )
                .await;
            }
        }
    }

    fn pod_by_uid(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .find(|p| p.metadata.uid.as_deref() == Some(uid))
    }

    /// What the runtime holds for `uid`, from the last relist plus statuses fetched as needed.
    pub async fn observe(&self, uid: &str) -> PodRuntime {
        let snap = self.snapshot.borrow().clone();
        let mut sandboxes: Vec<&cri::PodSandbox> = snap
            .sandboxes
            .iter()
            .filter(|s| managed(s) && s.metadata.as_ref().is_some_and(|m| m.uid == uid))
            .collect();
        sandboxes.sort_by_key(|s| {
            std::cmp::Reverse((s.metadata.as_ref().map_or(0, |m| m.attempt), s.created_at))
        });
        let ids: HashSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
        let mut rt = PodRuntime {
            sandboxes: sandboxes.iter().map(|s| observe::sandbox_of(s)).collect(),
            ..Default::default()
        };
        for c in snap
            .containers
            .iter()
            .filter(|c| ids.contains(c.pod_sandbox_id.as_str()))
        {
            let status = self.container_status(c).await;
            rt.instances.push(observe::instance_of(c, status.as_ref()));
        }
        if let Some(s) = rt.sandbox().filter(|s| s.ready).cloned() {
            rt.ip = self.sandbox_ip(&s.id).await;
        }
        rt
    }

    async fn container_status(&self, c: &cri::Container) -> Option<cri::ContainerStatus> {
        let key = (c.id.clone(), c.state);
        if let Some(s) = self.state.lock().ok()?.statuses.get(&key) {
            return Some(s.clone());
        }
        let s = self.runtime.container_status(&c.id).await.ok()?;
        if let Ok(mut st) = self.state.lock() {
            if st.statuses.len() > 8192 {
                st.statuses.clear();
            }
            st.statuses.insert(key, s.clone());
        }
        Some(s)
    }

    async fn sandbox_ip(&self, id: &str) -> Option<String> {
        if let Some(ip) = self.state.lock().ok()?.ips.get(id) {
            return ip.clone();
        }
        let s = self.runtime.pod_sandbox_status(id).await.ok()?;
        let ip = s.network.map(|n| n.ip).filter(|ip| !ip.is_empty());
        if let Ok(mut st) = self.state.lock() {
            st.ips.insert(id.to_string(), ip.clone());
        }
        ip
    }

    /// One level-triggered pass over a pod. Returns (acted on the runtime, nothing left to do
    /// ever again for this UID).
    async fn sync(self: &Arc<Self>, uid: &str) -> (bool, bool) {
        let pod = self.pod_by_uid(uid);
        let rt = self.observe(uid).await;
        let probed = self.probes.sync(
            pod.as_ref(),
            uid,
            &rt,
            &self.runtime,
            Arc::new(self.clone()),
        );
        let plan = {
            let Ok(st) = self.state.lock() else {
                return (false, false);
            };
            plan::plan_with(pod.as_deref(), uid, &rt, &st.restarts, &probed, now_ns())
        };
        if pod.is_none() && rt.is_empty() {
            // Gone for good: nothing may still use its volumes.
            self.remove_volumes(uid);
            return (false, true);
        }
        if let Some(pod) = pod.as_deref() {
            self.refresh_volumes(pod, uid, &rt).await;
        }
        let mut acted = false;
        let mut starts = Vec::new();
        for action in &plan.actions {
            match action {
                Action::StartContainer { .. } => starts.push(action.clone()),
                other => acted |= self.apply(pod.as_deref(), uid, &rt, other).await,
            }
        }
        let results = futures::future::join_all(
            starts
                .iter()
                .map(|a| self.apply(pod.as_deref(), uid, &rt, a)),
        )
        .await;
        acted |= results.into_iter().any(|a| a);
        if plan.actions.contains(&Action::DeleteObject) {
            return (false, false);
        }
        if let Some(pod) = pod.as_deref()
            && !acted
            && pod.metadata.deletion_timestamp.is_none()
        {
            self.write_status(pod, uid, &rt, &plan.waiting).await;
        }
        (acted, false)
    }

    async fn write_status(&self, pod: &Pod, uid: &str, rt: &PodRuntime, waits: &[plan::Waiting]) {
        let mut waiting = self
            .state
            .lock()
            .ok()
            .and_then(|st| st.errors.get(uid).cloned())
            .unwrap_or_default();
        for w in waits {
            let delay = self
                .state
                .lock()
                .map(|st| st.restarts.delay(&backoff_key(uid, &w.name)))
                .unwrap_or(backoff::INITIAL);
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}({uid})",
                human(delay),
                w.name,
                pod.name_any(),
                pod.namespace().unwrap_or_default()
            );
            waiting.insert(w.name.clone(), (w.reason.clone(), message));
        }
        let probed = self.probes.results();
        let new = status::compute_with(pod, rt, &waiting, &probed, &self.cfg.host_ip, &now_time());
        let Some(patch) = status::diff(pod, &new) else {
            return;
        };
        let was_backing_off = |name: &str| {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == name))
                .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .is_some_and(|r| r == "CrashLoopBackOff")
        };
        for w in waits.iter().filter(|w| !was_backing_off(&w.name)) {
            self.event(
                pod,
                Some(&w.name),
                EventType::Warning,
                "BackOff",
                &format!(
                    "Back-off restarting failed container {} in pod {}_{}({uid})",
                    w.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default()
                ),
            );
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let started = Instant::now();
        let phase = new
            .get("phase")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string();
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": patch})),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), error = %e, "status write failed");
        }
        tracing::debug!(target: TIMING, pod = %pod.name_any(), %phase, took = ?started.elapsed(), "status written");
    }

    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let field_path = container.map(|name| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|ics| ics.iter().any(|c| c.name == name));
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            }
        });
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        let rec = self.recorder.clone();
        let (reason, message) = (reason.to_string(), message.to_string());
        tokio::spawn(async move { rec.publish_ref(involved, kind, &reason, &message).await });
    }

    fn set_error(&self, uid: &str, name: &str, reason: &str, message: String) {
        if let Ok(mut st) = self.state.lock() {
            st.errors
                .entry(uid.to_string())
                .or_default()
                .insert(name.to_string(), (reason.to_string(), message));
        }
    }

    fn clear_error(&self, uid: &str, name: &str) {
        if let Ok(mut st) = self.state.lock()
            && let Some(e) = st.errors.get_mut(uid)
        {
            e.remove(name);
        }
    }

    /// Carries out one action; returns whether the runtime changed.
    async fn apply(&self, pod: Option<&Pod>, uid: &str, rt: &PodRuntime, action: &Action) -> bool {
        match action {
            Action::RunSandbox { attempt } => {
                let Some(pod) = pod else { return false };
                if !rt.is_empty() {
                    if *attempt > 0 {
                        self.event(
                            pod,
                            None,
                            EventType::Normal,
                            "SandboxChanged",
                            "Pod sandbox changed, it will be killed and re-created.",
                        );
                    }
                    self.kill(Some(pod), rt, 0, false).await;
                }
                let config = spec::sandbox_config(pod, *attempt, &self.cfg.logs_dir, &self.cfg.dns);
                if let Err(e) = std::fs::create_dir_all(&config.log_directory) {
                    tracing::warn!(dir = %config.log_directory, error = %e, "cannot create log dir");
                }
                let started = Instant::now();
                tracing::debug!(target: TIMING, pod = %pod.name_any(), "RunPodSandbox");
                match self.runtime.run_pod_sandbox(config).await {
                    Ok(_) => {
                        tracing::debug!(target: TIMING, pod = %pod.name_any(), took = ?started.elapsed(), "sandbox running");
                        true
                    }
                    Err(e) => {
                        self.event(
                            pod,
                            None,
                            EventType::Warning,
                            "FailedCreatePodSandBox",
                            &format!("Failed to create pod sandbox: {e}"),
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        false
                    }
                }
            }
            Action::StartContainer {
                name,
                init,
                attempt,
                after_exit_ns,
            } => {
                let Some(pod) = pod else { return false };
                self.start_container(pod, uid, rt, name, *init, *attempt, *after_exit_ns)
                    .await
            }
            Action::StartCreated { id } => self.runtime.start_container(id).await.is_ok(),
            Action::KillContainer {
                id,
                name,
                grace_s,
                message,
            } => {
                let Some(pod) = pod else { return false };
                self.kill_container(pod, rt, id, name, *grace_s, message)
                    .await;
                true
            }
            Action::RemoveContainer { id } => self.runtime.remove_container(id).await.is_ok(),
            Action::KillPod { grace_s, remove } => {
                self.kill(pod, rt, *grace_s, *remove).await;
                if *remove && let Some(pod) = pod {
                    let _ = std::fs::remove_dir_all(spec::log_dir(&self.cfg.logs_dir, pod));
                }
                if *remove {
                    self.remove_volumes(uid);
                }
                true
            }
            Action::DeleteObject => {
                let Some(pod) = pod else { return false };
                let api: Api<Pod> =
                    Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                if let Err(e) = api.delete(&pod.name_any(), &dp).await {
                    tracing::debug!(pod = %pod.name_any(), error = %e, "final delete failed");
                }
                false
            }
        }
    }

    /// Stops every container and sandbox of the pod (gracefully), removing them if asked.
    async fn kill(&self, pod: Option<&Pod>, rt: &PodRuntime, grace_s: i64, remove: bool) {
        let running: Vec<_> = rt
            .instances
            .iter()
            .filter(|i| matches!(i.state, State::Running | State::Unknown | State::Created))
            .collect();
        futures::future::join_all(running.iter().map(|i| async move {
            let mut grace_s = grace_s;
            if let Some(pod) = pod {
                self.event(
                    pod,
                    Some(&i.name),
                    EventType::Normal,
                    "Killing",
                    &format!("Stopping container {}", i.name),
                );
                let spec = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == i.name));
                let pre_stop = spec.and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref());
                if let (Some(c), Some(handler)) = (spec, pre_stop)
                    && i.state == State::Running
                    && grace_s > 0
                {
                    let started = Instant::now();
                    let budget = Duration::from_secs(grace_s as u64);
                    if let Err(e) = hooks::run(
                        self.runtime.as_ref(),
                        handler,
                        c,
                        &i.id,
                        rt.ip.as_deref(),
                        budget,
                    )
                    .await
                    {
                        self.event(
                            pod,
                            Some(&i.name),
                            EventType::Warning,
                            "FailedPreStopHook",
                            &format!("PreStopHook failed: {e}"),
                        );
                    }
                    // The hook's time comes out of the grace period, with 2 s left at least.
                    grace_s = (grace_s - started.elapsed().as_secs() as i64).max(2);
                }
            }
            if let Err(e) = self.runtime.stop_container(&i.id, grace_s).await {
                tracing::debug!(container = %i.id, error = %e, "stop failed");
            }
        }))
        .await;
        for s in &rt.sandboxes {
            if let Err(e) = self.runtime.stop_pod_sandbox(&s.id).await {
                tracing::warn!(sandbox = %s.id, error = %e, "stopping the sandbox failed");
            }
        }
        if remove {
            for i in &rt.instances {
                let _ = self.runtime.remove_container(&i.id).await;
            }
            for s in &rt.sandboxes {
                let _ = self.runtime.remove_pod_sandbox(&s.id).await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        uid: &str,
        rt: &PodRuntime,
        name: &str,
        init: bool,
        attempt: u32,
        after_exit_ns: Option<i64>,
    ) -> bool {
        let Some(spec) = pod.spec.as_ref() else {
            return false;
        };
        let list: &[Container] = if init {
            spec.init_containers.as_deref().unwrap_or_default()
        } else {
            &spec.containers
        };
        let Some(c) = list.iter().find(|c| c.name == name) else {
            return false;
        };
        let Some(sandbox) = rt.sandbox() else {
            return false;
        };
        let key = backoff_key(uid, name);
        let begun = Instant::now();
        let step = |what: &str| {
            tracing::debug!(target: TIMING, pod = %pod.name_any(), container = name, since = ?begun.elapsed(), "{what}");
        };
        let Some(volumes) = self.prepare_volumes(pod, uid, rt).await else {
            return false;
        };
        step("volumes ready");
        let Some(image) = self.ensure_image(pod, uid, c, &key).await else {
            return false;
        };
        step("image present");
        if let Some(at) = after_exit_ns
            && let Ok(mut st) = self.state.lock()
        {
            st.restarts.next(&key, at);
        }
        let Some((env, mounts)) = self
            .container_env_and_mounts(pod, uid, c, rt, &volumes)
            .await
        else {
            return false;
        };
        // runAsNonRoot against the image's user (upstream's verifyRunAsNonRoot).
        step("environment and mounts ready");
        let image_info = self.runtime.image_status(&image).await.ok().flatten();
        step("image user checked");
        if let Err(msg) = spec::verify_run_as_non_root(pod, c, image_info.as_ref()) {
            let same = self.state.lock().is_ok_and(|st| {
                st.errors
                    .get(uid)
                    .and_then(|e| e.get(name))
                    .is_some_and(|(_, m)| *m == msg)
            });
            if !same {
                let text = format!("Error: {msg}");
                self.event(pod, Some(name), EventType::Warning, "Failed", &text);
            }
            self.set_error(uid, name, "CreateContainerConfigError", msg);
            return false;
        }
        let mut config = spec::container_config(pod, c, &image, attempt, env);
        config.mounts = mounts;
        let sandbox_config =
            spec::sandbox_config(pod, sandbox.attempt, &self.cfg.logs_dir, &self.cfg.dns);
        let dir = PathBuf::from(&sandbox_config.log_directory).join(name);
        let _ = std::fs::create_dir_all(&dir);
        let id = match self
            .runtime
            .create_container(&sandbox.id, config, sandbox_config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let msg = e.to_string();
                self.event(
                    pod,
                    Some(name),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {msg}"),
                );
                self.set_error(uid, name, "CreateContainerError", msg);
                return false;
            }
        };
        step("container created");
        self.event(
            pod,
            Some(name),
            EventType::Normal,
            "Created",
            &format!("Created container: {name}"),
        );
        if let Err(e) = self.runtime.start_container(&id).await {
            let msg = e.to_string();
            self.event(
                pod,
                Some(name),
                EventType::Warning,
                "Failed",
                &format!("Error: {msg}"),
            );
            self.set_error(uid, name, "RunContainerError", msg);
            return true;
        }
        step("container started");
        self.event(
            pod,
            Some(name),
            EventType::Normal,
            "Started",
            &format!("Started container {name}"),
        );
        self.clear_error(uid, name);
        if let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let timeout = Duration::from_secs(30);
            if let Err(e) = hooks::run(
                self.runtime.as_ref(),
                handler,
                c,
                &id,
                rt.ip.as_deref(),
                timeout,
            )
            .await
            {
                self.event(
                    pod,
                    Some(name),
                    EventType::Warning,
                    "FailedPostStartHook",
                    &format!("PostStartHook failed: {e}"),
                );
                let _ = self.runtime.stop_container(&id, 0).await;
            }
        }
        true
    }

    /// Makes the container's image present as its pull policy says; returns the image to run,
    /// or `None` (with the reason recorded) when it cannot be had now.
    async fn ensure_image(&self, pod: &Pod, uid: &str, c: &Container, key: &str) -> Option<String> {
        let name = c.name.as_str();
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        let present = matches!(self.runtime.image_status(&image).await, Ok(Some(_)));
        if policy == "Never" && !present {
            let msg =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            self.event(
                pod,
                Some(name),
                EventType::Warning,
                "ErrImageNeverPull",
                &msg,
            );
            self.set_error(uid, name, "ErrImageNeverPull", msg);
            return None;
        }
        if present && policy != "Always" {
            self.event(
                pod,
                Some(name),
                EventType::Normal,
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
            return Some(image);
        }
        let now = now_ns();
        let backing_off = self.state.lock().ok().and_then(|st| {
            let failed = *st.pull_failed_ns.get(key)?;
            st.pulls.remaining(key, failed, now)
        });
        if backing_off.is_some() {
            let msg = format!("Back-off pulling image \"{image}\"");
            self.event(pod, Some(name), EventType::Normal, "BackOff", &msg);
            self.set_error(uid, name, "ImagePullBackOff", msg);
            return None;
        }
        self.event(
            pod,
            Some(name),
            EventType::Normal,
            "Pulling",
            &format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        match self.runtime.pull_image(&image).await {
            Ok(_) => {
                let took = started.elapsed().as_secs_f64();
                let size = match self.runtime.image_status(&image).await {
                    Ok(Some(i)) => i.size,
                    _ => 0,
                };
                self.event(pod, Some(name), EventType::Normal, "Pulled", &format!(
                    "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: {size} bytes."
                ));
                if let Ok(mut st) = self.state.lock() {
                    st.pull_failed_ns.remove(key);
                }
                Some(image)
            }
            Err(e) => {
                let msg = format!("Failed to pull image \"{image}\": {e}");
                self.event(pod, Some(name), EventType::Warning, "Failed", &msg);
                self.event(
                    pod,
                    Some(name),
                    EventType::Warning,
                    "Failed",
                    "Error: ErrImagePull",
                );
                self.set_error(uid, name, "ErrImagePull", msg);
                if let Ok(mut st) = self.state.lock() {
                    st.pulls.next(key, now);
                    st.pull_failed_ns.insert(key.to_string(), now);
                }
                None
            }
        }
    }
}

/// A hash of what the runtime holds per pod UID (sandboxes and containers with their
/// states), to tell which pods a relist changed.
fn fingerprints(snap: &Snapshot) -> HashMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let mut uid_of: HashMap<&str, &str> = HashMap::new();
    let mut hashers: HashMap<String, std::collections::hash_map::DefaultHasher> = HashMap::new();
    for s in snap.sandboxes.iter().filter(|s| managed(s)) {
        let Some(m) = &s.metadata else { continue };
        uid_of.insert(&s.id, &m.uid);
        let h = hashers.entry(m.uid.clone()).or_default();
        (&s.id, s.state).hash(h);
    }
    for c in &snap.containers {
        if let Some(uid) = uid_of.get(c.pod_sandbox_id.as_str())
            && let Some(h) = hashers.get_mut(*uid)
        {
            (&c.id, c.state).hash(h);
        }
    }
    hashers.into_iter().map(|(k, h)| (k, h.finish())).collect()
}

/// Whether keelson made this sandbox.
fn managed(s: &cri::PodSandbox) -> bool {
    s.labels
        .get(spec::MANAGED_LABEL)
        .is_some_and(|v| v == "true")
}

/// A duration as Go prints it for whole seconds and minutes (`10s`, `1m20s`, `5m0s`).
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Relists the runtime every period or when poked, publishing each snapshot.
async fn relist(runtime: Arc<dyn Runtime>, tx: watch::Sender<Arc<Snapshot>>, poke: Arc<Notify>) {
    let mut generation = 0;
    loop {
        let taken_at = Instant::now();
        let listed = tokio::try_join!(runtime.list_pod_sandboxes(), runtime.list_containers());
        match listed {
            Ok((sandboxes, containers)) => {
                generation += 1;
                if tx
                    .send(Arc::new(Snapshot {
                        generation,
                        taken_at: Some(taken_at),
                        sandboxes,
                        containers,
                    }))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "relisting the container runtime failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RELIST_PERIOD) => {}
            _ = poke.notified() => {}
        }
    }
}
