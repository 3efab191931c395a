//! The Secret kind (v1): defaults, validation, field selectors and its table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::set_str;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, col, field_string, i, int_col, name_cell, s};

pub static STRATEGY: Typed<Secret> = Typed::new("Secret", "v1")
    .defaults(defaults)
    .write_only(&["stringData"])
    .validate(crate::core::validation::validate_secret)
    .fields(field)
    .table(COLUMNS, row);

/// Upstream's defaults, and `stringData` merged into `data` (it is write-only: the API never
/// stores or returns it, and its keys win over the same keys in `data`).
fn defaults(secret: &mut Secret) {
    set_str(&mut secret.type_, "Opaque");
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in string_data {
            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
        }
    }
}

fn field(obj: &Value, path: &str) -> Option<String> {
    (path == "type").then(|| field_string(obj.get("type")))
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    int_col(
        "Data",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let data = obj
        .get("data")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    vec![
        name_cell(obj),
        s(obj.get("type").and_then(Value::as_str).unwrap_or("")),
        i(data as i64),
        age_cell(obj, now),
    ]
}
