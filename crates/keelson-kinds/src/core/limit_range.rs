//! The LimitRange kind (v1): defaults of container items and its table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem};
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{NAME, name_cell, s, str_at};

pub static STRATEGY: Typed<LimitRange> = Typed::new("LimitRange", "v1")
    .defaults(defaults)
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row);

fn defaults(lr: &mut LimitRange) {
    for item in lr.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
        item_defaults(item);
    }
}

/// SetDefaults_LimitRangeItem: a container's default limit is the max, its default request
/// the default limit, else the min.
fn item_defaults(item: &mut LimitRangeItem) {
    if item.type_ != "Container" {
        return;
    }
    let mut default = item.default.take().unwrap_or_default();
    for (k, v) in item.max.iter().flatten() {
        default.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut request = item.default_request.take().unwrap_or_default();
    for (k, v) in default.iter().chain(item.min.iter().flatten()) {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    item.default = (!default.is_empty()).then_some(default);
    item.default_request = (!request.is_empty()).then_some(request);
}

static COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: crate::util::AGE_DESC,
        priority: 0,
    },
];

fn row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        s(str_at(obj, &["metadata", "creationTimestamp"]).unwrap_or("")),
    ]
}
