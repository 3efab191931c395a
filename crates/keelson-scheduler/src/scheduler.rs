//! The scheduling loop: feeds watch events into the cache and the queue, runs cycles, and
//! hands binds and failure reports to bounded background tasks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Semaphore, mpsc};

use crate::cache::{Cache, key};
use crate::framework::{Framework, PodInfo};
use crate::queue::Queue;
use crate::schedule::{TieBreaker, schedule_scoring};
use crate::{DEFAULT_SCHEDULER_NAME, Options, plugins, writer};

/// How many API writes (binds, status updates, events) may be in flight at once.
const MAX_WRITES: usize = 64;
/// How many pods one turn of the loop schedules before it looks at events again.
const BATCH: usize = 512;

/// What wakes the loop.
enum Input {
    Pod(Box<Result<Event<Pod>, watcher::Error>>),
    Node(Box<Result<Event<Node>, watcher::Error>>),
    /// A claim, volume or class changed (the listers are already updated).
    Volumes,
}

/// The outcome of a bind task.
struct Bound {
    key: String,
    ok: bool,
}

/// One profile: its framework, and whether DefaultPreemption runs after a pod fits nowhere.
struct ProfileFramework {
    framework: Framework,
    preemption: bool,
    percentage_of_nodes_to_score: usize,
}

pub struct Scheduler {
    client: kube::Client,
    /// The profiles by scheduler name; a pod is ours when its `spec.schedulerName` names one.
    profiles: HashMap<String, ProfileFramework>,
    volumes: plugins::volume_binding::VolumeListers,
    cache: Cache,
    queue: Queue,
    ties: TieBreaker,
    writes: Arc<Semaphore>,
    bound_tx: mpsc::UnboundedSender<Bound>,
    bound_rx: mpsc::UnboundedReceiver<Bound>,
    /// Keys seen during a watcher's (re)list, to drop what vanished meanwhile.
    pods_listing: Option<HashSet<String>>,
    nodes_listing: Option<HashSet<String>>,
    pods_synced: bool,
    nodes_synced: bool,
    /// A pod with pod (anti-)affinity or spread constraints was found unschedulable since
    /// the last move: a pod landing on a node may help it.
    waiting_for_pods: bool,
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The scheduler a pod asks for (`default-scheduler` when it names none).
fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME)
}

impl Scheduler {
    pub fn new(client: kube::Client, options: Options) -> Scheduler {
        let (bound_tx, bound_rx) = mpsc::unbounded_channel();
        let volumes = plugins::volume_binding::VolumeListers::default();
        let profiles = options
            .config
            .profiles
            .iter()
            .map(|p| {
                let profile = ProfileFramework {
                    framework: p.framework(volumes.clone()),
                    preemption: p.preemption(),
                    percentage_of_nodes_to_score: p.percentage_of_nodes_to_score(),
                };
                (p.scheduler_name.clone(), profile)
            })
            .collect();
        Scheduler {
            client,
            profiles,
            volumes,
            cache: Cache::with_workloads(crate::workloads::WorkloadListers::default()),
            queue: Queue::default(),
            ties: TieBreaker::default(),
            writes: Arc::new(Semaphore::new(MAX_WRITES)),
            bound_tx,
            bound_rx,
            pods_listing: None,
            nodes_listing: None,
            pods_synced: false,
            nodes_synced: false,
            waiting_for_pods: false,
        }
    }

    fn inputs(&self) -> impl Stream<Item = Input> + Send + 'static {
        let pods = watcher::watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|e| Input::Pod(Box::new(e)));
        let nodes = watcher::watcher(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|e| Input::Node(Box::new(e)));
        let volumes = self.volumes.changes(&self.client).map(|()| Input::Volumes);
        // Fills the listers system default spreading reads; yields nothing.
        let workloads = self
            .cache
            .workload_changes(&self.client)
            .map(|()| Input::Volumes);
        stream::select(
            stream::select(pods, nodes),
            stream::select(volumes, workloads),
        )
    }

    /// Runs until the process ends.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut inputs = std::pin::pin!(self.inputs());
        loop {
            // Take in everything that has already arrived.
            while let Some(next) = inputs.next().now_or_never() {
                match next {
                    Some(input) => self.handle(input),
                    None => anyhow::bail!("the scheduler's watch streams ended"),
                }
            }
            while let Ok(b) = self.bound_rx.try_recv() {
                self.on_bound(b);
            }
            if self.pods_synced && self.nodes_synced && self.queue.has_active(Instant::now()) {
                self.schedule_batch();
                tokio::task::yield_now().await;
                continue;
            }
            let due = self
                .queue
                .next_due()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                next = inputs.next() => match next {
                    Some(input) => self.handle(input),
                    None => anyhow::bail!("the scheduler's watch streams ended"),
                },
                Some(b) = self.bound_rx.recv() => self.on_bound(b),
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Pod(ev) => match *ev {
                Ok(ev) => self.on_pod_event(ev),
                Err(e) => tracing::warn!(error = %e, "watching pods"),
            },
            Input::Node(ev) => match *ev {
                Ok(ev) => self.on_node_event(ev),
                Err(e) => tracing::warn!(error = %e, "watching nodes"),
            },
            Input::Volumes => self.queue.move_all(Instant::now()),
        }
    }

    fn on_pod_event(&mut self, ev: Event<Pod>) {
        match ev {
            Event::Init => self.pods_listing = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let Some(seen) = &mut self.pods_listing {
                    seen.insert(key(&pod));
                }
                self.on_pod(pod);
            }
            Event::InitDone => {
                if let Some(seen) = self.pods_listing.take() {
                    for k in self.cache.pod_keys() {
                        if !seen.contains(&k) && !self.cache.is_assumed(&k) {
                            self.cache.remove_pod(&k);
                        }
                    }
                    self.queue.retain(|k| seen.contains(k));
                }
                self.pods_synced = true;
                self.queue.move_all(Instant::now());
            }
            Event::Apply(pod) => self.on_pod(pod),
            Event::Delete(pod) => {
                let k = key(&pod);
                self.queue.delete(&k);
                if self.cache.node_of(&k).is_some() {
                    self.cache.remove_pod(&k);
                    self.queue.move_all(Instant::now());
                }
            }
        }
    }

    fn on_pod(&mut self, pod: Pod) {
        let k = key(&pod);
        if node_name(&pod).is_some() {
            self.queue.delete(&k);
            if is_terminal(&pod) {
                if self.cache.node_of(&k).is_some() {
                    self.cache.remove_pod(&k);
                    self.queue.move_all(Instant::now());
                }
            } else {
                self.cache.add_or_update_pod(Arc::new(pod));
                if self.waiting_for_pods {
                    self.waiting_for_pods = false;
                    self.queue.move_all(Instant::now());
                }
            }
            return;
        }
        if self.cache.is_assumed(&k) {
            // The bind is in flight; this event predates it.
            return;
        }
        if is_terminal(&pod)
            || pod.metadata.deletion_timestamp.is_some()
            || !self.profiles.contains_key(scheduler_name(&pod))
        {
            self.queue.delete(&k);
            return;
        }
        self.queue.add_or_update(&k, Arc::new(pod));
    }

    fn on_node_event(&mut self, ev: Event<Node>) {
        match ev {
            Event::Init => self.nodes_listing = Some(HashSet::new()),
            Event::InitApply(node) => {
                if let Some(seen) = &mut self.nodes_listing {
                    seen.insert(node.metadata.name.clone().unwrap_or_default());
                }
                self.on_node(node);
            }
            Event::InitDone => {
                if let Some(seen) = self.nodes_listing.take() {
                    for n in self.cache.node_names() {
                        if !seen.contains(&n) {
                            self.cache.remove_node(&n);
                        }
                    }
                }
                self.nodes_synced = true;
                self.queue.move_all(Instant::now());
            }
            Event::Apply(node) => self.on_node(node),
            Event::Delete(node) => {
                self.cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or(""));
            }
        }
    }

    fn on_node(&mut self, node: Node) {
        if self.cache.add_or_update_node(Arc::new(node)) {
            self.queue.move_all(Instant::now());
        }
    }

    fn on_bound(&mut self, b: Bound) {
        if !b.ok {
            self.cache.forget(&b.key);
            self.queue.backoff(&b.key, Instant::now());
        }
        // On success the pod stays assumed until its watch event confirms the binding.
    }

    fn schedule_batch(&mut self) {
        let now = Instant::now();
        for _ in 0..BATCH {
            let Some(pod) = self.queue.pop(now) else {
                return;
            };
            self.schedule_one(pod, now);
        }
    }

    fn schedule_one(&mut self, pod: Arc<Pod>, now: Instant) {
        let info = PodInfo::new(pod.clone());
        let k = info.key();
        let profile_name = scheduler_name(&pod).to_string();
        let Some(profile) = self.profiles.get(&profile_name) else {
            // Only pods of our profiles are queued.
            return;
        };
        match schedule_scoring(
            &profile.framework,
            &mut self.cache,
            &info,
            &mut self.ties,
            profile.percentage_of_nodes_to_score,
        ) {
            Ok(node) => {
                self.cache.assume(info, &node);
                self.spawn_bind(k, pod, node, profile_name);
            }
            Err(mut fit) => {
                if !profile.preemption {
                    // The profile has no PostFilter: no preemption, and no `preemption:` part
                    // in the message, as upstream.
                    fit.nominated = None;
                    if let Some(at) = fit.message.find(" preemption: ") {
                        fit.message.truncate(at);
                    }
                }
                tracing::debug!(pod = %k, message = %fit.message, "unschedulable");
                self.queue.unschedulable(&k, now);
                let spreads = pod
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.topology_spread_constraints.is_some());
                self.waiting_for_pods |= info.affinity.is_some() || spreads;
                if let Some(candidate) = fit.nominated {
                    self.spawn_preemption(pod.clone(), candidate, profile_name.clone());
                }
                self.spawn_failure(pod, fit.message, profile_name);
            }
        }
    }

    /// Binds the pod; `profile` (its scheduler name) reports the Scheduled event.
    fn spawn_bind(&self, key: String, pod: Arc<Pod>, node: String, profile: String) {
        let client = self.client.clone();
        let writes = self.writes.clone();
        let tx = self.bound_tx.clone();
        let volumes = self.volumes.clone();
        tokio::spawn(async move {
            let Ok(_permit) = writes.acquire_owned().await else {
                return;
            };
            let pre_bound = plugins::volume_binding::pre_bind(&client, &volumes, &pod, &node).await;
            let result = match pre_bound {
                Ok(()) => writer::bind(client.clone(), &pod, &node).await,
                Err(source) => Err(writer::Error::PreBind {
                    pod: key.clone(),
                    source,
                }),
            };
            let ok = match &result {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "bind failed");
                    false
                }
            };
            let _ = tx.send(Bound {
                key: key.clone(),
                ok,
            });
            if ok {
                let message = format!("Successfully assigned {key} to {node}");
                if let Err(e) = writer::event(
                    client,
                    pod,
                    &profile,
                    "Normal",
                    "Scheduled",
                    "Binding",
                    message,
                )
                .await
                {
                    tracing::warn!(error = %e, "recording event");
                }
            }
        });
    }

    /// Nominates the node for the preemptor and evicts the victims there (DefaultPreemption);
    /// their deletions bring the preemptor back to the active queue.
    fn spawn_preemption(
        &self,
        pod: Arc<Pod>,
        candidate: crate::preemption::Candidate,
        profile: String,
    ) {
        let client = self.client.clone();
        let writes = self.writes.clone();
        tokio::spawn(async move {
            let Ok(_permit) = writes.acquire_owned().await else {
                return;
            };
            let node = candidate.node;
            if let Err(e) = writer::nominate(client.clone(), &pod, &node).await {
                tracing::warn!(error = %e, "nominating node");
            }
            for victim in candidate.victims {
                if let Err(e) =
                    writer::evict(client.clone(), victim.pod, &pod, &node, &profile).await
                {
                    tracing::warn!(error = %e, "preempting");
                }
            }
        });
    }

    fn spawn_failure(&self, pod: Arc<Pod>, message: String, profile: String) {
        let client = self.client.clone();
        let writes = self.writes.clone();
        tokio::spawn(async move {
            let Ok(_permit) = writes.acquire_owned().await else {
                return;
            };
            if let Err(e) = writer::mark_unschedulable(client.clone(), &pod, &message).await {
                tracing::warn!(error = %e, "marking pod unschedulable");
            }
            if let Err(e) = writer::event(
                client,
                pod,
                &profile,
                "Warning",
                "FailedScheduling",
                "Scheduling",
                message,
            )
            .await
            {
                tracing::warn!(error = %e, "recording event");
            }
        });
    }
}
