//! InterPodAffinity: required pod affinity and anti-affinity (Filter), existing pods'
//! anti-affinity toward the incoming pod, and preferred terms (Score), all by topology domain
//! (`topologyKey` over node labels). PreFilter and PreScore count matching pods per
//! (key, value) once per cycle; Filter and Score then only look the node's labels up.

use std::collections::HashMap;

use crate::framework::{
    ClusterFilterPlugin, ClusterNodes, ClusterScorePlugin, CycleState, MAX_NODE_SCORE, NodeInfo,
    PodInfo, Status,
};
use crate::terms::{AffinityTerms, Term};

pub struct InterPodAffinity;

const NAME: &str = "InterPodAffinity";

pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's `hardPodAffinityWeight`: what an existing pod's required affinity toward the
/// incoming pod adds to the score of its domain.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Counts (or weights) per topology key, then per value.
#[derive(Debug, Default)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, key: &str, node: &NodeInfo, n: i64) {
        let Some(v) = node.labels().get(key) else {
            return;
        };
        // Allocates only for a key or value not seen before in this cycle.
        if !self.0.contains_key(key) {
            self.0.insert(key.to_string(), HashMap::new());
        }
        let Some(values) = self.0.get_mut(key) else {
            return;
        };
        match values.get_mut(v.as_str()) {
            Some(count) => *count += n,
            None => {
                values.insert(v.clone(), n);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// Whether some (key, value) of the node's labels has a positive count.
    fn any_positive_on(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.0.iter().any(|(k, values)| {
            labels
                .get(k)
                .and_then(|v| values.get(v))
                .is_some_and(|n| *n > 0)
        })
    }

    /// Sum over the node's labels.
    fn sum_on(&self, node: &NodeInfo) -> i64 {
        let labels = node.labels();
        self.0
            .iter()
            .filter_map(|(k, values)| labels.get(k).and_then(|v| values.get(v)))
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.0.values().all(|m| m.is_empty())
    }
}

/// What PreFilter computes for one pod.
#[derive(Debug, Default)]
struct PreFilterState {
    /// Pods matching all the incoming pod's required affinity terms, per domain.
    affinity_counts: TopologyCounts,
    /// Pods matching one of the incoming pod's required anti-affinity terms, per domain.
    anti_affinity_counts: TopologyCounts,
    /// Existing pods whose required anti-affinity matches the incoming pod, per domain.
    existing_anti_affinity_counts: TopologyCounts,
    /// The incoming pod matches all its own affinity terms (it may be the first of a group).
    matches_own_affinity: bool,
}

fn matches(term: &Term, pod: &PodInfo) -> bool {
    term.matches(pod.namespace(), pod.labels())
}

fn terms(pod: &PodInfo) -> &AffinityTerms {
    static EMPTY: std::sync::OnceLock<AffinityTerms> = std::sync::OnceLock::new();
    pod.affinity
        .as_deref()
        .unwrap_or_else(|| EMPTY.get_or_init(AffinityTerms::default))
}

impl ClusterFilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(
        &self,
        pod: &PodInfo,
        nodes: &dyn ClusterNodes,
        state: &mut CycleState,
    ) -> Status {
        let own = terms(pod);
        let has_own = !own.required_affinity.is_empty() || !own.required_anti_affinity.is_empty();
        if !has_own && nodes.num_pods_with_required_anti_affinity() == 0 {
            return Status::success();
        }
        let mut st = PreFilterState {
            matches_own_affinity: own.required_affinity.iter().all(|t| matches(t, pod)),
            ..PreFilterState::default()
        };
        for node in nodes.all_nodes() {
            if node.pods_with_required_anti_affinity > 0 {
                for existing in node.pods.values().filter(|p| p.has_required_anti_affinity) {
                    for t in &terms(existing).required_anti_affinity {
                        if matches(t, pod) {
                            st.existing_anti_affinity_counts
                                .add(&t.topology_key, node, 1);
                        }
                    }
                }
            }
            if !has_own {
                continue;
            }
            for existing in node.pods.values() {
                if !own.required_affinity.is_empty()
                    && own.required_affinity.iter().all(|t| matches(t, existing))
                {
                    for t in &own.required_affinity {
                        st.affinity_counts.add(&t.topology_key, node, 1);
                    }
                }
                for t in &own.required_anti_affinity {
                    if matches(t, existing) {
                        st.anti_affinity_counts.add(&t.topology_key, node, 1);
                    }
                }
            }
        }
        state.write(NAME, st);
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<PreFilterState>(NAME) else {
            return Status::success();
        };
        let own = terms(pod);
        if !own.required_affinity.is_empty() {
            let labels = node.labels();
            let mut pods_exist = true;
            for t in &own.required_affinity {
                match labels.get(&t.topology_key) {
                    None => return Status::unresolvable(ERR_AFFINITY),
                    Some(v) => {
                        if st.affinity_counts.get(&t.topology_key, v) <= 0 {
                            pods_exist = false;
                        }
                    }
                }
            }
            // The first pod of a group with affinity to itself may go anywhere.
            let first_of_group = st.affinity_counts.is_empty() && st.matches_own_affinity;
            if !pods_exist && !first_of_group {
                return Status::unresolvable(ERR_AFFINITY);
            }
        }
        if st.anti_affinity_counts.any_positive_on(node) {
            return Status::unschedulable(ERR_ANTI_AFFINITY);
        }
        if st.existing_anti_affinity_counts.any_positive_on(node) {
            return Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

/// What PreScore computes: the score of each domain.
#[derive(Debug, Default)]
struct PreScoreState(TopologyCounts);

impl ClusterScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        nodes: &dyn ClusterNodes,
        _feasible: &[&NodeInfo],
        state: &mut CycleState,
    ) {
        let own = terms(pod);
        let has_preferred =
            !own.preferred_affinity.is_empty() || !own.preferred_anti_affinity.is_empty();
        if !has_preferred && nodes.num_pods_with_affinity() == 0 {
            return;
        }
        let mut scores = TopologyCounts::default();
        for node in nodes.all_nodes() {
            if !has_preferred && node.pods_with_affinity == 0 {
                continue;
            }
            for existing in node.pods.values() {
                if !has_preferred && !existing.has_affinity {
                    continue;
                }
                if has_preferred {
                    for (t, w) in &own.preferred_affinity {
                        if matches(t, existing) {
                            scores.add(&t.topology_key, node, *w);
                        }
                    }
                    for (t, w) in &own.preferred_anti_affinity {
                        if matches(t, existing) {
                            scores.add(&t.topology_key, node, -*w);
                        }
                    }
                }
                let Some(theirs) = existing.affinity.as_deref() else {
                    continue;
                };
                for t in &theirs.required_affinity {
                    if matches(t, pod) {
                        scores.add(&t.topology_key, node, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for (t, w) in &theirs.preferred_affinity {
                    if matches(t, pod) {
                        scores.add(&t.topology_key, node, *w);
                    }
                }
                for (t, w) in &theirs.preferred_anti_affinity {
                    if matches(t, pod) {
                        scores.add(&t.topology_key, node, -*w);
                    }
                }
            }
        }
        if !scores.is_empty() {
            state.write(NAME, PreScoreState(scores));
        }
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        state
            .read::<PreScoreState>(NAME)
            .map_or(0, |st| st.0.sum_on(node))
    }

    /// Min-max scaling to 0..=100, as upstream.
    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.read::<PreScoreState>(NAME).is_none() {
            return;
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max > min {
                MAX_NODE_SCORE * (*s - min) / (max - min)
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{Cluster, node, pod};

    fn labelled(name: &str, ns: &str, labels: Value, affinity: Value) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"affinity": affinity}}),
        )
    }

    fn term(key: &str, sel: Value) -> Value {
        json!({"labelSelector": {"matchLabels": sel}, "topologyKey": key})
    }

    /// Three nodes in two zones: a (zone x), b (zone x), c (zone y).
    fn cluster(existing: &[(&str, PodInfo)]) -> Cluster {
        let mut nodes: Vec<NodeInfo> = [("a", "x"), ("b", "x"), ("c", "y")]
            .iter()
            .map(|(n, z)| {
                node(json!({"metadata": {"name": n, "labels": {
                    "kubernetes.io/hostname": n, "zone": z}}}))
            })
            .collect();
        nodes.push(node(json!({"metadata": {"name": "d"}})));
        let mut c = Cluster(nodes);
        for (n, p) in existing {
            c.add(n, p.clone());
        }
        c
    }

    /// The Filter reason of each node a, b, c, d ("" for a fit).
    fn filter_all(c: &Cluster, p: &PodInfo) -> Vec<String> {
        let mut state = CycleState::default();
        assert!(InterPodAffinity.pre_filter(p, c, &mut state).is_success());
        c.0.iter()
            .map(|n| {
                InterPodAffinity
                    .filter(&state, p, n)
                    .reasons
                    .first()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn required_affinity_and_anti_affinity() {
        let web = labelled("w", "default", json!({"app": "web"}), json!(null));
        let other_ns = labelled("w2", "other", json!({"app": "db"}), json!(null));
        let a = ERR_AFFINITY;
        let aa = ERR_ANTI_AFFINITY;
        type Case<'a> = (&'a str, Vec<(&'a str, PodInfo)>, Value, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "affinity to a zone with a web pod",
                vec![("a", web.clone())],
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    term("zone", json!({"app": "web"}))]}}),
                vec!["", "", a, a],
            ),
            (
                "affinity by hostname",
                vec![("b", web.clone())],
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    term("kubernetes.io/hostname", json!({"app": "web"}))]}}),
                vec![a, "", a, a],
            ),
            (
                "no matching pod and the pod does not match itself",
                vec![],
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    term("zone", json!({"app": "db"}))]}}),
                vec![a, a, a, a],
            ),
            (
                "first pod of a self-affine group goes where the key exists",
                vec![],
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    term("zone", json!({"app": "web"}))]}}),
                vec!["", "", "", a],
            ),
            (
                "pods of another namespace do not count",
                vec![("a", other_ns.clone())],
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    term("zone", json!({"app": "db"}))]}}),
                vec![a, a, a, a],
            ),
            (
                "namespaceSelector {} looks at every namespace",
                vec![("a", other_ns)],
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone",
                     "namespaceSelector": {}}]}}),
                vec!["", "", a, a],
            ),
            (
                "anti-affinity by zone",
                vec![("c", web.clone())],
                json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    term("zone", json!({"app": "web"}))]}}),
                vec!["", "", aa, ""],
            ),
            (
                "anti-affinity by hostname",
                vec![("a", web.clone())],
                json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    term("kubernetes.io/hostname", json!({"app": "web"}))]}}),
                vec![aa, "", "", ""],
            ),
        ];
        for (name, existing, affinity, want) in cases {
            let c = cluster(&existing);
            let p = labelled("new", "default", json!({"app": "web"}), affinity);
            assert_eq!(filter_all(&c, &p), want, "{name}");
        }
    }

    #[test]
    fn existing_pods_anti_affinity_keeps_matching_pods_away() {
        let guard = labelled(
            "g",
            "default",
            json!({}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                term("zone", json!({"app": "web"}))]}}),
        );
        let c = cluster(&[("a", guard)]);
        let e = ERR_EXISTING_ANTI_AFFINITY;
        let web = labelled("new", "default", json!({"app": "web"}), json!(null));
        assert_eq!(filter_all(&c, &web), vec![e, e, "", ""]);
        let db = labelled("new", "default", json!({"app": "db"}), json!(null));
        assert_eq!(filter_all(&c, &db), vec!["", "", "", ""]);
    }

    #[test]
    fn pods_without_terms_skip_when_no_pod_has_anti_affinity() {
        let c = cluster(&[(
            "a",
            labelled("w", "default", json!({"app": "web"}), json!(null)),
        )]);
        let mut state = CycleState::default();
        let p = labelled("new", "default", json!({}), json!(null));
        assert!(InterPodAffinity.pre_filter(&p, &c, &mut state).is_success());
        assert!(state.read::<PreFilterState>(NAME).is_none());
        InterPodAffinity.pre_score(&p, &c, &[], &mut state);
        assert!(state.read::<PreScoreState>(NAME).is_none());
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let web = labelled("w", "default", json!({"app": "web"}), json!(null));
        let db = labelled("d", "default", json!({"app": "db"}), json!(null));
        let c = cluster(&[("a", web), ("c", db)]);
        let p = labelled(
            "new",
            "default",
            json!({}),
            json!({
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": term("zone", json!({"app": "web"}))}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm":
                        term("kubernetes.io/hostname", json!({"app": "web"}))}]}}),
        );
        let mut state = CycleState::default();
        let nodes: Vec<&NodeInfo> = c.0.iter().collect();
        InterPodAffinity.pre_score(&p, &c, &nodes, &mut state);
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| InterPodAffinity.score(&state, &p, n))
            .collect();
        // a: zone x +10, host a -5; b: zone x +10; c, d: 0.
        assert_eq!(scores, vec![5, 10, 0, 0]);
        InterPodAffinity.normalize(&state, &mut scores);
        assert_eq!(scores, vec![50, 100, 0, 0]);
    }

    #[test]
    fn existing_pods_required_affinity_attracts() {
        let fan = labelled(
            "f",
            "default",
            json!({}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                term("zone", json!({"app": "web"}))]}}),
        );
        let c = cluster(&[("c", fan)]);
        let p = labelled("new", "default", json!({"app": "web"}), json!(null));
        let mut state = CycleState::default();
        let nodes: Vec<&NodeInfo> = c.0.iter().collect();
        InterPodAffinity.pre_score(&p, &c, &nodes, &mut state);
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| InterPodAffinity.score(&state, &p, n))
            .collect();
        InterPodAffinity.normalize(&state, &mut scores);
        assert_eq!(scores, vec![0, 0, 100, 0]);
    }
}
