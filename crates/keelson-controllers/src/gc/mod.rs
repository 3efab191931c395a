//! The garbage collector: watches every deletable kind (metadata only), keeps the
//! ownerReferences graph, deletes dependents whose owners are gone (Background), deletes
//! dependents before their owner (Foreground) and detaches dependents (Orphan).

mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

pub use graph::{FOREGROUND, Graph, Node, ORPHAN, OwnerState, Verdict, decide};

/// Errors of one attempt on one object; the object is retried later.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering the api's resources: {0}")]
    Discovery(#[source] kube::Error),
    #[error("{action} {resource} {name}: {source}")]
    Api {
        action: &'static str,
        resource: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// One watched resource.
#[derive(Clone, Debug)]
struct Resource {
    ar: ApiResource,
    namespaced: bool,
}

struct Collector {
    client: Client,
    resources: Vec<Resource>,
    /// `apiVersion/kind` → index in `resources`.
    by_kind: HashMap<String, usize>,
    graph: Mutex<Graph>,
    queue: UnboundedSender<String>,
    queued: Mutex<HashSet<String>>,
}

/// Runs the garbage collector until the process ends.
pub async fn run(client: Client) {
    let resources = loop {
        match discover(&client).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: retrying discovery");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let by_kind = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("{}/{}", r.ar.api_version, r.ar.kind), i))
        .collect();
    let (tx, rx) = unbounded_channel();
    let gc = Arc::new(Collector {
        client,
        resources,
        by_kind,
        graph: Mutex::default(),
        queue: tx,
        queued: Mutex::default(),
    });
    let (ready_tx, ready_rx) = unbounded_channel::<()>();
    for i in 0..gc.resources.len() {
        tokio::spawn(gc.clone().watch(i, ready_tx.clone()));
    }
    drop(ready_tx);
    gc.work(rx, ready_rx).await
}

/// Every resource that can be listed, watched and deleted, except Events.
async fn discover(client: &Client) -> Result<Vec<Resource>, Error> {
    let d = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::Discovery)?;
    let mut out = Vec::new();
    for group in d.groups() {
        for (ar, caps) in group.recommended_resources() {
            let ok = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            if ok && ar.kind != "Event" && !ar.plural.contains('/') {
                out.push(Resource {
                    namespaced: caps.scope == Scope::Namespaced,
                    ar,
                });
            }
        }
    }
    Ok(out)
}

fn node_of(resource: usize, o: &PartialObjectMeta<DynamicObject>) -> Option<Node> {
    let m = &o.metadata;
    Some(Node {
        resource,
        namespace: m.namespace.clone(),
        name: m.name.clone()?,
        uid: m.uid.clone()?,
        owners: m.owner_references.clone().unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
    })
}

impl Collector {
    fn enqueue(&self, uid: String) {
        if let Ok(mut q) = self.queued.lock()
            && q.insert(uid.clone())
        {
            let _ = self.queue.send(uid);
        }
    }

    fn enqueue_later(self: &Arc<Self>, uid: String, after: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            this.enqueue(uid);
        });
    }

    /// Keeps the graph in step with one resource's watch.
    async fn watch(self: Arc<Self>, i: usize, ready: UnboundedSender<()>) {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &self.resources[i].ar);
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut seen: Option<HashSet<String>> = None;
        let mut ready = Some(ready);
        while let Some(ev) = events.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(error = %e, "garbage collector watch failed; retrying");
                    continue;
                }
            };
            match ev {
                Event::Init => seen = Some(HashSet::new()),
                Event::InitApply(o) | Event::Apply(o) => {
                    if let (Some(s), Some(uid)) = (seen.as_mut(), o.metadata.uid.clone()) {
                        s.insert(uid);
                    }
                    if let Some(node) = node_of(i, &o) {
                        self.changed(node);
                    }
                }
                Event::Delete(o) => {
                    if let Some(uid) = o.metadata.uid.clone() {
                        self.gone(&uid);
                    }
                }
                Event::InitDone => {
                    let seen = seen.take().unwrap_or_default();
                    let stale: Vec<String> = self
                        .graph
                        .lock()
                        .map(|g| g.uids_of(i))
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|u| !seen.contains(u))
                        .collect();
                    for uid in stale {
                        self.gone(&uid);
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
            }
        }
    }

    fn changed(&self, node: Node) {
        let uid = node.uid.clone();
        let owners: Vec<String> = node.owners.iter().map(|o| o.uid.clone()).collect();
        let old = match self.graph.lock() {
            Ok(mut g) => g.upsert(node),
            Err(_) => return,
        };
        self.enqueue(uid);
        // Owners deleting in the foreground or orphaning wait on their dependents.
        for o in owners.into_iter().chain(old) {
            self.enqueue(o);
        }
    }

    fn gone(&self, uid: &str) {
        let (node, deps) = match self.graph.lock() {
            Ok(mut g) => {
                let deps: Vec<String> = g.dependents(uid).iter().map(|n| n.uid.clone()).collect();
                (g.remove(uid), deps)
            }
            Err(_) => return,
        };
        for d in deps {
            self.enqueue(d);
        }
        for o in node.into_iter().flat_map(|n| n.owners) {
            self.enqueue(o.uid);
        }
    }

    /// Processes queued objects one at a time once every watch has listed.
    async fn work(
        self: Arc<Self>,
        mut rx: UnboundedReceiver<String>,
        mut ready: UnboundedReceiver<()>,
    ) {
        while ready.recv().await.is_some() {}
        tracing::debug!("garbage collector: graph filled");
        let mut failures: HashMap<String, u32> = HashMap::new();
        while let Some(uid) = rx.recv().await {
            if let Ok(mut q) = self.queued.lock() {
                q.remove(&uid);
            }
            match self.process(&uid).await {
                Ok(()) => {
                    failures.remove(&uid);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collector");
                    let n = failures.entry(uid.clone()).or_default();
                    *n = n.saturating_add(1);
                    let delay = Duration::from_millis(5 * 2u64.pow((*n).min(13)));
                    self.enqueue_later(uid, delay);
                }
            }
        }
    }

    fn api(&self, resource: usize, ns: Option<&str>) -> Api<DynamicObject> {
        let r = &self.resources[resource];
        match (r.namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.ar),
            _ => Api::all_with(self.client.clone(), &r.ar),
        }
    }

    async fn process(self: &Arc<Self>, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph.lock().ok().and_then(|g| g.get(uid).cloned()) else {
            return Ok(());
        };
        if node.deleting && node.has_finalizer(ORPHAN) {
            return self.orphan_dependents(&node).await;
        }
        if node.waiting_for_dependents() {
            return self.delete_dependents(&node).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(());
        }
        let mut states = Vec::new();
        for o in &node.owners {
            states.push((o.uid.clone(), self.owner_state(&node, o).await?));
        }
        let has_dependents = self
            .graph
            .lock()
            .map(|g| !g.dependents(uid).is_empty())
            .unwrap_or(false);
        match decide(&states, has_dependents) {
            Verdict::Keep => Ok(()),
            Verdict::RemoveRefs(uids) => self.remove_refs(&node, &uids).await,
            Verdict::Delete { foreground } => self.delete(&node, foreground).await,
        }
    }

    /// Solid, waiting or dangling; an owner missing from the graph is looked up live, since
    /// the graph may lag behind a just-created owner.
    async fn owner_state(
        &self,
        node: &Node,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<OwnerState, Error> {
        if let Some(o) = self
            .graph
            .lock()
            .ok()
            .and_then(|g| g.get(&owner.uid).cloned())
        {
            return Ok(if o.waiting_for_dependents() {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            });
        }
        let key = format!("{}/{}", owner.api_version, owner.kind);
        let Some(&res) = self.by_kind.get(&key) else {
            // A kind this server does not serve: leave the reference alone.
            return Ok(OwnerState::Solid);
        };
        if self.resources[res].namespaced && node.namespace.is_none() {
            // A cluster-scoped object cannot have a namespaced owner: leave it alone.
            return Ok(OwnerState::Solid);
        }
        let api = self.api(res, node.namespace.as_deref());
        match api.get_metadata_opt(&owner.name).await {
            Ok(Some(o)) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                let waiting = o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FOREGROUND);
                Ok(if waiting {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                })
            }
            Ok(_) => Ok(OwnerState::Dangling),
            Err(source) => Err(Error::Api {
                action: "looking up owner",
                resource: self.resources[res].ar.plural.clone(),
                name: owner.name.clone(),
                source,
            }),
        }
    }

    fn err(&self, action: &'static str, node: &Node, source: kube::Error) -> Error {
        Error::Api {
            action,
            resource: self.resources[node.resource].ar.plural.clone(),
            name: node.name.clone(),
            source,
        }
    }

    async fn delete(&self, node: &Node, foreground: bool) -> Result<(), Error> {
        let api = self.api(node.resource, node.namespace.as_deref());
        let dp = DeleteParams {
            propagation_policy: Some(if foreground {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }),
            preconditions: Some(Preconditions {
                uid: Some(node.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(name = node.name, foreground, "garbage collector: deleting");
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(self.err("deleting", node, e)),
        }
    }

    /// Rewrites the object's ownerReferences without `uids`.
    async fn remove_refs(&self, node: &Node, uids: &[String]) -> Result<(), Error> {
        let api = self.api(node.resource, node.namespace.as_deref());
        let live = match api.get_metadata_opt(&node.name).await {
            Ok(Some(o)) if o.metadata.uid.as_deref() == Some(node.uid.as_str()) => o,
            Ok(_) => return Ok(()),
            Err(e) => return Err(self.err("reading", node, e)),
        };
        let refs: Vec<_> = live
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| !uids.contains(&r.uid))
            .cloned()
            .collect();
        let refs = (!refs.is_empty()).then_some(refs);
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": live.metadata.resource_version,
        }});
        self.patch(node, &api, patch, "removing owner references from")
            .await
    }

    async fn patch(
        &self,
        node: &Node,
        api: &Api<DynamicObject>,
        patch: serde_json::Value,
        action: &'static str,
    ) -> Result<(), Error> {
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.err(action, node, e)),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), Error> {
        let api = self.api(node.resource, node.namespace.as_deref());
        let live = match api.get_metadata_opt(&node.name).await {
            Ok(Some(o)) if o.metadata.uid.as_deref() == Some(node.uid.as_str()) => o,
            Ok(_) => return Ok(()),
            Err(e) => return Err(self.err("reading", node, e)),
        };
        let left: Vec<String> = live
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect();
        let patch = json!({"metadata": {
            "finalizers": (!left.is_empty()).then_some(left),
            "resourceVersion": live.metadata.resource_version,
        }});
        self.patch(node, &api, patch, "removing a finalizer from")
            .await
    }

    fn dependents(&self, uid: &str) -> Vec<Node> {
        self.graph
            .lock()
            .map(|g| g.dependents(uid).into_iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Orphan: detach every dependent, then drop the `orphan` finalizer.
    async fn orphan_dependents(&self, owner: &Node) -> Result<(), Error> {
        for d in self.dependents(&owner.uid) {
            self.remove_refs(&d, std::slice::from_ref(&owner.uid))
                .await?;
        }
        self.remove_finalizer(owner, ORPHAN).await
    }

    /// Foreground: delete every dependent; drop `foregroundDeletion` once no dependent
    /// that blocks owner deletion is left.
    async fn delete_dependents(&self, owner: &Node) -> Result<(), Error> {
        let deps = self.dependents(&owner.uid);
        for d in deps.iter().filter(|d| !d.deleting) {
            let has_deps = !self.dependents(&d.uid).is_empty();
            self.delete(d, has_deps).await?;
        }
        let blocking = deps.iter().any(|d| {
            d.owners
                .iter()
                .any(|r| r.uid == owner.uid && r.block_owner_deletion == Some(true))
        });
        if blocking {
            return Ok(());
        }
        self.remove_finalizer(owner, FOREGROUND).await
    }
}
