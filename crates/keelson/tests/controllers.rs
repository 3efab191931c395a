//! End-to-end: the controller manager inside `keelson server`, driven by the real kubectl —
//! ReplicationControllers and ReplicaSets heal and scale, adopt and release pods, Deployments
//! roll out, cascading deletion in all three modes, namespace deletion (SEED-SCENARIOS §C).

mod common;

use common::{Cluster, eventually, have_kubectl};

/// Names of the pods `selector` selects in `ns` that are not being deleted.
fn live_pods(c: &Cluster, ns: &str, selector: &str) -> Vec<String> {
    let out = c.ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| l.split_whitespace().count() == 1)
        .map(|l| l.trim().to_string())
        .collect();
    names.sort();
    names
}

/// Waits until exactly `n` live pods match `selector`; returns their names.
#[track_caller]
fn wait_pods(c: &Cluster, ns: &str, selector: &str, n: usize) -> Vec<String> {
    let mut last = Vec::new();
    let found = (0..150).find_map(|_| {
        last = live_pods(c, ns, selector);
        if last.len() == n {
            return Some(last.clone());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        None
    });
    found.unwrap_or_else(|| panic!("wanted {n} pods for {selector}, have {last:?}\n{}", c.log()))
}

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let p = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", &p]);
    c.ok(&all)
}

const RC: &str = "apiVersion: v1
kind: ReplicationController
metadata:
  name: mynapp-rc
spec:
  replicas: 3
  selector:
    app: mynapp
  template:
    metadata:
      labels:
        app: mynapp
    spec:
      containers:
      - name: web
        image: nginx
";

#[test]
fn replication_controller_heals_and_scales() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.apply_stdin("create", RC);
    let pods = wait_pods(&c, "default", "app=mynapp", 3);
    for p in &pods {
        assert!(
            p.starts_with("mynapp-rc-") && p.len() == "mynapp-rc-".len() + 5,
            "{p}"
        );
        let owner = jsonpath(
            &c,
            &["get", "pod", p],
            "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.ownerReferences[0].controller} {.metadata.ownerReferences[0].blockOwnerDeletion}",
        );
        assert_eq!(owner, "ReplicationController/mynapp-rc true true");
    }
    // §C.1: delete a pod, a new one with a new random suffix appears.
    c.ok(&["delete", "pod", &pods[0], "--wait=false"]);
    let after = wait_pods(&c, "default", "app=mynapp", 3);
    assert!(!after.contains(&pods[0]), "{after:?}");
    assert_eq!(
        after.iter().filter(|p| pods.contains(p)).count(),
        2,
        "{after:?}"
    );
    // §C.2: scale up and back down.
    assert!(
        c.ok(&["scale", "rc", "mynapp-rc", "--replicas=5"])
            .contains("scaled")
    );
    wait_pods(&c, "default", "app=mynapp", 5);
    c.ok(&["scale", "rc", "mynapp-rc", "--replicas=2"]);
    wait_pods(&c, "default", "app=mynapp", 2);
    let status = eventually(10, || {
        let s = jsonpath(
            &c,
            &["get", "rc", "mynapp-rc"],
            "{.status.replicas} {.status.fullyLabeledReplicas} {.status.observedGeneration}",
        );
        (s == "2 2 3").then_some(s)
    });
    assert_eq!(status, "2 2 3");
    let events = c.ok(&["describe", "rc", "mynapp-rc"]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Created pod: mynapp-rc-"),
        "{events}"
    );
    assert!(
        events.contains("SuccessfulDelete") && events.contains("Deleted pod: mynapp-rc-"),
        "{events}"
    );
    // From the tenth distinct "Created pod" message on, upstream's recorder folds them into
    // one Event whose count grows.
    c.ok(&["scale", "rc", "mynapp-rc", "--replicas=12"]);
    wait_pods(&c, "default", "app=mynapp", 12);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let combined = loop {
        let last = c.ok(&["describe", "rc", "mynapp-rc"]);
        let line = last
            .lines()
            .find(|l| l.contains("(combined from similar events): Created pod: mynapp-rc-"))
            .filter(|l| l.contains("(x"));
        if let Some(line) = line {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no combined event:\n{last}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(combined.contains("SuccessfulCreate"), "{combined}");
}

const RS: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
spec:
  replicas: REPLICAS
  selector:
    matchLabels:
      tier: frontend
    matchExpressions:
    - {key: env, operator: In, values: [prod, qa]}
    - {key: legacy, operator: DoesNotExist}
  template:
    metadata:
      labels:
        tier: frontend
        env: prod
    spec:
      containers:
      - name: php
        image: php-redis
";

fn orphan(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers:\n  - name: c\n    image: nginx\n"
    )
}

#[test]
fn replica_set_adopts_orphans_removes_extras_and_scales_on_apply() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // Two matching orphans, one that matches matchLabels but not the expressions.
    c.apply_stdin("create", &orphan("o1", "tier: frontend, env: qa"));
    c.apply_stdin("create", &orphan("o2", "tier: frontend, env: prod"));
    c.apply_stdin(
        "create",
        &orphan("other", "tier: frontend, env: prod, legacy: 'y'"),
    );
    let file = c.file("rs.yaml", &RS.replace("REPLICAS", "3"));
    c.ok(&["apply", "-f", common::path_str(&file)]);
    let pods = wait_pods(&c, "default", "tier=frontend,!legacy", 3);
    assert!(
        pods.contains(&"o1".to_string()) && pods.contains(&"o2".to_string()),
        "{pods:?}"
    );
    let owner = jsonpath(
        &c,
        &["get", "pod", "o1"],
        "{.metadata.ownerReferences[0].name}",
    );
    assert_eq!(owner, "frontend");
    let other = jsonpath(&c, &["get", "pod", "other"], "{.metadata.ownerReferences}");
    assert_eq!(other, "", "a pod the selector does not match is left alone");
    let uid = jsonpath(&c, &["get", "rs", "frontend"], "{.metadata.uid}");

    // §C.3: replicas 4 in the file and apply again: scaled, not re-created.
    let file = c.file("rs.yaml", &RS.replace("REPLICAS", "4"));
    c.ok(&["apply", "-f", common::path_str(&file)]);
    let four = wait_pods(&c, "default", "tier=frontend,!legacy", 4);
    assert!(pods.iter().all(|p| four.contains(p)), "{pods:?} {four:?}");
    assert_eq!(
        jsonpath(&c, &["get", "rs", "frontend"], "{.metadata.uid}"),
        uid
    );

    // An extra matching pod is adopted and the surplus removed (the newest first; creation
    // times have one-second resolution, so which pod goes is not asserted).
    c.apply_stdin("create", &orphan("o3", "tier: frontend, env: qa"));
    let four = wait_pods(&c, "default", "tier=frontend,!legacy", 4);

    // A pod relabelled out of the selector is released, and replaced.
    let victim = &four[0];
    c.ok(&["label", "pod", victim, "env=dev", "--overwrite"]);
    wait_pods(&c, "default", "tier=frontend,env in (prod,qa),!legacy", 4);
    let released = eventually(10, || {
        let r = jsonpath(&c, &["get", "pod", victim], "{.metadata.ownerReferences}");
        r.is_empty().then_some(r)
    });
    assert_eq!(released, "");
    // fullyLabeledReplicas counts the pods that carry every template label (env=prod).
    let prod = live_pods(&c, "default", "tier=frontend,env=prod,!legacy").len();
    assert!(prod < 4, "adopted env=qa pods are not fully labelled");
    let want = format!("4/{prod}");
    let status = eventually(10, || {
        let s = jsonpath(
            &c,
            &["get", "rs", "frontend"],
            "{.status.replicas}/{.status.fullyLabeledReplicas}",
        );
        (s == want).then_some(s)
    });
    assert_eq!(status, want);
}

fn rs_named(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: nginx\n"
    )
}

#[test]
fn delete_cascades_in_background_foreground_and_orphan_modes() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    for name in ["bg", "fg", "orph"] {
        c.apply_stdin("create", &rs_named(name, 2));
    }
    for name in ["bg", "fg", "orph"] {
        wait_pods(&c, "default", &format!("app={name}"), 2);
    }
    // §C.4: background (the default) deletes the pods after the owner.
    assert!(
        c.ok(&["delete", "rs", "bg"])
            .contains("replicaset.apps \"bg\" deleted")
    );
    wait_pods(&c, "default", "app=bg", 0);

    // Foreground: the owner stays until its pods are gone; kubectl waits for it.
    let fg_pods = live_pods(&c, "default", "app=fg");
    c.ok(&[
        "delete",
        "rs",
        "fg",
        "--cascade=foreground",
        "--timeout=30s",
    ]);
    for p in &fg_pods {
        let err = c.fails(&["get", "pod", p]);
        assert!(err.contains("not found"), "{err}");
    }
    assert!(c.fails(&["get", "rs", "fg"]).contains("not found"));

    // Orphan: the pods stay, without the owner reference.
    let orphans = live_pods(&c, "default", "app=orph");
    c.ok(&["delete", "rs", "orph", "--cascade=orphan", "--timeout=30s"]);
    assert!(c.fails(&["get", "rs", "orph"]).contains("not found"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(live_pods(&c, "default", "app=orph"), orphans);
    for p in &orphans {
        assert_eq!(
            jsonpath(&c, &["get", "pod", p], "{.metadata.ownerReferences}"),
            ""
        );
    }

    // A dependent whose only owner never existed is collected; one with a live owner too
    // just loses the dangling reference.
    c.ok(&["create", "configmap", "keeper"]);
    let keeper = jsonpath(&c, &["get", "cm", "keeper"], "{.metadata.uid}");
    let dangling = "{apiVersion: apps/v1, kind: ReplicaSet, name: ghost, uid: 00000000-0000-0000-0000-000000000001}";
    let live = format!("{{apiVersion: v1, kind: ConfigMap, name: keeper, uid: {keeper}}}");
    c.apply_stdin(
        "create",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lonely\n  ownerReferences: [{dangling}]\n"),
    );
    c.apply_stdin(
        "create",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  ownerReferences: [{dangling}, {live}]\n"),
    );
    eventually(10, || {
        c.kubectl(&["get", "cm", "lonely"])
            .status
            .code()
            .filter(|c| *c != 0)
    });
    let owners = eventually(10, || {
        let o = jsonpath(
            &c,
            &["get", "cm", "shared"],
            "{.metadata.ownerReferences[*].name}",
        );
        (o == "keeper").then_some(o)
    });
    assert_eq!(owners, "keeper");

    // An RC's pods go with it too.
    c.apply_stdin("create", RC);
    wait_pods(&c, "default", "app=mynapp", 3);
    c.ok(&["delete", "rc", "mynapp-rc"]);
    wait_pods(&c, "default", "app=mynapp", 0);
}

#[test]
fn namespaces_get_a_default_service_account_and_deleting_one_removes_everything() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "namespace", "scratch"]);
    let sa = eventually(10, || {
        let out = c.kubectl(&[
            "get",
            "serviceaccount",
            "default",
            "-n",
            "scratch",
            "-o",
            "name",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    assert_eq!(sa, "serviceaccount/default");
    // Deleted by hand, it comes back.
    c.ok(&["delete", "serviceaccount", "default", "-n", "scratch"]);
    eventually(10, || {
        c.kubectl(&["get", "sa", "default", "-n", "scratch"])
            .status
            .success()
            .then_some(())
    });

    c.ok(&[
        "create",
        "configmap",
        "cm",
        "-n",
        "scratch",
        "--from-literal=a=b",
    ]);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "scratch",
        "--image=nginx",
    ]);
    let rc = RC.replace("name: mynapp-rc", "name: mynapp-rc\n  namespace: scratch");
    c.apply_stdin("create", &rc);
    wait_pods(&c, "scratch", "app=mynapp", 3);
    // §G.2: kubectl waits until the namespace and everything in it are gone.
    let out = c.ok(&["delete", "namespace", "scratch", "--timeout=60s"]);
    assert!(out.contains("namespace \"scratch\" deleted"), "{out}");
    let err = c.fails(&["get", "namespace", "scratch"]);
    assert!(err.contains("namespaces \"scratch\" not found"), "{err}");
    for res in [
        "pods",
        "configmaps",
        "replicationcontrollers",
        "deployments",
        "serviceaccounts",
    ] {
        let left = c.ok(&["get", res, "-n", "scratch", "-o", "name"]);
        assert_eq!(left, "", "{res} left in a deleted namespace");
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx-deployment
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.10
";

/// Stands in for a node: marks every pending pod of `selector` Running and Ready.
fn make_ready(c: &Cluster, selector: &str) {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
    ]);
    for line in out.lines() {
        let mut f = line.split_whitespace();
        if let (Some(name), Some("Pending")) = (f.next(), f.next()) {
            c.kubectl(&[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
            ]);
        }
    }
}

/// Plays the nodes until `kubectl rollout status` reports success.
#[track_caller]
fn roll_out(c: &Cluster, deploy: &str) -> String {
    roll_out_with(c, deploy, "app=nginx", |_| {})
}

/// [`roll_out`] for the pods of `selector`, calling `each` between steps.
#[track_caller]
fn roll_out_with(
    c: &Cluster,
    deploy: &str,
    selector: &str,
    mut each: impl FnMut(&Cluster),
) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        each(c);
        make_ready(c, selector);
        let out = c.kubectl(&["rollout", "status", deploy, "--watch=false"]);
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains("successfully rolled out") {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("rollout of {deploy} did not finish: {last}\n{}", c.log());
}

/// (name, spec.replicas, image) of every ReplicaSet, oldest revision first.
fn replica_sets(c: &Cluster) -> Vec<(String, String, String)> {
    let out = c.ok(&[
        "get",
        "rs",
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.metadata.name} {.spec.replicas} {.spec.template.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    let mut rows: Vec<(i64, String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.to_string(),
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
            ))
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, n, r, i)| (n, r, i)).collect()
}

#[test]
fn deployment_rolls_out_keeps_history_undoes_and_pauses() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.apply_stdin("create", DEPLOYMENT);
    let deploy = "deployment/my-nginx-deployment";
    // §C.5: a ReplicaSet named <deployment>-<hash> with the hash label, and its pods.
    wait_pods(&c, "default", "app=nginx", 3);
    let rs = replica_sets(&c);
    assert_eq!(rs.len(), 1, "{rs:?}");
    let (rs1, replicas, image) = &rs[0];
    assert_eq!((replicas.as_str(), image.as_str()), ("3", "nginx:1.10"));
    let hash = jsonpath(
        &c,
        &["get", "rs", rs1],
        "{.metadata.labels.pod-template-hash}",
    );
    assert_eq!(rs1, &format!("my-nginx-deployment-{hash}"));
    let sel = jsonpath(
        &c,
        &["get", "rs", rs1],
        "{.spec.selector.matchLabels.pod-template-hash}",
    );
    assert_eq!(sel, hash);
    let out = roll_out(&c, deploy);
    assert!(
        out.contains("deployment \"my-nginx-deployment\" successfully rolled out"),
        "{out}"
    );
    let st = jsonpath(
        &c,
        &["get", deploy],
        "{.status.replicas} {.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas}",
    );
    assert_eq!(st, "3 3 3 3");
    let conds = jsonpath(
        &c,
        &["get", deploy],
        "{range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
    );
    assert!(
        conds.contains("Available=True/MinimumReplicasAvailable"),
        "{conds}"
    );
    assert!(
        conds.contains("Progressing=True/NewReplicaSetAvailable"),
        "{conds}"
    );
    let get = c.ok(&["get", "deployments"]);
    assert!(
        get.contains("my-nginx-deployment   3/3     3            3"),
        "{get}"
    );

    // set image: a second ReplicaSet takes over; the first stays, scaled to 0.
    c.ok(&["set", "image", deploy, "nginx=nginx:1.11"]);
    roll_out(&c, deploy);
    let rs = replica_sets(&c);
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!((rs[0].0.as_str(), rs[0].1.as_str()), (rs1.as_str(), "0"));
    assert_eq!((rs[1].1.as_str(), rs[1].2.as_str()), ("3", "nginx:1.11"));
    wait_pods(
        &c,
        "default",
        &format!("app=nginx,pod-template-hash!={hash}"),
        3,
    );
    let history = c.ok(&["rollout", "history", deploy]);
    assert!(
        history.contains("REVISION") && history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let events = c.ok(&["describe", deploy]);
    assert!(
        events.contains("ScalingReplicaSet")
            && events.contains(&format!("Scaled down replica set {rs1} from")),
        "{events}"
    );

    // undo to revision 1: the first ReplicaSet is scaled back up and becomes revision 3.
    c.ok(&["rollout", "undo", deploy, "--to-revision=1"]);
    roll_out(&c, deploy);
    let rs = replica_sets(&c);
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!(
        (rs[1].0.as_str(), rs[1].1.as_str(), rs[1].2.as_str()),
        (rs1.as_str(), "3", "nginx:1.10")
    );
    assert_eq!(
        jsonpath(
            &c,
            &["get", deploy],
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "3"
    );

    // Paused: a template change makes no ReplicaSet until resumed.
    c.ok(&["rollout", "pause", deploy]);
    c.ok(&["set", "image", deploy, "nginx=nginx:1.12"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(replica_sets(&c).len(), 2);
    c.ok(&["rollout", "resume", deploy]);
    roll_out(&c, deploy);
    let rs = replica_sets(&c);
    assert_eq!(rs.len(), 3, "{rs:?}");
    assert_eq!(rs[2].2, "nginx:1.12");
}

fn strategy_deployment(name: &str, strategy: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 3\n  strategy: {strategy}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: nginx:1.10\n"
    )
}

#[test]
fn rolling_update_keeps_availability_and_recreate_never_overlaps() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // §C.6 RollingUpdate with maxUnavailable 0: availability never drops below 3 (from a watch).
    c.apply_stdin(
        "create",
        &strategy_deployment(
            "surge",
            "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}",
        ),
    );
    roll_out_with(&c, "deployment/surge", "app=surge", |_| {});
    let watch = c
        .kubectl_cmd(&[
            "get",
            "deployment",
            "surge",
            "--watch",
            "-o",
            "jsonpath={.status.availableReplicas} {.status.replicas}{\"\\n\"}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.ok(&["set", "image", "deployment/surge", "c=nginx:1.11"]);
    let mut max_pods = 0;
    roll_out_with(&c, "deployment/surge", "app=surge", |c| {
        max_pods = max_pods.max(live_pods(c, "default", "app=surge").len());
    });
    assert!(
        max_pods <= 4,
        "maxSurge 1 allows at most 4 pods, saw {max_pods}"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut watch = watch;
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    let available: Vec<i64> = seen
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(available.len() >= 2, "the watch saw the rollout: {seen}");
    assert!(
        available.iter().all(|a| *a >= 3),
        "availability dropped: {seen}"
    );

    // Recreate: every old pod is gone before a new one exists.
    c.apply_stdin(
        "create",
        &strategy_deployment("recreate", "{type: Recreate}"),
    );
    roll_out_with(&c, "deployment/recreate", "app=recreate", |_| {});
    let old_hash = jsonpath(
        &c,
        &["get", "pods", "-l", "app=recreate"],
        "{.items[0].metadata.labels.pod-template-hash}",
    );
    c.ok(&["set", "image", "deployment/recreate", "c=nginx:1.11"]);
    roll_out_with(&c, "deployment/recreate", "app=recreate", |c| {
        let hashes = jsonpath(
            c,
            &["get", "pods", "-l", "app=recreate"],
            "{range .items[*]}{.metadata.labels.pod-template-hash} {end}",
        );
        let old = hashes.split_whitespace().filter(|h| *h == old_hash).count();
        assert!(
            old == 0 || old == hashes.split_whitespace().count(),
            "old and new pods at once: {hashes}"
        );
    });
    let hashes = jsonpath(
        &c,
        &["get", "pods", "-l", "app=recreate"],
        "{range .items[*]}{.metadata.labels.pod-template-hash} {end}",
    );
    assert_eq!(hashes.split_whitespace().count(), 3, "{hashes}");
    assert!(!hashes.contains(&old_hash), "{hashes}");

    // Foreground deletion of a Deployment takes its ReplicaSets and their pods first.
    c.ok(&[
        "delete",
        "deployment",
        "recreate",
        "--cascade=foreground",
        "--timeout=30s",
    ]);
    assert_eq!(
        live_pods(&c, "default", "app=recreate"),
        Vec::<String>::new()
    );
    assert_eq!(c.ok(&["get", "rs", "-l", "app=recreate", "-o", "name"]), "");
}

#[test]
fn revision_history_limit_deletes_the_oldest_replica_sets() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let d = DEPLOYMENT.replace(
        "  replicas: 3\n",
        "  replicas: 1\n  revisionHistoryLimit: 1\n",
    );
    c.apply_stdin("create", &d);
    let deploy = "deployment/my-nginx-deployment";
    roll_out(&c, deploy);
    for tag in ["1.11", "1.12", "1.13"] {
        c.ok(&["set", "image", deploy, &format!("nginx=nginx:{tag}")]);
        roll_out(&c, deploy);
    }
    // The current ReplicaSet and one old revision are kept.
    let rs = eventually(10, || {
        let rs = replica_sets(&c);
        (rs.len() == 2).then_some(rs)
    });
    assert_eq!(rs[0].2, "nginx:1.12", "{rs:?}");
    assert_eq!((rs[1].1.as_str(), rs[1].2.as_str()), ("1", "nginx:1.13"));
    let history = c.ok(&["rollout", "history", deploy]);
    assert!(
        history.contains("3 ") && history.contains("4 ") && !history.contains("\n1 "),
        "{history}"
    );
}

#[test]
fn scaling_mid_rollout_shares_the_change_in_proportion() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let d = DEPLOYMENT.replace(
        "  replicas: 3\n",
        "  replicas: 10\n  strategy:\n    rollingUpdate: {maxSurge: 3, maxUnavailable: 2}\n",
    );
    c.apply_stdin("create", &d);
    let deploy = "deployment/my-nginx-deployment";
    roll_out(&c, deploy);
    // The new pods never become ready: the rollout stops with 8 old and 5 new (13 = 10 + 3).
    c.ok(&["set", "image", deploy, "nginx=nginx:1.11"]);
    let sizes =
        |c: &Cluster| -> Vec<String> { replica_sets(c).into_iter().map(|(_, r, _)| r).collect() };
    eventually(20, || (sizes(&c) == ["8", "5"]).then_some(()));
    // Resized mid-rollout to 15 (18 allowed): the 5 more are shared 8:5, not all given to
    // the new ReplicaSet.
    c.ok(&["scale", deploy, "--replicas=15"]);
    eventually(20, || (sizes(&c) == ["11", "7"]).then_some(()));
    // And back down to 5 (8 allowed): both shrink in proportion, 11 → 5 and 7 → 3, as the
    // events tell (the rollout moves on from there).
    c.ok(&["scale", deploy, "--replicas=5"]);
    eventually(20, || {
        let events = c.ok(&["get", "events", "-o", "jsonpath={.items[*].message}"]);
        (events.contains("from 11 to 5") && events.contains("from 7 to 3")).then_some(())
    });
}
