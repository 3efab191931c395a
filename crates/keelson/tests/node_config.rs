//! Pods consuming configuration on real containers (issue 7 §3–§4): ConfigMap and Secret keys
//! in the environment, envFrom with a prefix, pod fields, `$(VAR)` in the command, a missing
//! ConfigMap making the container wait with CreateContainerConfigError until it is created,
//! configMap/secret volumes (the file follows a ConfigMap change, the secret is on tmpfs),
//! an emptyDir shared by two containers, hostPath DirectoryOrCreate, and a failing hostPath
//! type check. Checked through `kubectl logs`, `get` and `describe` with the real kubectl.
//! Needs root and containerd; skips elsewhere, saying why.

mod common;

use common::{Cluster, eventually, have_node};

const CONFIG: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  color: blue
  size: \"3\"
";

const SECRET: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
stringData:
  password: s3cret
";

const ENV_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: env-pod
  labels:
    app: web
spec:
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo greeting=$(COLOR)-$(POD_NAME); env | sort; sleep 3600']
    resources:
      limits:
        memory: 64Mi
    envFrom:
    - configMapRef:
        name: app-config
      prefix: CFG_
    - secretRef:
        name: app-secret
      prefix: SEC_
    env:
    - name: COLOR
      valueFrom:
        configMapKeyRef: {name: app-config, key: color}
    - name: PASSWORD
      valueFrom:
        secretKeyRef: {name: app-secret, key: password}
    - name: MISSING_OK
      valueFrom:
        configMapKeyRef: {name: nowhere, key: k, optional: true}
    - name: POD_NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
    - name: POD_NS
      valueFrom:
        fieldRef: {fieldPath: metadata.namespace}
    - name: POD_IP
      valueFrom:
        fieldRef: {fieldPath: status.podIP}
    - name: NODE
      valueFrom:
        fieldRef: {fieldPath: spec.nodeName}
    - name: APP
      valueFrom:
        fieldRef: {fieldPath: \"metadata.labels['app']\"}
    - name: MEM_MI
      valueFrom:
        resourceFieldRef: {resource: limits.memory, divisor: 1Mi}
    - name: BOTH
      value: $(COLOR)/$(POD_NS)
";

const WAIT_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: wait-pod
spec:
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo late=$LATE; sleep 3600']
    env:
    - name: LATE
      valueFrom:
        configMapKeyRef: {name: late-config, key: k}
";

/// The volume pod; `HOSTDIR` is replaced by a path that does not exist yet.
const VOL_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: vol-pod
spec:
  volumes:
  - name: cfg
    configMap: {name: app-config}
  - name: sec
    secret: {secretName: app-secret, defaultMode: 0400}
  - name: shared
    emptyDir: {}
  - name: mem
    emptyDir: {medium: Memory, sizeLimit: 1Mi}
  - name: proj
    projected:
      sources:
      - configMap:
          name: app-config
          items: [{key: size, path: conf/size}]
      - downwardAPI:
          items: [{path: name, fieldRef: {fieldPath: metadata.name}}]
  - name: host
    hostPath: {path: HOSTDIR, type: DirectoryOrCreate}
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, 'echo hello > /shared/msg; echo fromhost > /host/made; sleep 3600']
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: host, mountPath: /host}
  - name: reader
    image: busybox
    command:
    - sh
    - -c
    - >-
      while true; do
      echo \"color=$(cat /cfg/color) msg=$(cat /shared/msg 2>/dev/null) pw=$(cat /sec/password)
      fs=$(grep ' /sec ' /proc/mounts | cut -d' ' -f3) sub=$(cat /size)
      mem=$(grep ' /mem ' /proc/mounts | cut -d' ' -f3) proj=$(cat /proj/name)/$(cat /proj/conf/size)\";
      sleep 1; done
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: cfg, mountPath: /size, subPath: size}
    - {name: sec, mountPath: /sec}
    - {name: shared, mountPath: /shared, readOnly: true}
    - {name: mem, mountPath: /mem}
    - {name: proj, mountPath: /proj}
";

/// A pod whose hostPath must be a directory that does not exist.
const BAD_HOST_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: bad-host
spec:
  volumes:
  - name: h
    hostPath: {path: HOSTDIR, type: Directory}
  containers:
  - name: main
    image: busybox
    command: [sleep, '3600']
    volumeMounts:
    - {name: h, mountPath: /h}
";

fn logs(c: &Cluster, pod: &str, container: &str) -> String {
    let out = c.kubectl(&["logs", pod, "-c", container]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the logs of `pod`/`container` hold every one of `want`; returns them.
#[track_caller]
fn wait_logs(c: &Cluster, pod: &str, container: &str, want: &[&str], secs: u64) -> String {
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(secs, || {
            last = logs(c, pod, container);
            want.iter().all(|w| last.contains(w)).then_some(())
        })
    }));
    if found.is_err() {
        panic!(
            "logs of {pod}/{container} never held {want:?} within {secs}s; last:\n{last}\n{}\n{}",
            c.ok(&["describe", "pod", pod]),
            c.log()
        );
    }
    last
}

/// Waits until the pod's STATUS column says `status`.
#[track_caller]
fn wait_status(c: &Cluster, pod: &str, status: &str, secs: u64) {
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(secs, || {
            last = c.ok(&["get", "pod", pod, "--no-headers"]);
            (last.split_whitespace().nth(2) == Some(status)).then_some(())
        })
    }));
    if found.is_err() {
        panic!(
            "pod {pod} never showed {status} within {secs}s; last: {last}\n{}\n{}",
            c.ok(&["describe", "pod", pod]),
            c.log()
        );
    }
}

#[test]
fn pods_get_their_config_through_env_and_volumes() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    let host_dir = c.dir.path().join("hostdir/sub");
    let missing_dir = c.dir.path().join("not-there");
    let host = host_dir.to_str().expect("utf-8 path");
    let missing = missing_dir.to_str().expect("utf-8 path");
    c.apply_stdin("apply", CONFIG);
    c.apply_stdin("apply", SECRET);
    c.apply_stdin("apply", ENV_POD);
    c.apply_stdin("apply", WAIT_POD);
    c.apply_stdin("apply", &VOL_POD.replace("HOSTDIR", host));
    c.apply_stdin("apply", &BAD_HOST_POD.replace("HOSTDIR", missing));

    // Env: keys, decoded secrets, envFrom with prefixes, pod fields, resources, expansion.
    let ip = eventually(60, || {
        let ip = c.ok(&["get", "pod", "env-pod", "-o", "jsonpath={.status.podIP}"]);
        (!ip.is_empty()).then_some(ip)
    });
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let env = wait_logs(&c, "env-pod", "main", &["greeting=blue-env-pod"], 60);
    for want in [
        "COLOR=blue".to_string(),
        "PASSWORD=s3cret".to_string(),
        "CFG_color=blue".to_string(),
        "CFG_size=3".to_string(),
        "SEC_password=s3cret".to_string(),
        "POD_NAME=env-pod".to_string(),
        "POD_NS=default".to_string(),
        format!("POD_IP={ip}"),
        format!("NODE={node}"),
        "APP=web".to_string(),
        "MEM_MI=64".to_string(),
        "BOTH=blue/default".to_string(),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} missing from env:\n{env}"
        );
    }
    assert!(!env.contains("MISSING_OK"), "{env}");

    // A missing ConfigMap holds the container back until it exists.
    wait_status(&c, "wait-pod", "CreateContainerConfigError", 60);
    let describe = c.ok(&["describe", "pod", "wait-pod"]);
    assert!(
        describe.contains("Error: configmap \"late-config\" not found"),
        "{describe}"
    );
    let reason = c.ok(&[
        "get",
        "pod",
        "wait-pod",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.waiting.message}",
    ]);
    assert_eq!(reason, "configmap \"late-config\" not found");
    c.ok(&["create", "configmap", "late-config", "--from-literal=k=v"]);
    wait_status(&c, "wait-pod", "Running", 30);
    wait_logs(&c, "wait-pod", "main", &["late=v"], 30);

    // Volumes: configMap, secret on tmpfs, subPath, emptyDir shared, hostPath created.
    wait_logs(
        &c,
        "vol-pod",
        "reader",
        &["color=blue msg=hello pw=s3cret fs=tmpfs sub=3 mem=tmpfs proj=vol-pod/3"],
        60,
    );
    let made = eventually(30, || std::fs::read_to_string(host_dir.join("made")).ok());
    assert_eq!(made, "fromhost\n");

    // A failing hostPath type check: FailedMount, the container waits in ContainerCreating.
    wait_status(&c, "bad-host", "ContainerCreating", 10);
    let want = format!(
        "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {missing} is not a directory"
    );
    eventually(30, || {
        c.ok(&["describe", "pod", "bad-host"])
            .contains(&want)
            .then_some(())
    });

    // A ConfigMap change reaches the mounted file (not the subPath, not the env).
    c.apply_stdin(
        "apply",
        &CONFIG.replace("blue", "red").replace("\"3\"", "\"4\""),
    );
    wait_logs(
        &c,
        "vol-pod",
        "reader",
        &["color=red msg=hello pw=s3cret fs=tmpfs sub=3 mem=tmpfs proj=vol-pod/4"],
        60,
    );
    let restarts = c.ok(&[
        "get",
        "pod",
        "vol-pod",
        "-o",
        "jsonpath={.status.containerStatuses[*].restartCount}",
    ]);
    assert_eq!(restarts, "0 0");
    assert!(logs(&c, "env-pod", "main").contains("COLOR=blue\n"));

    // Deleting the pod removes its volumes from the node; hostPaths stay.
    let uid_dirs = || {
        std::fs::read_dir(c.data_dir().join("agent/pods"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("volumes/kubernetes.io~secret").exists())
            .count()
    };
    assert_eq!(uid_dirs(), 1, "vol-pod's secret volume is on the node");
    c.ok(&["delete", "pod", "vol-pod", "--grace-period=1"]);
    eventually(30, || (uid_dirs() == 0).then_some(()));
    assert!(host_dir.join("made").exists());
}
