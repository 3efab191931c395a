//! WATCH: a chunked stream of `{"type", "object"}` lines served from the watch cache, with
//! bookmarks, resumption from a resource version, 410 Gone and timeouts.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::Response;
use keelson_apimachinery::ApiError;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::cache::{CachedEvent, CachedObject, EventType, Resume};
use crate::keys;
use crate::list::{Filter, partial_metadata};
use crate::registry::Req;
use crate::respond::{self, Body, Representation};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
/// The default lifetime of a watch without `timeoutSeconds` (upstream picks 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Encoder {
    kind: &'static keelson_kinds::Kind,
    repr: Representation,
    table_req: Option<TableReq>,
}

/// What rendering a Table for a watch event needs, detached from the request's lifetime.
struct TableReq {
    kind: &'static keelson_kinds::Kind,
    include_object: Option<String>,
}

impl Encoder {
    fn event(&self, kind: &str, obj: &CachedObject) -> Bytes {
        let mut buf = BytesMut::with_capacity(obj.json.len() + 40);
        buf.put_slice(b"{\"type\":\"");
        buf.put_slice(kind.as_bytes());
        buf.put_slice(b"\",\"object\":");
        match self.repr {
            Representation::Object if crate::conversion::converts(self.kind) => buf.put_slice(
                &serde_json::to_vec(&crate::conversion::view(self.kind, &obj.value))
                    .unwrap_or_default(),
            ),
            Representation::Object if !obj.json.is_empty() => buf.put_slice(&obj.json),
            Representation::Object => {
                buf.put_slice(&serde_json::to_vec(&obj.value).unwrap_or_default())
            }
            Representation::Metadata => buf
                .put_slice(&serde_json::to_vec(&partial_metadata(&obj.value)).unwrap_or_default()),
            Representation::Table => {
                let t = self
                    .table_req
                    .as_ref()
                    .map(|t| t.render(&obj.value))
                    .unwrap_or(Value::Null);
                buf.put_slice(&serde_json::to_vec(&t).unwrap_or_default());
            }
        }
        buf.put_slice(b"}\n");
        buf.freeze()
    }

    fn value(&self, kind: &str, obj: &Value) -> Bytes {
        let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }
}

impl TableReq {
    fn render(&self, obj: &Value) -> Value {
        crate::list::table_for(
            self.kind,
            self.include_object.as_deref(),
            std::iter::once(obj),
            json!({"resourceVersion": crate::meta::resource_version(obj).unwrap_or("")}),
        )
    }
}

pub async fn watch(r: &Req<'_>) -> Result<Response<Body>> {
    let filter = Filter::new(r)?;
    let cache = r
        .api
        .cache
        .resource(r.kind)
        .ok_or_else(|| ApiError::internal("no cache for resource"))?
        .clone();
    let prefix = keys::list_prefix(r.kind, r.path.namespace.as_deref());
    let rv = r.query.revision()?;
    let initial_events = r.query.send_initial_events == Some(true);
    if initial_events
        && (r.query.resource_version_match.as_deref() != Some("NotOlderThan")
            || !r.query.allow_watch_bookmarks)
    {
        return Err(ApiError::invalid(
            "ListOptions",
            "",
            &[keelson_apimachinery::FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled and resourceVersionMatch is NotOlderThan with allowWatchBookmarks",
            )],
        ));
    }
    let encoder = Encoder {
        kind: r.kind,
        repr: r.repr,
        table_req: (r.repr == Representation::Table).then(|| TableReq {
            kind: r.kind,
            include_object: r.query.include_object.clone(),
        }),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let timeout = r
        .query
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = r.query.allow_watch_bookmarks;
    let api_version = r.kind.api_version();
    let kind_name = r.kind.kind;

    // Initial state and the receiver of later events.
    let (initial, resume_after, sub): (
        Vec<Arc<CachedObject>>,
        i64,
        broadcast::Receiver<Arc<CachedEvent>>,
    );
    let mut backlog: Vec<Bytes> = Vec::new();
    let mut bookmark_rv = 0;
    match rv {
        Some(v) if v > 0 && !initial_events => {
            r.api.cache.wait_for(v).await?;
            match cache.resume(v) {
                Resume::Events(events, rx_events) => {
                    backlog = events
                        .iter()
                        .filter_map(|e| convert(e, &filter).map(|(t, o)| encoder.event(t, &o)))
                        .collect();
                    initial = Vec::new();
                    resume_after = events.last().map(|e| e.revision).unwrap_or(v);
                    sub = rx_events;
                }
                Resume::TooOld(oldest) => {
                    let status =
                        ApiError::gone(format!("too old resource version: {v} ({oldest})"))
                            .to_status();
                    let _ = tx.send(encoder.value("ERROR", &status)).await;
                    drop(tx);
                    return Ok(respond::stream("application/json", rx));
                }
            }
        }
        _ => {
            if rv.is_none() || initial_events {
                r.api.cache.wait_fresh().await?;
            }
            // Every event up to this revision is applied, so the snapshot taken next holds it;
            // the receiver, subscribed atomically with the snapshot, holds everything after.
            bookmark_rv = r.api.cache.revision();
            let (objs, rx_events) = cache.snapshot_and_subscribe(&prefix);
            initial = objs
                .into_iter()
                .filter(|o| filter.matches(&o.value))
                .collect();
            resume_after = 0;
            sub = rx_events;
        }
    }
    let send_initial = rv.is_none() || rv == Some(0) || initial_events;
    let cache_for_rev = r.api.cache.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        if send_initial {
            for o in &initial {
                if tx.send(encoder.event("ADDED", o)).await.is_err() {
                    return;
                }
            }
        }
        for b in backlog {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if initial_events {
            let bm = json!({"kind": kind_name, "apiVersion": api_version, "metadata": {"resourceVersion": bookmark_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(encoder.value("BOOKMARK", &bm)).await.is_err() {
                return;
            }
        }
        let mut sub = sub;
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let bm = json!({"kind": kind_name, "apiVersion": api_version, "metadata": {"resourceVersion": cache_for_rev.revision().to_string()}});
                    if tx.send(encoder.value("BOOKMARK", &bm)).await.is_err() {
                        return;
                    }
                }
                ev = sub.recv() => match ev {
                    Ok(e) => {
                        if e.revision <= resume_after {
                            continue;
                        }
                        if !e.object.key.starts_with(&prefix) {
                            continue;
                        }
                        if let Some((t, o)) = convert(&e, &filter)
                            && tx.send(encoder.event(t, &o)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let status = ApiError::gone("too old resource version: the watch fell too far behind".to_string()).to_status();
                        let _ = tx.send(encoder.value("ERROR", &status)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    Ok(respond::stream("application/json", rx))
}

/// The event a watcher with `filter` sees for a cache event, as upstream's cacheWatcher
/// converts it: an object that stops matching is DELETED, one that starts matching ADDED.
fn convert(e: &CachedEvent, filter: &Filter) -> Option<(&'static str, Arc<CachedObject>)> {
    match e.kind {
        EventType::Deleted => {
            let prev = e.prev.as_ref().map(|p| &p.value).unwrap_or(&e.object.value);
            filter.matches(prev).then(|| ("DELETED", e.object.clone()))
        }
        _ => {
            let now = filter.matches(&e.object.value);
            let before = e.prev.as_ref().is_some_and(|p| filter.matches(&p.value));
            match (now, before) {
                (true, true) => Some(("MODIFIED", e.object.clone())),
                (true, false) => Some(("ADDED", e.object.clone())),
                (false, true) => {
                    let prev = e.prev.as_ref()?;
                    let mut v = prev.value.clone();
                    crate::meta::set_resource_version(&mut v, e.revision);
                    let json = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                    Some((
                        "DELETED",
                        Arc::new(CachedObject {
                            key: prev.key.clone(),
                            value: v,
                            json,
                            revision: e.revision,
                        }),
                    ))
                }
                (false, false) => None,
            }
        }
    }
}
