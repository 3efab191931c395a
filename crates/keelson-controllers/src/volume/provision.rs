//! The built-in local-path provisioner (as k3s ships rancher's): the default StorageClass
//! `local-path`, and the hostPath PersistentVolume made for a claim on the node the scheduler
//! chose, under `<dir>/pvc-<uid>_<namespace>_<name>`. The node's agent removes that
//! directory when the volume is deleted (the [`CLEANUP_FINALIZER`] holds the object until).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use super::binder::{ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY};
use super::protection::PV_FINALIZER;

/// The provisioner name of the built-in local-path provisioner. Not `rancher.io/local-path`:
/// a user may still install rancher's provisioner beside it, and the two must not both
/// answer the same claims; the mechanics differ too (no helper pods, no ConfigMap).
pub const PROVISIONER: &str = "keelson.io/local-path";
/// The name of the default class created at start.
pub const CLASS: &str = "local-path";
/// Where volumes go on a node unless the class's `nodePath` parameter says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/keelson/storage";
/// The StorageClass parameter that overrides the node directory.
pub const PARAM_NODE_PATH: &str = "nodePath";
/// Held on a provisioned volume until its node's agent has removed the data directory.
pub const CLEANUP_FINALIZER: &str = "keelson.io/local-path-cleanup";
/// The annotation that marks the default class.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The node label local volumes are pinned by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The StorageClass created at start when missing.
pub fn default_class() -> StorageClass {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS, "annotations": {ANN_DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": false,
    }))
    .unwrap_or_default()
}

/// The name of the volume made for a claim: `pvc-<claim uid>`, as upstream's provisioners.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or(""))
}

/// The node directory of the volume made for a claim.
pub fn data_dir(base: &Path, claim: &PersistentVolumeClaim) -> String {
    base.join(format!(
        "{}_{}_{}",
        volume_name(claim),
        claim.metadata.namespace.as_deref().unwrap_or(""),
        claim.metadata.name.as_deref().unwrap_or("")
    ))
    .display()
    .to_string()
}

/// Whether `path` is a directory this provisioner made for volume `name` (absolute, no `..`,
/// named `<name>_...`): the agent deletes only such directories.
pub fn is_our_dir(path: &str, name: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && name.starts_with("pvc-")
        && p.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with(&format!("{name}_")))
}

/// The volume for `claim` of `class` on the node whose hostname label is `hostname`, its
/// directory under `default_dir` unless the class names one. Pre-bound to the claim.
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    hostname: &str,
    default_dir: &Path,
) -> PersistentVolume {
    let base = class
        .parameters
        .as_ref()
        .and_then(|p| p.get(PARAM_NODE_PATH))
        .map(Path::new)
        .unwrap_or(default_dir);
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into());
    let modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let annotations = BTreeMap::from([
        (ANN_PROVISIONED_BY.to_string(), PROVISIONER.to_string()),
        (ANN_BOUND_BY_CONTROLLER.to_string(), "yes".to_string()),
    ]);
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": annotations,
            "finalizers": [PV_FINALIZER, CLEANUP_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.metadata.name,
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": data_dir(base, claim), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}]}},
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": claim.metadata.namespace,
                "name": claim.metadata.name,
                "uid": claim.metadata.uid,
                "resourceVersion": claim.metadata.resource_version,
            },
        },
    }))
    .unwrap_or_default()
}

/// The node a provisioned volume lives on: the value its affinity requires of the hostname
/// label, if it is one of ours.
pub fn node_of(pv: &PersistentVolume) -> Option<String> {
    let anns = pv.metadata.annotations.as_ref()?;
    if anns.get(ANN_PROVISIONED_BY).map(String::as_str) != Some(PROVISIONER) {
        return None;
    }
    let term = pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms
        .first()?;
    let expr = term
        .match_expressions
        .iter()
        .flatten()
        .find(|e| e.key == HOSTNAME_LABEL && e.operator == "In")?;
    expr.values.as_ref()?.first().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "web", "uid": "abc",
            "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}))
        .expect("claim")
    }

    #[test]
    fn the_default_class_is_keelsons_local_path() {
        let c = serde_json::to_value(default_class()).unwrap();
        assert_eq!(c["metadata"]["name"], "local-path");
        assert_eq!(c["provisioner"], PROVISIONER);
        assert_eq!(c["volumeBindingMode"], "WaitForFirstConsumer");
        assert_eq!(c["reclaimPolicy"], "Delete");
        assert_eq!(c["metadata"]["annotations"][ANN_DEFAULT_CLASS], "true");
    }

    #[test]
    fn a_volume_is_made_pre_bound_and_pinned_to_the_node() {
        let pv = volume_for(&claim(), &default_class(), "n1", Path::new(DEFAULT_DIR));
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-abc");
        assert_eq!(
            v["spec"]["hostPath"],
            json!({"path": "/var/lib/keelson/storage/pvc-abc_web_data", "type": "DirectoryOrCreate"})
        );
        assert_eq!(v["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(v["spec"]["storageClassName"], "local-path");
        assert_eq!(
            v["spec"]["claimRef"],
            json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": "web",
                "name": "data", "uid": "abc", "resourceVersion": "7"})
        );
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["n1"])
        );
        assert_eq!(node_of(&pv).as_deref(), Some("n1"));
        let mut class = default_class();
        class.parameters = Some(BTreeMap::from([(
            PARAM_NODE_PATH.into(),
            "/mnt/disk".into(),
        )]));
        let pv = volume_for(&claim(), &class, "n1", Path::new(DEFAULT_DIR));
        let path = pv.spec.unwrap().host_path.unwrap().path;
        assert_eq!(path, "/mnt/disk/pvc-abc_web_data");
    }

    #[test]
    fn only_our_directories_are_ever_removed() {
        assert!(is_our_dir(
            "/var/lib/keelson/storage/pvc-abc_web_data",
            "pvc-abc"
        ));
        assert!(!is_our_dir("/", "pvc-abc"));
        assert!(!is_our_dir("/etc", "pvc-abc"));
        assert!(!is_our_dir("relative/pvc-abc_x", "pvc-abc"));
        assert!(!is_our_dir("/x/../pvc-abc_x", "pvc-abc"));
        assert!(!is_our_dir("/x/pvc-abd_x", "pvc-abc"));
        assert!(!is_our_dir("/x/other_x", "other"));
    }
}
