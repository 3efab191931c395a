//! Where a DaemonSet's pods belong, with no IO: which nodes are eligible (nodeSelector,
//! required node affinity, taints against the pod's and the automatic DaemonSet
//! tolerations) and the pod pinned to one node through a `metadata.name` node affinity.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
pub use keelson_kinds::placement::tolerates;

/// The key a DaemonSet pod's node affinity pins it with.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// The tolerations upstream adds to every DaemonSet pod (the last one only with hostNetwork).
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// Whether the template's nodeSelector and required node affinity select `node`.
pub fn selects_node(template: &PodTemplateSpec, node: &Node) -> bool {
    let Some(spec) = template.spec.as_ref() else {
        return false;
    };
    let empty = Default::default();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    keelson_kinds::placement::selects_node(
        spec,
        labels,
        node.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Whether a daemon pod should be placed on `node`, and whether one already there may keep
/// running (an untolerated NoSchedule taint stops new pods only; NoExecute evicts).
pub fn node_should_run(template: &PodTemplateSpec, node: &Node) -> (bool, bool) {
    if !selects_node(template, node) {
        return (false, false);
    }
    let spec = template.spec.clone().unwrap_or_default();
    let mut tolerations = spec.tolerations.unwrap_or_default();
    tolerations.extend(daemon_tolerations(spec.host_network == Some(true)));
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated("NoExecute") {
        return (false, false);
    }
    (!untolerated("NoSchedule"), true)
}

/// The node a daemon pod is on or is pinned to (its nodeName, else its node affinity).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

/// Pins `template` to `node`: its required node affinity becomes one `metadata.name` term
/// (preferred terms stay), and the automatic DaemonSet tolerations are added.
pub fn pin_to_node(template: &PodTemplateSpec, node: &str) -> PodTemplateSpec {
    let mut t = template.clone();
    let spec = t.spec.get_or_insert_default();
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    });
    let tolerations = spec.tolerations.get_or_insert_default();
    for extra in daemon_tolerations(spec.host_network == Some(true)) {
        let present = tolerations.iter().any(|t| {
            t.key == extra.key && t.effect == extra.effect && t.operator == extra.operator
        });
        if !present {
            tolerations.push(extra);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .expect("node")
    }

    fn template(spec: serde_json::Value) -> PodTemplateSpec {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "x"}]);
        serde_json::from_value(json!({"spec": spec})).expect("template")
    }

    fn check(spec: serde_json::Value, n: &Node, want: (bool, bool)) {
        assert_eq!(
            node_should_run(&template(spec.clone()), n),
            want,
            "{spec} on {n:?}"
        );
    }

    #[test]
    fn eligible_nodes() {
        let plain = node("a", json!({"disk": "ssd"}), json!([]));
        let master = node(
            "m",
            json!({}),
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        );
        let broken = node(
            "b",
            json!({}),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        let evicting = node(
            "e",
            json!({}),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
        );
        let cordoned = node(
            "c",
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        check(json!({}), &plain, (true, true));
        check(
            json!({"nodeSelector": {"disk": "ssd"}}),
            &plain,
            (true, true),
        );
        check(
            json!({"nodeSelector": {"disk": "hdd"}}),
            &plain,
            (false, false),
        );
        let affinity = |op: &str| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": op, "values": ["ssd"]}]}]}}}})
        };
        check(affinity("In"), &plain, (true, true));
        check(affinity("NotIn"), &plain, (false, false));
        // An untolerated NoSchedule taint: no new pod, an existing one stays.
        check(json!({}), &master, (false, true));
        let tolerate_master = json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]});
        check(tolerate_master, &master, (true, true));
        // Automatic tolerations cover not-ready and unschedulable nodes.
        check(json!({}), &broken, (true, true));
        check(json!({}), &cordoned, (true, true));
        check(json!({}), &evicting, (false, false));
        check(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}),
            &evicting,
            (true, true),
        );
        check(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "cpu"}]}),
            &evicting,
            (false, false),
        );
    }

    #[test]
    fn pinned_pods_name_their_node() {
        let t = template(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}),
        );
        let pinned = pin_to_node(&t, "node-2");
        let pod = Pod {
            spec: pinned.spec.clone(),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("node-2"));
        let terms = serde_json::to_value(&pinned.spec).expect("json")["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .clone();
        assert_eq!(
            terms,
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-2"]}]}])
        );
        let tolerations = pinned.spec.and_then(|s| s.tolerations).unwrap_or_default();
        assert_eq!(tolerations.len(), 6);
        // The pinned template selects only its node.
        assert!(selects_node(
            &pin_to_node(&t, "node-2"),
            &node("node-2", json!({}), json!([]))
        ));
        assert!(!selects_node(
            &pin_to_node(&t, "node-2"),
            &node("node-3", json!({}), json!([]))
        ));
    }
}
