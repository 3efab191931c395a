//! Resources and security contexts on real containers (SEED-SCENARIOS.md §B.11, issue 7): a
//! container over its memory limit is OOMKilled and restarted, one over its CPU limit is
//! throttled (read from its cgroup on the host) and not killed, CPU shares follow requests,
//! the QoS class is in the status; runAsUser/runAsGroup/fsGroup/supplementalGroups show in
//! `id`, a read-only root refuses writes, capabilities, privileged and
//! allowPrivilegeEscalation show in `/proc/self/status`, and runAsNonRoot refuses an image
//! that runs as root. These tests need root and containerd; they skip elsewhere, saying why.

mod common;

use std::path::{Path, PathBuf};

use common::{Cluster, eventually, have_node};

const RESOURCE_PODS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: oom
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: hog
    image: keelson/workload
    args: [alloc, --mib, '256', --hold]
    resources:
      limits:
        memory: 64Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: burn
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: burner
    image: keelson/workload
    args: [burn, --threads, '2']
    resources:
      requests:
        cpu: 50m
        memory: 32Mi
      limits:
        cpu: 100m
        memory: 64Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: guaranteed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
    resources:
      requests:
        cpu: 250m
        memory: 32Mi
      limits:
        cpu: 250m
        memory: 32Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: burstable
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
    resources:
      requests:
        cpu: 500m
---
apiVersion: v1
kind: Pod
metadata:
  name: besteffort
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
";

fn jsonpath(c: &Cluster, what: &str, path: &str) -> String {
    c.ok(&["get", what, "-o", &format!("jsonpath={path}")])
}

/// The directory of a container's cgroup in the host's `hierarchy` (cgroup v1: `cpu`,
/// `memory`; v2: the unified tree), found by the container ID in its name.
fn cgroup_dir(hierarchy: &str, container_id: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, id: &str, depth: usize) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().contains(id) {
                return Some(path);
            }
            if depth > 0
                && let Some(found) = walk(&path, id, depth - 1)
            {
                return Some(found);
            }
        }
        None
    }
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let root = if v2 {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(hierarchy)
    };
    walk(&root, container_id, 6)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
}

/// A value of a `key value` lines file (`cpu.stat`).
fn stat(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

fn container_id(c: &Cluster, pod: &str) -> String {
    eventually(30, || {
        let id = jsonpath(
            c,
            &format!("pod/{pod}"),
            "{.status.containerStatuses[0].containerID}",
        );
        id.strip_prefix("containerd://").map(str::to_owned)
    })
}

#[test]
fn memory_and_cpu_limits_qos() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", RESOURCE_PODS);

    // QoS classes, as the API computed them and as the status keeps them.
    for (pod, class) in [
        ("guaranteed", "Guaranteed"),
        ("burstable", "Burstable"),
        ("besteffort", "BestEffort"),
        ("burn", "Burstable"),
    ] {
        c.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            "--timeout=60s",
        ]);
        assert_eq!(
            jsonpath(&c, &format!("pod/{pod}"), "{.status.qosClass}"),
            class,
            "{pod}"
        );
    }

    // Over its memory limit: killed by the kernel, OOMKilled with exit code 137, restarted.
    let last = eventually(60, || {
        let t = jsonpath(
            &c,
            "pod/oom",
            "{.status.containerStatuses[0].lastState.terminated.reason} {.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].restartCount}",
        );
        let parts: Vec<String> = t.split_whitespace().map(str::to_owned).collect();
        (parts.len() == 3 && parts[2].parse::<u32>().unwrap_or(0) >= 1).then_some(parts)
    });
    assert_eq!(
        (last[0].as_str(), last[1].as_str()),
        ("OOMKilled", "137"),
        "{last:?}"
    );
    let describe = c.ok(&["describe", "pod", "oom"]);
    assert!(
        describe.contains("Reason:       OOMKilled") && describe.contains("Exit Code:    137"),
        "{describe}"
    );
    let restarts = eventually(60, || {
        let cols = c.ok(&["get", "pod", "oom", "--no-headers"]);
        let n: u32 = cols.split_whitespace().nth(3)?.parse().ok()?;
        (n >= 2).then_some(n)
    });
    assert!(restarts >= 2);

    // The memory limit reaches the container's cgroup.
    let id = container_id(&c, "guaranteed");
    let mem = cgroup_dir("memory", &id).expect("memory cgroup of the container");
    let limit = if mem.join("memory.max").exists() {
        read(&mem, "memory.max")
    } else {
        read(&mem, "memory.limit_in_bytes")
    };
    assert_eq!(limit.trim(), (32u64 << 20).to_string());

    // CPU: shares from the request (1024 per CPU), quota from the limit; a container burning
    // two threads under a 100m limit is throttled, and keeps running.
    let id = container_id(&c, "burn");
    let cpu = cgroup_dir("cpu", &id).expect("cpu cgroup of the container");
    if cpu.join("cpu.max").exists() {
        assert_eq!(read(&cpu, "cpu.max").trim(), "10000 100000");
    } else {
        assert_eq!(read(&cpu, "cpu.shares").trim(), "51");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us").trim(), "10000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us").trim(), "100000");
    }
    let throttled = eventually(20, || {
        let n = stat(&read(&cpu, "cpu.stat"), "nr_throttled");
        (n > 5).then_some(n)
    });
    assert!(throttled > 5);
    eprintln!(
        "burn (100m limit, 2 threads, {} cores): nr_throttled {throttled}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let cols = c.ok(&["get", "pod", "burn", "--no-headers"]);
    let cols: Vec<&str> = cols.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["1/1", "Running", "0"], "{cols:?}");
    let logs = c.ok(&["logs", "burn"]);
    assert!(logs.contains("burning 2 thread(s)"), "{logs}");
    let shares = cgroup_dir("cpu", &container_id(&c, "besteffort")).expect("cpu cgroup");
    if shares.join("cpu.shares").exists() {
        // No request: upstream's minimum of 2 shares.
        assert_eq!(read(&shares, "cpu.shares").trim(), "2");
    }
}

const SECURITY_PODS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: ids
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'id; grep -E \"^(CapEff|NoNewPrivs)\" /proc/self/status; sleep 3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: locked
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'touch /written 2>&1 && echo wrote; touch /tmp/x 2>&1 && echo wrote tmp; grep -E \"^(CapEff|NoNewPrivs)\" /proc/self/status; sleep 3600']
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
        add: [NET_ADMIN]
---
apiVersion: v1
kind: Pod
metadata:
  name: privileged
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'grep -E \"^(CapEff|NoNewPrivs)\" /proc/self/status; mkdir -p /m; mount -t tmpfs none /m && echo mounted; sleep 3600']
    securityContext:
      privileged: true
---
apiVersion: v1
kind: Pod
metadata:
  name: plain
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'grep -E \"^(CapEff|NoNewPrivs)\" /proc/self/status; mkdir -p /m; mount -t tmpfs none /m 2>&1 || echo no mount; sleep 3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: nonroot-image
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: nonroot-zero
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
    securityContext:
      runAsNonRoot: true
      runAsUser: 0
---
apiVersion: v1
kind: Pod
metadata:
  name: nonroot-ok
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'id -u; sleep 3600']
";

/// `kubectl logs POD` once it holds `want`.
fn logs_with(c: &Cluster, pod: &str, want: &str) -> String {
    eventually(30, || {
        let out = c.kubectl(&["logs", pod]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(want).then_some(text)
    })
}

/// The hex value of a `/proc/self/status` line in `logs`.
fn cap_eff(logs: &str) -> u64 {
    let line = logs
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {logs}"));
    u64::from_str_radix(line.trim(), 16).expect("hex CapEff")
}

#[test]
fn security_contexts() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    c.apply_stdin("apply", SECURITY_PODS);

    // runAsUser, runAsGroup, and fsGroup with supplementalGroups as extra groups.
    let ids = logs_with(&c, "ids", "uid=");
    let id_line = ids
        .lines()
        .find(|l| l.starts_with("uid="))
        .expect("id line");
    assert!(
        id_line.starts_with("uid=1000 gid=3000 groups="),
        "{id_line}"
    );
    let groups = id_line.split("groups=").nth(1).unwrap_or("");
    for g in ["2000", "4000"] {
        assert!(groups.split(',').any(|x| x == g), "group {g} in {id_line}");
    }
    assert!(ids.contains("NoNewPrivs:\t0"), "{ids}");

    // A read-only root refuses writes (an emptyDir-less /tmp is part of it); capabilities
    // dropped but NET_ADMIN (bit 12); no privilege escalation.
    let locked = logs_with(&c, "locked", "NoNewPrivs");
    assert!(locked.contains("Read-only file system"), "{locked}");
    assert!(!locked.contains("wrote"), "{locked}");
    assert_eq!(cap_eff(&locked), 1 << 12, "{locked}");
    assert!(locked.contains("NoNewPrivs:\t1"), "{locked}");

    // Privileged: every capability, and it may mount; a plain container has the runtime's
    // default set (no NET_ADMIN, no SYS_ADMIN) and may not.
    let privileged = logs_with(&c, "privileged", "mounted");
    let plain = logs_with(&c, "plain", "no mount");
    let (all, default) = (cap_eff(&privileged), cap_eff(&plain));
    assert!(all & (1 << 12) != 0 && all & (1 << 21) != 0, "{privileged}");
    assert_eq!(default & (1 << 12), 0, "{plain}");
    assert!(
        all.count_ones() > default.count_ones() + 10,
        "{all:x} vs {default:x}"
    );

    // runAsNonRoot: an image that runs as root, or runAsUser 0, is refused with upstream's
    // message; with a non-root user the container runs.
    let uid = |pod: &str| jsonpath(&c, &format!("pod/{pod}"), "{.metadata.uid}");
    for (pod, message) in [
        (
            "nonroot-image",
            format!(
                "container has runAsNonRoot and image will run as root (pod: \"nonroot-image_default({})\", container: c)",
                uid("nonroot-image")
            ),
        ),
        (
            "nonroot-zero",
            format!(
                "container's runAsUser breaks non-root policy (pod: \"nonroot-zero_default({})\", container: c)",
                uid("nonroot-zero")
            ),
        ),
    ] {
        let waiting = eventually(30, || {
            let w = jsonpath(
                &c,
                &format!("pod/{pod}"),
                "{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
            );
            w.starts_with("CreateContainerConfigError|").then_some(w)
        });
        assert_eq!(waiting, format!("CreateContainerConfigError|{message}"));
        let cols = c.ok(&["get", "pod", pod, "--no-headers"]);
        assert!(cols.contains("CreateContainerConfigError"), "{cols}");
        let describe = c.ok(&["describe", "pod", pod]);
        assert!(
            describe.contains(&format!("Error: {message}")),
            "{describe}"
        );
    }
    let ok = logs_with(&c, "nonroot-ok", "65534");
    assert_eq!(ok.trim(), "65534");
}
