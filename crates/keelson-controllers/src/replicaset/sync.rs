//! One reconcile of a ReplicaSet or ReplicationController: claim pods (adopt and release),
//! create or delete the difference, then write the status.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, ReplicaOwner, ReplicaStatus, key_of, labels_of, pods_to_delete};
use crate::events::EventType;
use crate::pod::{controller_of, is_active, is_available, is_ready};

/// Most pods created or deleted in one reconcile (upstream's burst replicas).
const BURST: usize = 500;

pub(super) async fn reconcile<K: ReplicaOwner>(
    obj: Arc<K>,
    ctx: Arc<Context<K>>,
) -> Result<Action, Error> {
    let key = key_of(obj.as_ref());
    tracing::debug!(kind = %<K as kube::Resource>::kind(&()), key, "reconcile");
    // The cache may still hold an object that was just deleted; act only on what is live.
    if ctx.owners.get(&ObjectRef::from_obj(obj.as_ref())).is_none() {
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = claim(&obj, &ctx, &pods_api).await?;
    let active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| is_active(p)).collect();

    let deleting = obj.meta().deletion_timestamp.is_some();
    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| ctx.pods.get(&ObjectRef::new(name).within(&ns)).is_some(),
        |name, uid| {
            ctx.pods
                .get(&ObjectRef::new(name).within(&ns))
                .is_none_or(|p| p.metadata.uid.as_deref() != Some(uid) || !is_active(&p))
        },
    );
    let managed = if satisfied && !deleting {
        manage(&obj, &ctx, &pods_api, &key, &active).await
    } else {
        Ok(())
    };

    let now = jiff::Timestamp::now();
    let template_labels = obj
        .template()
        .and_then(|t| t.metadata.as_ref())
        .map(labels_of)
        .unwrap_or_default();
    let mut status = ReplicaStatus::compute(
        &active,
        &template_labels,
        obj.min_ready_seconds(),
        obj.meta().generation.unwrap_or(0),
        now,
    );
    // A failed create or delete shows as the ReplicaFailure condition until one succeeds.
    status.failure = match &managed {
        Err(Error::Pod { action, source, .. }) => {
            let reason = if *action == "deleting" {
                "FailedDelete"
            } else {
                "FailedCreate"
            };
            Some((reason.to_string(), source.to_string()))
        }
        _ => None,
    };
    if ReplicaStatus::from_json(&obj.status_json()) != status {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status.patch()),
        )
        .await
        .map_err(|source| Error::Status {
            owner: key.clone(),
            source,
        })?;
    }
    managed?;
    ctx.backoff.reset(&key);
    if !satisfied {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Pods that are ready but not yet available: look again when they become available.
    let min_ready = obj.min_ready_seconds();
    if min_ready > 0
        && active
            .iter()
            .any(|p| is_ready(p) && !is_available(p, min_ready, now))
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}

/// The owner reference this controller puts on its pods.
pub fn owner_ref<K: Resource<DynamicType = ()>>(obj: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: obj.meta().name.clone().unwrap_or_default(),
        uid: obj.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pods `obj` controls after adopting matching orphans and releasing owned pods that no
/// longer match.
async fn claim<K: ReplicaOwner>(
    obj: &Arc<K>,
    ctx: &Context<K>,
    api: &Api<Pod>,
) -> Result<Vec<Arc<Pod>>, Error> {
    let ns = obj.meta().namespace.clone();
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let selector = obj.selector();
    let deleting = obj.meta().deletion_timestamp.is_some();
    let mut owned = Vec::new();
    for pod in ctx.pods.state() {
        if pod.metadata.namespace.as_deref() != ns.as_deref() {
            continue;
        }
        let matches = selector.matches(&labels_of(&pod.metadata));
        match controller_of(&pod.metadata) {
            Some(r) if r.uid != uid => {}
            Some(_) if matches => owned.push(pod),
            Some(_) if !deleting && pod.metadata.deletion_timestamp.is_none() => {
                release(&pod, &uid, api, obj.as_ref()).await?;
            }
            Some(_) => {}
            None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                if let Some(p) = adopt(&pod, obj.as_ref(), api).await? {
                    owned.push(Arc::new(p));
                }
            }
            None => {}
        }
    }
    Ok(owned)
}

async fn adopt<K: ReplicaOwner>(pod: &Pod, obj: &K, api: &Api<Pod>) -> Result<Option<Pod>, Error> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(owner_ref(obj));
    set_owner_refs(pod, Some(refs), api, "adopting", obj).await
}

async fn release<K: ReplicaOwner>(
    pod: &Pod,
    uid: &str,
    api: &Api<Pod>,
    obj: &K,
) -> Result<(), Error> {
    let refs: Vec<_> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    let refs = (!refs.is_empty()).then_some(refs);
    set_owner_refs(pod, refs, api, "releasing", obj)
        .await
        .map(|_| ())
}

/// Replaces a pod's ownerReferences, guarded by its uid and resourceVersion. A pod that is
/// gone or changed meanwhile is left to the next reconcile, which sees its new state.
async fn set_owner_refs<K: ReplicaOwner>(
    pod: &Pod,
    refs: Option<Vec<OwnerReference>>,
    api: &Api<Pod>,
    action: &'static str,
    obj: &K,
) -> Result<Option<Pod>, Error> {
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(source) => Err(Error::Pod {
            action,
            owner: key_of(obj),
            source,
        }),
    }
}

/// Creates or deletes pods so that `active` becomes `replicas`.
async fn manage<K: ReplicaOwner>(
    obj: &Arc<K>,
    ctx: &Context<K>,
    api: &Api<Pod>,
    key: &str,
    active: &[Arc<Pod>],
) -> Result<(), Error> {
    let want = obj.replicas().max(0) as usize;
    if active.len() < want {
        let Some(body) = pod_from_template(obj.as_ref()) else {
            return Ok(());
        };
        let mut remaining = (want - active.len()).min(BURST);
        // Slow start: 1, 2, 4, ... pods at a time, stopping at the first failure.
        let mut batch = 1;
        while remaining > 0 {
            let n = batch.min(remaining);
            let results: Vec<_> = futures::stream::iter(0..n)
                .map(|_| async { api.create(&PostParams::default(), &body).await })
                .buffer_unordered(n)
                .collect()
                .await;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(p) => {
                        ctx.expectations.created(key, p.name_any());
                        let msg = format!("Created pod: {}", p.name_any());
                        ctx.recorder
                            .publish(obj.as_ref(), EventType::Normal, "SuccessfulCreate", &msg)
                            .await;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(source) = failed {
                let msg = format!("Error creating: {source}");
                ctx.recorder
                    .publish(obj.as_ref(), EventType::Warning, "FailedCreate", &msg)
                    .await;
                return Err(Error::Pod {
                    action: "creating",
                    owner: key.to_string(),
                    source,
                });
            }
            remaining -= n;
            batch *= 2;
        }
    } else if active.len() > want {
        let n = (active.len() - want).min(BURST);
        let victims = pods_to_delete(active, active, n);
        for pod in victims {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    ctx.expectations.deleted(key, pod.name_any(), uid);
                    let msg = format!("Deleted pod: {}", pod.name_any());
                    ctx.recorder
                        .publish(obj.as_ref(), EventType::Normal, "SuccessfulDelete", &msg)
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::Pod {
                        action: "deleting",
                        owner: key.to_string(),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A new pod from the template: `generateName` `<owner>-`, the template's labels,
/// annotations and spec, and a controller reference to `obj`.
fn pod_from_template<K: ReplicaOwner>(obj: &K) -> Option<Pod> {
    let template = obj.template()?;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut pod = Pod::default();
    pod.metadata.generate_name = Some(format!("{}-", obj.name_any()));
    pod.metadata.namespace = obj.meta().namespace.clone();
    pod.metadata.labels = meta.labels;
    pod.metadata.annotations = meta.annotations;
    pod.metadata.finalizers = meta.finalizers;
    pod.metadata.owner_references = Some(vec![owner_ref(obj)]);
    pod.spec = template.spec.clone();
    Some(pod)
}
