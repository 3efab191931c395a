//! Upstream's defaults, kind by kind: a manifest in, the defaulted fields out.

mod common;

use common::{created, defaulted};
use serde_json::{Value, json};

/// Asserts that each JSON pointer of the defaulted `obj` holds the expected value.
fn check(obj: Value, expected: &[(&str, Value)]) {
    let out = defaulted(obj);
    for (pointer, want) in expected {
        assert_eq!(out.pointer(pointer), Some(want), "{pointer} in {out:#}");
    }
}

fn pod_spec() -> Value {
    json!({"containers": [{
        "name": "app", "image": "nginx",
        "ports": [{"containerPort": 80}],
        "livenessProbe": {"httpGet": {"port": 80}},
        "resources": {"limits": {"cpu": "1"}}
    }], "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "scratch"}]})
}

#[test]
fn pod_defaults() {
    let pod =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec()});
    check(
        pod,
        &[
            ("/spec/restartPolicy", json!("Always")),
            ("/spec/dnsPolicy", json!("ClusterFirst")),
            ("/spec/terminationGracePeriodSeconds", json!(30)),
            ("/spec/schedulerName", json!("default-scheduler")),
            ("/spec/securityContext", json!({})),
            ("/spec/enableServiceLinks", json!(true)),
            ("/spec/serviceAccountName", json!("default")),
            ("/spec/priority", json!(0)),
            ("/spec/containers/0/imagePullPolicy", json!("Always")),
            (
                "/spec/containers/0/terminationMessagePath",
                json!("/dev/termination-log"),
            ),
            ("/spec/containers/0/terminationMessagePolicy", json!("File")),
            ("/spec/containers/0/ports/0/protocol", json!("TCP")),
            ("/spec/containers/0/livenessProbe/timeoutSeconds", json!(1)),
            ("/spec/containers/0/livenessProbe/periodSeconds", json!(10)),
            (
                "/spec/containers/0/livenessProbe/successThreshold",
                json!(1),
            ),
            (
                "/spec/containers/0/livenessProbe/failureThreshold",
                json!(3),
            ),
            (
                "/spec/containers/0/livenessProbe/httpGet/scheme",
                json!("HTTP"),
            ),
            ("/spec/containers/0/livenessProbe/httpGet/path", json!("/")),
            ("/spec/containers/0/resources/requests", json!({"cpu": "1"})),
            ("/spec/volumes/0/configMap/defaultMode", json!(420)),
            ("/spec/volumes/1/emptyDir", json!({})),
            (
                "/spec/tolerations",
                json!([
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ]),
            ),
        ],
    );
}

#[test]
fn image_pull_policy_follows_the_tag() {
    for (image, want) in [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("registry:5000/app", "Always"),
        ("registry:5000/app:v1", "IfNotPresent"),
        ("nginx@sha256:abc", "IfNotPresent"),
    ] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": image}]}});
        check(pod, &[("/spec/containers/0/imagePullPolicy", json!(want))]);
    }
}

#[test]
fn workload_defaults() {
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a", "image": "nginx:1"}]}});
    let selector = json!({"matchLabels": {"app": "x"}});
    check(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": selector, "template": template}}),
        &[
            ("/spec/replicas", json!(1)),
            (
                "/spec/strategy",
                json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
            ("/spec/progressDeadlineSeconds", json!(600)),
            ("/spec/template/spec/restartPolicy", json!("Always")),
            (
                "/spec/template/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
        ],
    );
    check(
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "spec": {"selector": selector, "template": template}}),
        &[("/spec/replicas", json!(1))],
    );
    check(
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"}, "spec": {"selector": selector, "template": template}}),
        &[
            (
                "/spec/updateStrategy",
                json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
        ],
    );
    check(
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"selector": selector, "template": template}}),
        &[
            ("/spec/podManagementPolicy", json!("OrderedReady")),
            (
                "/spec/updateStrategy",
                json!({"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"}),
            ),
            (
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            ),
            ("/spec/replicas", json!(1)),
            ("/spec/revisionHistoryLimit", json!(10)),
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"}, "spec": {"template": template}}),
        &[
            ("/spec/replicas", json!(1)),
            ("/spec/selector", json!({"app": "x"})),
            ("/metadata/labels", json!({"app": "x"})),
        ],
    );
}

#[test]
fn batch_defaults() {
    let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "busybox"}]}});
    check(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template}}),
        &[
            ("/spec/backoffLimit", json!(6)),
            ("/spec/completions", json!(1)),
            ("/spec/parallelism", json!(1)),
            ("/spec/completionMode", json!("NonIndexed")),
            ("/spec/suspend", json!(false)),
            ("/spec/podReplacementPolicy", json!("TerminatingOrFailed")),
        ],
    );
    check(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"parallelism": 3, "template": template}}),
        &[("/spec/parallelism", json!(3))],
    );
    check(
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
        &[
            ("/spec/concurrencyPolicy", json!("Allow")),
            ("/spec/suspend", json!(false)),
            ("/spec/successfulJobsHistoryLimit", json!(3)),
            ("/spec/failedJobsHistoryLimit", json!(1)),
            (
                "/spec/jobTemplate/spec/template/spec/dnsPolicy",
                json!("ClusterFirst"),
            ),
        ],
    );
}

#[test]
fn service_defaults() {
    check(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
        &[
            ("/spec/type", json!("ClusterIP")),
            ("/spec/sessionAffinity", json!("None")),
            ("/spec/ports/0/protocol", json!("TCP")),
            ("/spec/ports/0/targetPort", json!(80)),
            ("/spec/internalTrafficPolicy", json!("Cluster")),
        ],
    );
    let lb = defaulted(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}]}}),
    );
    assert_eq!(
        lb.pointer("/spec/externalTrafficPolicy"),
        Some(&json!("Cluster"))
    );
    assert_eq!(
        lb.pointer("/spec/allocateLoadBalancerNodePorts"),
        Some(&json!(true))
    );
    assert_eq!(lb.pointer("/spec/ports/0/targetPort"), Some(&json!("http")));
    let cluster = defaulted(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert_eq!(cluster.pointer("/spec/externalTrafficPolicy"), None);
}

#[test]
fn other_kinds_defaults() {
    check(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
        &[("/type", json!("Opaque"))],
    );
    check(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        &[
            (
                "/metadata/labels",
                json!({"kubernetes.io/metadata.name": "team"}),
            ),
            ("/status/phase", json!("Active")),
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": {}}),
        &[
            ("/spec/persistentVolumeReclaimPolicy", json!("Retain")),
            ("/spec/volumeMode", json!("Filesystem")),
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "spec": {}}),
        &[("/spec/volumeMode", json!("Filesystem"))],
    );
    check(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc"}, "provisioner": "x"}),
        &[
            ("/reclaimPolicy", json!("Delete")),
            ("/volumeBindingMode", json!("Immediate")),
        ],
    );
    check(
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "pc"}, "value": 5}),
        &[("/preemptionPolicy", json!("PreemptLowerPriority"))],
    );
    check(
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}),
        &[
            ("/spec/minReplicas", json!(1)),
            (
                "/spec/metrics/0/resource",
                json!({"name": "cpu", "target": {"averageUtilization": 80, "type": "Utilization"}}),
            ),
        ],
    );
    check(
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
        &[
            ("/spec/limits/0/default", json!({"cpu": "2"})),
            (
                "/spec/limits/0/defaultRequest",
                json!({"cpu": "2", "memory": "1Mi"}),
            ),
        ],
    );
}

#[test]
fn unknown_fields_are_dropped() {
    let out = defaulted(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "bogus": 1, "data": {"a": "b"}}),
    );
    assert_eq!(out.get("bogus"), None);
    assert_eq!(out.pointer("/data/a"), Some(&json!("b")));
}

#[test]
fn prepare_create_sets_initial_status() {
    let pod = |resources: Value| {
        created(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x", "resources": resources}]},
            "status": {"phase": "Running"}}),
        )
    };
    let cases = [
        (json!({}), "BestEffort"),
        (json!({"requests": {"cpu": "100m"}}), "Burstable"),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
            "Guaranteed",
        ),
        (
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}),
            "Burstable",
        ),
    ];
    for (resources, qos) in cases {
        assert_eq!(
            pod(resources).get("status"),
            Some(&json!({"phase": "Pending", "qosClass": qos}))
        );
    }
    let ns = created(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}));
    assert_eq!(ns.pointer("/spec/finalizers"), Some(&json!(["kubernetes"])));
    assert_eq!(ns.get("status"), Some(&json!({"phase": "Active"})));
    let deploy = created(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "status": {"replicas": 4}}),
    );
    assert_eq!(deploy.get("status"), Some(&json!({})));
}

#[test]
fn job_selector_is_generated() {
    let job = created(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "perl"}]}}}}),
    );
    let labels = json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"});
    assert_eq!(
        job.pointer("/spec/selector"),
        Some(&json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}))
    );
    assert_eq!(job.pointer("/spec/template/metadata/labels"), Some(&labels));
    assert_eq!(job.pointer("/metadata/labels"), Some(&labels));
    let manual = created(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "perl"}]}}}}),
    );
    assert_eq!(
        manual.pointer("/spec/selector"),
        Some(&json!({"matchLabels": {"a": "b"}}))
    );
}

#[test]
fn wrong_type_is_refused_with_its_path() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mysql"},
        "spec": {"containers": [{"name": "mysql", "image": "mysql:8",
            "livenessProbe": {"exec": {"command": "mysqladmin ping"}}}]}});
    let err = common::kind("v1", "Pod")
        .strategy
        .decode_and_default(pod)
        .expect_err("a string is not a list");
    assert_eq!(err.code, 400);
    assert!(
        err.message.starts_with("Pod in version \"v1\" cannot be handled as a Pod: spec.containers[0].livenessProbe.exec.command: "),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("expected a sequence"),
        "{}",
        err.message
    );
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": "three"}});
    let err = common::kind("apps/v1", "Deployment")
        .strategy
        .decode_and_default(deploy)
        .expect_err("replicas is a number");
    assert!(
        err.message.starts_with(
            "Deployment in version \"v1\" cannot be handled as a Deployment: spec.replicas: "
        ),
        "{}",
        err.message
    );
}
