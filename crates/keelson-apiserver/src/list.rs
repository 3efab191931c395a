//! LIST from the watch cache (or from the store for paged and exact-revision reads), with
//! label and field selectors, and the representations kubectl asks for (objects, Tables,
//! metadata only).

use std::sync::Arc;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::Response;
use keelson_apimachinery::{ApiError, fields::FieldSelector, labels::Selector};
use keelson_kinds::Kind;
use keelson_store::ListOptions;
use serde_json::{Value, json};

use crate::cache::CachedObject;
use crate::registry::{Req, parse_label_selector, store_error};
use crate::respond::{self, Body, Representation};
use crate::{conversion, keys, meta};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The selectors of a request, checked.
pub struct Filter {
    labels: Option<Selector>,
    fields: Option<FieldSelector>,
    kind: &'static Kind,
}

impl Filter {
    pub fn new(r: &Req<'_>) -> Result<Filter> {
        let labels = parse_label_selector(r.query.label_selector.as_deref())?;
        let fields = match r.query.field_selector.as_deref() {
            None => None,
            Some(s) => {
                let f = FieldSelector::parse(s).map_err(ApiError::bad_request)?;
                for req in f.requirements() {
                    if !matches!(req.field.as_str(), "metadata.name" | "metadata.namespace")
                        && r.kind.strategy.field(&json!({}), &req.field).is_none()
                    {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {}",
                            req.field
                        )));
                    }
                }
                Some(f)
            }
        };
        Ok(Filter {
            labels,
            fields,
            kind: r.kind,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let obj = &*conversion::view(self.kind, obj);
        if let Some(l) = &self.labels
            && !l.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
        {
            return false;
        }
        if let Some(f) = &self.fields {
            return f.matches(|field| match field {
                "metadata.name" => meta::name(obj).map(String::from),
                "metadata.namespace" => Some(meta::namespace(obj).unwrap_or("").to_string()),
                other => self.kind.strategy.field(obj, other),
            });
        }
        true
    }

    pub fn is_everything(&self) -> bool {
        self.labels.as_ref().is_none_or(Selector::is_empty)
            && self.fields.as_ref().is_none_or(FieldSelector::is_empty)
    }
}

/// The cached objects a request's namespace and selectors pick (cache must be fresh).
pub fn select(r: &Req<'_>) -> Result<Vec<Arc<CachedObject>>> {
    let filter = Filter::new(r)?;
    let cache = r
        .api
        .cache
        .resource(r.kind)
        .ok_or_else(|| ApiError::internal("no cache for resource"))?;
    let prefix = keys::list_prefix(r.kind, r.path.namespace.as_deref());
    let mut all = cache.list(&prefix);
    if !filter.is_everything() {
        all.retain(|o| filter.matches(&o.value));
    }
    Ok(all)
}

/// The continue token: upstream's shape (base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":K}`).
fn encode_continue(rv: i64, start_after: &str) -> String {
    let v = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start_after});
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&v).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<(i64, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rv, start))
}

pub async fn list(r: &Req<'_>) -> Result<Response<Body>> {
    let filter = Filter::new(r)?;
    let prefix = keys::list_prefix(r.kind, r.path.namespace.as_deref());
    let limit = r.query.limit;
    let exact = r.query.resource_version_match.as_deref() == Some("Exact");
    let rv_param = r.query.revision()?;

    // Paged continuation and exact-revision reads come from the store's history.
    if let Some(token) = &r.query.continue_token {
        let (rv, start) = decode_continue(token)?;
        return list_from_store(r, &filter, &prefix, rv, Some(start), limit).await;
    }
    if exact && let Some(rv) = rv_param.filter(|v| *v > 0) {
        return list_from_store(r, &filter, &prefix, rv, None, limit).await;
    }
    let revision = match rv_param {
        Some(0) => r.api.cache.revision(),
        Some(v) => r.api.cache.wait_for(v).await?,
        None => r.api.cache.wait_fresh().await?,
    };
    let cache = r
        .api
        .cache
        .resource(r.kind)
        .ok_or_else(|| ApiError::internal("no cache for resource"))?;
    let all = cache.list(&prefix);
    let mut items = Vec::new();
    let mut remaining = 0usize;
    let mut last_key = None;
    for o in all {
        if !filter.matches(&o.value) {
            continue;
        }
        if let Some(l) = limit
            && items.len() >= l
        {
            remaining += 1;
            continue;
        }
        last_key = Some(o.key.clone());
        items.push(o);
    }
    let cont =
        (remaining > 0).then(|| encode_continue(revision, last_key.as_deref().unwrap_or("")));
    let remaining = (remaining > 0 && filter.is_everything()).then_some(remaining);
    Ok(render_list(r, &items, revision, cont, remaining))
}

async fn list_from_store(
    r: &Req<'_>,
    filter: &Filter,
    prefix: &str,
    rv: i64,
    start_after: Option<String>,
    limit: Option<usize>,
) -> Result<Response<Body>> {
    let mut items = Vec::new();
    let mut start = start_after;
    let mut remaining;
    let mut last_key;
    // Keep reading pages until the filtered page is full or the prefix is exhausted.
    loop {
        let res = r
            .api
            .store
            .list(prefix, ListOptions { start_after: start.clone(), limit: limit.map(|l| l.max(50)), revision: Some(rv) })
            .await
            .map_err(|e| match e {
                keelson_store::Error::Compacted { .. } if r.query.continue_token.is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                e => store_error(r, e),
            })?;
        remaining = res.remaining;
        last_key = res.kvs.last().map(|kv| kv.key.clone());
        let n = res.kvs.len();
        for (i, kv) in res.kvs.into_iter().enumerate() {
            let mut v: Value =
                serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
            meta::set_resource_version(&mut v, kv.mod_revision);
            if !filter.matches(&v) {
                continue;
            }
            if let Some(l) = limit
                && items.len() >= l
            {
                remaining += n - i;
                last_key = items.last().map(|o: &Arc<CachedObject>| o.key.clone());
                break;
            }
            let json = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
            items.push(Arc::new(CachedObject {
                key: kv.key,
                value: v,
                json,
                revision: kv.mod_revision,
            }));
        }
        let full = limit.is_some_and(|l| items.len() >= l);
        if full || remaining == 0 || limit.is_none() {
            if full && let Some(k) = items.last() {
                last_key = Some(k.key.clone());
            }
            break;
        }
        start = last_key.clone();
    }
    let cont = (remaining > 0).then(|| encode_continue(rv, last_key.as_deref().unwrap_or("")));
    let rem = (remaining > 0 && filter.is_everything()).then_some(remaining);
    Ok(render_list(r, &items, rv, cont, rem))
}

fn list_meta(revision: i64, cont: Option<String>, remaining: Option<usize>) -> Value {
    let mut m = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = cont {
        m["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        m["remainingItemCount"] = json!(n);
    }
    m
}

fn render_list(
    r: &Req<'_>,
    items: &[Arc<CachedObject>],
    revision: i64,
    cont: Option<String>,
    remaining: Option<usize>,
) -> Response<Body> {
    match r.repr {
        Representation::Table => respond::json(
            200,
            &table(
                r,
                items.iter().map(|o| &o.value),
                list_meta(revision, cont, remaining),
            ),
        ),
        Representation::Metadata => {
            let items: Vec<Value> = items.iter().map(|o| partial_metadata(&o.value)).collect();
            respond::json(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta(revision, cont, remaining), "items": items}),
            )
        }
        Representation::Object if conversion::converts(r.kind) => {
            let items: Vec<Value> = items
                .iter()
                .map(|o| conversion::view(r.kind, &o.value).into_owned())
                .collect();
            respond::json(
                200,
                &json!({"kind": format!("{}List", r.kind.kind), "apiVersion": r.kind.api_version(), "metadata": list_meta(revision, cont, remaining), "items": items}),
            )
        }
        Representation::Object => {
            // Concatenate the cached encodings: no object is serialized again.
            let head = json!({"kind": format!("{}List", r.kind.kind), "apiVersion": r.kind.api_version(), "metadata": list_meta(revision, cont, remaining)});
            let head = serde_json::to_vec(&head).unwrap_or_default();
            let size: usize =
                items.iter().map(|o| o.json.len() + 1).sum::<usize>() + head.len() + 16;
            let mut buf = BytesMut::with_capacity(size);
            buf.put_slice(&head[..head.len() - 1]);
            buf.put_slice(b",\"items\":[");
            for (i, o) in items.iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(&o.json);
            }
            buf.put_slice(b"]}");
            respond::json_bytes(200, buf.freeze())
        }
    }
}

/// `PartialObjectMetadata` of one object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// One object in the requested representation.
pub fn render_one(r: &Req<'_>, obj: &CachedObject) -> Response<Body> {
    match r.repr {
        Representation::Table => {
            let rv = meta::resource_version(&obj.value).unwrap_or("").to_string();
            respond::json(
                200,
                &table(
                    r,
                    std::iter::once(&obj.value),
                    json!({"resourceVersion": rv}),
                ),
            )
        }
        Representation::Metadata => respond::json(200, &partial_metadata(&obj.value)),
        Representation::Object if conversion::converts(r.kind) => {
            respond::json(200, &conversion::view(r.kind, &obj.value))
        }
        Representation::Object if !obj.json.is_empty() => {
            respond::json_bytes(200, obj.json.clone())
        }
        Representation::Object => respond::json(200, &obj.value),
    }
}

/// A `meta.k8s.io/v1` Table of objects, with the kind's columns.
pub fn table<'a>(r: &Req<'_>, objs: impl Iterator<Item = &'a Value>, list_meta: Value) -> Value {
    table_for(r.kind, r.query.include_object.as_deref(), objs, list_meta)
}

/// A Table of objects of `kind`; `include` is the `includeObject` parameter.
pub fn table_for<'a>(
    kind: &'static Kind,
    include: Option<&str>,
    objs: impl Iterator<Item = &'a Value>,
    list_meta: Value,
) -> Value {
    let now = jiff::Timestamp::now();
    let strategy = kind.strategy;
    let columns: Vec<Value> = strategy
        .columns()
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let include = include.unwrap_or("Metadata");
    let rows: Vec<Value> = objs
        .map(|o| {
            let o = &*conversion::view(kind, o);
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => partial_metadata(o),
            };
            json!({"cells": strategy.row(o, now), "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}
