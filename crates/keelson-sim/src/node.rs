//! The Node and Lease objects of a simulated node, built without IO.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The label every simulated node carries.
pub const SIMULATED_LABEL: &str = "node.keelson.io/simulated";
pub use keelson_kinds::core::node::{LEASE_NAMESPACE, lease_object};

/// What every simulated node has in common.
#[derive(Clone, Debug)]
pub struct NodeTemplate {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    pub prefix: String,
}

/// The architecture as Kubernetes names it (`amd64`, `arm64`, ...).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The name of node `index`.
pub fn node_name(t: &NodeTemplate, index: usize) -> String {
    format!("{}{index}", t.prefix)
}

/// The fake InternalIP of node `index`: 172.16.0.1, 172.16.0.2, ...
pub fn node_ip(index: usize) -> String {
    let n = index + 1;
    format!(
        "172.{}.{}.{}",
        16 + (n >> 16) % 16,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

/// The fake pod address `host` (2..=254) on node `index`: 10.42.N.x for the first 256 nodes.
pub fn pod_ip(index: usize, host: u8) -> String {
    format!("10.{}.{}.{host}", 42 + (index >> 8) % 200, index & 0xff)
}

/// The node's conditions, all healthy, with `heartbeat` and `since` timestamps.
pub fn conditions(heartbeat: &str, since: &str) -> Value {
    keelson_kinds::core::node::kubelet_conditions(true, "", heartbeat, since)
}

/// The status of node `index` at time `now`.
pub fn node_status(t: &NodeTemplate, index: usize, now: &str) -> Value {
    let name = node_name(t, index);
    let resources = json!({
        "cpu": t.cpu,
        "memory": t.memory,
        "pods": t.pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions(now, now),
        "addresses": [
            {"type": "InternalIP", "address": node_ip(index)},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": format!("sim{index:029}"),
            "systemUUID": format!("sim{index:029}"),
            "bootID": format!("sim{index:029}"),
            "kernelVersion": "keelson-sim",
            "osImage": "keelson simulated node",
            "containerRuntimeVersion": "sim://0.1.0",
            "kubeletVersion": "v1.33.0",
            "kubeProxyVersion": "v1.33.0",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

/// The labels of node `index`: upstream's well-known ones, the simulated marker, and the
/// template's extra labels.
pub fn node_labels(t: &NodeTemplate, index: usize) -> BTreeMap<String, String> {
    let name = node_name(t, index);
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch()),
        (SIMULATED_LABEL, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.extend(t.labels.clone());
    labels
}

/// The whole Node object of node `index`.
pub fn node_object(t: &NodeTemplate, index: usize, now: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name(t, index),
            "labels": node_labels(t, index),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": node_status(t, index, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> NodeTemplate {
        NodeTemplate {
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            labels: [("zone".to_string(), "a".to_string())].into(),
            prefix: "sim-".into(),
        }
    }

    #[test]
    fn node_object_has_capacity_labels_and_ready() {
        let n = node_object(&template(), 1, "2026-01-01T00:00:00Z");
        let check = |ptr: &str, want: Value| assert_eq!(n.pointer(ptr), Some(&want), "{ptr}");
        check("/metadata/name", json!("sim-1"));
        check("/metadata/labels/kubernetes.io~1hostname", json!("sim-1"));
        check("/metadata/labels/kubernetes.io~1os", json!("linux"));
        check("/metadata/labels/node.keelson.io~1simulated", json!("true"));
        check("/metadata/labels/zone", json!("a"));
        check("/status/capacity/memory", json!("8Gi"));
        check("/status/allocatable/cpu", json!("4"));
        check("/status/allocatable/pods", json!("110"));
        check("/status/conditions/3/type", json!("Ready"));
        check("/status/conditions/3/status", json!("True"));
        check("/status/addresses/0/address", json!("172.16.0.2"));
        check("/status/addresses/1/address", json!("sim-1"));
        // The object is a valid Node.
        let typed: Result<k8s_openapi::api::core::v1::Node, _> = serde_json::from_value(n);
        assert!(typed.is_ok(), "{typed:?}");
    }

    #[test]
    fn addresses_are_distinct_per_node() {
        assert_eq!(node_ip(0), "172.16.0.1");
        assert_eq!(node_ip(255), "172.16.1.0");
        assert_ne!(node_ip(300), node_ip(301));
        assert_eq!(pod_ip(0, 2), "10.42.0.2");
        assert_eq!(pod_ip(3, 7), "10.42.3.7");
        assert_eq!(pod_ip(256, 7), "10.43.0.7");
    }

    #[test]
    fn lease_is_owned_by_its_node() {
        let l = lease_object("sim-0", Some("u-1"), "2026-01-01T00:00:00.000000Z");
        assert_eq!(
            l.pointer("/metadata/namespace"),
            Some(&json!("kube-node-lease"))
        );
        assert_eq!(
            l.pointer("/metadata/ownerReferences/0/uid"),
            Some(&json!("u-1"))
        );
        assert_eq!(l.pointer("/spec/holderIdentity"), Some(&json!("sim-0")));
        let typed: Result<k8s_openapi::api::coordination::v1::Lease, _> = serde_json::from_value(l);
        assert!(typed.is_ok(), "{typed:?}");
    }
}
