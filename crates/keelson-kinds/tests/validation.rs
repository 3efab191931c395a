//! Validation messages, compared with upstream's exact strings.

mod common;

use common::{defaulted, messages};
use serde_json::{Value, json};

/// Asserts that validating the defaulted `obj` (against the defaulted `old`) gives exactly
/// `want`.
fn check(obj: Value, old: Option<Value>, want: &[&str]) {
    let obj = defaulted(obj);
    let old = old.map(defaulted);
    assert_eq!(messages(&obj, old.as_ref()), want, "{obj:#}");
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

#[test]
fn pods() {
    check(
        pod(json!({"containers": [{"name": "a", "image": "nginx"}]})),
        None,
        &[],
    );
    check(pod(json!({})), None, &["spec.containers: Required value"]);
    check(
        pod(json!({"containers": [{"name": "", "image": "nginx"}, {"name": "b"}]})),
        None,
        &[
            "spec.containers[0].name: Required value",
            "spec.containers[1].image: Required value",
        ],
    );
    check(
        pod(json!({"containers": [{"name": "x", "image": "a"}, {"name": "x", "image": "b"}]})),
        None,
        &["spec.containers[1].name: Duplicate value: \"x\""],
    );
    check(
        pod(json!({"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "nginx"}]})),
        None,
        &[
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ],
    );
    check(
        pod(
            json!({"containers": [{"name": "a", "image": "nginx", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]}),
        ),
        None,
        &["spec.containers[0].volumeMounts[0].name: Not found: \"x\""],
    );
    check(
        pod(
            json!({"volumes": [{"name": "v"}, {"name": "v"}], "containers": [{"name": "a", "image": "nginx"}]}),
        ),
        None,
        &["spec.volumes[1].name: Duplicate value: \"v\""],
    );
    check(
        pod(
            json!({"containers": [{"name": "a", "image": "nginx", "readinessProbe": {"periodSeconds": 5}}]}),
        ),
        None,
        &["spec.containers[0].readinessProbe: Required value: must specify a handler type"],
    );
    check(
        pod(
            json!({"containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 70000}]}]}),
        ),
        None,
        &[
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name", "namespace": "default"},
            "spec": {"containers": [{"name": "a", "image": "nginx"}]}}),
        None,
        &[
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ],
    );
}

#[test]
fn pod_updates() {
    let old = pod(json!({"containers": [{"name": "a", "image": "nginx:1"}]}));
    check(
        pod(json!({"containers": [{"name": "a", "image": "nginx:2"}]})),
        Some(old.clone()),
        &[],
    );
    let changed = pod(json!({"containers": [{"name": "a", "image": "nginx:1", "args": ["x"]}]}));
    let msgs = messages(&defaulted(changed), Some(&defaulted(old)));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{msgs:?}");
}

fn workload(kind: &str, labels: Value, selector: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w", "namespace": "default"},
        "spec": {"selector": selector, "template": {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}})
}

#[test]
fn workloads() {
    let app = json!({"app": "x"});
    let sel = json!({"matchLabels": {"app": "x"}});
    for kind in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
        check(workload(kind, app.clone(), sel.clone()), None, &[]);
        check(
            workload(kind, app.clone(), json!({"matchLabels": {"app": "y"}})),
            None,
            &[
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
            ],
        );
        let mut never = workload(kind, app.clone(), sel.clone());
        never["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        check(
            never,
            None,
            &[
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ],
        );
    }
    let mut missing = workload("Deployment", app.clone(), json!(null));
    missing["spec"].as_object_mut().unwrap().remove("selector");
    check(missing, None, &["spec.selector: Required value"]);
    let mut negative = workload("Deployment", app.clone(), sel.clone());
    negative["spec"]["replicas"] = json!(-1);
    check(
        negative,
        None,
        &["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
    );
    let new = workload(
        "Deployment",
        json!({"app": "x", "tier": "web"}),
        json!({"matchLabels": {"app": "x", "tier": "web"}}),
    );
    let msgs = messages(
        &defaulted(new),
        Some(&defaulted(workload("Deployment", app, sel))),
    );
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].starts_with("spec.selector: Invalid value: ")
            && msgs[0].ends_with(": field is immutable"),
        "{msgs:?}"
    );
}

#[test]
fn jobs() {
    let job = |policy: Value| {
        let mut spec = json!({"containers": [{"name": "a", "image": "busybox"}]});
        if !policy.is_null() {
            spec["restartPolicy"] = policy;
        }
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"}, "spec": {"template": {"spec": spec}}})
    };
    check(job(json!("Never")), None, &[]);
    check(
        job(json!(null)),
        None,
        &[
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ],
    );
    check(
        job(json!("Always")),
        None,
        &[
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ],
    );
}

#[test]
fn services() {
    let svc = |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    check(svc(json!({"ports": [{"port": 80}]})), None, &[]);
    check(svc(json!({})), None, &["spec.ports: Required value"]);
    check(
        svc(json!({"ports": [{"port": 0}]})),
        None,
        &["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"],
    );
    check(
        svc(json!({"ports": [{"port": 80, "name": "a"}, {"port": 81}]})),
        None,
        &["spec.ports[1].name: Required value"],
    );
    check(
        svc(json!({"type": "Magic", "ports": [{"port": 80}]})),
        None,
        &[
            "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ],
    );
    check(
        svc(json!({"type": "ExternalName"})),
        None,
        &["spec.externalName: Required value"],
    );
}

#[test]
fn config_maps_and_secrets() {
    let cm = |data: Value, immutable: bool| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": data, "immutable": immutable});
    check(cm(json!({"ok.key": "v"}), false), None, &[]);
    let bad = messages(&defaulted(cm(json!({"bad key": "v"}), false)), None);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].starts_with("data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters"), "{bad:?}");
    let big = "x".repeat(1024 * 1024 + 1);
    check(
        cm(json!({"big": big}), false),
        None,
        &["data: Too long: may not be more than 1048576 bytes"],
    );
    check(
        cm(json!({"a": "2"}), true),
        Some(cm(json!({"a": "1"}), true)),
        &["data: Forbidden: field is immutable when `immutable` is set"],
    );
    let secret = |data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": data, "immutable": true});
    check(
        secret(json!({"a": "Mg=="})),
        Some(secret(json!({"a": "MQ=="}))),
        &["data: Forbidden: field is immutable when `immutable` is set"],
    );
}

#[test]
fn namespaces() {
    let ns =
        |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    check(ns("team-a"), None, &[]);
    check(
        ns("team.a"),
        None,
        &["metadata.name: Invalid value: \"team.a\": must not contain dots"],
    );
    let msgs = messages(&defaulted(ns("Team_A")), None);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].starts_with(
            "metadata.name: Invalid value: \"Team_A\": a lowercase RFC 1123 label must consist of"
        ),
        "{msgs:?}"
    );
}
