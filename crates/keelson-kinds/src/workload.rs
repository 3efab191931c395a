//! Pieces shared by the workload kinds (deployments, replica sets, stateful sets, daemon sets,
//! replication controllers, jobs, cron jobs): template cells and selector strings.

use serde_json::{Map, Value};

use crate::util::{arr_at, at, str_at};

/// The Containers and Images cells of a pod spec: names and images joined with commas.
pub fn containers_and_images(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec.map(|p| arr_at(p, &["containers"])).unwrap_or(&[]);
    let names: Vec<&str> = containers
        .iter()
        .map(|c| str_at(c, &["name"]).unwrap_or(""))
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| str_at(c, &["image"]).unwrap_or(""))
        .collect();
    (
        Value::String(names.join(",")),
        Value::String(images.join(",")),
    )
}

/// The canonical string of a `LabelSelector` as upstream's `Selector.String()`: requirements
/// sorted by key, `k=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`; "" for an empty or absent one.
pub fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for e in arr_at(sel, &["matchExpressions"]) {
        let key = str_at(e, &["key"]).unwrap_or("");
        let mut values: Vec<&str> = arr_at(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        let text = match str_at(e, &["operator"]).unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// upstream's `FormatLabelSelector`: the selector string, or `<none>` when empty.
pub fn format_label_selector(sel: Option<&Value>) -> String {
    let s = selector_string(sel);
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// upstream's `labels.FormatLabels`: `k=v` sorted and comma-joined, or `<none>`.
pub fn format_labels(m: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort_unstable();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// An integer in the status (0 when absent), as a cell.
pub fn status_int(obj: &Value, field: &str) -> i64 {
    at(obj, &["status", field])
        .and_then(Value::as_i64)
        .unwrap_or(0)
}
