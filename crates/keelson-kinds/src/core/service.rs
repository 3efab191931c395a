//! The Service kind (v1): defaults, validation, field selectors and the `kubectl get services`
//! table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ClientIPConfig, Service, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use crate::Column;
use crate::core::pod_defaults::{set, set_str};
use crate::typed::Typed;
use crate::util::{
    AGE, NAME, age_cell, arr_at, at, col, field_string, int_at, name_cell, s, str_at, wide,
};
use crate::workload::format_labels;

pub static STRATEGY: Typed<Service> = Typed::new("Service", "v1")
    .defaults(defaults)
    .prepare(prepare)
    .validate(crate::core::validation::validate_service)
    .fields(field)
    .table(COLUMNS, row)
    .status(false);

fn defaults(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.session_affinity, "None");
    set_str(&mut spec.type_, "ClusterIP");
    for p in spec.ports.iter_mut().flatten() {
        set_str(&mut p.protocol, "TCP");
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let config = spec
            .session_affinity_config
            .get_or_insert_with(SessionAffinityConfig::default);
        let client_ip = config.client_ip.get_or_insert_with(ClientIPConfig::default);
        set(&mut client_ip.timeout_seconds, 10800);
    }
    let kind = spec.type_.clone().unwrap_or_default();
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_str(&mut spec.external_traffic_policy, "Cluster");
    }
    if kind != "ExternalName" {
        set_str(&mut spec.internal_traffic_policy, "Cluster");
    }
    if kind == "LoadBalancer" {
        set(&mut spec.allocate_load_balancer_node_ports, true);
    }
}

/// PrepareForCreate: an empty status; the IP family fields of a single-stack IPv4 cluster.
fn prepare(obj: &mut Value) {
    obj["status"] = json!({"loadBalancer": {}});
    if str_at(obj, &["spec", "type"]) == Some("ExternalName") {
        return;
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("ipFamilyPolicy")
            .or_insert_with(|| json!("SingleStack"));
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
    }
}

fn field(obj: &Value, path: &str) -> Option<String> {
    match path {
        "spec.clusterIP" => Some(field_string(at(obj, &["spec", "clusterIP"]))),
        "spec.type" => Some(field_string(at(obj, &["spec", "type"]))),
        _ => None,
    }
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
    ),
    col(
        "Cluster-IP",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    AGE,
    wide(
        "Selector",
        "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify.",
    ),
];

fn strings(v: &[Value]) -> Vec<&str> {
    v.iter().filter_map(Value::as_str).collect()
}

/// upstream's getServiceExternalIP (wide, as the server prints).
fn external_ip(obj: &Value) -> String {
    let external = strings(arr_at(obj, &["spec", "externalIPs"]));
    match str_at(obj, &["spec", "type"]).unwrap_or("") {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ingress: Vec<&str> = arr_at(obj, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| {
                    str_at(i, &["ip"])
                        .filter(|x| !x.is_empty())
                        .or_else(|| str_at(i, &["hostname"]).filter(|x| !x.is_empty()))
                })
                .collect();
            ingress.sort_unstable();
            ingress.dedup();
            let mut all = ingress;
            all.extend(external);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(obj, &["spec", "externalName"])
            .unwrap_or("")
            .to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// upstream's makePortString: `80/TCP`, `80:30080/TCP`, comma-joined.
pub fn port_string(ports: &[Value]) -> String {
    let pieces: Vec<String> = ports
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]).unwrap_or(0);
            let protocol = str_at(p, &["protocol"]).unwrap_or("");
            match int_at(p, &["nodePort"]).filter(|n| *n > 0) {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cluster_ip = arr_at(obj, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let ports = port_string(arr_at(obj, &["spec", "ports"]));
    vec![
        name_cell(obj),
        s(str_at(obj, &["spec", "type"]).unwrap_or("")),
        s(cluster_ip),
        s(external_ip(obj)),
        s(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports
        }),
        age_cell(obj, now),
        s(format_labels(
            at(obj, &["spec", "selector"]).and_then(Value::as_object),
        )),
    ]
}
