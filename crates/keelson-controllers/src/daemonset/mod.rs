//! The DaemonSet controller: one pod per eligible node, pinned to it with a `metadata.name`
//! node affinity for the scheduler to bind, rolled over by RollingUpdate or OnDelete, with
//! ControllerRevisions for `kubectl rollout history/undo`.

pub mod history;
pub mod placement;
pub mod plan;
mod sync;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::backoff::Backoff;
use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::informer::Informer;
use crate::pod::controller_of;
use crate::replicaset::key_of;

/// Errors of one reconcile; each sends the DaemonSet back to the rate-limited queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} pod for daemonset {ds}: {source}")]
    Pod {
        action: &'static str,
        ds: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} controllerrevision for daemonset {ds}: {source}")]
    Revision {
        action: &'static str,
        ds: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating status of daemonset {ds}: {source}")]
    Status {
        ds: String,
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    daemonsets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
    expectations: Expectations,
    backoff: Backoff,
}

/// The controller; subscribes now, so build it before the informers start.
pub fn run(
    client: Client,
    daemonsets: &Informer<DaemonSet>,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    revisions: &Informer<ControllerRevision>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "daemonset-controller"),
        client,
        daemonsets: daemonsets.store(),
        pods: pods.store(),
        nodes: nodes.store(),
        revisions: revisions.store(),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let all = daemonsets.store();
    Controller::for_shared_stream(daemonsets.subscribe(), daemonsets.store())
        .watches_shared_stream(pods.subscribe(), |pod: Arc<Pod>| {
            let owner = controller_of(&pod.metadata)?;
            (owner.kind == "DaemonSet")
                .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
        })
        // Any node change may make it eligible or not for any DaemonSet.
        .watches_shared_stream(nodes.subscribe(), move |_: Arc<Node>| {
            all.state()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(sync::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "daemonset controller");
    Action::requeue(ctx.backoff.next(&key_of(ds.as_ref())))
}
