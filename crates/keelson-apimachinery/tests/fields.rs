//! Field selector parsing, escaping and matching.

use keelson_apimachinery::fields::{FieldOp, FieldSelector, escape_value, unescape_value};

fn check(input: &str, want: Result<&[(&str, FieldOp, &str)], &str>) {
    let got = FieldSelector::parse(input).map(|s| {
        s.requirements()
            .iter()
            .map(|r| (r.field.clone(), r.op, r.value.clone()))
            .collect::<Vec<_>>()
    });
    let want = want
        .map(|reqs| {
            reqs.iter()
                .map(|(f, op, v)| (f.to_string(), *op, v.to_string()))
                .collect::<Vec<_>>()
        })
        .map_err(str::to_string);
    assert_eq!(got, want, "{input:?}");
}

#[test]
fn parse_terms() {
    use FieldOp::{Equals as Eq, NotEquals as Ne};
    check("", Ok(&[]));
    check("metadata.name=foo", Ok(&[("metadata.name", Eq, "foo")]));
    check("metadata.name==foo", Ok(&[("metadata.name", Eq, "foo")]));
    check(
        "status.phase!=Running",
        Ok(&[("status.phase", Ne, "Running")]),
    );
    check(
        "spec.nodeName=n1,metadata.namespace!=kube-system",
        Ok(&[
            ("metadata.namespace", Ne, "kube-system"),
            ("spec.nodeName", Eq, "n1"),
        ]),
    );
    check("a=", Ok(&[("a", Eq, "")]));
    check("a=b\\,c\\=d\\\\e", Ok(&[("a", Eq, "b,c=d\\e")]));
    check("a=b,,c=d", Ok(&[("a", Eq, "b"), ("c", Eq, "d")]));
    check("=", Ok(&[]));
    check("a=!b", Ok(&[("a", Eq, "!b")]));
}

#[test]
fn parse_errors() {
    check(
        "foo",
        Err("invalid selector: 'foo'; can't understand 'foo'"),
    );
    check(
        "a=b,foo",
        Err("invalid selector: 'a=b,foo'; can't understand 'foo'"),
    );
    check(
        "a=b=c",
        Err("invalid field selector: unescaped character in value: 61"),
    );
    check(
        "a=b\\c",
        Err("invalid field selector: invalid escape sequence: \\c"),
    );
    check(
        "a=b\\",
        Err("invalid field selector: invalid escape sequence: \\"),
    );
}

#[test]
fn escaping_round_trips() {
    for raw in ["plain", "a,b", "x=y", "back\\slash", ""] {
        assert_eq!(unescape_value(&escape_value(raw)).as_deref(), Ok(raw));
    }
    assert_eq!(escape_value("a,b=c\\"), "a\\,b\\=c\\\\");
    let s = FieldSelector::parse("b!=x\\,y,a=1").unwrap();
    assert_eq!(s.to_string(), "a=1,b!=x\\,y");
}

#[test]
fn matching() {
    let get = |field: &str| match field {
        "metadata.name" => Some("web".to_string()),
        "status.phase" => Some("Running".to_string()),
        _ => None,
    };
    let cases = [
        ("", true),
        ("metadata.name=web", true),
        ("metadata.name=db", false),
        ("metadata.name!=db", true),
        ("metadata.name=web,status.phase=Running", true),
        ("metadata.name=web,status.phase!=Running", false),
        ("spec.nodeName=", true),
        ("spec.nodeName!=", false),
        ("spec.nodeName=n1", false),
    ];
    for (selector, want) in cases {
        let s = FieldSelector::parse(selector).expect(selector);
        assert_eq!(s.matches(get), want, "{selector}");
    }
}

#[test]
fn accessors() {
    let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
    assert!(!s.is_empty());
    assert!(FieldSelector::parse("").unwrap().is_empty());
    assert_eq!(s.requires_exact_match("spec.nodeName"), Some("n1"));
    assert_eq!(s.requires_exact_match("status.phase"), None);
}
