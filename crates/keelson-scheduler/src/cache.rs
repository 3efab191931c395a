//! The scheduler's cache: every node with the pods bound or assumed to it, kept current from
//! watch events; a scheduling cycle reads it as its snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{ClusterNodes, NodeInfo, PodInfo, pod_key};

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
}

/// Whether a node change can make a pod fit that did not before.
fn scheduling_relevant(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.unschedulable, s.taints.clone()));
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    old.metadata.labels != new.metadata.labels || spec(old) != spec(new) || alloc(old) != alloc(new)
}

impl Cache {
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
        let is_listed = self.order.contains(&name);
        match self.nodes.get_mut(&name) {
            Some(info) => {
                let relevant = !is_listed || scheduling_relevant(&info.node, &node);
                info.set_node(node);
                if !is_listed {
                    self.order.push(name);
                }
                relevant
            }
            None => {
                self.nodes.insert(name.clone(), NodeInfo::new(node));
                self.order.push(name);
                true
            }
        }
    }

    /// Removes a node; its pods stay counted (as upstream) until they are deleted.
    pub fn remove_node(&mut self, name: &str) {
        self.order.retain(|n| n != name);
        if self.nodes.get(name).is_some_and(|n| n.pods.is_empty()) {
            self.nodes.remove(name);
        }
    }

    fn ghost(name: &str) -> NodeInfo {
        let mut node = Node::default();
        node.metadata.name = Some(name.to_string());
        NodeInfo::new(Arc::new(node))
    }

    fn place(&mut self, node: &str, info: PodInfo, assumed: bool) {
        let key = info.key();
        if self.pods.get(&key).is_some_and(|(old, _)| old != node) {
            self.remove_pod(&key);
        }
        let info_node = self
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| Self::ghost(node));
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
        let now_empty_ghost = match self.nodes.get_mut(&node) {
            Some(info) => {
                if let Some(gone) = info.remove_pod(key) {
                    self.pods_with_affinity -= usize::from(gone.has_affinity);
                    self.pods_with_required_anti_affinity -=
                        usize::from(gone.has_required_anti_affinity);
                }
                info.pods.is_empty() && !self.order.contains(&node)
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
}
