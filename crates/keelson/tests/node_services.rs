//! Services carrying traffic on real containers (SEED-SCENARIOS.md §D.1–D.6): the seeds'
//! Services select exactly their pods, ClusterIPs answer from the node and from inside pods
//! and spread requests, NodePorts answer on the node's address and on 127.0.0.1, a
//! LoadBalancer gets an EXTERNAL-IP that answers, a Service without endpoints refuses at once,
//! and the proxy's nftables table goes away with the cluster. Needs root and containerd.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Cluster, eventually, have_node, http_get, http_get_until};

/// Seed 000's six labelled pods (kubetm/init serves on 8080).
fn seed_pods() -> String {
    [
        ("pod-1", "web", "dev"),
        ("pod-2", "db", "dev"),
        ("pod-3", "server", "dev"),
        ("pod-4", "web", "production"),
        ("pod-5", "db", "production"),
        ("pod-6", "server", "production"),
    ]
    .iter()
    .map(|(n, t, lo)| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {n}\n  labels:\n    type: {t}\n    lo: {lo}\nspec:\n  containers:\n  - name: container\n    image: kubetm/init\n---\n"
        )
    })
    .collect()
}

/// Seed 000's two Services, unmodified.
const SEED_SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: svc-for-web
spec:
  selector:
    type: web
  ports:
  - port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: svc-for-prod
spec:
  selector:
    lo: production
  ports:
  - port: 8080
";

fn jsonpath(c: &Cluster, what: &str, path: &str) -> String {
    c.ok(&["get", what, "-o", &format!("jsonpath={path}")])
}

fn sorted(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

fn hostname(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("Hostname: "))
        .map(str::to_string)
}

fn wait_ready(c: &Cluster, selector: &str, n: usize) {
    eventually(90, || {
        let out = c.ok(&["get", "pods", "-l", selector, "--no-headers"]);
        (out.lines()
            .filter(|l| l.contains(" 1/1 ") && l.contains("Running"))
            .count()
            == n)
            .then_some(())
    });
}

/// The pod IPs the Endpoints object lists, sorted.
fn endpoint_ips(c: &Cluster, svc: &str) -> Vec<String> {
    sorted(&jsonpath(
        c,
        &format!("endpoints/{svc}"),
        "{.subsets[*].addresses[*].ip}",
    ))
}

fn pod_ips(c: &Cluster, pods: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = pods
        .iter()
        .map(|p| jsonpath(c, &format!("pod/{p}"), "{.status.podIP}"))
        .collect();
    v.sort();
    v
}

/// A pod that runs `script` once in the kubetm/init image (busybox, and the project's
/// workload as `curl`); its log, once it has ended.
fn run_in_pod(c: &Cluster, name: &str, script: &str) -> String {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: kubetm/init\n    command: [\"sh\", \"-c\", {script:?}]\n"
    );
    c.apply_stdin("apply", &yaml);
    eventually(60, || {
        let phase = jsonpath(c, &format!("pod/{name}"), "{.status.phase}");
        (phase == "Succeeded" || phase == "Failed").then_some(())
    });
    c.ok(&["logs", name])
}

/// Connecting to a Service without endpoints is refused at once (not a timeout).
fn refused_at_once(ip: &str, port: u16) {
    let started = Instant::now();
    let addr = format!("{ip}:{port}").parse().expect("address");
    let err = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect_err("a Service without endpoints does not accept connections");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{ip}:{port}: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused after {:?}",
        started.elapsed()
    );
}

#[test]
fn seed_services_select_their_pods_and_spread_traffic_over_them() {
    if !have_node() {
        return;
    }
    own_table();
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", &seed_pods());
    c.apply_stdin("apply", SEED_SERVICES);
    wait_ready(&c, "lo", 6);

    // D.1: each Service lists exactly the pods its selector picks.
    let web = pod_ips(&c, &["pod-1", "pod-4"]);
    let prod = pod_ips(&c, &["pod-4", "pod-5", "pod-6"]);
    eventually(20, || {
        (endpoint_ips(&c, "svc-for-web") == web).then_some(())
    });
    eventually(20, || {
        (endpoint_ips(&c, "svc-for-prod") == prod).then_some(())
    });
    let describe = c.ok(&["describe", "svc", "svc-for-prod"]);
    for ip in &prod {
        assert!(describe.contains(ip.as_str()), "{describe}");
    }

    // D.2: the ClusterIP answers from the node, spread over the three production pods.
    let cip = jsonpath(&c, "svc/svc-for-prod", "{.spec.clusterIP}");
    http_get_until(&cip, 8080, "Hostname: pod-");
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..300 {
        let body = http_get(&cip, 8080).expect("the ClusterIP answers");
        *counts
            .entry(hostname(&body).unwrap_or_default())
            .or_default() += 1;
    }
    let names: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(names, ["pod-4", "pod-5", "pod-6"], "{counts:?}");
    // Random choice: each pod's share of 300 is 100 ± 8 (one standard deviation); 60..=140 is
    // five standard deviations either side.
    for (pod, n) in &counts {
        assert!((60..=140).contains(n), "{pod} got {n} of 300: {counts:?}");
    }

    // sessionAffinity ClientIP: one client keeps reaching one pod.
    c.ok(&[
        "patch",
        "svc",
        "svc-for-prod",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    ]);
    eventually(20, || {
        let seen: std::collections::BTreeSet<String> = (0..30)
            .filter_map(|_| hostname(&http_get(&cip, 8080)?))
            .collect();
        (seen.len() == 1).then_some(())
    });
    c.ok(&[
        "patch",
        "svc",
        "svc-for-prod",
        "-p",
        r#"{"spec":{"sessionAffinity":"None"}}"#,
    ]);

    // From inside a pod: svc-for-web reaches pod-1 or pod-4.
    let web_ip = jsonpath(&c, "svc/svc-for-web", "{.spec.clusterIP}");
    let log = run_in_pod(&c, "client", &format!("curl -s -m 5 http://{web_ip}:8080/"));
    let who = hostname(&log);
    assert!(
        matches!(who.as_deref(), Some("pod-1" | "pod-4")),
        "a pod reaching svc-for-web got {log:?}"
    );

    // Hairpin: a pod reaches itself through its own Service.
    c.apply_stdin(
        "apply",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: self\nspec:\n  clusterIP: 10.43.200.200\n  selector:\n    app: self\n  ports:\n  - port: 80\n    targetPort: 8080\n",
    );
    let log = run_in_pod_labelled(
        &c,
        "self",
        "/bin/keelson-workload serve --port 8080 --message self & \
         for i in $(seq 1 30); do curl -s -m 2 http://10.43.200.200/ && exit 0; sleep 1; done; exit 1",
    );
    assert_eq!(hostname(&log).as_deref(), Some("self"), "{log}");

    // A Service without endpoints refuses at once.
    c.apply_stdin(
        "apply",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: nobody\nspec:\n  selector:\n    app: nobody\n  ports:\n  - port: 8080\n",
    );
    let nobody = jsonpath(&c, "svc/nobody", "{.spec.clusterIP}");
    eventually(10, || {
        let addr = format!("{nobody}:8080").parse().ok()?;
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .err()
            .filter(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    refused_at_once(&nobody, 8080);

    // D.6: the Service outlives its pods: delete and recreate them, the ClusterIP stays and
    // reaches the new pods.
    c.ok(&["delete", "pod", "pod-4", "pod-5", "pod-6", "--wait=true"]);
    let uids_before = jsonpath(&c, "svc/svc-for-prod", "{.metadata.uid}");
    c.apply_stdin("apply", &seed_pods());
    wait_ready(&c, "lo=production", 3);
    let prod = pod_ips(&c, &["pod-4", "pod-5", "pod-6"]);
    eventually(20, || {
        (endpoint_ips(&c, "svc-for-prod") == prod).then_some(())
    });
    assert_eq!(jsonpath(&c, "svc/svc-for-prod", "{.spec.clusterIP}"), cip);
    assert_eq!(
        jsonpath(&c, "svc/svc-for-prod", "{.metadata.uid}"),
        uids_before
    );
    let body = http_get_until(&cip, 8080, "Hostname: pod-");
    assert!(
        body.contains("Message: init"),
        "the recreated pods answer: {body}"
    );
}

/// [`run_in_pod`] for a pod labelled `app=<name>` (so a Service can select it).
fn run_in_pod_labelled(c: &Cluster, name: &str, script: &str) -> String {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: kubetm/init\n    command: [\"sh\", \"-c\", {script:?}]\n"
    );
    c.apply_stdin("apply", &yaml);
    eventually(60, || {
        let phase = jsonpath(c, &format!("pod/{name}"), "{.status.phase}");
        (phase == "Succeeded" || phase == "Failed").then_some(())
    });
    c.ok(&["logs", name])
}

/// Seed 002's NodePort Service, unmodified, and pods for it.
const SEED_NODEPORT: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: hostname-svc-nodeport
spec:
  ports:
    - name: web-port
      port: 8080
      targetPort: 80
  selector:
    app: webserver
  type: NodePort
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webserver
spec:
  replicas: 2
  selector:
    matchLabels:
      app: webserver
  template:
    metadata:
      labels:
        app: webserver
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
";

/// Seed 001's ReplicationController (the seed's `kubectl run --generator=run/v1`).
const SEED_RC: &str = "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: myweb-1st-app
spec:
  replicas: 1
  selector:
    run: myweb-1st-app
  template:
    metadata:
      labels:
        run: myweb-1st-app
    spec:
      containers:
      - name: myweb-1st-app
        image: c1t1d0s7/myweb
        ports:
        - containerPort: 8080
";

/// Gives this test's cluster an nftables table of its own (`keelson` by default), so other
/// clusters on a shared host cannot replace its rules; returns the name.
fn own_table() -> String {
    let name = format!("keelson-test-{}", std::process::id());
    // SAFETY: set before any thread of this test process reads the environment; the keelson
    // process inherits it.
    unsafe { std::env::set_var("KEELSON_PROXY_TABLE", &name) };
    name
}

fn nft_table_exists(table: &str) -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn node_ports_and_load_balancers_answer_on_the_node() {
    if !have_node() {
        return;
    }
    let table = own_table();
    let mut c = Cluster::up(&[]);
    let node_ip = jsonpath(
        &c,
        "nodes",
        "{.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    );
    c.apply_stdin("apply", SEED_NODEPORT);
    wait_ready(&c, "app=webserver", 2);

    // D.3: PORT(S) shows 8080:NNNNN/TCP, and the node port answers on the node's address and
    // on 127.0.0.1.
    let ports = c.ok(&["get", "svc", "hostname-svc-nodeport", "--no-headers"]);
    let node_port: u16 = jsonpath(&c, "svc/hostname-svc-nodeport", "{.spec.ports[0].nodePort}")
        .parse()
        .expect("node port");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    assert!(ports.contains(&format!("8080:{node_port}/TCP")), "{ports}");
    for ip in [node_ip.as_str(), "127.0.0.1"] {
        let body = http_get_until(ip, node_port, "Hostname: webserver-");
        assert!(body.contains("nginx"), "{ip}:{node_port}: {body}");
    }
    // externalTrafficPolicy Local: every endpoint is on this node, so it still answers.
    c.ok(&[
        "patch",
        "svc",
        "hostname-svc-nodeport",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    http_get_until(&node_ip, node_port, "Hostname: webserver-");

    // D.5: kubectl expose an RC as a LoadBalancer; its EXTERNAL-IP (the node's address, as
    // k3s's ServiceLB gives) and NODE-IP:NODEPORT reach the pod.
    c.apply_stdin("apply", SEED_RC);
    wait_ready(&c, "run=myweb-1st-app", 1);
    c.ok(&[
        "expose",
        "replicationcontroller",
        "myweb-1st-app",
        "--type=LoadBalancer",
        "--name",
        "myweb-svc",
    ]);
    let external = eventually(20, || {
        let line = c.ok(&["get", "services", "myweb-svc", "--no-headers"]);
        let cols: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        (cols.get(1).map(String::as_str) == Some("LoadBalancer")
            && cols.get(3).is_some_and(|e| e != "<pending>"))
        .then(|| cols[3].clone())
    });
    assert_eq!(external, node_ip, "EXTERNAL-IP is the node's address");
    let lb_port: u16 = jsonpath(&c, "svc/myweb-svc", "{.spec.ports[0].nodePort}")
        .parse()
        .expect("node port");
    let body = http_get_until(&external, 8080, "Hostname: myweb-1st-app-");
    assert!(body.contains("Message:"), "{body}");
    http_get_until(&node_ip, lb_port, "Hostname: myweb-1st-app-");
    assert_eq!(
        jsonpath(
            &c,
            "svc/myweb-svc",
            "{.status.loadBalancer.ingress[0].ipMode}"
        ),
        "VIP"
    );
    // No longer a LoadBalancer: the EXTERNAL-IP goes.
    c.ok(&[
        "patch",
        "svc",
        "myweb-svc",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    eventually(20, || {
        let line = c.ok(&["get", "services", "myweb-svc", "--no-headers"]);
        (line.split_whitespace().nth(3) == Some("<none>")).then_some(())
    });

    // The table is there while the node runs, and gone once it stops.
    assert!(
        nft_table_exists(&table),
        "table ip {table} while the cluster runs"
    );
    c.stop();
    assert!(
        !nft_table_exists(&table),
        "table ip {table} is removed when keelson stops"
    );
}

#[test]
fn a_load_balancer_pool_gives_external_ips_that_answer() {
    if !have_node() {
        return;
    }
    own_table();
    let c = Cluster::up(&["--service-lb-pool", "10.99.0.0/24"]);
    c.apply_stdin("apply", SEED_RC);
    wait_ready(&c, "run=myweb-1st-app", 1);
    c.ok(&[
        "expose",
        "replicationcontroller",
        "myweb-1st-app",
        "--type=LoadBalancer",
        "--name",
        "myweb-svc",
    ]);
    let external = eventually(20, || {
        let line = c.ok(&["get", "services", "myweb-svc", "--no-headers"]);
        line.split_whitespace()
            .nth(3)
            .filter(|e| *e != "<pending>")
            .map(str::to_string)
    });
    assert_eq!(external, "10.99.0.1", "the first address of the pool");
    let body = http_get_until(&external, 8080, "Hostname: myweb-1st-app-");
    assert!(body.contains("Message: HELLO World!"), "{body}");
}
