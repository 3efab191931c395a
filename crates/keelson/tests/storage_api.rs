//! Volumes at the API level, on `keelson sim` nodes (no containers): the scheduler's
//! VolumeBinding (unbound immediate claims, volume node affinity, first-consumer
//! provisioning), claim protection, reclaim policies, and quota and LimitRange on claims, as
//! the real kubectl shows them.

mod common;

use std::process::{Child, Command, Stdio};

use common::{Cluster, eventually, have_kubectl, path_str};

/// A `keelson sim` child process, killed when dropped.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cluster_with_nodes(nodes: usize) -> (Cluster, Sim) {
    let c = Cluster::start();
    let log = std::fs::File::create(c.dir.path().join("sim.log")).expect("sim log");
    let child = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(["sim", "--kubeconfig", path_str(&c.kubeconfig)])
        .args(["--nodes", &nodes.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start keelson sim");
    let sim = Sim(child);
    eventually(60, || {
        let out = c.ok(&["get", "nodes"]);
        let ready = out
            .lines()
            .filter(|l| l.starts_with("sim-") && l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == nodes).then_some(())
    });
    (c, sim)
}

fn get(c: &Cluster, what: &[&str], path: &str) -> String {
    let arg = format!("jsonpath={path}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", &arg]);
    c.ok(&args)
}

fn pod(name: &str, claim: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: registry.local/app:1\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n  volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: {claim}\n"
    )
}

fn claim(name: &str, class: Option<&str>, size: &str) -> String {
    let class = class.map_or(String::new(), |c| format!("  storageClassName: \"{c}\"\n"));
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: {size}\n{class}"
    )
}

#[test]
fn unbound_immediate_claims_wait_and_local_volumes_pin_the_pod() {
    if !have_kubectl() {
        return;
    }
    let (c, _sim) = cluster_with_nodes(2);
    c.apply_stdin("create", &claim("static", Some(""), "1Gi"));
    c.apply_stdin("create", &pod("user", "static"));
    let described = eventually(60, || {
        let d = c.ok(&["describe", "pod", "user"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(
        described.contains(
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        ),
        "{described}"
    );
    let claim_events = eventually(60, || {
        let d = c.ok(&["describe", "pvc", "static"]);
        d.contains("FailedBinding").then_some(d)
    });
    assert!(
        claim_events
            .contains("no persistent volumes available for this claim and no storage class is set"),
        "{claim_events}"
    );
    // An admin's local volume on sim-1: the claim binds, the pod follows the volume.
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: local-1\nspec:\n  capacity: {storage: 5Gi}\n  accessModes: [ReadWriteOnce]\n  local: {path: /mnt/disk}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {key: kubernetes.io/hostname, operator: In, values: [sim-1]}\n",
    );
    eventually(60, || {
        (get(&c, &["pod", "user"], "{.spec.nodeName}") == "sim-1").then_some(())
    });
    assert_eq!(get(&c, &["pvc", "static"], "{.status.phase}"), "Bound");
    assert_eq!(
        get(&c, &["pvc", "static"], "{.status.capacity.storage}"),
        "5Gi"
    );
    assert_eq!(
        get(&c, &["pv", "local-1"], "{.spec.claimRef.name}"),
        "static"
    );
    assert_eq!(
        get(&c, &["pv", "local-1"], "{.metadata.finalizers}"),
        "[\"kubernetes.io/pv-protection\"]"
    );

    // A pod of a claim whose volume lives elsewhere than its node selector allows.
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: elsewhere\nspec:\n  nodeSelector: {kubernetes.io/hostname: sim-0}\n  containers:\n  - {name: app, image: registry.local/app:1}\n  volumes:\n  - name: data\n    persistentVolumeClaim: {claimName: static}\n",
    );
    let described = eventually(60, || {
        let d = c.ok(&["describe", "pod", "elsewhere"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(
        described.contains("1 node(s) didn't match Pod's node affinity/selector")
            && described.contains("1 node(s) had volume node affinity conflict"),
        "{described}"
    );
}

#[test]
fn first_consumer_provisioning_protection_and_reclaim() {
    if !have_kubectl() {
        return;
    }
    let (c, _sim) = cluster_with_nodes(2);
    eventually(60, || {
        c.ok(&["get", "sc"])
            .contains("local-path (default)")
            .then_some(())
    });
    c.apply_stdin("create", &claim("dyn", None, "64Mi"));
    assert_eq!(
        get(&c, &["pvc", "dyn"], "{.spec.storageClassName}"),
        "local-path"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(get(&c, &["pvc", "dyn"], "{.status.phase}"), "Pending");
    c.apply_stdin("create", &pod("consumer", "dyn"));
    let node = eventually(60, || {
        let n = get(&c, &["pod", "consumer"], "{.spec.nodeName}");
        (!n.is_empty()).then_some(n)
    });
    eventually(60, || {
        (get(&c, &["pvc", "dyn"], "{.status.phase}") == "Bound").then_some(())
    });
    let pv = get(&c, &["pvc", "dyn"], "{.spec.volumeName}");
    assert_eq!(
        get(
            &c,
            &["pv", &pv],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        node
    );
    assert_eq!(
        get(
            &c,
            &["pv", &pv],
            "{.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by}"
        ),
        "keelson.io/local-path"
    );

    // In use: Terminating until the pod is gone.
    c.ok(&["delete", "pvc", "dyn", "--wait=false"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let row = c.ok(&["get", "pvc", "dyn", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(1), Some("Terminating"), "{row}");
    c.ok(&["delete", "pod", "consumer", "--wait=true"]);
    eventually(60, || {
        (!c.kubectl(&["get", "pvc", "dyn"]).status.success()).then_some(())
    });
    // Reclaim Delete: the volume object goes (no agent runs on a simulated node, so its
    // cleanup is released by the controller only once the node is gone).
    eventually(60, || {
        let phase = c.kubectl(&[
            "get",
            "pv",
            &pv,
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
        (!phase.status.success() || !String::from_utf8_lossy(&phase.stdout).is_empty())
            .then_some(())
    });

    // A manual volume under Delete that no plugin can delete fails; under Retain it is
    // Released and becomes Available again once its claimRef is removed.
    for (name, policy) in [("manual-del", "Delete"), ("manual-keep", "Retain")] {
        c.apply_stdin(
            "create",
            &format!(
                "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: {policy}\n  storageClassName: manual\n  hostPath: {{path: /tmp/{name}}}\n  claimRef: {{namespace: default, name: {name}}}\n"
            ),
        );
        c.apply_stdin("create", &claim(name, Some("manual"), "1Gi"));
        eventually(60, || {
            (get(&c, &["pvc", name], "{.status.phase}") == "Bound").then_some(())
        });
        c.ok(&["delete", "pvc", name]);
    }
    eventually(60, || {
        (get(&c, &["pv", "manual-del"], "{.status.phase}") == "Failed").then_some(())
    });
    let described = c.ok(&["describe", "pv", "manual-del"]);
    assert!(described.contains("VolumeFailedDelete"), "{described}");
    eventually(60, || {
        (get(&c, &["pv", "manual-keep"], "{.status.phase}") == "Released").then_some(())
    });
    c.ok(&[
        "patch",
        "pv",
        "manual-keep",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/claimRef"}]"#,
    ]);
    eventually(60, || {
        (get(&c, &["pv", "manual-keep"], "{.status.phase}") == "Available").then_some(())
    });
}

#[test]
fn quota_and_limit_ranges_cover_claims() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: storage\nspec:\n  hard:\n    requests.storage: 3Gi\n    persistentvolumeclaims: \"2\"\n---\napiVersion: v1\nkind: LimitRange\nmetadata:\n  name: claims\nspec:\n  limits:\n  - type: PersistentVolumeClaim\n    min: {storage: 100Mi}\n    max: {storage: 2Gi}\n",
    );
    let out = c.with_stdin(&["create", "-f", "-"], &claim("huge", None, "5Gi"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "persistentvolumeclaims \"huge\" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"
        ),
        "{stderr}"
    );
    c.apply_stdin("create", &claim("a", None, "2Gi"));
    let out = c.with_stdin(&["create", "-f", "-"], &claim("b", None, "2Gi"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "persistentvolumeclaims \"b\" is forbidden: exceeded quota: storage, requested: requests.storage=2Gi, used: requests.storage=2Gi, limited: requests.storage=3Gi"
        ),
        "{stderr}"
    );
    c.apply_stdin("create", &claim("c", None, "1Gi"));
    let out = c.with_stdin(&["create", "-f", "-"], &claim("d", None, "200Mi"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exceeded quota: storage, requested: persistentvolumeclaims=1,requests.storage=200Mi, used: persistentvolumeclaims=2,requests.storage=3Gi, limited: persistentvolumeclaims=2,requests.storage=3Gi"),
        "{stderr}"
    );
    let described = c.ok(&["describe", "quota", "storage"]);
    assert!(
        described.contains("persistentvolumeclaims  2     2"),
        "{described}"
    );

    // Per-class quota, charged to the default class a claim without one gets.
    c.ok(&["create", "namespace", "classy"]);
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: per-class\n  namespace: classy\nspec:\n  hard:\n    local-path.storageclass.storage.k8s.io/requests.storage: 1Gi\n",
    );
    eventually(60, || {
        c.ok(&["get", "sc"])
            .contains("local-path (default)")
            .then_some(())
    });
    let out = c.with_stdin(
        &["create", "-n", "classy", "-f", "-"],
        &claim("big", None, "2Gi"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "exceeded quota: per-class, requested: local-path.storageclass.storage.k8s.io/requests.storage=2Gi, used: local-path.storageclass.storage.k8s.io/requests.storage=0, limited: local-path.storageclass.storage.k8s.io/requests.storage=1Gi"
        ),
        "{stderr}"
    );
    let out = c.with_stdin(
        &["create", "-n", "classy", "-f", "-"],
        &claim("other-class", Some("manual"), "2Gi"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
