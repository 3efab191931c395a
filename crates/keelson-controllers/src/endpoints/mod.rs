//! The Endpoints and EndpointSlice controllers: one reconcile per Service keeps the Endpoints
//! named as the Service and its EndpointSlices in step with the pods its selector picks.

pub mod desired;
mod sync;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::backoff::Backoff;
use crate::informer::Informer;

/// The label naming the Service of an EndpointSlice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label naming who manages an Endpoints object.
pub const ENDPOINTS_MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
/// This controller's value of [`ENDPOINTS_MANAGED_BY_LABEL`].
pub const ENDPOINTS_MANAGED_BY: &str = "endpoint-controller";
/// The label set on the endpoints of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Errors of one reconcile; each sends the Service back to the rate-limited queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} endpoints {ns}/{name}: {source}")]
    Endpoints {
        action: &'static str,
        ns: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} endpointslice for service {ns}/{name}: {source}")]
    Slice {
        action: &'static str,
        ns: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    backoff: Backoff,
}

/// The controller; subscribes now, so build it before the informers start.
pub fn run(
    client: Client,
    services: &Informer<Service>,
    pods: &Informer<Pod>,
    endpoints: &Informer<Endpoints>,
    slices: &Informer<EndpointSlice>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        client: client.clone(),
        services: services.store(),
        pods: pods.store(),
        endpoints: endpoints.store(),
        slices: slices.store(),
        backoff: Backoff::default(),
    });
    // A deleted Service takes its Endpoints with it (its EndpointSlices are owned by it and
    // go with the garbage collector).
    let svc_store = services.store();
    let svc_events = services.subscribe().inspect(move |svc: &Arc<Service>| {
        if svc_store.get(&ObjectRef::from_obj(svc.as_ref())).is_none()
            && desired::selector_of(svc).is_some()
        {
            let api: Api<Endpoints> =
                Api::namespaced(client.clone(), &svc.namespace().unwrap_or_default());
            let name = svc.name_any();
            tokio::spawn(async move {
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    tracing::debug!(error = %e, name, "deleting endpoints of a deleted service");
                }
            });
        }
    });
    let (pod_ctx, ep_ctx) = (ctx.clone(), ctx.clone());
    Controller::for_shared_stream(svc_events, services.store())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            services_of_pod(&pod_ctx, &pod)
        })
        .watches_shared_stream(endpoints.subscribe(), |ep: Arc<Endpoints>| {
            Some(ObjectRef::<Service>::new(&ep.name_any()).within(&ep.namespace()?))
        })
        .watches_shared_stream(slices.subscribe(), move |s: Arc<EndpointSlice>| {
            let labels = s.metadata.labels.as_ref()?;
            (labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
                .then(|| labels.get(SERVICE_NAME_LABEL))
                .flatten()
                .map(|svc| {
                    ObjectRef::<Service>::new(svc).within(&s.namespace().unwrap_or_default())
                })
                .filter(|r| ep_ctx.services.get(r).is_some())
        })
        .run(sync::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

/// The Services a pod change concerns: those in its namespace whose selector picks it now,
/// and those whose slices list it (it may have stopped matching).
fn services_of_pod(ctx: &Context, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut out: Vec<ObjectRef<Service>> = ctx
        .services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| {
            desired::selector_of(s)
                .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect();
    for slice in ctx.slices.state() {
        if slice.metadata.namespace.as_deref() != Some(ns) {
            continue;
        }
        let lists_pod = slice.endpoints.iter().any(|e| {
            e.target_ref
                .as_ref()
                .is_some_and(|t| t.name.as_deref() == Some(name))
        });
        let svc = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL));
        if let (true, Some(svc)) = (lists_pod, svc) {
            out.push(ObjectRef::new(svc).within(ns));
        }
    }
    out
}

fn error_policy(svc: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "endpoints controller");
    Action::requeue(ctx.backoff.next(&crate::replicaset::key_of(svc.as_ref())))
}
