//! End-to-end: the second round of controllers inside `keelson server`, driven by the real
//! kubectl — Endpoints and EndpointSlices follow Services' pods (SEED-SCENARIOS §D.1).

mod common;

use common::{Cluster, eventually, have_kubectl};

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let p = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", &p]);
    c.ok(&all)
}

/// A pod with a container port 80 named `http`.
fn pod(name: &str, ty: &str, lo: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{type: {ty}, lo: {lo}}}
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - {{name: http, containerPort: 80}}
---
"
    )
}

/// Stands in for a node: gives the pod an IP and sets its Ready condition.
fn set_status(c: &Cluster, name: &str, ip: &str, ready: bool) {
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{}"}}]}}}}"#,
        if ready { "True" } else { "False" }
    );
    c.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

/// `ip:port` of the ready and the not-ready addresses of an Endpoints object, sorted.
fn endpoints(c: &Cluster, svc: &str) -> (Vec<String>, Vec<String>) {
    let out = jsonpath(
        c,
        &["get", "endpoints", svc],
        r#"{range .subsets[*]}{range .addresses[*]}R {.ip}{"\n"}{end}{range .notReadyAddresses[*]}N {.ip}{"\n"}{end}P {.ports[*].port}{"\n"}{end}"#,
    );
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    let mut pending: Vec<(bool, String)> = Vec::new();
    for line in out.lines() {
        match line.split_once(' ') {
            Some(("R", ip)) => pending.push((true, ip.to_string())),
            Some(("N", ip)) => pending.push((false, ip.to_string())),
            Some(("P", port)) => {
                for (r, ip) in pending.drain(..) {
                    let v = format!("{ip}:{port}");
                    if r { ready.push(v) } else { not_ready.push(v) }
                }
            }
            _ => {}
        }
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

#[track_caller]
fn wait_endpoints(c: &Cluster, svc: &str, ready: &[&str], not_ready: &[&str]) {
    let want = (
        ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        not_ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let mut last = None;
    let ok = (0..100).any(|_| {
        let got = c
            .kubectl(&["get", "endpoints", svc])
            .status
            .success()
            .then(|| endpoints(c, svc));
        if got.as_ref() == Some(&want) {
            return true;
        }
        last = got;
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(
        ok,
        "endpoints {svc}: wanted {want:?}, have {last:?}\n{}",
        c.log()
    );
}

const SERVICES: &str = "apiVersion: v1
kind: Service
metadata:
  name: svc-for-web
spec:
  selector: {type: web}
  ports:
  - {name: web, port: 8080, targetPort: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: svc-for-prod
spec:
  selector: {lo: production}
  ports:
  - {port: 8080, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: no-selector
spec:
  ports:
  - {port: 80}
";

#[test]
fn endpoints_follow_the_pods_services_select() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let seeds = [
        ("pod-1", "web", "dev"),
        ("pod-2", "web", "production"),
        ("pod-3", "db", "dev"),
        ("pod-4", "db", "production"),
        ("pod-5", "server", "dev"),
        ("pod-6", "web", "production"),
    ];
    let pods: String = seeds.iter().map(|(n, t, l)| pod(n, t, l)).collect();
    c.apply_stdin("create", &pods);
    c.apply_stdin("create", SERVICES);
    // No pod has an IP yet: the Endpoints exist and are empty.
    wait_endpoints(&c, "svc-for-web", &[], &[]);
    for (i, (name, _, _)) in seeds.iter().enumerate() {
        set_status(&c, name, &format!("10.42.0.{}", i + 1), true);
    }
    wait_endpoints(
        &c,
        "svc-for-web",
        &["10.42.0.1:80", "10.42.0.2:80", "10.42.0.6:80"],
        &[],
    );
    // svc-for-prod resolves its named targetPort to the container port.
    wait_endpoints(
        &c,
        "svc-for-prod",
        &["10.42.0.2:80", "10.42.0.4:80", "10.42.0.6:80"],
        &[],
    );
    let table = c.ok(&["get", "endpoints", "svc-for-web"]);
    assert!(
        table.contains("10.42.0.1:80,10.42.0.2:80,10.42.0.6:80"),
        "{table}"
    );

    // Pods come and go, lose readiness, change labels.
    c.ok(&["delete", "pod", "pod-1", "--wait=false"]);
    c.apply_stdin("create", &pod("pod-7", "web", "dev"));
    set_status(&c, "pod-7", "10.42.0.7", true);
    set_status(&c, "pod-6", "10.42.0.6", false);
    wait_endpoints(
        &c,
        "svc-for-web",
        &["10.42.0.2:80", "10.42.0.7:80"],
        &["10.42.0.6:80"],
    );
    c.ok(&["label", "pod", "pod-2", "type=db", "--overwrite"]);
    wait_endpoints(&c, "svc-for-web", &["10.42.0.7:80"], &["10.42.0.6:80"]);

    // The EndpointSlice carries the service-name and managed-by labels and the conditions.
    let slice = jsonpath(
        &c,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=svc-for-web,endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io",
        ],
        r#"{range .items[*].endpoints[*]}{.addresses[0]} {.conditions.ready} {.targetRef.name}{"\n"}{end}{.items[*].ports[*].port}"#,
    );
    let mut lines: Vec<&str> = slice.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["10.42.0.6 false pod-6", "10.42.0.7 true pod-7", "80"],
        "{slice}"
    );

    // A settled Service's Endpoints are not rewritten over and over.
    let rv = jsonpath(
        &c,
        &["get", "endpoints", "svc-for-web"],
        "{.metadata.resourceVersion}",
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let again = jsonpath(
        &c,
        &["get", "endpoints", "svc-for-web"],
        "{.metadata.resourceVersion}",
    );
    assert_eq!(rv, again);

    // A Service without a selector is left alone.
    let none = c.kubectl(&["get", "endpoints", "no-selector"]);
    assert!(
        !none.status.success(),
        "endpoints of a selector-less service were created"
    );

    // Deleting the Service deletes its Endpoints and (through the GC) its slices.
    c.ok(&["delete", "service", "svc-for-web"]);
    eventually(10, || {
        let ep = c
            .kubectl(&["get", "endpoints", "svc-for-web"])
            .status
            .success();
        let slices = c.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=svc-for-web",
            "-o",
            "name",
        ]);
        (!ep && slices.trim().is_empty()).then_some(())
    });
}

fn job(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox
"
    )
}

/// Names of the pods of `job` in `phase`, sorted.
fn job_pods(c: &Cluster, job: &str, phase: &str) -> Vec<String> {
    let out = jsonpath(
        c,
        &[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={job}"),
        ],
        r#"{range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}"#,
    );
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, p)| *p == phase || (phase == "Pending" && p.is_empty()))
        .map(|(n, _)| n.to_string())
        .collect();
    names.sort();
    names
}

#[track_caller]
fn wait_job_pods(c: &Cluster, job: &str, phase: &str, n: usize, secs: u64) -> Vec<String> {
    eventually(secs, || {
        let pods = job_pods(c, job, phase);
        (pods.len() == n).then_some(pods)
    })
}

fn set_phase(c: &Cluster, pod: &str, phase: &str) {
    let patch = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
    c.ok(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn jobs_complete_and_exhaust_their_backoff_limit() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // An Indexed Job of two completions, both at once.
    c.apply_stdin(
        "create",
        &job(
            "indexed",
            "  completions: 2\n  parallelism: 2\n  completionMode: Indexed",
        ),
    );
    let pods = wait_job_pods(&c, "indexed", "Pending", 2, 10);
    let indexes = jsonpath(
        &c,
        &["get", "pods", "-l", "batch.kubernetes.io/job-name=indexed"],
        r#"{range .items[*]}{.metadata.annotations.batch\.kubernetes\.io/job-completion-index}={.spec.hostname}{" "}{end}"#,
    );
    let mut indexes: Vec<&str> = indexes.split_whitespace().collect();
    indexes.sort();
    assert_eq!(indexes, ["0=indexed-0", "1=indexed-1"]);
    let owner = jsonpath(
        &c,
        &["get", "pod", &pods[0]],
        "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    );
    assert_eq!(owner, "Job/indexed");
    for p in &pods {
        set_phase(&c, p, "Succeeded");
    }
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=10s",
    ]);
    let status = jsonpath(
        &c,
        &["get", "job", "indexed"],
        "{.status.succeeded} {.status.completedIndexes} {.status.completionTime}",
    );
    let fields: Vec<&str> = status.split_whitespace().collect();
    assert_eq!(fields[..2], ["2", "0-1"], "{status}");
    assert_eq!(fields.len(), 3, "no completionTime: {status}");
    let table = c.ok(&["get", "job", "indexed"]);
    assert!(
        table.contains("Complete") && table.contains("2/2"),
        "{table}"
    );

    // backoffLimit 1: the first failure is retried after the back-off, the second fails it.
    c.apply_stdin(
        "create",
        &job("flaky", "  backoffLimit: 1\n  completions: 1"),
    );
    let first = wait_job_pods(&c, "flaky", "Pending", 1, 10);
    set_phase(&c, &first[0], "Failed");
    let retry = eventually(30, || {
        let pods = job_pods(&c, "flaky", "Pending");
        (pods.len() == 1 && pods != first).then_some(pods)
    });
    set_phase(&c, &retry[0], "Failed");
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/flaky",
        "--timeout=10s",
    ]);
    let reason = jsonpath(
        &c,
        &["get", "job", "flaky"],
        r#"{.status.conditions[?(@.type=="Failed")].reason} {.status.failed}"#,
    );
    assert_eq!(reason, "BackoffLimitExceeded 2");
    let events = c.ok(&["describe", "job", "flaky"]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
}

fn node(name: &str, taint: bool) -> String {
    let spec = if taint {
        "spec:\n  taints:\n  - {key: dedicated, value: gpu, effect: NoSchedule}"
    } else {
        "spec: {}"
    };
    format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n{spec}\n---\n")
}

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd
spec:
  selector:
    matchLabels: {app: fluentd}
  template:
    metadata:
      labels: {app: fluentd}
    spec:
      containers:
      - name: fluentd
        image: fluentd:v1
";

/// Live daemon pods: (name, node they are pinned to, phase).
fn daemon_pods(c: &Cluster) -> Vec<(String, String, String)> {
    let out = jsonpath(
        c,
        &["get", "pods", "-l", "app=fluentd"],
        r#"{range .items[*]}{.metadata.name} {.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}"#,
    );
    let mut pods: Vec<(String, String, String)> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 3)
        .map(|f| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        .collect();
    pods.sort_by(|a, b| a.1.cmp(&b.1));
    pods
}

#[track_caller]
fn wait_daemon_nodes(c: &Cluster, nodes: &[&str]) {
    let mut last = Vec::new();
    let ok = (0..100).any(|_| {
        last = daemon_pods(c);
        let got: Vec<&str> = last.iter().map(|p| p.1.as_str()).collect();
        if got == nodes {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(
        ok,
        "wanted daemon pods on {nodes:?}, have {last:?}\n{}",
        c.log()
    );
}

#[test]
fn daemonsets_place_one_pod_per_node_and_roll_out() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.apply_stdin("create", &(node("node-1", false) + &node("node-2", false)));
    c.apply_stdin("create", DAEMONSET);
    wait_daemon_nodes(&c, &["node-1", "node-2"]);
    let tolerations = jsonpath(
        &c,
        &["get", "pods", "-l", "app=fluentd"],
        "{.items[0].spec.tolerations[*].key}",
    );
    assert!(
        tolerations.contains("node.kubernetes.io/not-ready"),
        "{tolerations}"
    );
    // Nodes that join later get a pod, unless a taint keeps it away.
    c.apply_stdin("create", &(node("node-3", false) + &node("node-4", true)));
    wait_daemon_nodes(&c, &["node-1", "node-2", "node-3"]);
    let status = jsonpath(
        &c,
        &["get", "ds", "fluentd"],
        "{.status.desiredNumberScheduled} {.status.currentNumberScheduled}",
    );
    assert_eq!(status, "3 3");

    // A rolling update, one node at a time, with this test playing the nodes.
    let ready = |c: &Cluster| {
        for (name, _, phase) in daemon_pods(c) {
            if phase == "Pending" {
                c.kubectl(&[
                    "patch",
                    "pod",
                    &name,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
                ]);
            }
        }
    };
    ready(&c);
    c.ok(&["rollout", "status", "ds/fluentd", "--timeout=10s"]);
    c.ok(&["set", "image", "ds/fluentd", "fluentd=fluentd:v2"]);
    eventually(30, || {
        ready(&c);
        c.kubectl(&["rollout", "status", "ds/fluentd", "--timeout=1s"])
            .status
            .success()
            .then_some(())
    });
    let images = jsonpath(
        &c,
        &["get", "pods", "-l", "app=fluentd"],
        r#"{range .items[*]}{.metadata.deletionTimestamp}{.spec.containers[0].image}{" "}{end}"#,
    );
    let live: Vec<&str> = images
        .split_whitespace()
        .filter(|i| i.starts_with("fluentd"))
        .collect();
    assert_eq!(live, ["fluentd:v2"; 3], "{images}");
    let history = c.ok(&["rollout", "history", "ds/fluentd"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    c.ok(&["rollout", "undo", "ds/fluentd"]);
    let image = jsonpath(
        &c,
        &["get", "ds", "fluentd"],
        "{.spec.template.spec.containers[0].image}",
    );
    assert_eq!(image, "fluentd:v1");
}

const CRONJOB: &str = "apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: '*/1 * * * *'
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: tick
            image: busybox
";

/// Live Jobs: (name, condition type or `-`), sorted by name.
fn cron_jobs(c: &Cluster) -> Vec<(String, String)> {
    let out = jsonpath(
        c,
        &["get", "jobs"],
        r#"{range .items[*]}{.metadata.name} {.status.conditions[-1:].type}- {.metadata.deletionTimestamp}{"\n"}{end}"#,
    );
    let mut jobs: Vec<(String, String)> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 2)
        .map(|f| (f[0].to_string(), f[1].trim_end_matches('-').to_string()))
        .collect();
    jobs.sort();
    jobs
}

#[track_caller]
fn wait_cron_jobs(c: &Cluster, want: &[&str]) -> Vec<(String, String)> {
    let mut last = Vec::new();
    let ok = (0..100).any(|_| {
        last = cron_jobs(c);
        let states: Vec<&str> = last.iter().map(|j| j.1.as_str()).collect();
        if states == want {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(
        ok,
        "wanted jobs in states {want:?}, have {last:?}\n{}",
        c.log()
    );
    last
}

/// The controller manager on its own, in this process, on a clock the test drives.
fn controller_manager(
    c: &Cluster,
) -> (
    tokio::runtime::Runtime,
    keelson_controllers::clock::ClockDriver,
) {
    let (clock, driver) = keelson_controllers::clock::Clock::driven();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let path = c.kubeconfig.clone();
    rt.spawn(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        let options = keelson_controllers::Options {
            clock,
            ..Default::default()
        };
        if let Err(e) = keelson_controllers::run(client, options).await {
            eprintln!("controller manager stopped: {e}");
        }
    });
    (rt, driver)
}

#[test]
fn cronjobs_run_on_a_driven_clock_by_their_concurrency_policy() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--disable-controllers"]);
    let (_rt, clock) = controller_manager(&c);
    let minute = std::time::Duration::from_secs(60);
    c.apply_stdin("create", CRONJOB);
    // A minute later the first Job starts.
    clock.advance(minute);
    c.ok(&["annotate", "cronjob", "tick", "poke=1"]);
    let jobs = wait_cron_jobs(&c, &[""]);
    assert!(jobs[0].0.starts_with("tick-"), "{jobs:?}");
    // Forbid: the next time comes while it runs, so nothing starts.
    clock.advance(minute);
    c.ok(&["annotate", "cronjob", "tick", "poke=2", "--overwrite"]);
    eventually(10, || {
        c.ok(&["describe", "cronjob", "tick"])
            .contains("JobAlreadyActive")
            .then_some(())
    });
    assert_eq!(cron_jobs(&c).len(), 1);
    let active = jsonpath(&c, &["get", "cronjob", "tick"], "{.status.active[*].name}");
    assert_eq!(active, jobs[0].0);
    // The first Job completes: the missed time runs once, as a catch-up.
    let pods = wait_job_pods(&c, &jobs[0].0, "Pending", 1, 10);
    set_phase(&c, &pods[0], "Succeeded");
    let jobs = wait_cron_jobs(&c, &["Complete", ""]);
    let last = jsonpath(
        &c,
        &["get", "cronjob", "tick"],
        "{.status.lastScheduleTime} {.status.lastSuccessfulTime}",
    );
    assert_eq!(last.split_whitespace().count(), 2, "{last}");
    // Replace: the running Job gives way to the next one.
    clock.advance(minute);
    c.ok(&[
        "patch",
        "cronjob",
        "tick",
        "--type=merge",
        "-p",
        r#"{"spec":{"concurrencyPolicy":"Replace"}}"#,
    ]);
    let replaced = wait_cron_jobs(&c, &["Complete", ""]);
    let again = eventually(10, || {
        let now = cron_jobs(&c);
        (now.len() == 2 && now[1].0 != jobs[1].0).then_some(now)
    });
    assert_eq!(again[0], replaced[0], "the completed job stays");
}
