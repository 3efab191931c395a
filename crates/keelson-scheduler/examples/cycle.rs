//! Measures the pure scheduling cycle (no API): 5,000 nodes in 10 zones, 1,000 pods placed
//! first, then N pods scheduled and assumed one after another, for the basic, anti-affinity
//! and spread workloads of `keelson bench scheduler`.
//!
//! `cargo run --release -p keelson-scheduler --example cycle [pods]`

use std::sync::Arc;
use std::time::Instant;

use keelson_scheduler::cache::Cache;
use keelson_scheduler::framework::PodInfo;
use keelson_scheduler::plugins::default_framework;
use keelson_scheduler::schedule::{TieBreaker, schedule};
use serde_json::json;

fn pod(i: usize, workload: &str) -> PodInfo {
    let selector = json!({"matchLabels": {"app": "bench"}});
    let mut v = json!({"metadata": {"name": format!("p{i}"), "namespace": "default",
            "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests":
            {"cpu": "100m", "memory": "100Mi"}}}]}});
    match workload {
        "anti-affinity" => {
            v["spec"]["affinity"] = json!({"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        "spread" => {
            v["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 5,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}]);
        }
        _ => {}
    }
    PodInfo::new(Arc::new(serde_json::from_value(v).expect("pod")))
}

fn main() {
    let pods: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let fw = default_framework();
    for workload in ["basic", "anti-affinity", "spread"] {
        let nodes = 5000;
        let (init, measured) = if workload == "anti-affinity" {
            (1000, pods.min(4000))
        } else {
            (1000, pods)
        };
        let mut cache = Cache::default();
        for i in 0..nodes {
            let node = json!({"metadata": {"name": format!("n{i}"), "labels": {
                    "kubernetes.io/hostname": format!("n{i}"),
                    "topology.kubernetes.io/zone": format!("zone-{}", i % 10)}},
                "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}}});
            cache.add_or_update_node(Arc::new(serde_json::from_value(node).expect("node")));
        }
        let mut ties = TieBreaker::default();
        let mut run = |from: usize, to: usize, cache: &mut Cache| {
            for i in from..to {
                let p = pod(i, workload);
                let node = schedule(&fw, cache, &p, &mut ties).expect("fits");
                cache.assume(p, &node);
            }
        };
        run(0, init, &mut cache);
        let start = Instant::now();
        run(init, init + measured, &mut cache);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{workload:>13}: {measured} pods on {nodes} nodes in {secs:.2} s = {:.0} pods/s (1 core)",
            measured as f64 / secs
        );
    }
}
