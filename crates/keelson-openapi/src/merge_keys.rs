//! The strategic-merge-patch markers (`x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`) that the API reference documents for list fields but the
//! k8s-openapi schemas do not carry; added to the generated component schemas.

use serde_json::{Map, Value};

/// One list field and how a strategic merge patch combines it.
struct ListPatch {
    /// Component schema name, e.g. `io.k8s.api.core.v1.PodSpec`.
    schema: &'static str,
    /// Property of that schema.
    field: &'static str,
    /// The key identifying list items; `None` for lists of scalars merged as sets.
    merge_key: Option<&'static str>,
    strategy: &'static str,
}

const fn merged(schema: &'static str, field: &'static str, key: &'static str) -> ListPatch {
    ListPatch {
        schema,
        field,
        merge_key: Some(key),
        strategy: "merge",
    }
}

const fn retained(schema: &'static str, field: &'static str, key: &'static str) -> ListPatch {
    ListPatch {
        schema,
        field,
        merge_key: Some(key),
        strategy: "merge,retainKeys",
    }
}

const fn scalar_set(schema: &'static str, field: &'static str) -> ListPatch {
    ListPatch {
        schema,
        field,
        merge_key: None,
        strategy: "merge",
    }
}

const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const POD_STATUS: &str = "io.k8s.api.core.v1.PodStatus";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const EPHEMERAL: &str = "io.k8s.api.core.v1.EphemeralContainer";
const NODE_STATUS: &str = "io.k8s.api.core.v1.NodeStatus";

const TABLE: &[ListPatch] = &[
    merged(POD_SPEC, "containers", "name"),
    merged(POD_SPEC, "initContainers", "name"),
    merged(POD_SPEC, "ephemeralContainers", "name"),
    retained(POD_SPEC, "volumes", "name"),
    merged(POD_SPEC, "imagePullSecrets", "name"),
    merged(POD_SPEC, "hostAliases", "ip"),
    merged(POD_SPEC, "topologySpreadConstraints", "topologyKey"),
    retained(POD_SPEC, "resourceClaims", "name"),
    merged(POD_SPEC, "schedulingGates", "name"),
    merged(POD_STATUS, "conditions", "type"),
    merged(POD_STATUS, "podIPs", "ip"),
    merged(POD_STATUS, "hostIPs", "ip"),
    retained(POD_STATUS, "resourceClaimStatuses", "name"),
    merged(CONTAINER, "ports", "containerPort"),
    merged(CONTAINER, "env", "name"),
    merged(CONTAINER, "volumeMounts", "mountPath"),
    merged(CONTAINER, "volumeDevices", "devicePath"),
    merged(EPHEMERAL, "ports", "containerPort"),
    merged(EPHEMERAL, "env", "name"),
    merged(EPHEMERAL, "volumeMounts", "mountPath"),
    merged(EPHEMERAL, "volumeDevices", "devicePath"),
    merged("io.k8s.api.core.v1.ServiceSpec", "ports", "port"),
    merged("io.k8s.api.core.v1.ServiceStatus", "conditions", "type"),
    merged("io.k8s.api.core.v1.ServiceAccount", "secrets", "name"),
    scalar_set("io.k8s.api.core.v1.NodeSpec", "podCIDRs"),
    merged(NODE_STATUS, "conditions", "type"),
    merged(NODE_STATUS, "addresses", "type"),
    merged("io.k8s.api.core.v1.NamespaceStatus", "conditions", "type"),
    merged(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "type",
    ),
    merged(
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "type",
    ),
    merged(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
    ),
    scalar_set(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
    ),
    merged("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type"),
    merged("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type"),
    merged("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "type"),
    merged("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type"),
    merged("io.k8s.api.batch.v1.JobStatus", "conditions", "type"),
    merged(
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "type",
    ),
    merged(
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "type",
    ),
];

/// Marks the list fields of the table that are present in `schemas`; schemas or fields a
/// document does not contain are skipped.
pub(crate) fn apply(schemas: &mut Map<String, Value>) {
    for entry in TABLE {
        let Some(property) = schemas
            .get_mut(entry.schema)
            .and_then(|schema| schema.get_mut("properties"))
            .and_then(|properties| properties.get_mut(entry.field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if let Some(key) = entry.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        property.insert("x-kubernetes-patch-strategy".into(), entry.strategy.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marks_known_fields_and_skips_absent_ones() {
        let mut schemas = json!({
            POD_SPEC: {"properties": {"containers": {"type": "array"}, "volumes": {"type": "array"}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {"finalizers": {"type": "array"}}},
        });
        let Value::Object(map) = &mut schemas else {
            unreachable!("literal is an object")
        };
        apply(map);
        let check = |pointer: &str, want: Option<&str>| {
            assert_eq!(
                schemas.pointer(pointer).and_then(Value::as_str),
                want,
                "{pointer}"
            );
        };
        let spec = "/io.k8s.api.core.v1.PodSpec/properties";
        check(
            &format!("{spec}/containers/x-kubernetes-patch-merge-key"),
            Some("name"),
        );
        check(
            &format!("{spec}/containers/x-kubernetes-patch-strategy"),
            Some("merge"),
        );
        check(
            &format!("{spec}/volumes/x-kubernetes-patch-strategy"),
            Some("merge,retainKeys"),
        );
        let meta = "/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta/properties/finalizers";
        check(
            &format!("{meta}/x-kubernetes-patch-strategy"),
            Some("merge"),
        );
        check(&format!("{meta}/x-kubernetes-patch-merge-key"), None);
        assert!(schemas.pointer(&format!("{spec}/initContainers")).is_none());
    }
}
