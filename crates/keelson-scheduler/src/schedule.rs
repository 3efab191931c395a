//! One scheduling cycle, computed without IO: filter the nodes (a share of them on big
//! clusters, as upstream), score the feasible ones, pick the best; or explain why none fits.

use crate::cache::Cache;
use crate::framework::{CycleState, Diagnosis, Framework, PodInfo, Status, fit_message};
use crate::preemption;

/// Upstream's message when the cluster has no nodes at all.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// The outcome of a cycle that found no node.
#[derive(Clone, Debug)]
pub struct FitError {
    pub diagnosis: Diagnosis,
    /// The full message for the pod condition and the FailedScheduling event.
    pub message: String,
    /// Where preemption would make room, and the pods to evict there.
    pub nominated: Option<preemption::Candidate>,
}

/// How many feasible nodes a cycle looks for before it stops filtering (upstream's adaptive
/// `percentageOfNodesToScore`).
pub fn num_feasible_nodes_to_find(num_all_nodes: usize) -> usize {
    num_feasible_nodes_to_find_at(num_all_nodes, 0)
}

/// The same with a configured `percentageOfNodesToScore` (0: adaptive), never under 100 nodes.
pub fn num_feasible_nodes_to_find_at(num_all_nodes: usize, percentage: usize) -> usize {
    const MIN_NODES: usize = 100;
    if num_all_nodes < MIN_NODES {
        return num_all_nodes;
    }
    let percentage = match percentage {
        0 => 50usize.saturating_sub(num_all_nodes / 125).max(5),
        p => p.min(100),
    };
    (num_all_nodes * percentage / 100).max(MIN_NODES)
}

/// A small xorshift generator for breaking ties between equally good nodes.
#[derive(Clone, Debug)]
pub struct TieBreaker(u64);

impl Default for TieBreaker {
    fn default() -> Self {
        TieBreaker(0x9E37_79B9_7F4A_7C15)
    }
}

impl TieBreaker {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Finds a node for `pod`, or the reasons no node fits.
pub fn schedule(
    fw: &Framework,
    cache: &mut Cache,
    pod: &PodInfo,
    ties: &mut TieBreaker,
) -> Result<String, FitError> {
    schedule_scoring(fw, cache, pod, ties, 0)
}

/// [`schedule`] with a profile's `percentageOfNodesToScore` (0: upstream's adaptive share).
pub fn schedule_scoring(
    fw: &Framework,
    cache: &mut Cache,
    pod: &PodInfo,
    ties: &mut TieBreaker,
    percentage_of_nodes_to_score: usize,
) -> Result<String, FitError> {
    let n = cache.num_nodes();
    if n == 0 {
        return Err(FitError {
            diagnosis: Diagnosis::default(),
            message: NO_NODES.to_string(),
            nominated: None,
        });
    }
    let mut state = CycleState::default();
    let mut pre = fw.run_pre_filters(pod);
    if pre.is_success() {
        pre = fw.run_cluster_pre_filters(pod, &*cache, &mut state);
    }
    if !pre.is_success() {
        let diagnosis = Diagnosis {
            num_all_nodes: n,
            node_statuses: cache
                .order()
                .iter()
                .map(|name| (name.clone(), pre.clone()))
                .collect(),
        };
        // Upstream names a PreFilter's refusal once, not once per node.
        let mut err = fit_error(fw, &state, cache, pod, diagnosis);
        err.message = err.message.replacen(
            &fit_message(n, std::iter::repeat_n(&pre, n)),
            &format!("0/{n} nodes are available: {}.", pre.reasons.join(", ")),
            1,
        );
        return Err(err);
    }
    let want = num_feasible_nodes_to_find_at(n, percentage_of_nodes_to_score);
    let start = cache.next_start % n;
    let mut feasible: Vec<&str> = Vec::new();
    let mut failed: Vec<(String, Status)> = Vec::new();
    let mut processed = 0;
    for i in 0..n {
        processed = i + 1;
        let name = &cache.order()[(start + i) % n];
        let Some(info) = cache.node(name) else {
            continue;
        };
        let s = fw.run_filters_with(&state, pod, info);
        if s.is_success() {
            feasible.push(name);
            if feasible.len() >= want {
                break;
            }
        } else {
            failed.push((name.clone(), s));
        }
    }
    let chosen = match feasible.len() {
        0 => None,
        1 => Some(feasible[0].to_string()),
        _ => {
            let infos: Vec<_> = feasible.iter().filter_map(|f| cache.node(f)).collect();
            let scores = fw.run_scores_with(&mut state, pod, &*cache, &infos);
            Some(pick(&feasible, &scores, ties))
        }
    };
    cache.next_start = (start + processed) % n;
    match chosen {
        Some(node) => Ok(node),
        None => {
            let diagnosis = Diagnosis {
                num_all_nodes: n,
                node_statuses: failed,
            };
            Err(fit_error(fw, &state, cache, pod, diagnosis))
        }
    }
}

/// The highest-scoring node; equal scores are broken at random (reservoir sampling).
fn pick(names: &[&str], scores: &[i64], ties: &mut TieBreaker) -> String {
    let mut best = 0;
    let mut seen = 0u64;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
            seen = 1;
        } else if *s == scores[best] {
            seen += 1;
            if ties.next().is_multiple_of(seen) {
                best = i;
            }
        }
    }
    names[best].to_string()
}

/// The FitError of a failed cycle, after PostFilter (DefaultPreemption): when preemption
/// finds a node the message has no `preemption:` part, as upstream.
fn fit_error(
    fw: &Framework,
    state: &CycleState,
    cache: &Cache,
    pod: &PodInfo,
    diagnosis: Diagnosis,
) -> FitError {
    match preemption::preempt(fw, state, cache, pod, &diagnosis) {
        Ok(candidate) => FitError {
            message: diagnosis.message(""),
            diagnosis,
            nominated: Some(candidate),
        },
        Err(preemption) => FitError {
            message: diagnosis.message(&preemption),
            diagnosis,
            nominated: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::default_framework;

    fn node(name: &str, memory: &str, labels: Value) -> Arc<k8s_openapi::api::core::v1::Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                "status": {"allocatable": {"cpu": "4", "memory": memory, "pods": "110"}}}))
            .expect("node"),
        )
    }

    fn pod(spec: Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "resources": {"requests":
            spec.get("memory").cloned().map(|m| json!({"memory": m})).unwrap_or(json!({}))}}]);
        if let Some(o) = spec.as_object_mut() {
            o.remove("memory");
        }
        PodInfo::new(Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
            )
            .expect("pod"),
        ))
    }

    fn cluster(nodes: &[(&str, &str, Value)]) -> Cache {
        let mut c = Cache::default();
        for (name, mem, labels) in nodes {
            c.add_or_update_node(node(name, mem, labels.clone()));
        }
        c
    }

    fn check(cache: &mut Cache, spec: Value, want: Result<&str, &str>) {
        let got = schedule(
            &default_framework(),
            cache,
            &pod(spec.clone()),
            &mut TieBreaker::default(),
        );
        match (got, want) {
            (Ok(n), Ok(w)) => assert_eq!(n, w, "{spec}"),
            (Err(e), Err(w)) => assert_eq!(e.message, w, "{spec}"),
            (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn places_or_explains() {
        let three = || {
            cluster(&[
                ("a", "2Gi", json!({"zone": "x"})),
                ("b", "8Gi", json!({"zone": "y"})),
                ("c", "8Gi", json!({"zone": "y"})),
            ])
        };
        check(
            &mut three(),
            json!({"nodeSelector": {"zone": "x"}}),
            Ok("a"),
        );
        check(
            &mut three(),
            json!({"nodeSelector": {"zone": "x"}, "memory": "4Gi"}),
            Err(
                "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            ),
        );
        check(
            &mut three(),
            json!({"memory": "16Gi"}),
            Err(
                "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            ),
        );
        check(
            &mut three(),
            json!({"nodeSelector": {"zone": "none"}}),
            Err(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            ),
        );
        check(
            &mut three(),
            json!({"nodeSelector": {"zone": "x"}, "memory": "3Gi", "preemptionPolicy": "Never"}),
            Err(
                "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector. preemption: not eligible due to preemptionPolicy=Never.",
            ),
        );
        check(&mut Cache::default(), json!({}), Err(NO_NODES));
    }

    #[test]
    fn a_full_node_is_skipped_and_resolvable_shortage_reports_no_victims() {
        let mut c = cluster(&[("a", "4Gi", json!({})), ("b", "4Gi", json!({}))]);
        let fw = default_framework();
        let mut ties = TieBreaker::default();
        let first = schedule(&fw, &mut c, &pod(json!({"memory": "3Gi"})), &mut ties).expect("fits");
        c.assume(pod(json!({"memory": "3Gi"})), &first);
        let mut second = pod(json!({"memory": "3Gi"}));
        let mut p = (*second.pod).clone();
        p.metadata.name = Some("q".into());
        second = PodInfo::new(Arc::new(p));
        let other = schedule(&fw, &mut c, &second, &mut ties).expect("fits on the other node");
        assert_ne!(first, other, "the scheduler picks the node with room");
        c.assume(second, &other);
        let err =
            schedule(&fw, &mut c, &pod(json!({"memory": "2Gi"})), &mut ties).expect_err("full");
        assert_eq!(
            err.message,
            "0/2 nodes are available: 2 Insufficient memory. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn least_allocated_spreads_pods() {
        let mut c = cluster(&[("a", "8Gi", json!({})), ("b", "8Gi", json!({}))]);
        let fw = default_framework();
        let mut ties = TieBreaker::default();
        for i in 0..4 {
            let mut p = (*pod(json!({"memory": "1Gi"})).pod).clone();
            p.metadata.name = Some(format!("p{i}"));
            let info = PodInfo::new(Arc::new(p));
            let n = schedule(&fw, &mut c, &info, &mut ties).expect("fits");
            c.assume(info, &n);
        }
        let counts: Vec<usize> = ["a", "b"]
            .iter()
            .map(|n| c.node(n).map_or(0, |i| i.pods.len()))
            .collect();
        assert_eq!(counts, vec![2, 2]);
    }

    #[test]
    fn feasible_nodes_to_find() {
        for (all, want) in [
            (0, 0),
            (10, 10),
            (99, 99),
            (100, 100),
            (1000, 420),
            (5000, 500),
            (6000, 300),
            (100_000, 5000),
        ] {
            assert_eq!(num_feasible_nodes_to_find(all), want, "{all}");
        }
        // A configured percentage, never under 100 nodes.
        assert_eq!(num_feasible_nodes_to_find_at(5000, 10), 500);
        assert_eq!(num_feasible_nodes_to_find_at(5000, 100), 5000);
        assert_eq!(num_feasible_nodes_to_find_at(500, 1), 100);
        assert_eq!(num_feasible_nodes_to_find_at(50, 1), 50);
    }
}
