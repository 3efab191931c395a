//! The ServiceAccount kind (v1): the `kubectl get serviceaccounts` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, i, int_col, name_cell};

pub static STRATEGY: Typed<ServiceAccount> = Typed::new("ServiceAccount", "v1")
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row);

static COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Secrets",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        i(arr_at(obj, &["secrets"]).len() as i64),
        age_cell(obj, now),
    ]
}
