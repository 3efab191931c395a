//! Upstream's validation of pods and pod templates, with upstream's messages.

use keelson_apimachinery::FieldError;
use keelson_apimachinery::names;
use serde_json::Value;

use crate::core::validation::metadata;
use crate::util::{arr_at, at, str_at};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];

/// upstream's message when a pod update changes a field that may not change.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a pod; `old` is the stored pod on update.
pub fn validate_pod(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = metadata(obj, old, true, names::dns1123_subdomain);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(spec, "spec"));
    if let Some(old_spec) = old.and_then(|o| o.get("spec"))
        && !update_allowed(spec, old_spec)
    {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
    errs
}

/// Whether `new` differs from `old` only in the fields a pod update may change.
fn update_allowed(spec: &Value, old: &Value) -> bool {
    let new_tolerations = arr_at(spec, &["tolerations"]);
    if !arr_at(old, &["tolerations"])
        .iter()
        .all(|t| new_tolerations.contains(t))
    {
        return false;
    }
    let mut new = spec.clone();
    let Some(n) = new.as_object_mut() else {
        return false;
    };
    for key in ["containers", "initContainers"] {
        let olds = arr_at(old, &[key]);
        if let Some(list) = n.get_mut(key).and_then(Value::as_array_mut)
            && list.len() == olds.len()
        {
            for (c, o) in list.iter_mut().zip(olds) {
                if let (Some(c), Some(image)) = (c.as_object_mut(), o.get("image")) {
                    c.insert("image".to_string(), image.clone());
                }
            }
        }
    }
    for key in [
        "activeDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "tolerations",
    ] {
        match old.get(key) {
            Some(v) => n.insert(key.to_string(), v.clone()),
            None => n.remove(key),
        };
    }
    &new == old
}

/// Validates a pod template (`metadata` labels and the pod spec) at `field`.
pub fn validate_template(t: &Value, field: &str, _old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(labels) = at(t, &["metadata", "labels"]).and_then(Value::as_object) {
        errs.extend(names::validate_labels(
            labels,
            &format!("{field}.metadata.labels"),
        ));
    }
    if let Some(annotations) = at(t, &["metadata", "annotations"]).and_then(Value::as_object) {
        errs.extend(names::validate_annotations(
            annotations,
            &format!("{field}.metadata.annotations"),
        ));
    }
    errs.extend(validate_pod_spec(
        t.get("spec").unwrap_or(&Value::Null),
        &format!("{field}.spec"),
    ));
    errs
}

/// Validates a pod spec at `field`.
pub fn validate_pod_spec(spec: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(spec, field, &mut errs);
    let containers = arr_at(spec, &["containers"]);
    if containers.is_empty() {
        errs.push(FieldError::required(&format!("{field}.containers"), ""));
    }
    let mut seen: Vec<&str> = Vec::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in arr_at(spec, &[key]).iter().enumerate() {
            let path = format!("{field}.{key}[{i}]");
            errs.extend(validate_container(c, &path, &volumes, key == "containers"));
            let name = str_at(c, &["name"]).unwrap_or("");
            if !name.is_empty() {
                if seen.contains(&name) {
                    errs.push(FieldError::duplicate(&format!("{path}.name"), name));
                }
                seen.push(name);
            }
        }
    }
    supported(spec, "restartPolicy", field, RESTART_POLICIES, &mut errs);
    supported(spec, "dnsPolicy", field, DNS_POLICIES, &mut errs);
    if let Some(n) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .filter(|n| *n < 0)
    {
        errs.push(FieldError::invalid(
            &format!("{field}.terminationGracePeriodSeconds"),
            n,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .filter(|n| *n <= 0)
    {
        errs.push(FieldError::invalid(
            &format!("{field}.activeDeadlineSeconds"),
            n,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs
}

/// `Required value` when empty, `Unsupported value` when not one of `values`.
fn supported(obj: &Value, key: &str, field: &str, values: &[&str], errs: &mut Vec<FieldError>) {
    let v = str_at(obj, &[key]).unwrap_or("");
    let path = format!("{field}.{key}");
    if v.is_empty() {
        errs.push(FieldError::required(&path, ""));
    } else if !values.contains(&v) {
        errs.push(FieldError::not_supported(&path, v, values));
    }
}

/// Volume names: required, DNS-1123 labels, unique. Returns the names.
fn validate_volumes<'a>(spec: &'a Value, field: &str, errs: &mut Vec<FieldError>) -> Vec<&'a str> {
    let mut names_seen: Vec<&str> = Vec::new();
    for (i, v) in arr_at(spec, &["volumes"]).iter().enumerate() {
        let path = format!("{field}.volumes[{i}].name");
        let name = str_at(v, &["name"]).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&path, ""));
            continue;
        }
        for msg in names::dns1123_label(name) {
            errs.push(FieldError::invalid(&path, name, &msg));
        }
        if names_seen.contains(&name) {
            errs.push(FieldError::duplicate(&path, name));
        }
        names_seen.push(name);
    }
    names_seen
}

fn validate_container(c: &Value, path: &str, volumes: &[&str], regular: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(c, &["name"]).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(&format!("{path}.name"), ""));
    } else {
        for msg in names::dns1123_label(name) {
            errs.push(FieldError::invalid(&format!("{path}.name"), name, &msg));
        }
    }
    if str_at(c, &["image"]).unwrap_or("").is_empty() {
        errs.push(FieldError::required(&format!("{path}.image"), ""));
    }
    supported(c, "imagePullPolicy", path, PULL_POLICIES, &mut errs);
    validate_ports(c, path, &mut errs);
    validate_env(c, path, &mut errs);
    for (i, m) in arr_at(c, &["volumeMounts"]).iter().enumerate() {
        let mpath = format!("{path}.volumeMounts[{i}]");
        let mname = str_at(m, &["name"]).unwrap_or("");
        if mname.is_empty() {
            errs.push(FieldError::required(&format!("{mpath}.name"), ""));
        } else if !volumes.contains(&mname) {
            errs.push(FieldError::not_found(&format!("{mpath}.name"), mname));
        }
        if str_at(m, &["mountPath"]).unwrap_or("").is_empty() {
            errs.push(FieldError::required(&format!("{mpath}.mountPath"), ""));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get(probe).filter(|p| p.is_object()) {
            let ppath = format!("{path}.{probe}");
            validate_probe(p, &ppath, &mut errs);
            let success = p
                .get("successThreshold")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if regular && probe != "readinessProbe" && success != 1 {
                errs.push(FieldError::invalid(
                    &format!("{ppath}.successThreshold"),
                    success,
                    "must be 1",
                ));
            }
        }
    }
    errs
}

fn validate_probe(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let present: Vec<&str> = HANDLERS
        .iter()
        .copied()
        .filter(|h| p.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    match present.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a handler type")),
        [_] => {}
        [_, rest @ ..] => {
            for h in rest {
                errs.push(FieldError::forbidden(
                    &format!("{path}.{h}"),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    for key in [
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
        "initialDelaySeconds",
    ] {
        if let Some(n) = p.get(key).and_then(Value::as_i64).filter(|n| *n < 0) {
            errs.push(FieldError::invalid(
                &format!("{path}.{key}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn validate_ports(c: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, p) in arr_at(c, &["ports"]).iter().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        let name = str_at(p, &["name"]).unwrap_or("");
        if !name.is_empty() {
            for msg in names::port_name(name) {
                errs.push(FieldError::invalid(&format!("{ppath}.name"), name, &msg));
            }
            if seen.contains(&name) {
                errs.push(FieldError::duplicate(&format!("{ppath}.name"), name));
            }
            seen.push(name);
        }
        let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
        if port == 0 {
            errs.push(FieldError::required(&format!("{ppath}.containerPort"), ""));
        } else {
            for msg in names::port_number(port) {
                errs.push(FieldError::invalid(
                    &format!("{ppath}.containerPort"),
                    port,
                    &msg,
                ));
            }
        }
        if let Some(hp) = p
            .get("hostPort")
            .and_then(Value::as_i64)
            .filter(|hp| *hp != 0)
        {
            for msg in names::port_number(hp) {
                errs.push(FieldError::invalid(&format!("{ppath}.hostPort"), hp, &msg));
            }
        }
        let protocol = str_at(p, &["protocol"]).unwrap_or("");
        if protocol.is_empty() {
            errs.push(FieldError::required(&format!("{ppath}.protocol"), ""));
        } else if !PROTOCOLS.contains(&protocol) {
            errs.push(FieldError::not_supported(
                &format!("{ppath}.protocol"),
                protocol,
                PROTOCOLS,
            ));
        }
    }
}

fn validate_env(c: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (i, e) in arr_at(c, &["env"]).iter().enumerate() {
        let epath = format!("{path}.env[{i}].name");
        let name = str_at(e, &["name"]).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&epath, ""));
        } else {
            for msg in names::env_var_name(name) {
                errs.push(FieldError::invalid(&epath, name, &msg));
            }
        }
    }
}
