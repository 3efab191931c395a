//! The ResourceQuota kind (v1): the `kubectl get resourcequotas` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, at, col, name_cell, s, str_at};

pub static STRATEGY: Typed<ResourceQuota> = Typed::new("ResourceQuota", "v1")
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row)
    .status(false);

static COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col(
        "Request",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let hard = at(obj, &["status", "hard"]).and_then(Value::as_object);
    let mut names: Vec<&String> = hard.into_iter().flat_map(|h| h.keys()).collect();
    names.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for name in names {
        let used = str_at(obj, &["status", "used", name]).unwrap_or("0");
        let max = hard
            .and_then(|h| h.get(name))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let text = format!("{name}: {used}/{max}");
        if name.split('.').next() == Some("limits") && name.contains('.') {
            limits.push(text);
        } else {
            requests.push(text);
        }
    }
    vec![
        name_cell(obj),
        age_cell(obj, now),
        s(requests.join(", ")),
        s(limits.join(", ")),
    ]
}
