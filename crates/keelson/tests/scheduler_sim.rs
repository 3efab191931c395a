//! End-to-end: the scheduler inside `keelson server` places pods on `keelson sim` nodes, and
//! the real kubectl shows what upstream shows (SEED-SCENARIOS §B.10, §B.11).

mod common;

use std::process::{Child, Command, Stdio};

use common::{Cluster, eventually, have_kubectl, path_str};

/// A `keelson sim` child process, killed when dropped.
struct Sim(Child);

impl Sim {
    fn start(c: &Cluster, args: &[&str]) -> Sim {
        let log = std::fs::File::create(c.dir.path().join("sim.log")).expect("sim log");
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

/// Starts a cluster with `nodes` simulated nodes of 4 CPUs and 4Gi and waits until
/// `kubectl get nodes` lists them all Ready.
fn cluster_with_nodes(nodes: usize) -> (Cluster, Sim) {
    let c = Cluster::start();
    let sim = Sim::start(
        &c,
        &[
            "--nodes",
            &nodes.to_string(),
            "--memory",
            "4Gi",
            "--labels",
            "zone=z1",
        ],
    );
    eventually(30, || {
        let out = c.ok(&["get", "nodes"]);
        let ready = out
            .lines()
            .filter(|l| l.starts_with("sim-") && l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == nodes).then_some(())
    });
    (c, sim)
}

fn pod_yaml(name: &str, memory: Option<&str>, selector: Option<&str>) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: registry.local/app:1\n"
    );
    if let Some(m) = memory {
        y.push_str(&format!(
            "    resources:\n      requests:\n        memory: {m}\n"
        ));
    }
    if let Some(host) = selector {
        y.push_str(&format!(
            "  nodeSelector:\n    kubernetes.io/hostname: {host}\n"
        ));
    }
    y
}

fn field(c: &Cluster, pod: &str, path: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")])
}

/// Waits until the pod is Running on a node and returns that node.
#[track_caller]
fn running_on(c: &Cluster, pod: &str) -> String {
    eventually(30, || {
        (field(c, pod, ".status.phase") == "Running").then(|| field(c, pod, ".spec.nodeName"))
    })
}

/// Waits until `kubectl describe pod` shows a FailedScheduling event, and returns its text.
#[track_caller]
fn failed_scheduling(c: &Cluster, pod: &str) -> String {
    eventually(30, || {
        let out = c.ok(&["describe", "pod", pod]);
        out.contains("FailedScheduling").then_some(out)
    })
}

#[test]
fn node_selector_places_pods_and_explains_when_nothing_matches() {
    if !have_kubectl() {
        return;
    }
    let (c, _sim) = cluster_with_nodes(2);
    let nodes = c.ok(&["get", "nodes", "--show-labels"]);
    assert!(nodes.contains("node.keelson.io/simulated=true"), "{nodes}");
    assert!(nodes.contains("zone=z1"), "{nodes}");

    c.apply_stdin("create", &pod_yaml("pinned", None, Some("sim-1")));
    assert_eq!(running_on(&c, "pinned"), "sim-1");
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with("pinned"))
        .unwrap_or_default();
    assert!(
        row.contains("Running") && row.contains("sim-1") && row.contains("10.42.1."),
        "{wide}"
    );
    let described = c.ok(&["describe", "pod", "pinned"]);
    assert!(
        described.contains("Successfully assigned default/pinned to sim-1"),
        "{described}"
    );
    assert_eq!(field(&c, "pinned", ".status.hostIP"), "172.16.0.2");

    c.apply_stdin("create", &pod_yaml("nowhere", None, Some("sim-9")));
    let described = failed_scheduling(&c, "nowhere");
    assert!(
        described.contains(
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        ),
        "{described}"
    );
    assert_eq!(field(&c, "nowhere", ".status.phase"), "Pending");
    assert_eq!(
        field(
            &c,
            "nowhere",
            ".status.conditions[?(@.type==\"PodScheduled\")].reason"
        ),
        "Unschedulable"
    );

    // A pod that runs to completion finishes; deleting a running pod completes at once.
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: once\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: registry.local/app:1\n",
    );
    eventually(30, || {
        (field(&c, "once", ".status.phase") == "Succeeded").then_some(())
    });
    let listed = c.ok(&["get", "pod", "once"]);
    assert!(listed.contains("Completed"), "{listed}");
    c.ok(&["delete", "pod", "pinned", "--timeout=20s"]);
    assert!(c.fails(&["get", "pod", "pinned"]).contains("NotFound"));
}

#[test]
fn memory_requests_pick_the_node_with_room_or_wait() {
    if !have_kubectl() {
        return;
    }
    let (c, _sim) = cluster_with_nodes(2);

    c.apply_stdin("create", &pod_yaml("too-big", Some("64Gi"), None));
    let described = failed_scheduling(&c, "too-big");
    assert!(
        described.contains(
            "0/2 nodes are available: 2 Insufficient memory. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        ),
        "{described}"
    );

    // sim-0 keeps 1Gi free after `first`; the next 3Gi pod must go to sim-1.
    c.apply_stdin("create", &pod_yaml("first", Some("3Gi"), Some("sim-0")));
    assert_eq!(running_on(&c, "first"), "sim-0");
    c.apply_stdin("create", &pod_yaml("second", Some("3Gi"), None));
    assert_eq!(running_on(&c, "second"), "sim-1");

    // Now neither node has 3Gi free: the third waits, and says so.
    c.apply_stdin("create", &pod_yaml("third", Some("3Gi"), None));
    let described = failed_scheduling(&c, "third");
    assert!(
        described.contains(
            "0/2 nodes are available: 2 Insufficient memory. \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        ),
        "{described}"
    );
    assert_eq!(field(&c, "third", ".status.phase"), "Pending");

    // Freeing room lets it in.
    c.ok(&["delete", "pod", "first", "--timeout=20s"]);
    assert_eq!(running_on(&c, "third"), "sim-0");
}
