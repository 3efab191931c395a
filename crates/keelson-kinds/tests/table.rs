//! Table rows and field selector values, as upstream's printers and field sets produce them.

mod common;

use common::{defaulted, kind};
use jiff::Timestamp;
use serde_json::{Value, json};

const NOW: &str = "2025-01-01T01:00:00Z";
const HOUR_AGO: &str = "2025-01-01T00:00:00Z";

/// Asserts the row of `obj` (by its apiVersion/kind) at time NOW.
fn check(obj: Value, want: Vec<Value>) {
    let k = kind(
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    );
    let now: Timestamp = NOW.parse().unwrap();
    let row = k.strategy.row(&obj, now);
    assert_eq!(row.len(), k.strategy.columns().len(), "one cell per column");
    assert_eq!(row, want, "{obj:#}");
}

fn pod(spec: Value, status: Value, deleting: bool) -> Value {
    let mut meta = json!({"name": "web", "creationTimestamp": HOUR_AGO});
    if deleting {
        meta["deletionTimestamp"] = json!(NOW);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})
}

fn one_container() -> Value {
    json!({"containers": [{"name": "a", "image": "nginx"}]})
}

fn pod_row(ready: &str, status: &str, restarts: &str) -> Vec<Value> {
    vec![
        json!("web"),
        json!(ready),
        json!(status),
        json!(restarts),
        json!("60m"),
        json!("<none>"),
        json!("<none>"),
        json!("<none>"),
        json!("<none>"),
    ]
}

#[test]
fn pod_status_column() {
    check(
        pod(one_container(), json!({"phase": "Pending"}), false),
        pod_row("0/1", "Pending", "0"),
    );
    check(
        pod(
            one_container(),
            json!({"phase": "Pending", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            false,
        ),
        pod_row("0/1", "ContainerCreating", "0"),
    );
    check(
        pod(
            one_container(),
            json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
            false,
        ),
        pod_row("1/1", "Running", "0"),
    );
    check(
        pod(
            one_container(),
            json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T00:55:00Z"}}}]}),
            false,
        ),
        pod_row("0/1", "CrashLoopBackOff", "5 (5m ago)"),
    );
    check(
        pod(
            one_container(),
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            false,
        ),
        pod_row("0/1", "Completed", "0"),
    );
    check(
        pod(
            one_container(),
            json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
            true,
        ),
        pod_row("1/1", "Terminating", "0"),
    );
    check(
        pod(
            json!({"initContainers": [{"name": "i", "image": "busybox"}], "containers": [{"name": "a", "image": "nginx"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "ready": false, "restartCount": 0, "state": {"running": {}}}]}),
            false,
        ),
        pod_row("0/1", "Init:0/1", "0"),
    );
}

#[test]
fn pod_wide_cells() {
    let obj = pod(
        json!({"nodeName": "node-1", "readinessGates": [{"conditionType": "x"}], "containers": [{"name": "a", "image": "nginx"}]}),
        json!({"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}], "conditions": [{"type": "x", "status": "True"}]}),
        false,
    );
    let k = kind("v1", "Pod");
    let row = k.strategy.row(&obj, NOW.parse().unwrap());
    assert_eq!(
        &row[5..],
        &[
            json!("10.42.0.5"),
            json!("node-1"),
            json!("<none>"),
            json!("1/1")
        ]
    );
}

fn service(kind_: &str, ports: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "creationTimestamp": HOUR_AGO},
        "spec": {"type": kind_, "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"], "ports": ports, "selector": {"app": "web"}},
        "status": status})
}

#[test]
fn service_rows() {
    check(
        service(
            "ClusterIP",
            json!([{"port": 80, "protocol": "TCP"}]),
            json!({}),
        ),
        vec![
            json!("web"),
            json!("ClusterIP"),
            json!("10.43.0.10"),
            json!("<none>"),
            json!("80/TCP"),
            json!("60m"),
            json!("app=web"),
        ],
    );
    check(
        service(
            "NodePort",
            json!([{"port": 8080, "nodePort": 31514, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]),
            json!({}),
        ),
        vec![
            json!("web"),
            json!("NodePort"),
            json!("10.43.0.10"),
            json!("<none>"),
            json!("8080:31514/TCP,53/UDP"),
            json!("60m"),
            json!("app=web"),
        ],
    );
    check(
        service(
            "LoadBalancer",
            json!([{"port": 80, "nodePort": 30000, "protocol": "TCP"}]),
            json!({"loadBalancer": {}}),
        ),
        vec![
            json!("web"),
            json!("LoadBalancer"),
            json!("10.43.0.10"),
            json!("<pending>"),
            json!("80:30000/TCP"),
            json!("60m"),
            json!("app=web"),
        ],
    );
}

#[test]
fn workload_rows() {
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}});
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "creationTimestamp": HOUR_AGO},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]}, "template": template},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    check(
        deploy,
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("60m"),
            json!("nginx,side"),
            json!("nginx:1,busybox"),
            json!("app=web,tier in (a,b)"),
        ],
    );
    let fresh = defaulted(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "creationTimestamp": HOUR_AGO},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    );
    let k = kind("apps/v1", "Deployment");
    assert_eq!(
        k.strategy.row(&fresh, NOW.parse().unwrap())[1..4],
        [json!("0/1"), json!(0), json!(0)]
    );
    check(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "creationTimestamp": HOUR_AGO},
            "spec": {"completions": 1, "template": template},
            "status": {"succeeded": 1, "startTime": HOUR_AGO, "completionTime": "2025-01-01T00:00:42Z",
                "conditions": [{"type": "Complete", "status": "True"}]}}),
        vec![
            json!("pi"),
            json!("Complete"),
            json!("1/1"),
            json!("42s"),
            json!("60m"),
            json!("nginx,side"),
            json!("nginx:1,busybox"),
            json!(""),
        ],
    );
}

#[test]
fn other_rows() {
    check(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "creationTimestamp": HOUR_AGO, "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"},
                "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}}),
        vec![
            json!("n1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane"),
            json!("60m"),
            json!("v1.33.0"),
            json!("192.168.1.2"),
            json!("<none>"),
            json!("<unknown>"),
            json!("<unknown>"),
            json!("<unknown>"),
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "creationTimestamp": HOUR_AGO},
            "subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}, {"ip": "10.42.0.7"}, {"ip": "10.42.0.8"}], "ports": [{"port": 80}]}]}),
        vec![
            json!("web"),
            json!("10.42.0.5:80,10.42.0.6:80,10.42.0.7:80 + 1 more..."),
            json!("60m"),
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "creationTimestamp": HOUR_AGO}, "type": "Opaque", "data": {"a": "", "b": ""}}),
        vec![json!("s"), json!("Opaque"), json!(2), json!("60m")],
    );
    check(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local", "creationTimestamp": HOUR_AGO,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
        vec![
            json!("local (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false),
            json!("60m"),
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "creationTimestamp": HOUR_AGO},
            "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Pulled", "type": "Normal", "message": "pulled ",
            "firstTimestamp": HOUR_AGO, "lastTimestamp": "2025-01-01T00:59:00Z", "count": 3, "source": {"component": "kubelet", "host": "n1"}}),
        vec![
            json!("60s"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/web"),
            json!(""),
            json!("kubelet, n1"),
            json!("pulled"),
            json!("60m"),
            json!(3),
            json!("e1"),
        ],
    );
    check(
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h", "creationTimestamp": HOUR_AGO},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
            "status": {"currentReplicas": 2, "desiredReplicas": 2}}),
        vec![
            json!("h"),
            json!("Deployment/web"),
            json!("cpu: <unknown>/80%"),
            json!("1"),
            json!(5),
            json!(2),
            json!("60m"),
        ],
    );
}

/// Asserts a field selector value (`None`: the field is not supported).
fn check_field(obj: &Value, path: &str, want: Option<&str>) {
    let k = kind(
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    );
    assert_eq!(k.strategy.field(obj, path).as_deref(), want, "{path}");
}

#[test]
fn field_selectors() {
    let p = pod(
        json!({"nodeName": "n1", "restartPolicy": "Always", "containers": []}),
        json!({"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]}),
        false,
    );
    check_field(&p, "spec.nodeName", Some("n1"));
    check_field(&p, "status.phase", Some("Running"));
    check_field(&p, "status.podIP", Some("10.42.0.5"));
    check_field(&p, "spec.hostNetwork", Some("false"));
    check_field(&p, "spec.schedulerName", Some(""));
    check_field(&p, "spec.containers", None);
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"unschedulable": true}});
    check_field(&node, "spec.unschedulable", Some("true"));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
    check_field(&secret, "type", Some("kubernetes.io/tls"));
    let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Pulled", "type": "Normal", "source": {"component": "kubelet"}});
    check_field(&ev, "involvedObject.name", Some("web"));
    check_field(&ev, "involvedObject.kind", Some("Pod"));
    check_field(&ev, "reason", Some("Pulled"));
    check_field(&ev, "source", Some("kubelet"));
    check_field(&ev, "message", None);
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "status": {"replicas": 2}});
    check_field(&rs, "status.replicas", Some("2"));
    let job =
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": {}});
    check_field(&job, "status.successful", Some("0"));
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.1"}});
    check_field(&svc, "spec.type", Some("NodePort"));
    check_field(&svc, "spec.clusterIP", Some("10.43.0.1"));
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}, "status": {"phase": "Active"}});
    check_field(&ns, "status.phase", Some("Active"));
}
