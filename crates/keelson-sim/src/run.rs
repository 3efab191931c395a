//! The simulator's IO: registers the nodes, renews their Leases and heartbeats, and watches
//! the pods bound to them, writing what [`crate::pod::decide`] says.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::SimArgs;
use crate::node::{self, LEASE_NAMESPACE, NodeTemplate};
use crate::pod::{self, Action, Ipam, Placement};

/// How often Leases are renewed.
const LEASE_PERIOD: Duration = Duration::from_secs(10);
/// Every how many lease periods the node conditions' heartbeat is refreshed.
const STATUS_EVERY: u32 = 6;
/// How many API writes may be in flight at once.
const MAX_WRITES: usize = 64;

/// Errors of the simulator's writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("renewing the lease of node {node}: {source}")]
    Lease { node: String, source: kube::Error },
    #[error("updating pod {pod}: {source}")]
    Pod { pod: String, source: kube::Error },
    #[error("decoding the object of node {node}: {source}")]
    Decode {
        node: String,
        source: serde_json::Error,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Lease `renewTime` is a MicroTime.
fn micro(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A running simulator.
pub struct Sim {
    client: Client,
    count: usize,
    template: NodeTemplate,
    writes: Arc<Semaphore>,
}

impl Sim {
    pub fn new(client: Client, args: SimArgs, labels: BTreeMap<String, String>) -> Sim {
        Sim {
            client,
            count: args.nodes,
            template: NodeTemplate {
                cpu: args.cpu,
                memory: args.memory,
                pods: args.pods,
                labels,
                prefix: args.name_prefix,
            },
            writes: Arc::new(Semaphore::new(MAX_WRITES)),
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let uids = self.register_all().await;
        tracing::info!(nodes = self.count, "simulated nodes registered");
        let sim = Arc::new(self);
        let leases = tokio::spawn(sim.clone().renew_forever(uids));
        let pods = sim.clone().run_pods().await;
        leases.abort();
        pods
    }

    /// Registers every node, retrying each until it succeeds; returns their UIDs.
    async fn register_all(&self) -> Vec<Option<String>> {
        stream::iter(0..self.count)
            .map(|i| async move {
                let mut delay = Duration::from_millis(200);
                loop {
                    match self.register(i).await {
                        Ok(uid) => return uid,
                        Err(e) => tracing::warn!(error = %e, "retrying"),
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            })
            .buffered(MAX_WRITES)
            .collect()
            .await
    }

    /// Creates node `i` (or brings an existing one up to date) and its Lease.
    async fn register(&self, i: usize) -> Result<Option<String>> {
        let name = node::node_name(&self.template, i);
        let at = pod::time(now());
        let object = node::node_object(&self.template, i, &at);
        let typed: Node =
            serde_json::from_value(object.clone()).map_err(|source| Error::Decode {
                node: name.clone(),
                source,
            })?;
        let api: Api<Node> = Api::all(self.client.clone());
        let err = |source| Error::Register {
            node: name.clone(),
            source,
        };
        let created = match api.create(&PostParams::default(), &typed).await {
            Ok(n) => n,
            Err(e) if is_status(&e, 409) => {
                let labels = json!({"metadata": {"labels": object["metadata"]["labels"]}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(labels))
                    .await
                    .map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        let has_status = created
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .is_some_and(|a| a.contains_key("pods"))
            && created
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !has_status {
            let status = json!({"status": object["status"]});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .map_err(err)?;
        }
        let uid = created.metadata.uid.clone();
        self.renew(&name, uid.as_deref()).await.map_err(|e| {
            tracing::warn!(error = %e, "first lease");
            e
        })?;
        Ok(uid)
    }

    /// Renews one node's Lease, creating it if it is missing.
    async fn renew(&self, name: &str, uid: Option<&str>) -> Result<()> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let at = micro(now());
        let err = |source| Error::Lease {
            node: name.to_string(),
            source,
        };
        let patch = json!({"spec": {"holderIdentity": name, "renewTime": at}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => {
                let lease: Lease = serde_json::from_value(node::lease_object(name, uid, &at))
                    .map_err(|source| Error::Decode {
                        node: name.to_string(),
                        source,
                    })?;
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 409) => Ok(()),
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Refreshes one node's condition heartbeats (and restores Ready if something changed it).
    async fn heartbeat(&self, i: usize, since: &str) -> Result<()> {
        let name = node::node_name(&self.template, i);
        let patch = json!({"status": {"conditions": node::conditions(&pod::time(now()), since)}});
        Api::<Node>::all(self.client.clone())
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|source| Error::Register { node: name, source })
    }

    async fn renew_forever(self: Arc<Self>, uids: Vec<Option<String>>) {
        let since = pod::time(now());
        let this: &Sim = &self;
        let mut tick = tokio::time::interval(LEASE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        for round in 1u32.. {
            tick.tick().await;
            let heartbeat = round % STATUS_EVERY == 0;
            stream::iter(uids.iter().enumerate())
                .for_each_concurrent(MAX_WRITES, |(i, uid)| {
                    let since = since.clone();
                    async move {
                        let name = node::node_name(&this.template, i);
                        if let Err(e) = this.renew(&name, uid.as_deref()).await {
                            tracing::warn!(error = %e, "lease");
                        }
                        if heartbeat && let Err(e) = this.heartbeat(i, &since).await {
                            tracing::warn!(error = %e, "heartbeat");
                        }
                    }
                })
                .await;
        }
    }

    /// The index of one of our nodes, from its name.
    fn index_of(&self, node: &str) -> Option<usize> {
        let i: usize = node.strip_prefix(&self.template.prefix)?.parse().ok()?;
        (i < self.count && node::node_name(&self.template, i) == node).then_some(i)
    }

    /// Watches the pods bound to any node and acts on those bound to ours.
    async fn run_pods(self: Arc<Self>) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields("spec.nodeName!=");
        let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        let (later_tx, mut later_rx) = mpsc::unbounded_channel::<Pod>();
        let mut ipam = Ipam::default();
        let mut waiting: HashSet<String> = HashSet::new();
        let mut listing: Option<HashSet<String>> = None;
        loop {
            let pod = tokio::select! {
                ev = events.next() => match ev {
                    None => anyhow::bail!("the pod watch ended"),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watching pods");
                        continue;
                    }
                    Some(Ok(Event::Init)) => {
                        listing = Some(HashSet::new());
                        continue;
                    }
                    Some(Ok(Event::InitDone)) => {
                        if let Some(seen) = listing.take() {
                            ipam.retain(|k| seen.contains(k));
                        }
                        continue;
                    }
                    Some(Ok(Event::Delete(p))) => {
                        let k = key(&p);
                        ipam.release(&k);
                        continue;
                    }
                    Some(Ok(Event::Apply(p) | Event::InitApply(p))) => {
                        if let Some(seen) = &mut listing {
                            seen.insert(key(&p));
                        }
                        p
                    }
                },
                Some(p) = later_rx.recv() => {
                    waiting.remove(&key(&p));
                    p
                }
            };
            let Some(index) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| self.index_of(n))
            else {
                continue;
            };
            let k = key(&pod);
            let existing = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
            let placement = Placement {
                host_ip: node::node_ip(index),
                pod_ip: ipam.address(&k, index, existing),
            };
            match pod::decide(&pod, &placement, now()) {
                Action::Nothing => {}
                Action::Later(after) => {
                    if waiting.insert(k) {
                        let tx = later_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = tx.send(pod);
                        });
                    }
                }
                Action::Status(status) => self.spawn_write(pod, Some(status)),
                Action::Delete => self.spawn_write(pod, None),
            }
        }
    }

    /// Writes a pod's status (or, with `None`, finishes its deletion) in the background.
    fn spawn_write(&self, pod: Pod, status: Option<serde_json::Value>) {
        let client = self.client.clone();
        let writes = self.writes.clone();
        tokio::spawn(async move {
            let Ok(_permit) = writes.acquire_owned().await else {
                return;
            };
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let result = match status {
                Some(status) => api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                    .map(|_| ()),
                None => {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: pod.metadata.uid.clone(),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    api.delete(&name, &dp).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(source) => {
                    let e = Error::Pod {
                        pod: format!("{ns}/{name}"),
                        source,
                    };
                    tracing::warn!(error = %e, "pod write");
                }
            }
        });
    }
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}
