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
    .status(true)
    .stored_as(crate::Conversion {
        storage_group: "autoscaling",
        storage_plural: "horizontalpodautoscalers",
        to_storage,
        from_storage,
    });

fn cpu_target(v: i64) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": v}}})
}

/// An autoscaling/v1 HPA as the autoscaling/v2 object it is stored as: the CPU target becomes
/// a Resource metric, the current CPU utilization a current metric.
pub fn to_storage(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v2");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(t) = spec.remove("targetCPUUtilizationPercentage")
        && let Some(t) = t.as_i64()
    {
        spec.insert("metrics".into(), json!([cpu_target(t)]));
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(c) = status.remove("currentCPUUtilizationPercentage")
        && let Some(c) = c.as_i64()
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
        );
    }
    obj
}

fn cpu_utilization(metrics: Option<&Value>, field: &str) -> Option<Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        let r = m.get("resource")?;
        (m.get("type")? == "Resource" && r.get("name")? == "cpu")
            .then(|| r.get(field)?.get("averageUtilization").cloned())
            .flatten()
    })
}

/// A stored autoscaling/v2 HPA as autoscaling/v1 shows it (only the CPU utilization target
/// has a v1 form).
pub fn from_storage(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v1");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let target = cpu_utilization(spec.get("metrics"), "target");
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(t) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), t);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let current = cpu_utilization(status.get("currentMetrics"), "current");
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(c) = current {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
    }
    obj
}

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
