//! The node lifecycle controller with the real kubectl: a node whose Lease stops being renewed
//! turns Unknown and is tainted unreachable, its pods that do not tolerate that are evicted,
//! and the taints go once the node is back.

mod common;

use common::{Cluster, eventually, have_kubectl};

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn renew(c: &Cluster) {
    let lease = format!(
        "apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: quiet
  namespace: kube-node-lease
spec:
  holderIdentity: quiet
  leaseDurationSeconds: 40
  renewTime: \"{}\"
",
        now()
    );
    c.apply_stdin("apply", &lease);
}

fn set_ready(c: &Cluster) {
    let t = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = format!(
        r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"{t}","lastTransitionTime":"{t}"}}]}}}}"#
    );
    c.ok(&[
        "patch",
        "node",
        "quiet",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn taints(c: &Cluster) -> String {
    c.ok(&[
        "get",
        "node",
        "quiet",
        "-o",
        "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}",
    ])
}

#[test]
fn a_quiet_node_turns_unknown_and_its_pods_are_evicted() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--node-monitor-grace-period", "3s", "--disable-scheduler"]);
    c.apply_stdin(
        "apply",
        "apiVersion: v1
kind: Node
metadata:
  name: quiet
",
    );
    set_ready(&c);
    renew(&c);
    // Every pod gets upstream's default 300 s tolerations of these taints at admission; "brief"
    // tolerates the unreachable taint for 2 s only, "patient" for ever.
    for (name, seconds) in [("brief", "\n    tolerationSeconds: 2"), ("patient", "")] {
        c.apply_stdin(
            "apply",
            &format!(
                "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: quiet
  containers:
  - name: c
    image: busybox
  tolerations:
  - key: node.kubernetes.io/unreachable
    operator: Exists
    effect: NoExecute{seconds}
"
            ),
        );
    }
    // Healthy while the Lease is fresh (a slow machine may have let it lapse meanwhile).
    renew(&c);
    set_ready(&c);
    eventually(10, || taints(&c).trim().is_empty().then_some(()));
    // Quiet: Unknown, tainted, and the pod without a toleration is evicted.
    eventually(20, || {
        let status = c.ok(&[
            "get",
            "node",
            "quiet",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}",
        ]);
        (status == "Unknown/NodeStatusUnknown").then_some(())
    });
    assert_eq!(
        c.ok(&["get", "nodes", "--no-headers"])
            .split_whitespace()
            .nth(1),
        Some("NotReady")
    );
    eventually(20, || {
        let t = taints(&c);
        (t.contains("node.kubernetes.io/unreachable:NoSchedule")
            && t.contains("node.kubernetes.io/unreachable:NoExecute"))
        .then_some(())
    });
    eventually(20, || {
        let d = c.ok(&[
            "get",
            "pod",
            "brief",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
        (!d.is_empty()).then_some(())
    });
    let patient = c.ok(&[
        "get",
        "pod",
        "patient",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert_eq!(patient, "", "a pod tolerating the taint forever stays");
    // Back: the taints go.
    renew(&c);
    set_ready(&c);
    eventually(20, || taints(&c).trim().is_empty().then_some(()));
}
