//! `keelson bench proxy`: the service proxy at scale, in network namespaces of its own so the
//! host's rules are never touched. With 10,000 Services × 5 endpoints it times the full
//! ruleset (compute, render, `nft -f`), then single endpoint changes through the proxy's own
//! sync path (compute, diff, apply), then requests per second through a ClusterIP against
//! straight to the pod IP, with a keep-alive HTTP load generator of its own. Needs root, `ip`
//! and `nft`.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_proxy::nft::Applier;
use keelson_proxy::{Applied, Config, Syncer, compute};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stats::Summary;

/// Errors of the proxy bench.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bench proxy needs root (network namespaces and nftables)")]
    NotRoot,
    #[error("cannot run {what}: {detail}")]
    Command { what: String, detail: String },
    #[error("nft refused the ruleset: {0}")]
    Nft(#[from] keelson_proxy::nft::Error),
    #[error("cannot enter network namespace {ns}: {source}")]
    Setns { ns: String, source: std::io::Error },
    #[error("load generator against {addr}: {detail}")]
    Load { addr: SocketAddr, detail: String },
    #[error("bad test object: {0}")]
    Object(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    pub services: u32,
    pub endpoints_per_service: u32,
    /// Single endpoint changes applied one by one.
    pub changes: u32,
    /// Seconds of each throughput phase.
    pub seconds: u32,
    /// Keep-alive connections of the load generator.
    pub connections: u32,
}

/// The figures.
#[derive(Clone, Debug)]
pub struct Report {
    pub cores: usize,
    pub services: u32,
    pub endpoints: u64,
    pub compute_render_s: f64,
    pub apply_s: f64,
    pub sync_s: f64,
    pub changes: Summary,
    pub full_rebuilds_during_changes: u32,
    pub clusterip_rps: f64,
    pub direct_rps: f64,
}

impl Report {
    pub fn ratio(&self) -> f64 {
        if self.direct_rps > 0.0 {
            self.clusterip_rps / self.direct_rps
        } else {
            0.0
        }
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "cores {}, {} Services, {} endpoints\n",
            self.cores, self.services, self.endpoints
        ));
        s.push_str(&format!(
            "full sync: {:.3}s (compute+render {:.3}s, nft -f {:.3}s)\n",
            self.sync_s, self.compute_render_s, self.apply_s
        ));
        s.push_str(&format!(
            "endpoint change → rule in force ({} changes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} fell back to a full rebuild)\n",
            self.changes.count,
            self.changes.p50_ms,
            self.changes.p99_ms,
            self.changes.max_ms,
            self.full_rebuilds_during_changes
        ));
        s.push_str(&format!(
            "HTTP keep-alive: ClusterIP {:.0} req/s, pod IP {:.0} req/s: {:.1} % of direct\n",
            self.clusterip_rps,
            self.direct_rps,
            self.ratio() * 100.0
        ));
        let goal = |ok: bool| if ok { "met" } else { "NOT met" };
        s.push_str(&format!(
            "goal sync ≤ 1 s at 10,000 Services: {}\n",
            goal(self.sync_s <= 1.0)
        ));
        s.push_str(&format!(
            "goal ≥ 95 % of direct throughput: {}\n",
            goal(self.ratio() >= 0.95)
        ));
        s
    }

    pub fn json(&self) -> Value {
        json!({
            "cores": self.cores,
            "services": self.services,
            "endpoints": self.endpoints,
            "sync_s_10k_services": self.sync_s,
            "compute_render_s": self.compute_render_s,
            "apply_s": self.apply_s,
            "change_to_rule_p50_ms": self.changes.p50_ms,
            "change_to_rule_p99_ms": self.changes.p99_ms,
            "change_to_rule_max_ms": self.changes.max_ms,
            "clusterip_rps": self.clusterip_rps,
            "direct_rps": self.direct_rps,
            "clusterip_vs_direct": self.ratio(),
        })
    }
}

fn progress(msg: &str) {
    eprintln!("[bench proxy] {msg}");
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::Command {
        what: what.into(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            what: what.into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    run(
        &format!("ip {}", args.join(" ")),
        Command::new("ip").args(args),
    )
}

/// A network namespace, deleted (with its rules and links) when dropped.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Result<Netns> {
        ip(&["netns", "add", &name])?;
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// `nft -f -` inside a network namespace.
struct NsNft(String);

impl Applier for NsNft {
    fn apply(&self, text: &str) -> keelson_proxy::nft::Result<()> {
        let spawn = |source| keelson_proxy::nft::Error::Spawn {
            program: "ip netns exec ... nft".into(),
            source,
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).map_err(spawn)?;
        }
        let out = child.wait_with_output().map_err(spawn)?;
        if !out.status.success() {
            return Err(keelson_proxy::nft::Error::Refused {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

const NODE: &str = "bench-node";
const TARGET_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 250, 1);
const NODE_IP: &str = "10.244.0.1";
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);
const POD_PORT: u16 = 8080;

fn endpoint_ip(n: u64) -> String {
    format!("10.{}.{}.{}", 100 + n / 65536, (n / 256) % 256, n % 256)
}

/// `services` ClusterIP Services with `per` ready endpoints each, plus the one the load
/// generator goes through (`bench/target`, to the pod in the other namespace).
fn objects(services: u32, per: u32) -> Result<(Vec<Service>, Vec<EndpointSlice>)> {
    let mut svcs = Vec::with_capacity(services as usize + 1);
    let mut slices = Vec::with_capacity(services as usize + 1);
    let mut add = |ns: &str, name: &str, cip: String, eps: Vec<Value>| -> Result<()> {
        svcs.push(serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cip, "ports": [{"port": 80, "targetPort": POD_PORT}]}
        }))?);
        slices.push(serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-abcde"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": POD_PORT, "protocol": "TCP"}],
            "endpoints": eps
        }))?);
        Ok(())
    };
    for i in 0..services {
        let eps = (0..per)
            .map(|j| {
                let n = u64::from(i) * u64::from(per) + u64::from(j);
                json!({"addresses": [endpoint_ip(n)], "conditions": {"ready": true},
                       "nodeName": "elsewhere"})
            })
            .collect();
        add(
            "default",
            &format!("svc-{i}"),
            format!("10.43.{}.{}", i / 250, i % 250 + 1),
            eps,
        )?;
    }
    add(
        "bench",
        "target",
        TARGET_CLUSTER_IP.to_string(),
        vec![
            json!({"addresses": [POD_IP.to_string()], "conditions": {"ready": true},
                    "nodeName": NODE}),
        ],
    )?;
    Ok((svcs, slices))
}

/// Moves the calling thread into the network namespace `ns` (sockets it opens live there).
fn enter(ns: &str) -> Result<()> {
    let setns = |source| Error::Setns {
        ns: ns.into(),
        source,
    };
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(setns)?;
    // SAFETY: setns on a valid descriptor only changes this thread's network namespace.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(setns(std::io::Error::last_os_error()));
    }
    Ok(())
}

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

/// A minimal keep-alive HTTP server in namespace `ns` on its own thread, answering every
/// request with `ok`, until `stop`.
fn serve(ns: String, stop: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
    let handle = std::thread::spawn(move || {
        if let Err(e) = enter(&ns) {
            let _ = tx.send(Err(e));
            return;
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(Error::Command {
                    what: "server runtime".into(),
                    detail: e.to_string(),
                }));
                return;
            }
        };
        rt.block_on(async move {
            let listener =
                match tokio::net::TcpListener::bind(SocketAddr::from((POD_IP, POD_PORT))).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(Error::Command {
                            what: "server listen".into(),
                            detail: e.to_string(),
                        }));
                        return;
                    }
                };
            let _ = tx.send(Ok(()));
            while !stop.load(Ordering::Relaxed) {
                let accepted =
                    tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
                let Ok(Ok((mut conn, _))) = accepted else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut have = 0;
                    loop {
                        let Ok(n) = conn.read(&mut buf[have..]).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have += n;
                        // Answer every complete request in the buffer.
                        while let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                            if conn.write_all(RESPONSE).await.is_err() {
                                return;
                            }
                            buf.copy_within(end + 4..have, 0);
                            have -= end + 4;
                        }
                        if have == buf.len() {
                            return;
                        }
                    }
                });
            }
        });
    });
    match rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Command {
            what: "server".into(),
            detail: "its thread ended".into(),
        }),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Requests per second from `connections` keep-alive connections to `addr` for `secs`, from a
/// thread in namespace `ns`.
fn load(ns: &str, addr: SocketAddr, connections: u32, secs: u32) -> Result<f64> {
    let ns = ns.to_string();
    let handle = std::thread::spawn(move || -> Result<f64> {
        enter(&ns)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Load {
                addr,
                detail: e.to_string(),
            })?;
        rt.block_on(async move {
            let done = Arc::new(AtomicU64::new(0));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(secs));
            let mut tasks = Vec::new();
            for _ in 0..connections {
                let done = done.clone();
                tasks.push(tokio::spawn(async move {
                    let mut conn = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = conn.set_nodelay(true);
                    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                    let mut buf = vec![0u8; 1024];
                    while tokio::time::Instant::now() < deadline {
                        conn.write_all(req.as_bytes())
                            .await
                            .map_err(|e| e.to_string())?;
                        let mut have = 0;
                        while have < RESPONSE.len() {
                            let n = conn
                                .read(&mut buf[have..])
                                .await
                                .map_err(|e| e.to_string())?;
                            if n == 0 {
                                return Err("the server closed the connection".to_string());
                            }
                            have += n;
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<(), String>(())
                }));
            }
            let started = Instant::now();
            for t in tasks {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(detail)) => return Err(Error::Load { addr, detail }),
                    Err(e) => {
                        return Err(Error::Load {
                            addr,
                            detail: e.to_string(),
                        });
                    }
                }
            }
            Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
        })
    });
    handle.join().unwrap_or_else(|_| {
        Err(Error::Load {
            addr,
            detail: "the load generator panicked".into(),
        })
    })
}

/// Runs the whole bench (blocking; call from a blocking thread).
pub fn bench_blocking(opts: &Options) -> Result<Report> {
    if !std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
    {
        return Err(Error::NotRoot);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pid = std::process::id();
    let node = Netns::new(format!("kbp-node-{pid}"))?;
    let pod = Netns::new(format!("kbp-pod-{pid}"))?;
    ip(&[
        "-n", &node.0, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns",
        &pod.0,
    ])?;
    ip(&[
        "-n",
        &node.0,
        "addr",
        "add",
        &format!("{NODE_IP}/24"),
        "dev",
        "veth0",
    ])?;
    ip(&["-n", &node.0, "link", "set", "veth0", "up"])?;
    ip(&[
        "-n",
        &pod.0,
        "addr",
        "add",
        &format!("{POD_IP}/24"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", &pod.0, "link", "set", "eth0", "up"])?;
    // As on a node, the ClusterIP range is reachable through the default route.
    ip(&["-n", &node.0, "route", "add", "default", "dev", "veth0"])?;

    progress(&format!(
        "{} Services × {} endpoints: building objects",
        opts.services, opts.endpoints_per_service
    ));
    let (svcs, mut slices) = objects(opts.services, opts.endpoints_per_service)?;
    let mut cfg = Config::new(NODE, Some("10.244.0.0/24"));
    cfg.table = "keelson-bench".into();
    let applier = Arc::new(NsNft(node.0.clone()));

    progress("full sync: compute, render, nft -f");
    let started = Instant::now();
    let rs = compute(&cfg, &svcs, &slices, &[]);
    let text = rs.render();
    let compute_render_s = started.elapsed().as_secs_f64();
    let applied = Instant::now();
    applier.apply(&text)?;
    let apply_s = applied.elapsed().as_secs_f64();
    let sync_s = started.elapsed().as_secs_f64();
    progress(&format!(
        "full sync {sync_s:.3}s (compute+render {compute_render_s:.3}s, nft -f {apply_s:.3}s)"
    ));
    let mut syncer = Syncer::new(applier.clone());
    // The syncer learns what is in force (a rebuild: it cannot know the table is there).
    syncer.sync(&rs)?;

    let mut samples = Vec::new();
    let mut rebuilds = 0;
    let services = opts.services.max(1);
    for k in 0..opts.changes {
        let i = (u64::from(k) * 7919 % u64::from(services)) as usize;
        if let Some(ep) = slices.get_mut(i).and_then(|s| {
            s.endpoints
                .get_mut(k as usize % opts.endpoints_per_service.max(1) as usize)
        }) {
            ep.addresses = vec![format!("10.99.{}.{}", k / 250, k % 250 + 1)];
        }
        let started = Instant::now();
        let next = compute(&cfg, &svcs, &slices, &[]);
        if syncer.sync(&next)? == Applied::Full {
            rebuilds += 1;
        }
        samples.push(started.elapsed());
        if (k + 1) % 20 == 0 || k + 1 == opts.changes {
            let s = Summary::of(&samples);
            progress(&format!(
                "endpoint changes {}/{}: p50 {:.1} ms, p99 {:.1} ms",
                k + 1,
                opts.changes,
                s.p50_ms,
                s.p99_ms
            ));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(pod.0.clone(), stop.clone())?;
    let via = SocketAddr::from((TARGET_CLUSTER_IP, 80));
    let direct = SocketAddr::from((POD_IP, POD_PORT));
    // Warm up both paths (ARP, conntrack), then measure them one after the other, twice, in
    // alternating order, keeping the best of each.
    let _ = load(&node.0, direct, 1, 1)?;
    let _ = load(&node.0, via, 1, 1)?;
    let (mut clusterip_rps, mut direct_rps) = (0f64, 0f64);
    for round in 0..2 {
        let order = if round == 0 {
            [via, direct]
        } else {
            [direct, via]
        };
        for addr in order {
            progress(&format!(
                "throughput to {addr} ({} connections, {} s)",
                opts.connections, opts.seconds
            ));
            let rps = load(&node.0, addr, opts.connections, opts.seconds)?;
            progress(&format!("{rps:.0} req/s"));
            if addr == via {
                clusterip_rps = clusterip_rps.max(rps);
            } else {
                direct_rps = direct_rps.max(rps);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();

    Ok(Report {
        cores,
        services: opts.services,
        endpoints: u64::from(opts.services) * u64::from(opts.endpoints_per_service),
        compute_render_s,
        apply_s,
        sync_s,
        changes: Summary::of(&samples),
        full_rebuilds_during_changes: rebuilds,
        clusterip_rps,
        direct_rps,
    })
}

/// [`bench_blocking`] on a blocking thread.
pub async fn bench(opts: &Options) -> anyhow::Result<Report> {
    let opts = opts.clone();
    Ok(tokio::task::spawn_blocking(move || bench_blocking(&opts)).await??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_objects_give_every_service_its_endpoints_and_the_target_its_pod() {
        let (svcs, slices) = objects(3, 5).expect("objects");
        assert_eq!(svcs.len(), 4);
        let cfg = Config::new(NODE, Some("10.244.0.0/24"));
        let ports = keelson_proxy::model::service_ports(&svcs, &slices);
        assert_eq!(ports.len(), 4);
        let target = ports
            .iter()
            .find(|p| p.cluster_ip == Some(TARGET_CLUSTER_IP))
            .expect("target");
        assert_eq!(target.endpoints.len(), 1);
        assert_eq!(target.endpoints[0].ip, POD_IP);
        let ips: std::collections::BTreeSet<_> = ports
            .iter()
            .flat_map(|p| p.endpoints.iter().map(|e| e.ip))
            .collect();
        assert_eq!(ips.len(), 3 * 5 + 1, "endpoint addresses are distinct");
        let text = compute(&cfg, &svcs, &slices, &[]).render();
        assert!(
            text.contains("10.43.250.1 . tcp . 80 : goto service-"),
            "{text}"
        );
    }

    #[test]
    fn the_report_names_the_figures_the_issue_asks_for() {
        let r = Report {
            cores: 2,
            services: 10_000,
            endpoints: 50_000,
            compute_render_s: 0.3,
            apply_s: 6.0,
            sync_s: 6.3,
            changes: Summary::default(),
            full_rebuilds_during_changes: 0,
            clusterip_rps: 95.0,
            direct_rps: 100.0,
        };
        let j = r.json();
        for k in [
            "sync_s_10k_services",
            "change_to_rule_p99_ms",
            "clusterip_vs_direct",
            "cores",
        ] {
            assert!(j.get(k).is_some(), "{k} missing: {j}");
        }
        assert!((j["clusterip_vs_direct"].as_f64().unwrap_or(0.0) - 0.95).abs() < 1e-9);
        assert!(
            r.table()
                .contains("goal sync ≤ 1 s at 10,000 Services: NOT met")
        );
    }
}
