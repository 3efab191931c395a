//! Which pods go first on scale-down: unscheduled before scheduled, pending before running,
//! not-ready before ready, lower deletion cost, doubled-up on a node, recently ready, more
//! restarts, then newest first (upstream's `ActivePodsWithRanks` order).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::pod::{is_ready, ready_since};

/// The annotation that lowers or raises a pod's cost of deletion.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The first `n` of `pods` to delete; `related` are all active pods of the same controller
/// family, used to find pods doubled up on one node.
pub fn pods_to_delete(pods: &[Arc<Pod>], related: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if let Some(node) = node_name(p) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<(usize, &Arc<Pod>)> = pods
        .iter()
        .map(|p| {
            (
                node_name(p)
                    .and_then(|n| per_node.get(n))
                    .copied()
                    .unwrap_or(0),
                p,
            )
        })
        .collect();
    ranked.sort_by(|(ra, a), (rb, b)| delete_first(a, *ra, b, *rb));
    ranked.into_iter().take(n).map(|(_, p)| p.clone()).collect()
}

fn node_name(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// `Less` when `a` should be deleted before `b`.
fn delete_first(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let ready_time = |p: &Pod| ready_since(p).flatten();
    node_name(a)
        .is_some()
        .cmp(&node_name(b).is_some())
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (is_ready(a), is_ready(b)) {
            (true, true) => ready_time(b).cmp(&ready_time(a)),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// `name:node:phase:ready:created-seconds[:cost]`, node `-` for unscheduled.
    fn pod(spec: &str) -> Arc<Pod> {
        let f: Vec<&str> = spec.split(':').collect();
        let base = jiff::Timestamp::from_second(1_700_000_000).unwrap_or_default();
        let mut p = Pod::default();
        p.metadata.name = Some(f[0].into());
        p.metadata.creation_timestamp = Some(Time(
            base + jiff::SignedDuration::from_secs(f[4].parse().unwrap_or(0)),
        ));
        if let Some(cost) = f.get(5) {
            p.metadata.annotations = Some([(DELETION_COST.to_string(), cost.to_string())].into());
        }
        p.spec = Some(PodSpec {
            node_name: (f[1] != "-").then(|| f[1].to_string()),
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some(f[2].into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if f[3] == "ready" { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(base)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(p)
    }

    fn check(pods: &[&str], n: usize, want: &[&str]) {
        let pods: Vec<Arc<Pod>> = pods.iter().map(|s| pod(s)).collect();
        let got: Vec<String> = pods_to_delete(&pods, &pods, n)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(got, want, "{pods:?}");
    }

    #[test]
    fn scale_down_order() {
        // Unscheduled first, whatever their age.
        check(&["a:n1:Running:ready:10", "b:-:Pending:no:0"], 1, &["b"]);
        // Pending before running, not-ready before ready.
        check(
            &[
                "a:n1:Running:ready:10",
                "b:n1:Pending:no:0",
                "c:n2:Running:no:0",
            ],
            2,
            &["b", "c"],
        );
        // Otherwise the newest first.
        check(
            &[
                "old:n1:Running:ready:1",
                "new:n2:Running:ready:9",
                "mid:n3:Running:ready:5",
            ],
            3,
            &["new", "mid", "old"],
        );
        // A lower deletion cost goes first.
        check(
            &["a:n1:Running:ready:1:-5", "b:n2:Running:ready:9"],
            1,
            &["a"],
        );
        // Pods doubled up on a node go before a pod alone on its node.
        check(
            &[
                "x:n1:Running:ready:1",
                "y:n1:Running:ready:2",
                "z:n2:Running:ready:9",
            ],
            1,
            &["y"],
        );
        check(&["a:-:Pending:no:1"], 0, &[]);
    }
}
