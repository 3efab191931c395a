//! The one generic registry: create, read, update, patch and delete for every kind, driven by
//! the table of kinds and each kind's strategy.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use keelson_apimachinery::{ApiError, FieldError, labels::Selector, names};
use keelson_kinds::{Kind, Subresource};
use keelson_store::{Error as StoreError, KeyValue};
use serde_json::{Value, json};

use crate::cache::CachedObject;
use crate::query::Query;
use crate::request::{ResourcePath, Verb};
use crate::respond::{self, Body, Representation};
use crate::{
    Api, admission, apply, body, conversion, keys, limits, list, meta, patch, quota, strict,
};

/// One resource request, parsed.
pub struct Req<'a> {
    pub api: &'a Api,
    pub kind: &'static Kind,
    pub path: ResourcePath,
    pub query: Query,
    pub repr: Representation,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// Warnings to send back as `Warning` headers.
    pub warnings: Vec<String>,
    /// The client's User-Agent (the default field manager).
    pub user_agent: Option<String>,
    /// The body is a server-side apply configuration.
    pub apply: bool,
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

impl Req<'_> {
    fn namespace(&self) -> Option<&str> {
        if self.kind.namespaced {
            self.path.namespace.as_deref()
        } else {
            None
        }
    }

    fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or("")
    }

    fn key(&self, name: &str) -> String {
        keys::object_key(self.kind, self.namespace(), name)
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.kind.qualified_resource(), self.name())
    }

    /// The field manager of this write: `fieldManager`, else the User-Agent's product name.
    fn manager_name(&self) -> String {
        if let Some(m) = self
            .query
            .field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
        {
            return m.to_string();
        }
        let ua = self.user_agent.as_deref().unwrap_or("unknown");
        ua.split('/').next().unwrap_or(ua).to_string()
    }

    fn qualified_kind(&self) -> String {
        if self.kind.group.is_empty() {
            self.kind.kind.to_string()
        } else {
            format!("{}.{}", self.kind.kind, self.kind.group)
        }
    }
}

/// Serves one resource request.
pub async fn serve(mut r: Req<'_>, verb: Verb) -> Response<Body> {
    let result = dispatch(&mut r, verb).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => respond::error(&err),
    };
    for w in &r.warnings {
        let v = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = http::HeaderValue::from_str(&v) {
            resp.headers_mut().append("Warning", h);
        }
    }
    resp
}

async fn dispatch(r: &mut Req<'_>, verb: Verb) -> Result<Response<Body>> {
    if r.kind.namespaced && r.path.namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch)
    {
        return Err(ApiError::not_found_path());
    }
    match r.path.subresource.clone().as_deref() {
        None => match verb {
            Verb::Get => get(r).await,
            Verb::List => list::list(r).await,
            Verb::Watch => crate::watch::watch(r).await,
            Verb::Create => create(r).await,
            Verb::Update => update(r, Mode::Main).await,
            Verb::Patch => patch_object(r, Mode::Main).await,
            Verb::Delete => delete(r).await,
            Verb::DeleteCollection => delete_collection(r).await,
        },
        Some(sub) => {
            let Some(s) = r
                .kind
                .subresources
                .iter()
                .copied()
                .find(|s| s.name() == sub)
            else {
                return Err(ApiError::not_found_path());
            };
            match (s, verb) {
                (Subresource::Status, Verb::Get) => get(r).await,
                (Subresource::Status, Verb::Update) => update(r, Mode::Status).await,
                (Subresource::Status, Verb::Patch) => patch_object(r, Mode::Status).await,
                (Subresource::Scale, Verb::Get) => crate::scale::get(r).await,
                (Subresource::Scale, Verb::Update | Verb::Patch) => {
                    crate::scale::write(r, verb).await
                }
                (Subresource::Binding, Verb::Create) => binding(r).await,
                (Subresource::Finalize, Verb::Update) => update(r, Mode::Finalize).await,
                (
                    Subresource::Log
                    | Subresource::Exec
                    | Subresource::Attach
                    | Subresource::PortForward
                    | Subresource::Proxy,
                    _,
                ) => {
                    let pod = current(r).await?;
                    Err(no_node(r, &pod.value))
                }
                _ => Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({} {}/{sub})",
                    verb.as_str().to_uppercase(),
                    r.kind.plural
                ))),
            }
        }
    }
}

fn no_node(r: &Req<'_>, obj: &Value) -> ApiError {
    if obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        ApiError::bad_request(format!(
            "{} {} does not have a host assigned",
            r.kind.singular,
            r.name()
        ))
    } else {
        ApiError::service_unavailable(format!(
            "no agent is reachable for node of {} {}",
            r.kind.singular,
            r.name()
        ))
    }
}

/// The object the request names, from a fresh cache.
pub async fn current(r: &Req<'_>) -> Result<Arc<CachedObject>> {
    if r.query.resource_version.as_deref() != Some("0") {
        r.api.cache.wait_fresh().await?;
    }
    let cache = r
        .api
        .cache
        .resource(r.kind)
        .ok_or_else(|| ApiError::internal("no cache for resource"))?;
    cache.get(&r.key(r.name())).ok_or_else(|| r.not_found())
}

async fn get(r: &Req<'_>) -> Result<Response<Body>> {
    let obj = current(r).await?;
    Ok(list::render_one(r, &obj))
}

/// Renders an object for a write response in the requested representation.
fn written(r: &Req<'_>, code: u16, value: &Value) -> Response<Body> {
    match r.repr {
        Representation::Object => respond::json(code, value),
        _ => {
            let obj = CachedObject {
                key: String::new(),
                value: value.clone(),
                json: Bytes::new(),
                revision: 0,
            };
            let mut resp = list::render_one(r, &obj);
            *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
            resp
        }
    }
}

/// Decodes the request body into an object of the request's kind.
fn decode_for(r: &mut Req<'_>) -> Result<Value> {
    let obj = body::decode(&r.body, r.content_type.as_deref())?;
    body::check_kind(r.kind, &obj)?;
    Ok(obj)
}

/// Runs the kind's decoding and defaults, applying the request's field validation.
fn normalize(r: &mut Req<'_>, obj: Value) -> Result<Value> {
    let input = obj.clone();
    let out = r.kind.strategy.decode_and_default(obj)?;
    let mut unknown: Vec<String> =
        strict::unknown_fields(&input, &out, r.kind.strategy.write_only_fields())
            .into_iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
    if r.query.field_validation.is_some()
        && r.content_type.as_deref().is_none_or(|c| c.contains("json"))
    {
        unknown.extend(
            strict::duplicate_fields(&r.body)
                .into_iter()
                .map(|f| format!("duplicate field {f:?}")),
        );
    }
    if !unknown.is_empty() {
        match r.query.field_validation.as_deref() {
            Some("Strict") => {
                return Err(ApiError::bad_request(format!(
                    "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                    r.kind.kind,
                    r.kind.version,
                    r.kind.kind,
                    unknown.join(", ")
                )));
            }
            Some("Warn") => r.warnings.extend(unknown),
            _ => {}
        }
    }
    Ok(out)
}

fn validate(r: &Req<'_>, obj: &Value, old: Option<&Value>) -> Result<()> {
    let name_rule: fn(&str) -> Vec<String> = match r.kind.kind {
        "Namespace" => names::dns1123_label,
        "Service" => names::dns1035_label,
        _ => names::dns1123_subdomain,
    };
    let mut errs: Vec<FieldError> = Vec::new();
    if old.is_none() {
        errs.extend(names::validate_object_meta(
            obj.get("metadata").unwrap_or(&Value::Null),
            r.kind.namespaced,
            name_rule,
        ));
    } else {
        let m = obj.get("metadata").unwrap_or(&Value::Null);
        errs.extend(
            names::validate_object_meta(m, r.kind.namespaced, |_| Vec::new())
                .into_iter()
                .filter(|e| e.field != "metadata.name"),
        );
    }
    errs.extend(r.kind.strategy.validate(obj, old));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &r.qualified_kind(),
            meta::name(obj).unwrap_or(""),
            &errs,
        ))
    }
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let prefix = if prefix.len() > 58 {
        &prefix[..58]
    } else {
        prefix
    };
    let suffix: String = (0..5)
        .map(|_| GENERATE_CHARS[rng.random_range(0..GENERATE_CHARS.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Stamps what the server owns in a new object's metadata.
fn init_meta(r: &Req<'_>, obj: &mut Value) {
    let tracks = r.kind.strategy.tracks_generation();
    let m = meta::meta_mut(obj);
    m.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    m.insert(
        "creationTimestamp".into(),
        Value::String(meta::now_rfc3339()),
    );
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(f);
    }
    if tracks {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    m.remove("managedFields");
}

async fn create(r: &mut Req<'_>) -> Result<Response<Body>> {
    let mut obj = decode_for(r)?;
    let url_ns = r.namespace().map(String::from);
    {
        let m = meta::meta_mut(&mut obj);
        if r.kind.namespaced {
            match (
                m.get("namespace")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty()),
                &url_ns,
            ) {
                (Some(body_ns), Some(url)) if body_ns != url => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    if let Some(ns) = &url_ns {
                        m.insert("namespace".into(), Value::String(ns.clone()));
                    }
                }
            }
        } else {
            m.remove("namespace");
        }
    }
    let create_name = meta::name(&obj).unwrap_or("").to_string();
    let applied_config = obj.clone();
    admission::namespace_lifecycle(r.api, r.kind, url_ns.as_deref(), &create_name).await?;
    let mut obj = normalize(r, obj)?;
    let generate = meta::name(&obj).is_none()
        && meta::str_field(&obj, "generateName").is_some_and(|s| !s.is_empty());
    init_meta(r, &mut obj);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut candidate = obj.clone();
        if generate {
            let prefix = meta::str_field(&candidate, "generateName")
                .unwrap_or("")
                .to_string();
            meta::meta_mut(&mut candidate)
                .insert("name".into(), Value::String(generate_name(&prefix)));
        }
        crate::storage::admit(r.api, r.kind, &mut candidate);
        limits::admit(r.api, r.kind, &mut candidate)?;
        crate::priority::admit(r.api, r.kind, &mut candidate)?;
        r.kind.strategy.prepare_create(&mut candidate);
        validate(r, &candidate, None)?;
        let name = meta::name(&candidate).unwrap_or("").to_string();
        let (manager, now, api_version) =
            (r.manager_name(), meta::now_rfc3339(), r.kind.api_version());
        let who = apply::Manager {
            name: &manager,
            api_version: &api_version,
            time: &now,
            subresource: None,
        };
        if r.apply {
            let applied = apply::apply(None, &applied_config, &who, false)?;
            if let Some(m) = applied.pointer("/metadata/managedFields") {
                meta::meta_mut(&mut candidate).insert("managedFields".into(), m.clone());
            }
        } else {
            apply::record_update(None, &mut candidate, &who);
        }
        let allocation = admission::allocate(r.api, r.kind, &mut candidate, None)?;
        if let Err(e) = quota::admit(r.api, r.kind, &candidate, r.query.dry_run).await {
            allocation.release();
            return Err(e);
        }
        if r.query.dry_run {
            allocation.release();
            return Ok(written(r, 201, &candidate));
        }
        let bytes = encode_stored(r, candidate.clone())?;
        match r.api.store.create(&r.key(&name), bytes).await {
            Ok(kv) => {
                allocation.commit();
                quota::after_write(r.api, r.kind, None, Some(&candidate)).await;
                meta::set_resource_version(&mut candidate, kv.mod_revision);
                return Ok(written(r, 201, &candidate));
            }
            Err(StoreError::AlreadyExists(_)) => {
                allocation.release();
                // The quota charge of an object that was not created is given back.
                quota::after_write(r.api, r.kind, Some(&candidate), None).await;
                if generate && attempt < 8 {
                    continue;
                }
                return Err(ApiError::already_exists(
                    &r.kind.qualified_resource(),
                    &name,
                ));
            }
            Err(e) => {
                allocation.release();
                return Err(store_error(r, e));
            }
        }
    }
}

pub fn store_error(r: &Req<'_>, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => r.not_found(),
        StoreError::AlreadyExists(_) => {
            ApiError::already_exists(&r.kind.qualified_resource(), r.name())
        }
        StoreError::Conflict { .. } => conflict(r),
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::gone(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        other => ApiError::internal(other.to_string()),
    }
}

fn conflict(r: &Req<'_>) -> ApiError {
    ApiError::conflict(
        &r.kind.qualified_resource(),
        r.name(),
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The main resource: everything but status.
    Main,
    /// The status subresource: status alone.
    Status,
    /// `namespaces/x/finalize`: spec.finalizers alone.
    Finalize,
}

/// The current stored value of the request's object, from the store itself.
async fn stored(r: &Req<'_>) -> Result<KeyValue> {
    r.api
        .store
        .get(&r.key(r.name()))
        .await
        .map_err(|e| store_error(r, e))?
        .ok_or_else(|| r.not_found())
}

fn parse_kv(kind: &Kind, kv: &KeyValue) -> Result<Value> {
    let v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object: {e}")))?;
    let mut v = conversion::view(kind, &v).into_owned();
    meta::set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

/// The bytes stored for an object of the request's kind.
fn encode_stored(r: &Req<'_>, obj: Value) -> Result<Bytes> {
    let v = conversion::stored(r.kind, strip_rv(obj));
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The current object as a starting point for a write: the cached copy (possibly stale; the
/// compare-and-swap catches that) or the stored one.
async fn starting_point(r: &Req<'_>) -> Result<(Value, i64)> {
    if let Some(c) = r
        .api
        .cache
        .resource(r.kind)
        .and_then(|c| c.get(&r.key(r.name())))
    {
        return Ok((conversion::view(r.kind, &c.value).into_owned(), c.revision));
    }
    let kv = stored(r).await?;
    Ok((parse_kv(r.kind, &kv)?, kv.mod_revision))
}

async fn update(r: &mut Req<'_>, mode: Mode) -> Result<Response<Body>> {
    let obj = decode_for(r)?;
    if let Some(n) = meta::name(&obj)
        && n != r.name()
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            r.name()
        )));
    }
    if r.kind.namespaced
        && let (Some(body_ns), Some(url)) = (meta::namespace(&obj), r.namespace())
        && body_ns != url
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let wanted_rv = meta::resource_version(&obj).map(String::from);
    let (out, code) = modify(r, mode, wanted_rv, |_| Ok(obj.clone())).await?;
    Ok(written(r, code, &out))
}

async fn patch_object(r: &mut Req<'_>, mode: Mode) -> Result<Response<Body>> {
    let ct = r.content_type.clone().unwrap_or_default();
    let patch_doc = r.body.clone();
    let kind = r.kind;
    if ct.starts_with("application/apply-patch") {
        r.apply = true;
        if r.query.field_manager.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(
                "fieldManager: Required value: is required for apply patch",
            ));
        }
        let applied = body::decode(&patch_doc, Some("application/yaml"))?;
        if let Some(n) = meta::name(&applied)
            && n != r.name()
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                r.name()
            )));
        }
        if starting_point(r).await.is_err() {
            // Server-side apply of a missing object creates it.
            r.body = Bytes::from(serde_json::to_vec(&applied).unwrap_or_default());
            r.content_type = Some("application/json".into());
            return create(r).await;
        }
        let (manager, api_version, force) = (r.manager_name(), r.kind.api_version(), r.query.force);
        let (out, code) = modify(r, mode, None, move |current| {
            let now = meta::now_rfc3339();
            let who = apply::Manager {
                name: &manager,
                api_version: &api_version,
                time: &now,
                subresource: None,
            };
            apply::apply(Some(current), &applied, &who, force)
        })
        .await?;
        return Ok(written(r, code, &out));
    }
    let (out, code) = modify(r, mode, None, move |current| {
        patch::apply(kind, &ct, current, &patch_doc)
    })
    .await?;
    Ok(written(r, code, &out))
}

/// Read, change, compare-and-swap, retried on conflicts the client did not ask to see.
/// Returns the object as written and the response code.
pub async fn modify(
    r: &mut Req<'_>,
    mode: Mode,
    wanted_rv: Option<String>,
    change: impl Fn(&Value) -> Result<Value>,
) -> Result<(Value, u16)> {
    let (mut current, mut rev) = starting_point(r).await?;
    for _ in 0..16 {
        let proposed = change(&current)?;
        // A patch that sets resourceVersion asks for a precondition, as an update body does.
        let precondition = wanted_rv.clone().or_else(|| {
            meta::resource_version(&proposed)
                .filter(|v| Some(*v) != meta::resource_version(&current))
                .map(String::from)
        });
        if let Some(want) = &precondition
            && *want != rev.to_string()
        {
            // The cache may be behind: check against the store before refusing.
            let kv = stored(r).await?;
            if *want != kv.mod_revision.to_string() {
                return Err(conflict(r));
            }
            current = parse_kv(r.kind, &kv)?;
            rev = kv.mod_revision;
            continue;
        }
        let next = prepare_update(r, mode, proposed, &current)?;
        let Some(next) = next else {
            // Nothing changed: no write, as upstream.
            return Ok((current, 200));
        };
        if r.query.dry_run {
            return Ok((next, 200));
        }
        let finished =
            meta::deletion_timestamp(&next).is_some() && meta::finalizers(&next).is_empty();
        let key = r.key(r.name());
        let result = if finished {
            r.api.store.delete(&key, Some(rev)).await.map(|(kv, _)| kv)
        } else {
            let bytes = encode_stored(r, next.clone())?;
            r.api.store.update(&key, bytes, rev).await
        };
        match result {
            Ok(kv) => {
                let mut out = next;
                if !finished {
                    meta::set_resource_version(&mut out, kv.mod_revision);
                }
                admission::after_write(
                    r.api,
                    r.kind,
                    Some(&current),
                    if finished { None } else { Some(&out) },
                );
                quota::after_write(
                    r.api,
                    r.kind,
                    Some(&current),
                    if finished { None } else { Some(&out) },
                )
                .await;
                return Ok((out, 200));
            }
            Err(StoreError::Conflict {
                current: Some(kv), ..
            }) => {
                if precondition.is_some() {
                    return Err(conflict(r));
                }
                current = parse_kv(r.kind, &kv)?;
                rev = kv.mod_revision;
            }
            Err(StoreError::Conflict { current: None, .. }) | Err(StoreError::NotFound(_)) => {
                return Err(r.not_found());
            }
            Err(e) => return Err(store_error(r, e)),
        }
    }
    Err(conflict(r))
}

fn strip_rv(mut v: Value) -> Value {
    meta::meta_mut(&mut v).remove("resourceVersion");
    v
}

/// Computes the object to store from a proposed one and the current one; `None` if the write
/// would change nothing.
fn prepare_update(
    r: &mut Req<'_>,
    mode: Mode,
    proposed: Value,
    current: &Value,
) -> Result<Option<Value>> {
    body::check_kind(r.kind, &proposed)?;
    let mut next = match mode {
        Mode::Main => {
            let mut next = normalize(r, proposed)?;
            if r.kind.strategy.has_status() {
                let obj = next
                    .as_object_mut()
                    .ok_or_else(|| ApiError::bad_request("object must be a JSON object"))?;
                match current.get("status") {
                    Some(s) => obj.insert("status".into(), s.clone()),
                    None => obj.remove("status"),
                };
            }
            next
        }
        Mode::Status => {
            let status = proposed.get("status").cloned();
            let mut next = current.clone();
            if let Some(obj) = next.as_object_mut() {
                match status {
                    Some(s) => obj.insert("status".into(), s),
                    None => obj.remove("status"),
                };
            }
            normalize(r, next)?
        }
        Mode::Finalize => {
            let fin = proposed
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let mut next = current.clone();
            if let Some(obj) = next.as_object_mut() {
                let spec = obj.entry("spec").or_insert_with(|| json!({}));
                if let Some(s) = spec.as_object_mut() {
                    s.insert("finalizers".into(), fin);
                }
            }
            next
        }
    };
    // What the server owns in metadata stays as it is.
    let uid_in_body = meta::uid(&next).filter(|u| !u.is_empty()).map(String::from);
    if let Some(uid) = uid_in_body
        && Some(uid.as_str()) != meta::uid(current)
    {
        return Err(ApiError::conflict(
            &r.kind.qualified_resource(),
            r.name(),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(current).unwrap_or("")
            ),
        ));
    }
    let applied_managed = meta::meta(&next)
        .and_then(|m| m.get("managedFields"))
        .cloned();
    {
        let old = meta::meta(current).cloned().unwrap_or_default();
        let m = meta::meta_mut(&mut next);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match old.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        // managedFields are the server's to keep: compared as they were, then recorded below.
        match old.get("managedFields") {
            Some(v) => m.insert("managedFields".into(), v.clone()),
            None => m.remove("managedFields"),
        };
        m.insert(
            "resourceVersion".into(),
            old.get("resourceVersion").cloned().unwrap_or(Value::Null),
        );
    }
    if meta::deletion_timestamp(current).is_some() {
        let old_fin = meta::finalizers(current);
        let added: Vec<String> = meta::finalizers(&next)
            .into_iter()
            .filter(|f| !old_fin.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &r.qualified_kind(),
                r.name(),
                &[FieldError::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            ));
        }
    }
    if r.kind.strategy.tracks_generation() && !meta::spec_equal(&next, current) {
        let g = meta::generation(current) + 1;
        meta::meta_mut(&mut next).insert("generation".into(), json!(g));
    }
    if mode == Mode::Main {
        admission::drop_type_dependent_fields(r.kind, &mut next, current);
    }
    validate(r, &next, Some(current))?;
    admission::allocate(r.api, r.kind, &mut next, Some(current))?.commit();
    if next == *current {
        return Ok(None);
    }
    if r.apply {
        if let Some(m) = applied_managed {
            meta::meta_mut(&mut next).insert("managedFields".into(), m);
        }
    } else {
        let (manager, now, api_version) =
            (r.manager_name(), meta::now_rfc3339(), r.kind.api_version());
        let subresource = match mode {
            Mode::Main => r.path.subresource.as_deref(),
            Mode::Status => Some("status"),
            Mode::Finalize => Some("finalize"),
        };
        let who = apply::Manager {
            name: &manager,
            api_version: &api_version,
            time: &now,
            subresource,
        };
        apply::record_update(Some(current), &mut next, &who);
    }
    Ok(Some(next))
}

/// DeleteOptions from the body and the query.
struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

fn delete_options(r: &Req<'_>) -> Result<DeleteOptions> {
    let mut o = DeleteOptions {
        grace: r.query.grace_period_seconds,
        propagation: r.query.propagation_policy.clone(),
        uid: None,
        resource_version: None,
        dry_run: r.query.dry_run,
    };
    if r.query.orphan_dependents == Some(true) && o.propagation.is_none() {
        o.propagation = Some("Orphan".into());
    }
    if !r.body.is_empty() {
        let b = body::decode(&r.body, r.content_type.as_deref())?;
        if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace = Some(g);
        }
        if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(p.to_string());
        }
        if b.get("orphanDependents").and_then(Value::as_bool) == Some(true)
            && o.propagation.is_none()
        {
            o.propagation = Some("Orphan".into());
        }
        o.uid = b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        o.resource_version = b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        o.dry_run |= b
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    }
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "",
            &[FieldError::not_supported(
                "propagationPolicy",
                p.as_str(),
                &["Foreground", "Background", "Orphan"],
            )],
        ));
    }
    Ok(o)
}

async fn delete(r: &mut Req<'_>) -> Result<Response<Body>> {
    let opts = delete_options(r)?;
    let dry = opts.dry_run;
    let (mut current, mut rev) = starting_point(r).await?;
    for _ in 0..16 {
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != meta::uid(&current)
        {
            return Err(ApiError::conflict(
                &r.kind.qualified_resource(),
                r.name(),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&current).unwrap_or("")
                ),
            ));
        }
        if let Some(want) = &opts.resource_version
            && *want != rev.to_string()
        {
            return Err(ApiError::conflict(
                &r.kind.qualified_resource(),
                r.name(),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                ),
            ));
        }
        let mut next = current.clone();
        let mut finalizers = meta::finalizers(&next);
        match opts.propagation.as_deref() {
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into())
            }
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            _ => {}
        }
        let graceful = graceful_period(r.kind, &current, opts.grace);
        let namespace_finalizers = r.kind.kind == "Namespace"
            && next
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        let keep = !finalizers.is_empty() || graceful.is_some() || namespace_finalizers;
        let key = r.key(r.name());
        if !keep {
            if dry {
                return Ok(written(r, 200, &current));
            }
            match r.api.store.delete(&key, Some(rev)).await {
                Ok(_) => {
                    admission::after_write(r.api, r.kind, Some(&current), None);
                    quota::after_write(r.api, r.kind, Some(&current), None).await;
                    return Ok(written(r, 200, &current));
                }
                Err(StoreError::Conflict {
                    current: Some(kv), ..
                }) => {
                    current = parse_kv(r.kind, &kv)?;
                    rev = kv.mod_revision;
                    continue;
                }
                Err(StoreError::Conflict { current: None, .. }) | Err(StoreError::NotFound(_)) => {
                    return Err(r.not_found());
                }
                Err(e) => return Err(store_error(r, e)),
            }
        }
        {
            let m = meta::meta_mut(&mut next);
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), json!(finalizers));
            }
            let grace = graceful.unwrap_or(0);
            let already = m.get("deletionTimestamp").is_some();
            let shorter = m
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|g| grace < g);
            if !already || (graceful.is_some() && shorter) {
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                m.insert(
                    "deletionTimestamp".into(),
                    Value::String(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        }
        if r.kind.kind == "Namespace"
            && let Some(status) = next.get_mut("status").and_then(Value::as_object_mut)
        {
            status.insert("phase".into(), json!("Terminating"));
        }
        if next == current {
            return Ok(written(r, 200, &current));
        }
        if dry {
            return Ok(written(r, 200, &next));
        }
        let bytes = encode_stored(r, next.clone())?;
        match r.api.store.update(&key, bytes, rev).await {
            Ok(kv) => {
                meta::set_resource_version(&mut next, kv.mod_revision);
                return Ok(written(r, 200, &next));
            }
            Err(StoreError::Conflict {
                current: Some(kv), ..
            }) => {
                current = parse_kv(r.kind, &kv)?;
                rev = kv.mod_revision;
            }
            Err(StoreError::Conflict { current: None, .. }) | Err(StoreError::NotFound(_)) => {
                return Err(r.not_found());
            }
            Err(e) => return Err(store_error(r, e)),
        }
    }
    Err(conflict(r))
}

/// The grace period of a graceful deletion, for pods running on a node (as upstream's pod
/// strategy): `None` means delete at once.
fn graceful_period(kind: &Kind, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if kind.kind != "Pod" || !kind.group.is_empty() {
        return None;
    }
    let on_node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !on_node || matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let grace = requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0);
    (grace > 0).then_some(grace)
}

async fn delete_collection(r: &mut Req<'_>) -> Result<Response<Body>> {
    r.api.cache.wait_fresh().await?;
    let items = list::select(r)?;
    let mut deleted = Vec::new();
    for obj in items {
        let name = meta::name(&obj.value).unwrap_or("").to_string();
        let mut sub = Req {
            api: r.api,
            kind: r.kind,
            path: ResourcePath {
                name: Some(name),
                namespace: meta::namespace(&obj.value).map(String::from),
                ..r.path.clone()
            },
            query: r.query.clone(),
            repr: Representation::Object,
            content_type: r.content_type.clone(),
            body: r.body.clone(),
            warnings: Vec::new(),
            user_agent: r.user_agent.clone(),
            apply: false,
        };
        match delete(&mut sub).await {
            Ok(_) => deleted.push(obj.value.clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": format!("{}List", r.kind.kind),
        "apiVersion": r.kind.api_version(),
        "metadata": {"resourceVersion": r.api.cache.revision().to_string()},
        "items": deleted,
    });
    Ok(respond::json(200, &list))
}

async fn binding(r: &mut Req<'_>) -> Result<Response<Body>> {
    let b = body::decode(&r.body, r.content_type.as_deref())?;
    let target = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if target.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            r.name(),
            &[FieldError::required("target.name", "")],
        ));
    }
    let name = r.name().to_string();
    let now = meta::now_rfc3339();
    let change = move |current: &Value| -> Result<Value> {
        if current
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some()
        {
            return Err(ApiError::conflict(
                "pods",
                &name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let assigned = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !assigned.is_empty() {
            return Err(ApiError::conflict(
                "pods",
                &name,
                &format!("pod {name} is already assigned to node {assigned:?}"),
            ));
        }
        let mut next = current.clone();
        if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(target));
        }
        let status = next
            .as_object_mut()
            .map(|o| o.entry("status").or_insert_with(|| json!({})));
        if let Some(status) = status.and_then(Value::as_object_mut) {
            let conds = status.entry("conditions").or_insert_with(|| json!([]));
            if let Some(list) = conds.as_array_mut() {
                list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
            }
        }
        Ok(next)
    };
    let (mut current, mut rev) = starting_point(r).await?;
    for _ in 0..16 {
        let next = change(&current)?;
        let bytes = Bytes::from(serde_json::to_vec(&strip_rv(next)).unwrap_or_default());
        match r.api.store.update(&r.key(r.name()), bytes, rev).await {
            Ok(_) => {
                return Ok(respond::json(
                    201,
                    &keelson_apimachinery::errors::status_success(None),
                ));
            }
            Err(StoreError::Conflict {
                current: Some(kv), ..
            }) => {
                current = parse_kv(r.kind, &kv)?;
                rev = kv.mod_revision;
            }
            Err(e) => return Err(store_error(r, e)),
        }
    }
    Err(conflict(r))
}

/// Checks a label selector string early, with upstream's error.
pub fn parse_label_selector(s: Option<&str>) -> Result<Option<Selector>> {
    match s {
        None => Ok(None),
        Some(s) => Selector::parse(s)
            .map(Some)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

/// Creates an object on the server's own behalf (bootstrap); an existing one is left alone.
pub async fn ensure(api: &Api, kind: &'static Kind, obj: Value) -> Result<()> {
    let namespace = meta::namespace(&obj).map(String::from);
    let key = keys::object_key(kind, namespace.as_deref(), meta::name(&obj).unwrap_or(""));
    if api.cache.resource(kind).and_then(|c| c.get(&key)).is_some() {
        return Ok(());
    }
    let mut r = Req {
        api,
        kind,
        path: ResourcePath {
            group: kind.group.into(),
            version: kind.version.into(),
            namespace,
            resource: kind.plural.into(),
            ..Default::default()
        },
        query: Query::default(),
        repr: Representation::Object,
        content_type: Some("application/json".into()),
        body: Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()),
        warnings: Vec::new(),
        user_agent: Some("keelson-apiserver".into()),
        apply: false,
    };
    match create(&mut r).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}
