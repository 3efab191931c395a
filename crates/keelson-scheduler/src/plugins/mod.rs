//! The in-tree plugins, one module each, and the default profile that wires them together.

pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod taint_toleration;

use crate::framework::Framework;

/// The default profile: upstream's default plugins that this scheduler has, in upstream's
/// order, with upstream's score weights.
pub fn default_framework() -> Framework {
    Framework {
        pre_filters: Vec::new(),
        filters: vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources_fit::NodeResourcesFit),
        ],
        scores: vec![
            (Box::new(taint_toleration::TaintToleration), 3),
            (Box::new(node_affinity::NodeAffinity), 2),
            (Box::new(node_resources_fit::NodeResourcesFit), 1),
        ],
    }
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
}
