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

/// The default profile, its VolumeBinding plugin reading `volumes`.
pub fn framework_with(volumes: volume_binding::VolumeListers) -> Framework {
    Framework {
        pre_filters: vec![Box::new(volume_binding::VolumeBinding(volumes.clone()))],
        filters: vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources_fit::NodeResourcesFit),
            Box::new(volume_binding::VolumeBinding(volumes)),
        ],
        scores: vec![
            (Box::new(taint_toleration::TaintToleration), 3),
            (Box::new(node_affinity::NodeAffinity), 2),
            (Box::new(node_resources_fit::NodeResourcesFit), 1),
            (
                Box::new(balanced_allocation::NodeResourcesBalancedAllocation),
                1,
            ),
        ],
        cluster_filters: vec![
            Box::new(pod_topology_spread::PodTopologySpread),
            Box::new(inter_pod_affinity::InterPodAffinity),
        ],
        cluster_scores: vec![
            (Box::new(pod_topology_spread::PodTopologySpread), 2),
            (Box::new(inter_pod_affinity::InterPodAffinity), 2),
        ],
    }
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
