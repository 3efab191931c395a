//! Storage object in-use protection, decided without IO: a claim keeps its
//! `kubernetes.io/pvc-protection` finalizer while a scheduled, unfinished pod uses it, and a
//! volume its `kubernetes.io/pv-protection` finalizer while it is Bound.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};

/// The finalizer on every claim.
pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The finalizer on every volume.
pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

/// What protection does to an object's finalizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finalizer {
    Keep,
    Add,
    Remove,
}

fn has(meta: &kube::api::ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

/// The claims a pod's volumes name (`persistentVolumeClaim.claimName`, and the claims of
/// generic ephemeral volumes, named `<pod>-<volume>`).
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

/// Whether a pod holds a claim: it is on a node, not finished, and names the claim.
pub fn pod_uses(pod: &Pod, namespace: &str, claim: &str) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    scheduled
        && !finished
        && pod.metadata.namespace.as_deref() == Some(namespace)
        && claims_of(pod).iter().any(|c| c == claim)
}

/// The claim's finalizer, given the pods that could use it.
pub fn claim_finalizer<'a>(
    claim: &PersistentVolumeClaim,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Finalizer {
    let present = has(&claim.metadata, PVC_FINALIZER);
    if claim.metadata.deletion_timestamp.is_none() {
        return if present {
            Finalizer::Keep
        } else {
            Finalizer::Add
        };
    }
    if !present {
        return Finalizer::Keep;
    }
    let ns = claim.metadata.namespace.as_deref().unwrap_or("");
    let name = claim.metadata.name.as_deref().unwrap_or("");
    if pods.into_iter().any(|p| pod_uses(p, ns, name)) {
        Finalizer::Keep
    } else {
        Finalizer::Remove
    }
}

/// The volume's finalizer: removed once a deleted volume is no longer Bound.
pub fn volume_finalizer(pv: &PersistentVolume) -> Finalizer {
    let present = has(&pv.metadata, PV_FINALIZER);
    if pv.metadata.deletion_timestamp.is_none() {
        return if present {
            Finalizer::Keep
        } else {
            Finalizer::Add
        };
    }
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if present && !bound {
        Finalizer::Remove
    } else {
        Finalizer::Keep
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pod(node: Option<&str>, phase: &str, volumes: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [{"name": "c"}], "volumes": volumes},
            "status": {"phase": phase}}))
        .expect("pod")
    }

    fn claim(deleting: bool, finalizer: bool) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns",
            "deletionTimestamp": if deleting { json!("2026-01-01T00:00:00Z") } else { Value::Null },
            "finalizers": if finalizer { json!([PVC_FINALIZER]) } else { json!([]) }}}))
        .expect("claim")
    }

    #[test]
    fn claims_in_use_are_kept() {
        let uses = json!([{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]);
        let running = pod(Some("n1"), "Running", uses.clone());
        let done = pod(Some("n1"), "Succeeded", uses.clone());
        let pending = pod(None, "Pending", uses.clone());
        let other = pod(
            Some("n1"),
            "Running",
            json!([{"name": "v", "emptyDir": {}}]),
        );
        let ephemeral = {
            let mut p = pod(
                Some("n1"),
                "Running",
                json!([{"name": "v", "ephemeral": {
                "volumeClaimTemplate": {"spec": {}}}}]),
            );
            p.metadata.name = Some("data".into());
            // The claim of volume "v" of pod "data" is "data-v".
            p
        };
        let cases: Vec<(&str, PersistentVolumeClaim, Vec<&Pod>, Finalizer)> = vec![
            ("new claim", claim(false, false), vec![], Finalizer::Add),
            (
                "live claim",
                claim(false, true),
                vec![&running],
                Finalizer::Keep,
            ),
            (
                "deleted, in use",
                claim(true, true),
                vec![&running],
                Finalizer::Keep,
            ),
            (
                "deleted, user finished",
                claim(true, true),
                vec![&done],
                Finalizer::Remove,
            ),
            (
                "deleted, user not scheduled",
                claim(true, true),
                vec![&pending],
                Finalizer::Remove,
            ),
            (
                "deleted, unrelated pod",
                claim(true, true),
                vec![&other, &ephemeral],
                Finalizer::Remove,
            ),
            (
                "deleted, already released",
                claim(true, false),
                vec![&running],
                Finalizer::Keep,
            ),
        ];
        for (what, c, pods, want) in cases {
            assert_eq!(claim_finalizer(&c, pods), want, "{what}");
        }
        assert_eq!(claims_of(&ephemeral), vec!["data-v".to_string()]);
    }

    #[test]
    fn volumes_are_kept_while_bound() {
        let v = |deleting: bool, phase: &str| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": "v", "finalizers": [PV_FINALIZER],
                "deletionTimestamp": if deleting { json!("2026-01-01T00:00:00Z") } else { Value::Null }},
                "status": {"phase": phase}}))
            .expect("pv")
        };
        assert_eq!(volume_finalizer(&v(false, "Bound")), Finalizer::Keep);
        assert_eq!(volume_finalizer(&v(true, "Bound")), Finalizer::Keep);
        assert_eq!(volume_finalizer(&v(true, "Released")), Finalizer::Remove);
        assert_eq!(volume_finalizer(&v(true, "Available")), Finalizer::Remove);
        let mut bare = v(false, "Available");
        bare.metadata.finalizers = None;
        assert_eq!(volume_finalizer(&bare), Finalizer::Add);
    }
}
