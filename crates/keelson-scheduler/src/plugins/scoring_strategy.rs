//! NodeResourcesFit's scoring strategies as upstream names them: LeastAllocated (the default,
//! spreading), MostAllocated (bin packing) and RequestedToCapacityRatio (a piecewise linear
//! shape over utilization), each with per-resource weights.

use crate::framework::{MAX_NODE_SCORE, NodeInfo, PodInfo, ScorePlugin};
use crate::resources::Resources;

/// A point of the RequestedToCapacityRatio shape: utilization 0..=100 → score 0..=10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapePoint {
    pub utilization: i64,
    pub score: i64,
}

/// How NodeResourcesFit scores a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScoringStrategy {
    LeastAllocated,
    MostAllocated,
    /// The shape's points in increasing utilization.
    RequestedToCapacityRatio(Vec<ShapePoint>),
}

/// The resources scored with their weights (upstream's default: cpu 1, memory 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceWeights {
    pub cpu: i64,
    pub memory: i64,
}

impl Default for ResourceWeights {
    fn default() -> Self {
        ResourceWeights { cpu: 1, memory: 1 }
    }
}

/// NodeResourcesFit's Score with a chosen strategy.
pub struct NodeResourcesFitScore {
    pub strategy: ScoringStrategy,
    pub weights: ResourceWeights,
}

impl NodeResourcesFitScore {
    pub fn new(strategy: ScoringStrategy) -> NodeResourcesFitScore {
        NodeResourcesFitScore {
            strategy,
            weights: ResourceWeights::default(),
        }
    }

    fn one(&self, requested: i64, capacity: i64) -> i64 {
        match &self.strategy {
            ScoringStrategy::LeastAllocated => {
                if capacity <= 0 || requested > capacity {
                    0
                } else {
                    (capacity - requested) * MAX_NODE_SCORE / capacity
                }
            }
            ScoringStrategy::MostAllocated => {
                if capacity <= 0 {
                    0
                } else {
                    requested.min(capacity) * MAX_NODE_SCORE / capacity
                }
            }
            ScoringStrategy::RequestedToCapacityRatio(shape) => {
                if capacity <= 0 {
                    return 0;
                }
                let utilization = requested.min(capacity) * 100 / capacity;
                // Scores are scaled to 0..=100 before interpolating, as upstream.
                let scaled: Vec<ShapePoint> = shape
                    .iter()
                    .map(|p| ShapePoint {
                        utilization: p.utilization,
                        score: p.score * MAX_NODE_SCORE / 10,
                    })
                    .collect();
                shape_score(&scaled, utilization)
            }
        }
    }
}

/// Piecewise linear interpolation of the shape at `utilization`.
fn shape_score(shape: &[ShapePoint], utilization: i64) -> i64 {
    let (Some(first), Some(last)) = (shape.first(), shape.last()) else {
        return 0;
    };
    if utilization <= first.utilization {
        return first.score;
    }
    for w in shape.windows(2) {
        let (a, b) = (w[0], w[1]);
        if utilization <= b.utilization {
            let span = b.utilization - a.utilization;
            if span == 0 {
                return b.score;
            }
            return a.score + (b.score - a.score) * (utilization - a.utilization) / span;
        }
    }
    last.score
}

impl ScorePlugin for NodeResourcesFitScore {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// The weighted mean of the strategy's score for cpu and memory, with non-zero requests.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let used: &Resources = &node.non_zero_requested;
        let want = &pod.non_zero_requests;
        let alloc = &node.allocatable;
        let cpu = self.one(used.milli_cpu + want.milli_cpu, alloc.milli_cpu);
        let mem = self.one(used.memory + want.memory, alloc.memory);
        let total = self.weights.cpu + self.weights.memory;
        if total == 0 {
            return 0;
        }
        (cpu * self.weights.cpu + mem * self.weights.memory) / total
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
    fn strategies_score_a_half_full_node() {
        let mut n = node(json!({"status": {"allocatable": {
            "cpu": "4", "memory": "4Gi", "pods": "110"}}}));
        n.add_pod(requesting("e", json!({"cpu": "1", "memory": "1Gi"})));
        let p = requesting("new", json!({"cpu": "2", "memory": "2Gi"}));
        // With the pod: cpu 3/4, memory 3/4 (75 % used).
        let shape = vec![
            ShapePoint {
                utilization: 0,
                score: 10,
            },
            ShapePoint {
                utilization: 100,
                score: 0,
            },
        ];
        for (strategy, want) in [
            (ScoringStrategy::LeastAllocated, 25),
            (ScoringStrategy::MostAllocated, 75),
            (ScoringStrategy::RequestedToCapacityRatio(shape), 25),
        ] {
            assert_eq!(
                NodeResourcesFitScore::new(strategy.clone()).score(&p, &n),
                want,
                "{strategy:?}"
            );
        }
    }

    #[test]
    fn shape_interpolates() {
        let shape = [
            ShapePoint {
                utilization: 0,
                score: 0,
            },
            ShapePoint {
                utilization: 50,
                score: 10,
            },
            ShapePoint {
                utilization: 100,
                score: 0,
            },
        ];
        let got: Vec<i64> = [0, 25, 50, 75, 100, 120]
            .iter()
            .map(|u| shape_score(&shape, *u))
            .collect();
        assert_eq!(got, vec![0, 5, 10, 5, 0, 0]);
    }
}
