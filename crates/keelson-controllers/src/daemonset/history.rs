//! A DaemonSet's ControllerRevisions, with no IO: the revision of its current template (the
//! strategic-merge patch `kubectl rollout undo` applies), and which old ones to prune.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

use crate::deployment::template_hash;
use crate::replicaset::owner_ref;

/// The label tying a daemon pod (and a revision) to the template hash.
pub const REVISION_HASH: &str = "controller-revision-hash";
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The revision data: the template as a patch that replaces the DaemonSet's template.
pub fn revision_data(ds: &DaemonSet) -> serde_json::Value {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The hash of the DaemonSet's current template.
pub fn current_hash(ds: &DaemonSet) -> String {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    template_hash(&template, collisions)
}

/// What to do about the current revision.
#[derive(Clone, Debug, PartialEq)]
pub enum Current {
    /// A revision holds the current template and is the newest.
    Up(String),
    /// A revision holds it but is older (a rollback): give it this revision number.
    Bump(String, i64),
    /// No revision holds it: create this one.
    Create(Box<ControllerRevision>),
}

/// The current revision among `revisions` (those the DaemonSet controls).
pub fn current(ds: &DaemonSet, revisions: &[Arc<ControllerRevision>]) -> Current {
    let data = revision_data(ds);
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let same = revisions
        .iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
        .max_by_key(|r| r.revision);
    if let Some(r) = same {
        let name = r.metadata.name.clone().unwrap_or_default();
        return if r.revision == max {
            Current::Up(name)
        } else {
            Current::Bump(name, max + 1)
        };
    }
    let hash = current_hash(ds);
    let ds_name = ds.metadata.name.clone().unwrap_or_default();
    let mut labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref()?.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.clone());
    let annotations = ds
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CHANGE_CAUSE))
        .map(|c| {
            [(CHANGE_CAUSE.to_string(), c.clone())]
                .into_iter()
                .collect()
        });
    Current::Create(Box::new(ControllerRevision {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{ds_name}-{hash}")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations,
            owner_references: Some(vec![owner_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: max + 1,
    }))
}

/// Old revisions beyond revisionHistoryLimit (default 10) whose hash no live pod carries,
/// oldest first.
pub fn to_prune(
    ds: &DaemonSet,
    revisions: &[Arc<ControllerRevision>],
    current: &str,
    live_hashes: &[String],
) -> Vec<String> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut old: Vec<&Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(current))
        .filter(|r| {
            let hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH));
            hash.is_none_or(|h| !live_hashes.contains(h))
        })
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old.len().saturating_sub(limit);
    old.into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(image: &str, limit: i32) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "fluentd", "namespace": "ns", "uid": "u1"},
            "spec": {"revisionHistoryLimit": limit, "selector": {"matchLabels": {"app": "f"}},
                "template": {"metadata": {"labels": {"app": "f"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}}))
        .expect("ds")
    }

    fn created(d: &DaemonSet, others: &[Arc<ControllerRevision>]) -> Arc<ControllerRevision> {
        match current(d, others) {
            Current::Create(r) => Arc::new(*r),
            other => panic!("wanted a new revision, got {other:?}"),
        }
    }

    #[test]
    fn revisions_are_created_reused_and_bumped() {
        let v1 = created(&ds("a:1", 10), &[]);
        assert_eq!(v1.revision, 1);
        let name = v1.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with("fluentd-"), "{name}");
        assert_eq!(
            v1.data
                .as_ref()
                .map(|d| d.0["spec"]["template"]["$patch"].clone()),
            Some(json!("replace"))
        );
        assert_eq!(
            current(&ds("a:1", 10), std::slice::from_ref(&v1)),
            Current::Up(name.clone())
        );
        let v2 = created(&ds("a:2", 10), std::slice::from_ref(&v1));
        assert_eq!(v2.revision, 2);
        // Back to the first template: its revision becomes the newest.
        assert_eq!(
            current(&ds("a:1", 10), &[v1.clone(), v2.clone()]),
            Current::Bump(name.clone(), 3)
        );
        // Pruning keeps the limit and revisions live pods still use.
        let v3 = created(&ds("a:3", 1), &[v1.clone(), v2.clone()]);
        let all = [v1.clone(), v2.clone(), v3.clone()];
        let cur = v3.metadata.name.clone().unwrap_or_default();
        assert_eq!(to_prune(&ds("a:3", 1), &all, &cur, &[]), vec![name.clone()]);
        let v1_hash = v1
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            to_prune(&ds("a:3", 0), &all, &cur, &[v1_hash]),
            vec![v2.metadata.name.clone().unwrap_or_default()]
        );
    }
}
