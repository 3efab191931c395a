//! The Deployment controller: one ReplicaSet per pod template, rolled over by the
//! RollingUpdate or Recreate strategy, with revision history and rollout status.

mod hash;
mod proportion;
mod rolling;
mod status;
mod sync;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Client;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::backoff::Backoff;
use crate::events::Recorder;
use crate::informer::Informer;
use crate::pod::controller_of;
use crate::replicaset::key_of;

pub use hash::{POD_TEMPLATE_HASH, equal_ignoring_hash, template_hash};
pub use rolling::{Counts, new_rs_replicas, resolve_fenceposts, scale_down_old};

/// The annotation holding a ReplicaSet's (and its Deployment's) revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The Deployment's replicas when the ReplicaSet was last scaled by it.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Errors of one reconcile of a Deployment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} replicaset {name} for deployment {deployment}: {source}")]
    ReplicaSet {
        action: &'static str,
        name: String,
        deployment: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating status of deployment {deployment}: {source}")]
    Status {
        deployment: String,
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    recorder: Recorder,
    backoff: Backoff,
}

/// The controller; subscribes now, so build it before the informers start.
pub fn run(
    client: Client,
    deployments: &Informer<Deployment>,
    replicasets: &Informer<ReplicaSet>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
        deployments: deployments.store(),
        replicasets: replicasets.store(),
        backoff: Backoff::default(),
    });
    let store = deployments.store();
    Controller::for_shared_stream(deployments.subscribe(), deployments.store())
        .watches_shared_stream(replicasets.subscribe(), move |rs: Arc<ReplicaSet>| {
            owners_of(&store, &rs)
        })
        .run(sync::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

/// The Deployment a ReplicaSet change concerns: its controller, or for an orphan every
/// Deployment in its namespace whose selector matches it.
fn owners_of(store: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(r) = controller_of(&rs.metadata) {
        return if r.kind == "Deployment" {
            vec![ObjectRef::new(&r.name).within(ns)]
        } else {
            Vec::new()
        };
    }
    let labels = crate::replicaset::labels_of(&rs.metadata);
    store
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns))
        .filter(|d| {
            d.spec
                .as_ref()
                .is_some_and(|s| crate::selector::label_selector_matches(&s.selector, &labels))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn error_policy(d: Arc<Deployment>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "deployment controller");
    Action::requeue(ctx.backoff.next(&key_of(d.as_ref())))
}
