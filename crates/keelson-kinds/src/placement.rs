//! Which nodes a pod spec may run on, as upstream decides it: `nodeSelector`, required node
//! affinity terms (labels and the `metadata.name` field) and taint tolerations. Shared by the
//! scheduler and the DaemonSet controller, so both place pods by the same rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Whether one requirement holds for a value (`None`: the label or field is absent).
pub fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), Some(bound)) = (
                value.and_then(as_int),
                values.first().and_then(|b| as_int(b)),
            ) else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// Whether a term matches a node: all its label expressions and all its field expressions
/// (only `metadata.name` exists); an empty term matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node_name)))
}

/// Whether a pod spec's nodeSelector and required node affinity select a node.
pub fn selects_node(spec: &PodSpec, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| {
        r.node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, node_name))
    })
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        // An empty key with Equal matches nothing (validation forbids it).
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(spec: serde_json::Value, labels: &[(&str, &str)], want: bool) {
        let spec: PodSpec = serde_json::from_value(spec).unwrap();
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(selects_node(&spec, &labels, "node-a"), want);
    }

    fn affinity(terms: serde_json::Value) -> serde_json::Value {
        json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}})
    }

    #[test]
    fn node_selection() {
        check(json!({"containers": []}), &[], true);
        check(
            json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
            &[("disk", "ssd")],
            true,
        );
        check(
            json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
            &[("disk", "hdd")],
            false,
        );
        check(
            affinity(
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]),
            ),
            &[("zone", "b")],
            true,
        );
        check(
            affinity(
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]),
            ),
            &[],
            true,
        );
        check(
            affinity(
                json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]),
            ),
            &[("cores", "8")],
            true,
        );
        check(
            affinity(
                json!([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}]),
            ),
            &[("cores", "8")],
            false,
        );
        check(
            affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]),
            ),
            &[],
            true,
        );
        check(
            affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-b"]}]}]),
            ),
            &[],
            false,
        );
        check(affinity(json!([{}])), &[], false);
        check(
            affinity(json!([{}, {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}])),
            &[],
            true,
        );
    }

    #[test]
    fn tolerations() {
        let taint = |key: &str, value: &str, effect: &str| Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &tol(json!({"key": "dedicated", "operator": "Equal", "value": "gpu"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "value": "cpu"})),
            &t
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"operator": "Equal", "value": "gpu"})),
            &t
        ));
    }
}
