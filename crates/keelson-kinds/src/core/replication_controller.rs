//! The ReplicationController kind (v1): defaults, validation, field selectors and its table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ReplicationController;
use serde_json::Value;

use crate::apps::replica_set;
use crate::core::pod_defaults::{self, set};
use crate::typed::Typed;
use crate::util::{at, s};
use crate::workload::format_labels;

pub static STRATEGY: Typed<ReplicationController> = Typed::new("ReplicationController", "v1")
    .defaults(defaults)
    .prepare(crate::apps::empty_status)
    .validate(crate::core::validation::validate_replication_controller)
    .fields(crate::apps::status_replicas_field)
    .table(replica_set::COLUMNS, row)
    .status(true);

fn defaults(rc: &mut ReplicationController) {
    let spec = rc.spec.get_or_insert_with(Default::default);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels.filter(|l| !l.is_empty()) {
        if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
            spec.selector = Some(labels.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            rc.metadata.labels = Some(labels);
        }
    }
    set(&mut spec.replicas, 1);
    if let Some(t) = &mut spec.template {
        pod_defaults::template(t);
    }
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = replica_set::cells(obj, now);
    cells.push(s(format_labels(
        at(obj, &["spec", "selector"]).and_then(Value::as_object),
    )));
    cells
}
