//! Decoding request bodies (JSON or YAML) and checking that they hold the expected kind.

use bytes::Bytes;
use keelson_apimachinery::ApiError;
use keelson_kinds::Kind;
use serde_json::Value;

/// The largest request body accepted (upstream's limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Parses a body as JSON, or YAML when the content type says so.
pub fn decode(body: &Bytes, content_type: Option<&str>) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::too_large(format!("limit is {MAX_BODY}")));
    }
    let ct = content_type.unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    let yaml = media.ends_with("yaml");
    let value: Value = if yaml {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?
    } else if media == keelson_protobuf::MEDIA_TYPE {
        keelson_protobuf::decode(body, None)
            .map_err(|e| ApiError::bad_request(format!("decoding protobuf body: {e}")))?
    } else if media.is_empty() || media.contains("json") {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    } else {
        return Err(ApiError::unsupported_media_type(media));
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: expected an object, got {}",
            type_name(&value)
        )));
    }
    Ok(value)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks `apiVersion` and `kind` of a body against the kind the URL addresses; fills them in
/// when absent as upstream's decoder does for the URL's kind.
pub fn check_kind(kind: &Kind, obj: &Value) -> Result<(), ApiError> {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let compact = || {
        let s = serde_json::to_string(obj).unwrap_or_default();
        if s.len() > 200 {
            format!(
                "{}...",
                &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)]
            )
        } else {
            s
        }
    };
    if k.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            compact()
        )));
    }
    if av.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'apiVersion' is missing in '{}'",
            compact()
        )));
    }
    let group_of = |av: &str| {
        av.rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default()
    };
    if k != kind.kind || group_of(av) != kind.group {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if av != kind.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    Ok(())
}
