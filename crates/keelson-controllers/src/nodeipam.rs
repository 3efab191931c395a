//! The node IPAM controller: gives every node without one a pod CIDR (`spec.podCIDR`,
//! `spec.podCIDRs`) carved from the cluster CIDR, /24 per node, lowest free first.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::backoff::Backoff;
use crate::informer::Informer;

/// The prefix length of each node's range.
pub const NODE_MASK: u8 = 24;

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cluster cidr {0:?}: want an IPv4 a.b.c.d/n with n <= 24")]
    Cidr(String),
    #[error("no pod cidr left in {0} for node {1}")]
    Exhausted(String, String),
    #[error("setting the pod cidr of node {node}: {source}")]
    Patch {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// Parses `a.b.c.d/n` into (network address, prefix length).
pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, len))
}

/// The lowest /24 of `cluster` not in `used`.
pub fn allocate(cluster: &str, used: &HashSet<String>) -> Result<Option<String>, Error> {
    let (base, len) = parse_cidr(cluster)
        .filter(|(_, len)| *len <= NODE_MASK)
        .ok_or_else(|| Error::Cidr(cluster.to_string()))?;
    let count = 1u32 << (NODE_MASK - len);
    Ok((0..count)
        .map(|i| {
            format!(
                "{}/{NODE_MASK}",
                Ipv4Addr::from(base + (i << (32 - NODE_MASK)))
            )
        })
        .find(|c| !used.contains(c)))
}

struct Context {
    client: Client,
    nodes: Store<Node>,
    cluster_cidr: String,
    /// Ranges handed out by this process whose node update may not be cached yet.
    given: Mutex<HashSet<String>>,
    backoff: Backoff,
}

/// The controller; subscribes now, so build it before the informers start.
pub fn run(
    client: Client,
    nodes: &Informer<Node>,
    cluster_cidr: String,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        client,
        nodes: nodes.store(),
        cluster_cidr,
        given: Mutex::default(),
        backoff: Backoff::default(),
    });
    Controller::for_shared_stream(nodes.subscribe(), nodes.store())
        .with_config(kube::runtime::controller::Config::default().concurrency(1))
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(node: Arc<Node>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "node ipam controller");
    Action::requeue(ctx.backoff.next(&node.name_any()))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let has = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty());
    if has || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut used: HashSet<String> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
        .collect();
    let cidr = {
        let given = ctx.given.lock().map(|g| g.clone()).unwrap_or_default();
        used.extend(given);
        allocate(&ctx.cluster_cidr, &used)?
            .ok_or_else(|| Error::Exhausted(ctx.cluster_cidr.clone(), node.name_any()))?
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    api.patch(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::Patch {
        node: node.name_any(),
        source,
    })?;
    if let Ok(mut g) = ctx.given.lock() {
        g.insert(cidr);
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cluster: &str, used: &[&str], want: Result<Option<&str>, ()>) {
        let used = used.iter().map(|s| s.to_string()).collect();
        let got = allocate(cluster, &used).map_err(|_| ());
        assert_eq!(
            got,
            want.map(|o| o.map(str::to_string)),
            "{cluster} {used:?}"
        );
    }

    #[test]
    fn allocates_lowest_free_range() {
        check("10.42.0.0/16", &[], Ok(Some("10.42.0.0/24")));
        check("10.42.0.0/16", &["10.42.0.0/24"], Ok(Some("10.42.1.0/24")));
        check("10.42.0.0/16", &["10.42.1.0/24"], Ok(Some("10.42.0.0/24")));
        check("10.42.5.0/24", &[], Ok(Some("10.42.5.0/24")));
        check("10.42.5.0/24", &["10.42.5.0/24"], Ok(None));
        check("10.42.0.0/25", &[], Err(()));
        check("nonsense", &[], Err(()));
    }
}
