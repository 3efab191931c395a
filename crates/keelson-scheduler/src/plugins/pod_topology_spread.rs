//! PodTopologySpread: `topologySpreadConstraints` keep the pods a selector matches spread
//! over topology domains. DoNotSchedule constraints filter (skew above maxSkew, minDomains),
//! ScheduleAnyway constraints score (fewer matching pods in the domain is better).
//! nodeAffinityPolicy defaults to Honor and nodeTaintsPolicy to Ignore; matchLabelKeys adds
//! the pod's own values to the selector. Upstream's system default constraints for pods
//! without their own are not applied.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use keelson_kinds::placement;

use crate::framework::{
    ClusterFilterPlugin, ClusterNodes, ClusterScorePlugin, CycleState, MAX_NODE_SCORE, NodeInfo,
    PodInfo, Status,
};
use crate::terms::Selector;

pub struct PodTopologySpread;

const NAME: &str = "PodTopologySpread";

pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";

/// One constraint, its selector parsed.
#[derive(Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    min_domains: i64,
    selector: Selector,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn new(c: &TopologySpreadConstraint, pod: &PodInfo) -> Constraint {
        let mut selector = Selector::new(c.label_selector.as_ref());
        for k in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod.labels().get(k) {
                selector.require(k, v);
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            selector,
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Pods on `node` in the pod's namespace that the selector matches.
    fn count_on(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let ns = pod.namespace();
        node.pods
            .values()
            .filter(|p| {
                p.namespace() == ns
                    && p.pod.metadata.deletion_timestamp.is_none()
                    && self.selector.matches(p.labels())
            })
            .count() as i64
    }

    /// Whether pods on `node` count for this constraint (nodeAffinityPolicy, nodeTaintsPolicy).
    fn includes(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return true;
        };
        if self.honor_affinity && !placement::selects_node(spec, node.labels(), node.name()) {
            return false;
        }
        if self.honor_taints {
            let taints = node.node.spec.as_ref().and_then(|s| s.taints.as_ref());
            let tolerations = spec.tolerations.as_deref().unwrap_or_default();
            let tolerated = taints.into_iter().flatten().all(|t| {
                !matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                    || tolerations.iter().any(|tol| placement::tolerates(tol, t))
            });
            if !tolerated {
                return false;
            }
        }
        true
    }
}

/// The pod's constraints with `whenUnsatisfiable` equal to `when`.
fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint::new(c, pod))
        .collect()
}

fn has_all_keys(node: &NodeInfo, cs: &[Constraint]) -> bool {
    let labels = node.labels();
    cs.iter().all(|c| labels.contains_key(&c.topology_key))
}

/// What PreFilter computes: matching pods per domain of each constraint.
#[derive(Debug)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value → matching pods (every eligible domain present).
    counts: Vec<HashMap<String, i64>>,
}

impl PreFilterState {
    /// The smallest count among the constraint's domains (0 with fewer than minDomains).
    fn min_match(&self, i: usize) -> i64 {
        let counts = &self.counts[i];
        if (counts.len() as i64) < self.constraints[i].min_domains {
            return 0;
        }
        counts
            .values()
            .copied()
            .min()
            .unwrap_or(i64::from(i32::MAX))
    }
}

impl ClusterFilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(
        &self,
        pod: &PodInfo,
        nodes: &dyn ClusterNodes,
        state: &mut CycleState,
    ) -> Status {
        let cs = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            return Status::success();
        }
        let mut counts = vec![HashMap::new(); cs.len()];
        for node in nodes.all_nodes() {
            if !has_all_keys(node, &cs) {
                continue;
            }
            for (c, counts) in cs.iter().zip(counts.iter_mut()) {
                let Some(value) = node.labels().get(&c.topology_key) else {
                    continue;
                };
                if !c.includes(pod, node) {
                    continue;
                }
                let n = c.count_on(pod, node);
                match counts.get_mut(value.as_str()) {
                    Some(count) => *count += n,
                    None => {
                        counts.insert(value.clone(), n);
                    }
                }
            }
        }
        state.write(
            NAME,
            PreFilterState {
                constraints: cs,
                counts,
            },
        );
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<PreFilterState>(NAME) else {
            return Status::success();
        };
        let labels = node.labels();
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_MISSING_LABEL);
            };
            let self_match = i64::from(c.selector.matches(pod.labels()));
            let match_num = st.counts[i].get(value).copied().unwrap_or(0);
            let skew = match_num + self_match - st.min_match(i);
            if skew > c.max_skew {
                return Status::unschedulable(ERR_CONSTRAINTS);
            }
        }
        Status::success()
    }
}

/// What PreScore computes for ScheduleAnyway constraints.
#[derive(Debug)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint (not hostname): domain value → matching pods, over the domains of the
    /// feasible nodes.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: ln(number of domains + 2).
    weights: Vec<f64>,
}

/// The score of a node lacking a constraint's key (normalized to 0).
const IGNORED: i64 = -1;

impl ClusterScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        nodes: &dyn ClusterNodes,
        feasible: &[&NodeInfo],
        state: &mut CycleState,
    ) {
        let cs = constraints(pod, "ScheduleAnyway");
        if cs.is_empty() {
            return;
        }
        let mut counts = vec![HashMap::new(); cs.len()];
        let mut hosts = 0usize;
        for node in feasible.iter().filter(|n| has_all_keys(n, &cs)) {
            hosts += 1;
            for (c, counts) in cs.iter().zip(counts.iter_mut()) {
                if c.topology_key != HOSTNAME {
                    counts.insert(node.labels()[&c.topology_key].clone(), 0);
                }
            }
        }
        for node in nodes.all_nodes() {
            if !has_all_keys(node, &cs) {
                continue;
            }
            for (c, counts) in cs.iter().zip(counts.iter_mut()) {
                if c.topology_key == HOSTNAME || !c.includes(pod, node) {
                    continue;
                }
                if let Some(n) = counts.get_mut(&node.labels()[&c.topology_key]) {
                    *n += c.count_on(pod, node);
                }
            }
        }
        let weights = cs
            .iter()
            .zip(&counts)
            .map(|(c, counts)| {
                let size = if c.topology_key == HOSTNAME {
                    hosts
                } else {
                    counts.len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        state.write(
            NAME,
            PreScoreState {
                constraints: cs,
                counts,
                weights,
            },
        );
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(st) = state.read::<PreScoreState>(NAME) else {
            return 0;
        };
        if !has_all_keys(node, &st.constraints) {
            return IGNORED;
        }
        let mut score = 0.0;
        for (i, c) in st.constraints.iter().enumerate() {
            let count = if c.topology_key == HOSTNAME {
                c.count_on(pod, node)
            } else {
                st.counts[i]
                    .get(&node.labels()[&c.topology_key])
                    .copied()
                    .unwrap_or(0)
            };
            score += count as f64 * st.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Fewer matching pods scores higher: `100 * (max + min - s) / max`, as upstream.
    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.read::<PreScoreState>(NAME).is_none() {
            return;
        }
        let valid = || scores.iter().copied().filter(|s| *s != IGNORED);
        let min = valid().min().unwrap_or(0);
        let max = valid().max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{Cluster, node, pod};

    fn web(name: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}}}))
    }

    fn spreading(constraints: Value, node_selector: Value) -> PodInfo {
        pod(json!({"metadata": {"name": "new", "namespace": "default",
                "labels": {"app": "web", "rev": "2"}},
            "spec": {"topologySpreadConstraints": constraints, "nodeSelector": node_selector}}))
    }

    fn constraint(key: &str, skew: i32, when: &str) -> Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    /// Nodes a, b (zone x), c (zone y), d (zone z, labelled tier=slow), e (no zone).
    fn cluster(existing: &[(&str, usize)]) -> Cluster {
        let mut c = Cluster(
            [
                ("a", json!({"zone": "x"})),
                ("b", json!({"zone": "x"})),
                ("c", json!({"zone": "y"})),
                ("d", json!({"zone": "z", "tier": "slow"})),
                ("e", json!({})),
            ]
            .into_iter()
            .map(|(n, mut l)| {
                l["kubernetes.io/hostname"] = n.into();
                node(json!({"metadata": {"name": n, "labels": l}}))
            })
            .collect(),
        );
        let mut i = 0;
        for (n, count) in existing {
            for _ in 0..*count {
                c.add(n, web(&format!("w{i}")));
                i += 1;
            }
        }
        c
    }

    fn filter_all(c: &Cluster, p: &PodInfo) -> Vec<&'static str> {
        let mut state = CycleState::default();
        assert!(PodTopologySpread.pre_filter(p, c, &mut state).is_success());
        c.0.iter()
            .map(|n| {
                let s = PodTopologySpread.filter(&state, p, n);
                match s.reasons.first().map(String::as_str) {
                    None => "",
                    Some(ERR_CONSTRAINTS) => "skew",
                    Some(ERR_MISSING_LABEL) => "label",
                    Some(other) => panic!("unexpected reason {other}"),
                }
            })
            .collect()
    }

    #[test]
    fn do_not_schedule_filters_by_skew() {
        type Case<'a> = (&'a str, Vec<(&'a str, usize)>, Value, Value, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "empty cluster: every zone fits",
                vec![],
                json!([constraint("zone", 1, "DoNotSchedule")]),
                json!(null),
                vec!["", "", "", "", "label"],
            ),
            (
                "zone x has one: the others are preferred",
                vec![("a", 1)],
                json!([constraint("zone", 1, "DoNotSchedule")]),
                json!(null),
                vec!["skew", "skew", "", "", "label"],
            ),
            (
                "maxSkew 2 allows a second pod in x",
                vec![("a", 1)],
                json!([constraint("zone", 2, "DoNotSchedule")]),
                json!(null),
                vec!["", "", "", "", "label"],
            ),
            (
                "nodeAffinityPolicy Honor drops zone z from the minimum",
                vec![("a", 1), ("c", 1)],
                json!([constraint("zone", 1, "DoNotSchedule")]),
                json!({"zone": "x"}),
                vec!["", "", "", "", "label"],
            ),
            (
                "by hostname",
                vec![("a", 1), ("b", 1), ("c", 1)],
                json!([constraint("kubernetes.io/hostname", 1, "DoNotSchedule")]),
                json!(null),
                vec!["skew", "skew", "skew", "", ""],
            ),
            (
                "minDomains above the domain count makes the minimum 0",
                vec![("a", 1), ("c", 1), ("d", 1)],
                json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                    "minDomains": 4, "labelSelector": {"matchLabels": {"app": "web"}}}]),
                json!(null),
                vec!["skew", "skew", "skew", "skew", "label"],
            ),
            (
                "matchLabelKeys narrows to the pod's own revision",
                vec![("a", 2)],
                json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                    "matchLabelKeys": ["rev"], "labelSelector": {"matchLabels": {"app": "web"}}}]),
                json!(null),
                vec!["", "", "", "", "label"],
            ),
        ];
        for (name, existing, cs, sel, want) in cases {
            let c = cluster(&existing);
            assert_eq!(filter_all(&c, &spreading(cs, sel)), want, "{name}");
        }
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_higher() {
        let c = cluster(&[("a", 2), ("c", 1)]);
        let p = spreading(
            json!([constraint("zone", 1, "ScheduleAnyway")]),
            json!(null),
        );
        let mut state = CycleState::default();
        assert!(
            PodTopologySpread
                .pre_filter(&p, &c, &mut state)
                .is_success()
        );
        assert!(state.read::<PreFilterState>(NAME).is_none(), "no filter");
        let nodes: Vec<&NodeInfo> = c.0.iter().collect();
        PodTopologySpread.pre_score(&p, &c, &nodes, &mut state);
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| PodTopologySpread.score(&state, &p, n))
            .collect();
        // 3 zones: weight ln(5) ≈ 1.609; x: 2 → 3, y: 1 → 2, z: 0 → 0; e lacks the key.
        assert_eq!(scores, vec![3, 3, 2, 0, IGNORED]);
        PodTopologySpread.normalize(&state, &mut scores);
        assert_eq!(scores, vec![0, 0, 33, 100, 0]);
    }

    #[test]
    fn pods_without_constraints_skip() {
        let c = cluster(&[("a", 1)]);
        let p = web("plain");
        let mut state = CycleState::default();
        assert!(
            PodTopologySpread
                .pre_filter(&p, &c, &mut state)
                .is_success()
        );
        PodTopologySpread.pre_score(&p, &c, &[], &mut state);
        assert!(state.read::<PreFilterState>(NAME).is_none());
        assert!(state.read::<PreScoreState>(NAME).is_none());
    }
}
