//! The watch cache: every object of every resource in memory, fed by one storage watch,
//! serving LIST, GET and WATCH as kube-apiserver's cacher does.
//!
//! One watch on the whole registry prefix feeds every resource, so the cache's revision is the
//! store's revision: a read that waits until the cache has caught up with the store's current
//! revision is consistent (read-your-writes), whichever resource the last write touched.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use keelson_kinds::Kind;
use keelson_store::{Event, KeyValue, ListOptions, Revision, SharedStore};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::keys;

/// How many recent events each resource keeps for watches that resume from a revision.
const WINDOW: usize = 4096;
/// Capacity of each resource's live event channel; a watcher further behind is closed.
const CHANNEL: usize = 8192;

/// One object as the cache holds it: parsed, and serialized with its resourceVersion.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub value: Value,
    pub json: Bytes,
    pub revision: Revision,
}

impl CachedObject {
    fn from_kv(kv: &KeyValue) -> Option<Arc<CachedObject>> {
        let mut value: Value = serde_json::from_slice(&kv.value).ok()?;
        crate::meta::set_resource_version(&mut value, kv.mod_revision);
        let json = Bytes::from(serde_json::to_vec(&value).ok()?);
        Some(Arc::new(CachedObject {
            key: kv.key.clone(),
            value,
            json,
            revision: kv.mod_revision,
        }))
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    pub fn labels(&self) -> Option<&serde_json::Map<String, Value>> {
        self.value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one resource.
#[derive(Debug)]
pub struct CachedEvent {
    pub kind: EventType,
    /// The object after the change (for a delete: its last state, at the delete's revision).
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
    pub revision: Revision,
}

/// What resuming a watch at a revision finds.
pub enum Resume {
    /// The events after the revision, and a receiver for everything later.
    Events(Vec<Arc<CachedEvent>>, broadcast::Receiver<Arc<CachedEvent>>),
    /// The revision is older than the window: 410 Gone with the oldest revision available.
    TooOld(Revision),
}

struct ResourceState {
    objects: BTreeMap<String, Arc<CachedObject>>,
    window: VecDeque<Arc<CachedEvent>>,
    /// Every event after this revision is in `window`.
    window_start: Revision,
    /// Live events; replaced on a relist, which ends every watch that followed the old state.
    tx: broadcast::Sender<Arc<CachedEvent>>,
}

/// The cache of one resource (one kind's storage prefix).
pub struct ResourceCache {
    pub kind: &'static Kind,
    state: RwLock<ResourceState>,
}

impl ResourceCache {
    /// Objects whose key starts with `prefix`, in key order, with the cache's revision.
    pub fn list(&self, prefix: &str) -> Vec<Arc<CachedObject>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let end = keelson_store::prefix_end(prefix);
        let range = if end.is_empty() {
            state.objects.range(prefix.to_string()..)
        } else {
            state.objects.range(prefix.to_string()..end)
        };
        range.map(|(_, o)| o.clone()).collect()
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.objects.get(key).cloned()
    }

    /// Every object with `prefix` plus a receiver of later events, taken atomically.
    pub fn snapshot_and_subscribe(
        &self,
        prefix: &str,
    ) -> (
        Vec<Arc<CachedObject>>,
        broadcast::Receiver<Arc<CachedEvent>>,
    ) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let rx = state.tx.subscribe();
        let end = keelson_store::prefix_end(prefix);
        let objs = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| end.is_empty() || k.as_str() < end.as_str())
            .map(|(_, o)| o.clone())
            .collect();
        (objs, rx)
    }

    /// The events after `revision`, plus a receiver of later ones, taken atomically.
    pub fn resume(&self, revision: Revision) -> Resume {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if revision < state.window_start {
            return Resume::TooOld(state.window_start + 1);
        }
        let rx = state.tx.subscribe();
        let events = state
            .window
            .iter()
            .filter(|e| e.revision > revision)
            .cloned()
            .collect();
        Resume::Events(events, rx)
    }

    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .objects
            .len()
    }

    fn apply(&self, event: &Event) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let cached = match event {
            Event::Put { kv, .. } => {
                let Some(obj) = CachedObject::from_kv(kv) else {
                    tracing::warn!(key = %kv.key, "skipping an undecodable object in the store");
                    return;
                };
                let prev = state.objects.insert(kv.key.clone(), obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CachedEvent {
                    kind,
                    object: obj,
                    prev,
                    revision: kv.mod_revision,
                }
            }
            Event::Delete { revision, prev } => {
                let Some(old) = state.objects.remove(&prev.key) else {
                    return;
                };
                let mut last = old.value.clone();
                crate::meta::set_resource_version(&mut last, *revision);
                let json = Bytes::from(serde_json::to_vec(&last).unwrap_or_default());
                let obj = Arc::new(CachedObject {
                    key: prev.key.clone(),
                    value: last,
                    json,
                    revision: *revision,
                });
                CachedEvent {
                    kind: EventType::Deleted,
                    object: obj,
                    prev: Some(old),
                    revision: *revision,
                }
            }
        };
        let cached = Arc::new(cached);
        if state.window.len() >= WINDOW
            && let Some(evicted) = state.window.pop_front()
        {
            state.window_start = evicted.revision;
        }
        state.window.push_back(cached.clone());
        // No receivers is fine: nobody is watching this resource.
        let _ = state.tx.send(cached);
    }

    fn reset(&self, objects: BTreeMap<String, Arc<CachedObject>>, revision: Revision) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.objects = objects;
        state.window.clear();
        state.window_start = revision;
        state.tx = broadcast::channel(CHANNEL).0;
    }
}

/// The caches of every resource, and the revision they have all caught up to.
pub struct Cache {
    resources: HashMap<String, Arc<ResourceCache>>,
    revision: watch::Receiver<Revision>,
    store: SharedStore,
}

impl Cache {
    /// Lists the whole registry, then follows it with one watch. Returns when the cache is
    /// filled; the watch runs as a background task.
    pub async fn start(
        store: SharedStore,
        kinds: &'static [Kind],
    ) -> keelson_store::Result<Arc<Cache>> {
        let mut resources = HashMap::new();
        for kind in kinds {
            let prefix = keys::resource_prefix(kind);
            resources.entry(prefix).or_insert_with(|| {
                Arc::new(ResourceCache {
                    kind,
                    state: RwLock::new(ResourceState {
                        objects: BTreeMap::new(),
                        window: VecDeque::new(),
                        window_start: 0,
                        tx: broadcast::channel(CHANNEL).0,
                    }),
                })
            });
        }
        let (rev_tx, rev_rx) = watch::channel(0);
        let cache = Arc::new(Cache {
            resources,
            revision: rev_rx,
            store: store.clone(),
        });
        let revision = cache.fill().await?;
        rev_tx.send_replace(revision);
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(revision, rev_tx).await });
        Ok(cache)
    }

    /// Loads every object from the store; returns the revision of that read.
    async fn fill(&self) -> keelson_store::Result<Revision> {
        let list = self.store.list(keys::ROOT, ListOptions::default()).await?;
        let mut per: HashMap<&str, BTreeMap<String, Arc<CachedObject>>> = HashMap::new();
        for kv in &list.kvs {
            if let Some(prefix) = keys::prefix_of(&kv.key)
                && let Some((p, _)) = self.resources.get_key_value(prefix)
                && let Some(obj) = CachedObject::from_kv(kv)
            {
                per.entry(p.as_str())
                    .or_default()
                    .insert(kv.key.clone(), obj);
            }
        }
        for (prefix, rc) in &self.resources {
            rc.reset(
                per.remove(prefix.as_str()).unwrap_or_default(),
                list.revision,
            );
        }
        Ok(list.revision)
    }

    async fn follow(self: Arc<Self>, mut revision: Revision, rev_tx: watch::Sender<Revision>) {
        loop {
            let mut stream = match self.store.watch(keys::ROOT, revision).await {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(%err, "watch cache: storage watch failed; relisting");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    match self.fill().await {
                        Ok(r) => {
                            revision = r;
                            rev_tx.send_replace(r);
                        }
                        Err(err) => tracing::error!(%err, "watch cache: relist failed"),
                    }
                    continue;
                }
            };
            while let Some(item) = stream.recv().await {
                match item {
                    Ok(event) => {
                        let rev = event.revision();
                        if let Some(prefix) = keys::prefix_of(event.key())
                            && let Some(rc) = self.resources.get(prefix)
                        {
                            rc.apply(&event);
                        }
                        revision = rev;
                        rev_tx.send_replace(rev);
                    }
                    Err(err) => {
                        tracing::warn!(%err, "watch cache: storage watch ended");
                        break;
                    }
                }
            }
            if rev_tx.is_closed() && self.store.current_revision().await.is_err() {
                return;
            }
        }
    }

    pub fn resource(&self, kind: &Kind) -> Option<&Arc<ResourceCache>> {
        self.resources.get(&keys::resource_prefix(kind))
    }

    /// The revision every resource's cache has caught up to.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has seen every write up to the store's current revision.
    pub async fn wait_fresh(&self) -> Result<Revision, keelson_apimachinery::ApiError> {
        let want = self
            .store
            .current_revision()
            .await
            .map_err(|e| keelson_apimachinery::ApiError::internal(e.to_string()))?;
        self.wait_for(want).await
    }

    /// Waits until the cache has seen revision `want` (at most 3 s, as upstream's cacher).
    pub async fn wait_for(
        &self,
        want: Revision,
    ) -> Result<Revision, keelson_apimachinery::ApiError> {
        let mut rx = self.revision.clone();
        let fut = rx.wait_for(|r| *r >= want);
        match tokio::time::timeout(std::time::Duration::from_secs(3), fut).await {
            Ok(Ok(r)) => Ok(*r),
            _ => Err(keelson_apimachinery::ApiError::timeout(format!(
                "Too large resource version: {want}, current: {}",
                self.revision()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_store::MemoryStore;

    const PREFIX: &str = "/registry/core/configmaps/";

    fn cm(i: u64) -> Bytes {
        let v = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("k{}", i % 10), "namespace": "ns"}, "data": {"i": i.to_string()}});
        Bytes::from(v.to_string())
    }

    /// 10,000 changes to 10 keys while the store compacts every 500 revisions: a watcher sees
    /// them in revision order with none missing, or is told to relist and then converges.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchers_see_every_change_in_order_or_relist() {
        let store: SharedStore = Arc::new(MemoryStore::with_retention(500));
        let cache = Cache::start(store.clone(), keelson_kinds::ALL)
            .await
            .unwrap();
        let kind = keelson_kinds::lookup("", "v1", "configmaps").unwrap();
        let rc = cache.resource(kind).unwrap().clone();
        let (snapshot, mut rx) = rc.snapshot_and_subscribe(PREFIX);
        assert!(snapshot.is_empty());

        let writer_store = store.clone();
        let writer = tokio::spawn(async move {
            let mut revs = std::collections::HashMap::new();
            for i in 0..10_000u64 {
                let key = format!("{PREFIX}ns/k{}", i % 10);
                let kv = match revs.get(&key) {
                    None => writer_store.create(&key, cm(i)).await.unwrap(),
                    Some(rev) => writer_store.update(&key, cm(i), *rev).await.unwrap(),
                };
                revs.insert(key, kv.mod_revision);
            }
        });

        let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let mut last_rev = 0;
        let mut relists = 0;
        let mut events = 0;
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await {
                Ok(Ok(e)) => {
                    assert!(
                        e.revision > last_rev,
                        "event {} after {}",
                        e.revision,
                        last_rev
                    );
                    last_rev = e.revision;
                    events += 1;
                    let i = e.object.value["data"]["i"].as_str().unwrap().to_string();
                    if let Some(prev) = seen.insert(e.object.key.clone(), i.clone()) {
                        let (p, n): (u64, u64) = (prev.parse().unwrap(), i.parse().unwrap());
                        assert_eq!(n, p + 10, "a change to {} was skipped", e.object.key);
                    }
                    if i == "9999" {
                        break;
                    }
                }
                Ok(Err(_)) => {
                    // Lagged, or closed by a cache relist: start again from a fresh snapshot.
                    relists += 1;
                    let (objs, new_rx) = rc.snapshot_and_subscribe(PREFIX);
                    rx = new_rx;
                    seen = objs
                        .iter()
                        .map(|o| {
                            (
                                o.key.clone(),
                                o.value["data"]["i"].as_str().unwrap().to_string(),
                            )
                        })
                        .collect();
                    last_rev = objs.iter().map(|o| o.revision).max().unwrap_or(0);
                    if seen.values().any(|v| v == "9999") {
                        break;
                    }
                }
                other => panic!("watch ended early: {other:?}"),
            }
        }
        writer.await.unwrap();
        assert!(
            relists > 0 || events == 10_000,
            "saw {events} events and no relist"
        );
        let current = store.list(PREFIX, Default::default()).await.unwrap();
        for kv in current.kvs {
            let v: Value = serde_json::from_slice(&kv.value).unwrap();
            assert_eq!(
                seen.get(&kv.key).map(String::as_str),
                v["data"]["i"].as_str(),
                "{}",
                kv.key
            );
        }
        assert!(
            store.compacted_revision().await.unwrap() > 0,
            "the store never compacted"
        );
    }
}
