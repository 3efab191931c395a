//! Decoding real protobuf bodies, built from k8s-pb structs the way kubectl's Go client
//! fills them (non-pointer fields always set, even when zero), into upstream's JSON.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use keelson_protobuf::{Error, MEDIA_TYPE, decode};
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The body kubectl sends: magic, then the `runtime.Unknown` envelope around `raw`.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

fn body(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
    envelope(api_version, kind, message.encode_to_vec())
}

/// Decodes `message` sent as `api_version` `kind` and compares with upstream's JSON.
fn check(api_version: &str, kind: &str, message: &impl Message, want: Value) {
    let got = decode(&body(api_version, kind, message), Some((api_version, kind)))
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    assert_eq!(got, want, "{kind}:\n{got:#}");
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// ObjectMeta as Go writes it for an object with only a name (and namespace): every
/// non-pointer field present with its zero value, `creationTimestamp` an empty Time.
fn go_meta(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

#[test]
fn media_type_is_upstreams() {
    assert_eq!(MEDIA_TYPE, "application/vnd.kubernetes.protobuf");
}

#[test]
fn namespace_from_kubectl_create_namespace() {
    let ns = core::Namespace {
        metadata: go_meta("development", ""),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    check(
        "v1",
        "Namespace",
        &ns,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "development", "creationTimestamp": null}, "spec": {}, "status": {}}),
    );
}

#[test]
fn configmap_keeps_data_and_encodes_binary_data() {
    let cm = core::ConfigMap {
        metadata: go_meta("settings", "default"),
        immutable: None,
        data: labels(&[("mode", "fast"), ("empty", "")]),
        binary_data: [("blob".to_string(), vec![0u8, 1, 2, 255])].into(),
    };
    check(
        "v1",
        "ConfigMap",
        &cm,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "default", "creationTimestamp": null},
            "data": {"empty": "", "mode": "fast"},
            "binaryData": {"blob": "AAEC/w=="},
        }),
    );
}

#[test]
fn secret_data_is_base64_and_immutable_false_is_kept() {
    let secret = core::Secret {
        metadata: go_meta("creds", "default"),
        immutable: Some(false),
        data: [("password".to_string(), b"s3cr3t".to_vec())].into(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    };
    check(
        "v1",
        "Secret",
        &secret,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "default", "creationTimestamp": null},
            "immutable": false,
            "data": {"password": "czNjcjN0"},
            "type": "Opaque",
        }),
    );
}

/// `kubectl create deployment web --image=nginx --replicas=0 --port=80`, plus requests.
fn web_deployment() -> apps::Deployment {
    let container = core::Container {
        name: s("nginx"),
        image: s("nginx"),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s(""),
            host_ip: s(""),
        }],
        resources: Some(core::ResourceRequirements {
            requests: [
                ("cpu".to_string(), quantity("100m")),
                ("memory".to_string(), quantity("64Mi")),
            ]
            .into(),
            ..Default::default()
        }),
        working_dir: s(""),
        termination_message_path: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            labels: labels(&[("app", "web")]),
            ..go_meta("web", "default").unwrap_or_default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    ..go_meta("", "").unwrap_or_default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    dns_policy: s(""),
                    service_account_name: s(""),
                    node_name: s(""),
                    host_network: Some(false),
                    host_pid: Some(false),
                    host_ipc: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s(""),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    }
}

#[test]
fn deployment_from_kubectl_create_deployment() {
    check(
        "apps/v1",
        "Deployment",
        &web_deployment(),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    }]},
                },
                "strategy": {},
            },
            // spec.replicas is a Go pointer: its zero is kept; status counters are not.
            "status": {},
        }),
    );
}

#[test]
fn service_ports_keep_required_zero_and_int_or_string() {
    let port = |name: &str, port: i32, target: IntOrString| core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        app_protocol: None,
        port: Some(port),
        target_port: Some(target),
        node_port: Some(0),
    };
    let svc = core::Service {
        metadata: go_meta("web", "default"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                port(
                    "http",
                    80,
                    IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: s(""),
                    },
                ),
                port(
                    "named",
                    0,
                    IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("web"),
                    },
                ),
            ],
            selector: labels(&[("app", "web")]),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            session_affinity: s(""),
            load_balancer_ip: s(""),
            external_name: s(""),
            external_traffic_policy: s(""),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    check(
        "v1",
        "Service",
        &svc,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "named", "protocol": "TCP", "port": 0, "targetPort": "web"},
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        }),
    );
}

#[test]
fn cronjob_with_times_and_job_template() {
    let cj = batch::CronJob {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_767_225_600),
                nanos: Some(0),
            }),
            ..go_meta("nightly", "default").unwrap_or_default()
        }),
        spec: Some(batch::CronJobSpec {
            schedule: s("0 3 * * *"),
            time_zone: None,
            starting_deadline_seconds: None,
            concurrency_policy: s(""),
            suspend: Some(false),
            successful_jobs_history_limit: Some(0),
            failed_jobs_history_limit: None,
            job_template: Some(batch::JobTemplateSpec {
                metadata: go_meta("nightly", ""),
                spec: Some(batch::JobSpec {
                    template: Some(core::PodTemplateSpec {
                        metadata: go_meta("", ""),
                        spec: Some(core::PodSpec {
                            containers: vec![core::Container {
                                name: s("job"),
                                image: s("busybox"),
                                command: vec!["date".into()],
                                ..Default::default()
                            }],
                            restart_policy: s("OnFailure"),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }),
            }),
        }),
        status: Some(batch::CronJobStatus {
            last_schedule_time: Some(meta::Time {
                seconds: Some(1_767_236_400),
                nanos: Some(5),
            }),
            ..Default::default()
        }),
    };
    check(
        "batch/v1",
        "CronJob",
        &cj,
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": false,
                "successfulJobsHistoryLimit": 0,
                "jobTemplate": {
                    "metadata": {"name": "nightly", "creationTimestamp": null},
                    "spec": {"template": {
                        "metadata": {"creationTimestamp": null},
                        "spec": {"containers": [{"name": "job", "image": "busybox", "command": ["date"]}], "restartPolicy": "OnFailure"},
                    }},
                },
            },
            "status": {"lastScheduleTime": "2026-01-01T03:00:00Z"},
        }),
    );
}

#[test]
fn events_event_time_is_micro_time() {
    use k8s_pb::api::events::v1 as events;
    let ev = events::Event {
        metadata: go_meta("e1", "default"),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_767_225_600),
            nanos: Some(123_456_789),
        }),
        reporting_controller: s("keelson"),
        action: s("Pulled"),
        ..Default::default()
    };
    check(
        "events.k8s.io/v1",
        "Event",
        &ev,
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default", "creationTimestamp": null},
            "eventTime": "2026-01-01T00:00:00.123456Z",
            "reportingController": "keelson",
            "action": "Pulled",
        }),
    );
}

#[test]
fn inlined_go_structs_merge_into_their_parent() {
    let pod = core::Pod {
        metadata: go_meta("p", "default"),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("c"),
                env: vec![core::EnvVar {
                    name: s("PASSWORD"),
                    value: s(""),
                    value_from: Some(core::EnvVarSource {
                        secret_key_ref: Some(core::SecretKeySelector {
                            local_object_reference: Some(core::LocalObjectReference {
                                name: s("creds"),
                            }),
                            key: s("password"),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                }],
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: s("/healthz"),
                            port: Some(IntOrString {
                                r#type: Some(0),
                                int_val: Some(8080),
                                str_val: s(""),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    initial_delay_seconds: Some(0),
                    timeout_seconds: Some(3),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes: vec![core::Volume {
                name: s("data"),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource {
                        medium: s(""),
                        size_limit: None,
                    }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "Pod",
        &pod,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "volumes": [{"name": "data", "emptyDir": {}}],
                "containers": [{
                    "name": "c",
                    "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password", "optional": false}}}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "timeoutSeconds": 3},
                }],
            },
        }),
    );
}

#[test]
fn raw_extension_holds_embedded_json() {
    let revision = |raw: &[u8]| apps::ControllerRevision {
        metadata: go_meta("rev", "default"),
        data: Some(RawExtension {
            raw: Some(raw.to_vec()),
        }),
        revision: Some(0),
    };
    check(
        "apps/v1",
        "ControllerRevision",
        &revision(br#"{"spec":{"replicas":2}}"#),
        json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "rev", "namespace": "default", "creationTimestamp": null},
            "data": {"spec": {"replicas": 2}},
            "revision": 0,
        }),
    );
    let err = decode(
        &body("apps/v1", "ControllerRevision", &revision(b"{nope")),
        None,
    )
    .expect_err("invalid JSON");
    assert!(
        matches!(&err, Error::EmbeddedJson { path, .. } if path == "data"),
        "{err}"
    );
}

#[test]
fn delete_options_and_subresource_bodies() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        ..Default::default()
    };
    let want = json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"});
    check("meta.k8s.io/v1", "DeleteOptions", &opts, want);
    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: go_meta("p", "default"),
        delete_options: Some(opts),
    };
    check(
        "policy/v1",
        "Eviction",
        &eviction,
        json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 0, "propagationPolicy": "Foreground"},
        }),
    );
    let scale = k8s_pb::api::autoscaling::v1::Scale {
        metadata: go_meta("web", "default"),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(3) }),
        status: Some(k8s_pb::api::autoscaling::v1::ScaleStatus {
            replicas: Some(0),
            selector: s(""),
        }),
    };
    check(
        "autoscaling/v1",
        "Scale",
        &scale,
        json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {"replicas": 3},
            "status": {"replicas": 0},
        }),
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = core::Namespace {
        metadata: go_meta("x", ""),
        ..Default::default()
    }
    .encode_to_vec();
    raw.extend([0xf8, 0x3e, 0x01]); // field 999, varint 1
    raw.extend([0xfa, 0x3e, 0x02, b'h', b'i']); // field 999, bytes "hi"
    let got =
        decode(&envelope("v1", "Namespace", raw), Some(("v1", "Namespace"))).expect("decodes");
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "creationTimestamp": null}})
    );
}

#[test]
fn envelope_without_type_takes_the_expected_kind() {
    let raw = core::Namespace {
        metadata: go_meta("x", ""),
        ..Default::default()
    }
    .encode_to_vec();
    let got = decode(&envelope("", "", raw), Some(("v1", "Namespace"))).expect("decodes");
    assert_eq!(got["kind"], "Namespace");
    assert_eq!(got["metadata"]["name"], "x");
}

/// Name, body, expected kind, start of the error message.
type Case<'a> = (&'a str, Vec<u8>, Option<(&'a str, &'a str)>, &'a str);

#[test]
fn bad_bodies_are_refused_with_what_was_wrong() {
    let ns = body(
        "v1",
        "Namespace",
        &core::Namespace {
            metadata: go_meta("x", ""),
            ..Default::default()
        },
    );
    let wrong_type = envelope("apps/v1", "Deployment", vec![0x12, 0x03, 0x08, 0x96, 0x01]); // spec{1: 150}
    let replicas_as_bytes = envelope("apps/v1", "Deployment", vec![0x12, 0x03, 0x0a, 0x01, b'x']); // spec{1: "x"}
    let cases: Vec<Case> = vec![
        (
            "magic",
            b"{\"kind\":\"Namespace\"}".to_vec(),
            None,
            "body does not start with the kubernetes protobuf magic bytes `k8s\\0`",
        ),
        (
            "mismatch",
            ns.clone(),
            Some(("apps/v1", "Deployment")),
            "body holds `v1 Namespace` but `apps/v1 Deployment` was expected",
        ),
        (
            "unknown",
            envelope("apps/v1", "Foo", vec![]),
            None,
            "unknown kind `apps/v1 Foo`",
        ),
        (
            "truncated",
            ns[..ns.len() / 2].to_vec(),
            None,
            "truncated length-delimited field at offset 23",
        ),
        (
            "varint",
            [b"k8s\0".as_slice(), &[0x08]].concat(),
            None,
            "truncated varint at offset 5",
        ),
        (
            "wire type",
            replicas_as_bytes,
            None,
            "field `spec.replicas` has wire type 2 but schema says 0 (varint)",
        ),
    ];
    for (name, bytes, expect, want) in cases {
        let err = decode(&bytes, expect).expect_err(name).to_string();
        assert!(err.starts_with(want), "{name}: {err}");
    }
    let ok = decode(&wrong_type, None).expect("replicas varint");
    assert_eq!(ok["spec"]["replicas"], 150);
}

#[test]
fn no_input_panics() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let valid = body("apps/v1", "Deployment", &web_deployment());
    for len in 0..valid.len() {
        let _ = decode(&valid[..len], Some(("apps/v1", "Deployment")));
    }
    for _ in 0..3000 {
        let mut bytes = valid.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        let _ = decode(&bytes, None);
        let random: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        let _ = decode(&[b"k8s\0".as_slice(), &random].concat(), None);
        let _ = decode(&envelope("v1", "Pod", random), None);
    }
}

#[test]
fn deeply_nested_envelopes_are_refused() {
    let mut raw = br#"{"a":1}"#.to_vec();
    for _ in 0..200 {
        let revision = apps::ControllerRevision {
            data: Some(RawExtension { raw: Some(raw) }),
            ..Default::default()
        };
        raw = body("apps/v1", "ControllerRevision", &revision);
    }
    let err = decode(&raw, None).expect_err("too deep");
    assert!(err.to_string().contains("deeper than"), "{err}");
}

#[test]
fn decoded_deployment_reads_as_k8s_openapi_deployment() {
    let json = decode(
        &body("apps/v1", "Deployment", &web_deployment()),
        Some(("apps/v1", "Deployment")),
    )
    .expect("decodes");
    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(json).expect("valid deployment");
    let spec = deployment.spec.unwrap_or_default();
    assert_eq!(spec.replicas, Some(0));
    let container = &spec.template.spec.unwrap_or_default().containers[0];
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("64Mi"));
}
