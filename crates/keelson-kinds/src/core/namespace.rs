//! The Namespace kind (v1): defaults, initial status, field selectors and its table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use serde_json::{Value, json};

use crate::Column;
use crate::core::pod_defaults::set_str;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, at, col, field_string, name_cell, s, str_at};

pub static STRATEGY: Typed<Namespace> = Typed::new("Namespace", "v1")
    .defaults(defaults)
    .prepare(prepare)
    .validate(crate::core::validation::validate_namespace)
    .fields(field)
    .table(COLUMNS, row)
    .status(false);

/// The label every namespace carries with its own name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn defaults(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(NAME_LABEL.to_string(), name);
    }
    set_str(
        &mut ns.status.get_or_insert_with(Default::default).phase,
        "Active",
    );
}

/// PrepareForCreate: active, with the `kubernetes` finalizer, labelled with its name.
fn prepare(obj: &mut Value) {
    obj["status"] = json!({"phase": "Active"});
    let Some(o) = obj.as_object_mut() else { return };
    let spec = crate::batch::job::object_entry(o, "spec");
    let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == "kubernetes")
    {
        list.push(json!("kubernetes"));
    }
    let name = str_at(obj, &["metadata", "name"]).map(str::to_string);
    if let (Some(name), Some(o)) = (name, obj.as_object_mut()) {
        let meta = crate::batch::job::object_entry(o, "metadata");
        crate::batch::job::object_entry(meta, "labels").insert(NAME_LABEL.to_string(), json!(name));
    }
}

fn field(obj: &Value, path: &str) -> Option<String> {
    (path == "status.phase").then(|| field_string(at(obj, &["status", "phase"])))
}

static COLUMNS: &[Column] = &[NAME, col("Status", "The status of the namespace"), AGE];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        s(str_at(obj, &["status", "phase"]).unwrap_or("")),
        age_cell(obj, now),
    ]
}
