//! The Job kind (batch/v1): defaults, generated selector, validation, field selectors and table.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use serde_json::{Map, Value, json};

use crate::Column;
use crate::core::pod_defaults::{self, set, set_str};
use crate::typed::Typed;
use crate::util::{AGE, NAME, age, age_cell, arr_at, at, col, name_cell, s, str_at, wide};
use crate::workload::{containers_and_images, selector_string, status_int};

pub static STRATEGY: Typed<Job> = Typed::new("Job", "v1")
    .defaults(defaults)
    .prepare(prepare)
    .validate(crate::batch::validate_job)
    .fields(field)
    .table(COLUMNS, row)
    .status(true);

fn defaults(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    spec_defaults(spec);
    if let Some(labels) = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        && job.metadata.labels.as_ref().is_none_or(|l| l.is_empty())
    {
        job.metadata.labels = Some(labels);
    }
}

/// SetDefaults_Job for the spec.
pub fn spec_defaults(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    set(&mut spec.parallelism, 1);
    let backoff = if spec.backoff_limit_per_index.is_some() {
        i32::MAX
    } else {
        6
    };
    set(&mut spec.backoff_limit, backoff);
    set_str(&mut spec.completion_mode, "NonIndexed");
    set(&mut spec.suspend, false);
    let replacement = if spec.pod_failure_policy.is_some() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_str(&mut spec.pod_replacement_policy, replacement);
    for rule in spec
        .pod_failure_policy
        .iter_mut()
        .flat_map(|p| p.rules.iter_mut())
    {
        for c in rule.on_pod_conditions.iter_mut().flatten() {
            if c.status.is_empty() {
                c.status = "True".to_string();
            }
        }
    }
    pod_defaults::template(&mut spec.template);
}

const LEGACY_NAME: &str = "job-name";
const NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_UID: &str = "controller-uid";
const UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// PrepareForCreate: empty status and, unless `manualSelector`, the generated selector.
fn prepare(obj: &mut Value) {
    obj["status"] = json!({});
    if at(obj, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = str_at(obj, &["metadata", "name"]).unwrap_or("").to_string();
    let uid = str_at(obj, &["metadata", "uid"]).unwrap_or("").to_string();
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let spec = object_entry(root, "spec");
    let template = object_entry(spec, "template");
    let labels = object_entry(object_entry(template, "metadata"), "labels");
    for (key, value) in [
        (LEGACY_NAME, &name),
        (NAME_LABEL, &name),
        (LEGACY_UID, &uid),
        (UID_LABEL, &uid),
    ] {
        labels.entry(key).or_insert_with(|| json!(value));
    }
    let template_labels = labels.clone();
    let selector = object_entry(spec, "selector");
    object_entry(selector, "matchLabels")
        .entry(UID_LABEL)
        .or_insert_with(|| json!(uid));
    let meta = object_entry(root, "metadata");
    let own = object_entry(meta, "labels");
    if own.is_empty() {
        *own = template_labels;
    }
}

/// The object at `key` of `map`, created (or replacing a non-object) when needed.
pub fn object_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

fn field(obj: &Value, path: &str) -> Option<String> {
    (path == "status.successful").then(|| status_int(obj, "succeeded").to_string())
}

static COLUMNS: &[Column] = &[
    NAME,
    col("Status", "Status of the job."),
    col("Completions", "The completion status of the job."),
    col("Duration", "Time required to complete the job."),
    AGE,
    wide("Containers", "Names of each container in the template."),
    wide(
        "Images",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

fn has_condition(obj: &Value, kind: &str) -> bool {
    arr_at(obj, &["status", "conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == Some(kind) && str_at(c, &["status"]) == Some("True"))
}

fn status(obj: &Value) -> &'static str {
    let deleting = at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null());
    if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn completions(obj: &Value) -> String {
    let succeeded = status_int(obj, "succeeded");
    if let Some(c) = at(obj, &["spec", "completions"]).and_then(Value::as_i64) {
        return format!("{succeeded}/{c}");
    }
    match at(obj, &["spec", "parallelism"])
        .and_then(Value::as_i64)
        .unwrap_or(0)
    {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

fn duration(obj: &Value, now: Timestamp) -> String {
    let Some(start) = str_at(obj, &["status", "startTime"]) else {
        return String::new();
    };
    let end = str_at(obj, &["status", "completionTime"])
        .and_then(|c| c.parse::<Timestamp>().ok())
        .unwrap_or(now);
    age(Some(start), end)
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = containers_and_images(at(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        s(status(obj)),
        s(completions(obj)),
        s(duration(obj, now)),
        age_cell(obj, now),
        containers,
        images,
        s(selector_string(at(obj, &["spec", "selector"]))),
    ]
}
