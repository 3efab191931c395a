//! The `apps/v1` kinds, and what their strategies share.

use keelson_apimachinery::FieldError;
use keelson_apimachinery::labels::{Selector, validate_label_selector};
use serde_json::{Value, json};

use crate::core::pod_validation::validate_template;
use crate::core::validation::validate_plain;

pub mod controller_revision;
pub mod daemon_set;
pub mod deployment;
pub mod replica_set;
pub mod stateful_set;

/// A new workload starts with an empty status.
pub fn empty_status(obj: &mut Value) {
    obj["status"] = json!({});
}

/// `status.replicas`, the field selector replica sets and replication controllers offer.
pub fn status_replicas_field(obj: &Value, path: &str) -> Option<String> {
    (path == "status.replicas").then(|| {
        obj.pointer("/status/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string()
    })
}

/// The selector rules of a workload: required and non-empty, valid, matching the template's
/// labels, and immutable on update.
pub fn selector_rules(obj: &Value, old: Option<&Value>, what: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let selector = obj
        .pointer("/spec/selector")
        .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()));
    let Some(selector) = selector else {
        errs.push(FieldError::required("spec.selector", ""));
        return errs;
    };
    errs.extend(validate_label_selector(selector, "spec.selector"));
    let empty = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|m| m.is_empty());
    if empty {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector.clone(),
            &format!("empty selector is invalid for {what}"),
        ));
    } else if let Ok(sel) = Selector::from_label_selector(selector) {
        let labels = obj
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object);
        if !sel.matches(labels) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                labels.map_or(json!({}), |l| Value::Object(l.clone())),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(old_selector) = old.and_then(|o| o.pointer("/spec/selector"))
        && old_selector != selector
    {
        errs.push(FieldError::immutable("spec.selector", selector.clone()));
    }
    errs
}

/// The template rules of the always-restarting workloads.
pub fn template_rules(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let Some(t) = obj.pointer("/spec/template") else {
        return vec![FieldError::required("spec.template", "")];
    };
    let mut errs = validate_template(
        t,
        "spec.template",
        old.and_then(|o| o.pointer("/spec/template")),
    );
    let policy = t
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !policy.is_empty() && policy != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    errs
}

/// Validation of deployments, replica sets and stateful sets.
pub fn validate_replicated(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let what = match obj.get("kind").and_then(Value::as_str) {
        Some("Deployment") => "deployment",
        Some("StatefulSet") => "statefulset",
        _ => "replicaset",
    };
    let mut errs = validate_plain(obj, old);
    errs.extend(replicas(obj));
    errs.extend(selector_rules(obj, old, what));
    errs.extend(template_rules(obj, old));
    if what == "deployment" {
        let kind = obj
            .pointer("/spec/strategy/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !["Recreate", "RollingUpdate"].contains(&kind) {
            errs.push(FieldError::not_supported(
                "spec.strategy.type",
                kind,
                &["Recreate", "RollingUpdate"],
            ));
        }
    }
    if what == "statefulset" {
        errs.extend(stateful_set_update(obj, old));
    }
    errs
}

const STS_UPDATABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// A stateful set update may change only some spec fields.
fn stateful_set_update(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let (Some(new), Some(old)) = (
        obj.get("spec").and_then(Value::as_object),
        old.and_then(|o| o.get("spec")).and_then(Value::as_object),
    ) else {
        return Vec::new();
    };
    let strip = |m: &serde_json::Map<String, Value>| {
        m.iter()
            .filter(|(k, _)| !STS_UPDATABLE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<serde_json::Map<_, _>>()
    };
    if strip(new) == strip(old) {
        return Vec::new();
    }
    vec![FieldError::forbidden(
        "spec",
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
    )]
}

/// Validation of daemon sets.
pub fn validate_daemon_set(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_plain(obj, old);
    errs.extend(selector_rules(obj, old, "daemonset"));
    errs.extend(template_rules(obj, old));
    let kind = obj
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !["OnDelete", "RollingUpdate"].contains(&kind) {
        errs.push(FieldError::not_supported(
            "spec.updateStrategy.type",
            kind,
            &["OnDelete", "RollingUpdate"],
        ));
    }
    errs
}

/// `spec.replicas` must not be negative.
pub fn replicas(obj: &Value) -> Vec<FieldError> {
    match obj.pointer("/spec/replicas").and_then(Value::as_i64) {
        Some(n) if n < 0 => vec![FieldError::invalid(
            "spec.replicas",
            n,
            "must be greater than or equal to 0",
        )],
        _ => Vec::new(),
    }
}
