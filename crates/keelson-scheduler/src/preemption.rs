//! DefaultPreemption (PostFilter): for a pod no node takes, find a node where evicting pods
//! of lower priority makes it fit, choose the fewest and least important victims as upstream
//! does, and pick the best such node. Pure over the cache; the scheduler then nominates the
//! node and deletes the victims.

use std::cmp::Reverse;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cache::Cache;
use crate::framework::{
    Code, CycleState, Diagnosis, Framework, NodeInfo, PodInfo, Status, fit_message,
};

/// A node where the pod fits once the victims are gone.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<PodInfo>,
}

/// Upstream's messages for the nodes preemption cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

fn priority(p: &PodInfo) -> i32 {
    p.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn start_time(p: &PodInfo) -> Option<&Time> {
    p.pod.status.as_ref().and_then(|s| s.start_time.as_ref())
}

/// Upstream's `MoreImportantPod` order: higher priority first, then the earlier started
/// (a pod not started yet counts as starting now, so it comes last).
fn importance(p: &PodInfo) -> (Reverse<i32>, bool, Option<&Time>) {
    (Reverse(priority(p)), start_time(p).is_none(), start_time(p))
}

/// Whether the pod may preempt at all; the message when it may not (upstream's
/// `PodEligibleToPreemptOthers`: not with preemptionPolicy Never, nor while victims of an
/// earlier preemption on its nominated node are still terminating).
pub fn eligible(cache: &Cache, pod: &PodInfo) -> Result<(), String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".to_string());
    }
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref());
    if let Some(node) = nominated.and_then(|n| cache.node(n)) {
        let own = priority(pod);
        if node
            .pods
            .values()
            .any(|p| p.pod.metadata.deletion_timestamp.is_some() && priority(p) < own)
        {
            return Err(
                "preemption: not eligible due to a terminating pod on the nominated node."
                    .to_string(),
            );
        }
    }
    Ok(())
}

/// The victims on one node: every lower-priority pod is removed, then as many as possible
/// are put back (most important first) while the pod still fits. `None`: the pod does not
/// fit even on the emptied node.
fn select_victims(
    fw: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Option<Vec<PodInfo>> {
    let own = priority(pod);
    let mut potential: Vec<PodInfo> = node
        .pods
        .values()
        .filter(|p| priority(p) < own)
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for p in &potential {
        trial.remove_pod(&p.key());
    }
    if !fw.run_filters_with(state, pod, &trial).is_success() {
        return None;
    }
    potential.sort_by(|a, b| importance(a).cmp(&importance(b)));
    let mut victims = Vec::new();
    for p in potential {
        trial.add_pod(p.clone());
        if !fw.run_filters_with(state, pod, &trial).is_success() {
            trial.remove_pod(&p.key());
            victims.push(p);
        }
    }
    Some(victims)
}

/// Upstream's `pickOneNodeForPreemption`: the lowest highest victim priority, then the lowest
/// sum of priorities, then the fewest victims, then the latest start among the most important
/// victims, then the first found.
fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    let offset = i64::from(i32::MAX) + 1;
    candidates.into_iter().min_by(|a, b| {
        let key = |c: &Candidate| {
            let highest = c.victims.iter().map(priority).max().unwrap_or(i32::MIN);
            let sum: i64 = c
                .victims
                .iter()
                .map(|v| i64::from(priority(v)) + offset)
                .sum();
            let earliest = c
                .victims
                .iter()
                .filter(|v| priority(v) == highest)
                .filter_map(start_time)
                .min()
                .cloned();
            (highest, sum, c.victims.len(), Reverse(earliest))
        };
        key(a).cmp(&key(b))
    })
}

/// How many candidate nodes upstream evaluates before choosing (10 %, at least 100).
fn num_candidates(num_nodes: usize) -> usize {
    (num_nodes / 10).max(100).min(num_nodes)
}

/// Runs preemption after a failed cycle: the chosen candidate, or the `preemption: ...` part
/// of the FailedScheduling message.
pub fn preempt(
    fw: &Framework,
    state: &CycleState,
    cache: &Cache,
    pod: &PodInfo,
    diagnosis: &Diagnosis,
) -> Result<Candidate, String> {
    eligible(cache, pod)?;
    let want = num_candidates(diagnosis.num_all_nodes);
    let mut candidates = Vec::new();
    let mut statuses: Vec<Status> = Vec::new();
    for (name, s) in &diagnosis.node_statuses {
        if s.code == Code::UnschedulableAndUnresolvable {
            statuses.push(Status::unresolvable(NOT_HELPFUL));
            continue;
        }
        if candidates.len() >= want {
            continue;
        }
        match cache
            .node(name)
            .and_then(|n| select_victims(fw, state, pod, n))
        {
            Some(victims) => candidates.push(Candidate {
                node: name.clone(),
                victims,
            }),
            None => statuses.push(Status::unresolvable(NO_VICTIMS)),
        }
    }
    pick(candidates).ok_or_else(|| {
        format!(
            "preemption: {}",
            fit_message(diagnosis.num_all_nodes, statuses.iter())
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::default_framework;

    fn node(name: &str) -> Arc<k8s_openapi::api::core::v1::Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "110"}}}))
            .expect("node"),
        )
    }

    fn pod(name: &str, memory: &str, priority: i32, started: Option<&str>) -> PodInfo {
        let mut v: Value = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "containers": [{"name": "c",
                "resources": {"requests": {"memory": memory}}}]}});
        if let Some(t) = started {
            v["status"] = json!({"startTime": t});
        }
        PodInfo::new(Arc::new(serde_json::from_value(v).expect("pod")))
    }

    /// The chosen node and its victims' names, or the message.
    fn run(
        existing: &[(&str, PodInfo)],
        incoming: &PodInfo,
    ) -> Result<(String, Vec<String>), String> {
        let mut c = Cache::default();
        for n in ["a", "b"] {
            c.add_or_update_node(node(n));
        }
        for (n, p) in existing {
            c.assume(p.clone(), n);
        }
        let fw = default_framework();
        let statuses: Vec<(String, Status)> = ["a", "b"]
            .iter()
            .map(|n| {
                let info = c.node(n).expect("node");
                (n.to_string(), fw.run_filters(incoming, info))
            })
            .collect();
        assert!(
            statuses.iter().all(|(_, s)| !s.is_success()),
            "{statuses:?}"
        );
        let diagnosis = Diagnosis {
            num_all_nodes: 2,
            node_statuses: statuses,
        };
        preempt(&fw, &CycleState::default(), &c, incoming, &diagnosis).map(|cand| {
            let mut names: Vec<String> = cand
                .victims
                .iter()
                .map(|v| v.pod.metadata.name.clone().unwrap_or_default())
                .collect();
            names.sort();
            (cand.node, names)
        })
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let high = pod("high", "3Gi", 100, None);
        // a: one 3Gi pod of priority 10; b: two 1.5Gi pods of priority 5 → b has lower
        // victims' priority.
        let got = run(
            &[
                ("a", pod("a1", "3Gi", 10, None)),
                ("b", pod("b1", "1536Mi", 5, None)),
                ("b", pod("b2", "1536Mi", 5, None)),
            ],
            &high,
        );
        assert_eq!(got, Ok(("b".into(), vec!["b1".into(), "b2".into()])));

        // Equal priorities: the node needing fewer victims wins; a pod that can stay stays.
        let got = run(
            &[
                ("a", pod("a1", "3Gi", 5, None)),
                ("a", pod("a2", "512Mi", 5, None)),
                ("b", pod("b1", "2Gi", 5, None)),
                ("b", pod("b2", "2Gi", 5, None)),
            ],
            &high,
        );
        assert_eq!(got, Ok(("a".into(), vec!["a1".into()])));
    }

    #[test]
    fn reprieves_the_more_important_pods_first() {
        // Room for one of the two 2Gi pods to stay: the one with higher priority stays.
        let high = pod("high", "2Gi", 100, None);
        let got = run(
            &[
                ("a", pod("keep", "2Gi", 50, None)),
                ("a", pod("evict", "2Gi", 10, None)),
                ("b", pod("b1", "4Gi", 60, None)),
            ],
            &high,
        );
        assert_eq!(got, Ok(("a".into(), vec!["evict".into()])));
    }

    #[test]
    fn explains_when_no_victims_exist() {
        let same = pod("same", "3Gi", 10, None);
        let got = run(
            &[
                ("a", pod("a1", "3Gi", 10, None)),
                ("b", pod("b1", "3Gi", 20, None)),
            ],
            &same,
        );
        assert_eq!(
            got,
            Err(
                "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
                    .into()
            )
        );
        let too_big = pod("big", "8Gi", 100, None);
        let got = run(&[("a", pod("a1", "1Gi", 1, None))], &too_big);
        assert_eq!(
            got,
            Err(
                "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
                    .into()
            )
        );
    }
}
