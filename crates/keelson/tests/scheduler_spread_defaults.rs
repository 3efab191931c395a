//! End-to-end: PodTopologySpread's system default constraints spread a Deployment's replicas
//! over hostnames and zones although the pods have no topologySpreadConstraints of their own.

mod common;

use std::process::{Child, Command, Stdio};

use common::{Cluster, eventually, have_kubectl, path_str};

/// A `keelson sim` child process, killed when dropped.
struct Sim(Child);

impl Sim {
    fn start(c: &Cluster, log: &str, args: &[&str]) -> Sim {
        let log = std::fs::File::create(c.dir.path().join(log)).expect("sim log");
        let child = Command::new(env!("CARGO_BIN_EXE_keelson"))
            .args(["sim", "--kubeconfig", path_str(&c.kubeconfig)])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson sim");
        Sim(child)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (name, phase, node) of each pod with label app=`app`, from `kubectl get pods -o wide`.
fn pods_of(c: &Cluster, app: &str) -> Vec<(String, String, String)> {
    c.ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "wide"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((
                cols.first()?.to_string(),
                cols.get(2)?.to_string(),
                cols.get(6)?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn a_deployment_spreads_over_hostnames_and_zones_by_default() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // One big node and two small ones, each in its own zone: by free resources alone
    // (LeastAllocated) every replica would go to the big node.
    let node = |log: &str, prefix: &str, zone: &str, cpu: &str, memory: &str| {
        let zone = format!("topology.kubernetes.io/zone={zone}");
        Sim::start(
            &c,
            log,
            &[
                "--nodes",
                "1",
                "--name-prefix",
                prefix,
                "--cpu",
                cpu,
                "--memory",
                memory,
                "--labels",
                &zone,
            ],
        )
    };
    let _big = node("big.log", "big-", "zone-a", "64", "256Gi");
    let _s1 = node("s1.log", "small-a-", "zone-b", "4", "8Gi");
    let _s2 = node("s2.log", "small-b-", "zone-c", "4", "8Gi");
    eventually(30, || {
        let out = c.ok(&["get", "nodes"]);
        let ready = out
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == 3).then_some(())
    });

    c.apply_stdin(
        "apply",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 6\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: app\n        image: registry.local/app:1\n        resources:\n          requests:\n            cpu: 500m\n            memory: 1Gi\n",
    );
    let pods = eventually(60, || {
        let pods = pods_of(&c, "web");
        (pods.len() == 6 && pods.iter().all(|p| p.1 == "Running")).then_some(pods)
    });
    let mut per_node: Vec<(String, usize)> = Vec::new();
    for node in ["big-0", "small-a-0", "small-b-0"] {
        per_node.push((
            node.to_string(),
            pods.iter().filter(|p| p.2 == node).count(),
        ));
    }
    assert_eq!(
        per_node,
        vec![
            ("big-0".to_string(), 2),
            ("small-a-0".to_string(), 2),
            ("small-b-0".to_string(), 2)
        ],
        "{pods:?}"
    );

    // A pod nothing selects is not spread: it goes where resources are freest.
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: alone\nspec:\n  containers:\n  - name: app\n    image: registry.local/app:1\n    resources:\n      requests:\n        cpu: 500m\n        memory: 1Gi\n",
    );
    let node = eventually(30, || {
        let out = c.ok(&["get", "pod", "alone", "-o", "jsonpath={.spec.nodeName}"]);
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(node, "big-0");
}
