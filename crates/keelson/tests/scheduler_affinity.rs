//! End-to-end: InterPodAffinity and PodTopologySpread place pods on `keelson sim` nodes as
//! upstream does, and the real kubectl shows the FailedScheduling messages upstream shows.

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

/// Waits until `kubectl get nodes` lists `n` Ready nodes.
fn wait_ready(c: &Cluster, n: usize) {
    eventually(30, || {
        let out = c.ok(&["get", "nodes"]);
        let ready = out
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == n).then_some(())
    });
}

fn field(c: &Cluster, pod: &str, path: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")])
}

/// Waits until the pod is Running and returns its node.
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

fn deployment(name: &str, replicas: usize, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n{extra_spec}      containers:\n      - name: app\n        image: registry.local/app:1\n"
    )
}

#[test]
fn anti_affinity_spreads_replicas_and_leaves_the_extra_one_pending() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let _sim = Sim::start(&c, "sim.log", &["--nodes", "3"]);
    wait_ready(&c, 3);

    let anti = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector:\n              matchLabels:\n                app: web\n            topologyKey: kubernetes.io/hostname\n";
    c.apply_stdin("apply", &deployment("web", 4, anti));
    let pods = eventually(30, || {
        let pods = pods_of(&c, "web");
        let running = pods.iter().filter(|p| p.1 == "Running").count();
        let pending = pods.iter().filter(|p| p.1 == "Pending").count();
        (pods.len() == 4 && running == 3 && pending == 1).then_some(pods)
    });
    let mut nodes: Vec<&str> = pods
        .iter()
        .filter(|p| p.1 == "Running")
        .map(|p| p.2.as_str())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["sim-0", "sim-1", "sim-2"], "{pods:?}");
    let pending = pods
        .iter()
        .find(|p| p.1 == "Pending")
        .expect("a pending pod");
    let described = failed_scheduling(&c, &pending.0);
    assert!(
        described.contains(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        ),
        "{described}"
    );

    // Scaling down to three leaves every replica Running on its own node.
    c.ok(&["scale", "deployment", "web", "--replicas=3"]);
    eventually(30, || {
        let pods = pods_of(&c, "web");
        (pods.len() == 3 && pods.iter().all(|p| p.1 == "Running")).then_some(())
    });
}

#[test]
fn affinity_co_locates_with_a_labelled_pod() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let _sim = Sim::start(&c, "sim.log", &["--nodes", "3"]);
    wait_ready(&c, 3);

    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db\n  labels:\n    app: db\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: sim-2\n  containers:\n  - name: app\n    image: registry.local/app:1\n",
    );
    assert_eq!(running_on(&c, "db"), "sim-2");

    let with_affinity = |name: &str, app: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector:\n          matchLabels:\n            app: {app}\n        topologyKey: kubernetes.io/hostname\n  containers:\n  - name: app\n    image: registry.local/app:1\n"
        )
    };
    for name in ["cache-1", "cache-2"] {
        c.apply_stdin("create", &with_affinity(name, "db"));
        assert_eq!(running_on(&c, name), "sim-2", "{name}");
    }

    c.apply_stdin("create", &with_affinity("lonely", "nothing"));
    let described = failed_scheduling(&c, "lonely");
    assert!(
        described.contains(
            "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        ),
        "{described}"
    );
    assert_eq!(field(&c, "lonely", ".status.phase"), "Pending");

    // The pending pod is retried as soon as a pod it wants lands on a node.
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nothing\n  labels:\n    app: nothing\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: sim-0\n  containers:\n  - name: app\n    image: registry.local/app:1\n",
    );
    assert_eq!(running_on(&c, "nothing"), "sim-0");
    assert_eq!(running_on(&c, "lonely"), "sim-0");
}

#[test]
fn topology_spread_balances_zones() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // Zone a has two nodes, zone b one: spreading by node would put 4 of 6 pods in zone a.
    let _a = Sim::start(
        &c,
        "sim-a.log",
        &[
            "--nodes",
            "2",
            "--name-prefix",
            "a-",
            "--labels",
            "topology.kubernetes.io/zone=zone-a",
        ],
    );
    let _b = Sim::start(
        &c,
        "sim-b.log",
        &[
            "--nodes",
            "1",
            "--name-prefix",
            "b-",
            "--labels",
            "topology.kubernetes.io/zone=zone-b",
        ],
    );
    wait_ready(&c, 3);

    let spread = "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: topology.kubernetes.io/zone\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector:\n          matchLabels:\n            app: spread\n";
    c.apply_stdin("apply", &deployment("spread", 6, spread));
    let pods = eventually(30, || {
        let pods = pods_of(&c, "spread");
        (pods.len() == 6 && pods.iter().all(|p| p.1 == "Running")).then_some(pods)
    });
    let in_a = pods.iter().filter(|p| p.2.starts_with("a-")).count();
    let in_b = pods.iter().filter(|p| p.2.starts_with("b-")).count();
    assert_eq!((in_a, in_b), (3, 3), "{pods:?}");

    // A constraint over a label no node has keeps the pod Pending, with upstream's reason.
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: racked\n  labels:\n    app: racked\nspec:\n  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: rack\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector:\n      matchLabels:\n        app: racked\n  containers:\n  - name: app\n    image: registry.local/app:1\n",
    );
    let described = failed_scheduling(&c, "racked");
    assert!(
        described.contains(
            "0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints (missing required label). \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        ),
        "{described}"
    );
}

fn prioritized_pod(name: &str, class: &str, memory: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: prio\nspec:\n  priorityClassName: {class}\n  containers:\n  - name: app\n    image: registry.local/app:1\n    resources:\n      requests:\n        memory: {memory}\n"
    )
}

#[test]
fn a_higher_priority_pod_preempts_a_lower_one() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let _sim = Sim::start(&c, "sim.log", &["--nodes", "2", "--memory", "4Gi"]);
    wait_ready(&c, 2);
    c.apply_stdin(
        "create",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: low\nvalue: 10\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n",
    );

    // The Priority admission plugin resolves the class.
    let err = c
        .with_stdin(
            &["create", "-f", "-"],
            &prioritized_pod("unknown", "nope", "1Gi"),
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("pods \"unknown\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    for name in ["low-0", "low-1"] {
        c.apply_stdin("create", &prioritized_pod(name, "low", "3Gi"));
        running_on(&c, name);
    }
    assert_eq!(field(&c, "low-0", ".spec.priority"), "10");
    let low_nodes = [
        field(&c, "low-0", ".spec.nodeName"),
        field(&c, "low-1", ".spec.nodeName"),
    ];
    assert_ne!(low_nodes[0], low_nodes[1]);

    // Another low pod cannot preempt its peers.
    c.apply_stdin("create", &prioritized_pod("low-2", "low", "3Gi"));
    let described = failed_scheduling(&c, "low-2");
    assert!(
        described.contains(
            "0/2 nodes are available: 2 Insufficient memory. \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        ),
        "{described}"
    );

    // A high-priority pod evicts exactly one low pod and runs in its place.
    c.apply_stdin("create", &prioritized_pod("urgent", "high", "3Gi"));
    let node = running_on(&c, "urgent");
    assert_eq!(field(&c, "urgent", ".spec.priority"), "1000");
    let pods = eventually(30, || {
        let pods = pods_of(&c, "prio");
        let running: Vec<_> = pods.iter().filter(|p| p.1 == "Running").cloned().collect();
        (running.len() == 2).then_some(pods)
    });
    let survivors: Vec<&str> = pods
        .iter()
        .filter(|p| p.1 == "Running")
        .map(|p| p.0.as_str())
        .collect();
    assert!(survivors.contains(&"urgent"), "{pods:?}");
    let victim = if survivors.contains(&"low-0") {
        "low-1"
    } else {
        "low-0"
    };
    let victim_node = &low_nodes[usize::from(victim == "low-1")];
    assert_eq!(&node, victim_node, "urgent runs where its victim ran");
    let events = c.ok(&["get", "events", "--field-selector", "reason=Preempted"]);
    assert!(
        events.contains(&format!("pod/{victim}"))
            && events.contains(&format!("on node {victim_node}")),
        "{events}"
    );
}
