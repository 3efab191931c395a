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
        err.contains("(RequestEntityTooLarge)")
            && err.contains("Request entity too large: limit is 3145728")
            && !err.contains("too large: Request entity"),
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

#[test]
fn subresources_generate_name_and_terminating_namespaces() {
    if !have_kubectl() {
        return;
    }
    // The apiserver alone: controllers would rewrite the Deployment status this test writes.
    let c = Cluster::start_with(&["--disable-controllers", "--disable-scheduler"]);
    // explain reads the OpenAPI v3 documents, with descriptions.
    let explain = c.ok(&["explain", "pod.spec.containers"]);
    assert!(
        explain.contains("FIELD: containers <[]Container>") && explain.contains("DESCRIPTION:"),
        "{explain}"
    );
    assert!(
        explain.contains("image\t<string>")
            || explain.contains("image <string>")
            || explain.contains("  image\t"),
        "{explain}"
    );
    // generateName gets a random 5-character suffix.
    let out = c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n",
    );
    let name = out
        .trim()
        .trim_start_matches("configmap/")
        .trim_end_matches(" created")
        .to_string();
    assert!(name.starts_with("gen-") && name.len() == 9, "{out}");
    // The scale subresource drives spec.replicas; status and spec are written apart.
    c.apply_stdin(
        "create",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      containers:\n      - name: c\n        image: nginx\n",
    );
    assert!(
        c.ok(&["scale", "deployment", "d", "--replicas=3"])
            .contains("deployment.apps/d scaled")
    );
    assert_eq!(
        c.ok(&["get", "deploy", "d", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let scale = json(&c.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/d/scale",
    ]));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=d");
    c.ok(&[
        "patch",
        "deploy",
        "d",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":3,"readyReplicas":2},"spec":{"replicas":9}}"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "d",
            "-o",
            "jsonpath={.status.readyReplicas} {.spec.replicas}"
        ]),
        "2 3"
    );
    c.ok(&[
        "patch",
        "deploy",
        "d",
        "--type=merge",
        "-p",
        r#"{"status":{"readyReplicas":0},"spec":{"paused":true}}"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "d",
            "-o",
            "jsonpath={.status.readyReplicas} {.spec.paused} {.metadata.generation}"
        ]),
        "2 true 3"
    );
    let err = c.fails(&["scale", "deployment", "d", "--replicas=-1"]);
    assert!(err.contains("replicas"), "{err}");
    // A namespace being deleted refuses new content with upstream's message.
    c.ok(&["create", "namespace", "doomed"]);
    // An object whose finalizer nobody removes keeps the namespace terminating.
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: doomed\n  finalizers: [example.com/hold]\n",
    );
    c.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    assert_eq!(
        c.ok(&["get", "ns", "doomed", "-o", "jsonpath={.status.phase}"]),
        "Terminating"
    );
    let err = c.fails(&["create", "configmap", "late", "-n", "doomed"]);
    assert!(
        err.contains(r#"configmaps "late" is forbidden: unable to create new content in namespace doomed because it is being terminated"#),
        "{err}"
    );
}

#[test]
fn events_and_autoscalers_are_one_resource_in_every_version() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // An events.k8s.io/v1 Event (what kube-rs recorders write) is a core/v1 Event to kubectl.
    c.apply_stdin(
        "create",
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: e1\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: keelson.io/test\nreportingInstance: t-1\naction: Scheduling\nreason: FailedScheduling\nregarding: {kind: Pod, name: web, namespace: default}\nnote: 0/3 nodes are available\ntype: Warning\n",
    );
    let core = json(&c.ok(&["get", "events.v1.", "e1", "-o", "json"]));
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "0/3 nodes are available");
    assert_eq!(core["involvedObject"]["name"], "web");
    assert_eq!(core["reportingComponent"], "keelson.io/test");
    let listed = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "name",
    ]);
    assert_eq!(listed.trim(), "event/e1");
    let new = json(&c.ok(&["get", "events.v1.events.k8s.io", "e1", "-o", "json"]));
    assert_eq!(new["apiVersion"], "events.k8s.io/v1");
    assert_eq!(new["note"], "0/3 nodes are available");
    assert_eq!(new["regarding"]["kind"], "Pod");
    // An autoscaling/v2 HPA reads as autoscaling/v1 and back.
    c.apply_stdin(
        "create",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: h\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}\n  minReplicas: 1\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target: {type: Utilization, averageUtilization: 70}\n",
    );
    assert_eq!(
        c.ok(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "h",
            "-o",
            "jsonpath={.spec.targetCPUUtilizationPercentage}"
        ]),
        "70"
    );
    c.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "h",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":55}}"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "horizontalpodautoscalers.v2.autoscaling",
            "h",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}"
        ]),
        "55"
    );
    let table = c.ok(&["get", "hpa"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("h ") && l.contains("Deployment/d")),
        "{table}"
    );
}

#[test]
fn server_side_apply_owns_fields_and_reports_conflicts() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    let manifest = |replicas: u32, labels: &str, extra_container: bool| {
        let extra = if extra_container {
            "      - name: side\n        image: busybox\n"
        } else {
            ""
        };
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ssa\n  labels: {{{labels}}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: ssa}}\n  template:\n    metadata:\n      labels: {{app: ssa}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n{extra}"
        )
    };
    let apply = |yaml: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "-f", "-"];
        args.extend_from_slice(extra);
        c.with_stdin(&args, yaml)
    };
    let out = apply(&manifest(2, "a: \"1\", b: \"2\"", true), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/ssa serverside-applied")
    );
    let obj = json(&c.ok(&[
        "get",
        "deploy",
        "ssa",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    let mf = &obj["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl");
    assert_eq!(mf["operation"], "Apply");
    assert!(mf["fieldsV1"]["f:spec"]["f:replicas"].is_object(), "{mf}");
    // Fields the manager stops applying are removed.
    let out = apply(&manifest(2, "a: \"1\"", false), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.ok(&["get", "deploy", "ssa", "-o", "jsonpath={.metadata.labels}"]),
        r#"{"a":"1"}"#
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "ssa",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}"
        ]),
        "web"
    );
    // Another manager changes replicas: applying a different value conflicts, naming it.
    c.ok(&["scale", "deploy", "ssa", "--replicas=5"]);
    let out = apply(&manifest(3, "a: \"1\"", false), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl")
            && err.contains(r#"with subresource "scale" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    let out = apply(&manifest(3, "a: \"1\"", false), &["--force-conflicts"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.ok(&["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    // An object first applied client-side moves to server-side apply.
    c.apply_stdin(
        "apply",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moved\ndata: {k: v}\n",
    );
    let out = apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moved\ndata: {k: v, k2: v2}\n",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.ok(&["get", "cm", "moved", "-o", "jsonpath={.data.k2}"]),
        "v2"
    );
}

#[test]
fn kubectl_generators_create_what_the_seeds_use() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    // §C.7
    let out = c.ok(&[
        "create",
        "deployment",
        "kubernetes-bootcamp",
        "--image=gcr.io/google-samples/kubernetes-bootcamp:v1",
    ]);
    assert_eq!(out.trim(), "deployment.apps/kubernetes-bootcamp created");
    let deps = c.ok(&["get", "deployments"]);
    let header: Vec<&str> = deps.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(
        deps.lines()
            .nth(1)
            .unwrap()
            .starts_with("kubernetes-bootcamp"),
        "{deps}"
    );
    // §F.2: the key is the file name.
    let file = c.file("file.txt", "hello\n");
    c.ok(&[
        "create",
        "configmap",
        "from-file",
        &format!("--from-file={}", path_str(&file)),
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "from-file",
            "-o",
            "jsonpath={.data.file\\.txt}"
        ]),
        "hello\n"
    );
    let envf = c.file("app.env", "A=1\nB=two\n");
    c.ok(&[
        "create",
        "configmap",
        "from-env",
        &format!("--from-env-file={}", path_str(&envf)),
    ]);
    assert_eq!(
        c.ok(&["get", "cm", "from-env", "-o", "jsonpath={.data.B}"]),
        "two"
    );
    c.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal=password=hunter2",
    ]);
    assert_eq!(
        c.ok(&["get", "secret", "pw", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );
    let secrets = c.ok(&["get", "secret", "pw"]);
    assert!(
        secrets
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .take(3)
            .eq(["pw", "Opaque", "1"]),
        "{secrets}"
    );
    // Services of each type, and expose (§D.5 at the object level).
    c.ok(&["create", "service", "clusterip", "c1", "--tcp=8080:80"]);
    c.ok(&["create", "service", "nodeport", "n1", "--tcp=8080:80"]);
    c.ok(&["create", "service", "loadbalancer", "l1", "--tcp=80:8080"]);
    let svcs = c.ok(&["get", "svc", "n1", "l1"]);
    let n1: Vec<&str> = svcs.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(n1[1], "NodePort");
    assert!(
        n1[4].starts_with("8080:3") && n1[4].ends_with("/TCP"),
        "{svcs}"
    );
    let l1: Vec<&str> = svcs.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!((l1[1], l1[3]), ("LoadBalancer", "<pending>"), "{svcs}");
    c.ok(&[
        "run",
        "myweb-1st-app",
        "--image=kubetm/p8080",
        "--port=8080",
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "myweb-1st-app",
            "-o",
            "jsonpath={.spec.containers[0].ports[0].containerPort}"
        ]),
        "8080"
    );
    c.ok(&[
        "expose",
        "pod",
        "myweb-1st-app",
        "--port=8080",
        "--name=myweb-svc",
        "--type=LoadBalancer",
    ]);
    let svc = json(&c.ok(&["get", "svc", "myweb-svc", "-o", "json"]));
    assert_eq!(svc["spec"]["selector"]["run"], "myweb-1st-app");
    assert!(
        svc["spec"]["ports"][0]["nodePort"]
            .as_u64()
            .is_some_and(|p| (30000..=32767).contains(&p))
    );
    c.ok(&[
        "expose",
        "deployment",
        "kubernetes-bootcamp",
        "--type=NodePort",
        "--port=8080",
    ]);
    // Jobs, cron jobs, quotas, priority classes, service accounts, autoscalers.
    c.ok(&["create", "job", "j1", "--image=busybox", "--", "echo", "hi"]);
    let job = json(&c.ok(&["get", "job", "j1", "-o", "json"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string(),
        "{job}"
    );
    c.ok(&[
        "create",
        "cronjob",
        "cj1",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "date",
    ]);
    c.ok(&["create", "quota", "q1", "--hard=pods=10"]);
    c.ok(&["create", "priorityclass", "pc1", "--value=100"]);
    c.ok(&["create", "serviceaccount", "sa1"]);
    c.ok(&[
        "autoscale",
        "deployment",
        "kubernetes-bootcamp",
        "--min=1",
        "--max=3",
        "--cpu-percent=50",
    ]);
    let all = c.ok(&["get", "all"]);
    for want in [
        "pod/myweb-1st-app",
        "service/myweb-svc",
        "deployment.apps/kubernetes-bootcamp",
        "job.batch/j1",
        "cronjob.batch/cj1",
        "horizontalpodautoscaler.autoscaling/kubernetes-bootcamp",
    ] {
        assert!(
            all.contains(want),
            "{want} missing from kubectl get all:\n{all}"
        );
    }
}

/// Columns of a kubectl table line (columns are separated by at least two spaces).
fn columns(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn kubectl_get_prints_upstreams_columns_for_every_kind() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "namespace", "kinds"]);
    let file = c.file("every-kind.yaml", EVERY_KIND);
    c.ok(&["create", "-f", path_str(&file)]);
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "pods",
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        ),
        (
            "services",
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            &["SELECTOR"],
        ),
        (
            "deployments",
            &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        (
            "replicasets",
            &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        (
            "replicationcontrollers",
            &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        (
            "daemonsets",
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        (
            "statefulsets",
            &["NAME", "READY", "AGE"],
            &["CONTAINERS", "IMAGES"],
        ),
        (
            "jobs",
            &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        (
            "cronjobs",
            &[
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        ("endpoints", &["NAME", "ENDPOINTS", "AGE"], &[]),
        (
            "endpointslices",
            &["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            &[],
        ),
        ("configmaps", &["NAME", "DATA", "AGE"], &[]),
        ("secrets", &["NAME", "TYPE", "DATA", "AGE"], &[]),
        ("serviceaccounts", &["NAME", "SECRETS", "AGE"], &[]),
        (
            "persistentvolumeclaims",
            &[
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS MODES",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "AGE",
            ],
            &["VOLUMEMODE"],
        ),
        ("resourcequotas", &["NAME", "AGE", "REQUEST", "LIMIT"], &[]),
        ("limitranges", &["NAME", "CREATED AT"], &[]),
        ("leases", &["NAME", "HOLDER", "AGE"], &[]),
        (
            "horizontalpodautoscalers",
            &[
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ],
            &[],
        ),
        (
            "controllerrevisions",
            &["NAME", "CONTROLLER", "REVISION", "AGE"],
            &[],
        ),
        (
            "events",
            &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            &[],
        ),
    ];
    for (res, normal, wide) in cases {
        let out = c.ok(&["get", res, "-n", "kinds"]);
        assert_eq!(
            columns(out.lines().next().unwrap()),
            *normal,
            "kubectl get {res}:\n{out}"
        );
        if !wide.is_empty() {
            let out = c.ok(&["get", res, "-n", "kinds", "-o", "wide"]);
            let mut want: Vec<&str> = normal.to_vec();
            want.extend_from_slice(wide);
            assert_eq!(
                columns(out.lines().next().unwrap()),
                want,
                "kubectl get {res} -o wide:\n{out}"
            );
        }
    }
    // Wide events interleave their extra columns, as upstream's printer does.
    let out = c.ok(&["get", "events", "-n", "kinds", "-o", "wide"]);
    assert_eq!(
        columns(out.lines().next().unwrap()),
        [
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME"
        ],
        "{out}"
    );
    let cluster: &[(&str, &[&str])] = &[
        ("nodes", &["NAME", "STATUS", "ROLES", "AGE", "VERSION"]),
        ("namespaces", &["NAME", "STATUS", "AGE"]),
        (
            "persistentvolumes",
            &[
                "NAME",
                "CAPACITY",
                "ACCESS MODES",
                "RECLAIM POLICY",
                "STATUS",
                "CLAIM",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "REASON",
                "AGE",
            ],
        ),
        (
            "storageclasses",
            &[
                "NAME",
                "PROVISIONER",
                "RECLAIMPOLICY",
                "VOLUMEBINDINGMODE",
                "ALLOWVOLUMEEXPANSION",
                "AGE",
            ],
        ),
        (
            "priorityclasses",
            &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        ),
    ];
    for (res, normal) in cluster {
        let out = c.ok(&["get", res]);
        assert_eq!(
            columns(out.lines().next().unwrap()),
            *normal,
            "kubectl get {res}:\n{out}"
        );
    }
    // Rows as upstream fills them.
    let svc = c.ok(&["get", "svc", "web", "-n", "kinds", "--no-headers"]);
    let cols = columns(&svc);
    assert_eq!(
        (
            cols[0].as_str(),
            cols[1].as_str(),
            cols[3].as_str(),
            cols[4].as_str()
        ),
        ("web", "ClusterIP", "<none>", "8080/TCP"),
        "{svc}"
    );
    let pv = columns(c.ok(&["get", "pv", "pv-a", "--no-headers"]).trim());
    assert_eq!(&pv[..3], ["pv-a", "1Gi", "RWO"], "{pv:?}");
    let deploy = columns(
        c.ok(&[
            "get",
            "deploy",
            "deploy",
            "-n",
            "kinds",
            "-o",
            "wide",
            "--no-headers",
        ])
        .trim(),
    );
    assert_eq!(
        (
            deploy[1].as_str(),
            deploy[5].as_str(),
            deploy[6].as_str(),
            deploy[7].as_str()
        ),
        ("0/2", "nginx", "nginx:1.10", "app=deploy"),
        "{deploy:?}"
    );
}

#[test]
fn kubectl_fidelity_odds_and_ends() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--disable-controllers", "--disable-scheduler"]);
    // explain --recursive walks the schema.
    let rec = c.ok(&["explain", "deploy", "--recursive"]);
    assert!(
        rec.contains("GROUP:      apps") && rec.contains("maxUnavailable\t<IntOrString>"),
        "{}",
        &rec[..rec.len().min(600)]
    );
    // --sort-by, custom columns, --no-headers.
    for (name, n) in [("b", "2"), ("a", "3"), ("c", "1")] {
        c.ok(&[
            "create",
            "configmap",
            name,
            &format!("--from-literal=n={n}"),
        ]);
    }
    let sorted = c.ok(&[
        "get",
        "cm",
        "--sort-by=.data.n",
        "-o",
        "custom-columns=NAME:.metadata.name,N:.data.n",
        "--no-headers",
    ]);
    let rows: Vec<Vec<&str>> = sorted
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [["c", "1"], ["b", "2"], ["a", "3"]], "{sorted}");
    // Warn: unknown fields are dropped and reported as warnings.
    let out = c.with_stdin(
        &["create", "--validate=warn", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: warned\n  bogus: 1\ndata: {a: b}\n",
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"Warning: unknown field "metadata.bogus""#),
        "{err}"
    );
    // One bad object in a file of many: the others are applied, the bad one named.
    let mut docs: Vec<String> = (0..20)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-{i}\ndata: {{i: \"{i}\"}}\n"))
        .collect();
    docs[7] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Many_7\n".into();
    let out = c.with_stdin(&["apply", "-f", "-"], &docs.join("---\n"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"ConfigMap "Many_7" is invalid"#), "{err}");
    let names = c.ok(&["get", "cm", "-o", "name"]);
    assert_eq!(
        names
            .lines()
            .filter(|l| l.starts_with("configmap/many-"))
            .count(),
        19,
        "{names}"
    );
    // kubectl proxy serves the API without credentials on localhost (§A.2).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut proxy = c
        .kubectl_cmd(&["proxy", &format!("--port={port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let body = common::eventually(10, || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        use std::io::{Read, Write};
        s.write_all(
            b"GET /api/v1/namespaces/default/configmaps/a HTTP/1.0\r\nHost: localhost\r\n\r\n",
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        resp.contains("200 OK").then_some(resp)
    });
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(body.contains(r#""name":"a""#), "{body}");
}

#[test]
fn edit_set_diff_wait_describe_and_duplicate_fields() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--disable-scheduler"]);
    c.apply_stdin(
        "apply",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: app}\n  template:\n    metadata:\n      labels: {app: app}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
    );
    // kubectl edit, with an EDITOR script.
    let editor = c.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 4/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = c
        .kubectl_cmd(&["edit", "deploy", "app"])
        .env("EDITOR", &editor)
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.ok(&["get", "deploy", "app", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
    // set env, set resources.
    c.ok(&["set", "env", "deploy/app", "MODE=prod"]);
    c.ok(&[
        "set",
        "resources",
        "deploy",
        "app",
        "-c",
        "web",
        "--limits=cpu=200m,memory=128Mi",
    ]);
    let tpl = json(&c.ok(&[
        "get",
        "deploy",
        "app",
        "-o",
        "jsonpath={.spec.template.spec.containers[0]}",
    ]));
    assert_eq!(
        tpl["env"][0],
        serde_json::json!({"name": "MODE", "value": "prod"})
    );
    assert_eq!(tpl["resources"]["limits"]["memory"], "128Mi");
    // diff: exit 1 with a diff when the file differs from the cluster, 0 when not.
    let same = c.ok(&["get", "deploy", "app", "-o", "yaml"]);
    let file = c.file("app.yaml", &same);
    assert_eq!(
        c.kubectl(&["diff", "-f", path_str(&file)]).status.code(),
        Some(0)
    );
    let changed = c.file("app2.yaml", &same.replace("replicas: 4", "replicas: 6"));
    let out = c.kubectl(&["diff", "-f", path_str(&changed)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("+  replicas: 6"));
    // wait --for=delete returns once the object is gone.
    c.ok(&["create", "configmap", "short-lived"]);
    let mut waiter = c
        .kubectl_cmd(&[
            "wait",
            "--for=delete",
            "configmap/short-lived",
            "--timeout=20s",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.ok(&["delete", "configmap", "short-lived"]);
    assert!(waiter.wait().unwrap().success());
    // api-resources -o wide lists verbs and categories.
    let wide = c.ok(&["api-resources", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("VERBS")
            && wide.lines().next().unwrap().contains("CATEGORIES")
    );
    assert!(
        wide.lines().any(|l| l.starts_with("pods ")
            && l.contains("create,delete,deletecollection,get,list,patch,update,watch")
            && l.trim_end().ends_with("all")),
        "{wide}"
    );
    // describe works for every kind, with the object's events.
    let d = c.ok(&["describe", "deploy", "app"]);
    assert!(
        d.contains("Name:                   app")
            && d.contains("Replicas:               4 desired"),
        "{d}"
    );
    assert!(
        d.contains("ScalingReplicaSet"),
        "deployment events missing:\n{d}"
    );
    c.ok(&["create", "namespace", "kinds"]);
    c.ok(&[
        "create",
        "-f",
        path_str(&c.file("every-kind.yaml", EVERY_KIND)),
    ]);
    for (res, name, ns) in OBJECTS {
        let mut args = vec!["describe", res, name];
        if *ns {
            args.extend(["-n", "kinds"]);
        }
        let out = c.ok(&args);
        assert!(
            out.lines()
                .any(|l| l.starts_with("Name:") && l.trim_end().ends_with(name)),
            "describe {res}:\n{out}"
        );
    }
    // Strict validation refuses duplicate fields, naming them.
    let dup = c.file(
        "dup.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"}}"#,
    );
    let out = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        "-f",
        path_str(&dup),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(r#"strict decoding error: duplicate field "metadata.name""#),
        "{err}"
    );
}
