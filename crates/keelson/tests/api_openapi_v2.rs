//! End-to-end: `/openapi/v2` as the real kubectl reads it (gnostic protobuf):
//! `kubectl explain --output=plaintext-openapiv2` lists the same fields with the same
//! descriptions as the v3 explain, and `kubectl apply --validate=strict` still names an
//! unknown field. Honours `$KUBECTL` (run it with kubectl 1.32 and 1.33).

mod common;

use common::{Cluster, have_kubectl};
use serde_json::Value;

/// The field lines (`name\t<type>`) of an explain output, by name, with the first words of
/// their descriptions (the two formats wrap lines at different widths).
fn fields(out: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = out.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((name, rest)) = line.trim_start().split_once('\t') else {
            continue;
        };
        if !rest.starts_with('<') || name.contains(' ') {
            continue;
        }
        let description = lines
            .get(i + 1)
            .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        found.push((name.to_string(), description));
    }
    found
}

#[test]
fn explain_reads_v2_like_v3_and_strict_apply_names_the_field() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start();

    let v2 = c.ok(&[
        "explain",
        "pod.spec.containers",
        "--output=plaintext-openapiv2",
    ]);
    let v3 = c.ok(&["explain", "pod.spec.containers"]);
    assert!(v2.contains("KIND:     Pod"), "{v2}");
    assert!(
        v2.contains("RESOURCE: containers <[]Object>"),
        "no RESOURCE line:\n{v2}"
    );
    assert!(
        v2.contains("List of containers belonging to the pod."),
        "{v2}"
    );
    assert!(v2.contains("   name\t<string> -required-"), "{v2}");
    assert!(v2.contains("   ports\t<[]Object>"), "{v2}");
    let (f2, f3) = (fields(&v2), fields(&v3));
    assert!(f2.len() > 20, "too few fields in:\n{v2}");
    assert_eq!(f2, f3, "v2 and v3 explain differ:\n{v2}\n----\n{v3}");

    let recursive = c.ok(&[
        "explain",
        "deployment",
        "--recursive",
        "--output=plaintext-openapiv2",
    ]);
    assert!(recursive.contains("KIND:     Deployment"), "{recursive}");
    assert!(recursive.contains("VERSION:  apps/v1"), "{recursive}");
    for line in [
        "maxSurge\t<string>",
        "containerPort\t<integer>",
        "replicas\t<integer>",
    ] {
        assert!(recursive.contains(line), "no {line:?} in:\n{recursive}");
    }
    let recursive_v3 = c.ok(&["explain", "deployment", "--recursive"]);
    let names = |out: &str| -> Vec<String> { fields(out).into_iter().map(|(n, _)| n).collect() };
    assert_eq!(names(&recursive), names(&recursive_v3));

    let doc: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/openapi/v2"])).expect("JSON document");
    assert_eq!(doc["swagger"], "2.0");
    let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod",
        "{pod}"
    );
    let containers = &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");

    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\nbogus: 1\n";
    let out = c.with_stdin(&["apply", "--validate=strict", "-f", "-"], manifest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply accepted an unknown field");
    assert!(stderr.contains("unknown field \"bogus\""), "{stderr}");
    let out = c.kubectl(&["get", "configmap", "strict"]);
    assert!(!out.status.success(), "the refused object was created");
}
