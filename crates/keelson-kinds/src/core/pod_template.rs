//! The PodTemplate kind (v1): pod defaults for the template and its table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplate;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults;
use crate::typed::Typed;
use crate::util::{NAME_DESC, at, col, name_cell, s};
use crate::workload::{containers_and_images, format_labels};

pub static STRATEGY: Typed<PodTemplate> = Typed::new("PodTemplate", "v1")
    .defaults(|pt: &mut PodTemplate| {
        if let Some(t) = &mut pt.template {
            pod_defaults::template(t);
        }
    })
    .validate(validate)
    .table(COLUMNS, row);

fn validate(obj: &Value, old: Option<&Value>) -> Vec<keelson_apimachinery::FieldError> {
    let mut errs = crate::core::validation::validate_plain(obj, old);
    if let Some(t) = obj.get("template") {
        errs.extend(crate::core::pod_validation::validate_template(
            t,
            "template",
            old.and_then(|o| o.get("template")),
        ));
    }
    errs
}

static COLUMNS: &[Column] = &[
    Column {
        name: "Template",
        type_: "string",
        format: "name",
        description: NAME_DESC,
        priority: 0,
    },
    col("Containers", "Names of each container in the template."),
    col(
        "Images",
        "Images referenced by each container in the template.",
    ),
    col("Pod Labels", "The labels for the pod template."),
];

fn row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let (containers, images) = containers_and_images(at(obj, &["template", "spec"]));
    let labels = at(obj, &["template", "metadata", "labels"]).and_then(Value::as_object);
    vec![name_cell(obj), containers, images, s(format_labels(labels))]
}
