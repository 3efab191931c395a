//! The node side of the local-path provisioner: when a volume it made on this node is
//! deleted (the object held by the `keelson.io/local-path-cleanup` finalizer), the agent
//! removes the volume's directory and then the finalizer. Doing it here rather than in a
//! helper pod (as rancher's provisioner does) needs no image on the node and no scheduling.

use std::io;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use keelson_controllers::volume::provision::{CLEANUP_FINALIZER, is_our_dir, node_of};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

/// Removing a volume's directory on this node.
pub trait Remover: Send + Sync {
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
}

/// [`Remover`] on this machine's file system.
pub struct HostRemover;

impl Remover for HostRemover {
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The directory to remove for a volume, if it is a deleted local-path volume of `node`
/// still holding the cleanup finalizer.
pub fn to_clean(pv: &PersistentVolume, node: &str) -> Option<String> {
    pv.metadata.deletion_timestamp.as_ref()?;
    let holds = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == CLEANUP_FINALIZER);
    if !holds || node_of(pv).as_deref() != Some(node) {
        return None;
    }
    let path = pv.spec.as_ref()?.host_path.as_ref()?.path.clone();
    is_our_dir(&path, &pv.name_any()).then_some(path)
}

/// Removes the data of one volume if it is ours to clean; returns whether it did.
pub fn clean(remover: &dyn Remover, pv: &PersistentVolume, node: &str) -> io::Result<bool> {
    let Some(path) = to_clean(pv, node) else {
        return Ok(false);
    };
    remover.remove_dir_all(Path::new(&path))?;
    Ok(true)
}

/// Watches volumes and cleans those of this node as they are deleted, until the process ends.
pub async fn run(client: Client, node: String) {
    let api: Api<PersistentVolume> = Api::all(client);
    let mut events = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = events.next().await {
        let pv = match ev {
            Ok(pv) => pv,
            Err(e) => {
                tracing::debug!(error = %e, "watching persistentvolumes");
                continue;
            }
        };
        match clean(&HostRemover, &pv, &node) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(volume = %pv.name_any(), error = %e, "removing the volume's data");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let left: Vec<String> = pv
            .finalizers()
            .iter()
            .filter(|f| *f != CLEANUP_FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": left,
            "resourceVersion": pv.metadata.resource_version}});
        if let Err(e) = api
            .patch(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::debug!(volume = %pv.name_any(), error = %e, "releasing the cleanup finalizer");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::Value;

    use super::*;

    #[derive(Default)]
    struct Fake(Mutex<Vec<String>>);

    impl Remover for Fake {
        fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
            self.0.lock().unwrap().push(path.display().to_string());
            Ok(())
        }
    }

    fn pv(deleting: bool, finalizer: bool, node: &str, path: &str) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pvc-1",
            "annotations": {"pv.kubernetes.io/provisioned-by": "keelson.io/local-path"},
            "deletionTimestamp": if deleting { json!("2026-01-01T00:00:00Z") } else { Value::Null },
            "finalizers": if finalizer { json!([CLEANUP_FINALIZER]) } else { json!([]) }},
            "spec": {"hostPath": {"path": path}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                "values": [node]}]}]}}}}))
        .unwrap()
    }

    #[test]
    fn only_deleted_volumes_of_this_node_are_cleaned() {
        let dir = "/var/lib/keelson/storage/pvc-1_ns_data";
        let cases = [
            (pv(true, true, "n1", dir), true),
            (pv(false, true, "n1", dir), false),
            (pv(true, false, "n1", dir), false),
            (pv(true, true, "n2", dir), false),
            (pv(true, true, "n1", "/etc"), false),
        ];
        for (v, want) in cases {
            let fake = Fake::default();
            assert_eq!(clean(&fake, &v, "n1").unwrap(), want, "{v:?}");
            let removed = fake.0.lock().unwrap().clone();
            assert_eq!(removed.is_empty(), !want);
        }
    }
}
