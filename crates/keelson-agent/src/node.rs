//! The agent's Node and Lease: the object built from the host's facts (pure), registration,
//! and the heartbeat that keeps the Lease and the node conditions current.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::host::{Host, arch};

/// The node's conditions (see [`keelson_kinds::core::node::kubelet_conditions`]).
pub use keelson_kinds::core::node::kubelet_conditions as conditions;

pub use keelson_kinds::core::node::{LEASE_NAMESPACE, lease_object};
/// How often the Lease is renewed.
pub const LEASE_PERIOD: Duration = Duration::from_secs(10);
/// The port of the agent's HTTPS endpoint (logs, later exec), as the kubelet's.
pub const AGENT_PORT: u16 = 10250;
/// The kubelet version a node reports: the Kubernetes version keelson serves.
pub const KUBELET_VERSION: &str = "v1.33.0";

/// Errors of registration and heartbeats.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("renewing the lease of node {node}: {source}")]
    Lease { node: String, source: kube::Error },
    #[error("updating the status of node {node}: {source}")]
    Status { node: String, source: kube::Error },
}

/// How the node looks: the host plus what the agent decides.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub host: Host,
    pub port: u16,
    pub runtime_version: String,
    pub pods: u32,
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn micro(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The node's status at `now` (conditions as `ready` says).
pub fn status(f: &NodeFacts, ready: bool, message: &str, now: &str) -> Value {
    let resources = json!({
        "cpu": f.host.cpus.to_string(),
        "memory": format!("{}Ki", f.host.memory_kib),
        "pods": f.pods.to_string(),
        "ephemeral-storage": format!("{}Ki", f.host.ephemeral_storage_bytes / 1024),
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions(ready, message, now, now),
        "addresses": [
            {"type": "InternalIP", "address": f.host.address.to_string()},
            {"type": "Hostname", "address": f.host.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": f.port}},
        "nodeInfo": {
            "machineID": f.host.machine_id,
            "systemUUID": f.host.machine_id,
            "bootID": f.host.boot_id,
            "kernelVersion": f.host.kernel_version,
            "osImage": f.host.os_image,
            "containerRuntimeVersion": f.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

/// The whole Node object.
pub fn object(f: &NodeFacts, pod_cidr: Option<&str>, now: &str) -> Value {
    let mut spec = json!({});
    if let Some(cidr) = pod_cidr {
        spec = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f.name,
            "labels": {
                "kubernetes.io/hostname": f.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch(),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch(),
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": status(f, false, "container runtime status check may not have completed yet", now),
    })
}

/// Registers the node (or updates an existing one's labels and status); returns it.
pub async fn register(
    client: &Client,
    f: &NodeFacts,
    pod_cidr: Option<&str>,
) -> Result<Node, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| Error::Register {
        node: f.name.clone(),
        source,
    };
    let obj = object(f, pod_cidr, &time(Timestamp::now()));
    let node: Node =
        serde_json::from_value(obj.clone()).map_err(|e| err(kube::Error::SerdeError(e)))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(n) => Ok(n),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": obj["metadata"]["labels"]}});
            api.patch(&f.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Writes the node's status: conditions as `ready` says, with the heartbeat now.
pub async fn post_status(
    client: &Client,
    f: &NodeFacts,
    ready: bool,
    message: &str,
    since: Timestamp,
) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let now = time(Timestamp::now());
    let mut st = status(f, ready, message, &now);
    st["conditions"] = conditions(ready, message, &now, &time(since));
    api.patch_status(
        &f.name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": st})),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Status {
        node: f.name.clone(),
        source,
    })
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(client: &Client, node: &str, node_uid: Option<&str>) -> Result<(), Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = micro(Timestamp::now());
    let err = |source| Error::Lease {
        node: node.to_string(),
        source,
    };
    let patch = json!({"spec": {"renewTime": now, "holderIdentity": node}});
    match api
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease: Lease = serde_json::from_value(lease_object(node, node_uid, &now))
                .map_err(|e| err(kube::Error::SerdeError(e)))?;
            api.create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            host: Host {
                hostname: "n1".into(),
                address: "192.168.1.5".parse().unwrap(),
                cpus: 2,
                memory_kib: 1024,
                ephemeral_storage_bytes: 10 * 1024 * 1024,
                kernel_version: "6.1".into(),
                os_image: "Debian".into(),
                machine_id: "m".into(),
                boot_id: "b".into(),
            },
            port: 10250,
            runtime_version: "containerd://1.6.20".into(),
            pods: 110,
        }
    }

    #[test]
    fn node_object_reports_the_host() {
        let n = object(&facts(), Some("10.42.0.0/24"), "2026-01-01T00:00:00Z");
        let check = |ptr: &str, want: Value| assert_eq!(n.pointer(ptr), Some(&want), "{ptr}");
        check("/metadata/labels/kubernetes.io~1hostname", json!("n1"));
        check("/metadata/labels/kubernetes.io~1os", json!("linux"));
        check("/spec/podCIDR", json!("10.42.0.0/24"));
        check("/status/capacity/cpu", json!("2"));
        check("/status/capacity/memory", json!("1024Ki"));
        check("/status/capacity/ephemeral-storage", json!("10240Ki"));
        check("/status/allocatable/pods", json!("110"));
        check("/status/addresses/0/address", json!("192.168.1.5"));
        check("/status/daemonEndpoints/kubeletEndpoint/Port", json!(10250));
        check(
            "/status/nodeInfo/containerRuntimeVersion",
            json!("containerd://1.6.20"),
        );
        check("/status/conditions/3/status", json!("False"));
        let typed: Result<Node, _> = serde_json::from_value(n);
        assert!(typed.is_ok(), "{typed:?}");
        let ready = conditions(true, "", "t", "t");
        assert_eq!(ready[3]["reason"], "KubeletReady");
    }
}
