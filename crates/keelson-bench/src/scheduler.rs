//! `keelson bench scheduler`, shaped like upstream's scheduler_perf SchedulingBasic but through
//! the real API: thousands of Node objects (no kubelets), pods already placed, then measured
//! pods created as fast as the API takes them while the scheduler (its own process) binds them;
//! throughput from the watch events that show each pod bound.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Api, ClientError};
use crate::controllers::Component;
use crate::load::{Until, closed_loop};
use crate::podwatch::PodWatch;
use crate::report::Goal;
use crate::server::{ServerProcess, Store};
use crate::stats::percentile;

const GOAL_PODS_PER_SECOND: f64 = 5000.0;
const NAMESPACE: &str = "bench-sched";
const ZONES: usize = 10;
/// How long pods may take to be bound before the bench gives up.
const BIND_TIMEOUT: Duration = Duration::from_secs(300);

/// The kind of pods measured.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Requests only (SchedulingBasic).
    Basic,
    /// Required anti-affinity to each other on kubernetes.io/hostname (one per node).
    AntiAffinity,
    /// A topology spread constraint over zones (maxSkew 5, DoNotSchedule).
    Spread,
}

impl Workload {
    fn as_str(self) -> &'static str {
        match self {
            Workload::Basic => "basic",
            Workload::AntiAffinity => "anti-affinity",
            Workload::Spread => "spread",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    pub init_pods: usize,
    pub pods: usize,
    pub workload: Workload,
    pub in_flight: usize,
    pub store: Store,
    pub keep: bool,
}

/// The figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub cores: usize,
    pub nodes: usize,
    pub init_pods: usize,
    pub pods: usize,
    pub workload: Workload,
    /// Measured pods over the time from the first create to the last bind.
    pub pods_per_second: f64,
    /// Percentiles of the per-second throughput samples (as scheduler_perf reports them).
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// How fast the pods were created (the throughput cannot exceed it).
    pub created_per_second: f64,
    pub scheduler_rss_mib: f64,
    pub apiserver_rss_mib: f64,
}

impl Report {
    pub fn goals(&self) -> Vec<Goal> {
        let small = (self.nodes < 5000 || self.pods < 10_000)
            .then(|| format!("{} pods on {} nodes", self.pods, self.nodes));
        let note = match (&small, self.workload) {
            (Some(s), _) => Some(s.clone()),
            (None, Workload::Basic) => None,
            (None, w) => Some(format!("{} workload", w.as_str())),
        };
        vec![Goal {
            key: "pods_per_second",
            figure: format!("{:.0} pods/s", self.pods_per_second),
            goal: format!("≥ {GOAL_PODS_PER_SECOND:.0} pods/s (5,000 nodes, 10,000 pods)"),
            pass: self.pods_per_second >= GOAL_PODS_PER_SECOND && small.is_none(),
            note,
        }]
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cores {}, {} nodes, {} pods placed first, {} measured ({} workload)",
            self.cores,
            self.nodes,
            self.init_pods,
            self.pods,
            self.workload.as_str()
        );
        let _ = writeln!(
            out,
            "throughput {:.0} pods/s (per-second samples p50 {:.0}, p90 {:.0}, p99 {:.0}); \
             created at {:.0} pods/s",
            self.pods_per_second, self.p50, self.p90, self.p99, self.created_per_second
        );
        let _ = writeln!(
            out,
            "peak RSS: scheduler {:.1} MiB, apiserver {:.1} MiB",
            self.scheduler_rss_mib, self.apiserver_rss_mib
        );
        let _ = writeln!(out);
        for g in self.goals() {
            out.push_str(&g.line());
        }
        out
    }

    pub fn json(&self) -> Value {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        json!({
            "cores": self.cores,
            "nodes": self.nodes,
            "init_pods": self.init_pods,
            "pods": self.pods,
            "workload": self.workload.as_str(),
            "pods_per_second": round(self.pods_per_second),
            "p50": round(self.p50),
            "p90": round(self.p90),
            "p99": round(self.p99),
            "created_per_second": round(self.created_per_second),
            "scheduler_rss_mib": round(self.scheduler_rss_mib),
            "apiserver_rss_mib": round(self.apiserver_rss_mib),
        })
    }
}

/// A node as scheduler_perf's node-default: 4 CPUs, 32 GiB, 110 pods, in one of ten zones.
pub fn node(i: usize) -> Value {
    let name = format!("node-{i}");
    let capacity = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES),
        }},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "simulated by keelson bench"}],
        },
    })
}

/// A pod as scheduler_perf's pod-default (100m CPU, 500Mi), shaped by the workload.
pub fn pod(name: &str, workload: Workload) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
        }]},
    });
    let selector = json!({"matchLabels": {"app": "bench"}});
    match workload {
        Workload::Basic => {}
        Workload::AntiAffinity => {
            pod["spec"]["affinity"] = json!({"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": selector,
                    "topologyKey": "kubernetes.io/hostname",
                }],
            }});
        }
        Workload::Spread => {
            pod["spec"]["topologySpreadConstraints"] = json!([{
                "maxSkew": 5,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": selector,
            }]);
        }
    }
    pod
}

/// Binds per whole second since `start`, from bind instants.
pub fn per_second(start: Instant, binds: &[Instant]) -> Vec<f64> {
    let Some(last) = binds.iter().max() else {
        return Vec::new();
    };
    let seconds = last.saturating_duration_since(start).as_secs() as usize;
    let mut buckets = vec![0.0; seconds + 1];
    for b in binds {
        buckets[b.saturating_duration_since(start).as_secs() as usize] += 1.0;
    }
    // The last second is partial: keep it only when it is the only one.
    if buckets.len() > 1 {
        buckets.pop();
    }
    buckets
}

struct Progress(Instant);

impl Progress {
    fn say(&self, what: impl std::fmt::Display) {
        eprintln!("[{:>6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

fn ok_or_conflict(r: crate::client::Result<Bytes>) -> crate::client::Result<()> {
    match r {
        Ok(_)
        | Err(ClientError::Status {
            status: StatusCode::CONFLICT,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn bench(opts: &Options) -> anyhow::Result<Report> {
    if opts.workload == Workload::AntiAffinity && opts.init_pods + opts.pods > opts.nodes {
        bail!(
            "with --workload anti-affinity every pod needs a node of its own: {} + {} pods do not \
             fit on {} nodes (lower --pods or --init-pods)",
            opts.init_pods,
            opts.pods,
            opts.nodes
        );
    }
    let progress = Progress(Instant::now());
    progress.say("starting keelson server (API server alone)");
    let server = ServerProcess::start_with(
        opts.store,
        opts.keep,
        &["--disable-controllers", "--disable-scheduler"],
    )
    .await
    .context("starting the server under test")?;
    let kubeconfig = server.dir().join("kubeconfig");
    let kc = kubeconfig
        .to_str()
        .context("the kubeconfig path is not UTF-8")?;
    let scheduler = Component::spawn(
        server.dir(),
        "scheduler.log",
        &["scheduler", "--kubeconfig", kc, "--leader-elect=false"],
    )?;
    let result = measure(&server, &scheduler, opts, &progress).await;
    let result = result.with_context(|| {
        format!(
            "the server log ends with:\n{}\nthe scheduler's:\n{}",
            server.log_tail(),
            scheduler.log_tail()
        )
    });
    drop(scheduler);
    server.stop().await;
    result
}

async fn create_all(
    api: &Api,
    count: usize,
    workers: usize,
    body: impl Fn(usize) -> (String, Bytes) + Send + Sync + 'static,
) -> anyhow::Result<Duration> {
    let api = api.clone();
    let phase = closed_loop(workers, Until::Count(count), move |n| {
        let api = api.clone();
        let (path, body) = body(n);
        async move { ok_or_conflict(api.fetch(Method::POST, &path, Some(body)).await) }
    })
    .await;
    if phase.errors > 0 {
        bail!(
            "{} of {count} creates failed, the first: {}",
            phase.errors,
            phase.first_error.unwrap_or_default()
        );
    }
    Ok(phase.elapsed)
}

/// Waits until every pod named `prefix-0` … `prefix-(count-1)` is bound; returns the binds.
async fn wait_bound(
    watch: &PodWatch,
    prefix: &str,
    count: usize,
    progress: &Progress,
) -> anyhow::Result<Vec<Instant>> {
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let binds: Vec<Instant> = {
            let seen = watch.lock();
            (0..count)
                .filter_map(|i| seen.bound.get(&format!("{prefix}-{i}")).copied())
                .collect()
        };
        if binds.len() == count {
            return Ok(binds);
        }
        if said.elapsed() >= Duration::from_secs(1) {
            progress.say(format_args!("{prefix}: {} of {count} bound", binds.len()));
            said = Instant::now();
        }
        if started.elapsed() > BIND_TIMEOUT {
            bail!(
                "{prefix}: only {} of {count} pods bound after {} s (watch error: {})",
                binds.len(),
                BIND_TIMEOUT.as_secs(),
                watch.error().unwrap_or_else(|| "none".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(
    server: &ServerProcess,
    scheduler: &Component,
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let api = server.connect();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    ok_or_conflict(
        api.fetch(
            Method::POST,
            "/api/v1/namespaces",
            Some(Bytes::from(ns.to_string())),
        )
        .await,
    )
    .context("creating the namespace")?;
    progress.say(format_args!("creating {} nodes", opts.nodes));
    let took = create_all(&api, opts.nodes, opts.in_flight, |i| {
        ("/api/v1/nodes".into(), Bytes::from(node(i).to_string()))
    })
    .await
    .context("creating the nodes")?;
    progress.say(format_args!(
        "{} nodes created in {:.1} s",
        opts.nodes,
        took.as_secs_f64()
    ));
    // Nodes keep the status they are created with (as upstream); check one.
    let first: Value = api.json(Method::GET, "/api/v1/nodes/node-0", None).await?;
    if first.pointer("/status/allocatable/pods").is_none() {
        bail!("node-0 lost its status on create: {}", first["status"]);
    }

    let pods_path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let watch = PodWatch::start(server.connect(), pods_path.clone()).await?;
    let workload = opts.workload;
    if opts.init_pods > 0 {
        progress.say(format_args!("placing {} pods first", opts.init_pods));
        let path = pods_path.clone();
        create_all(&api, opts.init_pods, opts.in_flight, move |i| {
            let body = pod(&format!("init-{i}"), workload).to_string();
            (path.clone(), Bytes::from(body))
        })
        .await
        .context("creating the first pods")?;
        wait_bound(&watch, "init", opts.init_pods, progress).await?;
    }

    progress.say(format_args!("creating {} measured pods", opts.pods));
    let start = Instant::now();
    let path = pods_path.clone();
    let created = create_all(&api, opts.pods, opts.in_flight, move |i| {
        let body = pod(&format!("pod-{i}"), workload).to_string();
        (path.clone(), Bytes::from(body))
    })
    .await
    .context("creating the measured pods")?;
    let binds = wait_bound(&watch, "pod", opts.pods, progress).await?;
    let last = binds.iter().max().copied().unwrap_or(start);
    let elapsed = last
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-3);
    let mut samples = per_second(start, &binds);
    samples.sort_by(f64::total_cmp);
    let report = Report {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        nodes: opts.nodes,
        init_pods: opts.init_pods,
        pods: opts.pods,
        workload,
        pods_per_second: opts.pods as f64 / elapsed,
        p50: percentile(&samples, 50.0),
        p90: percentile(&samples, 90.0),
        p99: percentile(&samples, 99.0),
        created_per_second: opts.pods as f64 / created.as_secs_f64().max(1e-3),
        scheduler_rss_mib: scheduler.status_mib("VmHWM")?,
        apiserver_rss_mib: server.peak_rss_mib()?,
    };
    progress.say(format_args!("{} pods bound in {elapsed:.2} s", opts.pods));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_buckets_drop_the_partial_last_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let binds = [at(10), at(900), at(1100), at(1200), at(1300), at(2500)];
        assert_eq!(per_second(t0, &binds), vec![2.0, 3.0]);
        assert_eq!(per_second(t0, &[at(300)]), vec![1.0]);
        assert!(per_second(t0, &[]).is_empty());
    }

    #[test]
    fn workloads_shape_the_pods() {
        let basic = pod("p", Workload::Basic);
        assert_eq!(
            basic["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "100m"
        );
        assert!(basic["spec"].get("affinity").is_none());
        let anti = pod("p", Workload::AntiAffinity);
        assert_eq!(
            anti.pointer("/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/topologyKey"),
            Some(&json!("kubernetes.io/hostname"))
        );
        let spread = pod("p", Workload::Spread);
        assert_eq!(spread["spec"]["topologySpreadConstraints"][0]["maxSkew"], 5);
        assert_eq!(
            node(13)["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "zone-3"
        );
    }

    #[test]
    fn the_goal_needs_the_full_basic_load() {
        let r = Report {
            cores: 2,
            nodes: 5000,
            init_pods: 1000,
            pods: 10_000,
            workload: Workload::Basic,
            pods_per_second: 6000.0,
            p50: 6000.0,
            p90: 6500.0,
            p99: 7000.0,
            created_per_second: 7000.0,
            scheduler_rss_mib: 80.0,
            apiserver_rss_mib: 300.0,
        };
        assert!(r.goals()[0].pass);
        assert!(
            !Report {
                pods: 100,
                ..r.clone()
            }
            .goals()[0]
                .pass
        );
        assert!(
            !Report {
                pods_per_second: 4000.0,
                ..r.clone()
            }
            .goals()[0]
                .pass
        );
        let j = r.json();
        for k in ["pods_per_second", "nodes", "pods", "cores"] {
            assert!(j.get(k).is_some(), "{k}");
        }
    }
}
