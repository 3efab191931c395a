//! Upstream's validation of the core kinds other than pods, with upstream's messages.

use keelson_apimachinery::FieldError;
use keelson_apimachinery::names::{self, validate_object_meta, validate_object_meta_update};
use serde_json::{Value, json};

use crate::util::{arr_at, at, str_at};

/// `metadata` of the object, or `{}`.
pub fn meta(obj: &Value) -> &Value {
    static EMPTY: Value = Value::Null;
    obj.get("metadata").unwrap_or(&EMPTY)
}

/// The metadata rules for a namespaced object named as a DNS-1123 subdomain, and on update
/// the metadata update rules.
pub fn metadata(
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
    name_fn: fn(&str) -> Vec<String>,
) -> Vec<FieldError> {
    match old {
        Some(old) => validate_object_meta_update(meta(obj), meta(old)),
        None => validate_object_meta(meta(obj), namespaced, name_fn),
    }
}

/// Namespaced kinds with no rules beyond their metadata.
pub fn validate_plain(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    metadata(obj, old, true, names::dns1123_subdomain)
}

/// Cluster-scoped kinds with no rules beyond their metadata.
pub fn validate_cluster_plain(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    metadata(obj, old, false, names::dns1123_subdomain)
}

/// Namespaces: a DNS-1123 label name.
pub fn validate_namespace(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = metadata(obj, old, false, names::dns1123_label);
    for (i, f) in arr_at(obj, &["spec", "finalizers"]).iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        for msg in names::qualified_name(f) {
            errs.push(FieldError::invalid(
                &format!("spec.finalizers[{i}]"),
                f,
                &msg,
            ));
        }
    }
    errs
}

/// Replication controllers: the workload rules over a map selector.
pub fn validate_replication_controller(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_plain(obj, old);
    let selector = at(obj, &["spec", "selector"]).and_then(Value::as_object);
    errs.extend(crate::apps::replicas(obj));
    match selector.filter(|s| !s.is_empty()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            errs.extend(names::validate_labels(sel, "spec.selector"));
            let labels =
                at(obj, &["spec", "template", "metadata", "labels"]).and_then(Value::as_object);
            let matches = sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if at(obj, &["spec", "template"]).is_some() && !matches {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    labels.map_or(json!({}), |l| Value::Object(l.clone())),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if let Some(t) = at(obj, &["spec", "template"]) {
        errs.extend(crate::core::pod_validation::validate_template(
            t,
            "spec.template",
            old.and_then(|o| at(o, &["spec", "template"])),
        ));
    } else {
        errs.push(FieldError::required("spec.template", ""));
    }
    errs
}

const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The keys and total size of `data`/`binaryData`/`stringData`.
fn data_rules(obj: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    let mut total = 0;
    for field in fields {
        for (k, v) in obj
            .get(*field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for msg in names::config_map_key(k) {
                errs.push(FieldError::invalid(
                    &format!("{field}[{k}]"),
                    k.as_str(),
                    &msg,
                ));
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long(fields[0], "", MAX_DATA_BYTES));
    }
}

/// `immutable: true` forbids data changes and turning it off.
fn immutable_rules(obj: &Value, old: Option<&Value>, fields: &[&str], errs: &mut Vec<FieldError>) {
    let Some(old) = old else { return };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in fields {
        let now = obj
            .get(*field)
            .filter(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()));
        let before = old
            .get(*field)
            .filter(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()));
        if now != before {
            errs.push(FieldError::forbidden(
                field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// Config maps: keys, size, immutability.
pub fn validate_config_map(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_plain(obj, old);
    data_rules(obj, &["data", "binaryData"], &mut errs);
    let keys = |f: &str| {
        obj.get(f)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let binary = keys("binaryData");
    for k in keys("data") {
        if binary.contains(&k) {
            errs.push(FieldError::invalid(
                &format!("data[{k}]"),
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
    }
    immutable_rules(obj, old, &["data", "binaryData"], &mut errs);
    errs
}

/// Secrets: keys, size, immutability, type immutable on update.
pub fn validate_secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_plain(obj, old);
    data_rules(obj, &["data"], &mut errs);
    if let Some(old) = old {
        let (t, old_t) = (obj.get("type"), old.get("type"));
        if t != old_t {
            errs.push(FieldError::immutable(
                "type",
                t.cloned().unwrap_or(json!("")),
            ));
        }
    }
    immutable_rules(obj, old, &["data"], &mut errs);
    errs
}

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// Validates a service; `old` is the stored one on update.
pub fn validate_service(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = metadata(obj, old, true, names::dns1035_label);
    let kind = str_at(obj, &["spec", "type"]).unwrap_or("");
    if !SERVICE_TYPES.contains(&kind) {
        errs.push(FieldError::not_supported("spec.type", kind, SERVICE_TYPES));
    }
    let ports = arr_at(obj, &["spec", "ports"]);
    let headless = str_at(obj, &["spec", "clusterIP"]) == Some("None");
    if kind == "ExternalName" {
        let name = str_at(obj, &["spec", "externalName"]).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            for msg in names::dns1123_subdomain(name.trim_end_matches('.')) {
                errs.push(FieldError::invalid("spec.externalName", name, &msg));
            }
        }
    } else if ports.is_empty() && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut seen_names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let name = str_at(p, &["name"]).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(&format!("{field}.name"), ""));
        } else if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                errs.push(FieldError::invalid(&format!("{field}.name"), name, &msg));
            }
            if seen_names.contains(&name) {
                errs.push(FieldError::duplicate(&format!("{field}.name"), name));
            }
            seen_names.push(name);
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        for msg in names::port_number(port) {
            errs.push(FieldError::invalid(&format!("{field}.port"), port, &msg));
        }
        let protocol = str_at(p, &["protocol"]).unwrap_or("");
        if !["TCP", "UDP", "SCTP"].contains(&protocol) {
            errs.push(FieldError::not_supported(
                &format!("{field}.protocol"),
                protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if (kind == "ClusterIP" || kind == "ExternalName")
            && p.get("nodePort")
                .and_then(Value::as_i64)
                .is_some_and(|n| n != 0)
        {
            errs.push(FieldError::forbidden(
                &format!("{field}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if let Some(old) = old {
        let old_ip = str_at(old, &["spec", "clusterIP"]).unwrap_or("");
        let new_ip = str_at(obj, &["spec", "clusterIP"]).unwrap_or("");
        if !old_ip.is_empty() && old_ip != new_ip && kind != "ExternalName" {
            errs.push(FieldError::immutable("spec.clusterIPs[0]", new_ip));
        }
    }
    errs
}
