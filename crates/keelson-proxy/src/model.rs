//! The proxy's view of the cluster as plain values: one [`ServicePort`] per port of every
//! proxied Service, with its endpoints gathered from the Service's EndpointSlices.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A transport protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From a Service or EndpointSlice port's `protocol` (TCP when unset).
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nft knows it by.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One backend of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The node it runs on, when the slice says.
    pub node: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// One port of one Service, with everything the ruleset needs about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name (may be empty).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// LoadBalancer ingress IPs and `spec.externalIPs`: traffic to them is external.
    pub external_ips: Vec<Ipv4Addr>,
    /// The LoadBalancer ingress IPs alone (a subset of `external_ips`).
    pub lb_ips: Vec<Ipv4Addr>,
    /// `spec.loadBalancerSourceRanges` (IPv4 CIDRs): when set, traffic to `lb_ips` from any
    /// other source is dropped.
    pub source_ranges: Vec<String>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `sessionAffinity: ClientIP`, with its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `namespace/name/proto/port`, unique per Service port; names its chains.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            self.port
        )
    }

    /// The endpoints traffic may go to: the ready ones, or, when none is ready, the ones
    /// still serving while they terminate (as upstream does).
    pub fn usable(&self) -> Vec<&Endpoint> {
        let ready: Vec<_> = self.endpoints.iter().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        self.endpoints
            .iter()
            .filter(|e| e.serving && e.terminating)
            .collect()
    }
}

/// Default session affinity timeout (upstream: 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

fn ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// An IPv4 CIDR (`a.b.c.d/n`, or a bare address as `/32`) in its canonical form; `None` for
/// anything else (IPv6 ranges are not this proxy's).
fn ipv4_cidr(s: &str) -> Option<String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().ok().filter(|l| *l <= 32)?),
        None => (s, 32),
    };
    let ip: Ipv4Addr = ip.parse().ok()?;
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Some(format!("{}/{len}", Ipv4Addr::from(u32::from(ip) & mask)))
}

/// The Service ports the proxy handles: every port of every Service with an IPv4 ClusterIP
/// (not headless, not ExternalName), with the endpoints of its slices matched by port name and
/// protocol (duplicates across slices counted once).
pub fn service_ports(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServicePort> {
    // (namespace, service) → slices
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let (Some(ns), Some(svc)) = (
            slice.metadata.namespace.as_deref(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL)),
        ) else {
            continue;
        };
        by_service
            .entry((ns, svc.as_str()))
            .or_default()
            .push(slice);
    }
    let mut out = Vec::new();
    for svc in services {
        let (Some(ns), Some(name), Some(spec)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
            svc.spec.as_ref(),
        ) else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec.cluster_ip.as_deref().and_then(ipv4);
        let mut external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| ipv4(s))
            .collect();
        let mut lb_ips: Vec<Ipv4Addr> = Vec::new();
        let mut source_ranges: Vec<String> = Vec::new();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            lb_ips.extend(
                svc.status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                    .filter_map(|i| i.ip.as_deref().and_then(ipv4)),
            );
            lb_ips.sort();
            lb_ips.dedup();
            external_ips.extend(lb_ips.iter().copied());
            source_ranges = spec
                .load_balancer_source_ranges
                .iter()
                .flatten()
                .filter_map(|r| ipv4_cidr(r.trim()))
                .collect();
            source_ranges.sort();
            source_ranges.dedup();
        }
        external_ips.sort();
        external_ips.dedup();
        if cluster_ip.is_none() && external_ips.is_empty() {
            continue;
        }
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        let svc_slices = by_service.get(&(ns, name));
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let mut endpoints = BTreeSet::new();
            for slice in svc_slices.into_iter().flatten() {
                let Some(target) = slice.ports.iter().flatten().find(|sp| {
                    sp.name.as_deref().unwrap_or("") == port_name
                        && Protocol::parse(sp.protocol.as_deref()) == Some(protocol)
                }) else {
                    continue;
                };
                let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for ep in &slice.endpoints {
                    let Some(ip) = ep.addresses.first().and_then(|a| ipv4(a)) else {
                        continue;
                    };
                    let c = ep.conditions.as_ref();
                    let ready = c.and_then(|c| c.ready).unwrap_or(true);
                    endpoints.insert(Endpoint {
                        ip,
                        port: target,
                        node: ep.node_name.clone(),
                        ready,
                        serving: c.and_then(|c| c.serving).unwrap_or(ready),
                        terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                    });
                }
            }
            out.push(ServicePort {
                namespace: ns.to_string(),
                name: name.to_string(),
                port_name,
                protocol,
                cluster_ip,
                port,
                node_port: p
                    .node_port
                    .filter(|_| node_ports)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0),
                external_ips: external_ips.clone(),
                lb_ips: lb_ips.clone(),
                source_ranges: source_ranges.clone(),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                affinity_timeout,
                endpoints: endpoints.into_iter().collect(),
            });
        }
    }
    out.sort_by_key(|p| p.id());
    out
}

/// A node as the proxy and the route syncer see it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeInfo {
    pub name: String,
    /// IPv4 pod CIDRs (`spec.podCIDRs`, or `spec.podCIDR`).
    pub pod_cidrs: Vec<String>,
    /// The first IPv4 InternalIP.
    pub internal_ip: Option<Ipv4Addr>,
}

/// What the proxy needs of a Node.
pub fn node_info(node: &Node) -> NodeInfo {
    let spec = node.spec.as_ref();
    let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty()
        && let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
    {
        pod_cidrs.push(c);
    }
    pod_cidrs.retain(|c| !c.contains(':') && !c.is_empty());
    let internal_ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| ipv4(&a.address));
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        pod_cidrs,
        internal_ip,
    }
}
