//! PodTopologySpread: `topologySpreadConstraints` keep the pods a selector matches spread
//! over topology domains. DoNotSchedule constraints filter (skew above maxSkew, minDomains),
//! ScheduleAnyway constraints score (fewer matching pods in the domain is better).
//! nodeAffinityPolicy defaults to Honor and nodeTaintsPolicy to Ignore; matchLabelKeys adds
//! the pod's own values to the selector. Pods without constraints get the default ones
//! (upstream's system defaults: hostname maxSkew 3 and zone maxSkew 5, ScheduleAnyway, over
//! the pods selected by the Services, ReplicationControllers, ReplicaSets and StatefulSets
//! selecting the pod). PreFilter and PreScore read the matching pods per domain from counts
//! the cache keeps current, so Filter and Score only look the node's labels up.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use keelson_kinds::placement;

use crate::framework::{
    ClusterFilterPlugin, ClusterNodes, ClusterScorePlugin, CountMap, CycleState, MAX_NODE_SCORE,
    NodeInfo, PodInfo, Status, has_keys,
};
use crate::terms::{Namespaces, PodMatcher, Selector};

const NAME: &str = "PodTopologySpread";

pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// How the plugin finds constraints for pods without their own (`defaultingType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultingType {
    /// Upstream's built-in constraints (hostname maxSkew 3 and zone maxSkew 5,
    /// ScheduleAnyway).
    #[default]
    System,
    /// The `defaultConstraints` listed.
    List,
}

/// PodTopologySpread's arguments (`PodTopologySpreadArgs` of the scheduler configuration).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodTopologySpreadArgs {
    /// Used with `DefaultingType::List`; `System` must leave it empty.
    pub default_constraints: Vec<TopologySpreadConstraint>,
    pub defaulting_type: DefaultingType,
}

/// The plugin, with the constraints it gives pods that have none.
#[derive(Clone, Debug)]
pub struct PodTopologySpread {
    defaults: Vec<TopologySpreadConstraint>,
    system_defaulted: bool,
}

impl Default for PodTopologySpread {
    fn default() -> Self {
        PodTopologySpread::new(PodTopologySpreadArgs::default())
    }
}

/// Upstream's `systemDefaultConstraints`.
fn system_defaults() -> Vec<TopologySpreadConstraint> {
    [(HOSTNAME, 3), (ZONE, 5)]
        .into_iter()
        .map(|(key, skew)| TopologySpreadConstraint {
            max_skew: skew,
            topology_key: key.to_string(),
            when_unsatisfiable: "ScheduleAnyway".to_string(),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

impl PodTopologySpread {
    pub fn new(args: PodTopologySpreadArgs) -> PodTopologySpread {
        match args.defaulting_type {
            DefaultingType::System => PodTopologySpread {
                defaults: system_defaults(),
                system_defaulted: true,
            },
            DefaultingType::List => PodTopologySpread {
                defaults: args.default_constraints,
                system_defaulted: false,
            },
        }
    }

    /// The pod's constraints with `whenUnsatisfiable` equal to `when`, and whether they are
    /// its own (not defaults).
    fn constraints(
        &self,
        pod: &PodInfo,
        nodes: &dyn ClusterNodes,
        when: &str,
    ) -> (Vec<Constraint>, bool) {
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .filter(|c| !c.is_empty());
        if let Some(own) = own {
            let cs = own
                .iter()
                .filter(|c| c.when_unsatisfiable == when)
                .map(|c| Constraint::new(c, pod, None))
                .collect();
            return (cs, true);
        }
        if !self.defaults.iter().any(|c| c.when_unsatisfiable == when) {
            return (Vec::new(), false);
        }
        let Some(selector) = nodes.default_spread_selector(pod) else {
            return (Vec::new(), false);
        };
        let cs = self
            .defaults
            .iter()
            .filter(|c| c.when_unsatisfiable == when)
            .map(|c| Constraint::new(c, pod, Some(selector.clone())))
            .collect();
        (cs, false)
    }
}

/// One constraint, its selector parsed.
#[derive(Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    min_domains: i64,
    selector: Selector,
    /// The pods that count: the selector's, in the pod's namespace, not being deleted.
    matcher: PodMatcher,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    /// `selector` replaces the constraint's own (defaults take the workloads' selector).
    fn new(c: &TopologySpreadConstraint, pod: &PodInfo, selector: Option<Selector>) -> Constraint {
        let selector = selector.unwrap_or_else(|| {
            let mut selector = Selector::new(c.label_selector.as_ref());
            for k in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels().get(k) {
                    selector.require(k, v);
                }
            }
            selector
        });
        Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            matcher: PodMatcher {
                terms: vec![(
                    Namespaces::Listed(vec![pod.namespace().to_string()]),
                    selector.clone(),
                )],
                skip_terminating: true,
            },
            selector,
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
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

    /// Whether `includes` can leave out nodes that have the keys: then counts are summed
    /// node by node instead of read per domain.
    fn narrows(&self, pod: &PodInfo) -> bool {
        if self.honor_taints {
            return true;
        }
        let Some(spec) = pod.pod.spec.as_ref() else {
            return false;
        };
        let selector = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty());
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .is_some_and(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .is_some()
            });
        self.honor_affinity && (selector || required)
    }
}

/// The topology keys of the constraints, sorted, without repeats.
fn keys_of(cs: &[Constraint]) -> Vec<String> {
    let mut keys: Vec<String> = cs.iter().map(|c| c.topology_key.clone()).collect();
    keys.sort();
    keys.dedup();
    keys
}

fn get(counts: &CountMap, value: &str) -> i64 {
    counts.get(value).copied().unwrap_or(0)
}

/// What PreFilter computes: matching pods per domain of each constraint.
#[derive(Debug)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value → matching pods.
    counts: Vec<CountMap>,
    /// Per constraint: the smallest count among its domains (0 with fewer than minDomains),
    /// less 1 when the selector matches the incoming pod itself.
    min_match: Vec<i64>,
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
        let (cs, _) = self.constraints(pod, nodes, "DoNotSchedule");
        if cs.is_empty() {
            return Status::success();
        }
        let keys = keys_of(&cs);
        let mut counts = Vec::with_capacity(cs.len());
        let mut min_match = Vec::with_capacity(cs.len());
        if cs.iter().any(|c| c.narrows(pod)) {
            // Node by node, as upstream: every eligible node adds its domain (maybe with 0).
            let per_node: Vec<CountMap> =
                cs.iter().map(|c| nodes.pods_per_node(&c.matcher)).collect();
            let mut by_domain: Vec<HashMap<String, i64>> = vec![HashMap::new(); cs.len()];
            for node in nodes.all_nodes() {
                let labels = node.labels();
                if !has_keys(labels, &keys) {
                    continue;
                }
                for (i, c) in cs.iter().enumerate() {
                    if !c.includes(pod, node) {
                        continue;
                    }
                    let Some(value) = labels.get(&c.topology_key) else {
                        continue;
                    };
                    let n = get(&per_node[i], node.name());
                    match by_domain[i].get_mut(value.as_str()) {
                        Some(count) => *count += n,
                        None => {
                            by_domain[i].insert(value.clone(), n);
                        }
                    }
                }
            }
            for (c, domains) in cs.iter().zip(by_domain) {
                let min = if (domains.len() as i64) < c.min_domains {
                    0
                } else {
                    domains
                        .values()
                        .copied()
                        .min()
                        .unwrap_or(i64::from(i32::MAX))
                };
                min_match.push(min);
                counts.push(CountMap::new(domains));
            }
        } else {
            for c in &cs {
                let domains = nodes.domains(&c.topology_key, &keys);
                let pods = nodes.pods_per_domain(&c.matcher, &c.topology_key, &keys);
                let min = if (domains.len() as i64) < c.min_domains {
                    0
                } else if domains.is_empty() {
                    i64::from(i32::MAX)
                } else if pods.len() < domains.len() {
                    // Some domain has no matching pod.
                    0
                } else {
                    pods.values().copied().min().unwrap_or(0)
                };
                min_match.push(min);
                counts.push(pods);
            }
        }
        // The pod itself counts where it lands: skew = count + self - min.
        for (c, min) in cs.iter().zip(min_match.iter_mut()) {
            *min -= i64::from(c.selector.matches(pod.labels()));
        }
        state.write(
            NAME,
            PreFilterState {
                constraints: cs,
                counts,
                min_match,
            },
        );
        Status::success()
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<PreFilterState>(NAME) else {
            return Status::success();
        };
        let labels = node.labels();
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_MISSING_LABEL);
            };
            let skew = get(&st.counts[i], value) - st.min_match[i];
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
    /// Nodes lacking one of `keys` are ignored (the pod's own constraints, or defaults that
    /// are not the system's).
    require_all: bool,
    keys: Vec<String>,
    /// Per constraint: domain value → matching pods (hostname: node name → matching pods).
    counts: Vec<CountMap>,
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
        let (cs, own) = self.constraints(pod, nodes, "ScheduleAnyway");
        if cs.is_empty() {
            return;
        }
        // Nodes without a zone label still get hostname spreading from the system defaults.
        let require_all = own || !self.system_defaulted;
        let keys = keys_of(&cs);
        let mut domains: Vec<HashSet<&str>> = vec![HashSet::new(); cs.len()];
        let mut hosts = 0usize;
        for node in feasible {
            let labels = node.labels();
            if require_all && !has_keys(labels, &keys) {
                continue;
            }
            hosts += 1;
            for (c, domains) in cs.iter().zip(domains.iter_mut()) {
                if c.topology_key != HOSTNAME {
                    domains.insert(labels.get(&c.topology_key).map_or("", String::as_str));
                }
            }
        }
        let mut counts = Vec::with_capacity(cs.len());
        for (c, domains) in cs.iter().zip(&domains) {
            let per_node = || nodes.pods_per_node(&c.matcher);
            if c.topology_key == HOSTNAME {
                counts.push(per_node());
                continue;
            }
            let own_key = [c.topology_key.clone()];
            let need: &[String] = if require_all { &keys } else { &own_key };
            if !c.narrows(pod) {
                counts.push(nodes.pods_per_domain(&c.matcher, &c.topology_key, need));
                continue;
            }
            let per_node = per_node();
            let mut by_domain: HashMap<String, i64> = HashMap::new();
            for node in nodes.all_nodes() {
                let labels = node.labels();
                if !has_keys(labels, need) || !c.includes(pod, node) {
                    continue;
                }
                let value = &labels[&c.topology_key];
                if domains.contains(value.as_str()) {
                    *by_domain.entry(value.clone()).or_default() += get(&per_node, node.name());
                }
            }
            counts.push(CountMap::new(by_domain));
        }
        let weights = cs
            .iter()
            .zip(&domains)
            .map(|(c, domains)| {
                let size = if c.topology_key == HOSTNAME {
                    hosts
                } else {
                    domains.len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        state.write(
            NAME,
            PreScoreState {
                constraints: cs,
                require_all,
                keys,
                counts,
                weights,
            },
        );
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(st) = state.read::<PreScoreState>(NAME) else {
            return 0;
        };
        let labels = node.labels();
        if st.require_all && !has_keys(labels, &st.keys) {
            return IGNORED;
        }
        let mut score = 0.0;
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == HOSTNAME {
                get(&st.counts[i], node.name())
            } else {
                get(&st.counts[i], value)
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
    use k8s_openapi::api::core::v1::Service;

    use crate::cache::Cache;
    use crate::cache::testing::{cache_of, fill};
    use crate::plugins::test_util::{Cluster, node, pod};
    use crate::workloads::{WorkloadListers, default_selector};

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

    fn filter_with(
        plugin: &PodTopologySpread,
        nodes: &dyn ClusterNodes,
        list: &[&NodeInfo],
        p: &PodInfo,
    ) -> Vec<&'static str> {
        let mut state = CycleState::default();
        assert!(plugin.pre_filter(p, nodes, &mut state).is_success());
        list.iter()
            .map(|n| {
                let s = plugin.filter(&state, p, n);
                match s.reasons.first().map(String::as_str) {
                    None => "",
                    Some(ERR_CONSTRAINTS) => "skew",
                    Some(ERR_MISSING_LABEL) => "label",
                    Some(other) => panic!("unexpected reason {other}"),
                }
            })
            .collect()
    }

    /// Filter on every node of the cluster, checked against the cache's kept counts (asked
    /// for before the pods arrived, and after).
    fn filter_all_by(plugin: &PodTopologySpread, c: &Cluster, p: &PodInfo) -> Vec<&'static str> {
        let want = filter_with(plugin, c, &c.0.iter().collect::<Vec<_>>(), p);
        for warm in [false, true] {
            let cache = cache_of(&c.0, |cache| {
                if warm {
                    let _ = plugin.pre_filter(p, cache, &mut CycleState::default());
                }
            });
            let list: Vec<&NodeInfo> = c.0.iter().filter_map(|n| cache.node(n.name())).collect();
            assert_eq!(
                filter_with(plugin, &cache, &list, p),
                want,
                "cache (warm: {warm})"
            );
        }
        want
    }

    fn filter_all(c: &Cluster, p: &PodInfo) -> Vec<&'static str> {
        filter_all_by(&PodTopologySpread::default(), c, p)
    }

    /// Raw and normalized scores over every node, checked against the cache's counts;
    /// `service` is the selector of a Service in the pod's namespace.
    fn scores_by(
        plugin: &PodTopologySpread,
        c: &Cluster,
        p: &PodInfo,
        service: Option<Value>,
    ) -> (Vec<i64>, Vec<i64>) {
        let run = |nodes: &dyn ClusterNodes, list: &[&NodeInfo]| {
            let mut state = CycleState::default();
            plugin.pre_score(p, nodes, list, &mut state);
            let raw: Vec<i64> = list.iter().map(|n| plugin.score(&state, p, n)).collect();
            let mut normalized = raw.clone();
            plugin.normalize(&state, &mut normalized);
            (raw, normalized)
        };
        let listers = WorkloadListers::default();
        let mut services = Vec::new();
        if let Some(sel) = service {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"name": "svc", "namespace": "default"},
                "spec": {"selector": sel}}))
            .expect("service");
            listers.apply_service(svc.clone());
            services.push(std::sync::Arc::new(svc));
        }
        let selector = default_selector(&p.pod, &services, None, None, None);
        let want = run(&WithSelector(c, selector), &c.0.iter().collect::<Vec<_>>());
        let cache = fill(Cache::with_workloads(listers), &c.0, |_| {});
        let list: Vec<&NodeInfo> = c.0.iter().filter_map(|n| cache.node(n.name())).collect();
        assert_eq!(run(&cache, &list), want, "cache");
        want
    }

    /// A cluster whose workloads select pods with `1` (for system default spreading).
    struct WithSelector<'a>(&'a Cluster, Option<Selector>);

    impl ClusterNodes for WithSelector<'_> {
        fn all_nodes(&self) -> Vec<&NodeInfo> {
            self.0.all_nodes()
        }
        fn num_pods_with_affinity(&self) -> usize {
            self.0.num_pods_with_affinity()
        }
        fn num_pods_with_required_anti_affinity(&self) -> usize {
            self.0.num_pods_with_required_anti_affinity()
        }
        fn default_spread_selector(&self, _pod: &PodInfo) -> Option<Selector> {
            self.1.clone()
        }
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
            PodTopologySpread::default()
                .pre_filter(&p, &c, &mut state)
                .is_success()
        );
        assert!(state.read::<PreFilterState>(NAME).is_none(), "no filter");
        // 3 zones: weight ln(5) ≈ 1.609; x: 2 → 3, y: 1 → 2, z: 0 → 0; e lacks the key.
        assert_eq!(
            scores_by(&PodTopologySpread::default(), &c, &p, None),
            (vec![3, 3, 2, 0, IGNORED], vec![0, 0, 33, 100, 0])
        );
    }

    #[test]
    fn node_inclusion_policies_choose_the_domains() {
        let with_policy = |policy: Value, selector: Value, tolerations: Value| {
            let mut c = constraint("zone", 1, "DoNotSchedule");
            if let (Some(c), Some(p)) = (c.as_object_mut(), policy.as_object()) {
                c.extend(p.clone());
            }
            pod(json!({"metadata": {"name": "new", "namespace": "default",
                    "labels": {"app": "web"}},
                "spec": {"topologySpreadConstraints": [c], "nodeSelector": selector,
                    "tolerations": tolerations}}))
        };
        // Zone z's node d is tainted NoSchedule.
        let tainted = |existing: &[(&str, usize)]| {
            let mut c = cluster(existing);
            let mut n = (*c.0[3].node).clone();
            n.spec = Some(
                serde_json::from_value(json!({"taints": [
                    {"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}))
                .expect("spec"),
            );
            c.0[3].set_node(std::sync::Arc::new(n));
            c
        };
        let toleration = json!([{"key": "dedicated", "operator": "Exists"}]);
        type Case<'a> = (&'a str, Value, Value, Value, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "nodeAffinityPolicy Ignore keeps zone z in the minimum",
                json!({"nodeAffinityPolicy": "Ignore"}),
                json!({"zone": "x"}),
                json!(null),
                vec!["skew", "skew", "skew", "", "label"],
            ),
            (
                "nodeTaintsPolicy Ignore (default) counts the tainted zone",
                json!({}),
                json!(null),
                json!(null),
                vec!["skew", "skew", "skew", "", "label"],
            ),
            (
                "nodeTaintsPolicy Honor leaves the tainted zone out",
                json!({"nodeTaintsPolicy": "Honor"}),
                json!(null),
                json!(null),
                vec!["", "", "", "", "label"],
            ),
            (
                "nodeTaintsPolicy Honor with a toleration keeps it",
                json!({"nodeTaintsPolicy": "Honor"}),
                json!(null),
                toleration,
                vec!["skew", "skew", "skew", "", "label"],
            ),
        ];
        for (name, policy, selector, tolerations, want) in cases {
            let c = tainted(&[("a", 1), ("c", 1)]);
            assert_eq!(
                filter_all(&c, &with_policy(policy, selector, tolerations)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn terminating_pods_do_not_count() {
        let mut c = cluster(&[]);
        c.add(
            "a",
            pod(json!({"metadata": {"name": "old", "namespace": "default",
                "labels": {"app": "web"}, "deletionTimestamp": "2026-01-01T00:00:00Z"}})),
        );
        let p = spreading(json!([constraint("zone", 1, "DoNotSchedule")]), json!(null));
        assert_eq!(filter_all(&c, &p), vec!["", "", "", "", "label"]);
    }

    #[test]
    fn system_defaults_spread_what_services_select() {
        let mut c = cluster(&[("a", 2), ("c", 1)]);
        for n in c.0.iter_mut() {
            let mut node = (*n.node).clone();
            let labels = node.metadata.labels.get_or_insert_default();
            if let Some(z) = labels.get("zone").cloned() {
                labels.insert(ZONE.to_string(), z);
            }
            n.set_node(std::sync::Arc::new(node));
        }
        let plain = web("plain");
        let plugin = PodTopologySpread::default();
        // hostname (5 hosts, e too: ln 7) maxSkew 3, zone (x, y, z and e's "": ln 6) maxSkew 5;
        // a: 2·1.95+2 + 2·1.79+4 = 13.5; b: 2 + 7.6; c: 3.9 + 5.8; d: 2 + 4; e: 2 (no zone).
        assert_eq!(
            scores_by(&plugin, &c, &plain, Some(json!({"app": "web"}))),
            (vec![13, 10, 10, 6, 2], vec![15, 38, 38, 69, 100])
        );
        // Nothing selects the pod: no defaults.
        assert_eq!(
            scores_by(&plugin, &c, &plain, Some(json!({"app": "db"}))),
            (vec![0; 5], vec![0; 5])
        );
        assert_eq!(
            scores_by(&plugin, &c, &plain, None),
            (vec![0; 5], vec![0; 5])
        );
        // Defaults only score.
        assert_eq!(filter_all_by(&plugin, &c, &plain), vec![""; 5]);
    }

    #[test]
    fn listed_defaults_filter_and_need_every_key() {
        let args = PodTopologySpreadArgs {
            default_constraints: vec![
                serde_json::from_value(json!({"maxSkew": 1, "topologyKey": "zone",
                    "whenUnsatisfiable": "DoNotSchedule"}))
                .expect("constraint"),
            ],
            defaulting_type: DefaultingType::List,
        };
        let plugin = PodTopologySpread::new(args);
        let c = cluster(&[("a", 1)]);
        let plain = web("plain");
        let selector = default_selector(
            &plain.pod,
            &[std::sync::Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "default"},
                    "spec": {"selector": {"app": "web"}}}))
                .expect("service"),
            )],
            None,
            None,
            None,
        );
        let nodes = WithSelector(&c, selector);
        let list: Vec<&NodeInfo> = c.0.iter().collect();
        assert_eq!(
            filter_with(&plugin, &nodes, &list, &plain),
            vec!["skew", "skew", "", "", "label"]
        );
        assert_eq!(
            filter_with(&plugin, &WithSelector(&c, None), &list, &plain),
            vec![""; 5],
            "no workload selects the pod"
        );
    }

    #[test]
    fn pods_without_constraints_skip() {
        let c = cluster(&[("a", 1)]);
        let p = web("plain");
        let mut state = CycleState::default();
        assert!(
            PodTopologySpread::default()
                .pre_filter(&p, &c, &mut state)
                .is_success()
        );
        PodTopologySpread::default().pre_score(&p, &c, &[], &mut state);
        assert!(state.read::<PreFilterState>(NAME).is_none());
        assert!(state.read::<PreScoreState>(NAME).is_none());
    }
}
