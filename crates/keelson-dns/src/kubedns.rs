//! How pods reach a node's DNS server: the `kube-dns` Service in kube-system (the cluster DNS
//! IP, ports 53 UDP and TCP, `internalTrafficPolicy: Local`, no selector) and one
//! EndpointSlice per node pointing at that node's server. The objects are computed as values,
//! then written only when they are missing or differ.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::cache::SERVICE_NAME_LABEL;

/// The namespace and name of the cluster DNS Service.
pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
/// The label marking who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This server's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "keelson-dns";

/// Errors writing the DNS Service or its EndpointSlice.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} service kube-system/kube-dns: {source}")]
    Service {
        action: &'static str,
        source: kube::Error,
    },
    #[error("{action} endpointslice kube-system/{name}: {source}")]
    Slice {
        action: &'static str,
        name: String,
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One node's DNS server and the Service that fronts it.
#[derive(Clone, Debug)]
pub struct Registration {
    pub node: String,
    /// Where the node's server answers (its InternalIP and port).
    pub addr: SocketAddr,
    /// The cluster DNS IP (the Service's ClusterIP).
    pub cluster_ip: String,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `kube-dns` Service, as upstream's CoreDNS manifest has it (without a selector: its
/// endpoints are the nodes' servers).
pub fn service(reg: &Registration) -> Service {
    let port = |name: &str, proto: &str| ServicePort {
        name: Some(name.into()),
        port: 53,
        protocol: Some(proto.into()),
        target_port: Some(IntOrString::Int(reg.addr.port().into())),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(SERVICE.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels(&[
                ("k8s-app", "kube-dns"),
                ("kubernetes.io/cluster-service", "true"),
                ("kubernetes.io/name", "CoreDNS"),
            ])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(reg.cluster_ip.clone()),
            cluster_ips: Some(vec![reg.cluster_ip.clone()]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            internal_traffic_policy: Some("Local".into()),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The name of a node's slice.
pub fn slice_name(node: &str) -> String {
    format!("{SERVICE}-{node}")
}

/// A node's EndpointSlice of the `kube-dns` Service (owned by the Service, so it goes with it).
pub fn slice(reg: &Registration, owner: Option<&Service>) -> EndpointSlice {
    let port = |name: &str, proto: &str| EndpointPort {
        name: Some(name.into()),
        port: Some(reg.addr.port().into()),
        protocol: Some(proto.into()),
        ..Default::default()
    };
    let owner_references = owner.and_then(|s| {
        Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: SERVICE.into(),
            uid: s.metadata.uid.clone()?,
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    });
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name(&reg.node)),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels(&[
                (SERVICE_NAME_LABEL, SERVICE),
                (MANAGED_BY_LABEL, MANAGED_BY),
            ])),
            owner_references,
            ..Default::default()
        },
        address_type: if reg.addr.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        endpoints: vec![Endpoint {
            addresses: vec![reg.addr.ip().to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some(reg.node.clone()),
            ..Default::default()
        }],
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Whether `have` already says what `want` says (labels, owners, endpoints, ports).
fn slice_matches(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    have.metadata.labels == want.metadata.labels
        && have.metadata.owner_references == want.metadata.owner_references
        && have.address_type == want.address_type
        && have.endpoints == want.endpoints
        && have.ports == want.ports
}

/// Creates the `kube-dns` Service when it is missing (an existing one is left as it is) and
/// writes this node's slice when it is missing or differs.
pub async fn ensure(client: &Client, reg: &Registration) -> Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let svc = match services
        .get_opt(SERVICE)
        .await
        .map_err(|source| Error::Service {
            action: "reading",
            source,
        })? {
        Some(s) => s,
        None => match services.create(&PostParams::default(), &service(reg)).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                services
                    .get(SERVICE)
                    .await
                    .map_err(|source| Error::Service {
                        action: "reading",
                        source,
                    })?
            }
            Err(source) => {
                return Err(Error::Service {
                    action: "creating",
                    source,
                });
            }
        },
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let want = slice(reg, Some(&svc));
    let name = slice_name(&reg.node);
    let err = |action| {
        let name = name.clone();
        move |source| Error::Slice {
            action,
            name,
            source,
        }
    };
    match slices.get_opt(&name).await.map_err(err("reading"))? {
        Some(have) if slice_matches(&have, &want) => {}
        Some(have) => {
            let mut next = want;
            next.metadata.resource_version = have.metadata.resource_version;
            slices
                .replace(&name, &PostParams::default(), &next)
                .await
                .map_err(err("updating"))?;
        }
        None => {
            slices
                .create(&PostParams::default(), &want)
                .await
                .map_err(err("creating"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            node: "n1".into(),
            addr: "192.0.2.2:10053".parse().unwrap(),
            cluster_ip: "10.43.0.10".into(),
        }
    }

    #[test]
    fn service_as_upstream() {
        let s = serde_json::to_value(service(&reg())).unwrap();
        assert_eq!(
            s,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system",
                    "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                               "kubernetes.io/name": "CoreDNS"}},
                "spec": {"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                    "internalTrafficPolicy": "Local", "type": "ClusterIP",
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 10053},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 10053}]}
            })
        );
    }

    #[test]
    fn node_slice() {
        let mut owner = service(&reg());
        owner.metadata.uid = Some("u1".into());
        let s = serde_json::to_value(slice(&reg(), Some(&owner))).unwrap();
        assert_eq!(
            s,
            serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kube-dns-n1", "namespace": "kube-system",
                    "labels": {"endpointslice.kubernetes.io/managed-by": "keelson-dns",
                               "kubernetes.io/service-name": "kube-dns"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "kube-dns",
                        "uid": "u1", "controller": true, "blockOwnerDeletion": true}]},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["192.0.2.2"], "nodeName": "n1",
                    "conditions": {"ready": true, "serving": true, "terminating": false}}],
                "ports": [{"name": "dns", "port": 10053, "protocol": "UDP"},
                          {"name": "dns-tcp", "port": 10053, "protocol": "TCP"}]
            })
        );
        let mut changed = slice(&reg(), Some(&owner));
        assert!(slice_matches(&changed, &slice(&reg(), Some(&owner))));
        changed.endpoints[0].addresses = vec!["192.0.2.3".into()];
        assert!(!slice_matches(&changed, &slice(&reg(), Some(&owner))));
    }
}
