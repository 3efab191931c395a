//! The HorizontalPodAutoscaler kind (autoscaling/v1): defaults, initial status and its table.

use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use serde_json::{Value, json};

use crate::core::pod_defaults::set;
use crate::other::hpa_v2::{COLUMNS, row_with};
use crate::typed::Typed;
use crate::util::int_at;

pub static STRATEGY: Typed<HorizontalPodAutoscaler> = Typed::new("HorizontalPodAutoscaler", "v1")
    .defaults(defaults)
    .prepare(|obj| obj["status"] = json!({"currentReplicas": 0, "desiredReplicas": 0}))
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row)
    .status(true);

/// minReplicas 1, and the CPU target the v2 default metric shows through v1 (80%).
fn defaults(hpa: &mut HorizontalPodAutoscaler) {
    let spec = hpa.spec.get_or_insert_with(Default::default);
    set(&mut spec.min_replicas, 1);
    set(&mut spec.target_cpu_utilization_percentage, 80);
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let current = int_at(obj, &["status", "currentCPUUtilizationPercentage"])
        .map_or_else(|| "<unknown>".to_string(), |c| format!("{c}%"));
    let targets = match int_at(obj, &["spec", "targetCPUUtilizationPercentage"]) {
        Some(t) => format!("cpu: {current}/{t}%"),
        None => "<none>".to_string(),
    };
    row_with(obj, now, targets)
}
