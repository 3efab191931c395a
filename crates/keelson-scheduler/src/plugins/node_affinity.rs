//! NodeAffinity (with NodeSelector): `spec.nodeSelector` and the required node affinity
//! decide which nodes a pod may use; preferred terms add to a node's score.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status, default_normalize};

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

/// Whether one requirement holds for a value (`None` when the label is absent).
fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(as_int),
                values.first().and_then(|s| as_int(s)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a term matches: all its expressions over labels and fields; an empty term
/// matches nothing.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let v = (r.key == "metadata.name").then_some(name);
            r.key == "metadata.name" && requirement_matches(r, v)
        })
}

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let empty = BTreeMap::new();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = &pod.pod.spec else {
        return true;
    };
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, node.name())),
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        if required_matches(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    /// The sum of the weights of the preferred terms the node matches.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let empty = BTreeMap::new();
        let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
        let preferred = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default();
        preferred
            .iter()
            .filter(|p| term_matches(&p.preference, labels, node.name()))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn check(spec: Value, fits: bool) {
        let p = pod(json!({"spec": spec}));
        let n = node(json!({"metadata": {"name": "sim-1", "labels": {
            "kubernetes.io/hostname": "sim-1", "zone": "a", "cores": "8"}}}));
        let s = NodeAffinity.filter(&p, &n);
        assert_eq!(s.is_success(), fits, "{spec}");
        if !fits {
            assert_eq!(s.reasons, vec![REASON.to_string()]);
        }
    }

    fn required(exprs: Value) -> Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}})
    }

    #[test]
    fn node_selector_and_required_affinity() {
        check(json!({}), true);
        check(
            json!({"nodeSelector": {"kubernetes.io/hostname": "sim-1"}}),
            true,
        );
        check(
            json!({"nodeSelector": {"kubernetes.io/hostname": "sim-0"}}),
            false,
        );
        check(json!({"nodeSelector": {"missing": "x"}}), false);
        check(
            required(json!([{"key": "zone", "operator": "In", "values": ["a", "b"]}])),
            true,
        );
        check(
            required(json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}])),
            false,
        );
        check(
            required(json!([{"key": "gpu", "operator": "NotIn", "values": ["a"]}])),
            true,
        );
        check(
            required(json!([{"key": "zone", "operator": "Exists"}])),
            true,
        );
        check(
            required(json!([{"key": "zone", "operator": "DoesNotExist"}])),
            false,
        );
        check(
            required(json!([{"key": "cores", "operator": "Gt", "values": ["4"]}])),
            true,
        );
        check(
            required(json!([{"key": "cores", "operator": "Lt", "values": ["4"]}])),
            false,
        );
        check(required(json!([])), false);
        check(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["sim-1"]}]},
            ]}}}}),
            true,
        );
    }

    #[test]
    fn preferred_terms_score() {
        let p = pod(json!({"spec": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}},
        ]}}}}));
        let a = node(json!({"metadata": {"labels": {"zone": "a"}}}));
        let b = node(json!({"metadata": {"labels": {"zone": "a", "ssd": "1"}}}));
        let c = node(json!({}));
        let mut scores: Vec<i64> = [&a, &b, &c]
            .iter()
            .map(|n| NodeAffinity.score(&p, n))
            .collect();
        assert_eq!(scores, vec![10, 40, 0]);
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![25, 100, 0]);
    }
}
