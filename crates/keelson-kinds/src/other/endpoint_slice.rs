//! The EndpointSlice kind (discovery.k8s.io/v1): defaults and its table.

use jiff::Timestamp;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::{set, set_str};
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, col, name_cell, s, str_at};

pub static STRATEGY: Typed<EndpointSlice> = Typed::new("EndpointSlice", "v1")
    .defaults(defaults)
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row);

fn defaults(slice: &mut EndpointSlice) {
    for p in slice.ports.iter_mut().flatten() {
        set(&mut p.name, String::new());
        set_str(&mut p.protocol, "TCP");
    }
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation.",
    ),
    col(
        "Ports",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

/// upstream's listWithMoreString: at most three, ` + N more...`, `<unset>` when empty.
fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    let count = items.len();
    let joined = items.into_iter().take(MAX).collect::<Vec<_>>().join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = arr_at(obj, &["ports"])
        .iter()
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => str_at(p, &["name"]).unwrap_or("*").to_string(),
        })
        .collect();
    let endpoints = arr_at(obj, &["endpoints"])
        .iter()
        .flat_map(|e| {
            arr_at(e, &["addresses"])
                .iter()
                .map(|a| a.as_str().unwrap_or("").to_string())
        })
        .collect();
    vec![
        name_cell(obj),
        s(str_at(obj, &["addressType"]).unwrap_or("")),
        s(list_with_more(ports)),
        s(list_with_more(endpoints)),
        age_cell(obj, now),
    ]
}
