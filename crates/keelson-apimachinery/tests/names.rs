//! Name rules and `ObjectMeta` validation, with upstream's messages.

use keelson_apimachinery::names::{
    c_identifier, config_map_key, dns1035_label, dns1123_label, dns1123_subdomain, env_var_name,
    label_value, mask_trailing_dash, port_name, qualified_name, validate_object_meta,
};
use serde_json::json;

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QNAME: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const ENV: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";
const C_ID: &str = "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for validation is '[A-Za-z_][A-Za-z0-9_]*')";
const CM_KEY: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn check(rule: fn(&str) -> Vec<String>, rule_name: &str, cases: &[(&str, &[&str])]) {
    for (value, want) in cases {
        let got = rule(value);
        assert_eq!(got, *want, "{rule_name}({value:?})");
    }
}

fn long(n: usize) -> &'static str {
    Box::leak("a".repeat(n).into_boxed_str())
}

#[test]
fn dns1123_subdomain_rule() {
    let longest = format!("a{}", ".b".repeat(126));
    check(
        dns1123_subdomain,
        "dns1123_subdomain",
        &[
            ("example.com", &[]),
            ("a", &[]),
            ("0-a.b-9", &[]),
            ("Bad_Name", &[SUBDOMAIN]),
            ("", &[SUBDOMAIN]),
            ("-a", &[SUBDOMAIN]),
            ("a-", &[SUBDOMAIN]),
            ("a..b", &[SUBDOMAIN]),
            (".a", &[SUBDOMAIN]),
            ("é", &[SUBDOMAIN]),
            (long(253), &[]),
            (long(254), &["must be no more than 253 characters"]),
            (&longest, &[]),
        ],
    );
}

#[test]
fn dns1123_label_rule() {
    check(
        dns1123_label,
        "dns1123_label",
        &[
            ("default", &[]),
            ("kube-system", &[]),
            ("9", &[]),
            ("a.b", &["must not contain dots"]),
            ("A", &[LABEL]),
            ("", &[LABEL]),
            ("a_b", &[LABEL]),
            ("-a", &[LABEL]),
            (long(63), &[]),
            (long(64), &["must be no more than 63 characters"]),
        ],
    );
}

#[test]
fn dns1035_label_rule() {
    check(
        dns1035_label,
        "dns1035_label",
        &[
            ("my-svc", &[]),
            ("a1", &[]),
            ("1abc", &[DNS1035]),
            ("abc-", &[DNS1035]),
            ("", &[DNS1035]),
            (long(64), &["must be no more than 63 characters"]),
        ],
    );
}

#[test]
fn qualified_name_rule() {
    let prefix_label = format!("prefix part {SUBDOMAIN}");
    let name_part = format!("name part {QNAME}");
    let too_many = format!(
        "a qualified name {QNAME} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    );
    let long_name = format!("example.com/{}", long(64));
    check(
        qualified_name,
        "qualified_name",
        &[
            ("app", &[]),
            ("MyName", &[]),
            ("my.name_x-1", &[]),
            ("example.com/MyName", &[]),
            ("app.kubernetes.io/name", &[]),
            ("a/b/c", &[&too_many]),
            ("/a", &["prefix part must be non-empty"]),
            ("Example.com/a", &[&prefix_label]),
            ("a/", &["name part must be non-empty", &name_part]),
            ("", &["name part must be non-empty", &name_part]),
            ("-app", &[&name_part]),
            ("a b", &[&name_part]),
            (
                &long_name,
                &["name part must be no more than 63 characters"],
            ),
        ],
    );
}

#[test]
fn label_value_rule() {
    check(
        label_value,
        "label_value",
        &[
            ("", &[]),
            ("v1.2_3-x", &[]),
            ("-bad", &[LABEL_VALUE]),
            ("a/b", &[LABEL_VALUE]),
            (long(63), &[]),
            (long(64), &["must be no more than 63 characters"]),
        ],
    );
}

#[test]
fn env_var_name_rule() {
    check(
        env_var_name,
        "env_var_name",
        &[
            ("HOME", &[]),
            ("my.env-name", &[]),
            ("_x1", &[]),
            ("1ABC", &[ENV]),
            ("A=B", &[ENV]),
            ("", &[ENV]),
            (".", &["must not be '.'"]),
            ("..", &["must not be '..'"]),
            ("..a", &["must not start with '..'"]),
        ],
    );
}

#[test]
fn c_identifier_rule() {
    check(
        c_identifier,
        "c_identifier",
        &[
            ("my_name", &[]),
            ("_1", &[]),
            ("1a", &[C_ID]),
            ("a-b", &[C_ID]),
            ("", &[C_ID]),
        ],
    );
}

#[test]
fn config_map_key_rule() {
    check(
        config_map_key,
        "config_map_key",
        &[
            ("key.name", &[]),
            ("KEY_NAME-1", &[]),
            ("a/b", &[CM_KEY]),
            ("", &[CM_KEY]),
            ("..", &["must not be '..'"]),
        ],
    );
}

#[test]
fn port_name_rule() {
    const CHARS: &str = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
    const LETTER: &str = "must contain at least one letter (a-z)";
    check(
        port_name,
        "port_name",
        &[
            ("http", &[]),
            ("web-8080", &[]),
            ("a", &[]),
            ("", &[CHARS, LETTER]),
            ("8080", &[LETTER]),
            ("HTTP", &[CHARS, LETTER]),
            ("a--b", &["must not contain consecutive hyphens"]),
            ("-a", &["must not begin or end with a hyphen"]),
            ("a-", &["must not begin or end with a hyphen"]),
            ("abcdefghijklmnop", &["must be no more than 15 characters"]),
        ],
    );
}

#[test]
fn generate_name_dash_is_masked() {
    assert_eq!(mask_trailing_dash("web-"), "wea");
    assert_eq!(mask_trailing_dash("-"), "-");
    assert_eq!(mask_trailing_dash("web"), "web");
}

fn meta_messages(meta: serde_json::Value, namespaced: bool) -> Vec<String> {
    validate_object_meta(&meta, namespaced, dns1123_subdomain)
        .iter()
        .map(|e| e.message())
        .collect()
}

#[test]
fn object_meta_rules() {
    let big = "x".repeat(256 * 1024);
    let cases: Vec<(serde_json::Value, bool, Vec<String>)> = vec![
        (json!({"name": "web", "namespace": "default"}), true, vec![]),
        (json!({"name": "node-1"}), false, vec![]),
        (json!({"generateName": "web-", "namespace": "ns"}), true, vec![
            "metadata.name: Required value: name or generateName is required".into(),
        ]),
        (json!({}), true, vec![
            "metadata.name: Required value: name or generateName is required".into(),
            "metadata.namespace: Required value".into(),
        ]),
        (json!({"name": "Bad_Name", "namespace": "default"}), true, vec![format!(
            "metadata.name: Invalid value: \"Bad_Name\": {SUBDOMAIN}"
        )]),
        (json!({"name": "Web-", "generateName": "Web-"}), false, vec![
            format!("metadata.generateName: Invalid value: \"Web-\": {SUBDOMAIN}"),
            format!("metadata.name: Invalid value: \"Web-\": {SUBDOMAIN}"),
        ]),
        (json!({"name": "n", "namespace": "default"}), false, vec![
            "metadata.namespace: Forbidden: not allowed on this type".into(),
        ]),
        (json!({"name": "n", "namespace": "a.b"}), true, vec![
            "metadata.namespace: Invalid value: \"a.b\": must not contain dots".into(),
        ]),
        (json!({"name": "n", "generation": -1}), false, vec![
            "metadata.generation: Invalid value: -1: must be greater than or equal to 0".into(),
        ]),
        (json!({"name": "n", "labels": {"app": "-bad", "-k": "v"}}), false, vec![
            format!("metadata.labels: Invalid value: \"-bad\": {LABEL_VALUE}"),
            format!("metadata.labels: Invalid value: \"-k\": name part {QNAME}"),
        ]),
        (json!({"name": "n", "annotations": {"Example.COM/Key": "ok", "a b": "x"}}), false, vec![
            format!("metadata.annotations: Invalid value: \"a b\": name part {QNAME}"),
        ]),
        (json!({"name": "n", "annotations": {"big": big}}), false, vec![
            "metadata.annotations: Too long: may not be more than 262144 bytes".into(),
        ]),
        (json!({"name": "n", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}]}), false, vec![
            "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty".into(),
        ]),
        (json!({"name": "n", "ownerReferences": [{}]}), false, vec![
            "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty".into(),
            "metadata.ownerReferences.kind: Invalid value: \"\": kind must not be empty".into(),
            "metadata.ownerReferences.name: Invalid value: \"\": name must not be empty".into(),
            "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty".into(),
        ]),
        (json!({"name": "n", "finalizers": ["kubernetes.io/pv-protection", "a/b/c"]}), false, vec![
            format!("metadata.finalizers: Invalid value: \"a/b/c\": a qualified name {QNAME} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
        ]),
    ];
    for (meta, namespaced, want) in cases {
        assert_eq!(meta_messages(meta.clone(), namespaced), want, "{meta}");
    }
}

#[test]
fn two_controller_owner_references_are_refused() {
    let meta = json!({"name": "n", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true},
    ]});
    let errs = validate_object_meta(&meta, false, dns1123_subdomain);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "metadata.ownerReferences");
    assert_eq!(
        errs[0].detail,
        "Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"
    );
}

#[test]
fn object_meta_update_rules() {
    use keelson_apimachinery::names::validate_object_meta_update;
    let old = json!({"name": "a", "namespace": "ns", "uid": "u1", "finalizers": ["x/a"]});
    let cases: Vec<(serde_json::Value, serde_json::Value, Vec<&str>)> = vec![
        (old.clone(), old.clone(), vec![]),
        (
            json!({"name": "b", "namespace": "ns", "uid": "u1", "labels": {"ok": "yes"}}),
            old.clone(),
            vec!["metadata.name: Invalid value: \"b\": field is immutable"],
        ),
        (
            json!({"name": "a", "namespace": "ns"}),
            old.clone(),
            vec!["metadata.uid: Invalid value: \"\": field is immutable"],
        ),
        (
            json!({"name": "a", "finalizers": ["x/a", "x/c", "x/b"], "deletionTimestamp": "t"}),
            json!({"name": "a", "finalizers": ["x/a"], "deletionTimestamp": "t"}),
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"x/b\", \"x/c\"}",
            ],
        ),
    ];
    for (new, old, want) in cases {
        let got: Vec<String> = validate_object_meta_update(&new, &old)
            .iter()
            .map(|e| e.message())
            .collect();
        assert_eq!(got, want, "{new}");
    }
}
