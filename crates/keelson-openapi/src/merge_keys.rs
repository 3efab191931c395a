//! The strategic-merge-patch markers (`x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`) and the associative-list markers (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`) that the API reference documents for list fields but the
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

/// Associative lists (`x-kubernetes-list-type: map`) and their `x-kubernetes-list-map-keys`, as
/// upstream's schemas declare them: the keys server-side apply identifies list items by. A
/// port is its number and its protocol, unlike the strategic merge key.
const LIST_MAP_KEYS: &[(&str, &str, &[&str])] = &[
    (POD_SPEC, "containers", &["name"]),
    (POD_SPEC, "initContainers", &["name"]),
    (POD_SPEC, "ephemeralContainers", &["name"]),
    (POD_SPEC, "volumes", &["name"]),
    (POD_SPEC, "imagePullSecrets", &["name"]),
    (POD_SPEC, "hostAliases", &["ip"]),
    (POD_SPEC, "resourceClaims", &["name"]),
    (POD_STATUS, "conditions", &["type"]),
    (CONTAINER, "ports", &["containerPort", "protocol"]),
    (CONTAINER, "env", &["name"]),
    (CONTAINER, "volumeMounts", &["mountPath"]),
    (CONTAINER, "volumeDevices", &["devicePath"]),
    (EPHEMERAL, "ports", &["containerPort", "protocol"]),
    (EPHEMERAL, "env", &["name"]),
    (EPHEMERAL, "volumeMounts", &["mountPath"]),
    (EPHEMERAL, "volumeDevices", &["devicePath"]),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        &["port", "protocol"],
    ),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", &["type"]),
    (NODE_STATUS, "conditions", &["type"]),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        &["type"],
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        &["type"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        &["uid"],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        &["type"],
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        &["type"],
    ),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", &["type"]),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        &["type"],
    ),
];

/// The `x-kubernetes-list-map-keys` the schemas declare for list fields named `field`, one
/// set per distinct declaration (e.g. `ports`: a container's and a Service's).
pub fn list_map_keys(field: &str) -> Vec<&'static [&'static str]> {
    let mut out: Vec<&'static [&'static str]> = Vec::new();
    for (_, f, keys) in LIST_MAP_KEYS {
        if *f == field && !out.contains(keys) {
            out.push(keys);
        }
    }
    out
}

/// Marks the list fields of the tables that are present in `schemas`; schemas or fields a
/// document does not contain are skipped.
pub(crate) fn apply(schemas: &mut Map<String, Value>) {
    for (schema, field, keys) in LIST_MAP_KEYS {
        if let Some(property) = schemas
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
            .and_then(Value::as_object_mut)
        {
            property.insert("x-kubernetes-list-type".into(), "map".into());
            property.insert("x-kubernetes-list-map-keys".into(), (*keys).into());
        }
    }
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

    #[test]
    fn ports_are_keyed_by_number_and_protocol() {
        let mut schemas = json!({CONTAINER: {"properties": {"ports": {"type": "array"}}}});
        let Value::Object(map) = &mut schemas else {
            unreachable!("literal is an object")
        };
        apply(map);
        let ports = &schemas[CONTAINER]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-list-type"], "map");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let sets = list_map_keys("ports");
        assert_eq!(
            sets,
            vec![
                &["containerPort", "protocol"][..],
                &["port", "protocol"][..]
            ]
        );
        assert!(list_map_keys("command").is_empty());
    }
}
