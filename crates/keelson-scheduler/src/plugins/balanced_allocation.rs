//! NodeResourcesBalancedAllocation: prefers nodes whose CPU and memory would be used in
//! similar shares after placing the pod (`(1 - std) * 100` over the requested fractions).

use crate::framework::{MAX_NODE_SCORE, NodeInfo, PodInfo, ScorePlugin};

pub struct NodeResourcesBalancedAllocation;

/// The requested share of one resource, capped at 1.
fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity <= 0 {
        return 1.0;
    }
    (requested as f64 / capacity as f64).min(1.0)
}

impl ScorePlugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let used = &node.requested;
        let want = &pod.requests;
        let alloc = &node.allocatable;
        let cpu = fraction(used.milli_cpu + want.milli_cpu, alloc.milli_cpu);
        let mem = fraction(used.memory + want.memory, alloc.memory);
        // The standard deviation of two values is half their distance.
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn requesting(name: &str, requests: Value) -> PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]}}))
    }

    #[test]
    fn balanced_nodes_score_higher() {
        let with = |existing: Value| {
            let mut n = node(json!({"status": {"allocatable": {
                "cpu": "4", "memory": "4Gi", "pods": "110"}}}));
            n.add_pod(requesting("e", existing));
            n
        };
        let p = requesting("new", json!({"cpu": "1", "memory": "1Gi"}));
        for (existing, want) in [
            // cpu 2/4, memory 2/4: perfectly balanced.
            (json!({"cpu": "1", "memory": "1Gi"}), 100),
            // cpu 4/4, memory 1/4: std 0.375.
            (json!({"cpu": "3"}), 62),
            // cpu 1/4, memory 4/4.
            (json!({"memory": "3Gi"}), 62),
            // over capacity caps at 1: cpu 1, memory 1/4.
            (json!({"cpu": "8"}), 62),
        ] {
            assert_eq!(
                NodeResourcesBalancedAllocation.score(&p, &with(existing.clone())),
                want,
                "{existing}"
            );
        }
    }
}
