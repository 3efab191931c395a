//! The HorizontalPodAutoscaler kind (autoscaling/v2): defaults, initial status and its table.

use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use serde_json::{Value, json};

use crate::Column;
use crate::core::pod_defaults::{set, set_str};
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, at, col, i, int_at, name_cell, s, str_at};

pub static STRATEGY: Typed<HorizontalPodAutoscaler> = Typed::new("HorizontalPodAutoscaler", "v2")
    .defaults(defaults)
    .prepare(|obj| obj["status"] = json!({"desiredReplicas": 0}))
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row)
    .status(true);

fn policy(kind: &str, value: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: kind.to_string(),
        value,
        period_seconds: 15,
    }
}

fn rules(r: &mut Option<HPAScalingRules>, window: i32, policies: Vec<HPAScalingPolicy>) {
    let r = r.get_or_insert_with(HPAScalingRules::default);
    set(&mut r.stabilization_window_seconds, window);
    set_str(&mut r.select_policy, "Max");
    set(&mut r.policies, policies);
}

fn defaults(hpa: &mut HorizontalPodAutoscaler) {
    let spec = hpa.spec.get_or_insert_with(Default::default);
    set(&mut spec.min_replicas, 1);
    if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
        spec.metrics = Some(vec![MetricSpec {
            type_: "Resource".to_string(),
            resource: Some(ResourceMetricSource {
                name: "cpu".to_string(),
                target: MetricTarget {
                    type_: "Utilization".to_string(),
                    average_utilization: Some(80),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]);
    }
    if let Some(b) = &mut spec.behavior {
        rules(
            &mut b.scale_up,
            0,
            vec![policy("Pods", 4), policy("Percent", 100)],
        );
        rules(&mut b.scale_down, 300, vec![policy("Percent", 100)]);
    }
}

pub static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Reference",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
    ),
    col(
        "Targets",
        "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
    ),
    col(
        "MinPods",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    col(
        "MaxPods",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.",
    ),
    col(
        "Replicas",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
    ),
    AGE,
];

/// One metric as upstream's formatHPAMetrics prints it.
fn metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    let q = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    match str_at(spec, &["type"]).unwrap_or("") {
        kind @ ("External" | "Object") => {
            let key = if kind == "External" {
                "external"
            } else {
                "object"
            };
            let cur = status.and_then(|s| s.get(key));
            match q(at(spec, &[key, "target", "averageValue"])) {
                Some(target) => format!(
                    "{}/{target} (avg)",
                    q(cur.and_then(|c| at(c, &["current", "averageValue"])))
                        .unwrap_or_else(unknown)
                ),
                None => format!(
                    "{}/{}",
                    q(cur.and_then(|c| at(c, &["current", "value"]))).unwrap_or_else(unknown),
                    q(at(spec, &[key, "target", "value"])).unwrap_or_default()
                ),
            }
        }
        "Pods" => format!(
            "{}/{}",
            q(status.and_then(|s| at(s, &["pods", "current", "averageValue"])))
                .unwrap_or_else(unknown),
            q(at(spec, &["pods", "target", "averageValue"])).unwrap_or_default()
        ),
        kind @ ("Resource" | "ContainerResource") => {
            let key = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let name = str_at(spec, &[key, "name"]).unwrap_or("");
            let cur = status.and_then(|s| s.get(key));
            match q(at(spec, &[key, "target", "averageValue"])) {
                Some(target) => format!(
                    "{name}: {}/{target}",
                    q(cur.and_then(|c| at(c, &["current", "averageValue"])))
                        .unwrap_or_else(unknown)
                ),
                None => {
                    let current = cur
                        .and_then(|c| int_at(c, &["current", "averageUtilization"]))
                        .map_or_else(unknown, |u| format!("{u}%"));
                    let target = int_at(spec, &[key, "target", "averageUtilization"])
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{name}: {current}/{target}")
                }
            }
        }
        _ => "<unknown type>".to_string(),
    }
}

/// upstream's formatHPAMetrics: two at most, then ` + N more...`; `<none>` without metrics.
pub fn targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(n, spec)| metric(spec, statuses.get(n)))
        .collect();
    if list.len() > 2 {
        format!("{} + {} more...", list[..2].join(", "), list.len() - 2)
    } else {
        list.join(", ")
    }
}

/// The row given the Targets cell, shared with autoscaling/v1.
pub fn row_with(obj: &Value, now: Timestamp, targets: String) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(obj, &["spec", "scaleTargetRef", "kind"]).unwrap_or(""),
        str_at(obj, &["spec", "scaleTargetRef", "name"]).unwrap_or("")
    );
    let min = int_at(obj, &["spec", "minReplicas"])
        .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        name_cell(obj),
        s(reference),
        s(targets),
        s(min),
        i(int_at(obj, &["spec", "maxReplicas"]).unwrap_or(0)),
        i(int_at(obj, &["status", "currentReplicas"]).unwrap_or(0)),
        age_cell(obj, now),
    ]
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let t = targets(
        arr_at(obj, &["spec", "metrics"]),
        arr_at(obj, &["status", "currentMetrics"]),
    );
    row_with(obj, now, t)
}
