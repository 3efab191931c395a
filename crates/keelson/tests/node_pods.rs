//! Pods on real containers: `keelson up` (with its own containerd) runs the seed pods, and the
//! real kubectl sees what it sees on upstream (SEED-SCENARIOS.md §B.1–B.3, B.5, B.6, B.8, B.13).
//! These tests need root and containerd; they skip elsewhere, saying why.

mod common;

use std::time::Duration;

use common::{Cluster, eventually, have_node, http_get, http_get_until};

/// Seed 000's two-container pod, unmodified.
const SEED_POD_1: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: pod-1
spec:
  containers:
  - name: container1
    image: kubetm/p8000
    ports:
    - containerPort: 8000
  - name: container2
    image: kubetm/p8080
    ports:
    - containerPort: 8080
";

fn jsonpath(c: &Cluster, what: &str, path: &str) -> String {
    c.ok(&["get", what, "-o", &format!("jsonpath={path}")])
}

/// Waits until the pod's STATUS column says `status` (and READY says `ready`, if given).
#[track_caller]
fn wait_status(
    c: &Cluster,
    pod: &str,
    ready: Option<&str>,
    status: &str,
    secs: u64,
) -> Vec<String> {
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(secs, || {
            last = c.ok(&["get", "pod", pod, "--no-headers"]);
            let cols: Vec<String> = last.split_whitespace().map(str::to_string).collect();
            (cols.get(2).map(String::as_str) == Some(status)
                && ready.is_none_or(|r| cols.get(1).map(String::as_str) == Some(r)))
            .then_some(cols)
        })
    }));
    match found {
        Ok(cols) => cols,
        Err(_) => panic!(
            "pod {pod} never showed {ready:?} {status} within {secs}s; last: {last}\n{}\n{}",
            c.ok(&["describe", "pod", pod]),
            c.log()
        ),
    }
}

#[test]
fn seed_pod_with_two_containers_runs() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", SEED_POD_1);
    wait_status(&c, "pod-1", Some("2/2"), "Running", 60);
    let ip = jsonpath(&c, "pod/pod-1", "{.status.podIP}");
    assert!(
        ip.starts_with("10.42."),
        "pod IP {ip:?} is in the node's pod CIDR"
    );
    // The pod's IP is reachable from the node, on both containers' ports.
    for port in [8000, 8080] {
        let body = http_get_until(&ip, port, "Hostname: pod-1");
        assert!(body.contains("Hostname: pod-1"), "port {port}: {body:?}");
        assert!(body.contains(&format!("IP: {ip}")), "port {port}: {body:?}");
    }
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with("pod-1"))
        .unwrap_or_default();
    assert!(row.contains(&ip) && row.contains(&node), "{wide}");
    // §B.6: describe shows the kubelet's events in order.
    let describe = c.ok(&["describe", "pod", "pod-1"]);
    let events_in_order = ["Scheduled", "Pulling", "Pulled", "Created", "Started"];
    let mut at = 0;
    for reason in events_in_order {
        let pos = describe[at..]
            .find(&format!("  {reason}  "))
            .map(|p| p + at);
        assert!(
            pos.is_some(),
            "event {reason} missing or out of order:\n{describe}"
        );
        at = pos.unwrap_or(at);
    }
    for want in [
        "Successfully assigned default/pod-1 to",
        "Pulling image \"kubetm/p8000\"",
        "Successfully pulled image \"kubetm/p8080\"",
        "Created container: container1",
        "Started container container2",
    ] {
        assert!(
            describe.contains(want),
            "{want:?} missing from:\n{describe}"
        );
    }
    assert!(describe.contains("containerd://"), "{describe}");
    // §B.3: a deleted and re-created pod runs again (its IP may differ).
    c.ok(&["delete", "pod", "pod-1", "--grace-period=1"]);
    c.apply_stdin("apply", SEED_POD_1);
    wait_status(&c, "pod-1", Some("2/2"), "Running", 60);
    let ip2 = jsonpath(&c, "pod/pod-1", "{.status.podIP}");
    http_get_until(&ip2, 8000, "Hostname: pod-1");
}

#[test]
fn containers_of_a_pod_share_localhost() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin(
        "apply",
        "apiVersion: v1
kind: Pod
metadata:
  name: share
spec:
  containers:
  - name: server
    image: kubetm/p8080
  - name: client
    image: kubetm/p8000
    command: [sh, -c, 'while true; do curl -s localhost:8080; sleep 1; done']
",
    );
    wait_status(&c, "share", Some("2/2"), "Running", 60);
    eventually(30, || {
        let out = c.kubectl(&["logs", "share", "-c", "client"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("Hostname: share")
            .then_some(())
    });
}

#[test]
fn two_containers_on_one_port_crash_loop() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin(
        "apply",
        "apiVersion: v1
kind: Pod
metadata:
  name: clash
spec:
  containers:
  - name: first
    image: kubetm/p8080
  - name: second
    image: kubetm/p8080
",
    );
    let cols = wait_status(&c, "clash", Some("1/2"), "CrashLoopBackOff", 60);
    assert!(
        cols[3].parse::<u32>().unwrap_or(0) >= 1,
        "RESTARTS: {cols:?}"
    );
    // Whichever bound second is the one crashing; the other keeps running.
    let states = jsonpath(
        &c,
        "pod/clash",
        "{range .status.containerStatuses[*]}{.name}={.restartCount},{.ready} {end}",
    );
    let crashing = if states.contains("first=0,true") {
        "second"
    } else {
        "first"
    };
    let previous = c.ok(&["logs", "clash", "-c", crashing, "--previous"]);
    assert!(previous.contains("address already in use"), "{previous:?}");
    let reason = jsonpath(
        &c,
        "pod/clash",
        &format!(
            "{{.status.containerStatuses[?(@.name==\"{crashing}\")].lastState.terminated.reason}}"
        ),
    );
    assert_eq!(reason, "Error");
    // It keeps being restarted, with back-off (§B.13).
    eventually(40, || {
        let n = jsonpath(
            &c,
            "pod/clash",
            &format!("{{.status.containerStatuses[?(@.name==\"{crashing}\")].restartCount}}"),
        );
        (n.parse::<u32>().unwrap_or(0) >= 2).then_some(())
    });
    let describe = c.ok(&["describe", "pod", "clash"]);
    assert!(
        describe.contains(&format!(
            "Back-off restarting failed container {crashing} in pod clash_default("
        )),
        "{describe}"
    );
    // Without -c, kubectl picks the first container and says so.
    let out = c.kubectl(&["logs", "clash"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Defaulted container \"first\" out of: first, second"),
        "{stderr}"
    );
}

#[test]
fn kubectl_run_serves_and_logs() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.ok(&[
        "run",
        "myweb-1st-app",
        "--image=union1991/myweb",
        "--port=8080",
    ]);
    wait_status(&c, "myweb-1st-app", Some("1/1"), "Running", 60);
    let ip = jsonpath(&c, "pod/myweb-1st-app", "{.status.podIP}");
    let body = http_get_until(&ip, 8080, "Message: HELLO World!");
    assert!(body.contains("Message: HELLO World!"), "{body:?}");
    assert!(body.contains("Hostname: myweb-1st-app"), "{body:?}");
    let logs = eventually(10, || {
        let l = c.ok(&["logs", "myweb-1st-app"]);
        l.contains("Received Request From").then_some(l)
    });
    assert!(logs.contains("...start"), "{logs}");
    let tail = c.ok(&["logs", "myweb-1st-app", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail:?}");
    let stamped = c.ok(&["logs", "myweb-1st-app", "--timestamps", "--tail=1"]);
    assert!(
        stamped.starts_with("20") && stamped.contains('T') && stamped.contains("Z "),
        "{stamped:?}"
    );
    // Graceful deletion ends with the pod gone and its containers removed.
    c.ok(&["delete", "pod", "myweb-1st-app", "--grace-period=2"]);
    assert!(c.ok(&["get", "pods", "--no-headers"]).trim().is_empty());
    assert!(
        http_get(&ip, 8080).is_none(),
        "the container still answers after deletion"
    );
}

#[test]
fn restart_policies_and_init_containers() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.ok(&[
        "run",
        "fails",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo bye; exit 3",
    ]);
    c.ok(&[
        "run",
        "works",
        "--image=busybox",
        "--restart=Never",
        "--",
        "echo",
        "fine",
    ]);
    c.apply_stdin(
        "apply",
        "apiVersion: v1
kind: Pod
metadata:
  name: inits
spec:
  initContainers:
  - name: one
    image: busybox
    command: [sh, -c, 'echo one > /dev/stdout; sleep 1']
  - name: two
    image: busybox
    command: [sh, -c, 'echo two']
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo app; exec sleep 3600']
",
    );
    wait_status(&c, "fails", Some("0/1"), "Error", 60);
    assert_eq!(jsonpath(&c, "pod/fails", "{.status.phase}"), "Failed");
    assert_eq!(
        jsonpath(
            &c,
            "pod/fails",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "3"
    );
    assert_eq!(c.ok(&["logs", "fails"]), "bye\n");
    wait_status(&c, "works", Some("0/1"), "Completed", 60);
    assert_eq!(jsonpath(&c, "pod/works", "{.status.phase}"), "Succeeded");
    wait_status(&c, "inits", Some("1/1"), "Running", 60);
    assert_eq!(c.ok(&["logs", "inits", "-c", "one"]), "one\n");
    assert_eq!(c.ok(&["logs", "inits", "-c", "two"]), "two\n");
    let init_states = jsonpath(
        &c,
        "pod/inits",
        "{range .status.initContainerStatuses[*]}{.name}:{.state.terminated.reason} {end}",
    );
    assert_eq!(init_states.trim(), "one:Completed two:Completed");
    let cond = jsonpath(
        &c,
        "pod/inits",
        "{.status.conditions[?(@.type==\"Initialized\")].status}",
    );
    assert_eq!(cond, "True");
}

#[test]
fn missing_image_backs_off() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.ok(&["run", "nope", "--image=docker.io/library/does-not-exist:1"]);
    eventually(60, || {
        let row = c.ok(&["get", "pod", "nope", "--no-headers"]);
        row.contains("ImagePullBackOff").then_some(())
    });
    let describe = c.ok(&["describe", "pod", "nope"]);
    assert!(
        describe.contains("Failed to pull image \"docker.io/library/does-not-exist:1\""),
        "{describe}"
    );
    assert!(describe.contains("Error: ErrImagePull"), "{describe}");
    assert!(describe.contains("Back-off pulling image"), "{describe}");
    let err = c.fails(&["logs", "nope"]);
    assert!(err.contains("is waiting to start"), "{err}");
}

#[test]
fn agent_restart_keeps_containers_running() {
    if !have_node() {
        return;
    }
    let mut c = Cluster::up_with(&[], false);
    c.apply_stdin("apply", SEED_POD_1);
    wait_status(&c, "pod-1", Some("2/2"), "Running", 60);
    let ids = jsonpath(
        &c,
        "pod/pod-1",
        "{.status.containerStatuses[*].containerID}",
    );
    let ip = jsonpath(&c, "pod/pod-1", "{.status.podIP}");
    // Running says the process started, not that it listens yet.
    http_get_until(&ip, 8080, "pod-1");
    c.stop();
    // The containers outlive keelson...
    assert!(http_get(&ip, 8080).is_some_and(|b| b.contains("pod-1")));
    // ...and the next start adopts them as they are.
    c.extra_args.push("--remove-pods-on-exit".into());
    c.spawn();
    eventually(30, || {
        c.ok(&["get", "nodes", "--no-headers"])
            .contains(" Ready ")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    wait_status(&c, "pod-1", Some("2/2"), "Running", 30);
    assert_eq!(
        jsonpath(
            &c,
            "pod/pod-1",
            "{.status.containerStatuses[*].containerID}"
        ),
        ids
    );
    assert_eq!(
        jsonpath(
            &c,
            "pod/pod-1",
            "{.status.containerStatuses[*].restartCount}"
        ),
        "0 0"
    );
}

#[test]
fn lifecycle_hooks_run() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin(
        "apply",
        "apiVersion: v1
kind: Pod
metadata:
  name: hooks
spec:
  containers:
  - name: good
    image: busybox
    command: [sh, -c, 'sleep 2; cat /tmp/hook; exec sleep 3600']
    lifecycle:
      postStart:
        exec:
          command: [sh, -c, 'echo post-start ran > /tmp/hook']
  - name: bad
    image: busybox
    command: [sh, -c, 'exec sleep 3600']
    lifecycle:
      postStart:
        exec:
          command: [sh, -c, 'exit 7']
",
    );
    eventually(30, || {
        let out = c.kubectl(&["logs", "hooks", "-c", "good"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("post-start ran")
            .then_some(())
    });
    eventually(30, || {
        let d = c.ok(&["describe", "pod", "hooks"]);
        d.contains("FailedPostStartHook").then_some(())
    });
    // A failed postStart hook kills the container, which restarts.
    eventually(30, || {
        let n = jsonpath(
            &c,
            "pod/hooks",
            "{.status.containerStatuses[?(@.name==\"bad\")].restartCount}",
        );
        (n.parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
}

#[test]
fn imported_image_runs_without_a_registry() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    let spec = keelson_oci::ImageSpec {
        name: "docker.io/library/imported:1".into(),
        files: vec![keelson_oci::Entry::File {
            path: "/pause".into(),
            mode: 0o755,
            contents: keelson_oci::PAUSE_BINARY.to_vec(),
        }],
        entrypoint: vec!["/pause".into()],
        cmd: vec![],
        env: vec![],
        working_dir: "/".into(),
        exposed_ports: vec![],
    };
    let archive = c.dir.path().join("imported.tar");
    keelson_oci::write_oci_archive(&spec, &archive).expect("write the archive");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(c.data_dir())
        .output()
        .expect("run keelson image import");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("imported docker.io/library/imported:1"),
        "{stdout}"
    );
    c.ok(&[
        "run",
        "imp",
        "--image=imported:1",
        "--image-pull-policy=Never",
    ]);
    wait_status(&c, "imp", Some("1/1"), "Running", 30);
    let describe = c.ok(&["describe", "pod", "imp"]);
    assert!(
        describe.contains("Container image \"imported:1\" already present on machine"),
        "{describe}"
    );
    // Not an archive: a clear error, nothing imported.
    let junk = c.file("junk.tar", "not an archive");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(["image", "import"])
        .arg(&junk)
        .arg("--data-dir")
        .arg(c.data_dir())
        .output()
        .expect("run keelson image import");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("junk.tar"), "{stderr}");
}
