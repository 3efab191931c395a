//! `keelson bench controllers`: a Deployment of 1,000 replicas on 100 simulated nodes, from
//! creation to all available and through a rolling update to completion, with the controller
//! manager in its own process so its memory is its own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::client::Api;
use crate::report::Goal;
use crate::server::{self, ServerProcess, Store};

/// The goals.
const GOAL_AVAILABLE_S: f64 = 5.0;
const GOAL_ROLLOUT_S: f64 = 10.0;
const GOAL_RSS_MIB: f64 = 50.0;
/// How long a phase may take before the bench gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(180);
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const NAME: &str = "bench";

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    pub replicas: u32,
    pub store: Store,
    pub keep: bool,
}

/// The figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub cores: usize,
    pub nodes: usize,
    pub replicas: u32,
    pub available_s: f64,
    pub rollout_s: f64,
    pub idle_rss_mib: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

impl Report {
    pub fn goals(&self) -> Vec<Goal> {
        let small = (self.replicas < 1000 || self.nodes < 100)
            .then(|| format!("{} replicas on {} nodes", self.replicas, self.nodes));
        vec![
            Goal {
                key: "deployment_available_s",
                figure: format!(
                    "{} replicas available in {:.2} s",
                    self.replicas, self.available_s
                ),
                goal: format!("≤ {GOAL_AVAILABLE_S:.0} s for 1,000"),
                pass: self.available_s <= GOAL_AVAILABLE_S && small.is_none(),
                note: small.clone(),
            },
            Goal {
                key: "rollout_s",
                figure: format!("rolling update in {:.2} s", self.rollout_s),
                goal: format!("≤ {GOAL_ROLLOUT_S:.0} s for 1,000"),
                pass: self.rollout_s <= GOAL_ROLLOUT_S && small.is_none(),
                note: small,
            },
            Goal {
                key: "controller_rss_mib",
                figure: format!("controller manager peak RSS {:.1} MiB", self.peak_rss_mib),
                goal: format!("≤ {GOAL_RSS_MIB:.0} MiB"),
                pass: self.peak_rss_mib <= GOAL_RSS_MIB,
                note: None,
            },
        ]
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cores {}, {} simulated nodes, a Deployment of {} replicas",
            self.cores, self.nodes, self.replicas
        );
        let _ = writeln!(out, "created → all available   {:>8.2} s", self.available_s);
        let _ = writeln!(out, "rolling update → complete {:>8.2} s", self.rollout_s);
        let _ = writeln!(
            out,
            "controller manager RSS: idle {:.1} MiB, after {:.1} MiB, peak {:.1} MiB",
            self.idle_rss_mib, self.rss_mib, self.peak_rss_mib
        );
        let _ = writeln!(out);
        for g in self.goals() {
            out.push_str(&g.line());
        }
        out
    }

    pub fn json(&self) -> Value {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "cores": self.cores,
            "nodes": self.nodes,
            "replicas": self.replicas,
            "deployment_available_s": round(self.available_s),
            "rollout_s": round(self.rollout_s),
            "controller_rss_mib": round(self.peak_rss_mib),
            "controller_idle_rss_mib": round(self.idle_rss_mib),
        })
    }
}

/// A keelson component in its own process, killed when dropped.
pub struct Component {
    child: Child,
    dir: PathBuf,
    log: String,
}

impl Component {
    pub fn spawn(dir: &Path, log: &str, args: &[&str]) -> anyhow::Result<Component> {
        let exe = std::env::current_exe().context("finding the keelson executable")?;
        let path = dir.join(log);
        let out =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out);
        server::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting keelson {}", args.join(" ")))?;
        Ok(Component {
            child,
            dir: dir.to_path_buf(),
            log: log.into(),
        })
    }

    pub fn status_mib(&self, field: &str) -> anyhow::Result<f64> {
        let pid = self.child.id();
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let kib = server::status_kib(&text, field)
            .with_context(|| format!("/proc/{pid}/status has no {field} line"))?;
        Ok(kib as f64 / 1024.0)
    }

    pub fn log_tail(&self) -> String {
        server::log_tail_of(&self.dir, &self.log)
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Progress lines on stderr, stamped with the time since the bench started.
struct Progress(Instant);

impl Progress {
    fn say(&self, what: impl std::fmt::Display) {
        eprintln!("[{:>6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

fn deployment(replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": "app", "image": "keelson/bench:1"}]},
            },
        },
    })
}

/// Whether a Deployment's status says every replica runs the current template and is
/// available, with nothing left over (`kubectl rollout status`'s test).
pub fn rolled_out(d: &Value, replicas: u32) -> bool {
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(-1);
    let want = i64::from(replicas);
    n("/status/observedGeneration") >= n("/metadata/generation")
        && n("/status/updatedReplicas") == want
        && n("/status/replicas") == want
        && n("/status/availableReplicas") == want
}

/// Polls the Deployment until it is rolled out, saying how far it got every second.
async fn wait_rolled_out(
    api: &Api,
    replicas: u32,
    progress: &Progress,
    what: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut said = Instant::now();
    let path = format!("{DEPLOYMENTS}/{NAME}");
    loop {
        let d: Value = api.json(Method::GET, &path, None).await?;
        if rolled_out(&d, replicas) {
            return Ok(());
        }
        if said.elapsed() >= Duration::from_secs(1) {
            let s = &d["status"];
            progress.say(format_args!(
                "{what}: {} updated, {} available of {replicas}",
                s["updatedReplicas"].as_i64().unwrap_or(0),
                s["availableReplicas"].as_i64().unwrap_or(0),
            ));
            said = Instant::now();
        }
        if started.elapsed() > PHASE_TIMEOUT {
            bail!(
                "{what}: not done after {} s; status {}",
                PHASE_TIMEOUT.as_secs(),
                d["status"]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready_nodes(api: &Api) -> anyhow::Result<usize> {
    let list: Value = api.json(Method::GET, "/api/v1/nodes", None).await?;
    Ok(list["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|n| crate::cluster::node_ready(n))
            .count()
    }))
}

pub async fn bench(opts: &Options) -> anyhow::Result<Report> {
    let progress = Progress(Instant::now());
    progress.say("starting keelson server (API server and scheduler)");
    let server = ServerProcess::start_with(opts.store, opts.keep, &["--disable-controllers"])
        .await
        .context("starting the server under test")?;
    let kubeconfig = server.dir().join("kubeconfig");
    let kc = kubeconfig
        .to_str()
        .context("the kubeconfig path is not UTF-8")?;
    let nodes = opts.nodes.to_string();
    let sim = Component::spawn(
        server.dir(),
        "sim.log",
        &["sim", "--kubeconfig", kc, "--nodes", &nodes],
    )?;
    let cm = Component::spawn(
        server.dir(),
        "controller-manager.log",
        &[
            "controller-manager",
            "--kubeconfig",
            kc,
            "--leader-elect=false",
        ],
    )?;
    let result = measure(&server, &cm, opts, &progress).await;
    let result = result.with_context(|| {
        format!(
            "the server log ends with:\n{}\nthe controller manager's:\n{}\nthe simulator's:\n{}",
            server.log_tail(),
            cm.log_tail(),
            sim.log_tail()
        )
    });
    drop(sim);
    drop(cm);
    server.stop().await;
    result
}

async fn measure(
    server: &ServerProcess,
    cm: &Component,
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let api = server.connect();
    let started = Instant::now();
    while ready_nodes(&api).await? < opts.nodes {
        if started.elapsed() > PHASE_TIMEOUT {
            bail!("{} simulated nodes were not Ready in time", opts.nodes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.say(format_args!("{} simulated nodes Ready", opts.nodes));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_mib = cm.status_mib("VmRSS")?;

    let body = Bytes::from(deployment(opts.replicas).to_string());
    let t0 = Instant::now();
    api.fetch(Method::POST, DEPLOYMENTS, Some(body))
        .await
        .context("creating the deployment")?;
    wait_rolled_out(&api, opts.replicas, progress, "creation").await?;
    let available_s = t0.elapsed().as_secs_f64();
    progress.say(format_args!(
        "{} replicas available in {available_s:.2} s",
        opts.replicas
    ));

    let path = format!("{DEPLOYMENTS}/{NAME}");
    let mut d: Value = api.json(Method::GET, &path, None).await?;
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("keelson/bench:2");
    let t1 = Instant::now();
    api.fetch(Method::PUT, &path, Some(Bytes::from(d.to_string())))
        .await
        .context("updating the deployment's image")?;
    wait_rolled_out(&api, opts.replicas, progress, "rollout").await?;
    let rollout_s = t1.elapsed().as_secs_f64();
    progress.say(format_args!("rolled out in {rollout_s:.2} s"));

    Ok(Report {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        nodes: opts.nodes,
        replicas: opts.replicas,
        available_s,
        rollout_s,
        idle_rss_mib,
        rss_mib: cm.status_mib("VmRSS")?,
        peak_rss_mib: cm.status_mib("VmHWM")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolled_out_needs_every_count_and_the_current_generation() {
        let d = |gen_: i64, obs: i64, updated: i64, replicas: i64, available: i64| {
            json!({"metadata": {"generation": gen_}, "status": {"observedGeneration": obs,
                "updatedReplicas": updated, "replicas": replicas, "availableReplicas": available}})
        };
        assert!(rolled_out(&d(2, 2, 10, 10, 10), 10));
        assert!(!rolled_out(&d(2, 1, 10, 10, 10), 10), "old generation");
        assert!(!rolled_out(&d(2, 2, 9, 10, 10), 10), "not all updated");
        assert!(!rolled_out(&d(2, 2, 10, 12, 10), 10), "old pods left");
        assert!(!rolled_out(&d(2, 2, 10, 10, 9), 10), "not all available");
        assert!(!rolled_out(&json!({}), 10));
    }

    #[test]
    fn goals_need_the_full_load() {
        let r = Report {
            cores: 2,
            nodes: 100,
            replicas: 1000,
            available_s: 4.0,
            rollout_s: 9.0,
            idle_rss_mib: 20.0,
            rss_mib: 30.0,
            peak_rss_mib: 40.0,
        };
        assert!(r.goals().iter().all(|g| g.pass));
        let small = Report {
            replicas: 10,
            ..r.clone()
        };
        let pass: Vec<bool> = small.goals().iter().map(|g| g.pass).collect();
        assert_eq!(pass, [false, false, true]);
        let json = r.json();
        for key in [
            "deployment_available_s",
            "rollout_s",
            "controller_rss_mib",
            "cores",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
