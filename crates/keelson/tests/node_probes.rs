//! Container probes on real containers (SEED-SCENARIOS.md §B.12): failing liveness probes
//! (httpGet 404, tcpSocket on a closed port, exec) restart the container, readiness drives
//! READY and the Service's endpoints, and a startup probe holds readiness back.
//! These tests need root and containerd; they skip elsewhere, saying why.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Cluster, eventually, have_node};

const PODS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: live-http
spec:
  # nginx exits 0 when stopped: killed for its probe, it restarts even so.
  restartPolicy: OnFailure
  containers:
  - name: web
    image: nginx
    livenessProbe:
      httpGet:
        path: /nope
        port: 80
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: live-tcp
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleeper
    image: busybox
    command: [sleep, '3600']
    livenessProbe:
      tcpSocket:
        port: 81
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: live-exec
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: worker
    image: busybox
    command: [sh, -c, 'touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600']
    livenessProbe:
      exec:
        command: [cat, /tmp/healthy]
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: ready-http
  labels:
    app: ready-http
spec:
  containers:
  - name: app
    image: kubetm/p8080
    ports:
    - name: http
      containerPort: 8080
    readinessProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: ready-http
spec:
  selector:
    app: ready-http
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: ready-late
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'sleep 6; touch /tmp/ready; sleep 3600']
    readinessProbe:
      exec:
        command: [cat, /tmp/ready]
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: slow-start
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'sleep 6; touch /tmp/started; sleep 3600']
    startupProbe:
      exec:
        command: [cat, /tmp/started]
      periodSeconds: 1
      failureThreshold: 30
";

/// Seed 001's liveness example, unmodified: `/` answers 200, so the container is never
/// restarted.
const SEED_LIVENESS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: mynapp-pod-liveness
  labels:
spec:
  containers:
  - image: union1991/myweb
    name: mynapp
    ports:
    - containerPort: 8080
      protocol: TCP
    livenessProbe:
      httpGet:
        path: /
        port: 8080
";

/// Seed 001's mysql example, with `exec.command` a string where a list belongs.
const SEED_MYSQL: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: mysql-liveness
  labels:
spec:
  containers:
  - image: mysql
    name: mysql
    ports:
    - containerPort: 3306
      protocol: TCP
    env:
      - name: MYSQL_ROOT_PASSWORD
        value: dkagh1.
    livenessProbe:
      exec:
        command: mysqladmin ping -pdkagh1.
";

/// `GET path` on `ip:port` from the node; the status code, if anything answers.
fn http_status(ip: &str, port: u16, path: &str) -> Option<u16> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

fn jsonpath(c: &Cluster, what: &str, path: &str) -> String {
    c.ok(&["get", what, "-o", &format!("jsonpath={path}")])
}

/// The columns of `kubectl get pod NAME --no-headers` (NAME READY STATUS RESTARTS AGE).
fn columns(c: &Cluster, pod: &str) -> Vec<String> {
    c.ok(&["get", "pod", pod, "--no-headers"])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Waits until `f` holds for the pod's columns; on timeout, fails showing the pod.
#[track_caller]
fn wait_pod(c: &Cluster, pod: &str, secs: u64, what: &str, f: impl Fn(&[String]) -> bool) {
    let mut last = Vec::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(secs, || {
            last = columns(c, pod);
            f(&last).then_some(())
        })
    }));
    if found.is_err() {
        panic!(
            "pod {pod} never showed {what} within {secs}s; last: {last:?}\n{}\n{}",
            c.ok(&["describe", "pod", pod]),
            c.log()
        );
    }
}

fn restarts(cols: &[String]) -> u32 {
    cols.get(3).and_then(|r| r.parse().ok()).unwrap_or_default()
}

fn col(cols: &[String], i: usize) -> &str {
    cols.get(i).map(String::as_str).unwrap_or_default()
}

/// Waits until `kubectl describe pod` shows every one of `want`.
#[track_caller]
fn wait_described(c: &Cluster, pod: &str, want: &[&str]) -> String {
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(20, || {
            last = c.ok(&["describe", "pod", pod]);
            want.iter().all(|w| last.contains(w)).then_some(())
        })
    }));
    assert!(found.is_ok(), "describe pod {pod} lacks {want:?}:\n{last}");
    last
}

#[test]
fn probes_restart_and_gate_readiness() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", PODS);
    c.apply_stdin("apply", SEED_LIVENESS);
    // A probe command written as a string is rejected, saying where.
    let out = c.with_stdin(&["apply", "-f", "-"], SEED_MYSQL);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot be handled as a Pod") && err.contains("livenessProbe.exec.command"),
        "{err}"
    );

    // Startup: running but neither started nor ready until the probe passes.
    wait_pod(&c, "slow-start", 40, "0/1 Running", |cols| {
        col(cols, 1) == "0/1" && col(cols, 2) == "Running"
    });
    assert_eq!(
        jsonpath(
            &c,
            "pod/slow-start",
            "{.status.containerStatuses[0].started}"
        ),
        "false"
    );
    // Readiness that fails at first: Running, not ready, then ready.
    wait_pod(&c, "ready-late", 40, "0/1 Running", |cols| {
        col(cols, 1) == "0/1" && col(cols, 2) == "Running"
    });
    wait_pod(&c, "ready-late", 30, "1/1 Running", |cols| {
        col(cols, 1) == "1/1" && col(cols, 2) == "Running"
    });
    wait_pod(&c, "slow-start", 30, "1/1 Running", |cols| {
        col(cols, 1) == "1/1" && col(cols, 2) == "Running"
    });
    assert_eq!(
        jsonpath(
            &c,
            "pod/slow-start",
            "{.status.containerStatuses[0].started}"
        ),
        "true"
    );
    assert_eq!(restarts(&columns(&c, "slow-start")), 0);

    // Liveness over HTTP: nginx answers 404 on /nope, so the container restarts.
    wait_pod(&c, "live-http", 40, "a restart", |cols| restarts(cols) >= 1);
    wait_described(
        &c,
        "live-http",
        &[
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
            "Container web failed liveness probe, will be restarted",
        ],
    );
    // Liveness over TCP on a port nothing listens on.
    wait_pod(&c, "live-tcp", 40, "a restart", |cols| restarts(cols) >= 1);
    let ip = jsonpath(&c, "pod/live-tcp", "{.status.podIP}");
    wait_described(
        &c,
        "live-tcp",
        &[&format!(
            "Liveness probe failed: dial tcp {ip}:81: connect: connection refused"
        )],
    );
    // Liveness by exec: healthy for 3 s, then the file is gone.
    wait_pod(&c, "live-exec", 40, "a restart", |cols| restarts(cols) >= 1);
    wait_described(
        &c,
        "live-exec",
        &["Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory"],
    );

    // Readiness over HTTP, and the Service's endpoints following it.
    wait_pod(&c, "ready-http", 30, "1/1 Running", |cols| {
        col(cols, 1) == "1/1" && col(cols, 2) == "Running"
    });
    let ip = jsonpath(&c, "pod/ready-http", "{.status.podIP}");
    eventually(20, || {
        jsonpath(&c, "endpoints/ready-http", "{.subsets[*].addresses[*].ip}")
            .contains(&ip)
            .then_some(())
    });
    assert!(http_status(&ip, 8080, "/fail").is_some(), "/fail answers");
    wait_pod(&c, "ready-http", 20, "0/1 Running", |cols| {
        col(cols, 1) == "0/1" && col(cols, 2) == "Running"
    });
    eventually(20, || {
        let ready = jsonpath(&c, "endpoints/ready-http", "{.subsets[*].addresses[*].ip}");
        let not_ready = jsonpath(
            &c,
            "endpoints/ready-http",
            "{.subsets[*].notReadyAddresses[*].ip}",
        );
        (!ready.contains(&ip) && not_ready.contains(&ip)).then_some(())
    });
    wait_described(
        &c,
        "ready-http",
        &["Readiness probe failed: HTTP probe failed with statuscode: 500"],
    );
    assert_eq!(restarts(&columns(&c, "ready-http")), 0);
    // A probe that passes leaves the container alone.
    let cols = columns(&c, "mynapp-pod-liveness");
    assert_eq!(
        (col(&cols, 1), col(&cols, 2), restarts(&cols)),
        ("1/1", "Running", 0),
        "{cols:?}"
    );
}
