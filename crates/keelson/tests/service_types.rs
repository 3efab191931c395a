//! End-to-end: the real kubectl against `keelson server` changing a Service's type, as
//! upstream's PrepareForUpdate does it: fields only the old type used are dropped (node ports
//! released for others to take), unless the user set them in the same update.

mod common;

use common::{Cluster, have_kubectl};
use serde_json::Value;

fn json(c: &Cluster, args: &[&str]) -> Value {
    serde_json::from_str(&c.ok(args)).expect("kubectl -o json")
}

fn node_ports(svc: &Value) -> Vec<u64> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .collect()
}

#[test]
fn a_load_balancer_becomes_a_cluster_ip_and_its_node_ports_are_free_again() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {app: x}\n  ports:\n  - {name: http, port: 80}\n  - {name: https, port: 443}\n",
    );
    let before = json(&c, &["get", "svc", "x", "-o", "json"]);
    let ports = node_ports(&before);
    assert_eq!(ports.len(), 2, "{before}");
    assert_eq!(before["spec"]["externalTrafficPolicy"], "Local", "{before}");
    assert_eq!(
        before["spec"]["allocateLoadBalancerNodePorts"], true,
        "{before}"
    );
    let cluster_ip = before["spec"]["clusterIP"].clone();

    let out = c.ok(&[
        "patch",
        "svc",
        "x",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    assert_eq!(out.trim(), "service/x patched");
    let after = json(&c, &["get", "svc", "x", "-o", "json"]);
    assert_eq!(after["spec"]["type"], "ClusterIP", "{after}");
    assert_eq!(node_ports(&after), Vec::<u64>::new(), "{after}");
    for f in [
        "healthCheckNodePort",
        "allocateLoadBalancerNodePorts",
        "externalTrafficPolicy",
    ] {
        assert!(after["spec"].get(f).is_none(), "{f} kept: {after}");
    }
    assert_eq!(after["spec"]["clusterIP"], cluster_ip, "{after}");
    let table = c.ok(&["get", "svc", "x"]);
    assert!(table.contains("80/TCP,443/TCP"), "{table}");

    // The released node ports can be taken by another Service.
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: again\nspec:\n  type: NodePort\n  selector: {{app: again}}\n  ports:\n  - {{name: a, port: 80, nodePort: {}}}\n  - {{name: b, port: 81, nodePort: {}}}\n",
        ports[0], ports[1]
    );
    c.apply_stdin("create", &yaml);
    let y = json(&c, &["get", "svc", "again", "-o", "json"]);
    assert_eq!(node_ports(&y), ports, "{y}");

    // A NodePort Service back to ClusterIP the same way.
    c.ok(&[
        "patch",
        "svc",
        "again",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let y = json(&c, &["get", "svc", "again", "-o", "json"]);
    assert_eq!(node_ports(&y), Vec::<u64>::new(), "{y}");
}

#[test]
fn a_node_port_set_in_the_same_update_to_cluster_ip_is_still_refused() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "service", "nodeport", "n", "--tcp=80:8080"]);
    let before = json(&c, &["get", "svc", "n", "-o", "json"]);
    let old = node_ports(&before)[0];
    let asked = if old == 30999 { 30998 } else { 30999 };
    let patch = format!(
        r#"{{"spec":{{"type":"ClusterIP","ports":[{{"port":80,"targetPort":8080,"nodePort":{asked}}}]}}}}"#
    );
    let err = c.fails(&["patch", "svc", "n", "--type=merge", "-p", &patch]);
    assert!(
        err.contains(r#"The Service "n" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"#),
        "{err}"
    );
    let still = json(&c, &["get", "svc", "n", "-o", "json"]);
    assert_eq!(still["spec"]["type"], "NodePort", "{still}");
    assert_eq!(node_ports(&still), vec![old], "{still}");
}
