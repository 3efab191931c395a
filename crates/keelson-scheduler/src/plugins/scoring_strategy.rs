//! NodeResourcesFit's scoring strategies as upstream names them: LeastAllocated (the default,
//! spreading), MostAllocated (bin packing) and RequestedToCapacityRatio (a piecewise linear
//! shape over utilization), each with per-resource weights.

use crate::framework::{MAX_NODE_SCORE, NodeInfo, PodInfo, ScorePlugin};

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

/// The resources scored with their weights, in order (upstream's `scoringStrategy.resources`;
/// default: cpu 1, memory 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceWeights(pub Vec<(String, i64)>);

impl Default for ResourceWeights {
    fn default() -> Self {
        ResourceWeights(vec![("cpu".into(), 1), ("memory".into(), 1)])
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

    /// The strategy with the resources it scores.
    pub fn with_weights(strategy: ScoringStrategy, weights: ResourceWeights) -> Self {
        NodeResourcesFitScore { strategy, weights }
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

    /// What the node would have requested with the pod, and its allocatable, of one resource;
    /// `None` when the resource is not scored on this node (none allocatable, or an extended
    /// resource the pod does not ask for), as upstream.
    fn requested_and_allocatable(name: &str, pod: &PodInfo, node: &NodeInfo) -> Option<(i64, i64)> {
        let (used, want, alloc) = match name {
            "cpu" => (
                node.non_zero_requested.milli_cpu,
                pod.non_zero_requests.milli_cpu,
                node.allocatable.milli_cpu,
            ),
            "memory" => (
                node.non_zero_requested.memory,
                pod.non_zero_requests.memory,
                node.allocatable.memory,
            ),
            "ephemeral-storage" => (
                node.requested.ephemeral_storage,
                pod.requests.ephemeral_storage,
                node.allocatable.ephemeral_storage,
            ),
            other => {
                let want = pod.requests.scalar.get(other).copied().unwrap_or(0);
                if want == 0 {
                    return None;
                }
                (
                    node.requested.scalar.get(other).copied().unwrap_or(0),
                    want,
                    node.allocatable.scalar.get(other).copied().unwrap_or(0),
                )
            }
        };
        (alloc > 0).then_some((used + want, alloc))
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

    /// The weighted mean of the strategy's score over the scored resources (cpu and memory
    /// with non-zero requests); RequestedToCapacityRatio leaves out resources scoring 0 and
    /// rounds, as upstream.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let ratio = matches!(self.strategy, ScoringStrategy::RequestedToCapacityRatio(_));
        let (mut total, mut weights) = (0, 0);
        for (name, weight) in &self.weights.0 {
            let Some((requested, alloc)) = Self::requested_and_allocatable(name, pod, node) else {
                continue;
            };
            let score = self.one(requested, alloc);
            if ratio && score <= 0 {
                continue;
            }
            total += score * weight;
            weights += weight;
        }
        if weights == 0 {
            return 0;
        }
        if ratio {
            (total + weights / 2) / weights
        } else {
            total / weights
        }
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
    fn resource_weights_choose_what_counts() {
        let mut n = node(json!({"status": {"allocatable": {
            "cpu": "4", "memory": "4Gi", "pods": "110", "example.com/gpu": "4"}}}));
        n.add_pod(requesting("e", json!({"cpu": "3", "memory": "1Gi"})));
        let p = requesting("new", json!({"cpu": "1", "memory": "1Gi"}));
        let most = |weights: Vec<(&str, i64)>| {
            let weights = weights
                .into_iter()
                .map(|(n, w)| (n.to_string(), w))
                .collect();
            NodeResourcesFitScore::with_weights(
                ScoringStrategy::MostAllocated,
                ResourceWeights(weights),
            )
            .score(&p, &n)
        };
        // cpu 4/4 → 100, memory 2/4 → 50.
        assert_eq!(most(vec![("cpu", 1), ("memory", 1)]), 75);
        assert_eq!(most(vec![("cpu", 3), ("memory", 1)]), 87);
        assert_eq!(most(vec![("memory", 1)]), 50);
        // An extended resource the pod does not ask for is not scored.
        assert_eq!(most(vec![("memory", 1), ("example.com/gpu", 5)]), 50);
        assert_eq!(most(vec![("example.com/gpu", 1)]), 0);
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
