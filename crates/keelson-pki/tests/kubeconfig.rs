//! Tests of kubeconfig rendering, writing and merging, checked by parsing the YAML back and,
//! where kubectl is installed, by asking kubectl itself.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use keelson_pki::kubeconfig;
use serde_json::Value;

const CA: &str = "-----BEGIN CERTIFICATE-----\nY2E=\n-----END CERTIFICATE-----\n";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nY2VydA==\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\na2V5\n-----END PRIVATE KEY-----\n";

const EXISTING: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example.com:6443
    insecure-skip-tls-verify: true
- name: keelson
  cluster:
    server: https://old.example:1
contexts:
- name: prod
  context:
    cluster: prod
    user: prod-admin
    namespace: "123"
  extensions:
  - name: vendor
    extension:
      flag: "yes"
- name: keelson
  context:
    cluster: keelson
    user: keelson
current-context: prod
preferences:
  colors: true
users:
- name: prod-admin
  user:
    token: "true"
- name: keelson
  user:
    token: stale
x-unknown-top-level:
  keep: [1, 2.5, "on", null]
"#;

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("valid yaml")
}

fn read_yaml(path: &Path) -> Value {
    yaml(&std::fs::read_to_string(path).expect("read kubeconfig"))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The entry called `name` of one of the kubeconfig lists.
fn entry<'a>(doc: &'a Value, section: &str, name: &str) -> &'a Value {
    doc[section]
        .as_array()
        .unwrap_or_else(|| panic!("{section} is not a list"))
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {section} entry {name}"))
}

fn names(doc: &Value, section: &str) -> Vec<String> {
    doc[section]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `kubectl config view --raw` with a jsonpath on `file`, or None (with a printed reason) when
/// kubectl is not installed.
fn kubectl_jsonpath(file: &Path, jsonpath: &str) -> Option<String> {
    let output = match Command::new("kubectl")
        .args(["config", "view", "--raw", "--kubeconfig"])
        .arg(file)
        .args(["-o", &format!("jsonpath={jsonpath}")])
        .env_remove("KUBECONFIG")
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            println!("skipping kubectl check: kubectl not runnable ({e})");
            return None;
        }
    };
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn render_has_expected_fields() {
    let doc = yaml(&kubeconfig::render(
        "https://127.0.0.1:6443",
        CA,
        CERT,
        KEY,
        "keelson",
    ));
    let checks: [(&str, &Value, Value); 10] = [
        ("apiVersion", &doc["apiVersion"], "v1".into()),
        ("kind", &doc["kind"], "Config".into()),
        ("current-context", &doc["current-context"], "keelson".into()),
        (
            "server",
            &entry(&doc, "clusters", "keelson")["cluster"]["server"],
            "https://127.0.0.1:6443".into(),
        ),
        (
            "ca data",
            &entry(&doc, "clusters", "keelson")["cluster"]["certificate-authority-data"],
            b64(CA).into(),
        ),
        (
            "context cluster",
            &entry(&doc, "contexts", "keelson")["context"]["cluster"],
            "keelson".into(),
        ),
        (
            "context user",
            &entry(&doc, "contexts", "keelson")["context"]["user"],
            "keelson".into(),
        ),
        (
            "cert data",
            &entry(&doc, "users", "keelson")["user"]["client-certificate-data"],
            b64(CERT).into(),
        ),
        (
            "key data",
            &entry(&doc, "users", "keelson")["user"]["client-key-data"],
            b64(KEY).into(),
        ),
        (
            "one user",
            &Value::from(names(&doc, "users").len()),
            1.into(),
        ),
    ];
    for (what, got, want) in checks {
        assert_eq!(got, &want, "{what}");
    }
}

#[test]
fn kubectl_reads_rendered_current_context() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kubeconfig");
    let text = kubeconfig::render("https://127.0.0.1:6443", CA, CERT, KEY, "my-cluster");
    kubeconfig::write(&file, &text).expect("write");
    let checks = [
        ("{.current-context}", "my-cluster".to_owned()),
        (
            "{.clusters[0].cluster.server}",
            "https://127.0.0.1:6443".to_owned(),
        ),
        ("{.clusters[0].cluster.certificate-authority-data}", b64(CA)),
        ("{.users[0].user.client-certificate-data}", b64(CERT)),
        ("{.users[0].user.client-key-data}", b64(KEY)),
        ("{.contexts[0].context.user}", "my-cluster".to_owned()),
    ];
    for (jsonpath, want) in checks {
        match kubectl_jsonpath(&file, jsonpath) {
            Some(got) => assert_eq!(got, want, "{jsonpath}"),
            None => return,
        }
    }
}

#[test]
fn write_is_private_creates_parents_and_replaces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a").join("b").join("config");
    kubeconfig::write(&file, "first").expect("first write");
    kubeconfig::write(&file, "second").expect("second write");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "second");
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().expect("parent"))
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "config")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn merged(existing: Option<&str>) -> (tempfile::TempDir, PathBuf, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(".kube").join("config");
    if let Some(text) = existing {
        kubeconfig::write(&file, text).expect("seed");
    }
    let ours = kubeconfig::render("https://127.0.0.1:6443", CA, CERT, KEY, "keelson");
    kubeconfig::merge_into(&file, &ours, "keelson").expect("merge");
    let doc = read_yaml(&file);
    (dir, file, doc)
}

#[test]
fn merge_keeps_other_entries_and_replaces_ours() {
    let (_dir, _file, doc) = merged(Some(EXISTING));
    assert_eq!(doc["current-context"], "keelson");
    assert_eq!(names(&doc, "contexts"), ["prod", "keelson"]);
    assert_eq!(names(&doc, "clusters"), ["prod", "keelson"]);
    assert_eq!(names(&doc, "users"), ["prod-admin", "keelson"]);
    let prod = entry(&doc, "contexts", "prod");
    let checks: [(&str, &Value, Value); 9] = [
        (
            "prod namespace stays a string",
            &prod["context"]["namespace"],
            "123".into(),
        ),
        (
            "prod extension kept",
            &prod["extensions"][0]["extension"]["flag"],
            "yes".into(),
        ),
        (
            "prod cluster kept",
            &entry(&doc, "clusters", "prod")["cluster"]["insecure-skip-tls-verify"],
            true.into(),
        ),
        (
            "prod token stays a string",
            &entry(&doc, "users", "prod-admin")["user"]["token"],
            "true".into(),
        ),
        (
            "preferences kept",
            &doc["preferences"]["colors"],
            true.into(),
        ),
        (
            "unknown field kept",
            &doc["x-unknown-top-level"]["keep"],
            serde_json::json!([1, 2.5, "on", null]),
        ),
        (
            "our server replaced",
            &entry(&doc, "clusters", "keelson")["cluster"]["server"],
            "https://127.0.0.1:6443".into(),
        ),
        (
            "stale token dropped",
            &entry(&doc, "users", "keelson")["user"]["token"],
            Value::Null,
        ),
        (
            "our key added",
            &entry(&doc, "users", "keelson")["user"]["client-key-data"],
            b64(KEY).into(),
        ),
    ];
    for (what, got, want) in checks {
        assert_eq!(got, &want, "{what}");
    }
}

#[test]
fn kubectl_reads_merged_file() {
    let (_dir, file, _doc) = merged(Some(EXISTING));
    let checks = [
        ("{.current-context}", "keelson"),
        // kubectl lists entries sorted by name.
        ("{.contexts[*].name}", "keelson prod"),
        ("{.contexts[?(@.name==\"prod\")].context.namespace}", "123"),
        ("{.users[?(@.name==\"prod-admin\")].user.token}", "true"),
        (
            "{.clusters[?(@.name==\"keelson\")].cluster.server}",
            "https://127.0.0.1:6443",
        ),
    ];
    for (jsonpath, want) in checks {
        match kubectl_jsonpath(&file, jsonpath) {
            Some(got) => assert_eq!(got, want, "{jsonpath}"),
            None => return,
        }
    }
}

#[test]
fn merge_creates_missing_or_empty_files() {
    for existing in [None, Some(""), Some("# only a comment\n")] {
        let (_dir, file, doc) = merged(existing);
        assert_eq!(doc["apiVersion"], "v1", "{existing:?}");
        assert_eq!(doc["kind"], "Config", "{existing:?}");
        assert_eq!(doc["current-context"], "keelson", "{existing:?}");
        for section in ["clusters", "users", "contexts"] {
            assert_eq!(
                names(&doc, section),
                ["keelson"],
                "{section} of {existing:?}"
            );
        }
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn merge_accepts_null_lists() {
    let existing = "apiVersion: v1\nkind: Config\nclusters: null\ncontexts: null\nusers: null\npreferences: {}\ncurrent-context: \"\"\n";
    let (_dir, _file, doc) = merged(Some(existing));
    assert_eq!(names(&doc, "contexts"), ["keelson"]);
    assert_eq!(doc["current-context"], "keelson");
}

#[test]
fn merge_renames_entries_to_the_given_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config");
    let ours = kubeconfig::render("https://10.0.0.1:6443", CA, CERT, KEY, "default");
    kubeconfig::merge_into(&file, &ours, "keelson").expect("merge");
    let doc = read_yaml(&file);
    let context = &entry(&doc, "contexts", "keelson")["context"];
    assert_eq!(context["cluster"], "keelson");
    assert_eq!(context["user"], "keelson");
    assert_eq!(
        entry(&doc, "clusters", "keelson")["cluster"]["server"],
        "https://10.0.0.1:6443"
    );
    assert_eq!(names(&doc, "users"), ["keelson"]);
}

#[test]
fn merge_rejects_what_it_cannot_merge() {
    let cases = [
        ("- just\n- a list\n", "not a mapping"),
        ("clusters: 5\n", "clusters is not a list"),
        ("key: [unclosed\n", "cannot parse"),
    ];
    for (existing, want) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("config");
        std::fs::write(&file, existing).expect("seed");
        let ours = kubeconfig::render("https://127.0.0.1:6443", CA, CERT, KEY, "keelson");
        let err = kubeconfig::merge_into(&file, &ours, "keelson").expect_err(existing);
        let message = err.to_string();
        assert!(message.contains(want), "{existing:?}: {message}");
        assert!(message.contains("config"), "path missing: {message}");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), existing);
    }
}

#[test]
fn default_kubeconfig_location() {
    let os = |s: &str| Some(OsString::from(s));
    let cases: [(Option<OsString>, Option<OsString>, Option<&str>); 6] = [
        (os("/a/config:/b/config"), os("/home/u"), Some("/a/config")),
        (os("/only"), None, Some("/only")),
        (os(":/second"), os("/home/u"), Some("/second")),
        (os(""), os("/home/u"), Some("/home/u/.kube/config")),
        (None, os("/home/u"), Some("/home/u/.kube/config")),
        (None, None, None),
    ];
    for (kubeconfig_env, home, want) in cases {
        let got = kubeconfig::user_kubeconfig_from(kubeconfig_env.clone(), home.clone());
        assert_eq!(
            got,
            want.map(PathBuf::from),
            "KUBECONFIG={kubeconfig_env:?} HOME={home:?}"
        );
    }
}
