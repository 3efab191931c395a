//! Label selector parsing, rendering, matching and `LabelSelector` validation.

use keelson_apimachinery::labels::{
    Operator, Requirement, Selector, SelectorError, validate_label_selector,
};
use serde_json::{Map, Value, json};

const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QNAME: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Parses `input` and compares the canonical rendering (`Ok`) or the error text (`Err`).
fn check(input: &str, want: Result<&str, &str>) {
    let got = Selector::parse(input)
        .map(|s| s.to_string())
        .map_err(|e| e.to_string());
    assert_eq!(
        got,
        want.map(str::to_string).map_err(str::to_string),
        "{input:?}"
    );
}

#[test]
fn parse_and_render() {
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("x!=a,y=b", "x!=a,y=b"),
        ("x=", "x="),
        ("x= ", "x="),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        ("x=a,a=x", "a=x,x=a"),
        ("a==b", "a==b"),
        ("  env in ( prod , dev ) ", "env in (dev,prod)"),
        ("env notin (qa)", "env notin (qa)"),
        ("tier in (b,a,b)", "tier in (a,b)"),
        ("a in ()", "a in ()"),
        ("a in (,x)", "a in (,x)"),
        ("app", "app"),
        ("app, !beta", "app,!beta"),
        ("!zeta,alpha", "alpha,!zeta"),
        ("example.com/role=db", "example.com/role=db"),
        ("in=notin", "in=notin"),
        ("x in (in,notin)", "x in (in,notin)"),
    ];
    for (input, rendered) in cases {
        check(input, Ok(rendered));
    }
}

#[test]
fn parse_errors() {
    let bad_value = format!(
        "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {LABEL_VALUE}"
    );
    let bad_key =
        format!("unable to parse requirement: <nil>: Invalid value: \"a@b\": name part {QNAME}");
    let cases: &[(&str, &str)] = &[
        ("x=a||y=b", &bad_value),
        ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ("!x=a", "found '=', expected: ',' or 'end of string'"),
        (
            "x<a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "a in",
            "unable to parse requirement: found '' expected: '('",
        ),
        (
            "a in (b",
            "unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            "a in (b c)",
            "unable to parse requirement: found 'c', expected: ',' or ')'",
        ),
        (
            ",a",
            "found ',', expected: !, identifier, or 'end of string'",
        ),
        ("a,", "found '', expected: identifier after ','"),
        (
            "a b",
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            "a=(",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        ("a@b=c", &bad_key),
        (
            "!",
            "unable to parse requirement: found '', expected: identifier",
        ),
    ];
    for (input, message) in cases {
        check(input, Err(message));
    }
}

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn matching() {
    let cases: &[(&str, Value, bool)] = &[
        ("", json!({"x": "y"}), true),
        ("x=y", json!({"x": "y"}), true),
        ("x=y,z=w", json!({"x": "y", "z": "w"}), true),
        ("x!=y,z!=w", json!({"x": "z", "z": "a"}), true),
        ("notin=in", json!({"notin": "in"}), true),
        ("x", json!({"x": "z"}), true),
        ("!x", json!({"y": "z"}), true),
        ("x>1", json!({"x": "2"}), true),
        ("x<1", json!({"x": "0"}), true),
        ("x in (a,b)", json!({"x": "b"}), true),
        ("x notin (a,b)", json!({"x": "c"}), true),
        ("x notin (a,b)", json!({}), true),
        ("x!=y", json!({}), true),
        ("x=z", json!({}), false),
        ("x=y", json!({"x": "z"}), false),
        ("x=y,z=w", json!({"x": "w", "z": "w"}), false),
        ("x!=y,z!=w", json!({"x": "z", "z": "w"}), false),
        ("x", json!({"y": "z"}), false),
        ("!x", json!({"x": "z"}), false),
        ("x>1", json!({"x": "0"}), false),
        ("x>1", json!({"x": "abc"}), false),
        ("x>1", json!({}), false),
        ("x<1", json!({"x": "2"}), false),
        ("x in (a,b)", json!({"x": "c"}), false),
        ("x in (a,b)", json!({}), false),
        ("x notin (a,b)", json!({"x": "a"}), false),
        (
            "foo=bar,foobar=bar,baz=blah",
            json!({"foo": "bar", "baz": "blah"}),
            false,
        ),
    ];
    for (selector, set, want) in cases {
        let parsed = Selector::parse(selector).expect(selector);
        let set = labels(set.clone());
        assert_eq!(parsed.matches(Some(&set)), *want, "{selector} on {set:?}");
    }
}

#[test]
fn no_labels_at_all() {
    let check_none = |s: &str, want: bool| {
        assert_eq!(Selector::parse(s).unwrap().matches(None), want, "{s}");
    };
    check_none("", true);
    check_none("!a", true);
    check_none("a!=b", true);
    check_none("a", false);
    check_none("a=b", false);
}

#[test]
fn selector_accessors() {
    let s = Selector::parse("b=2,a in (x)").unwrap();
    assert!(!s.is_empty());
    assert!(Selector::parse("").unwrap().is_empty());
    let keys: Vec<&str> = s.requirements().iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(s.requirements()[0].op, Operator::In);
    assert_eq!(s.requires_exact_match("a"), Some("x"));
    assert_eq!(s.requires_exact_match("b"), Some("2"));
    assert_eq!(s.requires_exact_match("c"), None);
}

#[test]
fn from_map_is_equality() {
    let m = labels(json!({"tier": "web", "app": "shop"}));
    let s = Selector::from_map(&m);
    assert_eq!(s.to_string(), "app=shop,tier=web");
    assert!(s.matches(Some(&labels(
        json!({"app": "shop", "tier": "web", "x": "y"})
    ))));
    assert!(!s.matches(Some(&labels(json!({"app": "shop"})))));
    assert!(Selector::from_map(&Map::new()).is_empty());
}

#[test]
fn from_label_selector_object() {
    let cases: &[(Value, Result<&str, &str>)] = &[
        (Value::Null, Ok("")),
        (json!({}), Ok("")),
        (json!({"matchLabels": {"app": "web"}}), Ok("app=web")),
        (
            json!({"matchLabels": {"b": "1"}, "matchExpressions": [
                {"key": "a", "operator": "In", "values": ["y", "x"]},
                {"key": "c", "operator": "NotIn", "values": ["z"]},
                {"key": "d", "operator": "Exists"},
                {"key": "e", "operator": "DoesNotExist"},
            ]}),
            Ok("a in (x,y),b=1,c notin (z),d,!e"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            Err("\"Gt\" is not a valid label selector operator"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            Err(
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            Err(
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
        ),
    ];
    for (input, want) in cases {
        let got = Selector::from_label_selector(input)
            .map(|s| s.to_string())
            .map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.map(str::to_string).map_err(str::to_string),
            "{input}"
        );
    }
    let bad_key = Selector::from_label_selector(&json!({"matchLabels": {"-a": "b"}}));
    assert_eq!(
        bad_key,
        Err(SelectorError::Requirement(format!(
            "key: Invalid value: \"-a\": name part {QNAME}"
        )))
    );
    assert!(matches!(
        Selector::from_label_selector(&json!("app=web")),
        Err(SelectorError::Malformed(_))
    ));
}

#[test]
fn requirement_new_aggregates_errors() {
    let err = Requirement::new("-k", Operator::Equals, vec!["a".into(), "-b".into()])
        .expect_err("invalid");
    assert_eq!(
        err.to_string(),
        format!(
            "[key: Invalid value: \"-k\": name part {QNAME}, values: Invalid value: []string{{\"a\", \"-b\"}}: exact-match compatibility requires one single value, values[1][-k]: Invalid value: \"-b\": {LABEL_VALUE}]"
        )
    );
}

#[test]
fn validate_label_selector_messages() {
    let sel = json!({
        "matchLabels": {"app": "-x"},
        "matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["v"]},
            {"key": "c", "operator": "Gt", "values": ["1"]},
            {"key": "-d", "operator": "NotIn", "values": ["ok", "-no"]},
        ],
    });
    let got: Vec<String> = validate_label_selector(&sel, "spec.selector")
        .iter()
        .map(|e| e.message())
        .collect();
    let want = vec![
        format!("spec.selector.matchLabels: Invalid value: \"-x\": {LABEL_VALUE}"),
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'".to_string(),
        "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string(),
        "spec.selector.matchExpressions[2].operator: Invalid value: \"Gt\": not a valid selector operator".to_string(),
        format!("spec.selector.matchExpressions[3].key: Invalid value: \"-d\": name part {QNAME}"),
        format!("spec.selector.matchExpressions[3].values[1]: Invalid value: \"-no\": {LABEL_VALUE}"),
    ];
    assert_eq!(got, want);
    assert!(validate_label_selector(&Value::Null, "spec.selector").is_empty());
    assert!(validate_label_selector(&json!({"matchLabels": {"app": "web"}}), "s").is_empty());
}
