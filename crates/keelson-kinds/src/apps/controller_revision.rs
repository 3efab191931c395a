//! The ControllerRevision kind (apps/v1): the `kubectl get controllerrevisions` table.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, at, col, i, int_col, name_cell, s, str_at};

pub static STRATEGY: Typed<ControllerRevision> =
    Typed::new("ControllerRevision", "v1").table(COLUMNS, row);

static COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "Controller of the object"),
    int_col(
        "Revision",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let controller = arr_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| at(o, &["controller"]).and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let api_version = str_at(o, &["apiVersion"]).unwrap_or("");
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = str_at(o, &["kind"]).unwrap_or("").to_lowercase();
            let resource = if group.is_empty() {
                kind
            } else {
                format!("{kind}.{group}")
            };
            format!("{resource}/{}", str_at(o, &["name"]).unwrap_or(""))
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        name_cell(obj),
        s(controller),
        i(at(obj, &["revision"]).and_then(Value::as_i64).unwrap_or(0)),
        age_cell(obj, now),
    ]
}
