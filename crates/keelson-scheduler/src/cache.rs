//! The scheduler's cache: every node with the pods bound or assumed to it, kept current from
//! watch events; a scheduling cycle reads it as its snapshot.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{
    ClusterNodes, CountMap, ExistingTerm, NodeInfo, PodInfo, TermKind, count_on, has_keys, pod_key,
};
use crate::terms::{PodMatcher, Selector, Term};
use crate::workloads::WorkloadListers;

/// How many pod matchers (selectors of spread constraints and affinity terms) the cache keeps
/// counts for; the least recently used one goes when another is asked for.
const MAX_MATCHERS: usize = 64;
/// How many (key, keys) domain sets one matcher, and the cache, keep.
const MAX_DOMAIN_SETS: usize = 16;

/// A topology key with the keys a node must have to count (the key among them).
type DomainKey = (String, Vec<String>);
/// Nodes per value of a topology key.
type NodeCounts = Arc<HashMap<String, usize>>;

/// The pods one matcher counts, per node and per domain.
struct MatcherEntry {
    last_used: u64,
    per_node: CountMap,
    per_domain: Vec<(DomainKey, CountMap)>,
}

/// Holders of one distinct term of existing pods.
struct TermEntry {
    kind: TermKind,
    term: Term,
    weight: i64,
    /// Pods (on existing nodes) holding the term.
    owners: i64,
    counts: CountMap,
}

/// Counts kept current for the cluster-wide plugins, built the first time a cycle asks and
/// updated as pods and nodes change; only pods on existing nodes count.
#[derive(Default)]
struct Index {
    clock: u64,
    matchers: HashMap<PodMatcher, MatcherEntry>,
    domains: Vec<(DomainKey, u64, NodeCounts)>,
    /// Distinct terms of existing pods, by a hash of (kind, term, weight).
    terms: HashMap<u64, Vec<TermEntry>>,
}

fn bump<T>(map: &mut HashMap<String, T>, key: &str, by: T)
where
    T: Copy + Default + PartialEq + std::ops::AddAssign,
{
    match map.get_mut(key) {
        Some(c) => {
            *c += by;
            if *c == T::default() {
                map.remove(key);
            }
        }
        None => {
            if by != T::default() {
                map.insert(key.to_string(), by);
            }
        }
    }
}

fn term_hash(kind: TermKind, term: &Term, weight: i64) -> u64 {
    let mut h = DefaultHasher::new();
    (kind, term, weight).hash(&mut h);
    h.finish()
}

impl Index {
    /// Counts (`sign` 1) or uncounts (-1) a pod on an existing node.
    fn apply_pod(&mut self, node: &NodeInfo, pod: &PodInfo, sign: i64) {
        let labels = node.labels();
        for (m, e) in self.matchers.iter_mut() {
            if !pod.matched_by(m) {
                continue;
            }
            bump(Arc::make_mut(&mut e.per_node), node.name(), sign);
            for ((key, keys), counts) in e.per_domain.iter_mut() {
                if let Some(v) = labels.get(key)
                    && has_keys(labels, keys)
                {
                    bump(Arc::make_mut(counts), v, sign);
                }
            }
        }
        let Some(terms) = pod.affinity.as_deref() else {
            return;
        };
        for kind in TermKind::ALL {
            for (term, weight) in kind.of(terms) {
                let bucket = self.terms.entry(term_hash(kind, term, weight)).or_default();
                let i = match bucket
                    .iter()
                    .position(|e| e.kind == kind && e.weight == weight && &e.term == term)
                {
                    Some(i) => i,
                    None => {
                        bucket.push(TermEntry {
                            kind,
                            term: term.clone(),
                            weight,
                            owners: 0,
                            counts: CountMap::default(),
                        });
                        bucket.len() - 1
                    }
                };
                let e = &mut bucket[i];
                e.owners += sign;
                if let Some(v) = labels.get(&term.topology_key) {
                    bump(Arc::make_mut(&mut e.counts), v, sign);
                }
                if e.owners <= 0 {
                    bucket.swap_remove(i);
                }
            }
        }
    }

    /// Counts or uncounts an existing node with its pods.
    fn apply_node(&mut self, node: &NodeInfo, sign: i64) {
        let labels = node.labels();
        for ((key, keys), _, nodes) in self.domains.iter_mut() {
            if let Some(v) = labels.get(key)
                && has_keys(labels, keys)
            {
                let n = Arc::make_mut(nodes);
                match n.get_mut(v.as_str()) {
                    Some(c) if sign < 0 => {
                        *c = c.saturating_sub(1);
                        if *c == 0 {
                            n.remove(v.as_str());
                        }
                    }
                    Some(c) => *c += 1,
                    None if sign > 0 => {
                        n.insert(v.clone(), 1);
                    }
                    None => {}
                }
            }
        }
        for pod in node.pods.values() {
            self.apply_pod(node, pod, sign);
        }
    }
}

/// Nodes, their pods, and which pods are only assumed (decided, bind not yet seen).
#[derive(Default)]
pub struct Cache {
    nodes: HashMap<String, NodeInfo>,
    /// Names of the nodes that exist (not ghosts holding pods of a deleted node), in the order
    /// cycles walk them.
    order: Vec<String>,
    /// Pod key → (node name, assumed).
    pods: HashMap<String, (String, bool)>,
    /// Where the next cycle starts walking `order`, so nodes share the load.
    pub next_start: usize,
    /// Pods with terms other pods' scores read (`PodInfo::has_affinity`), cluster-wide.
    pods_with_affinity: usize,
    /// Pods with required pod anti-affinity terms, cluster-wide.
    pods_with_required_anti_affinity: usize,
    /// `order` as a set.
    listed: HashSet<String>,
    /// Counts for InterPodAffinity and PodTopologySpread.
    index: Mutex<Index>,
    /// The Services, ReplicationControllers, ReplicaSets and StatefulSets system default
    /// spreading reads, when the scheduler watches them.
    workloads: Option<WorkloadListers>,
}

impl ClusterNodes for Cache {
    fn all_nodes(&self) -> Vec<&NodeInfo> {
        self.order
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .collect()
    }

    fn num_pods_with_affinity(&self) -> usize {
        self.pods_with_affinity
    }

    fn num_pods_with_required_anti_affinity(&self) -> usize {
        self.pods_with_required_anti_affinity
    }

    fn pods_per_node(&self, m: &PodMatcher) -> CountMap {
        let mut index = self.lock();
        self.matcher_entry(&mut index, m).per_node.clone()
    }

    fn pods_per_domain(&self, m: &PodMatcher, key: &str, keys: &[String]) -> CountMap {
        let mut index = self.lock();
        let e = self.matcher_entry(&mut index, m);
        if let Some((_, counts)) = e
            .per_domain
            .iter()
            .find(|((k, ks), _)| k == key && ks == keys)
        {
            return counts.clone();
        }
        let mut counts: HashMap<String, i64> = HashMap::new();
        for (name, c) in e.per_node.iter() {
            let Some(labels) = self.nodes.get(name).map(NodeInfo::labels) else {
                continue;
            };
            if let Some(v) = labels.get(key)
                && has_keys(labels, keys)
            {
                *counts.entry(v.clone()).or_default() += c;
            }
        }
        let counts = Arc::new(counts);
        if e.per_domain.len() >= MAX_DOMAIN_SETS {
            e.per_domain.remove(0);
        }
        e.per_domain
            .push(((key.to_string(), keys.to_vec()), counts.clone()));
        counts
    }

    fn domains(&self, key: &str, keys: &[String]) -> Arc<HashMap<String, usize>> {
        let mut index = self.lock();
        index.clock += 1;
        let now = index.clock;
        if let Some((_, used, nodes)) = index
            .domains
            .iter_mut()
            .find(|((k, ks), _, _)| k == key && ks == keys)
        {
            *used = now;
            return nodes.clone();
        }
        let mut nodes: HashMap<String, usize> = HashMap::new();
        for n in self.all_nodes() {
            let labels = n.labels();
            if let Some(v) = labels.get(key)
                && has_keys(labels, keys)
            {
                *nodes.entry(v.clone()).or_default() += 1;
            }
        }
        let nodes = Arc::new(nodes);
        if index.domains.len() >= MAX_DOMAIN_SETS
            && let Some(oldest) = (0..index.domains.len()).min_by_key(|i| index.domains[*i].1)
        {
            index.domains.swap_remove(oldest);
        }
        index
            .domains
            .push(((key.to_string(), keys.to_vec()), now, nodes.clone()));
        nodes
    }

    fn existing_terms(&self, kind: TermKind, pod: &PodInfo) -> Vec<ExistingTerm> {
        let index = self.lock();
        index
            .terms
            .values()
            .flatten()
            .filter(|e| e.kind == kind && e.term.matches(pod.namespace(), pod.labels()))
            .map(|e| ExistingTerm {
                topology_key: e.term.topology_key.clone(),
                weight: e.weight,
                counts: e.counts.clone(),
            })
            .collect()
    }

    fn default_spread_selector(&self, pod: &PodInfo) -> Option<Selector> {
        self.workloads.as_ref()?.default_selector(&pod.pod)
    }
}

/// Whether a node change can make a pod fit that did not before.
fn scheduling_relevant(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.unschedulable, s.taints.clone()));
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    old.metadata.labels != new.metadata.labels || spec(old) != spec(new) || alloc(old) != alloc(new)
}

impl Cache {
    /// A cache reading Services, ReplicationControllers, ReplicaSets and StatefulSets from
    /// `workloads` for system default spreading.
    pub fn with_workloads(workloads: WorkloadListers) -> Cache {
        Cache {
            workloads: Some(workloads),
            ..Cache::default()
        }
    }

    /// The watches filling the workload listers (see [`WorkloadListers::changes`]).
    pub fn workload_changes(
        &self,
        client: &kube::Client,
    ) -> futures::stream::BoxStream<'static, ()> {
        match &self.workloads {
            Some(w) => w.changes(client).boxed(),
            None => futures::stream::empty().boxed(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counts of `m`, built from the nodes when first asked.
    fn matcher_entry<'a>(&self, index: &'a mut Index, m: &PodMatcher) -> &'a mut MatcherEntry {
        index.clock += 1;
        let now = index.clock;
        if index.matchers.len() >= MAX_MATCHERS
            && !index.matchers.contains_key(m)
            && let Some(oldest) = index
                .matchers
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            index.matchers.remove(&oldest);
        }
        let e = index.matchers.entry(m.clone()).or_insert_with(|| {
            let mut per_node = HashMap::new();
            for n in self.all_nodes() {
                let c = count_on(m, n);
                if c > 0 {
                    per_node.insert(n.name().to_string(), c);
                }
            }
            MatcherEntry {
                last_used: now,
                per_node: Arc::new(per_node),
                per_domain: Vec::new(),
            }
        });
        e.last_used = now;
        e
    }

    /// The index, for updates (no lock: `&mut self`).
    fn index_mut(index: &mut Mutex<Index>) -> &mut Index {
        index.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of nodes that exist.
    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// The nodes in walking order.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    pub fn node_names(&self) -> Vec<String> {
        self.order.clone()
    }

    /// Adds or updates a node; returns whether the change could help pending pods.
    pub fn add_or_update_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let is_listed = self.listed.contains(&name);
        let index = Self::index_mut(&mut self.index);
        match self.nodes.get_mut(&name) {
            Some(info) => {
                let labels_changed = info.node.metadata.labels != node.metadata.labels;
                let relevant = !is_listed || scheduling_relevant(&info.node, &node);
                if is_listed && labels_changed {
                    index.apply_node(info, -1);
                }
                info.set_node(node);
                if !is_listed || labels_changed {
                    index.apply_node(info, 1);
                }
                if !is_listed {
                    self.order.push(name.clone());
                    self.listed.insert(name);
                }
                relevant
            }
            None => {
                let info = NodeInfo::new(node);
                index.apply_node(&info, 1);
                self.nodes.insert(name.clone(), info);
                self.order.push(name.clone());
                self.listed.insert(name);
                true
            }
        }
    }

    /// Removes a node; its pods stay counted (as upstream) until they are deleted.
    pub fn remove_node(&mut self, name: &str) {
        if !self.listed.remove(name) {
            return;
        }
        self.order.retain(|n| n != name);
        if let Some(info) = self.nodes.get(name) {
            Self::index_mut(&mut self.index).apply_node(info, -1);
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    fn ghost(name: &str) -> NodeInfo {
        let mut node = Node::default();
        node.metadata.name = Some(name.to_string());
        NodeInfo::new(Arc::new(node))
    }

    fn place(&mut self, node: &str, info: PodInfo, assumed: bool) {
        let key = info.key();
        if self.pods.contains_key(&key) {
            self.remove_pod(&key);
        }
        let info_node = self
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| Self::ghost(node));
        if self.listed.contains(node) {
            Self::index_mut(&mut self.index).apply_pod(info_node, &info, 1);
        }
        let before = (
            info_node.pods_with_affinity,
            info_node.pods_with_required_anti_affinity,
        );
        info_node.add_pod(info);
        self.pods_with_affinity = self.pods_with_affinity + info_node.pods_with_affinity - before.0;
        self.pods_with_required_anti_affinity = self.pods_with_required_anti_affinity
            + info_node.pods_with_required_anti_affinity
            - before.1;
        self.pods.insert(key, (node.to_string(), assumed));
    }

    /// A pod bound to a node (seen in a watch event); confirms an assumed pod.
    pub fn add_or_update_pod(&mut self, pod: Arc<Pod>) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        self.place(&node, PodInfo::new(pod), false);
    }

    /// Counts a pod on the node the scheduler chose, before the bind is seen.
    pub fn assume(&mut self, info: PodInfo, node: &str) {
        self.place(node, info, true);
    }

    /// Whether a pod is assumed (decided but its bind not yet seen).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|(_, assumed)| *assumed)
    }

    /// Forgets an assumed pod whose bind failed; bound pods are left alone.
    pub fn forget(&mut self, key: &str) {
        if self.is_assumed(key) {
            self.remove_pod(key);
        }
    }

    /// Removes a pod (deleted or finished).
    pub fn remove_pod(&mut self, key: &str) {
        let Some((node, _)) = self.pods.remove(key) else {
            return;
        };
        let listed = self.listed.contains(&node);
        let now_empty_ghost = match self.nodes.get_mut(&node) {
            Some(info) => {
                if let Some(gone) = info.remove_pod(key) {
                    self.pods_with_affinity -= usize::from(gone.has_affinity);
                    self.pods_with_required_anti_affinity -=
                        usize::from(gone.has_required_anti_affinity);
                    if listed {
                        Self::index_mut(&mut self.index).apply_pod(info, &gone, -1);
                    }
                }
                info.pods.is_empty() && !listed
            }
            None => false,
        };
        if now_empty_ghost {
            self.nodes.remove(&node);
        }
    }

    /// Keys of every pod the cache holds.
    pub fn pod_keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// The node a pod is on (bound or assumed).
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|(n, _)| n.as_str())
    }
}

/// The cache key of a pod.
pub fn key(pod: &Pod) -> String {
    pod_key(pod)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
            .expect("node"),
        )
    }

    fn pod(name: &str, node: Option<&str>, memory: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c",
                    "resources": {"requests": {"memory": memory}}}]}}))
            .expect("pod"),
        )
    }

    #[test]
    fn assumed_pods_count_until_forgotten_or_confirmed() {
        let mut c = Cache::default();
        c.add_or_update_node(node("a"));
        c.assume(PodInfo::new(pod("p", None, "1Gi")), "a");
        assert!(c.is_assumed("default/p"));
        assert_eq!(c.node("a").map(|n| n.requested.memory), Some(1 << 30));
        c.forget("default/p");
        assert_eq!(c.node("a").map(|n| n.requested.memory), Some(0));

        c.assume(PodInfo::new(pod("p", None, "1Gi")), "a");
        c.add_or_update_pod(pod("p", Some("a"), "1Gi"));
        assert!(!c.is_assumed("default/p"));
        c.forget("default/p");
        assert_eq!(
            c.node("a").map(|n| n.pods.len()),
            Some(1),
            "bound pods are not forgotten"
        );
        c.remove_pod("default/p");
        assert_eq!(c.node("a").map(|n| n.requested.memory), Some(0));
    }

    #[test]
    fn pods_of_unknown_nodes_are_kept_on_ghosts() {
        let mut c = Cache::default();
        c.add_or_update_pod(pod("p", Some("later"), "1Gi"));
        assert_eq!(c.num_nodes(), 0);
        assert!(c.add_or_update_node(node("later")));
        assert_eq!(c.node("later").map(|n| n.pods.len()), Some(1));
        c.remove_node("later");
        assert_eq!(c.num_nodes(), 0);
        c.remove_pod("default/p");
        assert!(c.node("later").is_none());
    }

    #[test]
    fn only_scheduling_changes_of_nodes_are_relevant() {
        let mut c = Cache::default();
        assert!(c.add_or_update_node(node("a")));
        assert!(
            !c.add_or_update_node(node("a")),
            "a heartbeat changes nothing"
        );
        let mut labelled = (*node("a")).clone();
        labelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        assert!(c.add_or_update_node(Arc::new(labelled)));
    }

    /// The cache seen through the plain (walking) implementations of `ClusterNodes`.
    struct Walk<'a>(&'a Cache);

    impl ClusterNodes for Walk<'_> {
        fn all_nodes(&self) -> Vec<&NodeInfo> {
            self.0.all_nodes()
        }
        fn num_pods_with_affinity(&self) -> usize {
            self.0.num_pods_with_affinity()
        }
        fn num_pods_with_required_anti_affinity(&self) -> usize {
            self.0.num_pods_with_required_anti_affinity()
        }
    }

    fn labelled_node(name: &str, labels: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("node"),
        )
    }

    fn labelled_pod(name: &str, ns: &str, labels: serde_json::Value, terminating: bool) -> PodInfo {
        let mut v = json!({"metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c"}], "affinity": {
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]},
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 7, "podAffinityTerm": {"labelSelector": {"matchLabels": labels},
                        "topologyKey": "kubernetes.io/hostname"}}]}}}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        PodInfo::new(Arc::new(serde_json::from_value(v).expect("pod")))
    }

    fn sorted(m: &CountMap) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort();
        v
    }

    /// Every count the plugins ask for, as the cache keeps it and as a walk finds it.
    fn check_same(c: &Cache, step: &str) {
        let web = |skip| PodMatcher {
            terms: vec![(
                crate::terms::Namespaces::Listed(vec!["default".into()]),
                Selector::new(Some(
                    &serde_json::from_value(json!({"matchLabels": {"app": "web"}}))
                        .expect("selector"),
                )),
            )],
            skip_terminating: skip,
        };
        let zone = "zone".to_string();
        let host = "kubernetes.io/hostname".to_string();
        for m in [web(true), web(false)] {
            assert_eq!(
                sorted(&c.pods_per_node(&m)),
                sorted(&Walk(c).pods_per_node(&m)),
                "{step}: per node"
            );
            for keys in [vec![zone.clone()], vec![host.clone(), zone.clone()]] {
                assert_eq!(
                    sorted(&c.pods_per_domain(&m, &zone, &keys)),
                    sorted(&Walk(c).pods_per_domain(&m, &zone, &keys)),
                    "{step}: per domain {keys:?}"
                );
                let mut a: Vec<_> = c
                    .domains(&zone, &keys)
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                let mut b: Vec<_> = Walk(c)
                    .domains(&zone, &keys)
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                a.sort();
                b.sort();
                assert_eq!(a, b, "{step}: domains {keys:?}");
            }
        }
        let incoming = labelled_pod("new", "default", json!({"app": "web"}), false);
        for kind in TermKind::ALL {
            let terms = |n: &dyn ClusterNodes| {
                type Row = (String, i64, Vec<(String, i64)>);
                let mut v: Vec<Row> = n
                    .existing_terms(kind, &incoming)
                    .iter()
                    .map(|e| (e.topology_key.clone(), e.weight, sorted(&e.counts)))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(terms(c), terms(&Walk(c)), "{step}: terms {kind:?}");
        }
    }

    #[test]
    fn kept_counts_match_a_walk_through_every_change() {
        let mut c = Cache::default();
        for (n, z) in [("a", "x"), ("b", "x"), ("c", "y")] {
            c.add_or_update_node(labelled_node(
                n,
                json!({"zone": z, "kubernetes.io/hostname": n}),
            ));
        }
        c.add_or_update_node(labelled_node("d", json!({"zone": "y"})));
        // Ask first, so the counts exist before the pods arrive and are kept from then on.
        check_same(&c, "empty");
        let web = json!({"app": "web"});
        c.assume(labelled_pod("w1", "default", web.clone(), false), "a");
        c.assume(labelled_pod("w2", "default", web.clone(), false), "c");
        c.assume(labelled_pod("w3", "default", web.clone(), false), "d");
        c.assume(
            labelled_pod("db", "default", json!({"app": "db"}), false),
            "b",
        );
        c.assume(labelled_pod("other", "other", web.clone(), false), "b");
        c.add_or_update_pod(
            labelled_pod("ghost", "default", web.clone(), false)
                .pod
                .as_ref()
                .clone()
                .tap_node("gone"),
        );
        check_same(&c, "placed");
        c.add_or_update_pod(
            labelled_pod("w1", "default", web.clone(), true)
                .pod
                .as_ref()
                .clone()
                .tap_node("a"),
        );
        check_same(&c, "w1 terminating");
        c.add_or_update_pod(
            labelled_pod("w2", "default", json!({"app": "db"}), false)
                .pod
                .as_ref()
                .clone()
                .tap_node("c"),
        );
        check_same(&c, "w2 relabelled");
        c.remove_pod("default/w3");
        check_same(&c, "w3 deleted");
        c.add_or_update_node(labelled_node(
            "a",
            json!({"zone": "y", "kubernetes.io/hostname": "a"}),
        ));
        check_same(&c, "a moved to zone y");
        c.remove_node("a");
        check_same(&c, "a deleted");
        c.add_or_update_node(labelled_node(
            "gone",
            json!({"zone": "z", "kubernetes.io/hostname": "gone"}),
        ));
        c.add_or_update_node(labelled_node(
            "a",
            json!({"zone": "x", "kubernetes.io/hostname": "a"}),
        ));
        check_same(&c, "nodes back");
        for k in c.pod_keys() {
            c.remove_pod(&k);
        }
        check_same(&c, "all pods gone");
    }

    trait TapNode {
        fn tap_node(self, node: &str) -> Arc<Pod>;
    }

    impl TapNode for Pod {
        fn tap_node(mut self, node: &str) -> Arc<Pod> {
            if let Some(spec) = self.spec.as_mut() {
                spec.node_name = Some(node.to_string());
            }
            Arc::new(self)
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A cache holding the same nodes and pods as a plugin test's cluster.

    use super::*;

    /// The nodes of `nodes` with their pods; `warm` runs on the cache before the pods are
    /// added, so counts it asks for are kept current while they arrive.
    pub fn cache_of(nodes: &[NodeInfo], warm: impl FnOnce(&Cache)) -> Cache {
        fill(Cache::default(), nodes, warm)
    }

    /// `c` with the nodes and pods of `nodes`, as [`cache_of`].
    pub fn fill(mut c: Cache, nodes: &[NodeInfo], warm: impl FnOnce(&Cache)) -> Cache {
        for n in nodes {
            c.add_or_update_node(n.node.clone());
        }
        warm(&c);
        for n in nodes {
            for p in n.pods.values() {
                c.assume(p.clone(), n.name());
            }
        }
        c
    }
}
