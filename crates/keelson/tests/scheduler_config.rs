//! End-to-end: `keelson server --config FILE` runs the scheduler with the profiles of a
//! KubeSchedulerConfiguration; `spec.schedulerName` picks the profile (a bin-packing profile
//! with MostAllocated fills one node while the default one spreads), pods of unknown
//! schedulers are left alone, and a bad file stops the server at start-up with the reason.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};

use common::{Cluster, eventually, have_kubectl, path_str};

/// A child process (`keelson sim`, `keelson scheduler`), killed when dropped.
struct Process(Child);

impl Process {
    /// Starts `keelson sim` against the cluster.
    fn sim(c: &Cluster, args: &[&str]) -> Process {
        let log = std::fs::File::create(c.dir.path().join("sim.log")).expect("sim log");
        let child = Command::new(env!("CARGO_BIN_EXE_keelson"))
            .args(["sim", "--kubeconfig", path_str(&c.kubeconfig)])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson sim");
        Process(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TWO_PROFILES: &str = "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packing
  plugins:
    postFilter:
      disabled:
      - name: DefaultPreemption
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 1
        - name: memory
          weight: 1
";

/// A pod asking for 1/8 of a sim node's CPU and memory (so every node is equally balanced
/// and only NodeResourcesFit's strategy decides), with `scheduler` as its schedulerName.
fn pod_yaml(name: &str, scheduler: Option<&str>, memory: &str) -> String {
    let mut y = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n");
    if let Some(s) = scheduler {
        y.push_str(&format!("  schedulerName: {s}\n"));
    }
    y.push_str(&format!(
        "  containers:\n  - name: app\n    image: registry.local/app:1\n    resources:\n      requests:\n        cpu: 500m\n        memory: {memory}\n"
    ));
    y
}

fn field(c: &Cluster, pod: &str, path: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")])
}

#[track_caller]
fn running_on(c: &Cluster, pod: &str) -> String {
    eventually(30, || {
        (field(c, pod, ".status.phase") == "Running").then(|| field(c, pod, ".spec.nodeName"))
    })
}

/// `source.component` and `reportingComponent` of the pod's events with `reason`.
fn event_sources(c: &Cluster, pod: &str, reason: &str) -> String {
    c.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod},reason={reason}"),
        "-o",
        "jsonpath={range .items[*]}{.source.component}/{.reportingComponent}{\"\\n\"}{end}",
    ])
}

#[test]
fn scheduler_name_picks_the_profile() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("scheduler.yaml");
    std::fs::write(&config, TWO_PROFILES).expect("write config");
    let c = Cluster::start_with(&["--config", path_str(&config)]);
    let _sim = Process::sim(&c, &["--nodes", "3", "--cpu", "4", "--memory", "4Gi"]);
    eventually(30, || {
        let out = c.ok(&["get", "nodes"]);
        let ready = out
            .lines()
            .filter(|l| l.starts_with("sim-") && l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == 3).then_some(())
    });

    // Bin packing: every pod goes where the others already are.
    let packed: String = (0..4)
        .map(|i| pod_yaml(&format!("packed-{i}"), Some("bin-packing"), "512Mi"))
        .collect::<Vec<_>>()
        .join("---\n");
    c.apply_stdin("create", &packed);
    let nodes: BTreeSet<String> = (0..4)
        .map(|i| running_on(&c, &format!("packed-{i}")))
        .collect();
    assert_eq!(nodes.len(), 1, "bin-packing pods spread: {nodes:?}");
    let full = nodes.into_iter().next().unwrap_or_default();
    assert_eq!(
        event_sources(&c, "packed-0", "Scheduled").trim(),
        "bin-packing/bin-packing"
    );

    // The default profile (LeastAllocated) spreads onto the emptier nodes.
    for (i, scheduler) in [None, Some("default-scheduler")].into_iter().enumerate() {
        c.apply_stdin(
            "create",
            &pod_yaml(&format!("spread-{i}"), scheduler, "512Mi"),
        );
    }
    let spread: BTreeSet<String> = (0..2)
        .map(|i| running_on(&c, &format!("spread-{i}")))
        .collect();
    assert_eq!(spread.len(), 2, "default pods did not spread: {spread:?}");
    assert!(
        !spread.contains(&full),
        "{spread:?} includes the full node {full}"
    );
    assert_eq!(
        event_sources(&c, "spread-0", "Scheduled").trim(),
        "default-scheduler/default-scheduler"
    );

    // A profile's FailedScheduling comes from that profile; without DefaultPreemption the
    // message has no preemption part.
    c.apply_stdin("create", &pod_yaml("huge", Some("bin-packing"), "64Gi"));
    c.apply_stdin("create", &pod_yaml("huge-default", None, "64Gi"));
    let message = |pod: &str| {
        eventually(30, || {
            let m = field(
                &c,
                pod,
                ".status.conditions[?(@.type==\"PodScheduled\")].message",
            );
            (!m.is_empty()).then_some(m)
        })
    };
    assert_eq!(
        message("huge"),
        "0/3 nodes are available: 3 Insufficient memory."
    );
    assert_eq!(
        message("huge-default"),
        "0/3 nodes are available: 3 Insufficient memory. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        event_sources(&c, "huge", "FailedScheduling")
            .lines()
            .next()
            .unwrap_or_default(),
        "bin-packing/bin-packing"
    );

    // Nobody's pod: left Pending, with no condition and no event from this scheduler.
    c.apply_stdin("create", &pod_yaml("orphan", Some("nobody"), "512Mi"));
    c.apply_stdin("create", &pod_yaml("after-orphan", None, "512Mi"));
    running_on(&c, "after-orphan");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(field(&c, "orphan", ".status.phase"), "Pending");
    assert_eq!(field(&c, "orphan", ".spec.nodeName"), "");
    assert_eq!(field(&c, "orphan", ".status.conditions"), "");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=orphan",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert_eq!(events, "", "events of a pod no profile schedules");
    let described = c.ok(&["describe", "pod", "orphan"]);
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("Events:") && l.trim_end().ends_with("<none>")),
        "{described}"
    );
}

#[test]
fn the_standalone_scheduler_reads_the_config() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--disable-scheduler"]);
    let config = c.file(
        "scheduler.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         profiles:\n- schedulerName: solo\n",
    );
    let log = std::fs::File::create(c.dir.path().join("scheduler.log")).expect("log");
    let scheduler = Process(
        Command::new(env!("CARGO_BIN_EXE_keelson"))
            .args(["scheduler", "--leader-elect=false", "--kubeconfig"])
            .arg(&c.kubeconfig)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson scheduler"),
    );
    let _sim = Process::sim(&c, &["--nodes", "1"]);
    c.apply_stdin("create", &pod_yaml("solo", Some("solo"), "512Mi"));
    c.apply_stdin("create", &pod_yaml("default", None, "512Mi"));
    assert_eq!(running_on(&c, "solo"), "sim-0");
    assert_eq!(event_sources(&c, "solo", "Scheduled").trim(), "solo/solo");
    // This scheduler has no default-scheduler profile: that pod waits for another one.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(field(&c, "default", ".spec.nodeName"), "");
    drop(scheduler);
}

#[test]
fn plugin_args_reach_the_plugins() {
    if !have_kubectl() {
        return;
    }
    // Bin packing, but PodTopologySpread's listed default constraint (hostname, maxSkew 1,
    // DoNotSchedule) holds the pods a Service selects to one per node more than the least.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        format!(
            "{TWO_PROFILES}  - name: PodTopologySpread
    args:
      defaultingType: List
      defaultConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
"
        ),
    )
    .expect("write config");
    let c = Cluster::start_with(&["--config", path_str(&config)]);
    let _sim = Process::sim(&c, &["--nodes", "2", "--cpu", "4", "--memory", "4Gi"]);
    eventually(30, || {
        let out = c.ok(&["get", "nodes"]);
        let ready = out
            .lines()
            .filter(|l| l.starts_with("sim-") && l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == 2).then_some(())
    });
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n",
    );
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..4 {
        let name = format!("web-{i}");
        let pod = pod_yaml(&name, Some("bin-packing"), "512Mi").replacen(
            "metadata:\n",
            "metadata:\n  labels:\n    app: web\n",
            1,
        );
        c.apply_stdin("create", &pod);
        *counts.entry(running_on(&c, &name)).or_insert(0) += 1;
    }
    let per_node: Vec<i32> = counts.values().copied().collect();
    assert_eq!(per_node, [2, 2], "{counts:?}");
    // A pod no Service selects is packed as before.
    let lone: BTreeSet<String> = (0..2)
        .map(|i| {
            let name = format!("lone-{i}");
            c.apply_stdin("create", &pod_yaml(&name, Some("bin-packing"), "512Mi"));
            running_on(&c, &name)
        })
        .collect();
    assert_eq!(lone.len(), 1, "{lone:?}");
}

/// Runs `keelson <args>`, which must fail at once; returns stderr.
fn fails_to_start(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run keelson");
    assert!(
        !out.status.success(),
        "keelson {} started with a bad config",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_config_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write config");
        p
    };
    let unknown_plugin = write(
        "unknown-plugin.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         profiles:\n- schedulerName: x\n  plugins:\n    score:\n      enabled:\n      - name: NodeResourceFit\n",
    );
    let port = common::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let server = |config: &std::path::Path| {
        fails_to_start(&[
            "server",
            "--no-merge-kubeconfig",
            "--listen",
            &listen,
            "--data-dir",
            path_str(&data),
            "--config",
            path_str(config),
        ])
    };
    let err = server(&unknown_plugin);
    assert!(
        err.contains(&format!(
            "scheduler configuration {}: profiles[0].plugins.score.enabled[0].name: Unsupported value: \"NodeResourceFit\"",
            unknown_plugin.display()
        )),
        "{err}"
    );

    let unknown_field = write(
        "unknown-field.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         profiles:\n- schedulerName: x\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        kind: MostAllocated\n",
    );
    let err = server(&unknown_field);
    assert!(
        err.contains("profiles[0].pluginConfig[0].args.scoringStrategy.kind: unknown field `kind`"),
        "{err}"
    );

    let old_version = write(
        "v1beta3.json",
        r#"{"apiVersion": "kubescheduler.config.k8s.io/v1beta3", "kind": "KubeSchedulerConfiguration"}"#,
    );
    let err = server(&old_version);
    assert!(
        err.contains("apiVersion: Unsupported value: \"kubescheduler.config.k8s.io/v1beta3\""),
        "{err}"
    );
    let err = server(&dir.path().join("missing.yaml"));
    assert!(err.contains("reading scheduler configuration"), "{err}");
    // Nothing was started or written.
    assert!(!data.join("kubeconfig").exists());

    // `keelson scheduler` and `keelson up` read the same flag.
    let err = fails_to_start(&[
        "scheduler",
        "--kubeconfig",
        "/nonexistent",
        "--config",
        path_str(&unknown_plugin),
    ]);
    assert!(
        err.contains("Unsupported value: \"NodeResourceFit\""),
        "{err}"
    );
    let err = fails_to_start(&[
        "up",
        "--data-dir",
        path_str(&data),
        "--config",
        path_str(&old_version),
    ]);
    assert!(err.contains("apiVersion: Unsupported value"), "{err}");
}
