//! Machines for multi-node tests on one host: network namespaces acting as hosts on a shared
//! bridge, a `keelson server` they reach, and a `keelson agent` (with its own containerd) in
//! each; everything is removed when the guards drop, even when a test fails.
//!
//! Layout (every name carries the test process's pid, so nothing else on the host, and no
//! other run of these tests, is touched; N is a free /24 chosen from the pid):
//!
//! ```text
//! root netns: kmnh<pid> 10.199.N.1/24 (keelson server, registry relay :5000)
//!     │ veth
//! netns kmn<pid>-br: bridge kmn0 ─ veth ─ netns kmn<pid>-<node A>: eth0 10.199.N.2/24
//!                               └─ veth ─ netns kmn<pid>-<node B>: eth0 10.199.N.3/24
//! ```
//!
//! Each node's default route is via the host's address. The bridge lives in a namespace of
//! its own rather than in the root one, so the traffic between the nodes never meets the
//! root namespace's firewall (or another cluster's service-proxy table there) and needs no
//! forwarding on the host.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Cluster, free_port, terminate};

/// The bridge (inside the bridge namespace, so its name cannot clash).
const BRIDGE: &str = "kmn0";
/// What every namespace and root-namespace link of these tests starts with.
const PREFIX: &str = "kmn";

/// Runs `ip ARGS`; the error names the command and its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether network namespaces can be made and entered here (iproute2 and util-linux).
pub fn have_netns() -> bool {
    let runs = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = runs("ip", &["netns", "list"]) && runs("nsenter", &["--version"]);
    if !ok {
        eprintln!(
            "SKIP: this test needs `ip netns` (iproute2) and nsenter (util-linux) to run one network namespace per node"
        );
    }
    ok
}

/// One simulated machine: a network namespace with one address on the test network.
#[derive(Clone, Debug)]
pub struct Host {
    /// The node's name (as the test chose it).
    pub name: String,
    /// The network namespace (`/run/netns/<netns>`).
    pub netns: String,
    pub ip: String,
}

/// The test network: the bridge namespace, the host's link and one namespace per node, all
/// named after this process (`kmn<pid>-…`, `kmnh<pid>`) on a /24 chosen from the pid, so two
/// test processes never share them. Dropping it deletes them all.
pub struct Hosts {
    /// The host's address (the server and the registry relay listen there).
    pub host_ip: String,
    pub hosts: Vec<Host>,
    bridge_ns: String,
    host_link: String,
}

impl Hosts {
    /// Makes the bridge and one namespace per name (addresses .2, .3, ... of 10.199.N.0/24),
    /// first removing what killed runs of these tests left behind.
    pub fn create(names: &[&str]) -> Result<Hosts, String> {
        remove_stale();
        let pid = std::process::id();
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let net = (0..250)
            .map(|i| format!("10.199.{}", (pid + i) % 250 + 1))
            .find(|net| !used.contains(&format!(" {net}.")))
            .ok_or("no free /24 in 10.199.0.0/16")?;
        // Constructed before the first change, so a failure half-way still cleans up.
        let made = Hosts {
            host_ip: format!("{net}.1"),
            hosts: names
                .iter()
                .enumerate()
                .map(|(i, n)| Host {
                    name: n.to_string(),
                    netns: format!("{PREFIX}{pid}-{n}"),
                    ip: format!("{net}.{}", i + 2),
                })
                .collect(),
            bridge_ns: format!("{PREFIX}{pid}-br"),
            host_link: format!("{PREFIX}h{pid}"),
        };
        let (br, link) = (made.bridge_ns.as_str(), made.host_link.as_str());
        ip(&["netns", "add", br])?;
        ip(&["-n", br, "link", "set", "lo", "up"])?;
        ip(&["-n", br, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", br, "link", "set", BRIDGE, "up"])?;
        ip(&[
            "link", "add", link, "type", "veth", "peer", "name", "p-host", "netns", br,
        ])?;
        ip(&["addr", "add", &format!("{}/24", made.host_ip), "dev", link])?;
        ip(&["link", "set", link, "up"])?;
        ip(&["-n", br, "link", "set", "p-host", "master", BRIDGE, "up"])?;
        for (i, h) in made.hosts.iter().enumerate() {
            let (ns, port) = (h.netns.as_str(), format!("p-{i}"));
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", br,
            ])?;
            ip(&["-n", br, "link", "set", &port, "master", BRIDGE, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", h.ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "route", "add", "default", "via", &made.host_ip])?;
        }
        Ok(made)
    }

    pub fn ip_of(&self, name: &str) -> &str {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.ip.as_str())
            .unwrap_or_else(|| panic!("no host {name}"))
    }
}

/// The pid in a name these tests made (`kmn<pid>-…` or `kmnh<pid>`).
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest.strip_prefix('h').unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = &rest[digits.len()..];
    (tail.is_empty() || tail.starts_with('-'))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Deletes the namespaces and links of test processes that are gone (killed before their
/// guards ran).
fn remove_stale() {
    let dead = |name: &str| {
        owner(name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for line in list(&["-o", "link", "show"]).lines() {
        // `7: kmnh123@if2: <...` → kmnh123
        let name = line.split(": ").nth(1).unwrap_or("");
        let name = name.split('@').next().unwrap_or(name);
        if dead(name) {
            let _ = ip(&["link", "del", name]);
        }
    }
    for line in list(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if dead(name) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // The veths go with their namespaces and the host's link.
        let _ = ip(&["link", "del", &self.host_link]);
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.netns]);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns]);
    }
}

/// A TCP relay from `listen` to `target` on threads of the test process (the local registry
/// listens on 127.0.0.1, which a node's namespace cannot reach). Stops when dropped.
pub struct Relay {
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Relay {
    pub fn start(listen: &str, target: &str) -> Result<Relay, String> {
        let listener = TcpListener::bind(listen)
            .map_err(|e| format!("relay: cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, target) = (stop.clone(), target.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                pump(client, server);
            }
        });
        Ok(Relay { stop, addr })
    }
}

/// Copies both ways between `a` and `b`, passing each half-close on.
fn pump(a: TcpStream, b: TcpStream) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    if let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) {
        copy(a, b2);
        copy(b, a2);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A `keelson agent` running inside its node's namespace.
pub struct Agent {
    pub host: Host,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

/// A cluster of several machines: `keelson server` in the root namespace on the host's address,
/// one `keelson agent` per node namespace, each with its own containerd and data dir, pulling
/// docker.io images from the local registry through a relay on the host's address, port 5000.
pub struct MultiNode {
    pub agents: Vec<Agent>,
    pub cluster: Cluster,
    _relay: Relay,
    pub hosts: Hosts,
}

impl MultiNode {
    /// Starts the network, the server and one agent per name, and waits until every node is
    /// Ready. Call only when [`super::have_node`] and [`have_netns`] say yes.
    pub fn start(names: &[&str]) -> MultiNode {
        let hosts = Hosts::create(names).unwrap_or_else(|e| panic!("test network: {e}"));
        let host_ip = hosts.host_ip.clone();
        let relay = Relay::start(&format!("{host_ip}:5000"), "127.0.0.1:5000")
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_keelson"))
            .args(["server", "--no-merge-kubeconfig", "--listen"])
            .arg(format!("{host_ip}:{port}"))
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson server");
        let cluster = Cluster {
            kubeconfig: data.join("kubeconfig"),
            dir,
            child: Some(child),
            port,
            extra_args: Vec::new(),
            node: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(cluster.kubeconfig.exists()
            && cluster
                .kubectl(&["get", "--raw", "/readyz"])
                .status
                .success())
        {
            assert!(
                Instant::now() < deadline,
                "server did not start; log:\n{}",
                cluster.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let server_url = format!("https://{host_ip}:{port}");
        let agents = hosts
            .hosts
            .iter()
            .map(|h| {
                let dir = cluster.dir.path().join(&h.name);
                std::fs::create_dir_all(&dir).expect("agent dir");
                let log = std::fs::File::create(dir.join("agent.log")).expect("agent log");
                // nsenter enters only the network namespace: `ip netns exec` would also
                // remount /sys, hiding the cgroup filesystem runc needs.
                let child = Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{}", h.netns))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_keelson"))
                    .arg("agent")
                    .arg("--kubeconfig")
                    .arg(&cluster.kubeconfig)
                    .args(["--server", &server_url, "--pki-dir"])
                    .arg(data.join("pki"))
                    .arg("--data-dir")
                    .arg(dir.join("data"))
                    .args(["--node-name", &h.name, "--remove-pods-on-exit"])
                    .args([
                        "--registry-mirror",
                        &format!("docker.io=http://{host_ip}:5000"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start keelson agent");
                Agent {
                    host: h.clone(),
                    dir,
                    child: Some(child),
                }
            })
            .collect();
        let mn = MultiNode {
            agents,
            cluster,
            _relay: relay,
            hosts,
        };
        let ready = |mn: &MultiNode| {
            let out = mn.cluster.kubectl(&["get", "nodes", "--no-headers"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            names.iter().all(|n| {
                text.lines()
                    .any(|l| l.split_whitespace().take(2).eq([*n, "Ready"]))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(45);
        while !ready(&mn) {
            assert!(
                Instant::now() < deadline,
                "nodes did not turn Ready; {}",
                mn.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        mn
    }

    /// The server's and every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        let get = |args: &[&str]| {
            let out = self.cluster.kubectl(args);
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let mut s = format!(
            "pods:\n{}\nevents:\n{}\nserver log:\n{}",
            get(&["get", "pods", "-A", "-o", "wide"]),
            get(&["get", "events", "-A"]),
            self.cluster.log()
        );
        for a in &self.agents {
            s.push_str(&format!("\n--- agent {} log:\n{}", a.host.name, a.log()));
        }
        s
    }

    /// Polls `f` for at most `secs` seconds; on time-out, panics with `what` and the logs.
    #[track_caller]
    pub fn eventually<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs}s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        // The agents first (they remove their pods and stop their containerd), all at once;
        // then the fields drop: the server, the relay, the namespaces.
        let stopping: Vec<_> = self
            .agents
            .iter_mut()
            .filter_map(|a| a.child.take())
            .map(|c| std::thread::spawn(move || terminate(c)))
            .collect();
        for t in stopping {
            let _ = t.join();
        }
    }
}
