//! `keelson agent` as its own process beside `keelson server`: it registers its node, runs and
//! logs pods, and a pod deleted while it was down is cleaned up when it comes back (issue 6 §8).
//! Needs root and containerd; skips elsewhere, saying why.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, eventually, free_port, have_node, http_get, http_get_until};

/// A `keelson agent` process; stopped with SIGTERM when dropped.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    fn start(c: &Cluster, dir: &std::path::Path, port: u16, remove_pods_on_exit: bool) -> Agent {
        let log = c.dir.path().join("agent.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("agent log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelson"));
        cmd.arg("agent")
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", c.port))
            .arg("--pki-dir")
            .arg(c.data_dir().join("pki"))
            .arg("--data-dir")
            .arg(dir)
            .args(["--node-name", "worker-1", "--agent-port"])
            .arg(port.to_string())
            .args(["--registry-mirror", "docker.io=http://127.0.0.1:5000"]);
        if remove_pods_on_exit {
            cmd.arg("--remove-pods-on-exit");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start keelson agent");
        Agent {
            child: Some(child),
            log,
        }
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            common::terminate(c);
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_running(c: &Cluster, agent: &Agent, pod: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = c.ok(&["get", "pod", pod, "--no-headers"]);
        if row.split_whitespace().nth(2) == Some("Running") {
            return c.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
        }
        assert!(
            Instant::now() < deadline,
            "pod {pod} not Running: {row}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_separate_agent_runs_pods_and_cleans_up_after_downtime() {
    if !have_node() {
        return;
    }
    let c = Cluster::start();
    let dir = c.dir.path().join("agent");
    let port = free_port();
    let mut agent = Agent::start(&c, &dir, port, false);
    eventually(30, || {
        let out = c.kubectl(&["get", "node", "worker-1", "--no-headers"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(" Ready ")
            .then_some(())
    });
    let labels = c.ok(&["get", "node", "worker-1", "--show-labels", "--no-headers"]);
    assert!(
        labels.contains("kubernetes.io/hostname=worker-1"),
        "{labels}"
    );
    assert!(labels.contains("kubernetes.io/os=linux"), "{labels}");
    let cidr = c.ok(&["get", "node", "worker-1", "-o", "jsonpath={.spec.podCIDR}"]);
    assert!(
        cidr.starts_with("10.42.") && cidr.ends_with("/24"),
        "{cidr:?}"
    );

    c.ok(&["run", "web", "--image=kubetm/p8080"]);
    let ip = wait_running(&c, &agent, "web");
    http_get_until(&ip, 8080, "Hostname: web");
    let logs = eventually(10, || {
        let out = c.kubectl(&["logs", "web"]);
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.contains("Received Request From").then_some(s)
    });
    assert!(logs.contains("listening on :8080"), "{logs}");

    // Down: the pod keeps running; deleted meanwhile (forced, as nothing can finish a graceful
    // deletion without the node)...
    agent.stop();
    assert!(
        http_get(&ip, 8080).is_some(),
        "the container should outlive the agent"
    );
    c.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    // ...and cleaned up once the agent is back.
    let agent = Agent::start(&c, &dir, port, true);
    eventually(30, || http_get(&ip, 8080).is_none().then_some(()));
    c.ok(&["run", "again", "--image=kubetm/p8080"]);
    wait_running(&c, &agent, "again");
}
