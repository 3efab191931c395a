//! One reconcile of a DaemonSet: settle the current revision, create and delete pods as the
//! plan says, prune old revisions, write the status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::history::{self, Current, REVISION_HASH};
use super::placement::pin_to_node;
use super::plan::{self, Plan};
use super::{Context, Error};
use crate::events::EventType;
use crate::pod::controller_of;
use crate::replicaset::{key_of, owner_ref};

pub(super) async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(ds.as_ref());
    if ctx
        .daemonsets
        .get(&ObjectRef::from_obj(ds.as_ref()))
        .is_none()
        || ds.metadata.deletion_timestamp.is_some()
    {
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.uid().unwrap_or_default();
    let revisions: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let current = settle_revision(&ds, &ctx, &revisions, &key).await?;
    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| ctx.pods.get(&ObjectRef::new(name).within(&ns)).is_some(),
        |name, _| {
            ctx.pods
                .get(&ObjectRef::new(name).within(&ns))
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        },
    );
    if !satisfied {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let all_pods = ctx.pods.state();
    let owned: Vec<&Pod> = all_pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let nodes = ctx.nodes.state();
    let node_refs: Vec<_> = nodes.iter().map(|n| n.as_ref()).collect();
    let hash = history::current_hash(&ds);
    let plan = plan::decide(&ds, &node_refs, &owned, &hash, jiff::Timestamp::now());
    apply(&ds, &ctx, &key, &hash, &plan).await?;

    let live: Vec<String> = owned
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH).cloned())
        .collect();
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    for name in history::to_prune(&ds, &revisions, &current, &live) {
        if let Err(e) = rev_api.delete(&name, &DeleteParams::default()).await {
            tracing::debug!(error = %e, name, "pruning controllerrevision");
        }
    }
    ctx.backoff.reset(&key);
    let s = &plan.status;
    if s.number_available.unwrap_or(0) < s.number_ready {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}

/// Makes sure a revision holds the current template; returns its name.
async fn settle_revision(
    ds: &DaemonSet,
    ctx: &Context,
    revisions: &[Arc<ControllerRevision>],
    key: &str,
) -> Result<String, Error> {
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let err = |action| {
        move |source| Error::Revision {
            action,
            ds: key.to_string(),
            source,
        }
    };
    match history::current(ds, revisions) {
        Current::Up(name) => Ok(name),
        Current::Bump(name, revision) => {
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"revision": revision})),
            )
            .await
            .map_err(err("updating"))?;
            Ok(name)
        }
        Current::Create(rev) => {
            let name = rev.name_any();
            match api.create(&PostParams::default(), &rev).await {
                // Created already; the cache has not caught up.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                other => {
                    other.map_err(err("creating"))?;
                }
            }
            Ok(name)
        }
    }
}

async fn apply(
    ds: &DaemonSet,
    ctx: &Context,
    key: &str,
    hash: &str,
    plan: &Plan,
) -> Result<(), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let err = |action| {
        move |source| Error::Pod {
            action,
            ds: key.to_string(),
            source,
        }
    };
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    for node in &plan.create {
        let pinned = pin_to_node(&template, node);
        let mut meta = pinned.metadata.unwrap_or_default();
        meta.generate_name = Some(format!("{}-", ds.name_any()));
        meta.namespace = Some(ns.clone());
        meta.owner_references = Some(vec![owner_ref(ds)]);
        let labels = meta.labels.get_or_insert_default();
        labels.insert(REVISION_HASH.into(), hash.to_string());
        labels.insert(
            "pod-template-generation".into(),
            ds.metadata.generation.unwrap_or(1).to_string(),
        );
        let pod = Pod {
            metadata: meta,
            spec: pinned.spec,
            status: None,
        };
        let created = pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(err("creating"))?;
        ctx.expectations.created(key, created.name_any());
        let msg = format!("Created pod: {}", created.name_any());
        ctx.recorder
            .publish(ds, EventType::Normal, "SuccessfulCreate", &msg)
            .await;
    }
    for name in &plan.delete {
        match pods.delete(name, &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(err("deleting")(source)),
            Ok(_) => {
                ctx.expectations.deleted(key, name.clone(), String::new());
                let msg = format!("Deleted pod: {name}");
                ctx.recorder
                    .publish(ds, EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
        }
    }
    let old = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
    let new = serde_json::to_value(&plan.status).unwrap_or_default();
    if old != new {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": new})),
        )
        .await
        .map_err(|source| Error::Status {
            ds: key.to_string(),
            source,
        })?;
    }
    Ok(())
}
