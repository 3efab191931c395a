//! What a Service's Endpoints and EndpointSlices should hold, computed from the Service and
//! its pods with no IO: which pods count, their readiness, and their resolved ports.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::pod::is_ready;
use crate::selector::Labels;

/// Most endpoints in one EndpointSlice (upstream's `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// One service port resolved against one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResolvedPort {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// One pod as a backend of the Service.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub ip: String,
    pub node_name: Option<String>,
    pub hostname: Option<String>,
    pub target: ObjectReference,
    /// The pod's Ready condition is True.
    pub pod_ready: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    pub ports: Vec<ResolvedPort>,
}

/// The Service's selector, when it has one (an absent or empty selector means the Service's
/// endpoints are managed by someone else).
pub fn selector_of(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The port a service port reaches on `pod`: a named targetPort is looked up among the
/// containers' ports with the same protocol; `None` when the pod has no such port.
pub fn resolve_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The backends of `svc` among `pods` (already limited to its namespace): pods its selector
/// picks that have an IP and have not finished, terminating ones included.
pub fn backends<'a>(svc: &Service, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<Backend> {
    let Some(selector) = selector_of(svc) else {
        return Vec::new();
    };
    let svc_name = svc.metadata.name.as_deref().unwrap_or_default();
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut out: Vec<Backend> = pods
        .into_iter()
        .filter(|p| {
            let labels: Labels = p.metadata.labels.clone().unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|p| !is_terminal(p))
        .filter_map(|pod| {
            let ip = pod_ip(pod)?;
            let spec = pod.spec.as_ref();
            let hostname = spec
                .filter(|s| s.subdomain.as_deref() == Some(svc_name))
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty());
            let resolved: Vec<ResolvedPort> = ports
                .iter()
                .filter_map(|sp| {
                    Some(ResolvedPort {
                        name: sp.name.clone().unwrap_or_default(),
                        port: resolve_port(pod, sp)?,
                        protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        app_protocol: sp.app_protocol.clone(),
                    })
                })
                .collect();
            // In the Service's port order (the same for every pod, so equal port sets compare
            // equal), as upstream's EndpointSlice reconciler lists them.
            Some(Backend {
                ip,
                node_name: spec.and_then(|s| s.node_name.clone()),
                hostname,
                target: ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                },
                pod_ready: is_ready(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
                ports: resolved,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.ip, &a.target.name).cmp(&(&b.ip, &b.target.name)));
    out
}

fn pod_ip(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status.pod_ip.clone().filter(|ip| !ip.is_empty())
}

/// The `subsets` of the Service's Endpoints: backends grouped by their port set, ready ones
/// in `addresses` and the rest in `notReadyAddresses` (all ready with
/// publishNotReadyAddresses); terminating pods left out unless publishNotReadyAddresses.
pub fn subsets(svc: &Service, backends: &[Backend]) -> Vec<EndpointSubset> {
    let tolerate = publish_not_ready(svc);
    let no_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_none_or(|p| p.is_empty());
    // port set → (ready, not ready)
    let mut groups: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for b in backends {
        if b.terminating && !tolerate {
            continue;
        }
        if b.ports.is_empty() && !(no_ports && is_headless(svc)) {
            continue;
        }
        let addr = EndpointAddress {
            ip: b.ip.clone(),
            hostname: b.hostname.clone(),
            node_name: b.node_name.clone(),
            target_ref: Some(b.target.clone()),
        };
        let entry = groups.entry(b.ports.clone()).or_default();
        if tolerate || b.pod_ready {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|p| EndpointPort {
                        name: (!p.name.is_empty()).then_some(p.name),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: p.app_protocol,
                    })
                    .collect()
            }),
        })
        .collect()
}

/// The address type of the Service's EndpointSlices.
pub fn address_type(svc: &Service) -> &'static str {
    let families = svc.spec.as_ref().and_then(|s| s.ip_families.as_ref());
    match families.and_then(|f| f.first()).map(String::as_str) {
        Some("IPv6") => "IPv6",
        _ => "IPv4",
    }
}

/// One EndpointSlice's worth: its ports and its endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<Endpoint>,
}

/// The EndpointSlices the Service should have: backends grouped by port set, at most
/// [`MAX_ENDPOINTS_PER_SLICE`] each; terminating pods included with their conditions.
pub fn slices(svc: &Service, backends: &[Backend]) -> Vec<SliceContent> {
    let tolerate = publish_not_ready(svc);
    let family_v6 = address_type(svc) == "IPv6";
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
    for b in backends.iter().filter(|b| b.ip.contains(':') == family_v6) {
        let ready = tolerate || (b.pod_ready && !b.terminating);
        groups.entry(b.ports.clone()).or_default().push(Endpoint {
            addresses: vec![b.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(b.pod_ready),
                terminating: Some(b.terminating),
            }),
            hostname: b.hostname.clone(),
            node_name: b.node_name.clone(),
            target_ref: Some(b.target.clone()),
            ..Default::default()
        });
    }
    let mut out = Vec::new();
    for (ports, endpoints) in groups {
        let ports: Vec<SlicePort> = ports
            .into_iter()
            .map(|p| SlicePort {
                name: Some(p.name),
                port: Some(p.port),
                protocol: Some(p.protocol),
                app_protocol: p.app_protocol,
            })
            .collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec}),
        )
        .expect("service")
    }

    /// A pod: `name`, labels, ip (empty for none), ready, terminating, container ports.
    fn pod(name: &str, labels: &str, ip: &str, ready: bool, deleting: bool) -> Pod {
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let mut meta = json!({"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({
            "metadata": meta,
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"podIP": ip, "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .expect("pod")
    }

    /// Renders subsets as `ip:port` lists, ready then not-ready, one subset per entry.
    fn render(subsets: &[EndpointSubset]) -> Vec<String> {
        subsets
            .iter()
            .map(|s| {
                let ports: Vec<String> = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("")))
                    .collect();
                let ips = |a: &Option<Vec<EndpointAddress>>| {
                    a.iter()
                        .flatten()
                        .map(|a| a.ip.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!(
                    "ready={} notready={} ports={}",
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses),
                    ports.join(",")
                )
            })
            .collect()
    }

    fn check(spec: serde_json::Value, pods: &[Pod], want: &[&str]) {
        let svc = service(spec);
        let got = render(&subsets(&svc, &backends(&svc, pods)));
        assert_eq!(got, want, "{svc:?}");
    }

    #[test]
    fn endpoints_subsets() {
        let pods = [
            pod("a", "type=web", "10.0.0.2", true, false),
            pod("b", "type=web", "10.0.0.1", false, false),
            pod("c", "type=db", "10.0.0.3", true, false),
            pod("d", "type=web", "", true, false),
            pod("e", "type=web", "10.0.0.5", true, true),
        ];
        let by_number =
            json!({"selector": {"type": "web"}, "ports": [{"port": 80, "targetPort": 8080}]});
        check(
            by_number,
            &pods,
            &["ready=10.0.0.2 notready=10.0.0.1 ports=8080/TCP"],
        );
        let by_name =
            json!({"selector": {"type": "web"}, "ports": [{"port": 80, "targetPort": "http"}]});
        check(
            by_name,
            &pods,
            &["ready=10.0.0.2 notready=10.0.0.1 ports=8080/TCP"],
        );
        let udp = json!({"selector": {"type": "web"}, "ports": [{"port": 53, "targetPort": "dns", "protocol": "UDP"}]});
        check(
            udp,
            &pods,
            &["ready=10.0.0.2 notready=10.0.0.1 ports=53/UDP"],
        );
        // A name no container has: the pod is no backend on that port.
        let missing =
            json!({"selector": {"type": "web"}, "ports": [{"port": 80, "targetPort": "nope"}]});
        check(missing, &pods, &[]);
        let publish = json!({"selector": {"type": "web"}, "publishNotReadyAddresses": true, "ports": [{"port": 80}]});
        check(
            publish,
            &pods,
            &["ready=10.0.0.1,10.0.0.2,10.0.0.5 notready= ports=80/TCP"],
        );
        let headless = json!({"selector": {"type": "db"}, "clusterIP": "None"});
        check(headless, &pods, &["ready=10.0.0.3 notready= ports="]);
        check(json!({"ports": [{"port": 80}]}), &pods, &[]);
        check(json!({"selector": {}, "ports": [{"port": 80}]}), &pods, &[]);
    }

    #[test]
    fn slices_carry_conditions_and_group_by_ports() {
        let pods = [
            pod("a", "type=web", "10.0.0.2", true, false),
            pod("b", "type=web", "10.0.0.1", false, false),
            pod("e", "type=web", "10.0.0.5", true, true),
        ];
        let svc = service(
            json!({"selector": {"type": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
        );
        let got = slices(&svc, &backends(&svc, &pods));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ports[0].port, Some(8080));
        assert_eq!(got[0].ports[0].name.as_deref(), Some("http"));
        let conds: Vec<(String, bool, bool, bool)> = got[0]
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (
                    e.addresses[0].clone(),
                    c.ready.unwrap_or_default(),
                    c.serving.unwrap_or_default(),
                    c.terminating.unwrap_or_default(),
                )
            })
            .collect();
        let want = [
            ("10.0.0.1", false, false, false),
            ("10.0.0.2", true, true, false),
            ("10.0.0.5", false, true, true),
        ]
        .map(|(ip, r, s, t)| (ip.to_string(), r, s, t));
        assert_eq!(conds, want);
        assert_eq!(got[0].endpoints[0].node_name.as_deref(), Some("node-1"));
        let target = got[0].endpoints[0].target_ref.clone().unwrap_or_default();
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref()),
            (Some("Pod"), Some("b"))
        );
    }

    #[test]
    fn large_services_split_into_slices_of_one_hundred() {
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    "type=web",
                    &format!("10.1.{}.{}", i / 200, i % 200),
                    true,
                    false,
                )
            })
            .collect();
        let svc = service(json!({"selector": {"type": "web"}, "ports": [{"port": 80}]}));
        let sizes: Vec<usize> = slices(&svc, &backends(&svc, &pods))
            .iter()
            .map(|s| s.endpoints.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }
}
