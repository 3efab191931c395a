//! PersistentVolumes on real containers (SEED-SCENARIOS.md §E.3): an admin's hostPath volume
//! bound to a user's claim keeps a pod's data across pod re-creation; a claim without a class
//! is provisioned by the default `local-path` class on the node its pod runs on, and its data
//! directory goes with the claim; a claim in use stays Terminating until its pod is gone.
//! These tests need root and containerd; they skip elsewhere, saying why.

mod common;

use std::path::Path;

use common::{Cluster, eventually, have_node, path_str};

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let arg = format!("jsonpath={path}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", &arg]);
    c.ok(&args)
}

/// A busybox pod mounting claim `claim` at /data and running `script`.
fn pod(name: &str, claim: &str, script: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: busybox
    command: [\"sh\", \"-c\", \"{script}\"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {claim}
"
    )
}

#[track_caller]
fn wait_phase(c: &Cluster, pod: &str, phase: &str) {
    let mut last = String::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(60, || {
            last = jsonpath(c, &["pod", pod], "{.status.phase}");
            (last == phase).then_some(())
        })
    }));
    if ok.is_err() {
        panic!(
            "pod {pod} never reached {phase} (last {last})\n{}\n{}",
            c.ok(&["describe", "pod", pod]),
            c.log()
        );
    }
}

#[track_caller]
fn wait_logs(c: &Cluster, pod: &str, want: &str) {
    eventually(60, || c.ok(&["logs", pod]).contains(want).then_some(()));
}

/// Seed 000's PV → PVC → pod: the admin's volume, the user's claim, data that outlives pods.
#[test]
fn a_claim_binds_to_an_admins_volume_and_data_survives_pod_recreation() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    let host_dir = c.dir.path().join("node-v");
    std::fs::create_dir_all(&host_dir).unwrap();
    c.apply_stdin(
        "apply",
        &format!(
            "\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-03
spec:
  capacity:
    storage: 2G
  accessModes:
  - ReadWriteOnce
  hostPath:
    path: {}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-big
spec:
  capacity:
    storage: 20G
  accessModes:
  - ReadWriteOnce
  hostPath:
    path: /tmp/keelson-unused
",
            path_str(&host_dir)
        ),
    );
    eventually(60, || {
        (jsonpath(&c, &["pv", "pv-03"], "{.status.phase}") == "Available").then_some(())
    });
    c.apply_stdin(
        "apply",
        "\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: pvc-01
spec:
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: 1G
  storageClassName: \"\"
",
    );
    // The smallest volume that fits.
    eventually(60, || {
        (jsonpath(&c, &["pvc", "pvc-01"], "{.status.phase}") == "Bound").then_some(())
    });
    let pvc = c.ok(&["get", "pvc", "pvc-01"]);
    let header: Vec<&str> = pvc.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    let row: Vec<&str> = pvc.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["pvc-01", "Bound", "pv-03", "2G", "RWO"], "{pvc}");
    let pv = c.ok(&["get", "pv"]);
    let header: Vec<&str> = pv.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "RECLAIM",
            "POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let line = pv.lines().find(|l| l.starts_with("pv-03 ")).unwrap();
    let row: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        row[..6],
        ["pv-03", "2G", "RWO", "Retain", "Bound", "default/pvc-01"],
        "{pv}"
    );
    let free = pv.lines().find(|l| l.starts_with("pv-big ")).unwrap();
    assert!(free.contains(" Available "), "{pv}");
    let ann = jsonpath(&c, &["pvc", "pvc-01"], "{.metadata.annotations}");
    assert!(ann.contains("pv.kubernetes.io/bind-completed"), "{ann}");
    assert!(
        ann.contains("pv.kubernetes.io/bound-by-controller"),
        "{ann}"
    );
    assert_eq!(
        jsonpath(&c, &["pvc", "pvc-01"], "{.metadata.finalizers}"),
        "[\"kubernetes.io/pvc-protection\"]"
    );

    c.apply_stdin(
        "apply",
        &pod(
            "writer",
            "pvc-01",
            "echo kept-by-the-volume > /data/file && sleep 3600",
        ),
    );
    wait_phase(&c, "writer", "Running");
    eventually(60, || host_dir.join("file").exists().then_some(()));
    c.ok(&["delete", "pod", "writer", "--wait=true"]);
    c.apply_stdin(
        "apply",
        &pod("reader", "pvc-01", "cat /data/file && sleep 3600"),
    );
    wait_phase(&c, "reader", "Running");
    wait_logs(&c, "reader", "kept-by-the-volume");

    // Retain: the claim goes, the volume is Released and keeps the data.
    c.ok(&["delete", "pod", "reader", "--wait=true"]);
    c.ok(&["delete", "pvc", "pvc-01", "--wait=true"]);
    eventually(60, || {
        (jsonpath(&c, &["pv", "pv-03"], "{.status.phase}") == "Released").then_some(())
    });
    assert!(host_dir.join("file").exists());

    // A pod placed on the node directly, before its claim is bound, waits in
    // ContainerCreating as the kubelet does, and starts once the claim binds.
    c.ok(&["delete", "pv", "pv-big", "--wait=true"]);
    let node = jsonpath(&c, &["nodes"], "{.items[0].metadata.name}");
    c.apply_stdin(
        "apply",
        "\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: later
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1G
  storageClassName: \"\"
",
    );
    let early = pod("early", "later", "cat /data/file && sleep 3600")
        .replace("spec:\n", &format!("spec:\n  nodeName: {node}\n"));
    c.apply_stdin("apply", &early);
    let described = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(60, || {
            let d = c.ok(&["describe", "pod", "early"]);
            d.contains("FailedMount").then_some(d)
        })
    }))
    .unwrap_or_else(|_| {
        panic!(
            "no FailedMount\n{}\n{}",
            c.ok(&["describe", "pod", "early"]),
            c.log()
        )
    });
    assert!(
        described.contains(
            "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], \
             failed to process volumes=[data]: error processing PVC default/later: PVC is not bound"
        ),
        "{described}"
    );
    let row = c.ok(&["get", "pod", "early", "--no-headers"]);
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("ContainerCreating"),
        "{row}"
    );
    c.ok(&[
        "patch",
        "pv",
        "pv-03",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/claimRef"}]"#,
    ]);
    wait_phase(&c, "early", "Running");
    wait_logs(&c, "early", "kept-by-the-volume");
    assert_eq!(
        jsonpath(&c, &["pvc", "later"], "{.spec.volumeName}"),
        "pv-03"
    );
}

#[test]
fn the_default_class_provisions_on_the_pods_node_and_deletes_with_the_claim() {
    if !have_node() {
        return;
    }
    let c = Cluster::up(&[]);
    let sc = eventually(60, || {
        let out = c.ok(&["get", "storageclass"]);
        out.contains("local-path").then_some(out)
    });
    let header: Vec<&str> = sc.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let row: Vec<&str> = sc.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            "local-path",
            "(default)",
            "keelson.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ]
    );
    c.apply_stdin(
        "apply",
        "\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 128Mi
",
    );
    assert_eq!(
        jsonpath(&c, &["pvc", "data"], "{.spec.storageClassName}"),
        "local-path"
    );
    // Nothing binds before a pod uses the claim.
    let waiting = eventually(60, || {
        let d = c.ok(&["describe", "pvc", "data"]);
        d.contains("waiting for first consumer to be created before binding")
            .then_some(d)
    });
    assert!(waiting.contains("Pending"), "{waiting}");
    c.apply_stdin(
        "apply",
        &pod("app", "data", "echo provisioned > /data/file && sleep 3600"),
    );
    wait_phase(&c, "app", "Running");
    assert_eq!(jsonpath(&c, &["pvc", "data"], "{.status.phase}"), "Bound");
    let uid = jsonpath(&c, &["pvc", "data"], "{.metadata.uid}");
    let pv = format!("pvc-{uid}");
    assert_eq!(jsonpath(&c, &["pvc", "data"], "{.spec.volumeName}"), pv);
    let node = jsonpath(&c, &["pod", "app"], "{.spec.nodeName}");
    assert_eq!(
        jsonpath(
            &c,
            &["pvc", "data"],
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        node
    );
    let path = jsonpath(&c, &["pv", &pv], "{.spec.hostPath.path}");
    assert_eq!(
        path,
        format!("/var/lib/keelson/storage/{pv}_default_data"),
        "the volume lives in the node's storage directory"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&path).join("file"))
            .unwrap()
            .trim(),
        "provisioned"
    );
    let pv_row = c.ok(&["get", "pv", &pv, "--no-headers"]);
    let cols: Vec<&str> = pv_row.split_whitespace().collect();
    assert_eq!(
        cols[..7],
        [
            pv.as_str(),
            "128Mi",
            "RWO",
            "Delete",
            "Bound",
            "default/data",
            "local-path"
        ],
        "{pv_row}"
    );
    let events = c.ok(&["describe", "pvc", "data"]);
    assert!(events.contains("ProvisioningSucceeded"), "{events}");

    // A claim in use is only marked for deletion until its pod is gone.
    c.ok(&["delete", "pvc", "data", "--wait=false"]);
    let row = c.ok(&["get", "pvc", "data", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(1), Some("Terminating"), "{row}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let row = c.ok(&["get", "pvc", "data", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(1), Some("Terminating"), "{row}");
    assert!(Path::new(&path).join("file").exists());
    c.ok(&["delete", "pod", "app", "--wait=true"]);
    // Then the claim goes, its volume is deleted, and the node removes the data.
    eventually(60, || {
        let out = c.kubectl(&["get", "pvc", "data"]);
        (!out.status.success()).then_some(())
    });
    eventually(60, || {
        let out = c.kubectl(&["get", "pv", &pv]);
        (!out.status.success()).then_some(())
    });
    assert!(!Path::new(&path).exists(), "{path} was removed");
}
