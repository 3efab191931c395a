//! ResourceQuota admission: a new object is refused when it would take a namespace over one of
//! its quotas (upstream's messages), and otherwise charged to them with a compare-and-swap on
//! each quota's `status.used`, so concurrent creates never overshoot. Usage is recomputed from
//! the cache when quotas change and when charged objects go away.

use std::collections::BTreeMap;

use bytes::Bytes;
use keelson_apimachinery::ApiError;
use keelson_apimachinery::quantity::{self, Milli};
use keelson_kinds::Kind;
use keelson_store::Error as StoreError;
use serde_json::{Map, Value, json};

use crate::{Api, keys, meta};

type Result<T, E = ApiError> = std::result::Result<T, E>;

const ONE: Milli = 1000;

/// A quota and what one admission adds to its usage.
type Charge = (
    std::sync::Arc<crate::cache::CachedObject>,
    Vec<(String, Milli)>,
);

fn quota_kind() -> Option<&'static Kind> {
    keelson_kinds::lookup("", "v1", "resourcequotas")
}

/// The object at a JSON pointer (empty if absent).
fn object_at(v: &Value, pointer: &str) -> Map<String, Value> {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn milli(v: Option<&Value>) -> Milli {
    match v {
        Some(Value::String(s)) => quantity::parse(s).unwrap_or(0),
        Some(Value::Number(n)) => quantity::parse(&n.to_string()).unwrap_or(0),
        _ => 0,
    }
}

/// Whether a pod no longer counts (upstream: terminal pods use nothing).
fn terminal(obj: &Value) -> bool {
    matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// Requests or limits of a pod's containers, summed per resource (init containers count as
/// the larger of their maximum and the sum of the others, as upstream).
fn pod_resources(pod: &Value, field: &str) -> BTreeMap<String, Milli> {
    let get = |list: &str| -> Vec<BTreeMap<String, Milli>> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        c.pointer(&format!("/resources/{field}"))
                            .and_then(Value::as_object)
                            .map(|m| m.iter().map(|(k, v)| (k.clone(), milli(Some(v)))).collect())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut total: BTreeMap<String, Milli> = BTreeMap::new();
    for c in get("containers") {
        for (k, v) in c {
            *total.entry(k).or_default() += v;
        }
    }
    for c in get("initContainers") {
        for (k, v) in c {
            let t = total.entry(k).or_default();
            *t = (*t).max(v);
        }
    }
    total
}

/// What one object uses of each quota resource.
pub fn usage(kind: &Kind, obj: &Value) -> BTreeMap<String, Milli> {
    let mut u = BTreeMap::new();
    let count_name = if kind.group.is_empty() {
        format!("count/{}", kind.plural)
    } else {
        format!("count/{}.{}", kind.plural, kind.group)
    };
    if kind.kind == "Pod" && kind.group.is_empty() && terminal(obj) {
        return u;
    }
    u.insert(count_name, ONE);
    if !kind.group.is_empty() {
        return u;
    }
    match kind.kind {
        "Pod" => {
            u.insert("pods".into(), ONE);
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for (res, v) in pod_resources(obj, field) {
                    if field == "requests"
                        && matches!(res.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    {
                        u.insert(res.clone(), v);
                    }
                    u.insert(format!("{prefix}{res}"), v);
                }
            }
        }
        "Service" => {
            u.insert("services".into(), ONE);
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if ty == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), ONE);
            }
            if matches!(ty, "NodePort" | "LoadBalancer") {
                let ports = obj
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                u.insert("services.nodeports".into(), ports as Milli * ONE);
            }
        }
        "PersistentVolumeClaim" => {
            let storage = milli(obj.pointer("/spec/resources/requests/storage"));
            u.insert("persistentvolumeclaims".into(), ONE);
            u.insert("requests.storage".into(), storage);
            // Per-class usage, as upstream: <class>.storageclass.storage.k8s.io/<resource>.
            let class = obj
                .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .or_else(|| obj.pointer("/spec/storageClassName"))
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                let prefix = format!("{class}.storageclass.storage.k8s.io/");
                u.insert(format!("{prefix}persistentvolumeclaims"), ONE);
                u.insert(format!("{prefix}requests.storage"), storage);
            }
        }
        "ConfigMap" | "Secret" | "ReplicationController" | "ResourceQuota" => {
            u.insert(kind.plural.to_string(), ONE);
        }
        _ => {}
    }
    u
}

/// Whether a quota's scopes select the object (scopes only narrow pods).
fn in_scope(quota: &Value, kind: &Kind, obj: &Value) -> bool {
    let mut scopes: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(exprs) = quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
    {
        for e in exprs {
            let name = e
                .get("scopeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let op = e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("Exists")
                .to_string();
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            scopes.push((name, op, values));
        }
    }
    if scopes.is_empty() {
        return true;
    }
    if kind.kind != "Pod" || !kind.group.is_empty() {
        return false;
    }
    let best_effort = keelson_kinds::core::pod::qos_class(obj) == "BestEffort";
    let terminating = obj.pointer("/spec/activeDeadlineSeconds").is_some();
    scopes.iter().all(|(name, op, values)| match name.as_str() {
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "PriorityClass" => {
            let pc = obj
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            match op.as_str() {
                "In" => values.iter().any(|v| v == pc),
                "NotIn" => !values.iter().any(|v| v == pc),
                "Exists" => !pc.is_empty(),
                "DoesNotExist" => pc.is_empty(),
                _ => false,
            }
        }
        _ => false,
    })
}

/// Resources a quota constrains that every container must state (upstream: a quota on
/// `requests.memory` refuses pods whose containers omit memory requests).
fn must_specify(quota_hard: &Map<String, Value>, pod: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (res, field, name) in [
        ("limits.cpu", "limits", "cpu"),
        ("limits.memory", "limits", "memory"),
        ("requests.cpu", "requests", "cpu"),
        ("requests.memory", "requests", "memory"),
        ("cpu", "requests", "cpu"),
        ("memory", "requests", "memory"),
    ] {
        if !quota_hard.contains_key(res) {
            continue;
        }
        let lacking: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter(|c| c.pointer(&format!("/resources/{field}/{name}")).is_none())
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if !lacking.is_empty() {
            missing.push(format!("{res} for: {}", lacking.join(",")));
        }
    }
    missing
}

fn quotas(api: &Api, namespace: &str) -> Vec<std::sync::Arc<crate::cache::CachedObject>> {
    let Some(kind) = quota_kind() else {
        return Vec::new();
    };
    api.cache
        .resource(kind)
        .map(|c| c.list(&keys::list_prefix(kind, Some(namespace))))
        .unwrap_or_default()
}

fn listing(resources: &[(&String, Milli)]) -> String {
    resources
        .iter()
        .map(|(r, v)| format!("{r}={}", quantity::format(r, *v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks a new object against its namespace's quotas and, unless `dry_run`, charges it.
pub async fn admit(api: &Api, kind: &Kind, obj: &Value, dry_run: bool) -> Result<()> {
    let Some(ns) = meta::namespace(obj)
        .map(String::from)
        .filter(|_| kind.namespaced)
    else {
        return Ok(());
    };
    if quotas(api, &ns).is_empty() {
        return Ok(());
    }
    let name = meta::name(obj).unwrap_or("").to_string();
    let forbidden =
        |detail: String| ApiError::forbidden(&kind.qualified_resource(), &name, &detail);
    let used_by_obj = usage(kind, obj);
    for _attempt in 0..32 {
        let mut charges = Vec::new();
        for q in quotas(api, &ns) {
            if !in_scope(&q.value, kind, obj) {
                continue;
            }
            let qname = meta::name(&q.value).unwrap_or("").to_string();
            let hard = object_at(&q.value, "/spec/hard");
            if kind.kind == "Pod" && kind.group.is_empty() {
                let missing = must_specify(&hard, obj);
                if !missing.is_empty() {
                    return Err(forbidden(format!(
                        "failed quota: {qname}: must specify {}",
                        missing.join("; ")
                    )));
                }
            }
            let constrained: Vec<(&String, Milli)> = used_by_obj
                .iter()
                .filter(|(r, v)| **v != 0 && hard.contains_key(*r))
                .map(|(r, v)| (r, *v))
                .collect();
            if constrained.is_empty() {
                continue;
            }
            let mut used = object_at(&q.value, "/status/used");
            if constrained.iter().any(|(r, _)| !used.contains_key(*r)) {
                recalculate(api, &ns).await;
                used = match quota_kind()
                    .and_then(|k| api.cache.resource(k))
                    .and_then(|c| c.get(&q.key))
                {
                    Some(fresh) => object_at(&fresh.value, "/status/used"),
                    None => used,
                };
            }
            let over: Vec<(&String, Milli)> = constrained
                .iter()
                .filter(|(r, v)| milli(used.get(*r)) + v > milli(hard.get(*r)))
                .cloned()
                .collect();
            if !over.is_empty() {
                let used_list: Vec<(&String, Milli)> = over
                    .iter()
                    .map(|(r, _)| (*r, milli(used.get(*r))))
                    .collect();
                let hard_list: Vec<(&String, Milli)> = over
                    .iter()
                    .map(|(r, _)| (*r, milli(hard.get(*r))))
                    .collect();
                return Err(forbidden(format!(
                    "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                    listing(&over),
                    listing(&used_list),
                    listing(&hard_list)
                )));
            }
            charges.push((
                q.clone(),
                constrained
                    .iter()
                    .map(|(r, v)| ((*r).clone(), *v))
                    .collect::<Vec<_>>(),
            ));
        }
        if dry_run || charges.is_empty() {
            return Ok(());
        }
        match charge(api, &charges).await {
            Ok(()) => return Ok(()),
            // A quota changed under us: decide again on its new state.
            Err(StoreError::Conflict { .. }) => {
                api.cache.wait_fresh().await?;
                continue;
            }
            Err(e) => return Err(ApiError::internal(format!("charging quota: {e}"))),
        }
    }
    Err(ApiError::conflict(
        "resourcequotas",
        "",
        "too many concurrent updates to the namespace's quotas; try again",
    ))
}

/// Adds the charges to each quota's `status.used` with a compare-and-swap on its revision.
async fn charge(api: &Api, charges: &[Charge]) -> std::result::Result<(), StoreError> {
    for (q, add) in charges {
        let mut next = q.value.clone();
        let used = object_at(&next, "/status/used");
        let mut used: BTreeMap<String, Milli> = used
            .iter()
            .map(|(k, v)| (k.clone(), milli(Some(v))))
            .collect();
        for (r, v) in add {
            *used.entry(r.clone()).or_default() += v;
        }
        set_status(&mut next, &used);
        api.store
            .update(&q.key, stored_bytes(next), q.revision)
            .await?;
    }
    Ok(())
}

fn set_status(quota: &mut Value, used: &BTreeMap<String, Milli>) {
    let hard = quota.pointer("/spec/hard").cloned().unwrap_or(json!({}));
    let used: Map<String, Value> = used
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(quantity::format(k, *v))))
        .collect();
    if let Some(o) = quota.as_object_mut() {
        o.insert("status".into(), json!({"hard": hard, "used": used}));
    }
}

fn stored_bytes(mut v: Value) -> Bytes {
    meta::meta_mut(&mut v).remove("resourceVersion");
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// Keeps quota usage exact after a write: a quota that was created or changed, an object that
/// went away, or a pod that finished.
pub async fn after_write(api: &Api, kind: &Kind, old: Option<&Value>, new: Option<&Value>) {
    let Some(ns) = new.or(old).and_then(meta::namespace).map(String::from) else {
        return;
    };
    let is_quota = kind.kind == "ResourceQuota" && kind.group.is_empty();
    let changed_hard = is_quota
        && old.and_then(|o| o.pointer("/spec/hard")) != new.and_then(|n| n.pointer("/spec/hard"));
    let gone = new.is_none();
    let finished = kind.kind == "Pod" && new.is_some_and(terminal) && !old.is_some_and(terminal);
    if (changed_hard || gone || finished) && !quotas(api, &ns).is_empty() {
        recalculate(api, &ns).await;
    }
}

/// Recomputes `status.used` of every quota in a namespace from the objects there now.
pub async fn recalculate(api: &Api, namespace: &str) {
    if api.cache.wait_fresh().await.is_err() {
        return;
    }
    for _ in 0..8 {
        let mut conflict = false;
        for q in quotas(api, namespace) {
            let hard = object_at(&q.value, "/spec/hard");
            let mut used: BTreeMap<String, Milli> = hard.keys().map(|k| (k.clone(), 0)).collect();
            // Each stored resource once: kinds stored as another kind are skipped.
            let counted = keelson_kinds::ALL.iter().filter(|k| {
                k.namespaced
                    && k.strategy.conversion().is_none()
                    && k.version == keelson_kinds::preferred_version(k.group)
            });
            for kind in counted {
                let Some(cache) = api.cache.resource(kind) else {
                    continue;
                };
                for o in cache.list(&keys::list_prefix(kind, Some(namespace))) {
                    if !in_scope(&q.value, kind, &o.value) {
                        continue;
                    }
                    for (r, v) in usage(kind, &o.value) {
                        if let Some(u) = used.get_mut(&r) {
                            *u += v;
                        }
                    }
                }
            }
            let mut next = q.value.clone();
            set_status(&mut next, &used);
            if next.get("status") == q.value.get("status") {
                continue;
            }
            match api
                .store
                .update(&q.key, stored_bytes(next), q.revision)
                .await
            {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => conflict = true,
                Err(e) => tracing::warn!(%e, quota = %q.key, "recalculating quota usage"),
            }
        }
        if !conflict {
            return;
        }
        let _ = api.cache.wait_fresh().await;
    }
}
