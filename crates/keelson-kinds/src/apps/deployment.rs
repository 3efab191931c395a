//! The Deployment kind (apps/v1): defaults, validation and the `kubectl get deployments` table.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::{self, set, set_str};
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, at, col, i, name_cell, s, wide};
use crate::workload::{containers_and_images, selector_string, status_int};

pub static STRATEGY: Typed<Deployment> = Typed::new("Deployment", "v1")
    .defaults(defaults)
    .prepare(crate::apps::empty_status)
    .validate(crate::apps::validate_replicated)
    .table(COLUMNS, row)
    .status(true);

fn defaults(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    set(&mut spec.replicas, 1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        set(
            &mut ru.max_unavailable,
            IntOrString::String("25%".to_string()),
        );
        set(&mut ru.max_surge, IntOrString::String("25%".to_string()));
    }
    set(&mut spec.revision_history_limit, 10);
    set(&mut spec.progress_deadline_seconds, 600);
    pod_defaults::template(&mut spec.template);
}

static COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    wide("Containers", "Names of each container in the template."),
    wide(
        "Images",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let desired = at(obj, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let (containers, images) = containers_and_images(at(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        s(format!("{}/{desired}", status_int(obj, "readyReplicas"))),
        i(status_int(obj, "updatedReplicas")),
        i(status_int(obj, "availableReplicas")),
        age_cell(obj, now),
        containers,
        images,
        s(selector_string(at(obj, &["spec", "selector"]))),
    ]
}
