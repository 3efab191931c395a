//! NodeAffinity (with NodeSelector): `spec.nodeSelector` and the required node affinity
//! decide which nodes a pod may use; preferred terms add to a node's score.

use std::collections::BTreeMap;

use keelson_kinds::placement::{selects_node, term_matches};

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status, default_normalize};

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let empty = BTreeMap::new();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    pod.pod
        .spec
        .as_ref()
        .is_none_or(|spec| selects_node(spec, labels, node.name()))
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
