//! The pod network across nodes, as flannel's host-gw backend does it: a route to every other
//! node's pod CIDR via that node's InternalIP, computed as a value and applied with
//! `ip route replace` / `ip route del` behind a trait.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

use crate::model::NodeInfo;

/// Errors changing the routing table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run ip route for {route}: {source}")]
    Spawn {
        route: String,
        source: std::io::Error,
    },
    #[error("ip route {verb} {route} failed: {stderr}")]
    Failed {
        verb: &'static str,
        route: String,
        stderr: String,
    },
}

/// One route: `cidr via gateway`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub cidr: String,
    pub via: Ipv4Addr,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.cidr, self.via)
    }
}

/// The routes this node needs: every other node's IPv4 pod CIDRs via its InternalIP (nodes
/// without either are skipped, as is any CIDR this node owns).
pub fn desired(me: &str, nodes: &[NodeInfo]) -> BTreeSet<Route> {
    let mine: BTreeSet<&String> = nodes
        .iter()
        .filter(|n| n.name == me)
        .flat_map(|n| &n.pod_cidrs)
        .collect();
    nodes
        .iter()
        .filter(|n| n.name != me)
        .filter_map(|n| Some((n, n.internal_ip?)))
        .flat_map(|(n, via)| {
            n.pod_cidrs
                .iter()
                .filter(|c| !mine.contains(c))
                .map(move |c| Route {
                    cidr: c.clone(),
                    via,
                })
        })
        .collect()
}

/// Changes the host's routing table.
pub trait RouteTable: Send + Sync {
    fn replace(&self, route: &Route) -> Result<(), Error>;
    fn delete(&self, route: &Route) -> Result<(), Error>;
}

/// The real table, through `ip route`.
pub struct IpRoute;

fn ip_route(verb: &'static str, route: &Route) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(["route", verb, &route.cidr, "via", &route.via.to_string()])
        .output()
        .map_err(|source| Error::Spawn {
            route: route.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Failed {
            verb,
            route: route.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

impl RouteTable for IpRoute {
    fn replace(&self, route: &Route) -> Result<(), Error> {
        ip_route("replace", route)
    }
    fn delete(&self, route: &Route) -> Result<(), Error> {
        ip_route("del", route)
    }
}

/// A fake table: the routes it holds.
#[derive(Default)]
pub struct FakeTable {
    pub routes: Mutex<BTreeSet<Route>>,
}

impl RouteTable for FakeTable {
    fn replace(&self, route: &Route) -> Result<(), Error> {
        if let Ok(mut r) = self.routes.lock() {
            r.retain(|x| x.cidr != route.cidr);
            r.insert(route.clone());
        }
        Ok(())
    }
    fn delete(&self, route: &Route) -> Result<(), Error> {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(route);
        }
        Ok(())
    }
}

/// Keeps the table at the desired routes: adds or replaces the new ones, deletes the ones
/// this syncer added that are no longer wanted. Failed changes are retried next time.
#[derive(Default)]
pub struct RouteSyncer {
    installed: BTreeSet<Route>,
}

impl RouteSyncer {
    pub fn sync(&mut self, table: &dyn RouteTable, want: &BTreeSet<Route>) -> Vec<Error> {
        let mut errors = Vec::new();
        for r in self.installed.difference(want).cloned().collect::<Vec<_>>() {
            match table.delete(&r) {
                Ok(()) => {
                    self.installed.remove(&r);
                }
                Err(e) => errors.push(e),
            }
        }
        for r in want
            .difference(&self.installed)
            .cloned()
            .collect::<Vec<_>>()
        {
            match table.replace(&r) {
                Ok(()) => {
                    self.installed.insert(r);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, ip: Option<&str>) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            pod_cidrs: if cidr.is_empty() {
                vec![]
            } else {
                vec![cidr.into()]
            },
            internal_ip: ip.map(|i| i.parse().expect("ip")),
        }
    }

    fn route(cidr: &str, via: &str) -> Route {
        Route {
            cidr: cidr.into(),
            via: via.parse().expect("ip"),
        }
    }

    #[test]
    fn routes_go_to_other_nodes_pod_cidrs_via_their_internal_ip() {
        let nodes = [
            node("a", "10.42.0.0/24", Some("192.168.1.10")),
            node("b", "10.42.1.0/24", Some("192.168.1.11")),
            node("c", "10.42.2.0/24", Some("192.168.1.12")),
            node("no-ip", "10.42.3.0/24", None),
            node("no-cidr", "", Some("192.168.1.14")),
        ];
        let want: BTreeSet<_> = [
            route("10.42.1.0/24", "192.168.1.11"),
            route("10.42.2.0/24", "192.168.1.12"),
        ]
        .into();
        assert_eq!(desired("a", &nodes), want);
        assert!(
            desired("a", &nodes[..1]).is_empty(),
            "a single node routes nothing"
        );
    }

    #[test]
    fn the_syncer_adds_new_routes_and_removes_those_of_nodes_gone() {
        let table = FakeTable::default();
        let mut syncer = RouteSyncer::default();
        let three = [
            node("a", "10.42.0.0/24", Some("192.168.1.10")),
            node("b", "10.42.1.0/24", Some("192.168.1.11")),
            node("c", "10.42.2.0/24", Some("192.168.1.12")),
        ];
        assert!(syncer.sync(&table, &desired("a", &three)).is_empty());
        assert_eq!(table.routes.lock().expect("lock").len(), 2);
        // Node c goes, node b changes address.
        let two = [
            node("a", "10.42.0.0/24", Some("192.168.1.10")),
            node("b", "10.42.1.0/24", Some("192.168.1.21")),
        ];
        assert!(syncer.sync(&table, &desired("a", &two)).is_empty());
        let have: Vec<Route> = table.routes.lock().expect("lock").iter().cloned().collect();
        assert_eq!(have, vec![route("10.42.1.0/24", "192.168.1.21")]);
    }
}
