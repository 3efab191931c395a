//! The pod garbage collector with the real kubectl on `keelson sim` nodes: the pods of a
//! deleted node are marked Failed (DisruptionTarget, DeletionByPodGC) and deleted, and their
//! ReplicaSet replaces them on another node; terminated pods beyond
//! `--terminated-pod-gc-threshold` are deleted oldest first.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, eventually, have_kubectl, path_str};

/// A `keelson sim` child process, killed when dropped.
struct Sim(Child);

impl Sim {
    fn start(c: &Cluster, prefix: &str) -> Sim {
        let log =
            std::fs::File::create(c.dir.path().join(format!("sim-{prefix}log"))).expect("sim log");
        let child = Command::new(env!("CARGO_BIN_EXE_keelson"))
            .args(["sim", "--kubeconfig", path_str(&c.kubeconfig)])
            .args(["--nodes", "1", "--name-prefix", prefix])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson sim");
        let node = format!("{prefix}0");
        eventually(30, || {
            let out = c.ok(&["get", "nodes", "--no-headers"]);
            out.lines()
                .any(|l| l.starts_with(&node) && l.split_whitespace().nth(1) == Some("Ready"))
                .then_some(())
        });
        Sim(child)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `NAME STATUS NODE` of every pod in the default namespace.
fn pods(c: &Cluster) -> Vec<(String, String, String)> {
    c.ok(&["get", "pods", "-o", "wide", "--no-headers"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.to_string(),
                f.get(6)?.to_string(),
            ))
        })
        .collect()
}

const REPLICASET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: registry.local/app:1
";

const SOLO: &str = "apiVersion: v1
kind: Pod
metadata:
  name: solo
spec:
  containers:
  - name: app
    image: registry.local/app:1
";

#[test]
fn pods_of_a_deleted_node_are_collected_and_replaced_elsewhere() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--pod-gc-period", "1s"]);
    let doomed = Sim::start(&c, "doomed-");
    c.apply_stdin("apply", REPLICASET);
    c.apply_stdin("apply", SOLO);
    eventually(30, || {
        let all = pods(&c);
        (all.len() == 3
            && all
                .iter()
                .all(|(_, status, node)| status == "Running" && node == "doomed-0"))
        .then_some(())
    });
    let _spare = Sim::start(&c, "spare-");
    // Watch the bare pod: its last states are what PodGC wrote before deleting it.
    let mut watch = c
        .kubectl_cmd(&[
            "get",
            "pod",
            "solo",
            "--watch",
            "-o",
            "jsonpath={.status.phase}/{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}/{.status.conditions[?(@.type==\"DisruptionTarget\")].message}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    // The node's agent is gone for good, then the node object.
    drop(doomed);
    let before: Vec<String> = pods(&c).into_iter().map(|(name, _, _)| name).collect();
    c.ok(&["delete", "node", "doomed-0"]);

    let after = eventually(30, || {
        let all = pods(&c);
        (all.len() == 2
            && all
                .iter()
                .all(|(_, status, node)| status == "Running" && node == "spare-0"))
        .then_some(all)
    });
    for (name, _, _) in &after {
        assert!(name.starts_with("web-"), "{after:?}");
        assert!(
            !before.contains(name),
            "{name} is a replacement: {before:?}"
        );
    }
    let gone = c.fails(&["get", "pod", "solo"]);
    assert!(
        gone.contains("pods \"solo\" not found"),
        "the orphaned bare pod is deleted: {gone}"
    );
    let rs = c.ok(&["get", "rs", "web", "-o", "jsonpath={.status.readyReplicas}"]);
    assert_eq!(rs, "2");

    let _ = watch.kill();
    let mut seen = String::new();
    if let Some(mut out) = watch.stdout.take() {
        let _ = out.read_to_string(&mut seen);
    }
    let _ = watch.wait();
    assert!(
        seen.lines()
            .any(|l| l == "Failed/DeletionByPodGC/PodGC: node no longer exists"),
        "the pod is marked Failed with the DisruptionTarget condition before it goes: {seen:?}"
    );
}

fn finishing_pod(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: registry.local/job:1
"
    )
}

#[test]
fn terminated_pods_beyond_the_threshold_are_deleted_oldest_first() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&[
        "--pod-gc-period",
        "1s",
        "--terminated-pod-gc-threshold",
        "2",
    ]);
    let _sim = Sim::start(&c, "sim-");
    c.apply_stdin("apply", SOLO);
    // Created oldest first in reverse name order, so age and name disagree: a second apart,
    // as creation timestamps have whole seconds.
    for name in ["done-5", "done-4", "done-3", "done-2", "done-1"] {
        c.apply_stdin("create", &finishing_pod(name));
        std::thread::sleep(Duration::from_millis(1100));
    }
    let want = [
        ("done-1", "Completed"),
        ("done-2", "Completed"),
        ("solo", "Running"),
    ];
    let matches = |c: &Cluster| {
        let mut all: Vec<(String, String)> = pods(c)
            .into_iter()
            .map(|(name, status, _)| (name, status))
            .collect();
        all.sort();
        all.iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .eq(want.iter().copied())
    };
    eventually(30, || matches(&c).then_some(()));
    // And it stays so: the two newest terminated pods are kept.
    std::thread::sleep(Duration::from_secs(3));
    assert!(matches(&c), "{:?}", pods(&c));
}
