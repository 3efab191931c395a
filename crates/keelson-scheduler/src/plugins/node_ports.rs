//! NodePorts: a pod asking for a host port fits only on nodes where no pod holds it.

use crate::framework::{FilterPlugin, HostPort, NodeInfo, PodInfo, Status};

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

/// Whether two host ports clash: same protocol and port, and the same IP or either on all
/// addresses (`0.0.0.0`).
fn conflicts(a: &HostPort, b: &HostPort) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        let clash = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.keys().any(|used| conflicts(want, used)));
        if clash {
            Status::unschedulable(REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn with_ports(name: &str, ports: Value) -> PodInfo {
        let mut p = pod(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "ports": ports}]}}));
        p.pod = std::sync::Arc::new((*p.pod).clone());
        p
    }

    fn check(used: Value, want: Value, fits: bool) {
        let mut n = node(json!({}));
        n.add_pod(with_ports("existing", used.clone()));
        let s = NodePorts.filter(&with_ports("new", want.clone()), &n);
        assert_eq!(s.is_success(), fits, "{used} vs {want}");
    }

    #[test]
    fn host_port_conflicts() {
        let p80 = json!([{"containerPort": 80, "hostPort": 8080}]);
        check(json!([]), p80.clone(), true);
        check(p80.clone(), p80.clone(), false);
        check(p80.clone(), json!([{"containerPort": 80}]), true);
        check(
            p80.clone(),
            json!([{"containerPort": 80, "hostPort": 8081}]),
            true,
        );
        check(
            p80.clone(),
            json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]),
            true,
        );
        check(
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]),
            true,
        );
        check(
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
            p80,
            false,
        );
    }

    #[test]
    fn removing_the_pod_frees_its_port() {
        let mut n = node(json!({}));
        let p80 = json!([{"containerPort": 80, "hostPort": 8080}]);
        n.add_pod(with_ports("existing", p80.clone()));
        n.remove_pod("default/existing");
        assert!(NodePorts.filter(&with_ports("new", p80), &n).is_success());
    }
}
