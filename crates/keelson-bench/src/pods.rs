//! `keelson bench pods`: starts `keelson up`, creates pause pods at a fixed rate and at full
//! speed, times each from its create request to Running (one watch on pods), reads memory, and
//! runs `ctr run` of the same image on the same containerd as the peer, and the same pod
//! straight through CRI (no control plane) as a second peer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Api, ClientError};
use crate::cluster::Cluster;
use crate::cripeer;
use crate::pods_report::{CtrPeer, PodPhase, PodsReport};
use crate::podwatch::PodWatch;
use crate::stats::Summary;

/// The namespace the bench's pods live in.
pub const NAMESPACE: &str = "bench-pods";
/// The label every bench pod carries.
const LABEL: (&str, &str) = ("app", "keelson-bench");
/// How long the cluster idles after its node is Ready before its memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
/// How long pods may take to run after the last create, and to be gone after the deletes.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const GONE_TIMEOUT: Duration = Duration::from_secs(120);
/// Containers started with `ctr run`.
const CTR_RUNS: usize = 20;
/// Pods run straight through CRI.
const CRI_RUNS: usize = 20;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub pods: usize,
    /// Pods per second of the open-loop phase.
    pub rate: f64,
    /// Creates in flight at once in the full-speed phase.
    pub in_flight: usize,
    pub keep: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error("keelson bench pods needs root and containerd: {0}")]
    Prerequisite(String),
}

/// Progress lines on stderr, stamped with the time since the bench started.
struct Progress(Instant);

impl Progress {
    fn say(&self, what: impl std::fmt::Display) {
        eprintln!("[{:>6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

/// Checks that the bench can run here: root, and containerd and ctr on the PATH.
pub fn check_prerequisites() -> Result<(), PodsError> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |bin: &str| std::env::split_paths(&path).any(|d| d.join(bin).is_file());
    let missing: Vec<&str> = ["containerd", "runc", "ctr"]
        .into_iter()
        .filter(|b| !found(b))
        .collect();
    prerequisite_problem(euid == 0, &missing).map_or(Ok(()), |p| Err(PodsError::Prerequisite(p)))
}

/// What stops the bench from running, given whether it runs as root and which programs are
/// missing from the PATH.
fn prerequisite_problem(root: bool, missing: &[&str]) -> Option<String> {
    let mut problems = Vec::new();
    if !root {
        problems.push("not running as root".to_string());
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} not found on the PATH (install the Debian packages containerd and runc)",
            missing.join(", ")
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Starts `keelson up`, measures, stops it with SIGTERM (also when measuring fails).
pub async fn bench(opts: &Options) -> anyhow::Result<PodsReport> {
    check_prerequisites()?;
    let progress = Progress(Instant::now());
    progress.say("starting keelson up");
    let cluster = Cluster::start(opts.keep)
        .await
        .context("starting keelson up")?;
    progress.say(format_args!(
        "node Ready {:.2} s after spawning keelson up (pid {}, {})",
        cluster.start_to_ready.as_secs_f64(),
        cluster.pid(),
        cluster.base
    ));
    let result = measure(&cluster, opts, &progress).await;
    let result =
        result.with_context(|| format!("keelson up's log ends with:\n{}", cluster.log_tail()));
    let dir = cluster.dir().to_path_buf();
    progress.say("stopping keelson up (SIGTERM)");
    let left = cluster.stop().await;
    if left.is_empty() {
        progress.say("keelson up stopped; no containerd or shim left running");
    } else {
        progress.say(format_args!(
            "WARNING: still running after keelson up stopped:\n{}",
            left.join("\n")
        ));
    }
    if opts.keep {
        progress.say(format_args!("kept the cluster's data in {}", dir.display()));
    }
    result
}

async fn measure(
    cluster: &Cluster,
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<PodsReport> {
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let mut report = PodsReport {
        cores,
        pods: opts.pods,
        rate: opts.rate,
        in_flight: opts.in_flight,
        start_to_ready_s: cluster.start_to_ready.as_secs_f64(),
        load_before: load_average(),
        ..PodsReport::default()
    };
    tokio::time::sleep(IDLE_SETTLE).await;
    report.idle_rss_mib = cluster.rss_mib()?;
    report.idle_containerd_rss_mib = cluster.runtime_memory().containerd_mib;
    progress.say(format_args!(
        "idle RSS: keelson up {:.1} MiB, containerd {:.1} MiB ({cores} cores)",
        report.idle_rss_mib, report.idle_containerd_rss_mib
    ));

    let api = cluster.connect();
    create_namespace(&api).await?;
    let watch = PodWatch::start(cluster.connect(), pods_path()).await?;

    progress.say(format_args!(
        "creating {} pods open loop at {} pods/s",
        opts.pods, opts.rate
    ));
    let names: Vec<String> = (0..opts.pods).map(|i| format!("bench-r-{i}")).collect();
    let mut slow = run_phase(&api, &watch, &names, Pace::Rate(opts.rate), progress).await;
    let mem = cluster.runtime_memory();
    report.agent_rss_mib = cluster.rss_mib()?;
    report.containerd_rss_mib = mem.containerd_mib;
    report.shims_rss_mib = mem.shims_mib;
    report.shims = mem.shims;
    progress.say(format_args!(
        "RSS with {} pods: keelson up {:.1} MiB, containerd {:.1} MiB, {} shims {:.1} MiB",
        slow.running, report.agent_rss_mib, mem.containerd_mib, mem.shims, mem.shims_mib
    ));
    slow.delete = delete_all(&api, &names, progress).await?;
    report.slow = slow;

    progress.say(format_args!(
        "creating {} pods at full speed ({} in flight)",
        opts.pods, opts.in_flight
    ));
    let names: Vec<String> = (0..opts.pods).map(|i| format!("bench-f-{i}")).collect();
    let mut full = run_phase(
        &api,
        &watch,
        &names,
        Pace::InFlight(opts.in_flight),
        progress,
    )
    .await;
    full.delete = delete_all(&api, &names, progress).await?;
    report.full = full;
    watch.stop();

    progress.say(format_args!(
        "peer: {CTR_RUNS} × ctr run -d {} on the same containerd",
        keelson_oci::PAUSE_IMAGE
    ));
    report.ctr = ctr_peer(&cluster.containerd_socket(), CTR_RUNS).await;
    progress.say(format_args!(
        "ctr run: {} ok, {} failed, p50 {:.1} ms, p99 {:.1} ms",
        report.ctr.runs - report.ctr.errors,
        report.ctr.errors,
        report.ctr.summary.p50_ms,
        report.ctr.summary.p99_ms
    ));
    progress.say(format_args!(
        "peer: {CRI_RUNS} × the same pod through CRI alone (RunPodSandbox, CreateContainer, \
         StartContainer) on the same containerd"
    ));
    let logs = cluster.dir().join("cri-peer-logs");
    report.cri = cripeer::cri_peer(&cluster.containerd_socket(), &logs, CRI_RUNS).await;
    progress.say(format_args!(
        "CRI alone: {} ok, {} failed, p50 {:.1} ms (sandbox {:.1}, create {:.1}, start {:.1}), \
         p99 {:.1} ms",
        report.cri.runs - report.cri.errors,
        report.cri.errors,
        report.cri.summary.p50_ms,
        report.cri.sandbox.p50_ms,
        report.cri.create.p50_ms,
        report.cri.start.p50_ms,
        report.cri.summary.p99_ms
    ));
    report.load_after = load_average();
    Ok(report)
}

/// The 1-minute load average of the machine (0 when unknown).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn create_namespace(api: &Api) -> anyhow::Result<()> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    match api
        .fetch(
            Method::POST,
            "/api/v1/namespaces",
            Some(Bytes::from(ns.to_string())),
        )
        .await
    {
        Ok(_)
        | Err(ClientError::Status {
            status: StatusCode::CONFLICT,
            ..
        }) => Ok(()),
        Err(e) => Err(e).context(format!("creating the namespace {NAMESPACE}")),
    }
}

/// The pod the bench creates: one pause container that runs until it is stopped, never
/// pulled, with requests small enough for any number to fit on the node.
pub fn pod_manifest(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {LABEL.0: LABEL.1}},
        "spec": {
            "containers": [{
                "name": "pause",
                "image": keelson_oci::PAUSE_IMAGE,
                "imagePullPolicy": "Never",
                "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}},
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
        },
    })
}

/// Whether a pod object is in phase Running with its Ready condition True.
pub fn running_and_ready(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conds| {
                conds.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
}

fn pods_path() -> String {
    format!(
        "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={}%3D{}",
        LABEL.0, LABEL.1
    )
}

/// How the creates of a phase are paced.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// Open loop: create k is sent at k / rate seconds, whatever the earlier ones do.
    Rate(f64),
    /// All at once, this many requests in flight.
    InFlight(usize),
}

/// Creates the pods, waits until all run (or time runs out), and times each.
async fn run_phase(
    api: &Api,
    watch: &PodWatch,
    names: &[String],
    pace: Pace,
    progress: &Progress,
) -> PodPhase {
    let total = names.len();
    let step = (total / 5).max(1);
    let start = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let limit = Arc::new(tokio::sync::Semaphore::new(match pace {
        Pace::Rate(_) => tokio::sync::Semaphore::MAX_PERMITS,
        Pace::InFlight(n) => n.max(1),
    }));
    for (k, name) in names.iter().enumerate() {
        if let Pace::Rate(rate) = pace {
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (api, name, done) = (api.clone(), name.clone(), done_tx.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let body = Bytes::from(pod_manifest(&name).to_string());
            let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
            let outcome = api.fetch(Method::POST, &path, Some(body)).await;
            drop(permit);
            let _ = done.send((name, sent, outcome.map(|_| ()).map_err(|e| e.to_string())));
        });
        if (k + 1) % step == 0 || k + 1 == total {
            progress.say(format_args!("created {}/{total}", k + 1));
        }
    }
    drop(done_tx);
    let mut sent = HashMap::new();
    let mut phase = PodPhase {
        pods: total,
        ..PodPhase::default()
    };
    while let Some((name, at, outcome)) = done_rx.recv().await {
        match outcome {
            Ok(()) => {
                sent.insert(name, at);
                phase.created += 1;
            }
            Err(e) => {
                phase.first_error.get_or_insert(e);
            }
        }
    }
    let created: Vec<String> = names
        .iter()
        .filter(|n| sent.contains_key(*n))
        .cloned()
        .collect();
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut last_report = Instant::now();
    let mut last_count = usize::MAX;
    loop {
        let running = watch.ready_count(&created);
        if running != last_count
            && (last_report.elapsed() >= Duration::from_secs(2) || running == created.len())
        {
            progress.say(format_args!("running {running}/{total}"));
            last_report = Instant::now();
            last_count = running;
        }
        if running == created.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latencies = Vec::new();
    let mut to_bound = Vec::new();
    let mut bound_to_ready = Vec::new();
    let mut last_ready = start;
    for name in &created {
        let Some(sent) = sent.get(name) else { continue };
        let bound = watch.bound_at(name);
        if let Some(bound) = bound {
            to_bound.push(bound.saturating_duration_since(*sent));
        }
        if let Some(ready) = watch.ready_at(name) {
            latencies.push(ready.saturating_duration_since(*sent));
            last_ready = last_ready.max(ready);
            if let Some(bound) = bound {
                bound_to_ready.push(ready.saturating_duration_since(bound));
            }
        }
    }
    phase.to_bound = Summary::of(&to_bound);
    phase.bound_to_running = Summary::of(&bound_to_ready);
    phase.running = latencies.len();
    phase.wall = if phase.running == created.len() {
        last_ready.saturating_duration_since(start)
    } else {
        start.elapsed()
    };
    phase.summary = Summary::of(&latencies);
    if phase.running < created.len() {
        let missing = created.len() - phase.running;
        let why = watch
            .error()
            .map(|e| format!(" (the watch: {e})"))
            .unwrap_or_default();
        phase.first_error.get_or_insert(format!(
            "{missing} pods were not Running within {} s{why}",
            RUN_TIMEOUT.as_secs()
        ));
    }
    progress.say(format_args!(
        "{} of {total} Running in {:.2} s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
         (create → bound p50 {:.0} ms, bound → Running p50 {:.0} ms)",
        phase.running,
        phase.wall.as_secs_f64(),
        phase.summary.p50_ms,
        phase.summary.p99_ms,
        phase.summary.max_ms,
        phase.to_bound.p50_ms,
        phase.bound_to_running.p50_ms
    ));
    phase
}

/// Deletes the pods (16 at a time) and waits until the API server lists none of the bench's
/// pods; returns how long that took.
async fn delete_all(api: &Api, names: &[String], progress: &Progress) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for name in names {
        let permit = limit.clone().acquire_owned().await?;
        let (api, name) = (api.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}");
            let outcome = api.fetch(Method::DELETE, &path, None).await;
            drop(permit);
            match outcome {
                Ok(_)
                | Err(ClientError::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                }) => Ok(()),
                Err(e) => Err(e),
            }
        }));
    }
    for task in tasks {
        task.await?.context("deleting a bench pod")?;
    }
    let deadline = start + GONE_TIMEOUT;
    let mut last_report = Instant::now();
    loop {
        let list: Value = api
            .json(Method::GET, &pods_path(), None)
            .await
            .context("listing the bench's pods")?;
        let left = list
            .get("items")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} bench pods were still there {} s after their deletion",
            GONE_TIMEOUT.as_secs()
        );
        if last_report.elapsed() >= Duration::from_secs(2) {
            progress.say(format_args!("deleting: {left} pods left"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    progress.say(format_args!(
        "all {} pods gone in {:.2} s",
        names.len(),
        took.as_secs_f64()
    ));
    Ok(took)
}

/// The `ctr` arguments that run container `id` of the pause image detached, on `socket`.
pub fn ctr_run_args(socket: &Path, id: &str) -> Vec<String> {
    let mut args = ctr_base(socket);
    args.extend(["run", "-d", "--null-io", keelson_oci::PAUSE_IMAGE, id].map(String::from));
    args
}

/// The `ctr` invocations that remove container `id` again (task first, then container).
pub fn ctr_cleanup_args(socket: &Path, id: &str) -> [Vec<String>; 2] {
    let mut task = ctr_base(socket);
    task.extend(["task", "rm", "-f", id].map(String::from));
    let mut container = ctr_base(socket);
    container.extend(["container", "rm", id].map(String::from));
    [task, container]
}

fn ctr_base(socket: &Path) -> Vec<String> {
    vec![
        "--address".to_string(),
        socket.display().to_string(),
        "-n".to_string(),
        "k8s.io".to_string(),
    ]
}

/// Runs `ctr` with `args`; an error message unless it exits 0.
async fn ctr(args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new("ctr")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running ctr: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ctr {} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ctr run -d` of the pause image `runs` times, one after another, each timed until ctr
/// returns (the task started); then removes them all.
async fn ctr_peer(socket: &Path, runs: usize) -> CtrPeer {
    let mut peer = CtrPeer {
        runs,
        ..CtrPeer::default()
    };
    let mut latencies = Vec::new();
    let mut started = CtrContainers {
        socket: socket.to_path_buf(),
        ids: Vec::new(),
    };
    for k in 0..runs {
        let id = format!("keelson-bench-ctr-{k}");
        let begin = Instant::now();
        match ctr(&ctr_run_args(socket, &id)).await {
            Ok(()) => {
                latencies.push(begin.elapsed());
                started.ids.push(id);
            }
            Err(e) => {
                peer.errors += 1;
                peer.first_error.get_or_insert(e);
                // A half-made container would still need removing.
                started.ids.push(id);
            }
        }
    }
    peer.summary = Summary::of(&latencies);
    for id in std::mem::take(&mut started.ids) {
        for args in ctr_cleanup_args(socket, &id) {
            // The task may be gone already (or never started): only the container matters.
            let _ = ctr(&args).await;
        }
    }
    peer
}

/// Containers made with `ctr run` and not removed yet; dropping this (on an error or Ctrl-C)
/// removes them, as `keelson up` removes only its own pods when it stops.
struct CtrContainers {
    socket: std::path::PathBuf,
    ids: Vec<String>,
}

impl Drop for CtrContainers {
    fn drop(&mut self) {
        for id in &self.ids {
            for args in ctr_cleanup_args(&self.socket, id) {
                let _ = std::process::Command::new("ctr")
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerequisites() {
        fn check(root: bool, missing: &[&str], want: Option<&str>) {
            assert_eq!(
                prerequisite_problem(root, missing).as_deref(),
                want,
                "root {root}, missing {missing:?}"
            );
        }
        check(true, &[], None);
        check(false, &[], Some("not running as root"));
        check(
            true,
            &["containerd"],
            Some(
                "containerd not found on the PATH (install the Debian packages containerd and runc)",
            ),
        );
        check(
            false,
            &["containerd", "ctr"],
            Some(
                "not running as root; containerd, ctr not found on the PATH (install the Debian packages containerd and runc)",
            ),
        );
        let e = PodsError::Prerequisite("not running as root".into());
        assert_eq!(
            e.to_string(),
            "keelson bench pods needs root and containerd: not running as root"
        );
    }

    #[test]
    fn the_pod_runs_the_pause_image_without_pulling() {
        let pod = pod_manifest("bench-r-7");
        assert_eq!(pod["metadata"]["name"], "bench-r-7");
        assert_eq!(pod["metadata"]["labels"]["app"], "keelson-bench");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], keelson_oci::PAUSE_IMAGE);
        assert_eq!(c["imagePullPolicy"], "Never");
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert!(c["resources"]["requests"]["cpu"].is_string());
    }

    #[test]
    fn ctr_command_lines() {
        let socket = Path::new("/d/containerd/containerd.sock");
        assert_eq!(
            ctr_run_args(socket, "b-1").join(" "),
            format!(
                "--address /d/containerd/containerd.sock -n k8s.io run -d --null-io {} b-1",
                keelson_oci::PAUSE_IMAGE
            )
        );
        let [task, container] = ctr_cleanup_args(socket, "b-1");
        assert_eq!(
            task.join(" "),
            "--address /d/containerd/containerd.sock -n k8s.io task rm -f b-1"
        );
        assert_eq!(
            container.join(" "),
            "--address /d/containerd/containerd.sock -n k8s.io container rm b-1"
        );
    }
}
