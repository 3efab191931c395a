//! One reconcile of a Service: compute its backends, then write the Endpoints and the
//! EndpointSlices that differ from them (nothing when they already agree).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::desired::{self, SliceContent};
use super::{
    Context, ENDPOINTS_MANAGED_BY, ENDPOINTS_MANAGED_BY_LABEL, Error, HEADLESS_LABEL, MANAGED_BY,
    MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
};
use crate::replicaset::owner_ref;

pub(super) async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = crate::replicaset::key_of(svc.as_ref());
    // Act only on a live Service; Services without a selector are someone else's.
    if ctx
        .services
        .get(&ObjectRef::from_obj(svc.as_ref()))
        .is_none()
        || svc.metadata.deletion_timestamp.is_some()
        || desired::selector_of(&svc).is_none()
    {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let pods: Vec<_> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let backends = desired::backends(&svc, pods.iter().map(|p| p.as_ref()));
    sync_endpoints(&svc, &ctx, &desired::subsets(&svc, &backends)).await?;
    sync_slices(&svc, &ctx, desired::slices(&svc, &backends)).await?;
    ctx.backoff.reset(&key);
    Ok(Action::await_change())
}

/// The Service's labels plus the ones this controller adds.
fn labels_for(svc: &Service, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    if desired::is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

async fn sync_endpoints(
    svc: &Service,
    ctx: &Context,
    subsets: &[k8s_openapi::api::core::v1::EndpointSubset],
) -> Result<(), Error> {
    let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    let labels = labels_for(svc, &[(ENDPOINTS_MANAGED_BY_LABEL, ENDPOINTS_MANAGED_BY)]);
    let subsets = (!subsets.is_empty()).then(|| subsets.to_vec());
    let existing = ctx.endpoints.get(&ObjectRef::new(&name).within(&ns));
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let err = |action| {
        let (ns, name) = (ns.clone(), name.clone());
        move |source| Error::Endpoints {
            action,
            ns,
            name,
            source,
        }
    };
    match existing {
        Some(ep) => {
            let same_subsets = ep.subsets.as_ref().filter(|s| !s.is_empty()) == subsets.as_ref();
            if same_subsets && ep.labels() == &labels {
                return Ok(());
            }
            let mut next = (*ep).clone();
            next.metadata.labels = Some(labels);
            next.subsets = subsets;
            api.replace(&name, &PostParams::default(), &next)
                .await
                .map_err(err("updating"))?;
        }
        None => {
            let mut ep = Endpoints::default();
            ep.metadata.name = Some(name.clone());
            ep.metadata.namespace = Some(ns.clone());
            ep.metadata.labels = Some(labels);
            ep.subsets = subsets;
            match api.create(&PostParams::default(), &ep).await {
                // The cache lags; the watch brings the object and another reconcile.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                other => {
                    other.map_err(err("creating"))?;
                }
            }
        }
    }
    Ok(())
}

async fn sync_slices(svc: &Service, ctx: &Context, want: Vec<SliceContent>) -> Result<(), Error> {
    let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    let labels = labels_for(
        svc,
        &[
            (SERVICE_NAME_LABEL, name.as_str()),
            (MANAGED_BY_LABEL, MANAGED_BY),
        ],
    );
    let address_type = desired::address_type(svc);
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| {
            let l = s.labels();
            l.get(SERVICE_NAME_LABEL) == Some(&name)
                && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        })
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let err = |action| {
        let (ns, name) = (ns.clone(), name.clone());
        move |source| Error::Slice {
            action,
            ns,
            name,
            source,
        }
    };
    // An empty Service still has one (empty) slice, as upstream.
    let want = if want.is_empty() {
        vec![SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
        }]
    } else {
        want
    };
    let owner = owner_ref(svc);
    let mut unmatched: Vec<SliceContent> = Vec::new();
    for content in want {
        // Reuse a slice with the same ports (an identical one first), else create one.
        let pos = existing
            .iter()
            .position(|s| same_content(s, &content, &labels, address_type))
            .or_else(|| existing.iter().position(|s| ports_of(s) == content.ports));
        match pos.map(|i| existing.remove(i)) {
            Some(s) if same_content(&s, &content, &labels, address_type) => {}
            Some(s) => {
                let mut next = (*s).clone();
                next.metadata.labels = Some(labels.clone());
                next.metadata.owner_references = Some(vec![owner.clone()]);
                next.address_type = address_type.into();
                next.endpoints = content.endpoints;
                next.ports = Some(content.ports);
                api.replace(&s.name_any(), &PostParams::default(), &next)
                    .await
                    .map_err(err("updating"))?;
            }
            None => unmatched.push(content),
        }
    }
    for content in unmatched {
        // Reuse a leftover slice of other ports before creating a new one.
        if let Some(s) = existing.pop() {
            let mut next = (*s).clone();
            next.metadata.labels = Some(labels.clone());
            next.address_type = address_type.into();
            next.endpoints = content.endpoints;
            next.ports = Some(content.ports);
            api.replace(&s.name_any(), &PostParams::default(), &next)
                .await
                .map_err(err("updating"))?;
            continue;
        }
        let slice = EndpointSlice {
            metadata: kube::api::ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![owner.clone()]),
                ..Default::default()
            },
            address_type: address_type.into(),
            endpoints: content.endpoints,
            ports: Some(content.ports),
        };
        api.create(&PostParams::default(), &slice)
            .await
            .map_err(err("creating"))?;
    }
    for s in existing {
        match api.delete(&s.name_any(), &DeleteParams::default()).await {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other.map_err(err("deleting"))?;
            }
        }
    }
    Ok(())
}

fn ports_of(s: &EndpointSlice) -> Vec<k8s_openapi::api::discovery::v1::EndpointPort> {
    s.ports.clone().unwrap_or_default()
}

fn same_content(
    s: &EndpointSlice,
    want: &SliceContent,
    labels: &BTreeMap<String, String>,
    address_type: &str,
) -> bool {
    s.labels() == labels
        && s.address_type == address_type
        && ports_of(s) == want.ports
        && s.endpoints == want.endpoints
}
