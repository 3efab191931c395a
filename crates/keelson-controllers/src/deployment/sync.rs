//! One reconcile of a Deployment: find (or create) the ReplicaSet of its current template,
//! keep revisions in order, roll over by strategy, clean up history and write the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};

use super::hash::{POD_TEMPLATE_HASH, equal_ignoring_hash, template_hash};
use super::rolling::{Counts, new_rs_replicas, resolve_fenceposts, scale_down_old};
use super::status::{self as st, condition, set_condition};
use super::{Context, DESIRED_REPLICAS, Error, MAX_REPLICAS, REVISION, proportion};
use crate::events::EventType;
use crate::pod::controller_of;
use crate::replicaset::{key_of, labels_of};
use crate::selector::label_selector_matches;

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
];

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// What one reconcile did, for the Progressing condition.
#[derive(Default)]
struct Progress {
    created: bool,
    scaled: bool,
}

pub(super) async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx
        .deployments
        .get(&ObjectRef::from_obj(d.as_ref()))
        .is_none()
        || d.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let key = key_of(d.as_ref());
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut progress = Progress::default();

    let mut owned = claim(&d, &ctx, &rs_api).await?;
    owned.sort_by_key(|rs| {
        (
            rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            rs.name_any(),
        )
    });
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let new_name = format!("{name}-{hash}");
    let new_idx = owned.iter().position(|rs| {
        rs.name_any() == new_name
            || rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignoring_hash(t, &spec.template))
    });
    let mut new_rs = new_idx.map(|i| owned.remove(i));
    let mut old = owned;
    let max_old_revision = old.iter().map(revision).max().unwrap_or(0);
    let paused = spec.paused == Some(true);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let (surge, unavailable) = if recreate {
        (0, 0)
    } else {
        let ru = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        resolve_fenceposts(
            ru.and_then(|r| r.max_surge.as_ref()),
            ru.and_then(|r| r.max_unavailable.as_ref()),
            replicas,
        )
    };

    // Whether the Deployment was resized since its active ReplicaSets were last scaled, and
    // their scaling hints as they were before this round rewrites the new one's.
    let hints: BTreeMap<String, (Option<i32>, Option<i32>)> = old
        .iter()
        .chain(new_rs.iter())
        .filter(|rs| spec_replicas(rs) > 0)
        .map(|rs| {
            let hint = |k: &str| rs.annotations().get(k).and_then(|v| v.parse::<i32>().ok());
            (rs.name_any(), (hint(DESIRED_REPLICAS), hint(MAX_REPLICAS)))
        })
        .collect();
    let resized = hints
        .values()
        .any(|(desired, _)| desired.is_some_and(|d| d != replicas));

    // The new ReplicaSet carries the newest revision and the Deployment's annotations.
    if let Some(rs) = new_rs.as_mut() {
        let want = annotations_for(&d, max_old_revision + 1, revision(rs), replicas, surge);
        if want.iter().any(|(k, v)| rs.annotations().get(k) != Some(v)) {
            let patch = json!({"metadata": {"annotations": want}});
            *rs = rs_api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|source| rs_err("annotating", rs, &key, source))?;
        }
    } else if !paused {
        let old_active = old
            .iter()
            .any(|rs| spec_replicas(rs) > 0 || status_replicas(rs) > 0);
        let all = old
            .iter()
            .fold(0i32, |a, rs| a.saturating_add(spec_replicas(rs)));
        let initial = if recreate {
            if old_active { 0 } else { replicas }
        } else {
            new_rs_replicas(replicas, surge, 0, all)
        };
        let body = new_replica_set(&d, &new_name, &hash, initial, max_old_revision + 1, surge);
        let rs = match rs_api.create(&PostParams::default(), &body).await {
            Ok(rs) => rs,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = rs_api
                    .get(&new_name)
                    .await
                    .map_err(|source| rs_err("reading", &body, &key, source))?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                if !ours {
                    bump_collision_count(&ctx, &d, &ns).await?;
                    return Ok(Action::requeue(Duration::from_millis(50)));
                }
                existing
            }
            Err(source) => return Err(rs_err("creating", &body, &key, source)),
        };
        progress.created = true;
        if initial > 0 {
            scaled_event(&ctx, &d, &rs, 0, initial).await;
        }
        new_rs = Some(rs);
    }

    if let Some(rs) = new_rs.as_ref() {
        let rev = rs.annotations().get(REVISION).cloned().unwrap_or_default();
        if d.annotations().get(REVISION) != Some(&rev) {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| Error::Status {
                    deployment: key.clone(),
                    source,
                })?;
        }
    }

    let proportional = resized && hints.len() > 1;
    if proportional {
        // Several ReplicaSets hold pods: share the change among them; the rollout goes on
        // from the new sizes next round.
        let mut active: Vec<&mut ReplicaSet> = old
            .iter_mut()
            .chain(new_rs.iter_mut())
            .filter(|rs| hints.contains_key(&rs.name_any()))
            .collect();
        let sets: Vec<proportion::Active> = active
            .iter()
            .enumerate()
            .map(|(newness, rs)| proportion::Active {
                replicas: spec_replicas(rs),
                max_replicas: hints.get(&rs.name_any()).and_then(|h| h.1),
                newness,
            })
            .collect();
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = proportion::sizes(&sets, replicas, surge, status_replicas);
        for (rs, to) in active.iter_mut().zip(sizes) {
            if to != spec_replicas(rs) {
                scale(&ctx, &d, &rs_api, rs, to, surge, &key).await?;
                progress.scaled = true;
            }
        }
    }
    if !proportional && let Some(new) = new_rs.as_mut() {
        if paused {
            // Paused: scaling still applies when only the newest ReplicaSet is active.
            if old.iter().all(|rs| spec_replicas(rs) == 0) && spec_replicas(new) != replicas {
                scale(&ctx, &d, &rs_api, new, replicas, surge, &key).await?;
                progress.scaled = true;
            }
        } else if recreate {
            progress.scaled |=
                roll_recreate(&ctx, &d, &rs_api, new, &mut old, replicas, &key).await?;
        } else {
            let all = old.iter().fold(spec_replicas(new), |a, rs| {
                a.saturating_add(spec_replicas(rs))
            });
            let target = new_rs_replicas(replicas, surge, spec_replicas(new), all);
            if target != spec_replicas(new) {
                scale(&ctx, &d, &rs_api, new, target, surge, &key).await?;
                progress.scaled = true;
            }
            let counts: Vec<Counts> = old
                .iter()
                .map(|rs| Counts {
                    replicas: spec_replicas(rs),
                    available: available(rs),
                })
                .collect();
            let new_counts = Counts {
                replicas: spec_replicas(new),
                available: available(new),
            };
            let targets = scale_down_old(&counts, new_counts, replicas, unavailable);
            for (rs, target) in old.iter_mut().zip(targets) {
                if target != spec_replicas(rs) {
                    scale(&ctx, &d, &rs_api, rs, target, surge, &key).await?;
                    progress.scaled = true;
                }
            }
        }
    }

    let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.iter()).collect();
    let mut status = st::counts(
        &all,
        new_rs.as_ref(),
        d.metadata.generation.unwrap_or(0),
        collision,
    );
    let complete = new_rs.is_some() && st::complete(&status, replicas);
    if !paused && (complete || old.iter().all(|rs| spec_replicas(rs) == 0)) {
        clean_up(
            &rs_api,
            &old,
            spec.revision_history_limit.unwrap_or(10),
            &key,
        )
        .await?;
    }
    let old_status = d.status.clone().unwrap_or_default();
    let mut conds: Vec<DeploymentCondition> = old_status.conditions.clone().unwrap_or_default();
    let min_available = replicas.saturating_sub(unavailable);
    if status.available_replicas.unwrap_or(0) >= min_available {
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        );
    }
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let mut requeue = None;
    let prev = condition(&conds, "Progressing").cloned();
    if paused {
        set_condition(
            &mut conds,
            "Progressing",
            "Unknown",
            st::PAUSED,
            "Deployment is paused",
        );
    } else if prev.as_ref().and_then(|c| c.reason.as_deref()) == Some(st::PAUSED) {
        set_condition(
            &mut conds,
            "Progressing",
            "Unknown",
            st::RESUMED,
            "Deployment is resumed",
        );
    } else if let Some(rs) = new_rs.as_ref() {
        let n = rs.name_any();
        let counts_changed = status.replicas != old_status.replicas
            || status.updated_replicas != old_status.updated_replicas
            || status.ready_replicas != old_status.ready_replicas
            || status.available_replicas != old_status.available_replicas;
        if complete {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                st::NEW_RS_AVAILABLE,
                &format!("ReplicaSet \"{n}\" has successfully progressed."),
            );
        } else if progress.created {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                st::NEW_RS_CREATED,
                &format!("Created new replica set \"{n}\""),
            );
        } else if prev.is_none() {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                st::FOUND_NEW_RS,
                &format!("Found new replica set \"{n}\""),
            );
        } else if progress.scaled || counts_changed {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                st::RS_UPDATED,
                &format!("ReplicaSet \"{n}\" is progressing."),
            );
        } else if let Some(since) = prev
            .as_ref()
            .filter(|c| c.status == "True")
            .and_then(|c| c.last_update_time.as_ref())
        {
            let due = since.0 + jiff::SignedDuration::from_secs(i64::from(deadline));
            let now = jiff::Timestamp::now();
            if now >= due {
                set_condition(
                    &mut conds,
                    "Progressing",
                    "False",
                    st::DEADLINE_EXCEEDED,
                    &format!("ReplicaSet \"{n}\" has timed out progressing."),
                );
            } else {
                requeue = Duration::try_from(due.duration_since(now)).ok();
            }
        }
    }
    // Keep upstream's order: Available before Progressing.
    conds.sort_by_key(|c| c.type_ != "Available");
    status.conditions = Some(conds);
    if serde_json::to_value(&status).ok() != serde_json::to_value(&old_status).ok() {
        write_status(&ctx, &ns, &name, &status, &key).await?;
    }
    ctx.backoff.reset(&key);
    Ok(match requeue {
        Some(after) => Action::requeue(after + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

fn rs_err(action: &'static str, rs: &ReplicaSet, key: &str, source: kube::Error) -> Error {
    Error::ReplicaSet {
        action,
        name: rs.name_any(),
        deployment: key.to_string(),
        source,
    }
}

/// The ReplicaSets this Deployment controls, adopting matching orphans.
async fn claim(
    d: &Deployment,
    ctx: &Context,
    api: &Api<ReplicaSet>,
) -> Result<Vec<ReplicaSet>, Error> {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for rs in ctx.replicasets.state() {
        if rs.metadata.namespace != d.metadata.namespace {
            continue;
        }
        match controller_of(&rs.metadata) {
            Some(r) if r.uid == uid => out.push(rs.as_ref().clone()),
            Some(_) => {}
            None if rs.metadata.deletion_timestamp.is_none()
                && label_selector_matches(&selector, &labels_of(&rs.metadata)) =>
            {
                let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                refs.push(crate::replicaset::owner_ref(d));
                let patch = json!({"metadata": {
                    "ownerReferences": refs,
                    "uid": rs.metadata.uid,
                    "resourceVersion": rs.metadata.resource_version,
                }});
                match api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(rs) => out.push(rs),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(source) => return Err(rs_err("adopting", &rs, &key_of(d), source)),
                }
            }
            None => {}
        }
    }
    Ok(out)
}

/// The annotations a ReplicaSet of `d` carries: the Deployment's own (minus bookkeeping),
/// its revision (raised to `min_revision` when older) and the scaling hints.
fn annotations_for(
    d: &Deployment,
    min_revision: i64,
    current: i64,
    replicas: i32,
    surge: i32,
) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    a.insert(REVISION.into(), current.max(min_revision).to_string());
    a.insert(DESIRED_REPLICAS.into(), replicas.to_string());
    a.insert(
        MAX_REPLICAS.into(),
        replicas.saturating_add(surge).to_string(),
    );
    a
}

fn new_replica_set(
    d: &Deployment,
    name: &str,
    hash: &str,
    replicas: i32,
    revision: i64,
    surge: i32,
) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let labels = meta.labels.clone();
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut rs = ReplicaSet::default();
    rs.metadata.name = Some(name.into());
    rs.metadata.namespace = d.metadata.namespace.clone();
    rs.metadata.labels = labels;
    rs.metadata.annotations = Some(annotations_for(
        d,
        revision,
        0,
        spec.replicas.unwrap_or(1),
        surge,
    ));
    rs.metadata.owner_references = Some(vec![crate::replicaset::owner_ref(d)]);
    rs.spec = Some(ReplicaSetSpec {
        replicas: Some(replicas),
        min_ready_seconds: spec.min_ready_seconds,
        selector,
        template: Some(template),
    });
    rs
}

async fn scaled_event(ctx: &Context, d: &Deployment, rs: &ReplicaSet, from: i32, to: i32) {
    let dir = if to > from { "up" } else { "down" };
    let msg = format!(
        "Scaled {dir} replica set {} from {from} to {to}",
        rs.name_any()
    );
    ctx.recorder
        .publish(d, EventType::Normal, "ScalingReplicaSet", &msg)
        .await;
}

/// Sets a ReplicaSet's replicas (and scaling hints); updates `rs` in place.
async fn scale(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    rs: &mut ReplicaSet,
    to: i32,
    surge: i32,
    key: &str,
) -> Result<(), Error> {
    let from = spec_replicas(rs);
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let patch = json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS: replicas.to_string(),
            MAX_REPLICAS: replicas.saturating_add(surge).to_string(),
        }},
        "spec": {"replicas": to},
    });
    *rs = api
        .patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| rs_err("scaling", rs, key, source))?;
    scaled_event(ctx, d, rs, from, to).await;
    Ok(())
}

/// Recreate: every old ReplicaSet to 0, and only once their pods are gone the new one up.
async fn roll_recreate(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    new: &mut ReplicaSet,
    old: &mut [ReplicaSet],
    replicas: i32,
    key: &str,
) -> Result<bool, Error> {
    let mut scaled = false;
    for rs in old.iter_mut().filter(|rs| spec_replicas(rs) > 0) {
        scale(ctx, d, api, rs, 0, 0, key).await?;
        scaled = true;
    }
    let old_pods_left = old.iter().any(|rs| status_replicas(rs) > 0);
    if !scaled && !old_pods_left && spec_replicas(new) != replicas {
        scale(ctx, d, api, new, replicas, 0, key).await?;
        scaled = true;
    }
    Ok(scaled)
}

/// Deletes the oldest ReplicaSets scaled to 0 beyond `limit`.
async fn clean_up(
    api: &Api<ReplicaSet>,
    old: &[ReplicaSet],
    limit: i32,
    key: &str,
) -> Result<(), Error> {
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| spec_replicas(rs) == 0 && status_replicas(rs) == 0)
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = idle.len().saturating_sub(limit.max(0) as usize);
    idle.sort_by_key(|rs| revision(rs));
    for rs in idle.into_iter().take(excess) {
        match api
            .delete(&rs.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(rs_err("deleting", rs, key, source)),
        }
    }
    Ok(())
}

async fn bump_collision_count(ctx: &Context, d: &Deployment, ns: &str) -> Result<(), Error> {
    let n = d
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({"status": {"collisionCount": n + 1}});
    api.patch_status(
        &d.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        deployment: key_of(d),
        source,
    })?;
    Ok(())
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &k8s_openapi::api::apps::v1::DeploymentStatus,
    key: &str,
) -> Result<(), Error> {
    // Every field named, so a count that dropped to zero is cleared.
    let mut body = serde_json::to_value(status).unwrap_or_default();
    if let Value::Object(m) = &mut body {
        for f in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ] {
            m.entry(f).or_insert(Value::Null);
        }
    }
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": body})),
    )
    .await
    .map_err(|source| Error::Status {
        deployment: key.to_string(),
        source,
    })?;
    Ok(())
}
