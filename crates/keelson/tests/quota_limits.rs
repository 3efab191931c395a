//! ResourceQuota and LimitRange admission through the real kubectl (SEED-SCENARIOS §G.4 and
//! §G.5 at the object level): refusals in upstream's words, usage kept exact, defaults filled
//! in, and no overshoot under concurrent creates.

mod common;

use common::{Cluster, eventually, have_kubectl};

fn pod(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: kubetm/init\n{resources}"
    )
}

fn res(req_cpu: &str, req_mem: &str, lim_cpu: &str, lim_mem: &str) -> String {
    format!(
        "    resources:\n      requests: {{cpu: \"{req_cpu}\", memory: \"{req_mem}\"}}\n      limits: {{cpu: \"{lim_cpu}\", memory: \"{lim_mem}\"}}\n"
    )
}

fn stderr_of(c: &Cluster, ns: &str, yaml: &str) -> String {
    let out = c.with_stdin(&["create", "-n", ns, "-f", "-"], yaml);
    assert!(
        !out.status.success(),
        "created but should have been refused:\n{yaml}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn resource_quota_refuses_and_tracks_usage() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "namespace", "q"]);
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: mem-cpu\n  namespace: q\nspec:\n  hard:\n    requests.cpu: \"1\"\n    requests.memory: 1Gi\n    limits.cpu: \"2\"\n    limits.memory: 2Gi\n    pods: \"2\"\n",
    );
    let err = stderr_of(&c, "q", &pod("bare", ""));
    assert!(
        err.contains(r#"pods "bare" is forbidden: failed quota: mem-cpu: must specify limits.cpu for: c; limits.memory for: c; requests.cpu for: c; requests.memory for: c"#),
        "{err}"
    );
    c.apply_stdin(
        "create",
        &pod("first", &res("400m", "600Mi", "800m", "800Mi"))
            .replace("name: first", "name: first\n  namespace: q"),
    );
    let err = stderr_of(
        &c,
        "q",
        &pod("second", &res("100m", "700Mi", "200m", "700Mi")),
    );
    assert!(
        err.contains(r#"pods "second" is forbidden: exceeded quota: mem-cpu, requested: requests.memory=700Mi, used: requests.memory=600Mi, limited: requests.memory=1Gi"#),
        "{err}"
    );
    let described = c.ok(&["describe", "quota", "mem-cpu", "-n", "q"]);
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().eq(["requests.memory", "600Mi", "1Gi"])),
        "{described}"
    );
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().eq(["pods", "1", "2"])),
        "{described}"
    );
    // Deleting the pod gives its usage back.
    c.ok(&["delete", "pod", "first", "-n", "q", "--wait=false"]);
    eventually(10, || {
        let used = c.ok(&[
            "get",
            "quota",
            "mem-cpu",
            "-n",
            "q",
            "-o",
            "jsonpath={.status.used.pods}",
        ]);
        (used == "0").then_some(())
    });
}

#[test]
fn concurrent_creates_never_overshoot_a_quota() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start_with(&["--disable-scheduler"]);
    c.ok(&["create", "namespace", "burst"]);
    c.apply_stdin("create", "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: ten\n  namespace: burst\nspec:\n  hard:\n    count/configmaps: \"10\"\n");
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let mut cmd =
                c.kubectl_cmd(&["create", "configmap", &format!("cm-{i}"), "-n", "burst"]);
            std::thread::spawn(move || cmd.output().map(|o| o.status.success()).unwrap_or(false))
        })
        .collect();
    let created = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|ok| *ok)
        .count();
    let stored = c
        .ok(&["get", "configmaps", "-n", "burst", "-o", "name"])
        .lines()
        .count();
    assert_eq!(stored, created, "every acknowledged create is stored");
    assert_eq!(stored, 10, "50 concurrent creates under a quota of 10");
    assert_eq!(
        c.ok(&[
            "get",
            "quota",
            "ten",
            "-n",
            "burst",
            "-o",
            "jsonpath={.status.used.count/configmaps}"
        ]),
        stored.to_string()
    );
}

#[test]
fn limit_range_fills_defaults_and_refuses_out_of_range_pods() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();
    c.ok(&["create", "namespace", "lr"]);
    c.apply_stdin(
        "create",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\n  namespace: lr\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 250m, memory: 128Mi}\n    max: {cpu: \"1\", memory: 1Gi}\n    min: {cpu: 100m}\n    maxLimitRequestRatio: {cpu: \"4\"}\n",
    );
    c.apply_stdin(
        "create",
        &pod("defaulted", "").replace("name: defaulted", "name: defaulted\n  namespace: lr"),
    );
    let got = c.ok(&[
        "get",
        "pod",
        "defaulted",
        "-n",
        "lr",
        "-o",
        "jsonpath={.spec.containers[0].resources}",
    ]);
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v["limits"]["cpu"], "500m", "{got}");
    assert_eq!(v["limits"]["memory"], "256Mi", "{got}");
    assert_eq!(v["requests"]["cpu"], "250m", "{got}");
    assert_eq!(v["requests"]["memory"], "128Mi", "{got}");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "defaulted",
            "-n",
            "lr",
            "-o",
            "jsonpath={.status.qosClass}"
        ]),
        "Burstable"
    );
    let err = stderr_of(
        &c,
        "lr",
        &pod("too-big", &res("500m", "128Mi", "2", "256Mi")),
    );
    assert!(
        err.contains(
            r#"pods "too-big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#
        ),
        "{err}"
    );
    let err = stderr_of(
        &c,
        "lr",
        &pod("too-small", &res("50m", "128Mi", "100m", "256Mi")),
    );
    assert!(
        err.contains("minimum cpu usage per Container is 100m, but request is 50m"),
        "{err}"
    );
    let err = stderr_of(
        &c,
        "lr",
        &pod("skewed", &res("100m", "128Mi", "800m", "256Mi")),
    );
    assert!(
        err.contains(
            "cpu max limit to request ratio per Container is 4, but provided ratio is 8.000000"
        ),
        "{err}"
    );
}
