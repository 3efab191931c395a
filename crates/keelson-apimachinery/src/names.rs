//! Name rules with upstream's messages: DNS-1123 subdomains and labels, DNS-1035 labels,
//! qualified names (label keys) and label values.
//!
//! Each rule returns the list of upstream's messages for a value; an empty list means valid.

use serde_json::{Map, Value};

use crate::errors::FieldError;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const C_IDENTIFIER_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";
const C_IDENTIFIER_ERR: &str = "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";

/// Longest DNS-1123 label (and DNS-1035 label, qualified name part, label value).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Largest total size of all annotation keys and values of one object.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Upstream's message for a negative number that must not be.
pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";
/// Upstream's message for a change to an immutable field.
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";

/// `must be no more than N characters`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `must be non-empty`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// `must be between LO and HI, inclusive`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Upstream's `RegexError`: the message, examples and the regex.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// True when `v` is non-empty, all bytes satisfy `inner`, and the first and last satisfy
/// `first` and `last`.
fn shaped(v: &str, first: fn(u8) -> bool, inner: fn(u8) -> bool, last: fn(u8) -> bool) -> bool {
    let bytes = v.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&f), Some(&l)) => first(f) && last(l) && bytes.iter().all(|&b| inner(b)),
        _ => false,
    }
}

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn lower_alnum_dash(b: u8) -> bool {
    lower_alnum(b) || b == b'-'
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn qualified_inner(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn is_dns1123_label(v: &str) -> bool {
    shaped(v, lower_alnum, lower_alnum_dash, lower_alnum)
}

fn is_dns1123_subdomain(v: &str) -> bool {
    v.split('.').all(is_dns1123_label)
}

fn is_qualified_name_part(v: &str) -> bool {
    shaped(v, alnum, qualified_inner, alnum)
}

/// A DNS-1123 subdomain (most object names): at most 253 characters of lowercase
/// alphanumerics, `-` and `.`, starting and ending alphanumeric.
pub fn dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !is_dns1123_subdomain(v) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// A DNS-1123 label (namespace names, container names): at most 63 characters of lowercase
/// alphanumerics and `-`, starting and ending alphanumeric.
pub fn dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_dns1123_label(v) {
        if is_dns1123_subdomain(v) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// A DNS-1035 label (service names): like a DNS-1123 label but starting with a letter.
pub fn dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !shaped(v, |b| b.is_ascii_lowercase(), lower_alnum_dash, lower_alnum) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// A qualified name (label and annotation keys, finalizers): an optional DNS-1123 subdomain
/// prefix and `/`, then a name of at most 63 alphanumerics, `-`, `_`, `.`.
pub fn qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                let prefix_errs = dns1123_subdomain(prefix);
                errs.extend(prefix_errs.into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(DNS1123_LABEL_MAX_LENGTH)
        ));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending
/// alphanumeric.
pub fn label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(v.is_empty() || is_qualified_name_part(v)) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// A C identifier (upstream's `IsCIdentifier`).
pub fn c_identifier(v: &str) -> Vec<String> {
    let first = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let inner = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if shaped(v, first, inner, inner) {
        Vec::new()
    } else {
        vec![regex_error(
            C_IDENTIFIER_ERR,
            C_IDENTIFIER_FMT,
            &["my_name", "MY_NAME", "MyName"],
        )]
    }
}

/// Upstream's `hasChDirPrefix`: `.`, `..` and names starting with `..` are refused.
fn chdir_prefix(v: &str) -> Vec<String> {
    let msg = match v {
        "." => "must not be '.'",
        ".." => "must not be '..'",
        v if v.starts_with("..") => "must not start with '..'",
        _ => return Vec::new(),
    };
    vec![msg.to_string()]
}

/// An environment variable name (upstream's `IsEnvVarName`).
pub fn env_var_name(v: &str) -> Vec<String> {
    let first = |b: u8| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_');
    let inner = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    let mut errs = Vec::new();
    if !shaped(v, first, inner, inner) {
        errs.push(regex_error(
            ENV_VAR_NAME_ERR,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(chdir_prefix(v));
    errs
}

/// A ConfigMap or Secret data key (upstream's `IsConfigMapKey`).
pub fn config_map_key(v: &str) -> Vec<String> {
    let inner = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !shaped(v, inner, inner, inner) {
        errs.push(regex_error(
            CONFIG_MAP_KEY_ERR,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(chdir_prefix(v));
    errs
}

/// A port name (IANA_SVC_NAME): at most 15 lowercase alphanumerics and `-`, at least one
/// letter, no `--`, not starting or ending with `-`.
pub fn port_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 15 {
        errs.push(max_len_error(15));
    }
    if v.is_empty() || !v.bytes().all(lower_alnum_dash) {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !v.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if v.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if v.starts_with('-') || v.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// A port number: 1 to 65535.
pub fn port_number(port: i64) -> Vec<String> {
    in_range(port, 1, 65535)
}

/// A number within `lo..=hi`.
pub fn in_range(value: i64, lo: i64, hi: i64) -> Vec<String> {
    if (lo..=hi).contains(&value) {
        Vec::new()
    } else {
        vec![inclusive_range_error(lo, hi)]
    }
}

/// A percent string such as `25%`.
pub fn percent(v: &str) -> Vec<String> {
    let valid = v
        .strip_suffix('%')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Vec::new()
    } else {
        vec![regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            "[0-9]+%",
            &["1%", "93%"],
        )]
    }
}

/// Upstream's `maskTrailingDash`, applied to a `generateName` prefix before validating it.
pub fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1
        && name.ends_with('-')
        && let Some(head) = name.get(..name.len() - 2)
    {
        return format!("{head}a");
    }
    name.to_string()
}

/// Upstream's `ValidateLabels`: keys are qualified names, values label values; every problem
/// is reported at `field`.
pub fn validate_labels(labels: &Map<String, Value>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        errs.extend(validate_label_name(key, field));
        let value = value.as_str().unwrap_or_default();
        for msg in label_value(value) {
            errs.push(FieldError::invalid(field, value, &msg));
        }
    }
    errs
}

/// Upstream's `ValidateLabelName`: one `Invalid value` per qualified-name message.
pub fn validate_label_name(key: &str, field: &str) -> Vec<FieldError> {
    qualified_name(key)
        .iter()
        .map(|msg| FieldError::invalid(field, key, msg))
        .collect()
}

/// Upstream's `ValidateAnnotations`: keys are qualified names (compared lowercased) and all
/// keys and values together hold at most 256 KiB.
pub fn validate_annotations(annotations: &Map<String, Value>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        for msg in qualified_name(&key.to_lowercase()) {
            errs.push(FieldError::invalid(field, key.as_str(), &msg));
        }
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(field, "", TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The version part of an `apiVersion` as upstream's `ParseGroupVersion` reads it; empty when
/// missing or malformed.
fn api_version_version(api_version: &str) -> &str {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [version] => version,
        [_group, version] => version,
        _ => "",
    }
}

/// Upstream's `ValidateOwnerReferences` (the path has no index, as upstream).
pub fn validate_owner_references(refs: &[Value], field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_at(r, "apiVersion");
        let kind = str_at(r, "kind");
        let version = api_version_version(api_version);
        if version.is_empty() {
            errs.push(FieldError::invalid(
                &format!("{field}.apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                &format!("{field}.kind"),
                kind,
                "kind must not be empty",
            ));
        }
        for key in ["name", "uid"] {
            let value = str_at(r, key);
            if value.is_empty() {
                errs.push(FieldError::invalid(
                    &format!("{field}.{key}"),
                    value,
                    &format!("{key} must not be empty"),
                ));
            }
        }
        if api_version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(
                field,
                r.clone(),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{}", str_at(r, "name"));
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    field,
                    Value::Array(refs.to_vec()),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// Upstream's `ValidateFinalizers`: each a qualified name, and not both `orphan` and
/// `foregroundDeletion`.
pub fn validate_finalizers(finalizers: &[Value], field: &str) -> Vec<FieldError> {
    let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
    let mut errs = Vec::new();
    for name in &names {
        for msg in qualified_name(name) {
            errs.push(FieldError::invalid(field, *name, &msg));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            field,
            Value::Array(finalizers.to_vec()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// Upstream's `ValidateObjectMeta` for `metadata` of a new object: name or generateName,
/// namespace presence by scope, generation, labels, annotations, ownerReferences and finalizers.
/// `name_fn` validates the name (and the `generateName` prefix, trailing dash masked).
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_fn: fn(&str) -> Vec<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = str_at(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_fn(&mask_trailing_dash(generate_name)) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                generate_name,
                &msg,
            ));
        }
    }
    let name = str_at(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name) {
            errs.push(FieldError::invalid("metadata.name", name, &msg));
        }
    }
    let namespace = str_at(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in dns1123_label(namespace) {
                errs.push(FieldError::invalid("metadata.namespace", namespace, &msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64)
        && generation < 0
    {
        errs.push(FieldError::invalid(
            "metadata.generation",
            generation,
            IS_NEGATIVE_ERROR_MSG,
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        errs.extend(validate_owner_references(refs, "metadata.ownerReferences"));
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        errs.extend(validate_finalizers(finalizers, "metadata.finalizers"));
    }
    errs
}

/// Upstream's `ValidateObjectMetaUpdate` essentials for `metadata` of an update: no new
/// finalizers once deletion started, name, namespace, uid, creationTimestamp,
/// deletionTimestamp and deletionGracePeriodSeconds unchanged (`field is immutable`), then the
/// labels, annotations and ownerReferences rules. The resourceVersion and generation rules are
/// left to the caller, which manages both.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let old_finalizers = string_items(old.get("finalizers"));
        let mut extra: Vec<&str> = string_items(new.get("finalizers"))
            .into_iter()
            .filter(|f| !old_finalizers.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| crate::errors::go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let new_value = new.get(key).filter(|v| !v.is_null());
        let old_value = old.get(key).filter(|v| !v.is_null());
        if new_value != old_value {
            let shown = new_value.cloned().unwrap_or(Value::String(String::new()));
            errs.push(FieldError::immutable(&format!("metadata.{key}"), shown));
        }
    }
    if let Some(labels) = new.get("labels").and_then(Value::as_object) {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = new.get("annotations").and_then(Value::as_object) {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    if let Some(refs) = new.get("ownerReferences").and_then(Value::as_array) {
        errs.extend(validate_owner_references(refs, "metadata.ownerReferences"));
    }
    errs
}

fn string_items(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
