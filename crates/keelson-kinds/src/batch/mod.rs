//! The `batch/v1` kinds, and their validation.

use keelson_apimachinery::FieldError;
use keelson_apimachinery::labels::{Selector, validate_label_selector};
use serde_json::{Value, json};

use crate::core::pod_validation::validate_template;
use crate::core::validation::validate_plain;

pub mod cron_job;
pub mod job;

/// The rules of a job spec at `field` (`spec`, or `spec.jobTemplate.spec`).
fn job_spec_rules(
    spec: &Value,
    field: &str,
    old: Option<&Value>,
    generated: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
    ] {
        if let Some(n) = spec.get(key).and_then(Value::as_i64).filter(|n| *n < 0) {
            errs.push(FieldError::invalid(
                &format!("{field}.{key}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None if generated => errs.push(FieldError::required(&format!("{field}.selector"), "")),
        None => {}
        Some(sel) => {
            errs.extend(validate_label_selector(sel, &format!("{field}.selector")));
            let labels = spec
                .pointer("/template/metadata/labels")
                .and_then(Value::as_object);
            if let Ok(s) = Selector::from_label_selector(sel)
                && !s.is_empty()
                && !s.matches(labels)
            {
                errs.push(FieldError::invalid(
                    &format!("{field}.template.metadata.labels"),
                    labels.map_or(json!({}), |l| Value::Object(l.clone())),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    errs.extend(validate_template(
        template,
        &format!("{field}.template"),
        None,
    ));
    let policy = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if policy != "OnFailure" && policy != "Never" {
        errs.push(FieldError::required(
            &format!("{field}.template.spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ));
    }
    if let Some(old) = old {
        if old.get("selector") != spec.get("selector") {
            errs.push(FieldError::immutable(
                &format!("{field}.selector"),
                spec.get("selector").cloned().unwrap_or(json!(null)),
            ));
        }
        let suspended = spec.get("suspend").and_then(Value::as_bool) == Some(true);
        if !suspended && old.get("template") != spec.get("template") {
            errs.push(FieldError::immutable(
                &format!("{field}.template"),
                json!(null),
            ));
        }
        if old.get("completionMode") != spec.get("completionMode") {
            errs.push(FieldError::immutable(
                &format!("{field}.completionMode"),
                spec.get("completionMode").cloned().unwrap_or(json!("")),
            ));
        }
    }
    errs
}

/// Validation of jobs.
pub fn validate_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_plain(obj, old);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    errs.extend(job_spec_rules(
        spec,
        "spec",
        old.and_then(|o| o.get("spec")),
        manual,
    ));
    errs
}

const CONCURRENCY: &[&str] = &["Allow", "Forbid", "Replace"];

/// Validation of cron jobs.
pub fn validate_cron_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_plain(obj, old);
    if old.is_none() {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.len() > 52 {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let schedule = spec.get("schedule").and_then(Value::as_str).unwrap_or("");
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else if !schedule.starts_with('@') && schedule.split_whitespace().count() != 5 {
        let detail = format!(
            "expected exactly 5 fields, found {}: {schedule}",
            schedule.split_whitespace().count()
        );
        errs.push(FieldError::invalid("spec.schedule", schedule, &detail));
    }
    let policy = spec
        .get("concurrencyPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !CONCURRENCY.contains(&policy) {
        errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            policy,
            CONCURRENCY,
        ));
    }
    let job = spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null);
    errs.extend(job_spec_rules(job, "spec.jobTemplate.spec", None, false));
    errs
}
