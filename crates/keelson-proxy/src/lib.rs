//! The service proxy: watches Services, EndpointSlices and Nodes, renders one nftables
//! ruleset as a value and applies it atomically (at most one apply per
//! [`Config::min_sync_interval`], always from the latest state), and keeps the routes to the
//! other nodes' pod CIDRs (host-gw).

pub mod diff;
pub mod model;
pub mod nft;
pub mod routes;
pub mod ruleset;
pub mod sysctl;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::nft::Applier;
use crate::routes::{RouteSyncer, RouteTable};
use crate::ruleset::NodeView;

/// How the proxy runs on a node.
#[derive(Clone, Debug)]
pub struct Config {
    /// The nftables table (family `ip`) it owns: [`table_name`].
    pub table: String,
    /// The node it runs on (endpoints with this nodeName are local).
    pub node_name: String,
    /// This node's pod CIDR.
    pub pod_cidr: Option<String>,
    /// The least time between two applies (bursts of changes are batched).
    pub min_sync_interval: Duration,
}

impl Config {
    pub fn new(node_name: &str, pod_cidr: Option<&str>) -> Config {
        Config {
            table: table_name(),
            node_name: node_name.into(),
            pod_cidr: pod_cidr.map(str::to_string),
            min_sync_interval: Duration::from_millis(100),
        }
    }
}

/// Computes the ruleset from cluster objects (pure).
pub fn compute(
    cfg: &Config,
    services: &[Service],
    slices: &[EndpointSlice],
    nodes: &[model::NodeInfo],
) -> ruleset::Ruleset {
    let mut pod_cidrs: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| n.pod_cidrs.iter().cloned())
        .collect();
    pod_cidrs.extend(cfg.pod_cidr.clone());
    let view = NodeView {
        table: cfg.table.clone(),
        name: cfg.node_name.clone(),
        pod_cidr: cfg.pod_cidr.clone(),
        pod_cidrs,
    };
    ruleset::build(&view, &model::service_ports(services, slices))
}

/// Calls `step` each time `notify` fires, at most once per `min` (notifications during the
/// wait fold into one); when `step` fails it is retried after `retry`.
pub async fn batch_loop(
    notify: Arc<Notify>,
    min: Duration,
    retry: Duration,
    mut step: impl FnMut() -> bool,
) {
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        notify.notified().await;
        if let Some(l) = last {
            tokio::time::sleep_until(l + min).await;
        }
        last = Some(tokio::time::Instant::now());
        if !step() {
            let n = notify.clone();
            tokio::spawn(async move {
                tokio::time::sleep(retry).await;
                n.notify_one();
            });
        }
    }
}

/// What one [`Syncer::sync`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The ruleset was already in force.
    Unchanged,
    /// Only the difference was applied.
    Incremental,
    /// The table was rebuilt whole (first sync, or the difference could not be applied).
    Full,
}

/// Keeps the ruleset in force: the first sync rebuilds the table whole, later ones apply only
/// the difference from the last ruleset applied, and fall back to a whole rebuild when that
/// fails (the table was changed or deleted behind the proxy's back).
pub struct Syncer {
    applier: Arc<dyn Applier>,
    last: Option<ruleset::Ruleset>,
}

impl Syncer {
    pub fn new(applier: Arc<dyn Applier>) -> Syncer {
        Syncer {
            applier,
            last: None,
        }
    }

    /// Brings `rs` in force; what it took.
    pub fn sync(&mut self, rs: &ruleset::Ruleset) -> Result<Applied, nft::Error> {
        if let Some(d) = self.last.as_ref().and_then(|last| diff::diff(last, rs)) {
            if d.is_empty() {
                return Ok(Applied::Unchanged);
            }
            match self.applier.apply(&d.render()) {
                Ok(()) => {
                    self.last = Some(rs.clone());
                    return Ok(Applied::Incremental);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "service proxy: incremental sync failed; rebuilding the table");
                }
            }
        }
        self.last = None;
        self.applier.apply(&rs.render())?;
        self.last = Some(rs.clone());
        Ok(Applied::Full)
    }

    /// Forgets what is in force, so the next sync rebuilds the table whole.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// Watches `api` into a store, firing `notify` on every change; the store is filled once its
/// first list arrives.
fn reflect<K>(api: Api<K>, notify: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        stream
            .for_each(|ev| {
                if let Err(e) = ev {
                    tracing::debug!(error = %e, "proxy watch failed; retrying");
                }
                notify.notify_one();
                futures::future::ready(())
            })
            .await;
    });
    reader
}

/// Runs the proxy until the process ends: kernel settings, then one sync per batch of
/// changes once the Services, EndpointSlices and Nodes are all listed.
pub async fn run(client: Client, cfg: Config) {
    run_with(
        client,
        cfg,
        Arc::new(nft::Nft::default()),
        Arc::new(routes::IpRoute),
        &sysctl::ProcSys,
    )
    .await
}

/// [`run`] with the effects given.
pub async fn run_with(
    client: Client,
    cfg: Config,
    applier: Arc<dyn Applier>,
    table: Arc<dyn RouteTable>,
    sysctl: &dyn sysctl::Sysctl,
) {
    for e in sysctl::ensure(sysctl) {
        tracing::warn!(error = %e, "service proxy: kernel setting");
    }
    let notify = Arc::new(Notify::new());
    let services = reflect::<Service>(Api::all(client.clone()), notify.clone());
    let slices = reflect::<EndpointSlice>(Api::all(client.clone()), notify.clone());
    let nodes = reflect::<Node>(Api::all(client), notify.clone());
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    notify.notify_one();
    let mut syncer = Syncer::new(applier);
    let mut route_syncer = RouteSyncer::default();
    let min = cfg.min_sync_interval;
    let sync = move || {
        let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let sls: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let infos: Vec<model::NodeInfo> =
            nodes.state().iter().map(|n| model::node_info(n)).collect();
        let rs = compute(&cfg, &svcs, &sls, &infos);
        let mut ok = match syncer.sync(&rs) {
            Ok(applied) => {
                if applied != Applied::Unchanged {
                    tracing::debug!(
                        services = svcs.len(),
                        ?applied,
                        "service proxy: ruleset applied"
                    );
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "service proxy");
                false
            }
        };
        let want = routes::desired(&cfg.node_name, &infos);
        for e in route_syncer.sync(table.as_ref(), &want) {
            tracing::warn!(error = %e, "pod network routes");
            ok = false;
        }
        ok
    };
    // nft runs block (seconds for thousands of Services): the loop gets a thread of its own
    // so the agent's runtime never waits on it. A plain thread, not `spawn_blocking`: the
    // loop never ends, and a runtime waits for its blocking tasks when it shuts down.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("service-proxy".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(batch_loop(notify, min, Duration::from_secs(1), sync)),
                Err(e) => tracing::error!(error = %e, "service proxy: cannot start its sync loop"),
            }
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = done_rx.await;
            tracing::error!("service proxy: the sync loop ended");
        }
        Err(e) => tracing::error!(error = %e, "service proxy: cannot start its thread"),
    }
}

/// The environment variable that renames the table, so that several test clusters on one
/// host keep apart.
pub const TABLE_ENV: &str = "KEELSON_PROXY_TABLE";

/// The proxy's table: `keelson`, or [`TABLE_ENV`] when set to a name of letters, digits and
/// dashes.
pub fn table_name() -> String {
    std::env::var(TABLE_ENV)
        .ok()
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 64
                && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .unwrap_or_else(|| ruleset::TABLE.to_string())
}

/// Deletes the proxy's table (nothing else); for a clean exit.
pub fn cleanup(applier: &dyn Applier) -> Result<(), nft::Error> {
    applier.apply(&ruleset::cleanup_text(&table_name()))
}
