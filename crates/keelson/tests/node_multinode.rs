//! The pod network and Services across nodes (issue 8, multi-node): two agents, each in its
//! own network namespace acting as a host on a shared bridge, joined to one `keelson server`.
//! A pod on node A reaches a pod on node B by its IP, through a ClusterIP Service and by the
//! Service's name; a Service with endpoints on both nodes spreads over both; a NodePort on
//! node A's address reaches the pod that runs only on node B; a LoadBalancer answers on both
//! nodes; externalTrafficPolicy Local answers only where the endpoint runs and keeps the
//! client's address. Needs root, containerd, nft, `ip netns` and nsenter.

mod common;

use common::hosts::{MultiNode, have_netns};
use common::{have_node, http_get};

const PODS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: pod-a
  labels:
    app: mn-a
    tier: mn
spec:
  nodeName: kmn-a
  containers:
  - name: c
    image: kubetm/init
---
apiVersion: v1
kind: Pod
metadata:
  name: pod-b
  labels:
    app: mn-b
    tier: mn
spec:
  nodeName: kmn-b
  containers:
  - name: c
    image: kubetm/init
---
apiVersion: v1
kind: Service
metadata:
  name: svc-b
spec:
  selector:
    app: mn-b
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: svc-all
spec:
  selector:
    tier: mn
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: svc-b-np
spec:
  type: NodePort
  selector:
    app: mn-b
  ports:
  - port: 8080
";

fn jsonpath(mn: &MultiNode, what: &str, path: &str) -> String {
    mn.cluster
        .ok(&["get", what, "-o", &format!("jsonpath={path}")])
}

/// `curl` (the workload's) inside `pod`: the body, or None when it fails.
fn curl_in(mn: &MultiNode, pod: &str, url: &str) -> Option<String> {
    let out = mn
        .cluster
        .kubectl(&["exec", pod, "--", "curl", "-s", "-m", "3", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn pods_and_services_work_across_nodes() {
    if !have_node() || !have_netns() {
        return;
    }
    let mn = MultiNode::start(&["kmn-a", "kmn-b"]);
    let c = &mn.cluster;
    let host_ip = mn.hosts.host_ip.clone();

    // Each node reports its own namespace's address and got a pod CIDR of its own.
    for a in &mn.agents {
        let node = format!("node/{}", a.host.name);
        assert_eq!(
            jsonpath(
                &mn,
                &node,
                "{.status.addresses[?(@.type==\"InternalIP\")].address}"
            ),
            a.host.ip
        );
    }
    let cidr_a = jsonpath(&mn, "node/kmn-a", "{.spec.podCIDR}");
    let cidr_b = jsonpath(&mn, "node/kmn-b", "{.spec.podCIDR}");
    assert!(
        !cidr_a.is_empty() && cidr_a != cidr_b,
        "pod CIDRs {cidr_a:?} {cidr_b:?}"
    );

    c.apply_stdin("apply", PODS);
    mn.eventually(90, "pods Running and Ready", || {
        let out = c.ok(&["get", "pods", "--no-headers", "-o", "wide"]);
        (out.lines()
            .filter(|l| l.contains(" 1/1 ") && l.contains("Running"))
            .count()
            == 2)
            .then_some(())
    });
    let ip_a = jsonpath(&mn, "pod/pod-a", "{.status.podIP}");
    let ip_b = jsonpath(&mn, "pod/pod-b", "{.status.podIP}");
    let prefix = |cidr: &str| cidr.rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap();
    assert!(ip_a.starts_with(&prefix(&cidr_a)), "{ip_a} not in {cidr_a}");
    assert!(ip_b.starts_with(&prefix(&cidr_b)), "{ip_b} not in {cidr_b}");

    // Pod to pod by IP, both ways (host-gw routes between the nodes' pod CIDRs).
    let body = mn.eventually(20, "pod-a reaches pod-b by IP", || {
        curl_in(&mn, "pod-a", &format!("http://{ip_b}:8080/"))
            .filter(|b| b.contains("Hostname: pod-b"))
    });
    assert!(
        body.contains(&format!("IP: {ip_b}")),
        "pod-b's answer: {body}"
    );
    // Inside the cluster CIDR nothing is masqueraded: pod-b saw pod-a's own address.
    let log = c.ok(&["logs", "pod-b"]);
    assert!(
        log.contains(&format!("Received Request From {ip_a}")),
        "pod-b's log names pod-a's IP {ip_a}:\n{log}"
    );
    mn.eventually(20, "pod-b reaches pod-a by IP", || {
        curl_in(&mn, "pod-b", &format!("http://{ip_a}:8080/"))
            .filter(|b| b.contains("Hostname: pod-a"))
    });

    // Leaving the cluster, a pod's traffic is masqueraded to its node's address (the host has
    // no route to the pod CIDRs): pod-a reaches the registry relay on the host.
    mn.eventually(20, "pod-a reaches the host outside the cluster", || {
        curl_in(&mn, "pod-a", &format!("http://{host_ip}:5000/v2/")).filter(|b| b.contains("{}"))
    });

    // Through the ClusterIP of a Service whose only endpoint is on the other node.
    let cluster_ip = jsonpath(&mn, "svc/svc-b", "{.spec.clusterIP}");
    mn.eventually(20, "pod-a reaches svc-b's ClusterIP", || {
        curl_in(&mn, "pod-a", &format!("http://{cluster_ip}/"))
            .filter(|b| b.contains("Hostname: pod-b"))
    });

    // By the Service's name: node A's cluster DNS answers pod-a (search list, ndots 5).
    for name in ["svc-b", "svc-b.default.svc.cluster.local"] {
        mn.eventually(20, &format!("pod-a reaches {name} by name"), || {
            curl_in(&mn, "pod-a", &format!("http://{name}/"))
                .filter(|b| b.contains("Hostname: pod-b"))
        });
    }
    // busybox nslookup also tries the other search domains (NXDOMAIN) and then exits 1.
    let out = c.kubectl(&["exec", "pod-a", "--", "nslookup", "svc-b"]);
    let lookup = String::from_utf8_lossy(&out.stdout);
    assert!(
        lookup.contains("Name:\tsvc-b.default.svc.cluster.local")
            && lookup.contains(&format!("Address: {cluster_ip}")),
        "nslookup svc-b from pod-a: {lookup}"
    );

    // A Service with one endpoint on each node spreads pod-b's requests over both.
    let seen = mn.eventually(30, "svc-all spreads over both nodes", || {
        let out = c.kubectl(&[
            "exec",
            "pod-b",
            "--",
            "sh",
            "-c",
            "for i in $(seq 1 30); do curl -s -m 2 http://svc-all/hostname; echo; done",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut names: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        names.sort();
        names.dedup();
        (names == ["pod-a", "pod-b"]).then_some(text)
    });
    assert_eq!(seen.lines().filter(|l| !l.is_empty()).count(), 30, "{seen}");

    // The NodePort answers on node A's address (and on node B's) from outside the cluster,
    // though the only endpoint runs on node B.
    let node_port: u16 = jsonpath(&mn, "svc/svc-b-np", "{.spec.ports[0].nodePort}")
        .parse()
        .expect("nodePort");
    for a in &mn.agents {
        mn.eventually(20, &format!("NodePort on {}", a.host.ip), || {
            http_get(&a.host.ip, node_port).filter(|b| b.contains("Hostname: pod-b"))
        });
    }

    // A LoadBalancer gets the nodes' addresses as EXTERNAL-IPs, and each answers.
    c.ok(&[
        "expose",
        "pod",
        "pod-b",
        "--name",
        "lb-b",
        "--type",
        "LoadBalancer",
        "--port",
        "9090",
        "--target-port",
        "8080",
    ]);
    let ingress = mn.eventually(20, "lb-b gets its EXTERNAL-IPs", || {
        let ips = jsonpath(&mn, "svc/lb-b", "{.status.loadBalancer.ingress[*].ip}");
        let mut ips: Vec<String> = ips.split_whitespace().map(str::to_string).collect();
        ips.sort();
        (ips.len() == 2).then_some(ips)
    });
    let (node_a, node_b) = (mn.hosts.ip_of("kmn-a"), mn.hosts.ip_of("kmn-b"));
    assert_eq!(ingress, [node_a, node_b]);
    for ip in &ingress {
        mn.eventually(20, &format!("LoadBalancer on {ip}"), || {
            http_get(ip, 9090).filter(|b| b.contains("Hostname: pod-b"))
        });
    }

    // externalTrafficPolicy Local: only node B, which runs the endpoint, answers on the
    // NodePort, and the pod sees the client's own address.
    c.ok(&[
        "patch",
        "svc",
        "svc-b-np",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    mn.eventually(20, "Local: node A stops answering the NodePort", || {
        http_get(node_a, node_port).is_none().then_some(())
    });
    mn.eventually(20, "Local: node B answers the NodePort", || {
        http_get(node_b, node_port).filter(|b| b.contains("Hostname: pod-b"))
    });
    let log = c.ok(&["logs", "pod-b"]);
    assert!(
        log.trim_end()
            .ends_with(&format!("Received Request From {host_ip}")),
        "with externalTrafficPolicy Local pod-b sees the client {host_ip}:\n{log}"
    );
}
