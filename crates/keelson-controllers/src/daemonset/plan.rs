//! The decision of one DaemonSet sync, with no IO: which nodes get a pod, which pods go
//! (misplaced, extra, failed, or replaced by a rolling update), and the status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::history::REVISION_HASH;
use super::placement::{node_should_run, target_node};
use crate::pod::{is_available, is_ready};

/// What one sync should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes that need a pod.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    pub status: DaemonSetStatus,
}

fn hash_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH)
        .map(String::as_str)
}

fn failed(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

/// `maxUnavailable` of a rolling update against `desired` nodes (percentages round up), at
/// least 1.
pub fn max_unavailable(ds: &DaemonSet, desired: i32) -> i32 {
    let value = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let n = match value {
        IntOrString::Int(n) => n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct * i64::from(desired) + 99) / 100) as i32
        }
    };
    n.max(1)
}

fn on_delete(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

/// Decides one sync of `ds` over `nodes`, given the pods it controls and the current
/// template hash.
pub fn decide(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&Pod],
    hash: &str,
    now: jiff::Timestamp,
) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut plan = Plan::default();
    for p in pods.iter().copied() {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match target_node(p) {
            Some(n) => by_node.entry(n).or_default().push(p),
            None => plan.delete.extend(p.metadata.name.clone()),
        }
    }
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    // Nodes where a current pod runs an old template: (node, pod, available).
    let mut outdated: Vec<(String, &Pod, bool)> = Vec::new();
    let mut unavailable = 0;
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut here = by_node.remove(&name).unwrap_or_default();
        let (should_run, may_continue) = node_should_run(&spec.template, node);
        // Failed pods are replaced.
        for p in here.iter().filter(|p| failed(p)) {
            plan.delete.extend(p.metadata.name.clone());
        }
        here.retain(|p| !failed(p));
        here.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        if !may_continue {
            plan.delete
                .extend(here.iter().filter_map(|p| p.metadata.name.clone()));
            if !here.is_empty() {
                misscheduled += 1;
            }
            continue;
        }
        if !should_run && !here.is_empty() {
            misscheduled += 1;
        }
        if should_run {
            desired += 1;
        }
        match here.split_first() {
            None if should_run => {
                plan.create.push(name);
                unavailable += 1;
            }
            None => {}
            Some((oldest, extra)) => {
                plan.delete
                    .extend(extra.iter().filter_map(|p| p.metadata.name.clone()));
                if !should_run {
                    continue;
                }
                current += 1;
                let avail = is_available(oldest, min_ready, now);
                ready += i32::from(is_ready(oldest));
                available += i32::from(avail);
                unavailable += i32::from(!avail);
                if hash_of(oldest) == Some(hash) {
                    updated += 1;
                } else {
                    outdated.push((name, oldest, avail));
                }
            }
        }
    }
    // Pods pinned to nodes that no longer exist.
    for p in by_node.into_values().flatten() {
        plan.delete.extend(p.metadata.name.clone());
    }
    if !on_delete(ds) {
        let budget = max_unavailable(ds, desired);
        for (_, pod, avail) in outdated {
            if !avail {
                plan.delete.extend(pod.metadata.name.clone());
            } else if unavailable < budget {
                plan.delete.extend(pod.metadata.name.clone());
                unavailable += 1;
            }
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    plan.status = DaemonSetStatus {
        collision_count: old.collision_count,
        conditions: old.conditions,
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_available: Some(available),
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_unavailable: Some(desired - available),
        observed_generation: ds.metadata.generation,
        updated_number_scheduled: Some(updated),
    };
    plan.delete.sort();
    plan.delete.dedup();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "d", "generation": 2},
            "spec": {"updateStrategy": strategy, "selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "x"}],
                "nodeSelector": {"run": "yes"}}}}}))
        .expect("ds")
    }

    fn nodes(names: &str) -> Vec<Node> {
        names
            .split_whitespace()
            .map(|n| {
                let run = if n.starts_with('x') { "no" } else { "yes" };
                serde_json::from_value(json!({"metadata": {"name": n, "labels": {"run": run}}}))
                    .expect("node")
            })
            .collect()
    }

    /// Pods from `name@node:hash:state` words; state r (ready), p (pending), f (failed).
    fn pods(words: &str) -> Vec<Pod> {
        words
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                let parts: Vec<&str> = w.split([':', '@']).collect();
                let (name, node, hash, state) = (parts[0], parts[1], parts[2], parts[3]);
                let phase = match state {
                    "f" => "Failed",
                    "p" => "Pending",
                    _ => "Running",
                };
                let ready = if state == "r" { "True" } else { "False" };
                serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {REVISION_HASH: hash},
                        "creationTimestamp": format!("2026-01-01T00:00:{i:02}Z")},
                    "spec": {"nodeName": node, "containers": []},
                    "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
                }))
                .expect("pod")
            })
            .collect()
    }

    /// (creates, deletes, "desired/current/ready/updated/misscheduled")
    fn check(strategy: serde_json::Value, node_names: &str, words: &str, want: (&str, &str, &str)) {
        let d = ds(strategy);
        let ns = nodes(node_names);
        let ps = pods(words);
        let plan = decide(
            &d,
            &ns.iter().collect::<Vec<_>>(),
            &ps.iter().collect::<Vec<_>>(),
            "new",
            jiff::Timestamp::now(),
        );
        let s = &plan.status;
        let counts = format!(
            "{}/{}/{}/{}/{}",
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready,
            s.updated_number_scheduled.unwrap_or(-1),
            s.number_misscheduled
        );
        let got = (plan.create.join(" "), plan.delete.join(" "), counts);
        assert_eq!(
            got,
            (want.0.into(), want.1.into(), want.2.into()),
            "{node_names} / {words}"
        );
    }

    #[test]
    fn daemon_decisions() {
        let rolling = json!({"type": "RollingUpdate"});
        // One pod per eligible node; ineligible nodes get none.
        check(rolling.clone(), "a b xc", "", ("a b", "", "2/0/0/0/0"));
        check(rolling.clone(), "a b", "p1@a:new:r", ("b", "", "2/1/1/1/0"));
        // Extras (the newer one), failed pods, misplaced pods and pods of gone nodes go.
        check(
            rolling.clone(),
            "a xc",
            "p1@a:new:r p2@a:new:r p3@xc:new:r p4@gone:new:r",
            ("", "p2 p3 p4", "1/1/1/1/1"),
        );
        check(rolling.clone(), "a", "p1@a:new:f", ("a", "p1", "1/0/0/0/0"));
        // Rolling update: one unavailable at a time by default.
        check(
            rolling.clone(),
            "a b c",
            "p1@a:old:r p2@b:old:r p3@c:old:r",
            ("", "p1", "3/3/3/0/0"),
        );
        check(
            rolling.clone(),
            "a b c",
            "p2@b:old:r p3@c:old:r",
            ("a", "", "3/2/2/0/0"),
        );
        check(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}),
            "a b c",
            "p1@a:old:r p2@b:old:r p3@c:old:r",
            ("", "p1 p2", "3/3/3/0/0"),
        );
        check(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}),
            "a b c",
            "p1@a:old:r p2@b:old:r p3@c:old:r",
            ("", "p1 p2", "3/3/3/0/0"),
        );
        // Old pods that are not available anyway go at once.
        check(
            rolling,
            "a b",
            "p1@a:old:p p2@b:old:p",
            ("", "p1 p2", "2/2/0/0/0"),
        );
        // OnDelete: old pods stay until someone deletes them.
        check(
            json!({"type": "OnDelete"}),
            "a b",
            "p1@a:old:r",
            ("b", "", "2/1/1/0/0"),
        );
    }
}
