//! Two controller managers side by side: only the one holding the `kube-controller-manager`
//! Lease acts, and the other takes over once the leader dies.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, eventually, have_kubectl};

fn controller_manager(c: &Cluster, log: &str) -> Child {
    let log = std::fs::File::create(c.dir.path().join(log)).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_keelson"))
        .arg("controller-manager")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args([
            "--leader-elect-lease-duration=3s",
            "--leader-elect-renew-deadline=2s",
            "--leader-elect-retry-period=1s",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start keelson controller-manager")
}

fn holder(c: &Cluster) -> String {
    c.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

fn pods(c: &Cluster) -> usize {
    c.ok(&["get", "pods", "-l", "app=le", "--no-headers"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

const RS: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: le
spec:
  replicas: 2
  selector:
    matchLabels: {app: le}
  template:
    metadata:
      labels: {app: le}
    spec:
      containers:
      - name: c
        image: busybox
";

#[test]
fn only_the_leader_acts_and_another_takes_over() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--disable-controllers"]);
    let mut first = controller_manager(&c, "cm1.log");
    let leader = eventually(20, || Some(holder(&c)).filter(|h| !h.is_empty()));
    let mut second = controller_manager(&c, "cm2.log");
    c.apply_stdin("apply", RS);
    eventually(20, || (pods(&c) == 2).then_some(()));
    // Two managers, one set of pods: the follower never acted.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pods(&c), 2);
    assert_eq!(holder(&c), leader);

    let _ = first.kill();
    let _ = first.wait();
    let next = eventually(20, || Some(holder(&c)).filter(|h| *h != leader));
    assert!(!next.is_empty());
    let transitions = c.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.leaseTransitions}",
    ]);
    assert_eq!(transitions, "1");
    // The new leader acts.
    c.ok(&["scale", "rs", "le", "--replicas=3"]);
    eventually(20, || (pods(&c) == 3).then_some(()));
    let _ = second.kill();
    let _ = second.wait();
}
