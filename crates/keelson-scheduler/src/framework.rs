//! The scheduling framework: one small trait per extension point, the `Status` a plugin
//! returns, and the per-node and per-pod data plugins read.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{self, Resources};
use crate::terms::{AffinityTerms, PodMatcher, Selector, Term};

/// How a plugin judged a pod (upstream's status codes, the ones this scheduler uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    /// The pod does not fit now; preempting other pods might help.
    Unschedulable,
    /// The pod does not fit and preempting pods would not help.
    UnschedulableAndUnresolvable,
}

/// A plugin's verdict with the reasons shown to users ("Insufficient memory").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
        }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
        }
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
}

/// A host port a pod uses or asks for: (protocol, host IP, port).
pub type HostPort = (String, String, i32);

/// A pod with what plugins read of it computed once.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub requests: Resources,
    /// Requests with upstream's non-zero defaults, for scoring.
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    /// The pod has terms other pods' scores read: pod affinity (required or preferred) or
    /// preferred anti-affinity.
    pub has_affinity: bool,
    /// The pod has required pod anti-affinity terms.
    pub has_required_anti_affinity: bool,
    /// The pod's affinity terms, parsed (only when it has some).
    pub affinity: Option<Arc<AffinityTerms>>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let terms = AffinityTerms::of(&pod);
        let has_required_anti_affinity = !terms.required_anti_affinity.is_empty();
        let has_affinity = !terms.required_affinity.is_empty()
            || !terms.preferred_affinity.is_empty()
            || !terms.preferred_anti_affinity.is_empty();
        let affinity = (!terms.is_empty()).then(|| Arc::new(terms));
        PodInfo {
            requests: resources::pod_requests(&pod),
            non_zero_requests: resources::pod_requests_non_zero(&pod),
            host_ports: host_ports(&pod),
            has_affinity,
            has_required_anti_affinity,
            affinity,
            pod,
        }
    }

    /// The pod's labels (empty when it has none).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        pod_key(&self.pod)
    }

    /// Whether the pod is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Whether a matcher counts this pod.
    pub fn matched_by(&self, m: &PodMatcher) -> bool {
        m.matches(self.namespace(), self.labels(), self.is_terminating())
    }
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The host ports a pod's containers ask for.
fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| {
            (
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                p.host_port.unwrap_or(0),
            )
        })
        .collect()
}

/// A node and the pods on it (bound or assumed), with their totals.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub allocatable: Resources,
    /// What the pods on the node request.
    pub requested: Resources,
    /// The same with upstream's non-zero defaults, for scoring.
    pub non_zero_requested: Resources,
    pub pods: HashMap<String, PodInfo>,
    /// Host ports in use, with how many pods use each.
    pub used_ports: BTreeMap<HostPort, usize>,
    /// How many of the pods have terms other pods' scores read (`PodInfo::has_affinity`).
    pub pods_with_affinity: usize,
    /// How many of the pods have required pod anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
        NodeInfo {
            node,
            allocatable,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: HashMap::new(),
            used_ports: BTreeMap::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        }
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// The node's labels (empty when it has none).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// Replaces the node object, keeping its pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let fresh = NodeInfo::new(node);
        self.node = fresh.node;
        self.allocatable = fresh.allocatable;
    }

    /// Adds (or replaces) a pod on this node.
    pub fn add_pod(&mut self, info: PodInfo) {
        let key = info.key();
        self.remove_pod(&key);
        self.requested.add(&info.requests);
        self.non_zero_requested.add(&info.non_zero_requests);
        for p in &info.host_ports {
            *self.used_ports.entry(p.clone()).or_default() += 1;
        }
        self.pods_with_affinity += usize::from(info.has_affinity);
        self.pods_with_required_anti_affinity += usize::from(info.has_required_anti_affinity);
        self.pods.insert(key, info);
    }

    /// Removes a pod from this node, if it is there.
    pub fn remove_pod(&mut self, key: &str) -> Option<PodInfo> {
        let info = self.pods.remove(key)?;
        self.requested.sub(&info.requests);
        self.non_zero_requested.sub(&info.non_zero_requests);
        self.pods_with_affinity -= usize::from(info.has_affinity);
        self.pods_with_required_anti_affinity -= usize::from(info.has_required_anti_affinity);
        for p in &info.host_ports {
            if let Some(n) = self.used_ports.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.used_ports.remove(p);
                }
            }
        }
        Some(info)
    }
}

/// PreFilter: looks at the pod once per cycle before any node is filtered; a failure makes
/// every node fail with it.
pub trait PreFilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn pre_filter(&self, pod: &PodInfo) -> Status;
}

/// Filter: whether the pod can run on one node.
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Score: how good one feasible node is for the pod, and (NormalizeScore) the scores of all
/// feasible nodes brought to 0..=100.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// NormalizeScore; scores that are already 0..=100 need nothing.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// What plugins compute once per cycle (in PreFilter or PreScore) and read for each node,
/// keyed by plugin name.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref())
    }
}

/// Counts per topology value (or per node name); values counting nothing are left out.
pub type CountMap = Arc<HashMap<String, i64>>;

/// The kinds of pod affinity terms existing pods hold that the incoming pod is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TermKind {
    RequiredAffinity,
    RequiredAntiAffinity,
    PreferredAffinity,
    PreferredAntiAffinity,
}

impl TermKind {
    pub const ALL: [TermKind; 4] = [
        TermKind::RequiredAffinity,
        TermKind::RequiredAntiAffinity,
        TermKind::PreferredAffinity,
        TermKind::PreferredAntiAffinity,
    ];

    /// The terms of this kind a pod holds, with their weights (0 for required terms).
    pub fn of(self, terms: &AffinityTerms) -> Vec<(&Term, i64)> {
        match self {
            TermKind::RequiredAffinity => terms.required_affinity.iter().map(|t| (t, 0)).collect(),
            TermKind::RequiredAntiAffinity => terms
                .required_anti_affinity
                .iter()
                .map(|t| (t, 0))
                .collect(),
            TermKind::PreferredAffinity => terms
                .preferred_affinity
                .iter()
                .map(|(t, w)| (t, *w))
                .collect(),
            TermKind::PreferredAntiAffinity => terms
                .preferred_anti_affinity
                .iter()
                .map(|(t, w)| (t, *w))
                .collect(),
        }
    }
}

/// One distinct term existing pods hold: how many of them hold it, per value of the term's
/// topology key (over the nodes that have the key).
#[derive(Clone, Debug)]
pub struct ExistingTerm {
    pub topology_key: String,
    pub weight: i64,
    pub counts: CountMap,
}

/// Whether the labels have every key.
pub fn has_keys(labels: &BTreeMap<String, String>, keys: &[String]) -> bool {
    keys.iter().all(|k| labels.contains_key(k))
}

/// The pods on one node a matcher counts.
pub fn count_on(m: &PodMatcher, node: &NodeInfo) -> i64 {
    node.pods.values().filter(|p| p.matched_by(m)).count() as i64
}

/// Every node of the cluster as a cycle sees it, for plugins that look beyond one node.
///
/// The counting methods have plain implementations that walk every node; the scheduler's
/// [`crate::cache::Cache`] keeps the same counts current as pods and nodes change, so a
/// cycle reads them instead of walking the cluster.
pub trait ClusterNodes: Sync {
    /// The nodes that exist.
    fn all_nodes(&self) -> Vec<&NodeInfo>;
    /// How many pods in the cluster have terms other pods' scores read
    /// (`PodInfo::has_affinity`).
    fn num_pods_with_affinity(&self) -> usize;
    /// How many pods in the cluster have required pod anti-affinity terms.
    fn num_pods_with_required_anti_affinity(&self) -> usize;

    /// The pods `m` matches on each node (by name).
    fn pods_per_node(&self, m: &PodMatcher) -> CountMap {
        let mut out = HashMap::new();
        for n in self.all_nodes() {
            let c = count_on(m, n);
            if c > 0 {
                out.insert(n.name().to_string(), c);
            }
        }
        Arc::new(out)
    }

    /// The pods `m` matches per value of the node label `key`, over the nodes that have every
    /// label of `keys` (which holds `key`).
    fn pods_per_domain(&self, m: &PodMatcher, key: &str, keys: &[String]) -> CountMap {
        let mut out: HashMap<String, i64> = HashMap::new();
        for n in self.all_nodes() {
            let labels = n.labels();
            let Some(v) = labels.get(key) else {
                continue;
            };
            if !has_keys(labels, keys) {
                continue;
            }
            let c = count_on(m, n);
            if c > 0 {
                *out.entry(v.clone()).or_default() += c;
            }
        }
        Arc::new(out)
    }

    /// The nodes per value of the label `key`, over the nodes that have every label of
    /// `keys` (which holds `key`).
    fn domains(&self, key: &str, keys: &[String]) -> Arc<HashMap<String, usize>> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for n in self.all_nodes() {
            let labels = n.labels();
            if let Some(v) = labels.get(key)
                && has_keys(labels, keys)
            {
                *out.entry(v.clone()).or_default() += 1;
            }
        }
        Arc::new(out)
    }

    /// The distinct terms of one kind that pods on existing nodes hold and `pod` matches.
    fn existing_terms(&self, kind: TermKind, pod: &PodInfo) -> Vec<ExistingTerm> {
        let mut out: Vec<(Term, i64, HashMap<String, i64>)> = Vec::new();
        for n in self.all_nodes() {
            for p in n.pods.values() {
                let Some(terms) = p.affinity.as_deref() else {
                    continue;
                };
                for (t, w) in kind.of(terms) {
                    if !t.matches(pod.namespace(), pod.labels()) {
                        continue;
                    }
                    let i = match out.iter().position(|(ot, ow, _)| ot == t && *ow == w) {
                        Some(i) => i,
                        None => {
                            out.push((t.clone(), w, HashMap::new()));
                            out.len() - 1
                        }
                    };
                    if let Some(v) = n.labels().get(&t.topology_key) {
                        *out[i].2.entry(v.clone()).or_default() += 1;
                    }
                }
            }
        }
        out.into_iter()
            .map(|(term, weight, counts)| ExistingTerm {
                topology_key: term.topology_key,
                weight,
                counts: Arc::new(counts),
            })
            .collect()
    }

    /// The selector upstream's `DefaultSelector` builds for a pod from the Services,
    /// ReplicationControllers, ReplicaSets and StatefulSets selecting it (system default
    /// spreading); `None` when nothing selects it or nothing is known of them.
    fn default_spread_selector(&self, _pod: &PodInfo) -> Option<Selector> {
        None
    }
}

/// A Filter plugin whose verdict depends on other nodes' pods (InterPodAffinity,
/// PodTopologySpread): PreFilter sees the whole cluster once per cycle and writes what Filter
/// reads into the cycle state; when it writes nothing, Filter is skipped for this pod.
pub trait ClusterFilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn pre_filter(&self, pod: &PodInfo, nodes: &dyn ClusterNodes, state: &mut CycleState)
    -> Status;
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// A Score plugin that needs a per-cycle view of the cluster: PreScore writes its state (or
/// nothing, and then every node scores 0 from it).
pub trait ClusterScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn pre_score(
        &self,
        pod: &PodInfo,
        nodes: &dyn ClusterNodes,
        feasible: &[&NodeInfo],
        state: &mut CycleState,
    );
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    fn normalize(&self, _state: &CycleState, _scores: &mut [i64]) {}
}

/// The highest score a node gets from one plugin.
pub const MAX_NODE_SCORE: i64 = 100;

/// Scales `scores` so the highest becomes 100 (or, with `reverse`, the highest becomes 0).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// One profile's plugins, in the order they run.
pub struct Framework {
    pub pre_filters: Vec<Box<dyn PreFilterPlugin>>,
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Score plugins with their weights.
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
    /// Filter plugins with a PreFilter over the cluster; they run after `filters`.
    pub cluster_filters: Vec<Box<dyn ClusterFilterPlugin>>,
    /// Score plugins with a PreScore over the cluster, with their weights.
    pub cluster_scores: Vec<(Box<dyn ClusterScorePlugin>, i64)>,
}

impl Framework {
    /// Runs the PreFilter plugins; the first failure wins.
    pub fn run_pre_filters(&self, pod: &PodInfo) -> Status {
        for p in &self.pre_filters {
            let s = p.pre_filter(pod);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    /// Runs the PreFilter of the cluster-wide Filter plugins; the first failure wins.
    pub fn run_cluster_pre_filters(
        &self,
        pod: &PodInfo,
        nodes: &dyn ClusterNodes,
        state: &mut CycleState,
    ) -> Status {
        for p in &self.cluster_filters {
            let s = p.pre_filter(pod, nodes, state);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    /// Runs the Filter plugins on one node; the first failure wins, as upstream.
    pub fn run_filters(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        self.run_filters_with(&CycleState::default(), pod, node)
    }

    /// Runs the Filter plugins, then the cluster-wide ones whose PreFilter left state.
    pub fn run_filters_with(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for p in &self.filters {
            let s = p.filter(pod, node);
            if !s.is_success() {
                return s;
            }
        }
        for p in &self.cluster_filters {
            let s = p.filter(state, pod, node);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    /// Weighted total score of each node in `nodes`, in the same order.
    pub fn run_scores(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut total = vec![0; nodes.len()];
        for (plugin, weight) in &self.scores {
            let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(pod, n)).collect();
            plugin.normalize(&mut scores);
            for (t, s) in total.iter_mut().zip(scores) {
                *t += s * weight;
            }
        }
        total
    }

    /// Like [`Framework::run_scores`], adding the cluster-wide Score plugins (PreScore once).
    pub fn run_scores_with(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &dyn ClusterNodes,
        nodes: &[&NodeInfo],
    ) -> Vec<i64> {
        let mut total = self.run_scores(pod, nodes);
        for (plugin, weight) in &self.cluster_scores {
            plugin.pre_score(pod, cluster, nodes, state);
            let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(state, pod, n)).collect();
            plugin.normalize(state, &mut scores);
            for (t, s) in total.iter_mut().zip(scores) {
                *t += s * weight;
            }
        }
        total
    }
}

/// Why a pod fits on no node: the status of each node that was tried.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub num_all_nodes: usize,
    pub node_statuses: Vec<(String, Status)>,
}

impl Diagnosis {
    /// Upstream's message: `0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't
    /// match Pod's node affinity/selector.` followed by the preemption part.
    pub fn message(&self, preemption: &str) -> String {
        let head = fit_message(
            self.num_all_nodes,
            self.node_statuses.iter().map(|(_, s)| s),
        );
        if preemption.is_empty() {
            head
        } else {
            format!("{head} {preemption}")
        }
    }
}

/// `0/N nodes are available: <count reason, ...>.` with reasons sorted as upstream sorts them.
pub fn fit_message<'a>(num_all_nodes: usize, statuses: impl Iterator<Item = &'a Status>) -> String {
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses {
        for r in &s.reasons {
            *histogram.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut reasons: Vec<String> = histogram
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    reasons.sort();
    format!(
        "0/{num_all_nodes} nodes are available: {}.",
        reasons.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_message_counts_and_sorts_reasons() {
        let statuses = [
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector"),
            Status::unschedulable("Insufficient memory"),
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector"),
        ];
        assert_eq!(
            fit_message(3, statuses.iter()),
            "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector."
        );
        let both = Status {
            code: Code::Unschedulable,
            reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
        };
        assert_eq!(
            fit_message(1, [both].iter()),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
        );
    }

    #[test]
    fn normalize_scales_to_max() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
