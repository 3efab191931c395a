//! The in-tree plugins, one module each, and the default profile that wires them together.

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod scoring_strategy;
pub mod taint_toleration;
pub mod volume_binding;

use crate::framework::Framework;
use scoring_strategy::{NodeResourcesFitScore, ScoringStrategy};

/// The default profile: upstream's default plugins that this scheduler has, in upstream's
/// order, with upstream's score weights.
pub fn default_framework() -> Framework {
    framework_with(volume_binding::VolumeListers::default())
}

/// The default profile, its VolumeBinding plugin reading `volumes` (built, as every profile,
/// by [`crate::config::Profile::framework`]).
pub fn framework_with(volumes: volume_binding::VolumeListers) -> Framework {
    crate::config::Profile::default().framework(volumes)
}

/// The profile `fw` with NodeResourcesFit scoring by `strategy` (LeastAllocated by default,
/// MostAllocated for bin packing, RequestedToCapacityRatio).
pub fn with_scoring_strategy(mut fw: Framework, strategy: ScoringStrategy) -> Framework {
    for (plugin, _) in fw.scores.iter_mut() {
        if plugin.name() == "NodeResourcesFit" {
            *plugin = Box::new(NodeResourcesFitScore::new(strategy.clone()));
        }
    }
    fw
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Pods and nodes for plugin tests, written as JSON.

    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};

    use crate::framework::{NodeInfo, PodInfo};

    pub fn pod(json: serde_json::Value) -> PodInfo {
        let mut json = json;
        if json.get("metadata").is_none() {
            json["metadata"] = serde_json::json!({"name": "p", "namespace": "default"});
        }
        if json.pointer("/spec/containers").is_none() {
            json["spec"]["containers"] = serde_json::json!([{"name": "c"}]);
        }
        let pod: Pod = serde_json::from_value(json).expect("pod JSON");
        PodInfo::new(Arc::new(pod))
    }

    pub fn node(json: serde_json::Value) -> NodeInfo {
        let mut json = json;
        if json.pointer("/metadata/name").is_none() {
            json["metadata"]["name"] = "n".into();
        }
        let node: Node = serde_json::from_value(json).expect("node JSON");
        NodeInfo::new(Arc::new(node))
    }

    /// Nodes with their pods, as the cluster-wide plugins see them.
    pub struct Cluster(pub Vec<NodeInfo>);

    impl Cluster {
        /// Puts a pod on the named node.
        pub fn add(&mut self, node: &str, pod: PodInfo) {
            if let Some(n) = self.0.iter_mut().find(|n| n.name() == node) {
                n.add_pod(pod);
            }
        }
    }

    impl crate::framework::ClusterNodes for Cluster {
        fn all_nodes(&self) -> Vec<&NodeInfo> {
            self.0.iter().collect()
        }

        fn num_pods_with_affinity(&self) -> usize {
            self.0.iter().map(|n| n.pods_with_affinity).sum()
        }

        fn num_pods_with_required_anti_affinity(&self) -> usize {
            self.0
                .iter()
                .map(|n| n.pods_with_required_anti_affinity)
                .sum()
        }
    }
}
