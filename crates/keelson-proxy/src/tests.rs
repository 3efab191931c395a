//! Snapshot tests of the rendered ruleset for representative Services, and of the batching.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use crate::model::NodeInfo;
use crate::{Config, compute};

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("service")
}

fn slice(ns: &str, svc: &str, port: (&str, i32), eps: &[(&str, &str, bool)]) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{svc}-abc"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": port.0, "port": port.1, "protocol": "TCP"}],
        "endpoints": eps.iter().map(|(ip, node, ready)| json!({
            "addresses": [ip], "nodeName": node,
            "conditions": {"ready": ready, "serving": ready, "terminating": false}
        })).collect::<Vec<_>>()
    }))
    .expect("slice")
}

fn nodes() -> Vec<NodeInfo> {
    vec![
        NodeInfo {
            name: "node-a".into(),
            pod_cidrs: vec!["10.42.0.0/24".into()],
            internal_ip: Some("192.168.1.10".parse().expect("ip")),
        },
        NodeInfo {
            name: "node-b".into(),
            pod_cidrs: vec!["10.42.1.0/24".into()],
            internal_ip: Some("192.168.1.11".parse().expect("ip")),
        },
    ]
}

/// Renders the ruleset for `services` and `slices` on node-a and compares the lines that
/// concern Services (the fixed frame is checked once, in `the_frame_is_fixed`).
fn check(services: &[Service], slices: &[EndpointSlice], want: &str) {
    let cfg = Config::new("node-a", Some("10.42.0.0/24"));
    let text = compute(&cfg, services, slices, &nodes()).render();
    let got = service_part(&text);
    assert_eq!(
        got.trim(),
        want.trim(),
        "\n--- got ---\n{got}\n--- full ---\n{text}"
    );
}

/// The maps' elements and the per-Service chains and sets.
fn service_part(text: &str) -> String {
    let mut out = String::new();
    let mut keep = false;
    let mut depth = 0;
    for line in text.lines() {
        let t = line.trim();
        let starts = t.starts_with("map service-")
            || t.starts_with("map no-endpoint-")
            || t.starts_with("map firewall-")
            || (t.starts_with("chain firewall-") && !t.starts_with("chain firewall-check"))
            || t.starts_with("set affinity-")
            || t.starts_with("chain service-")
            || t.starts_with("chain cluster-")
            || t.starts_with("chain local-")
            || t.starts_with("chain external-")
            || t.starts_with("chain endpoint-");
        if depth == 1 && starts {
            keep = true;
        }
        if keep {
            out.push_str(t);
            out.push('\n');
        }
        depth += t.matches('{').count();
        depth -= t.matches('}').count().min(depth);
        if depth == 1 && keep {
            keep = false;
        }
    }
    out
}

#[test]
fn the_frame_is_fixed() {
    let cfg = Config::new("node-a", Some("10.42.0.0/24"));
    let text = compute(&cfg, &[], &[], &nodes()).render();
    let want = "\
add table ip keelson
delete table ip keelson
table ip keelson {
	set pod-cidrs {
		type ipv4_addr;
		flags interval;
		elements = {
			10.42.0.0/24,
			10.42.1.0/24,
		}
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict;
	}
	map service-nodeports {
		type inet_proto . inet_service : verdict;
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict;
	}
	map no-endpoint-nodeports {
		type inet_proto . inet_service : verdict;
	}
	map firewall-ips {
		type ipv4_addr . inet_proto . inet_service : verdict;
	}
	chain filter-prerouting {
		type filter hook prerouting priority dstnat - 10; policy accept;
		jump firewall-check
	}
	chain filter-output-firewall {
		type filter hook output priority -110; policy accept;
		jump firewall-check
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump masquerading
	}
	chain filter-input {
		type filter hook input priority filter - 1; policy accept;
		ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
		ct state new fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
	}
	chain filter-forward {
		type filter hook forward priority filter - 1; policy accept;
		ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}
	chain filter-output {
		type filter hook output priority filter - 1; policy accept;
		ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
		ct state new fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
	}
	chain firewall-check {
		ip daddr . meta l4proto . th dport vmap @firewall-ips
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		fib daddr type local meta l4proto . th dport vmap @service-nodeports
	}
	chain masquerading {
		ip saddr 10.42.0.0/24 ip daddr != @pod-cidrs ip daddr != 224.0.0.0/4 masquerade
		meta mark & 0x4000 == 0 return
		meta mark set meta mark ^ 0x4000
		masquerade fully-random
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x4000
	}
	chain reject-chain {
		reject
	}
}
";
    assert_eq!(text, want, "\n{text}");
}

#[test]
fn the_batch_loop_applies_at_most_once_per_interval_and_ends_on_the_latest_state() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let notify = Arc::new(tokio::sync::Notify::new());
        let state = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(std::sync::Mutex::new(
            Vec::<(u32, tokio::time::Instant)>::new(),
        ));
        let (s, n) = (state.clone(), seen.clone());
        tokio::spawn(crate::batch_loop(
            notify.clone(),
            Duration::from_millis(100),
            Duration::from_secs(1),
            move || {
                n.lock()
                    .expect("lock")
                    .push((s.load(Ordering::SeqCst), tokio::time::Instant::now()));
                true
            },
        ));
        // 200 changes, one per millisecond.
        for i in 1..=200 {
            state.store(i, Ordering::SeqCst);
            notify.notify_one();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = seen.lock().expect("lock").clone();
        assert!(
            (2..=4).contains(&seen.len()),
            "200 changes over 200 ms: {} applies",
            seen.len()
        );
        for w in seen.windows(2) {
            assert!(w[1].1 - w[0].1 >= Duration::from_millis(100), "{seen:?}");
        }
        assert_eq!(seen.last().map(|s| s.0), Some(200), "{seen:?}");
    });
}

fn web_slices() -> Vec<EndpointSlice> {
    vec![slice(
        "default",
        "web",
        ("", 80),
        &[
            ("10.42.0.5", "node-a", true),
            ("10.42.1.7", "node-b", true),
            ("10.42.0.9", "node-a", false),
        ],
    )]
}

#[test]
fn a_cluster_ip_spreads_over_the_ready_endpoints() {
    let svc = service(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.20",
                 "ports": [{"port": 8080, "targetPort": 80, "protocol": "TCP"}]}
    }));
    check(&[svc], &web_slices(), CLUSTER_IP);
}

const CLUSTER_IP: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.20 . tcp . 8080 : goto service-A47TPSZC-default/web/tcp/8080,
}
}
map service-nodeports {
type inet_proto . inet_service : verdict;
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
chain service-A47TPSZC-default/web/tcp/8080 {
ip daddr 10.43.0.20 tcp dport 8080 ip saddr != @pod-cidrs jump mark-for-masquerade
numgen random mod 2 0 goto endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80
goto endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80
}
chain endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80 {
ip saddr 10.42.0.5 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.0.5:80
}
chain endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80 {
ip saddr 10.42.1.7 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.1.7:80
}
";

#[test]
fn a_node_port_opens_on_every_local_address_and_masquerades() {
    let svc = service(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "10.43.0.20",
                 "ports": [{"port": 8080, "targetPort": 80, "nodePort": 31514}]}
    }));
    check(&[svc], &web_slices(), NODE_PORT);
}

const NODE_PORT: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.20 . tcp . 8080 : goto service-A47TPSZC-default/web/tcp/8080,
}
}
map service-nodeports {
type inet_proto . inet_service : verdict;
elements = {
tcp . 31514 : goto external-K5SOBKMR-default/web/tcp/8080,
}
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
chain service-A47TPSZC-default/web/tcp/8080 {
ip daddr 10.43.0.20 tcp dport 8080 ip saddr != @pod-cidrs jump mark-for-masquerade
numgen random mod 2 0 goto endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80
goto endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80
}
chain external-K5SOBKMR-default/web/tcp/8080 {
jump mark-for-masquerade
goto service-A47TPSZC-default/web/tcp/8080
}
chain endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80 {
ip saddr 10.42.0.5 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.0.5:80
}
chain endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80 {
ip saddr 10.42.1.7 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.1.7:80
}
";

#[test]
fn a_load_balancer_with_external_traffic_policy_local_keeps_to_local_endpoints() {
    let svc = service(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20", "externalTrafficPolicy": "Local",
                 "ports": [{"port": 8080, "targetPort": 80, "nodePort": 31514}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10", "ipMode": "VIP"}]}}
    }));
    check(&[svc], &web_slices(), LB_LOCAL);
}

const LB_LOCAL: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.20 . tcp . 8080 : goto service-A47TPSZC-default/web/tcp/8080,
192.168.1.10 . tcp . 8080 : goto external-K5SOBKMR-default/web/tcp/8080,
}
}
map service-nodeports {
type inet_proto . inet_service : verdict;
elements = {
tcp . 31514 : goto external-K5SOBKMR-default/web/tcp/8080,
}
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
chain service-A47TPSZC-default/web/tcp/8080 {
ip daddr 10.43.0.20 tcp dport 8080 ip saddr != @pod-cidrs jump mark-for-masquerade
numgen random mod 2 0 goto endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80
goto endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80
}
chain local-EOTL27BO-default/web/tcp/8080 {
goto endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80
}
chain external-K5SOBKMR-default/web/tcp/8080 {
ip saddr @pod-cidrs goto service-A47TPSZC-default/web/tcp/8080
fib saddr type local jump mark-for-masquerade
fib saddr type local goto service-A47TPSZC-default/web/tcp/8080
goto local-EOTL27BO-default/web/tcp/8080
}
chain endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80 {
ip saddr 10.42.0.5 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.0.5:80
}
chain endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80 {
ip saddr 10.42.1.7 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.1.7:80
}
";

#[test]
fn client_ip_affinity_remembers_the_client_for_its_timeout() {
    let svc = service(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.43.0.20", "sessionAffinity": "ClientIP",
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                 "ports": [{"port": 8080, "targetPort": 80}]}
    }));
    check(&[svc], &web_slices(), AFFINITY);
}

const AFFINITY: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.20 . tcp . 8080 : goto service-A47TPSZC-default/web/tcp/8080,
}
}
map service-nodeports {
type inet_proto . inet_service : verdict;
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
set affinity-WK55Y7LP {
type ipv4_addr;
flags dynamic,timeout;
timeout 60s;
}
set affinity-PAJOAYI5 {
type ipv4_addr;
flags dynamic,timeout;
timeout 60s;
}
chain service-A47TPSZC-default/web/tcp/8080 {
ip daddr 10.43.0.20 tcp dport 8080 ip saddr != @pod-cidrs jump mark-for-masquerade
ip saddr @affinity-WK55Y7LP goto endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80
ip saddr @affinity-PAJOAYI5 goto endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80
numgen random mod 2 0 goto endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80
goto endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80
}
chain endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80 {
ip saddr 10.42.0.5 jump mark-for-masquerade
update @affinity-WK55Y7LP { ip saddr }
meta l4proto tcp dnat to 10.42.0.5:80
}
chain endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80 {
ip saddr 10.42.1.7 jump mark-for-masquerade
update @affinity-PAJOAYI5 { ip saddr }
meta l4proto tcp dnat to 10.42.1.7:80
}
";

#[test]
fn a_service_without_ready_endpoints_is_rejected() {
    let svc = service(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "10.43.0.20",
                 "ports": [{"port": 8080, "targetPort": 80, "nodePort": 31514}]}
    }));
    let not_ready = slice(
        "default",
        "web",
        ("", 80),
        &[("10.42.0.9", "node-a", false)],
    );
    check(&[svc], &[not_ready], NO_ENDPOINTS);
}

const NO_ENDPOINTS: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map service-nodeports {
type inet_proto . inet_service : verdict;
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.20 . tcp . 8080 : goto reject-chain,
}
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
elements = {
tcp . 31514 : goto reject-chain,
}
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
";

#[test]
fn internal_traffic_policy_local_uses_this_nodes_endpoints_of_a_hand_written_slice() {
    // As cluster DNS: no selector, one slice per node, a port that is not 53.
    let svc = service(json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.43.0.10", "internalTrafficPolicy": "Local",
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}
    }));
    let mut a: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "kube-dns-node-a", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns"}},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": 10053, "protocol": "UDP"}],
        "endpoints": [{"addresses": ["192.168.1.10"], "nodeName": "node-a"}]
    }))
    .expect("slice");
    let mut b = a.clone();
    b.metadata.name = Some("kube-dns-node-b".into());
    b.endpoints[0].addresses = vec!["192.168.1.11".into()];
    b.endpoints[0].node_name = Some("node-b".into());
    check(
        std::slice::from_ref(&svc),
        &[a.clone(), b.clone()],
        ITP_LOCAL,
    );
    // No endpoint on this node: dropped here, not sent to another node.
    a.endpoints.clear();
    check(&[svc], &[a, b], ITP_LOCAL_NONE_HERE);
}

const ITP_LOCAL: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.10 . udp . 53 : goto service-JZ5ONAJX-kube-system/kube-dns/udp/53,
}
}
map service-nodeports {
type inet_proto . inet_service : verdict;
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
chain service-JZ5ONAJX-kube-system/kube-dns/udp/53 {
ip daddr 10.43.0.10 udp dport 53 ip saddr != @pod-cidrs jump mark-for-masquerade
goto endpoint-WEPXIK5Q-kube-system/kube-dns/udp/53__192.168.1.10/10053
}
chain endpoint-WEPXIK5Q-kube-system/kube-dns/udp/53__192.168.1.10/10053 {
ip saddr 192.168.1.10 jump mark-for-masquerade
meta l4proto udp dnat to 192.168.1.10:10053
}
";
const ITP_LOCAL_NONE_HERE: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.10 . udp . 53 : drop,
}
}
map service-nodeports {
type inet_proto . inet_service : verdict;
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
}
";

/// The ruleset of every case above is one nft accepts (checked with `nft -c`, which changes
/// nothing; skipped without root and nft).
#[test]
fn nft_accepts_the_rendered_rulesets() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root
        || std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("SKIP: checking rulesets with nft needs root and nft");
        return;
    }
    let svcs: Vec<Service> = [
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20", "externalTrafficPolicy": "Local",
                        "sessionAffinity": "ClientIP",
                        "ports": [{"port": 8080, "targetPort": 80, "nodePort": 31514}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}]}}}),
        json!({"metadata": {"name": "empty", "namespace": "default"},
               "spec": {"type": "NodePort", "clusterIP": "10.43.0.21",
                        "ports": [{"port": 80, "nodePort": 31000, "protocol": "UDP"}]}}),
        json!({"metadata": {"name": "itp", "namespace": "default"},
               "spec": {"clusterIP": "10.43.0.22", "internalTrafficPolicy": "Local",
                        "ports": [{"port": 80}]}}),
    ]
    .into_iter()
    .map(service)
    .collect();
    let cfg = Config::new("node-a", Some("10.42.0.0/24"));
    let text = compute(&cfg, &svcs, &web_slices(), &nodes()).render();
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft -c refused:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn load_balancer_source_ranges_drop_other_sources_before_dnat() {
    let svc = service(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20",
                 "loadBalancerSourceRanges": ["192.168.7.0/24", " 10.1.2.3/8", "fd00::/64", "junk"],
                 "ports": [{"port": 8080, "targetPort": 80, "nodePort": 31514}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10", "ipMode": "VIP"}]}}
    }));
    check(&[svc], &web_slices(), LB_SOURCE_RANGES);
}

const LB_SOURCE_RANGES: &str = "\
map service-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
10.43.0.20 . tcp . 8080 : goto service-A47TPSZC-default/web/tcp/8080,
192.168.1.10 . tcp . 8080 : goto external-K5SOBKMR-default/web/tcp/8080,
}
}
map service-nodeports {
type inet_proto . inet_service : verdict;
elements = {
tcp . 31514 : goto external-K5SOBKMR-default/web/tcp/8080,
}
}
map no-endpoint-services {
type ipv4_addr . inet_proto . inet_service : verdict;
}
map no-endpoint-nodeports {
type inet_proto . inet_service : verdict;
}
map firewall-ips {
type ipv4_addr . inet_proto . inet_service : verdict;
elements = {
192.168.1.10 . tcp . 8080 : goto firewall-3MGSQEMQ-default/web/tcp/8080,
}
}
chain firewall-3MGSQEMQ-default/web/tcp/8080 {
fib saddr type local return
ip saddr != { 10.0.0.0/8, 192.168.7.0/24 } drop
}
chain service-A47TPSZC-default/web/tcp/8080 {
ip daddr 10.43.0.20 tcp dport 8080 ip saddr != @pod-cidrs jump mark-for-masquerade
numgen random mod 2 0 goto endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80
goto endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80
}
chain external-K5SOBKMR-default/web/tcp/8080 {
jump mark-for-masquerade
goto service-A47TPSZC-default/web/tcp/8080
}
chain endpoint-PCUKUH4O-default/web/tcp/8080__10.42.0.5/80 {
ip saddr 10.42.0.5 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.0.5:80
}
chain endpoint-EWETLB4L-default/web/tcp/8080__10.42.1.7/80 {
ip saddr 10.42.1.7 jump mark-for-masquerade
meta l4proto tcp dnat to 10.42.1.7:80
}
";

/// A ruleset for `services` over `slices` on node-a.
fn ruleset_of(services: &[Service], slices: &[EndpointSlice]) -> crate::ruleset::Ruleset {
    compute(
        &Config::new("node-a", Some("10.42.0.0/24")),
        services,
        slices,
        &nodes(),
    )
}

fn web_service(affinity: bool) -> Service {
    let mut spec = json!({"clusterIP": "10.43.0.20", "ports": [{"port": 8080, "targetPort": 80}]});
    if affinity {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    service(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}))
}

fn api_service(ip: &str) -> Service {
    service(json!({
        "metadata": {"name": "api", "namespace": "default"},
        "spec": {"clusterIP": ip, "ports": [{"port": 80, "targetPort": 80}]}
    }))
}

fn api_slices(ips: &[&str]) -> EndpointSlice {
    let eps: Vec<(&str, &str, bool)> = ips.iter().map(|ip| (*ip, "node-b", true)).collect();
    slice("default", "api", ("", 80), &eps)
}

fn names(chains: &[crate::ruleset::Chain]) -> Vec<String> {
    chains.iter().map(|c| c.name.clone()).collect()
}

#[test]
fn an_endpoint_change_rewrites_one_service_chain_and_swaps_one_endpoint_chain() {
    let svcs = [web_service(true), api_service("10.43.0.30")];
    let before = ruleset_of(
        &svcs,
        &[
            web_slices()[0].clone(),
            api_slices(&["10.42.1.20", "10.42.1.21"]),
        ],
    );
    let after = ruleset_of(
        &svcs,
        &[
            web_slices()[0].clone(),
            api_slices(&["10.42.1.20", "10.42.1.22"]),
        ],
    );
    let d = crate::diff::diff(&before, &after).expect("in place");
    assert_eq!(
        names(&d.chains_changed),
        ["service-6XH5WHH3-default/api/tcp/80"]
    );
    assert_eq!(
        names(&d.chains_added),
        ["endpoint-VHQJBD6A-default/api/tcp/80__10.42.1.22/80"]
    );
    assert_eq!(
        d.chains_deleted,
        ["endpoint-SOJOTDIE-default/api/tcp/80__10.42.1.21/80"]
    );
    // web's affinity sets are untouched: nothing added or deleted, no map element moves.
    assert!(
        d.sets_added.is_empty() && d.sets_deleted.is_empty(),
        "{d:?}"
    );
    assert!(
        d.elements_added.is_empty() && d.elements_deleted.is_empty(),
        "{d:?}"
    );
    let text = d.render();
    assert!(!text.contains("affinity"), "{text}");
    assert!(!text.contains("delete table"), "{text}");
}

#[test]
fn services_coming_and_going_move_map_elements_and_their_chains() {
    let web = web_service(true);
    let before = ruleset_of(std::slice::from_ref(&web), &web_slices());
    let mut slices = web_slices();
    slices.push(api_slices(&["10.42.1.20"]));
    let after = ruleset_of(&[web.clone(), api_service("10.43.0.30")], &slices);
    let d = crate::diff::diff(&before, &after).expect("in place");
    assert_eq!(
        d.elements_added
            .get("service-ips")
            .cloned()
            .unwrap_or_default(),
        ["10.43.0.30 . tcp . 80 : goto service-6XH5WHH3-default/api/tcp/80"]
    );
    assert!(
        d.elements_deleted.is_empty() && d.chains_changed.is_empty(),
        "{d:?}"
    );
    assert_eq!(d.chains_added.len(), 2, "{d:?}");
    // And back: the element and both chains go; the affinity sets of web stay.
    let back = crate::diff::diff(&after, &before).expect("in place");
    assert_eq!(
        back.elements_deleted
            .get("service-ips")
            .cloned()
            .unwrap_or_default(),
        ["10.43.0.30 . tcp . 80 : goto service-6XH5WHH3-default/api/tcp/80"]
    );
    assert_eq!(back.chains_deleted.len(), 2, "{back:?}");
    assert!(back.sets_deleted.is_empty(), "{back:?}");
    // Losing its last endpoint moves the Service from service-ips to no-endpoint-services.
    let gone = ruleset_of(
        &[web.clone(), api_service("10.43.0.30")],
        &[web_slices()[0].clone(), api_slices(&[])],
    );
    let d = crate::diff::diff(&after, &gone).expect("in place");
    assert_eq!(
        d.elements_added
            .get("no-endpoint-services")
            .cloned()
            .unwrap_or_default(),
        ["10.43.0.30 . tcp . 80 : goto reject-chain"]
    );
    assert!(
        d.render()
            .contains("delete element ip keelson service-ips { 10.43.0.30 . tcp . 80 }")
    );
    // Turning affinity off deletes web's sets, after the chains naming them are rewritten.
    let plain = ruleset_of(&[web_service(false)], &web_slices());
    let d = crate::diff::diff(&before, &plain).expect("in place");
    assert_eq!(d.sets_deleted.len(), 2, "{d:?}");
    let text = d.render();
    let last_flush = text.rfind("flush chain").expect("flush");
    let first_set_delete = text.find("delete set").expect("delete set");
    assert!(last_flush < first_set_delete, "{text}");
}

#[test]
fn the_same_ruleset_makes_an_empty_diff_and_another_table_none() {
    let rs = ruleset_of(&[web_service(true)], &web_slices());
    assert!(
        crate::diff::diff(&rs, &rs.clone())
            .expect("in place")
            .is_empty()
    );
    let mut other = rs.clone();
    other.table = "keelson-other".into();
    assert_eq!(crate::diff::diff(&rs, &other), None);
}

/// An applier that refuses the texts containing `refuse`.
#[derive(Default)]
struct Picky {
    refuse: std::sync::Mutex<Option<String>>,
    seen: std::sync::Mutex<Vec<String>>,
}

impl crate::nft::Applier for Picky {
    fn apply(&self, text: &str) -> crate::nft::Result<()> {
        self.seen.lock().expect("lock").push(text.to_string());
        let refuse = self.refuse.lock().expect("lock").clone();
        match refuse {
            Some(r) if text.contains(&r) => Err(crate::nft::Error::Refused {
                stderr: "no such chain".into(),
            }),
            _ => Ok(()),
        }
    }
}

#[test]
fn the_syncer_rebuilds_first_then_applies_differences_and_rebuilds_when_one_fails() {
    use crate::Applied;
    let picky = Arc::new(Picky::default());
    let mut syncer = crate::Syncer::new(picky.clone());
    let a = ruleset_of(&[web_service(false)], &web_slices());
    let b = ruleset_of(
        &[web_service(false), api_service("10.43.0.30")],
        &[web_slices()[0].clone(), api_slices(&["10.42.1.20"])],
    );
    assert_eq!(syncer.sync(&a).expect("sync"), Applied::Full);
    assert_eq!(syncer.sync(&a).expect("sync"), Applied::Unchanged);
    assert_eq!(syncer.sync(&b).expect("sync"), Applied::Incremental);
    // The table was changed behind our back: the difference fails, the rebuild succeeds.
    *picky.refuse.lock().expect("lock") = Some("flush chain".into());
    assert_eq!(syncer.sync(&a).expect("sync"), Applied::Full);
    let seen = picky.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen[0].contains("delete table ip keelson"));
    assert!(
        !seen[1].contains("delete table") && seen[1].contains("add element ip keelson service-ips")
    );
    assert!(seen[3].contains("delete table ip keelson"));
    // When even the rebuild fails, the next sync starts from a rebuild again.
    *picky.refuse.lock().expect("lock") = Some("table".into());
    assert!(syncer.sync(&b).is_err());
    *picky.refuse.lock().expect("lock") = None;
    assert_eq!(syncer.sync(&b).expect("sync"), Applied::Full);
}

/// Runs `texts` one after the other through the real nft in a network namespace of its own
/// (`unshare -n`), so the host's rules are never touched; `None` without root, nft or unshare.
fn nft_in_scratch_netns(texts: &[String]) -> Option<Result<(), String>> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root
        || std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
    {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("keelson-proxy-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let mut script = String::from("set -e\n");
    for (i, t) in texts.iter().enumerate() {
        let f = dir.join(format!("{i}.nft"));
        std::fs::write(&f, t).ok()?;
        script.push_str(&format!("nft -f {}\n", f.display()));
    }
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    })
}

#[test]
fn nft_applies_the_differences_in_place() {
    let web = |affinity| {
        let mut s = web_service(affinity);
        if let Some(spec) = s.spec.as_mut() {
            spec.type_ = Some("LoadBalancer".into());
            spec.load_balancer_source_ranges = Some(vec!["192.168.7.0/24".into()]);
            if let Some(p) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
                p.node_port = Some(31514);
            }
        }
        s.status = Some(
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}]}}))
                .expect("status"),
        );
        s
    };
    let steps = [
        ruleset_of(&[web(true)], &web_slices()),
        ruleset_of(
            &[web(true), api_service("10.43.0.30")],
            &[
                web_slices()[0].clone(),
                api_slices(&["10.42.1.20", "10.42.1.21"]),
            ],
        ),
        ruleset_of(
            &[web(false), api_service("10.43.0.30")],
            &[web_slices()[0].clone(), api_slices(&["10.42.1.22"])],
        ),
        ruleset_of(
            &[web(false), api_service("10.43.0.30")],
            &[web_slices()[0].clone(), api_slices(&[])],
        ),
        ruleset_of(&[web(true)], &[]),
    ];
    let mut texts = vec![steps[0].render()];
    for w in steps.windows(2) {
        texts.push(crate::diff::diff(&w[0], &w[1]).expect("in place").render());
    }
    match nft_in_scratch_netns(&texts) {
        None => eprintln!("SKIP: applying differences with nft needs root, nft and unshare"),
        Some(r) => assert!(r.is_ok(), "{}\n{}", r.unwrap_err(), texts.join("\n----\n")),
    }
}
