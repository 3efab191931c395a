//! The bare-metal load balancer, as k3s's ServiceLB: every `type: LoadBalancer` Service
//! without a `loadBalancerClass` gets `status.loadBalancer.ingress` (ipMode VIP) — the Ready
//! nodes' InternalIPs by default, or one address from a pool CIDR — which every node's
//! service proxy answers on. The ingress is cleared when the Service stops being one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::backoff::Backoff;
use crate::informer::Informer;

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid service load balancer pool {0:?}: want an IPv4 a.b.c.d/n")]
    Pool(String),
    #[error("no address left in the service load balancer pool {0} for service {1}")]
    Exhausted(String, String),
    #[error("writing the load balancer status of service {service}: {source}")]
    Patch {
        service: String,
        #[source]
        source: kube::Error,
    },
}

/// Whether this controller serves `svc`.
pub fn is_ours(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

/// The InternalIPs of the Ready nodes, sorted.
pub fn ready_node_ips(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut ips: BTreeSet<String> = BTreeSet::new();
    for n in nodes {
        let status = n.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let unschedulable = n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        if !ready || unschedulable {
            continue;
        }
        if let Some(a) = status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .find(|a| a.type_ == "InternalIP")
        {
            ips.insert(a.address.clone());
        }
    }
    ips.into_iter().collect()
}

/// An address of `pool` for `svc`: the one it has if in the pool, else the lowest one (after
/// the network address) no other Service holds.
pub fn from_pool(
    pool: &str,
    svc: &Service,
    others: &[Arc<Service>],
) -> Result<Option<String>, Error> {
    let (base, len) = crate::nodeipam::parse_cidr(pool)
        .filter(|(_, l)| *l <= 31)
        .ok_or_else(|| Error::Pool(pool.to_string()))?;
    let size = 1u64 << (32 - len);
    let inside = |ip: &str| {
        ip.parse::<Ipv4Addr>()
            .is_ok_and(|a| (u32::from(a).wrapping_sub(base) as u64) < size)
    };
    if let Some(have) = ingress_ips(svc).into_iter().find(|ip| inside(ip)) {
        return Ok(Some(have));
    }
    let used: BTreeSet<String> = others
        .iter()
        .filter(|o| o.metadata.uid != svc.metadata.uid)
        .flat_map(|o| ingress_ips(o))
        .collect();
    Ok((1..size.saturating_sub(1).max(2))
        .map(|i| Ipv4Addr::from(base + i as u32).to_string())
        .find(|ip| !used.contains(ip)))
}

struct Context {
    client: Client,
    nodes: Store<Node>,
    services: Store<Service>,
    pool: Option<String>,
    backoff: Backoff,
}

/// The controller; subscribes now, so build it before the informers start.
pub fn run(
    client: Client,
    services: &Informer<Service>,
    nodes: &Informer<Node>,
    pool: Option<String>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        client,
        nodes: nodes.store(),
        services: services.store(),
        pool,
        backoff: Backoff::default(),
    });
    let svc_store = services.store();
    // A node change can change every default ingress.
    let node_changes = nodes.subscribe().flat_map(move |_| {
        let refs: Vec<ObjectRef<Service>> = svc_store
            .state()
            .iter()
            .filter(|s| is_ours(s))
            .map(|s| ObjectRef::from_obj(&**s))
            .collect();
        futures::stream::iter(refs)
    });
    Controller::for_shared_stream(services.subscribe(), services.store())
        .reconcile_on(node_changes)
        .with_config(kube::runtime::controller::Config::default().concurrency(1))
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(svc: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "service load balancer controller");
    Action::requeue(ctx.backoff.next(&svc.name_any()))
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let has = ingress_ips(&svc);
    let want: Vec<String> = if is_ours(&svc) {
        match &ctx.pool {
            Some(pool) => {
                let all = ctx.services.state();
                let ip = from_pool(pool, &svc, &all)?
                    .ok_or_else(|| Error::Exhausted(pool.clone(), svc.name_any()))?;
                vec![ip]
            }
            None => ready_node_ips(&ctx.nodes.state()),
        }
    } else if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        vec![]
    } else {
        // Another implementation's (loadBalancerClass set): not ours to touch.
        return Ok(Action::await_change());
    };
    if has == want {
        return Ok(Action::await_change());
    }
    let ingress: Vec<_> = want
        .iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    let patch = if ingress.is_empty() {
        json!({"status": {"loadBalancer": {"ingress": null}}})
    } else {
        json!({"status": {"loadBalancer": {"ingress": ingress}}})
    };
    let api: Api<Service> =
        Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    api.patch_status(
        &svc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::Patch {
        service: format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any()),
        source,
    })?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    fn lb(uid: &str, ips: &[&str]) -> Arc<Service> {
        Arc::new(svc(json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}}
        })))
    }

    fn node(ip: &str, ready: bool) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": ip},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": "h"}],
                    "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]
                }
            }))
            .expect("node"),
        )
    }

    #[test]
    fn only_load_balancers_without_a_class_are_ours() {
        assert!(is_ours(&lb("a", &[])));
        assert!(!is_ours(&svc(json!({"spec": {"type": "NodePort"}}))));
        assert!(!is_ours(&svc(
            json!({"spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}})
        )));
    }

    #[test]
    fn the_default_ingress_is_every_ready_nodes_internal_ip() {
        let nodes = [
            node("192.168.1.11", true),
            node("192.168.1.10", true),
            node("192.168.1.12", false),
        ];
        assert_eq!(ready_node_ips(&nodes), ["192.168.1.10", "192.168.1.11"]);
    }

    #[test]
    fn the_pool_gives_the_lowest_free_address_and_keeps_a_given_one() {
        let others = [lb("x", &["10.99.0.1"]), lb("y", &["10.99.0.3"])];
        let new = lb("new", &[]);
        assert_eq!(
            from_pool("10.99.0.0/24", &new, &others).ok().flatten(),
            Some("10.99.0.2".into())
        );
        let keeps = lb("x", &["10.99.0.1"]);
        assert_eq!(
            from_pool("10.99.0.0/24", &keeps, &others).ok().flatten(),
            Some("10.99.0.1".into())
        );
        let full = [lb("x", &["10.99.0.1"]), lb("y", &["10.99.0.2"])];
        assert_eq!(from_pool("10.99.0.0/30", &new, &full).ok().flatten(), None);
        assert!(from_pool("bad", &new, &others).is_err());
    }
}
