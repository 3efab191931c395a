//! PATCH bodies: JSON patch (RFC 6902), merge patch (RFC 7386), strategic merge patch with
//! upstream's merge keys and directives, and apply patches.

use bytes::Bytes;
use keelson_apimachinery::ApiError;
use keelson_kinds::Kind;
use serde_json::{Map, Value};

use crate::body;

type Result<T, E = ApiError> = std::result::Result<T, E>;

fn unprocessable(message: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message,
        details: None,
    }
}

/// Applies a patch of content type `ct` to `current`.
pub fn apply(_kind: &Kind, ct: &str, current: &Value, patch: &Bytes) -> Result<Value> {
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                unprocessable(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            let p = parse(patch, "application/json")?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" => {
            let p = parse(patch, "application/json")?;
            let mut doc = current.clone();
            strategic_merge(&mut doc, &p, "")?;
            Ok(doc)
        }
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            let p = parse(patch, "application/yaml")?;
            let mut doc = current.clone();
            strategic_merge(&mut doc, &p, "")?;
            Ok(doc)
        }
        _ => Err(ApiError::unsupported_media_type_accepted(&[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ])),
    }
}

fn parse(patch: &Bytes, ct: &str) -> Result<Value> {
    body::decode(patch, Some(ct))
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {}", e.message)))
}

/// Primitive lists that upstream merges as sets.
fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies a strategic merge patch `patch` to `target` (upstream's semantics for the
/// directives `$patch`, `$retainKeys`, `$setElementOrder/...` and `$deleteFromPrimitiveList/...`).
pub fn strategic_merge(target: &mut Value, patch: &Value, field: &str) -> Result<()> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = p.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unknown patch type: {other} at {field}"
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object");
    let retain: Option<Vec<String>> = p.get("$retainKeys").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    });
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list_field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Value::Array(del)) = (t.get_mut(list_field), v) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(cur @ Value::Object(_)), Value::Object(_)) => {
                strategic_merge(cur, v, k)?;
            }
            (Some(Value::Array(cur)), Value::Array(items)) => {
                if let Some(key) =
                    crate::fields::list_key(k, items).filter(|_| items.iter().all(Value::is_object))
                {
                    merge_list(cur, items, key, k)?;
                    if let Some(Value::Array(order)) = p.get(&format!("$setElementOrder/{k}")) {
                        reorder(cur, order, key);
                    }
                } else if merges_primitives(k) {
                    for i in items {
                        if !cur.contains(i) {
                            cur.push(i.clone());
                        }
                    }
                } else {
                    *cur = strip_directives(items);
                }
            }
            _ => {
                t.insert(k.clone(), strip_value(v));
            }
        }
    }
    if let Some(keep) = retain {
        t.retain(|k, _| keep.contains(k));
    }
    Ok(())
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str, field: &str) -> Result<()> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *cur = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(());
    }
    for item in items {
        let id = item.get(key);
        let pos = id.and_then(|id| cur.iter().position(|c| c.get(key) == Some(id)));
        match (item.get("$patch").and_then(Value::as_str), pos) {
            (Some("delete"), Some(i)) => {
                cur.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => strategic_merge(&mut cur[i], item, field)?,
            (_, None) => cur.push(strip_value(item)),
        }
    }
    Ok(())
}

fn reorder(cur: &mut [Value], order: &[Value], key: &str) {
    let rank = |v: &Value| {
        order
            .iter()
            .position(|o| o.get(key) == v.get(key))
            .unwrap_or(usize::MAX)
    };
    cur.sort_by_key(rank);
}

fn strip_directives(items: &[Value]) -> Vec<Value> {
    items.iter().map(strip_value).collect()
}

/// A patch value without directive keys, for fields that had no current value.
fn strip_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_value(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(current: Value, patch: Value, want: Value) {
        let mut doc = current;
        strategic_merge(&mut doc, &patch, "").unwrap();
        assert_eq!(doc, want);
    }

    #[test]
    fn containers_merge_by_name() {
        check(
            json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "y:2"}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}]}}),
        );
    }

    #[test]
    fn directives() {
        check(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            json!({"spec": {"containers": [{"name": "b"}]}}),
        );
        check(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}}),
        );
        check(
            json!({"metadata": {"finalizers": ["x", "y"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
            json!({"metadata": {"finalizers": ["y"]}}),
        );
        check(
            json!({"spec": {"tolerations": [{"key": "a"}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}]}}),
        );
    }
}
