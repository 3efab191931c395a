//! InterPodAffinity: required pod affinity and anti-affinity (Filter), existing pods'
//! anti-affinity toward the incoming pod, and preferred terms (Score), all by topology domain
//! (`topologyKey` over node labels). PreFilter and PreScore take, once per cycle, the pods
//! matching each term per (key, value) from counts the cache keeps current (upstream's
//! `affinityCounts`, `antiAffinityCounts`, `existingAntiAffinityCounts`, `topologyScore`);
//! Filter and Score then only look the node's labels up in them.

use crate::framework::{
    ClusterFilterPlugin, ClusterNodes, ClusterScorePlugin, CountMap, CycleState, MAX_NODE_SCORE,
    NodeInfo, PodInfo, Status, TermKind,
};
use crate::terms::{AffinityTerms, PodMatcher, Term};

/// The plugin, with upstream's `hardPodAffinityWeight` (what an existing pod's required
/// affinity toward the incoming pod adds to the score of its domain; default 1).
#[derive(Clone, Copy, Debug)]
pub struct InterPodAffinity {
    hard_pod_affinity_weight: i64,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity::new(1)
    }
}

impl InterPodAffinity {
    pub fn new(hard_pod_affinity_weight: i32) -> InterPodAffinity {
        InterPodAffinity {
            hard_pod_affinity_weight: i64::from(hard_pod_affinity_weight),
        }
    }
}

const NAME: &str = "InterPodAffinity";

pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Pods per value of one topology key.
type KeyCounts = (String, CountMap);

fn get(counts: &CountMap, value: &str) -> i64 {
    counts.get(value).copied().unwrap_or(0)
}

/// Whether some (key, counts) has a positive count for the node's value of the key.
fn any_positive_on(parts: &[KeyCounts], node: &NodeInfo) -> bool {
    let labels = node.labels();
    parts
        .iter()
        .any(|(k, counts)| labels.get(k).is_some_and(|v| get(counts, v) > 0))
}

/// What PreFilter computes for one pod.
#[derive(Debug, Default)]
struct PreFilterState {
    /// Per required affinity term: pods matching all of them, per domain of the term's key.
    affinity_counts: Vec<KeyCounts>,
    /// Per required anti-affinity term: pods matching it, per domain.
    anti_affinity_counts: Vec<KeyCounts>,
    /// Per existing term of required anti-affinity matching the incoming pod: its holders,
    /// per domain.
    existing_anti_affinity_counts: Vec<KeyCounts>,
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

/// Pods a matcher counts per value of `key`, over the nodes that have it.
fn per_domain(nodes: &dyn ClusterNodes, m: &PodMatcher, key: &str) -> KeyCounts {
    let keys = [key.to_string()];
    (key.to_string(), nodes.pods_per_domain(m, key, &keys))
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
        if nodes.num_pods_with_required_anti_affinity() > 0 {
            st.existing_anti_affinity_counts = nodes
                .existing_terms(TermKind::RequiredAntiAffinity, pod)
                .into_iter()
                .map(|e| (e.topology_key, e.counts))
                .collect();
        }
        if !own.required_affinity.is_empty() {
            // A pod counts for affinity when it matches every term.
            let all = PodMatcher {
                terms: own
                    .required_affinity
                    .iter()
                    .map(|t| (t.namespaces.clone(), t.selector.clone()))
                    .collect(),
                skip_terminating: false,
            };
            st.affinity_counts = own
                .required_affinity
                .iter()
                .map(|t| per_domain(nodes, &all, &t.topology_key))
                .collect();
        }
        st.anti_affinity_counts = own
            .required_anti_affinity
            .iter()
            .map(|t| per_domain(nodes, &PodMatcher::of_term(t), &t.topology_key))
            .collect();
        state.write(NAME, st);
        Status::success()
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<PreFilterState>(NAME) else {
            return Status::success();
        };
        if !st.affinity_counts.is_empty() {
            let labels = node.labels();
            let mut pods_exist = true;
            for (key, counts) in &st.affinity_counts {
                match labels.get(key) {
                    None => return Status::unresolvable(ERR_AFFINITY),
                    Some(v) => {
                        if get(counts, v) <= 0 {
                            pods_exist = false;
                        }
                    }
                }
            }
            // The first pod of a group with affinity to itself may go anywhere.
            let first_of_group =
                st.affinity_counts.iter().all(|(_, c)| c.is_empty()) && st.matches_own_affinity;
            if !pods_exist && !first_of_group {
                return Status::unresolvable(ERR_AFFINITY);
            }
        }
        if any_positive_on(&st.anti_affinity_counts, node) {
            return Status::unschedulable(ERR_ANTI_AFFINITY);
        }
        if any_positive_on(&st.existing_anti_affinity_counts, node) {
            return Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

/// What PreScore computes: weighted pods per domain, summed over the parts for a node.
#[derive(Debug, Default)]
struct PreScoreState(Vec<(String, i64, CountMap)>);

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
        let mut parts = Vec::new();
        for (sign, list) in [
            (1, &own.preferred_affinity),
            (-1, &own.preferred_anti_affinity),
        ] {
            for (t, w) in list {
                let (key, counts) = per_domain(nodes, &PodMatcher::of_term(t), &t.topology_key);
                parts.push((key, sign * w, counts));
            }
        }
        if nodes.num_pods_with_affinity() > 0 {
            if self.hard_pod_affinity_weight > 0 {
                for e in nodes.existing_terms(TermKind::RequiredAffinity, pod) {
                    parts.push((e.topology_key, self.hard_pod_affinity_weight, e.counts));
                }
            }
            for e in nodes.existing_terms(TermKind::PreferredAffinity, pod) {
                parts.push((e.topology_key, e.weight, e.counts));
            }
            for e in nodes.existing_terms(TermKind::PreferredAntiAffinity, pod) {
                parts.push((e.topology_key, -e.weight, e.counts));
            }
        }
        parts.retain(|(_, _, counts)| !counts.is_empty());
        if !parts.is_empty() {
            state.write(NAME, PreScoreState(parts));
        }
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(st) = state.read::<PreScoreState>(NAME) else {
            return 0;
        };
        let labels = node.labels();
        st.0.iter()
            .filter_map(|(key, w, counts)| labels.get(key).map(|v| w * get(counts, v)))
            .sum()
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
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / (max - min) as f64)) as i64
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
    use crate::cache::testing::cache_of;
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
    fn filter_with(nodes: &dyn ClusterNodes, list: &[&NodeInfo], p: &PodInfo) -> Vec<String> {
        let mut state = CycleState::default();
        assert!(
            InterPodAffinity::default()
                .pre_filter(p, nodes, &mut state)
                .is_success()
        );
        list.iter()
            .map(|n| {
                InterPodAffinity::default()
                    .filter(&state, p, n)
                    .reasons
                    .first()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Filter on every node, checked against the cache's kept counts (asked for before the
    /// pods arrived, and after).
    fn filter_all(c: &Cluster, p: &PodInfo) -> Vec<String> {
        let want = filter_with(c, &c.0.iter().collect::<Vec<_>>(), p);
        for warm in [false, true] {
            let cache = cache_of(&c.0, |cache| {
                if warm {
                    let _ = InterPodAffinity::default().pre_filter(
                        p,
                        cache,
                        &mut CycleState::default(),
                    );
                }
            });
            let list: Vec<&NodeInfo> = c.0.iter().filter_map(|n| cache.node(n.name())).collect();
            assert_eq!(filter_with(&cache, &list, p), want, "cache (warm: {warm})");
        }
        want
    }

    /// Raw and normalized scores over every node, checked against the cache's counts.
    fn scores(c: &Cluster, p: &PodInfo) -> (Vec<i64>, Vec<i64>) {
        let run = |nodes: &dyn ClusterNodes, list: &[&NodeInfo]| {
            let plugin = InterPodAffinity::default();
            let mut state = CycleState::default();
            plugin.pre_score(p, nodes, list, &mut state);
            let raw: Vec<i64> = list.iter().map(|n| plugin.score(&state, p, n)).collect();
            let mut normalized = raw.clone();
            plugin.normalize(&state, &mut normalized);
            (raw, normalized)
        };
        let want = run(c, &c.0.iter().collect::<Vec<_>>());
        for warm in [false, true] {
            let cache = cache_of(&c.0, |cache| {
                if warm {
                    let mut state = CycleState::default();
                    InterPodAffinity::default().pre_score(p, cache, &[], &mut state);
                }
            });
            let list: Vec<&NodeInfo> = c.0.iter().filter_map(|n| cache.node(n.name())).collect();
            assert_eq!(run(&cache, &list), want, "cache (warm: {warm})");
        }
        want
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
        assert!(
            InterPodAffinity::default()
                .pre_filter(&p, &c, &mut state)
                .is_success()
        );
        assert!(state.read::<PreFilterState>(NAME).is_none());
        InterPodAffinity::default().pre_score(&p, &c, &[], &mut state);
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
        // a: zone x +10, host a -5; b: zone x +10; c, d: 0.
        assert_eq!(scores(&c, &p), (vec![5, 10, 0, 0], vec![50, 100, 0, 0]));
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
        assert_eq!(scores(&c, &p).1, vec![0, 0, 100, 0]);
    }

    #[test]
    fn existing_pods_preferred_terms_score_the_incoming_pod() {
        let likes = labelled(
            "l",
            "default",
            json!({}),
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 8, "podAffinityTerm": term("zone", json!({"app": "web"}))}]}}),
        );
        let dislikes = labelled(
            "d",
            "default",
            json!({}),
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 4, "podAffinityTerm": term("kubernetes.io/hostname",
                    json!({"app": "web"}))}]}}),
        );
        let mut likes_too = (*likes.pod).clone();
        likes_too.metadata.name = Some("l2".into());
        let likes_too = PodInfo::new(std::sync::Arc::new(likes_too));
        let c = cluster(&[("a", likes), ("b", likes_too), ("b", dislikes)]);
        let p = labelled("new", "default", json!({"app": "web"}), json!(null));
        // Zone x holds two pods liking web (+16); b also one disliking it (-4).
        assert_eq!(scores(&c, &p), (vec![16, 12, 0, 0], vec![100, 75, 0, 0]));
        let db = labelled("new", "default", json!({"app": "db"}), json!(null));
        assert_eq!(scores(&c, &db), (vec![0, 0, 0, 0], vec![0, 0, 0, 0]));
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_needs_every_key() {
        // No pod matches yet: the pod matching its own terms may go where both keys exist.
        let both = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("zone", json!({"app": "web"})),
            term("kubernetes.io/hostname", json!({"app": "web"}))]}});
        let c = cluster(&[]);
        let p = labelled("new", "default", json!({"app": "web"}), both.clone());
        let a = ERR_AFFINITY;
        assert_eq!(filter_all(&c, &p), vec!["", "", "", a]);
        // Once one pod matches both terms, only its host qualifies.
        let web = labelled("w", "default", json!({"app": "web"}), json!(null));
        let c = cluster(&[("b", web)]);
        assert_eq!(filter_all(&c, &p), vec![a, "", a, a]);
        // A pod matching only one of the terms' selectors does not count.
        let half = labelled(
            "new",
            "default",
            json!({"app": "web"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                term("zone", json!({"app": "web"})),
                term("zone", json!({"tier": "db"}))]}}),
        );
        let c = cluster(&[(
            "a",
            labelled("w", "default", json!({"app": "web"}), json!(null)),
        )]);
        assert_eq!(filter_all(&c, &half), vec![a, a, a, a]);
    }
}
