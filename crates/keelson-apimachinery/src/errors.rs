//! API errors rendered as `meta.k8s.io/v1` `Status` objects, with upstream's reasons and messages.

use serde_json::{Map, Value, json};

/// The kind of problem one [`FieldError`] reports (upstream's `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorType {
    /// "Not found"
    NotFound,
    /// "Required value"
    Required,
    /// "Duplicate value"
    Duplicate,
    /// "Invalid value"
    Invalid,
    /// "Unsupported value"
    NotSupported,
    /// "Forbidden"
    Forbidden,
    /// "Too long"
    TooLong,
    /// "Too many"
    TooMany,
    /// "Internal error"
    Internal,
    /// "Invalid value" with reason FieldValueTypeInvalid
    TypeInvalid,
}

impl FieldErrorType {
    /// The human text of the type, as upstream's `ErrorType.String()`.
    pub fn text(self) -> &'static str {
        match self {
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::Required => "Required value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::Invalid | FieldErrorType::TypeInvalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::Internal => "Internal error",
        }
    }

    /// The machine reason, used as the `reason` of a Status cause.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorType::NotFound => "FieldValueNotFound",
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::Internal => "InternalError",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// Whether upstream never prints the bad value for this type.
    fn omits_value(self) -> bool {
        matches!(
            self,
            FieldErrorType::Required
                | FieldErrorType::Forbidden
                | FieldErrorType::TooLong
                | FieldErrorType::Internal
        )
    }
}

/// One problem with one field, as upstream's `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// Path of the field, e.g. `spec.containers[0].name`.
    pub field: String,
    /// The offending value, if the message shows one.
    pub bad_value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    fn new(kind: FieldErrorType, field: &str, bad_value: Option<Value>, detail: &str) -> Self {
        FieldError {
            kind,
            field: field.to_string(),
            bad_value,
            detail: detail.to_string(),
        }
    }

    /// A required value is missing (`Required value`).
    pub fn required(field: &str, detail: &str) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }

    /// A value is malformed (`Invalid value: <value>: detail`).
    pub fn invalid(field: &str, value: impl Into<Value>, detail: &str) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value.into()), detail)
    }

    /// A value that must be unique is repeated (`Duplicate value: <value>`).
    pub fn duplicate(field: &str, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorType::Duplicate, field, Some(value.into()), "")
    }

    /// A value outside an enumeration (`Unsupported value: <value>: supported values: "a", "b"`).
    pub fn not_supported(field: &str, value: impl Into<Value>, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorType::NotSupported,
            field,
            Some(value.into()),
            &detail,
        )
    }

    /// A value not allowed in the current conditions (`Forbidden: detail`).
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }

    /// A value longer than `max` bytes (`Too long: may not be more than N bytes`); the value is
    /// never shown, as upstream.
    pub fn too_long(field: &str, value: impl Into<Value>, max: usize) -> Self {
        let _unused = value.into();
        let detail = format!("may not be more than {max} bytes");
        Self::new(FieldErrorType::TooLong, field, None, &detail)
    }

    /// A list with more than `max` items (`Too many: <actual>: must have at most N items`).
    pub fn too_many(field: &str, actual: usize, max: usize) -> Self {
        let detail = format!("must have at most {max} items");
        Self::new(FieldErrorType::TooMany, field, Some(json!(actual)), &detail)
    }

    /// A change to a field that may not change (`Invalid value: <value>: field is immutable`).
    pub fn immutable(field: &str, value: impl Into<Value>) -> Self {
        Self::invalid(field, value, "field is immutable")
    }

    /// A looked-up value does not exist (`Not found: <value>`).
    pub fn not_found(field: &str, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorType::NotFound, field, Some(value.into()), "")
    }

    /// A value of the wrong schema type (`Invalid value: <value>: detail`, reason
    /// `FieldValueTypeInvalid`).
    pub fn type_invalid(field: &str, value: impl Into<Value>, detail: &str) -> Self {
        Self::new(
            FieldErrorType::TypeInvalid,
            field,
            Some(value.into()),
            detail,
        )
    }

    /// A failure not caused by the input (`Internal error: detail`).
    pub fn internal(field: &str, detail: &str) -> Self {
        Self::new(FieldErrorType::Internal, field, None, detail)
    }

    /// The message without the field path (upstream's `ErrorBody`), the `message` of a cause.
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        if !self.kind.omits_value()
            && let Some(value) = &self.bad_value
        {
            s.push_str(": ");
            s.push_str(&render_bad_value(value));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The whole message, `field: body`, as upstream's `field.Error.Error()`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// The Status cause `reason`, e.g. `FieldValueRequired`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// This error as a Status cause `{reason, message, field}`.
    pub fn to_cause(&self) -> Value {
        let mut cause = Map::new();
        cause.insert("reason".into(), json!(self.reason()));
        cause.insert("message".into(), json!(self.body()));
        if !self.field.is_empty() {
            cause.insert("field".into(), json!(self.field));
        }
        Value::Object(cause)
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// Renders a bad value as upstream prints it: strings quoted, numbers and booleans bare, string
/// lists as Go's `%#v` of a `[]string`, anything else as compact JSON.
fn render_bad_value(value: &Value) -> String {
    match value {
        Value::Null => go_quote("null"),
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let quoted: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(go_quote)
                .collect();
            format!("[]string{{{}}}", quoted.join(", "))
        }
        Value::Object(map) if map.values().all(Value::is_string) => {
            let mut entries: Vec<(&String, &str)> = map
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v)))
                .collect();
            entries.sort();
            let rendered: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", rendered.join(", "))
        }
        other => other.to_string(),
    }
}

/// Quotes a string as Go's `strconv.Quote` (and `%q`) does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !go_printable(c) => {
                push_unicode_escape(&mut out, c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint`: controls, separators other than the ASCII space, and
/// invisible format characters are not printable.
fn go_printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{ad}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{feff}'
        ))
}

fn push_unicode_escape(out: &mut String, c: char) {
    let n = c as u32;
    if n <= 0xffff {
        out.push_str(&format!("\\u{n:04x}"));
    } else {
        out.push_str(&format!("\\U{n:08x}"));
    }
}

/// Upstream's aggregate rendering of a list of errors: one message alone, several as
/// `[m1, m2]`, repeated messages once.
fn aggregate(messages: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for m in messages {
        if !seen.contains(&m.as_str()) {
            seen.push(m);
        }
    }
    match seen.len() {
        1 => seen[0].to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// Splits `resource.group` (or `Kind.group`) at the first dot.
fn split_qualified(qualified: &str) -> (&str, &str) {
    qualified.split_once('.').unwrap_or((qualified, ""))
}

/// Builds Status `details` in upstream's field order, leaving out empty fields.
fn details(name: &str, group: &str, kind: &str, causes: Option<Vec<Value>>) -> Value {
    let mut d = Map::new();
    for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
        if !value.is_empty() {
            d.insert(key.into(), json!(value));
        }
    }
    if let Some(causes) = causes
        && !causes.is_empty()
    {
        d.insert("causes".into(), Value::Array(causes));
    }
    Value::Object(d)
}

/// An error answered to a client: an HTTP code plus a `Status` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    /// Upstream's `StatusReason`, e.g. `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`.
    pub reason: &'static str,
    pub message: String,
    /// `details` of the Status (name, group, kind, causes), if any.
    pub details: Option<Value>,
}

impl ApiError {
    fn plain(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(
        code: u16,
        reason: &'static str,
        message: String,
        qualified_resource: &str,
        name: &str,
    ) -> Self {
        let (resource, group) = split_qualified(qualified_resource);
        ApiError {
            code,
            reason,
            message,
            details: Some(details(name, group, resource, None)),
        }
    }

    /// 400 BadRequest with the message as given.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::plain(400, "BadRequest", message)
    }

    /// 401 Unauthorized, as the apiserver answers a request it cannot authenticate.
    pub fn unauthorized() -> Self {
        Self::plain(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden: `pods "x" is forbidden: detail`, `pods is forbidden: detail` without a
    /// name, `forbidden: detail` without a resource.
    pub fn forbidden(qualified_resource: &str, name: &str, detail: &str) -> Self {
        let message = if qualified_resource.is_empty() {
            format!("forbidden: {detail}")
        } else if name.is_empty() {
            format!("{qualified_resource} is forbidden: {detail}")
        } else {
            format!(
                "{qualified_resource} {} is forbidden: {detail}",
                go_quote(name)
            )
        };
        Self::about(403, "Forbidden", message, qualified_resource, name)
    }

    /// 404 NotFound: `pods "x" not found`.
    pub fn not_found(qualified_resource: &str, name: &str) -> Self {
        let message = format!("{qualified_resource} {} not found", go_quote(name));
        Self::about(404, "NotFound", message, qualified_resource, name)
    }

    /// 404 NotFound for a path that names no resource.
    pub fn not_found_path() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::plain(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    /// 409 AlreadyExists: `pods "x" already exists`.
    pub fn already_exists(qualified_resource: &str, name: &str) -> Self {
        let message = format!("{qualified_resource} {} already exists", go_quote(name));
        Self::about(409, "AlreadyExists", message, qualified_resource, name)
    }

    /// 409 AlreadyExists when `generateName` found no free name.
    pub fn generate_name_conflict(qualified_resource: &str, name: &str) -> Self {
        let message = format!(
            "{qualified_resource} {} already exists, the server was not able to generate a unique name for the object",
            go_quote(name)
        );
        Self::about(409, "AlreadyExists", message, qualified_resource, name)
    }

    /// 409 Conflict: `Operation cannot be fulfilled on pods "x": detail`.
    pub fn conflict(qualified_resource: &str, name: &str, detail: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {qualified_resource} {}: {detail}",
            go_quote(name)
        );
        Self::about(409, "Conflict", message, qualified_resource, name)
    }

    /// 422 Invalid: `Pod "x" is invalid: <messages>` with one cause per field error.
    pub fn invalid(qualified_kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let (kind, group) = split_qualified(qualified_kind);
        let quoted = go_quote(name);
        let message = if errors.is_empty() {
            format!("{qualified_kind} {quoted} is invalid")
        } else {
            let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
            format!(
                "{qualified_kind} {quoted} is invalid: {}",
                aggregate(&messages)
            )
        };
        let causes = errors.iter().map(FieldError::to_cause).collect();
        ApiError {
            code: 422,
            reason: "Invalid",
            message,
            details: Some(details(name, group, kind, Some(causes))),
        }
    }

    /// 405 MethodNotAllowed with the message as given.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::plain(405, "MethodNotAllowed", message)
    }

    /// 405 MethodNotAllowed as upstream's `NewMethodNotSupported`:
    /// `create is not supported on resources of kind "pods"`.
    pub fn method_not_supported(qualified_resource: &str, action: &str) -> Self {
        let message = format!(
            "{action} is not supported on resources of kind {}",
            go_quote(qualified_resource)
        );
        Self::about(405, "MethodNotAllowed", message, qualified_resource, "")
    }

    /// 406 NotAcceptable with the message as given.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::plain(406, "NotAcceptable", message)
    }

    /// 410 Expired, e.g. `too old resource version: 5 (10)`.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::plain(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge: `Request entity too large: message`.
    pub fn too_large(message: impl Into<String>) -> Self {
        let message = format!("Request entity too large: {}", message.into());
        Self::plain(413, "RequestEntityTooLarge", message)
    }

    /// 415 UnsupportedMediaType for a create or update body in a format the server does not
    /// read. Upstream's message lists the accepted types, not the one sent, so `content_type`
    /// does not appear in it; use [`ApiError::unsupported_media_type_accepted`] for patches.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        let _sent = content_type;
        Self::unsupported_media_type_accepted(&[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ])
    }

    /// 415 UnsupportedMediaType as upstream's negotiation error, listing the accepted types.
    pub fn unsupported_media_type_accepted(accepted: &[&str]) -> Self {
        let message = format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            accepted.join(", ")
        );
        Self::plain(415, "UnsupportedMediaType", message)
    }

    /// 429 TooManyRequests with the message as given.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::plain(429, "TooManyRequests", message)
    }

    /// 500 InternalError: `Internal error occurred: message`, with the message as a cause.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            details: Some(json!({ "causes": [{ "message": message }] })),
            ..Self::plain(
                500,
                "InternalError",
                format!("Internal error occurred: {message}"),
            )
        }
    }

    /// 504 Timeout: `Timeout: message`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::plain(504, "Timeout", format!("Timeout: {}", message.into()))
    }

    /// 503 ServiceUnavailable with the message as given.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::plain(503, "ServiceUnavailable", message)
    }

    /// Sets `details.name`, `details.group` and `details.kind` (empty ones left out), keeping
    /// any causes.
    pub fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let causes = self
            .details
            .as_ref()
            .and_then(|d| d.get("causes"))
            .and_then(Value::as_array)
            .cloned();
        let mut new = details(name, group, kind, causes);
        if let (Some(Value::Object(old)), Value::Object(map)) = (&self.details, &mut new) {
            for (key, value) in old {
                if !matches!(key.as_str(), "name" | "group" | "kind" | "causes") {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
        self.details = Some(new);
        self
    }

    /// The `Status` object a client receives.
    pub fn to_status(&self) -> Value {
        let mut status = status_head("Failure");
        status.insert("message".into(), json!(self.message));
        status.insert("reason".into(), json!(self.reason));
        if let Some(details) = &self.details {
            status.insert("details".into(), details.clone());
        }
        status.insert("code".into(), json!(self.code));
        Value::Object(status)
    }
}

fn status_head(status: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kind".into(), json!("Status"));
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("metadata".into(), json!({}));
    m.insert("status".into(), json!(status));
    m
}

impl ApiError {
    /// Same as the free function [`status_success`].
    pub fn status_success(details: Option<Value>) -> Value {
        status_success(details)
    }
}

/// A `Status` with `status: "Success"`, as answered by deletes that do not return the object.
pub fn status_success(details: Option<Value>) -> Value {
    let mut status = status_head("Success");
    if let Some(details) = details {
        status.insert("details".into(), details);
    }
    Value::Object(status)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
