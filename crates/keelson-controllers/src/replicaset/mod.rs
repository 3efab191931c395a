//! The ReplicaSet and ReplicationController controllers: one reconcile, two kinds, keeping
//! `replicas` pods from the template.

mod rank;
mod status;
mod sync;

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backoff::Backoff;
use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::Informer;
use crate::pod::controller_of;
use crate::selector::{Labels, Selector};

pub use rank::{DELETION_COST, pods_to_delete};
pub use status::ReplicaStatus;
pub use sync::owner_ref;

/// What the reconcile needs to know about a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Lookup<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The `source.component` of its events.
    const COMPONENT: &'static str;
    fn replicas(&self) -> i32;
    fn selector(&self) -> Selector;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    fn status_json(&self) -> serde_json::Value;
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> Selector {
        Selector::Label(self.spec.as_ref().map(|s| s.selector.clone()))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> Selector {
        let sel = self.spec.as_ref().and_then(|s| s.selector.clone());
        let sel = sel.or_else(|| {
            self.template()
                .and_then(|t| t.metadata.as_ref()?.labels.clone())
        });
        Selector::Equality(sel.unwrap_or_default().into_iter().collect())
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

/// Errors of one reconcile; each sends the key back to the rate-limited queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} pod for {owner}: {source}")]
    Pod {
        action: &'static str,
        owner: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating status of {owner}: {source}")]
    Status {
        owner: String,
        #[source]
        source: kube::Error,
    },
}

/// Shared state of one controller.
pub struct Context<K: ReplicaOwner> {
    pub client: Client,
    pub pods: Store<Pod>,
    pub owners: Store<K>,
    pub recorder: Recorder,
    pub expectations: Expectations,
    pub backoff: Backoff,
}

/// Labels of an object (empty when absent).
pub fn labels_of(meta: &kube::api::ObjectMeta) -> Labels {
    meta.labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The controller for `K`; subscribes now, so build it before the informers start, and poll
/// it once their caches are ready.
pub fn run<K: ReplicaOwner>(
    client: Client,
    pods: &Informer<Pod>,
    owners: &Informer<K>,
) -> impl Future<Output = ()> + Send + 'static {
    let pod_events = pods.subscribe();
    let owner_events = owners.subscribe();
    let owner_store = owners.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), K::COMPONENT),
        client,
        pods: pods.store(),
        owners: owner_store.clone(),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let mapper_store = owner_store.clone();
    Controller::for_shared_stream(owner_events, owner_store)
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            owners_of(&mapper_store, &pod)
        })
        .run(sync::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

/// The owners a pod change concerns: its controller if it is of kind `K`, else every `K` in
/// its namespace whose selector matches it (a candidate for adoption).
fn owners_of<K: ReplicaOwner>(store: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(r) = controller_of(&pod.metadata) {
        if r.kind == <K as Resource>::kind(&()) {
            return vec![ObjectRef::new(&r.name).within(ns)];
        }
        return Vec::new();
    }
    let labels = labels_of(&pod.metadata);
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns) && o.selector().matches(&labels))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

fn error_policy<K: ReplicaOwner>(obj: Arc<K>, err: &Error, ctx: Arc<Context<K>>) -> Action {
    tracing::warn!(error = %err, "reconcile failed");
    Action::requeue(ctx.backoff.next(&key_of(obj.as_ref())))
}

/// `namespace/name` of an object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}
