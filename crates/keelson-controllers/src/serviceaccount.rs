//! The ServiceAccount controller: a `default` ServiceAccount in every namespace that is not
//! being deleted, re-created if someone deletes it.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::backoff::Backoff;
use crate::informer::Informer;

/// The account every namespace gets.
pub const DEFAULT: &str = "default";

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating serviceaccount default in namespace {ns}: {source}")]
    Create {
        ns: String,
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    accounts: Store<ServiceAccount>,
    backoff: Backoff,
}

/// The controller; subscribes now, so build it before the informers start.
pub fn run(
    client: Client,
    namespaces: &Informer<Namespace>,
    accounts: &Informer<ServiceAccount>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        client,
        accounts: accounts.store(),
        backoff: Backoff::default(),
    });
    Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .watches_shared_stream(accounts.subscribe(), |sa: Arc<ServiceAccount>| {
            (sa.name_any() == DEFAULT)
                .then(|| sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)))
                .flatten()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "serviceaccount controller");
    Action::requeue(ctx.backoff.next(&ns.name_any()))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating
        || ctx
            .accounts
            .get(&ObjectRef::new(DEFAULT).within(&name))
            .is_some()
    {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(DEFAULT.into());
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        // Exists already, or the namespace started terminating meanwhile.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => {}
        Err(source) => return Err(Error::Create { ns: name, source }),
    }
    ctx.backoff.reset(&name);
    Ok(Action::await_change())
}
