//! The ConfigMap kind (v1): validation and the `kubectl get configmaps` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, i, int_col, name_cell};

pub static STRATEGY: Typed<ConfigMap> = Typed::new("ConfigMap", "v1")
    .validate(crate::core::validation::validate_config_map)
    .table(COLUMNS, row);

static COLUMNS: &[Column] = &[
    NAME,
    int_col("Data", "Data contains the configuration data."),
    AGE,
];

fn count(obj: &Value, key: &str) -> usize {
    obj.get(key)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        i((count(obj, "data") + count(obj, "binaryData")) as i64),
        age_cell(obj, now),
    ]
}
