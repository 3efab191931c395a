//! The Node kind (v1): defaults, field selectors and the `kubectl get nodes` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, at, col, name_cell, s, str_at, wide};

pub static STRATEGY: Typed<Node> = Typed::new("Node", "v1")
    .defaults(defaults)
    .validate(crate::core::validation::validate_cluster_plain)
    .fields(field)
    .table(COLUMNS, row)
    .status(false);

/// SetDefaults_NodeStatus: allocatable defaults to capacity.
fn defaults(node: &mut Node) {
    if let Some(status) = &mut node.status
        && status.allocatable.is_none()
    {
        status.allocatable = status.capacity.clone();
    }
}

fn field(obj: &Value, path: &str) -> Option<String> {
    (path == "spec.unschedulable").then(|| {
        at(obj, &["spec", "unschedulable"])
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string()
    })
}

static COLUMNS: &[Column] = &[
    NAME,
    col("Status", "The status of the node"),
    col("Roles", "The roles of the node"),
    AGE,
    col("Version", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses",
    ),
    wide(
        "External-IP",
        "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses",
    ),
    wide(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

fn status(obj: &Value) -> String {
    let ready = arr_at(obj, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == Some("Ready"));
    let mut parts = vec![match ready {
        Some(c) if str_at(c, &["status"]) == Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(obj, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        parts.push("SchedulingDisabled");
    }
    parts.join(",")
}

/// upstream's findNodeRoles: `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role`.
fn roles(obj: &Value) -> String {
    let mut roles: Vec<&str> = Vec::new();
    for (k, v) in at(obj, &["metadata", "labels"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k
            .strip_prefix("node-role.kubernetes.io/")
            .filter(|r| !r.is_empty())
        {
            roles.push(role);
        } else if k == "kubernetes.io/role" {
            roles.extend(v.as_str().filter(|r| !r.is_empty()));
        }
    }
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

fn address(obj: &Value, kind: &str) -> String {
    arr_at(obj, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == Some(kind))
        .and_then(|a| str_at(a, &["address"]))
        .unwrap_or("<none>")
        .to_string()
}

fn info(obj: &Value, key: &str) -> Value {
    s(str_at(obj, &["status", "nodeInfo", key])
        .filter(|v| !v.is_empty())
        .unwrap_or("<unknown>"))
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        s(status(obj)),
        s(roles(obj)),
        age_cell(obj, now),
        s(str_at(obj, &["status", "nodeInfo", "kubeletVersion"]).unwrap_or("")),
        s(address(obj, "InternalIP")),
        s(address(obj, "ExternalIP")),
        info(obj, "osImage"),
        info(obj, "kernelVersion"),
        info(obj, "containerRuntimeVersion"),
    ]
}
/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a node Lease is valid without renewal (upstream's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// The conditions a node agent posts: the pressures False, Ready as `ready` says (`message`
/// explains a node that is not ready), with `heartbeat` and `since` times.
pub fn kubelet_conditions(ready: bool, message: &str, heartbeat: &str, since: &str) -> Value {
    let c = |type_: &str, status: &str, reason: &str, message: &str| {
        serde_json::json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": heartbeat, "lastTransitionTime": since})
    };
    serde_json::json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        if ready {
            c(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            )
        } else {
            c("Ready", "False", "KubeletNotReady", message)
        },
    ])
}

/// The Lease of a node, owned by the Node (when its UID is known) so it goes when the node does.
pub fn lease_object(node: &str, node_uid: Option<&str>, renew_time: &str) -> Value {
    let owners = node_uid.map_or_else(Vec::new, |uid| {
        vec![serde_json::json!({"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid})]
    });
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": LEASE_NAMESPACE, "ownerReferences": owners},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": renew_time,
        },
    })
}
