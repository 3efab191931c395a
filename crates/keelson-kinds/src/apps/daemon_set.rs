//! The DaemonSet kind (apps/v1): defaults, validation and the `kubectl get daemonsets` table.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, RollingUpdateDaemonSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::{self, set, set_str};
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, at, col, i, int_col, name_cell, s, wide};
use crate::workload::{containers_and_images, format_labels, selector_string, status_int};

pub static STRATEGY: Typed<DaemonSet> = Typed::new("DaemonSet", "v1")
    .defaults(defaults)
    .prepare(crate::apps::empty_status)
    .validate(crate::apps::validate_daemon_set)
    .table(COLUMNS, row)
    .status(true);

fn defaults(ds: &mut DaemonSet) {
    let spec = ds.spec.get_or_insert_with(Default::default);
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        set(&mut ru.max_unavailable, IntOrString::Int(1));
        set(&mut ru.max_surge, IntOrString::Int(0));
    }
    set(&mut spec.revision_history_limit, 10);
    pod_defaults::template(&mut spec.template);
}

static COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Desired",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    ),
    int_col(
        "Current",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
    ),
    int_col(
        "Ready",
        "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
    ),
    int_col(
        "Up-to-date",
        "The total number of nodes that are running updated daemon pod",
    ),
    int_col(
        "Available",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
    ),
    AGE,
    wide("Containers", "Names of each container in the template."),
    wide(
        "Images",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let pod_spec = at(obj, &["spec", "template", "spec"]);
    let (containers, images) = containers_and_images(pod_spec);
    let node_selector = pod_spec
        .and_then(|p| p.get("nodeSelector"))
        .and_then(Value::as_object);
    vec![
        name_cell(obj),
        i(status_int(obj, "desiredNumberScheduled")),
        i(status_int(obj, "currentNumberScheduled")),
        i(status_int(obj, "numberReady")),
        i(status_int(obj, "updatedNumberScheduled")),
        i(status_int(obj, "numberAvailable")),
        s(format_labels(node_selector)),
        age_cell(obj, now),
        containers,
        images,
        s(selector_string(at(obj, &["spec", "selector"]))),
    ]
}
