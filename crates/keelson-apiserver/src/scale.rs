//! The `scale` subresource: an `autoscaling/v1` Scale over `spec.replicas`.

use http::Response;
use keelson_apimachinery::{ApiError, FieldError, labels::Selector};
use serde_json::{Value, json};

use crate::registry::{Mode, Req, current, modify};
use crate::request::Verb;
use crate::respond::{self, Body};
use crate::{body, patch};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The Scale view of an object.
pub fn scale_of(kind_name: &str, obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let pick = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let selector = match obj.pointer("/spec/selector") {
        Some(Value::Object(s)) if kind_name == "ReplicationController" => {
            Selector::from_map(s).to_string()
        }
        Some(s @ Value::Object(_)) => Selector::from_label_selector(s)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"), "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp")},
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    })
}

pub async fn get(r: &Req<'_>) -> Result<Response<Body>> {
    let obj = current(r).await?;
    Ok(respond::json(200, &scale_of(r.kind.kind, &obj.value)))
}

pub async fn write(r: &mut Req<'_>, verb: Verb) -> Result<Response<Body>> {
    let kind_name = r.kind.kind;
    let ct = r
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".into());
    let body_bytes = r.body.clone();
    let kind = r.kind;
    let name = r.path.name.clone().unwrap_or_default();
    let wanted = if verb == Verb::Update {
        let b = body::decode(&body_bytes, Some(&ct))?;
        b.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    } else {
        None
    };
    let (obj, code) = modify(r, Mode::Main, wanted, move |cur: &Value| {
        let scale = scale_of(kind_name, cur);
        let next_scale = if verb == Verb::Update {
            body::decode(&body_bytes, Some(&ct))?
        } else {
            patch::apply(kind, &ct, &scale, &body_bytes)?
        };
        let replicas = match next_scale.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?,
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale.autoscaling",
                &name,
                &[FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut next = cur.clone();
        if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("replicas".into(), json!(replicas));
        }
        Ok(next)
    })
    .await?;
    Ok(respond::json(code, &scale_of(kind_name, &obj)))
}
