//! Field error messages and `Status` bodies, compared with upstream's exact text.

use keelson_apimachinery::{ApiError, FieldError, status_success};
use serde_json::{Value, json};

fn check_field(err: FieldError, message: &str, reason: &str) {
    assert_eq!(err.message(), message);
    assert_eq!(err.to_string(), message);
    assert_eq!(err.reason(), reason);
}

#[test]
fn field_error_messages() {
    let cases = [
        (
            FieldError::required("spec.containers[0].name", ""),
            "spec.containers[0].name: Required value",
            "FieldValueRequired",
        ),
        (
            FieldError::required("metadata.name", "name or generateName is required"),
            "metadata.name: Required value: name or generateName is required",
            "FieldValueRequired",
        ),
        (
            FieldError::invalid("metadata.name", "Bad_Name", "bad"),
            "metadata.name: Invalid value: \"Bad_Name\": bad",
            "FieldValueInvalid",
        ),
        (
            FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "FieldValueInvalid",
        ),
        (
            FieldError::invalid("spec.paused", true, "nope"),
            "spec.paused: Invalid value: true: nope",
            "FieldValueInvalid",
        ),
        (
            FieldError::invalid("spec.x", "say \"hi\"\n", "quoted"),
            "spec.x: Invalid value: \"say \\\"hi\\\"\\n\": quoted",
            "FieldValueInvalid",
        ),
        (
            FieldError::invalid("values", json!(["a", "b"]), "one"),
            "values: Invalid value: []string{\"a\", \"b\"}: one",
            "FieldValueInvalid",
        ),
        (
            FieldError::invalid("spec.x", Value::Null, "gone"),
            "spec.x: Invalid value: \"null\": gone",
            "FieldValueInvalid",
        ),
        (
            FieldError::duplicate("spec.containers[1].name", "app"),
            "spec.containers[1].name: Duplicate value: \"app\"",
            "FieldValueDuplicate",
        ),
        (
            FieldError::not_supported(
                "spec.restartPolicy",
                "Sometimes",
                &["Always", "Never", "OnFailure"],
            ),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
            "FieldValueNotSupported",
        ),
        (
            FieldError::not_supported("spec.x", "y", &[]),
            "spec.x: Unsupported value: \"y\"",
            "FieldValueNotSupported",
        ),
        (
            FieldError::forbidden("spec.foo", "detail"),
            "spec.foo: Forbidden: detail",
            "FieldValueForbidden",
        ),
        (
            FieldError::too_long("metadata.annotations", "", 262144),
            "metadata.annotations: Too long: may not be more than 262144 bytes",
            "FieldValueTooLong",
        ),
        (
            FieldError::too_many("spec.items", 5, 3),
            "spec.items: Too many: 5: must have at most 3 items",
            "FieldValueTooMany",
        ),
        (
            FieldError::not_found("spec.volumes", "data"),
            "spec.volumes: Not found: \"data\"",
            "FieldValueNotFound",
        ),
        (
            FieldError::type_invalid("spec.replicas", "three", "must be of type integer"),
            "spec.replicas: Invalid value: \"three\": must be of type integer",
            "FieldValueTypeInvalid",
        ),
        (
            FieldError::internal("spec", "boom"),
            "spec: Internal error: boom",
            "InternalError",
        ),
    ];
    for (err, message, reason) in cases {
        check_field(err, message, reason);
    }
}

fn check_error(err: ApiError, code: u16, reason: &str, message: &str) {
    assert_eq!(err.code, code, "{message}");
    assert_eq!(err.reason, reason, "{message}");
    assert_eq!(err.message, message);
    let status = err.to_status();
    assert_eq!(status["code"], json!(code));
    assert_eq!(status["message"], json!(message));
    assert_eq!(status["reason"], json!(reason));
    assert_eq!(status["status"], json!("Failure"));
}

#[test]
fn api_error_codes_reasons_and_messages() {
    let cases = [
        (ApiError::bad_request("bad"), 400, "BadRequest", "bad"),
        (
            ApiError::unauthorized(),
            401,
            "Unauthorized",
            "Unauthorized",
        ),
        (
            ApiError::forbidden("pods", "x", "no access"),
            403,
            "Forbidden",
            "pods \"x\" is forbidden: no access",
        ),
        (
            ApiError::forbidden("pods", "", "no access"),
            403,
            "Forbidden",
            "pods is forbidden: no access",
        ),
        (
            ApiError::forbidden("", "", "no access"),
            403,
            "Forbidden",
            "forbidden: no access",
        ),
        (
            ApiError::not_found("pods", "x"),
            404,
            "NotFound",
            "pods \"x\" not found",
        ),
        (
            ApiError::not_found("deployments.apps", "web"),
            404,
            "NotFound",
            "deployments.apps \"web\" not found",
        ),
        (
            ApiError::not_found_path(),
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        (
            ApiError::already_exists("pods", "x"),
            409,
            "AlreadyExists",
            "pods \"x\" already exists",
        ),
        (
            ApiError::conflict(
                "pods",
                "x",
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            409,
            "Conflict",
            "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again",
        ),
        (
            ApiError::method_not_allowed("no"),
            405,
            "MethodNotAllowed",
            "no",
        ),
        (
            ApiError::method_not_supported("pods", "create"),
            405,
            "MethodNotAllowed",
            "create is not supported on resources of kind \"pods\"",
        ),
        (ApiError::not_acceptable("no"), 406, "NotAcceptable", "no"),
        (
            ApiError::gone("too old resource version: 5 (10)"),
            410,
            "Expired",
            "too old resource version: 5 (10)",
        ),
        (
            ApiError::too_large("limit is 3145728"),
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        ),
        (
            ApiError::unsupported_media_type("text/plain"),
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        ),
        (
            ApiError::unsupported_media_type_accepted(&[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ]),
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ),
        (
            ApiError::too_many_requests("slow down"),
            429,
            "TooManyRequests",
            "slow down",
        ),
        (
            ApiError::internal("disk full"),
            500,
            "InternalError",
            "Internal error occurred: disk full",
        ),
        (
            ApiError::timeout("took too long"),
            504,
            "Timeout",
            "Timeout: took too long",
        ),
        (
            ApiError::service_unavailable("later"),
            503,
            "ServiceUnavailable",
            "later",
        ),
    ];
    for (err, code, reason, message) in cases {
        check_error(err, code, reason, message);
    }
}

#[test]
fn not_found_status_json_is_byte_exact() {
    let status = ApiError::not_found("pods", "x").to_status();
    assert_eq!(
        serde_json::to_string(&status).unwrap(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#
    );
}

#[test]
fn grouped_resource_details_name_group_and_plural() {
    let err = ApiError::already_exists("deployments.apps", "web");
    assert_eq!(
        err.details,
        Some(json!({"name": "web", "group": "apps", "kind": "deployments"}))
    );
}

#[test]
fn status_without_details_omits_the_key() {
    let status = ApiError::bad_request("nope").to_status();
    assert_eq!(
        serde_json::to_string(&status).unwrap(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nope","reason":"BadRequest","code":400}"#
    );
}

#[test]
fn not_found_path_has_empty_details() {
    assert_eq!(ApiError::not_found_path().to_status()["details"], json!({}));
}

#[test]
fn internal_error_carries_the_message_as_cause() {
    let status = ApiError::internal("disk full").to_status();
    assert_eq!(
        status["details"],
        json!({"causes": [{"message": "disk full"}]})
    );
}

#[test]
fn invalid_with_one_error() {
    let errs = [FieldError::required("spec.containers[0].name", "")];
    let status = ApiError::invalid("Pod", "x", &errs).to_status();
    assert_eq!(
        serde_json::to_string(&status).unwrap(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod \"x\" is invalid: spec.containers[0].name: Required value","reason":"Invalid","details":{"name":"x","kind":"Pod","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].name"}]},"code":422}"#
    );
}

#[test]
fn invalid_with_several_errors_aggregates_and_dedups() {
    let errs = [
        FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
        FieldError::required("spec.selector", ""),
        FieldError::required("spec.selector", ""),
    ];
    let err = ApiError::invalid("Deployment.apps", "web", &errs);
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.selector: Required value]"
    );
    let details = err.details.expect("details");
    assert_eq!(details["group"], json!("apps"));
    assert_eq!(details["kind"], json!("Deployment"));
    assert_eq!(details["name"], json!("web"));
    // causes are not deduplicated, as upstream
    assert_eq!(details["causes"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        details["causes"][0],
        json!({"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0", "field": "spec.replicas"})
    );
}

#[test]
fn invalid_without_errors() {
    let err = ApiError::invalid("Pod", "x", &[]);
    assert_eq!(err.message, "Pod \"x\" is invalid");
    assert_eq!(err.details, Some(json!({"name": "x", "kind": "Pod"})));
}

#[test]
fn with_details_sets_name_group_kind_and_keeps_causes() {
    let err = ApiError::invalid("Pod", "x", &[FieldError::required("spec", "")]).with_details(
        "y",
        "apps",
        "Deployment",
    );
    let details = err.details.expect("details");
    assert_eq!(details["name"], json!("y"));
    assert_eq!(details["group"], json!("apps"));
    assert_eq!(details["kind"], json!("Deployment"));
    assert_eq!(details["causes"][0]["field"], json!("spec"));

    let plain = ApiError::bad_request("b").with_details("n", "", "pods");
    assert_eq!(plain.details, Some(json!({"name": "n", "kind": "pods"})));
}

#[test]
fn success_status() {
    let details = json!({"name": "x", "kind": "pods", "uid": "u1"});
    assert_eq!(
        serde_json::to_string(&status_success(Some(details))).unwrap(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"x","kind":"pods","uid":"u1"}}"#
    );
    assert_eq!(ApiError::status_success(None).get("details"), None);
}

#[test]
fn bad_value_rendering_follows_go() {
    let cases = [
        (
            FieldError::invalid(
                "spec.template.metadata.labels",
                json!({"b": "2", "app": "x"}),
                "`selector` does not match template `labels`",
            ),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\", \"b\":\"2\"}: `selector` does not match template `labels`",
        ),
        (
            FieldError::invalid("v", json!([]), "empty"),
            "v: Invalid value: []string{}: empty",
        ),
        (
            FieldError::invalid("v", "tab\there\u{7f}\u{a0}é", "odd"),
            "v: Invalid value: \"tab\\there\\x7f\\u00a0é\": odd",
        ),
        (
            FieldError::invalid("v", 1.5, "float"),
            "v: Invalid value: 1.5: float",
        ),
        (
            FieldError::immutable("spec.selector", "a"),
            "spec.selector: Invalid value: \"a\": field is immutable",
        ),
    ];
    for (err, message) in cases {
        assert_eq!(err.message(), message);
    }
}
