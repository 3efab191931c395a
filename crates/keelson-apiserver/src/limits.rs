//! LimitRange admission (upstream's LimitRanger): fills in default requests and limits of new
//! pods' containers, then refuses pods and claims outside the ranges' min, max and
//! max limit/request ratio, with upstream's messages.

use std::collections::BTreeMap;

use keelson_apimachinery::ApiError;
use keelson_apimachinery::quantity::{self, Milli};
use keelson_kinds::Kind;
use serde_json::{Map, Value, json};

use crate::{Api, keys, meta};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One `spec.limits[]` item, with upstream's defaulting of `default` and `defaultRequest`.
struct Item {
    kind: String,
    min: Map<String, Value>,
    max: Map<String, Value>,
    default: Map<String, Value>,
    default_request: Map<String, Value>,
    ratio: Map<String, Value>,
}

fn map_at(v: &Value, key: &str) -> Map<String, Value> {
    v.get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

impl Item {
    fn parse(v: &Value) -> Item {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (min, max) = (map_at(v, "min"), map_at(v, "max"));
        let mut default = map_at(v, "default");
        let mut default_request = map_at(v, "defaultRequest");
        if kind == "Container" {
            for (k, q) in &max {
                default.entry(k.clone()).or_insert_with(|| q.clone());
            }
            for (k, q) in &default {
                default_request
                    .entry(k.clone())
                    .or_insert_with(|| q.clone());
            }
            for (k, q) in &min {
                default_request
                    .entry(k.clone())
                    .or_insert_with(|| q.clone());
            }
        }
        Item {
            kind,
            min,
            max,
            default,
            default_request,
            ratio: map_at(v, "maxLimitRequestRatio"),
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn milli(v: Option<&Value>) -> Option<Milli> {
    match v? {
        Value::String(s) => quantity::parse(s),
        Value::Number(n) => quantity::parse(&n.to_string()),
        _ => None,
    }
}

/// The limit ranges of a namespace, in name order.
fn items(api: &Api, namespace: &str) -> Vec<Item> {
    let Some(kind) = keelson_kinds::lookup("", "v1", "limitranges") else {
        return Vec::new();
    };
    let Some(cache) = api.cache.resource(kind) else {
        return Vec::new();
    };
    cache
        .list(&keys::list_prefix(kind, Some(namespace)))
        .iter()
        .flat_map(|lr| {
            lr.value
                .pointer("/spec/limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|i| Item::parse(&i))
        .collect()
}

/// Checks one set of requests and limits against an item (upstream's min, max and ratio
/// constraints), appending the messages of what fails.
fn check(
    limit_type: &str,
    item: &Item,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
    errs: &mut Vec<String>,
) {
    for (res, enforced) in &item.min {
        let want = milli(Some(enforced)).unwrap_or(0);
        match (milli(requests.get(res)), milli(limits.get(res))) {
            (None, _) => errs.push(format!(
                "minimum {res} usage per {limit_type} is {}.  No request is specified",
                text(enforced)
            )),
            (Some(r), _) if r < want => errs.push(format!(
                "minimum {res} usage per {limit_type} is {}, but request is {}",
                text(enforced),
                text(&requests[res])
            )),
            (_, Some(l)) if l < want => errs.push(format!(
                "minimum {res} usage per {limit_type} is {}, but limit is {}",
                text(enforced),
                text(&limits[res])
            )),
            _ => {}
        }
    }
    for (res, enforced) in &item.max {
        let want = milli(Some(enforced)).unwrap_or(0);
        if limit_type == "PersistentVolumeClaim" {
            if let Some(r) = milli(requests.get(res))
                && r > want
            {
                errs.push(format!(
                    "maximum {res} usage per {limit_type} is {}, but request is {}",
                    text(enforced),
                    text(&requests[res])
                ));
            }
            continue;
        }
        match (milli(requests.get(res)), milli(limits.get(res))) {
            (_, None) => errs.push(format!(
                "maximum {res} usage per {limit_type} is {}.  No limit is specified",
                text(enforced)
            )),
            (_, Some(l)) if l > want => errs.push(format!(
                "maximum {res} usage per {limit_type} is {}, but limit is {}",
                text(enforced),
                text(&limits[res])
            )),
            (Some(r), _) if r > want => errs.push(format!(
                "maximum {res} usage per {limit_type} is {}, but request is {}",
                text(enforced),
                text(&requests[res])
            )),
            _ => {}
        }
    }
    for (res, enforced) in &item.ratio {
        let (r, l) = (
            milli(requests.get(res)).unwrap_or(0),
            milli(limits.get(res)).unwrap_or(0),
        );
        if r == 0 {
            errs.push(format!("{res} max limit to request ratio per {limit_type} is {}, but no request is specified or request is 0", text(enforced)));
        } else if l == 0 {
            errs.push(format!("{res} max limit to request ratio per {limit_type} is {}, but no limit is specified or limit is 0", text(enforced)));
        } else {
            let ratio = l as f64 / r as f64;
            let max = milli(Some(enforced)).unwrap_or(0) as f64 / 1000.0;
            if ratio > max {
                errs.push(format!(
                    "{res} max limit to request ratio per {limit_type} is {}, but provided ratio is {ratio:.6}",
                    text(enforced)
                ));
            }
        }
    }
}

fn resources_mut(container: &mut Value) -> Option<&mut Map<String, Value>> {
    let c = container.as_object_mut()?;
    let r = c.entry("resources").or_insert_with(|| json!({}));
    r.as_object_mut()
}

/// Sums requests or limits over containers (`field` is `requests` or `limits`).
fn sum(containers: &[Value], field: &str) -> Map<String, Value> {
    let mut totals: BTreeMap<String, Milli> = BTreeMap::new();
    for c in containers {
        if let Some(m) = c
            .pointer(&format!("/resources/{field}"))
            .and_then(Value::as_object)
        {
            for (k, v) in m {
                *totals.entry(k.clone()).or_default() += milli(Some(v)).unwrap_or(0);
            }
        }
    }
    totals
        .into_iter()
        .map(|(k, v)| {
            let s = quantity::format(&k, v);
            (k, Value::String(s))
        })
        .collect()
}

/// Applies the namespace's limit ranges to a new object: defaults, then constraints.
pub fn admit(api: &Api, kind: &Kind, obj: &mut Value) -> Result<()> {
    if !kind.group.is_empty() || !matches!(kind.kind, "Pod" | "PersistentVolumeClaim") {
        return Ok(());
    }
    let Some(ns) = meta::namespace(obj).map(String::from) else {
        return Ok(());
    };
    let items = items(api, &ns);
    if items.is_empty() {
        return Ok(());
    }
    let mut errs = Vec::new();
    if kind.kind == "PersistentVolumeClaim" {
        let requests = obj
            .pointer("/spec/resources/requests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let limits = obj
            .pointer("/spec/resources/limits")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for item in items.iter().filter(|i| i.kind == "PersistentVolumeClaim") {
            check("PersistentVolumeClaim", item, &requests, &limits, &mut errs);
        }
    } else {
        for field in ["containers", "initContainers"] {
            let Some(list) = obj
                .pointer_mut(&format!("/spec/{field}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for container in list.iter_mut() {
                for item in items.iter().filter(|i| i.kind == "Container") {
                    let Some(res) = resources_mut(container) else {
                        continue;
                    };
                    for (section, defaults) in [
                        ("limits", &item.default),
                        ("requests", &item.default_request),
                    ] {
                        if defaults.is_empty() {
                            continue;
                        }
                        let entry = res.entry(section).or_insert_with(|| json!({}));
                        if let Some(m) = entry.as_object_mut() {
                            for (k, q) in defaults {
                                m.entry(k.clone()).or_insert_with(|| q.clone());
                            }
                        }
                    }
                    let requests = map_at(
                        container.get("resources").unwrap_or(&Value::Null),
                        "requests",
                    );
                    let limits =
                        map_at(container.get("resources").unwrap_or(&Value::Null), "limits");
                    check("Container", item, &requests, &limits, &mut errs);
                }
            }
        }
        let containers = obj
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in items.iter().filter(|i| i.kind == "Pod") {
            check(
                "Pod",
                item,
                &sum(&containers, "requests"),
                &sum(&containers, "limits"),
                &mut errs,
            );
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let detail = if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("[{}]", errs.join(", "))
    };
    Err(ApiError::forbidden(
        &kind.qualified_resource(),
        meta::name(obj).unwrap_or(""),
        &detail,
    ))
}
