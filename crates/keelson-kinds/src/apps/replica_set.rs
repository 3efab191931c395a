//! The ReplicaSet kind (apps/v1): defaults, validation, field selectors and its table.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::{self, set};
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, at, i, int_col, name_cell, s, wide};
use crate::workload::{containers_and_images, selector_string, status_int};

pub static STRATEGY: Typed<ReplicaSet> = Typed::new("ReplicaSet", "v1")
    .defaults(defaults)
    .prepare(crate::apps::empty_status)
    .validate(crate::apps::validate_replicated)
    .fields(crate::apps::status_replicas_field)
    .table(COLUMNS, row)
    .status(true);

fn defaults(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    set(&mut spec.replicas, 1);
    if let Some(t) = &mut spec.template {
        pod_defaults::template(t);
    }
}

/// The columns replica sets and replication controllers share.
pub static COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Desired",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    ),
    int_col(
        "Current",
        "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    ),
    int_col(
        "Ready",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    wide("Containers", "Names of each container in the template."),
    wide(
        "Images",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

/// The cells before the selector, shared with replication controllers.
pub fn cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = containers_and_images(at(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        i(at(obj, &["spec", "replicas"])
            .and_then(Value::as_i64)
            .unwrap_or(0)),
        i(status_int(obj, "replicas")),
        i(status_int(obj, "readyReplicas")),
        age_cell(obj, now),
        containers,
        images,
    ]
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = cells(obj, now);
    cells.push(s(selector_string(at(obj, &["spec", "selector"]))));
    cells
}
