//! The PriorityClass kind (scheduling.k8s.io/v1): defaults and its table.

use jiff::Timestamp;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::set_str;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, col, i, int_col, name_cell, s, str_at};

pub static STRATEGY: Typed<PriorityClass> = Typed::new("PriorityClass", "v1")
    .defaults(|pc: &mut PriorityClass| set_str(&mut pc.preemption_policy, "PreemptLowerPriority"))
    .validate(crate::core::validation::validate_cluster_plain)
    .table(COLUMNS, row);

static COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Value",
        "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
    ),
    Column {
        name: "Global-Default",
        type_: "boolean",
        format: "",
        description: "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
        priority: 0,
    },
    AGE,
    col(
        "PreemptionPolicy",
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        i(obj.get("value").and_then(Value::as_i64).unwrap_or(0)),
        Value::Bool(
            obj.get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        age_cell(obj, now),
        s(str_at(obj, &["preemptionPolicy"]).unwrap_or("")),
    ]
}
