//! End-to-end: the real kubectl against `keelson server` — create, read, replace, watch and
//! delete every built-in kind, with upstream's output and errors (SEED-SCENARIOS §A.1, §B.9,
//! §G.1 at the object level).

mod common;

use common::{Cluster, eventually, have_kubectl, path_str};
use serde_json::Value;

const EVERY_KIND: &str = include_str!("manifests/every-kind.yaml");

/// (kubectl resource, name, namespaced) of every object in `every-kind.yaml`.
const OBJECTS: &[(&str, &str, bool)] = &[
    ("pods", "web", true),
    ("services", "web", true),
    ("endpoints", "manual", true),
    ("replicationcontrollers", "rc", true),
    ("configmaps", "cm", true),
    ("secrets", "secret", true),
    ("serviceaccounts", "robot", true),
    ("nodes", "node-a", false),
    ("events", "web.1", true),
    ("persistentvolumes", "pv-a", false),
    ("persistentvolumeclaims", "claim", true),
    ("resourcequotas", "quota", true),
    ("limitranges", "limits", true),
    ("deployments.apps", "deploy", true),
    ("replicasets.apps", "rs", true),
    ("statefulsets.apps", "sts", true),
    ("daemonsets.apps", "ds", true),
    ("controllerrevisions.apps", "ds-1", true),
    ("jobs.batch", "job", true),
    ("cronjobs.batch", "cron", true),
    ("endpointslices.discovery.k8s.io", "web-abc", true),
    ("leases.coordination.k8s.io", "lease", true),
    ("storageclasses.storage.k8s.io", "fast", false),
    ("priorityclasses.scheduling.k8s.io", "high", false),
    ("horizontalpodautoscalers.autoscaling", "hpa", true),
    ("events.events.k8s.io", "web.2", true),
];

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn get_json(c: &Cluster, res: &str, name: &str, namespaced: bool) -> Value {
    let mut args = vec!["get", res, name, "-o", "json"];
    if namespaced {
        args.extend(["-n", "kinds"]);
    }
    json(&c.ok(&args))
}

#[test]
fn every_kind_is_created_read_replaced_and_deleted() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "namespace", "kinds"]);
    let file = c.file("every-kind.yaml", EVERY_KIND);
    let out = c.ok(&["create", "-f", path_str(&file)]);
    for (res, name, _) in OBJECTS {
        let singular = res.split('.').next().unwrap().trim_end_matches('s');
        assert!(
            out.lines()
                .any(|l| l.ends_with(&format!("/{name} created"))),
            "no '{singular}/{name} created' line in:\n{out}"
        );
    }
    for (res, name, ns) in OBJECTS {
        let v = get_json(&c, res, name, *ns);
        assert_eq!(v["metadata"]["name"], *name, "{res}");
        assert!(
            v["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36),
            "{res} has no uid: {v}"
        );
        assert!(
            v["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|r| r.parse::<u64>().is_ok()),
            "{res}"
        );
        assert!(
            v["metadata"]["creationTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{res}"
        );
        if *ns {
            assert_eq!(v["metadata"]["namespace"], "kinds", "{res}");
        } else {
            assert!(
                v["metadata"].get("namespace").is_none(),
                "{res} is cluster-scoped"
            );
        }
    }

    // Defaults as upstream applies them.
    let pod = get_json(&c, "pod", "web", true);
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["status"]["phase"], "Pending");
    let svc = get_json(&c, "svc", "web", true);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.43.")),
        "{svc}"
    );
    let deploy = get_json(&c, "deploy", "deploy", true);
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
    assert_eq!(deploy["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(deploy["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(deploy["metadata"]["generation"], 1);
    let secret = get_json(&c, "secret", "secret", true);
    assert_eq!(
        secret["data"]["password"], "aHVudGVyMg==",
        "stringData is stored base64 in data"
    );

    // Replace each object with a new label; a spec change bumps the generation.
    for (res, name, ns) in OBJECTS {
        let mut v = get_json(&c, res, name, *ns);
        v["metadata"]["labels"]["replaced"] = Value::String("yes".into());
        if *res == "deployments.apps" {
            v["spec"]["replicas"] = 3.into();
        }
        let out = c.with_stdin(&["replace", "-f", "-"], &v.to_string());
        assert!(
            out.status.success(),
            "replace {res}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = get_json(&c, res, name, *ns);
        assert_eq!(after["metadata"]["labels"]["replaced"], "yes", "{res}");
        assert_ne!(
            after["metadata"]["resourceVersion"], v["metadata"]["resourceVersion"],
            "{res}"
        );
    }
    assert_eq!(
        get_json(&c, "deploy", "deploy", true)["metadata"]["generation"],
        2
    );

    let out = c.ok(&["delete", "-f", path_str(&file)]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with("deleted")).count(),
        OBJECTS.len(),
        "{out}"
    );
    for (res, name, ns) in OBJECTS {
        let mut args = vec!["get", res, name];
        if *ns {
            args.extend(["-n", "kinds"]);
        }
        let err = c.fails(&args);
        assert!(
            err.contains("(NotFound)") && err.contains(&format!("\"{name}\" not found")),
            "{res}: {err}"
        );
    }
}

#[test]
fn components_and_api_discovery() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let v = json(&c.ok(&["version", "-o", "json"]));
    assert!(
        v["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.33."),
        "{v}"
    );
    assert_eq!(v["serverVersion"]["minor"], "33");
    let info = c.ok(&["cluster-info"]);
    assert!(
        info.contains(&format!("is running at https://127.0.0.1:{}", c.port)),
        "{info}"
    );
    let versions = c.ok(&["api-versions"]);
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "autoscaling/v1",
        "discovery.k8s.io/v1",
        "coordination.k8s.io/v1",
        "storage.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "events.k8s.io/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing from:\n{versions}"
        );
    }
    let resources = c.ok(&["api-resources"]);
    for (short, name) in [
        ("po", "pods"),
        ("svc", "services"),
        ("rc", "replicationcontrollers"),
        ("rs", "replicasets"),
        ("deploy", "deployments"),
        ("ns", "namespaces"),
        ("cm", "configmaps"),
        ("pv", "persistentvolumes"),
        ("pvc", "persistentvolumeclaims"),
        ("quota", "resourcequotas"),
        ("limits", "limitranges"),
    ] {
        assert!(
            resources.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&name)
                    && cols
                        .get(1)
                        .is_some_and(|s| s.split(',').any(|x| x == short))
            }),
            "{name} with short name {short} missing from:\n{resources}"
        );
    }
    // Short names work as resource arguments.
    c.ok(&["get", "po"]);
    c.ok(&["get", "deploy,rs,rc,svc,cm,ns,pv,pvc,quota,limits"]);
    // The system namespaces and the kubernetes Service exist from the start.
    let ns = c.ok(&["get", "namespaces", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    let svc = json(&c.ok(&["get", "svc", "kubernetes", "-o", "json"]));
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    // Requests without a client certificate are refused.
    let kc = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let ca = kc
        .lines()
        .find(|l| l.contains("certificate-authority-data"))
        .unwrap()
        .trim();
    let anon = c.file(
        "anon.kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://127.0.0.1:{}\n    {ca}\nusers:\n- name: a\n  user: {{token: not-a-valid-token}}\ncontexts:\n- name: a\n  context: {{cluster: a, user: a}}\ncurrent-context: a\n",
            c.port
        ),
    );
    let out = std::process::Command::new(common::kubectl_bin())
        .args(["--kubeconfig", path_str(&anon), "get", "pods"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("You must be logged in to the server"),
        "{err}"
    );
}

#[test]
fn output_formats_and_selectors() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "namespace", "other"]);
    for (name, app, ns) in [
        ("a", "web", "default"),
        ("b", "db", "default"),
        ("c", "web", "other"),
    ] {
        c.ok(&["create", "configmap", name, "-n", ns, "--from-literal=k=v"]);
        c.ok(&["label", "configmap", name, "-n", ns, &format!("app={app}")]);
    }
    assert_eq!(
        c.ok(&["get", "cm", "a", "-o", "name"]).trim(),
        "configmap/a"
    );
    assert_eq!(c.ok(&["get", "cm", "a", "-o", "jsonpath={.data.k}"]), "v");
    let yaml = c.ok(&["get", "cm", "a", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("  k: v"),
        "{yaml}"
    );
    let names = |args: &[&str]| {
        let mut v: Vec<String> = c.ok(args).lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&["get", "cm", "-l", "app=web", "-o", "name"]),
        ["configmap/a"]
    );
    assert_eq!(
        names(&["get", "cm", "-l", "app=web", "-A", "-o", "name"]),
        ["configmap/a", "configmap/c"]
    );
    assert_eq!(
        names(&["get", "cm", "-l", "app in (web,db)", "-o", "name"]),
        ["configmap/a", "configmap/b"]
    );
    assert_eq!(
        names(&["get", "cm", "-l", "app!=web,app", "-o", "name"]),
        ["configmap/b"]
    );
    assert_eq!(
        names(&["get", "cm", "-n", "other", "-o", "name", "-l", "app"]),
        ["configmap/c"]
    );
    assert_eq!(
        names(&[
            "get",
            "cm",
            "-A",
            "--field-selector",
            "metadata.name=b",
            "-o",
            "name"
        ]),
        ["configmap/b"]
    );
    assert_eq!(
        names(&[
            "get",
            "cm",
            "-A",
            "--field-selector",
            "metadata.namespace!=default",
            "-l",
            "app",
            "-o",
            "name"
        ]),
        ["configmap/c"]
    );
    let err = c.fails(&["get", "pods", "--field-selector", "spec.bogus=x"]);
    assert!(
        err.contains("field label not supported: spec.bogus"),
        "{err}"
    );
    // Tables: upstream's columns.
    let table = c.ok(&["get", "cm", "-A"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAMESPACE", "NAME", "DATA", "AGE"], "{table}");
    // Paged lists: kubectl reads in chunks and stitches them together.
    for i in 0..7 {
        c.ok(&["create", "configmap", &format!("page-{i}"), "-n", "other"]);
    }
    let chunked = names(&["get", "cm", "-n", "other", "-o", "name", "--chunk-size=2"]);
    assert_eq!(chunked.len(), 8, "{chunked:?}");
    let json_list = json(&c.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/other/configmaps?limit=3",
    ]));
    assert_eq!(json_list["items"].as_array().unwrap().len(), 3);
    assert_eq!(json_list["metadata"]["remainingItemCount"], 5);
    assert!(
        json_list["metadata"]["continue"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

#[test]
fn labels_and_namespaces_from_the_seeds() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // §B.9: pods pod-1..pod-6 labelled type and lo.
    let pods = [
        ("pod-1", "web", "dev"),
        ("pod-2", "db", "dev"),
        ("pod-3", "server", "dev"),
        ("pod-4", "web", "production"),
        ("pod-5", "db", "production"),
        ("pod-6", "server", "production"),
    ];
    let yaml: String = pods
        .iter()
        .map(|(n, t, lo)| format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {n}\n  labels:\n    type: {t}\n    lo: {lo}\nspec:\n  containers:\n  - name: container\n    image: kubetm/init\n---\n"))
        .collect();
    c.apply_stdin("create", &yaml);
    let shown = c.ok(&["get", "pods", "--show-labels"]);
    assert!(shown.lines().next().unwrap().ends_with("LABELS"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("pod-4") && l.contains("lo=production,type=web")),
        "{shown}"
    );
    let cols = c.ok(&["get", "pods", "-L", "type,lo"]);
    let header: Vec<&str> = cols.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "TYPE", "LO"],
        "{cols}"
    );
    assert!(cols.lines().any(|l| l.starts_with("pod-2") && l.split_whitespace().rev().take(2).eq(["dev", "db"])), "{cols}");
    let web = c.ok(&["get", "pods", "-l", "type=web", "-o", "name"]);
    assert_eq!(web.lines().collect::<Vec<_>>(), ["pod/pod-1", "pod/pod-4"]);
    let dev = c.ok(&["get", "pods", "-l", "lo in (dev)", "-o", "name"]);
    assert_eq!(dev.lines().count(), 3, "{dev}");
    c.ok(&["label", "pods", "pod-1", "env=dev"]);
    let err = c.fails(&["label", "pods", "pod-1", "env=prod"]);
    assert!(
        err.contains("'env' already has a value (dev), and --overwrite is false"),
        "{err}"
    );
    c.ok(&["label", "pods", "pod-1", "env=prod", "--overwrite"]);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "pod-1",
            "-o",
            "jsonpath={.metadata.labels.env}"
        ]),
        "prod"
    );
    c.ok(&["label", "pods", "pod-1", "env-"]);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "pod-1",
            "-o",
            "jsonpath={.metadata.labels.env}"
        ]),
        ""
    );
    c.ok(&[
        "annotate",
        "pods",
        "pod-1",
        "devops-team/developer=john smith",
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "pod-1",
            "-o",
            "jsonpath={.metadata.annotations.devops-team/developer}"
        ]),
        "john smith"
    );
    let rv = c.ok(&[
        "get",
        "pod",
        "pod-2",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    c.ok(&["label", "pods", "pod-2", "touched=1"]);
    let err = c.fails(&[
        "label",
        "pods",
        "pod-2",
        "again=1",
        "--resource-version",
        &rv,
    ]);
    assert!(
        err.contains("(Conflict)") && err.contains("the object has been modified"),
        "{err}"
    );

    // §G.1: namespaces from the command line and from YAML; -n; the same name in two
    // namespaces but not twice in one.
    assert!(
        c.ok(&["create", "namespace", "development"])
            .contains("namespace/development created")
    );
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: quality-assurance\n",
    );
    let ns = c.ok(&["get", "namespaces"]);
    let header: Vec<&str> = ns.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "AGE"]);
    assert!(
        ns.lines()
            .any(|l| l.starts_with("development") && l.contains("Active")),
        "{ns}"
    );
    assert!(
        ns.lines().any(|l| l.starts_with("quality-assurance")),
        "{ns}"
    );
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-1\n  namespace: development\nspec:\n  containers:\n  - name: c\n    image: kubetm/init\n",
    );
    c.ok(&["get", "pod", "pod-1", "-n", "development"]);
    let err = c.fails(&["run", "pod-1", "--image=kubetm/init", "-n", "development"]);
    assert!(
        err.contains("(AlreadyExists)") && err.contains("pods \"pod-1\" already exists"),
        "{err}"
    );
    let err = c.fails(&["run", "x", "--image=kubetm/init", "-n", "missing"]);
    assert!(
        err.contains("(NotFound)") && err.contains("namespaces \"missing\" not found"),
        "{err}"
    );
}

#[test]
fn watch_sees_creates_updates_and_deletes_in_order() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let mut watch = c
        .kubectl_cmd(&[
            "get",
            "configmaps",
            "-w",
            "--output-watch-events",
            "-o",
            "custom-columns=EVENT:.type,NAME:.object.metadata.name,V:.object.data.v",
            "--no-headers",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The watch is established once it has listed the (empty) namespace.
    std::thread::sleep(std::time::Duration::from_millis(700));
    c.ok(&["create", "configmap", "w1", "--from-literal=v=1"]);
    c.ok(&["patch", "configmap", "w1", "-p", r#"{"data":{"v":"2"}}"#]);
    c.ok(&["create", "configmap", "w2", "--from-literal=v=9"]);
    c.ok(&["delete", "configmap", "w1"]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let lines: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let want: Vec<Vec<String>> = [
        ["ADDED", "w1", "1"],
        ["MODIFIED", "w1", "2"],
        ["ADDED", "w2", "9"],
        ["DELETED", "w1", "2"],
    ]
    .iter()
    .map(|r| r.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(lines, want);
}

#[test]
fn delete_waits_for_finalizers() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\ndata: {a: b}\n",
    );
    let deleting = c
        .kubectl_cmd(&["delete", "configmap", "held", "--timeout=30s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The object stays, marked for deletion, while the finalizer is there.
    let ts = eventually(10, || {
        let t = c.ok(&[
            "get",
            "cm",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
        (!t.is_empty()).then_some(t)
    });
    assert!(ts.ends_with('Z'));
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.ok(&["get", "cm", "held"]);
    let err = c.fails(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#,
    ]);
    assert!(
        err.contains("no new finalizers can be added if the object is being deleted"),
        "{err}"
    );
    c.ok(&[
        "patch",
        "cm",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = deleting.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("configmap \"held\" deleted"));
    let err = c.fails(&["get", "cm", "held"]);
    assert!(err.contains("configmaps \"held\" not found"), "{err}");
}

#[test]
fn replace_with_a_stale_resource_version_conflicts() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    let old = c.ok(&["get", "cm", "cfg", "-o", "json"]);
    c.ok(&["patch", "cm", "cfg", "-p", r#"{"data":{"a":"2"}}"#]);
    let out = c.with_stdin(&["replace", "-f", "-"], &old);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "cfg": the object has been modified; please apply your changes to the latest version and try again"#),
        "{err}"
    );
    assert_eq!(c.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]), "2");
}

#[test]
fn objects_survive_a_restart() {
    if !have_kubectl() {
        return;
    }
    let mut c = Cluster::start();
    c.ok(&["create", "namespace", "keep"]);
    c.ok(&[
        "create",
        "configmap",
        "kept",
        "-n",
        "keep",
        "--from-literal=x=y",
    ]);
    c.apply_stdin("create", "apiVersion: v1\nkind: Service\nmetadata:\n  name: np\nspec:\n  type: NodePort\n  selector: {a: b}\n  ports:\n  - port: 80\n");
    let before = json(&c.ok(&["get", "svc", "np", "-o", "json"]));
    c.kill();
    c.spawn();
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "kept",
            "-n",
            "keep",
            "-o",
            "jsonpath={.data.x}"
        ]),
        "y"
    );
    let after = json(&c.ok(&["get", "svc", "np", "-o", "json"]));
    // A watch from before the restart is too old for the new watch cache: 410 Gone.
    let gone = c.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/keep/configmaps?watch=1&resourceVersion=2&timeoutSeconds=2",
    ]);
    let ev = json(gone.lines().next().unwrap_or("{}"));
    assert_eq!(ev["type"], "ERROR", "{gone}");
    assert_eq!(ev["object"]["code"], 410, "{gone}");
    assert_eq!(ev["object"]["reason"], "Expired", "{gone}");
    assert_eq!(before["spec"]["clusterIP"], after["spec"]["clusterIP"]);
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    // After the restart the allocator still knows the port is taken.
    let port = before["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let clash = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: np2\nspec:\n  type: NodePort\n  selector: {{a: b}}\n  ports:\n  - port: 80\n    nodePort: {port}\n"
    );
    let out = c.with_stdin(&["create", "-f", "-"], &clash);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("provided port is already allocated"), "{err}");
}

#[test]
fn bad_input_gets_clear_errors() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // Seed 001's mysql probe: exec.command as a string where a list belongs.
    let probe = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: mysql\nspec:\n  containers:\n  - name: mysql\n    image: mysql\n    livenessProbe:\n      exec:\n        command: mysqladmin ping\n";
    let out = c.with_stdin(&["create", "-f", "-"], probe);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("(BadRequest)")
            && err.contains("spec.containers[0].livenessProbe.exec.command"),
        "{err}"
    );
    // Names that are not DNS-1123.
    let out = c.with_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of"#),
        "{err}"
    );
    // Unknown fields under strict validation (kubectl's default).
    let out = c.with_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\nspec:\n  containers:\n  - name: c\n    imagee: busybox\n    image: busybox\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"unknown field "spec.containers[0].imagee""#),
        "{err}"
    );
    // A body whose namespace differs from the request's.
    let out = c.with_stdin(
        &["create", "-n", "kube-system", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: default\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the namespace from the provided object \"default\" does not match the namespace \"kube-system\""), "{err}");
    // Malformed JSON straight to the API.
    let raw = c.file("bad.json", "{\"apiVersion\": \"v1\", \"kind\": ");
    let out = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        path_str(&raw),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("(BadRequest)"),
        "{err}"
    );
    // Duplicate container names and a selector that does not match the template.
    let dup = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dup\nspec:\n  containers:\n  - name: c\n    image: a\n  - name: c\n    image: b\n";
    let err =
        String::from_utf8_lossy(&c.with_stdin(&["create", "-f", "-"], dup).stderr).into_owned();
    assert!(
        err.contains(r#"spec.containers[1].name: Duplicate value: "c""#),
        "{err}"
    );
    let mismatch = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: b}\n    spec:\n      containers:\n      - name: c\n        image: x\n";
    let err = String::from_utf8_lossy(&c.with_stdin(&["create", "-f", "-"], mismatch).stderr)
        .into_owned();
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    // Bodies over 3 MiB.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: {}\n",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let err =
        String::from_utf8_lossy(&c.with_stdin(&["create", "-f", "-"], &big).stderr).into_owned();
    assert!(
        err.contains("Request entity too large: limit is 3145728"),
        "{}",
        &err[..err.len().min(400)]
    );
    // Kinds and versions the server does not serve.
    let err = String::from_utf8_lossy(
        &c.with_stdin(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: Foo\nmetadata:\n  name: x\n",
        )
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains(r#"no matches for kind "Foo" in version "v1""#),
        "{err}"
    );
    let err = String::from_utf8_lossy(
        &c.with_stdin(
            &["create", "-f", "-"],
            "apiVersion: apps/v9\nkind: Deployment\nmetadata:\n  name: x\n",
        )
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains(r#"no matches for kind "Deployment" in version "apps/v9""#),
        "{err}"
    );
    // Nothing above was stored.
    assert_eq!(
        c.ok(&["get", "pods,cm,deploy", "-o", "name"])
            .lines()
            .filter(|l| !l.contains("kube-root-ca"))
            .count(),
        0
    );
}

#[test]
fn dry_run_stores_nothing() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let out = c.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=b",
        "--dry-run=server",
        "-o",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(v["metadata"]["name"], "dry");
    assert!(v["metadata"]["uid"].as_str().is_some());
    let err = c.fails(&["get", "cm", "dry"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn kill_9_during_concurrent_writes_loses_no_acknowledged_write() {
    if !have_kubectl() {
        return;
    }
    let mut c = Cluster::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (stop, acked) = (stop.clone(), acked.clone());
            let kubeconfig = c.kubeconfig.clone();
            let cache = c.dir.path().join(format!("kcache-{w}"));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let name = format!("w{w}-{i}");
                    let yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{n: \"{i}\"}}\n");
                    let mut child = std::process::Command::new(common::kubectl_bin())
                        .arg("--kubeconfig")
                        .arg(&kubeconfig)
                        .arg("--cache-dir")
                        .arg(&cache)
                        .args(["create", "--validate=false", "-f", "-"])
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap();
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
                    let out = child.wait_with_output().unwrap();
                    if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("created") {
                        acked.lock().unwrap().push(name);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    c.kill();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 10,
        "too few writes were acknowledged to test anything: {}",
        acked.len()
    );
    c.spawn();
    let stored = c.ok(&["get", "configmaps", "-o", "name"]);
    let missing: Vec<&String> = acked
        .iter()
        .filter(|n| !stored.lines().any(|l| l == format!("configmap/{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {missing:?}",
        missing.len(),
        acked.len()
    );
}
