//! The namespace controller: once a namespace is being deleted (and a grace period has
//! passed, as upstream waits so late writes land first), delete every namespaced object in
//! it, then remove its `kubernetes` finalizer through `namespaces/{name}/finalize`.

mod content;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::backoff::Backoff;
use crate::informer::Informer;

/// The finalizer the namespace controller owns.
pub const FINALIZER: &str = "kubernetes";

/// Errors of one reconcile of a namespace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering the namespaced resources for namespace {ns}: {source}")]
    Discovery {
        ns: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {resource} in namespace {ns}: {source}")]
    Content {
        ns: String,
        resource: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizing namespace {ns}: {source}")]
    Finalize {
        ns: String,
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    grace: Duration,
    backoff: Backoff,
}

/// The controller; subscribes now, so build it before the informer starts.
pub fn run(
    client: Client,
    namespaces: &Informer<Namespace>,
    grace: Duration,
) -> impl Future<Output = ()> + Send + 'static {
    let events = namespaces.subscribe();
    let ctx = Arc::new(Context {
        client,
        grace,
        backoff: Backoff::default(),
    });
    Controller::for_shared_stream(events, namespaces.store())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "namespace controller");
    Action::requeue(ctx.backoff.next(&ns.name_any()))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(deleted_at) = ns.metadata.deletion_timestamp.as_ref() else {
        return Ok(Action::await_change());
    };
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let due = deleted_at.0 + jiff::SignedDuration::try_from(ctx.grace).unwrap_or_default();
    let now = jiff::Timestamp::now();
    if due > now {
        let wait = Duration::try_from(due.duration_since(now)).unwrap_or(ctx.grace);
        return Ok(Action::requeue(wait));
    }
    let remaining = content::delete_all(&ctx.client, &name).await?;
    if !remaining.is_empty() {
        set_condition(
            &ctx.client,
            &name,
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            &format!("Some resources are remaining: {}", remaining.join(", ")),
        )
        .await;
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    finalize(&ctx.client, &ns, &finalizers).await?;
    ctx.backoff.reset(&name);
    Ok(Action::await_change())
}

/// Writes one of upstream's deletion conditions; failures only delay the information.
async fn set_condition(client: &Client, ns: &str, type_: &str, reason: &str, message: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let cond = NamespaceCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
    };
    let patch = json!({"status": {"conditions": [cond]}});
    if let Err(e) = api
        .patch_status(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(error = %e, ns, "could not set namespace condition");
    }
}

/// `PUT namespaces/{name}/finalize` without the `kubernetes` finalizer.
async fn finalize(client: &Client, ns: &Namespace, finalizers: &[String]) -> Result<(), Error> {
    let name = ns.name_any();
    let api: Api<Namespace> = Api::all(client.clone());
    let mut body = ns.clone();
    body.metadata.managed_fields = None;
    let left: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if let Some(spec) = body.spec.as_mut() {
        spec.finalizers = Some(left);
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Finalize { ns: name, source }),
    }
}
