//! Field validation: the fields of a request body that the kind's type does not know.
//!
//! The kind's strategy decodes a body into its typed form and encodes it again; every field of
//! the body that did not survive the round trip is unknown (upstream's strict decoding).

use serde_json::Value;

/// Fields a strategy consumes while defaulting, so they are known although never stored:
/// Secret's `stringData` (merged into `data`); status and managedFields, which the server owns.
const WRITE_ONLY: &[&str] = &["stringData", "status", "metadata.managedFields"];

/// Paths of the fields in `input` that are absent from `decoded`, as upstream prints them
/// (`spec.containers[0].imagee`).
pub fn unknown_fields(input: &Value, decoded: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, decoded, &mut String::new(), &mut out);
    out
}

fn walk(input: &Value, decoded: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            for (k, v) in i {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match d.get(k) {
                    Some(dv) => walk(v, dv, path, out),
                    None if v.is_null() => {}
                    None if WRITE_ONLY.contains(&path.as_str()) => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(d)) if i.len() == d.len() => {
            for (n, (iv, dv)) in i.iter().zip(d).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                walk(iv, dv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_with_paths() {
        let input = json!({"spec": {"containers": [{"name": "a", "imagee": "x"}], "nodeName": null}, "foo": 1});
        let decoded = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            unknown_fields(&input, &decoded),
            vec!["spec.containers[0].imagee", "foo"]
        );
    }

    #[test]
    fn known_fields_pass() {
        let v = json!({"metadata": {"labels": {"a": "b"}}, "data": {"k": "v"}});
        assert!(unknown_fields(&v, &v).is_empty());
    }
}
