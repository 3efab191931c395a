//! A shared informer: one watch per kind feeding one reflector store, with every change
//! (deletions included) fanned out to the controllers that subscribed before it started.
//! Objects are trimmed before they are cached (kube-runtime's `.modify()` pattern): no
//! controller reads `metadata.managedFields` or the kubectl last-applied annotation.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// One watched kind: its cache and its subscribers.
pub struct Informer<K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + 'static> {
    api: Api<K>,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    subscribers: Mutex<Vec<UnboundedSender<Arc<K>>>>,
    trim: Trim,
}

/// What an informer drops from each object before caching it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// `metadata.managedFields` and the kubectl last-applied annotation: for kinds controllers
    /// only read, patch or create.
    Full,
    /// `metadata.managedFields` only (the apiserver keeps the stored ones on an update that
    /// omits them): for kinds controllers write back whole with PUT, where dropping an
    /// annotation would remove it from the object.
    ManagedFields,
}

/// The annotation `kubectl apply` keeps its last configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from `obj` what `trim` says no controller reads.
pub fn trim<K: Resource>(obj: &mut K, trim: Trim) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if trim == Trim::Full
        && let Some(annotations) = meta.annotations.as_mut()
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    K: Send + Sync + 'static,
{
    /// An informer over every object of `api`, caching them trimmed of managedFields and the
    /// last-applied annotation; nothing is watched until [`Informer::start`].
    pub fn new(api: Api<K>) -> Arc<Self> {
        Self::with_trim(api, Trim::Full)
    }

    /// An informer whose cached objects keep every annotation (controllers PUT them back).
    pub fn keeping_annotations(api: Api<K>) -> Arc<Self> {
        Self::with_trim(api, Trim::ManagedFields)
    }

    fn with_trim(api: Api<K>, trim: Trim) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api,
            store,
            writer: Mutex::new(Some(writer)),
            subscribers: Mutex::new(Vec::new()),
            trim,
        })
    }

    /// The cache; wait for [`Store::wait_until_ready`] before trusting it.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first list has filled the cache. Call it from one task only: the
    /// store's readiness signal wakes a single waiter.
    pub async fn wait_ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    /// Every object that changes or goes away, from now on.
    pub fn subscribe(&self) -> UnboundedReceiver<Arc<K>> {
        let (tx, rx) = unbounded();
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    fn publish(&self, obj: Arc<K>) {
        tracing::trace!(kind = %<K as kube::Resource>::kind(&()), name = ?obj.meta().name, "changed");
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|tx| tx.unbounded_send(obj.clone()).is_ok());
        }
    }

    /// Starts the watch on a task of its own; a second call does nothing.
    pub fn start(self: &Arc<Self>) {
        let Some(mut writer) = self.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let how = this.trim;
            let mut events = watcher(this.api.clone())
                .modify(move |o| trim(o, how))
                .boxed();
            let mut before: Vec<Arc<K>> = Vec::new();
            while let Some(ev) = events.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(error = %e, "watch failed; retrying");
                        continue;
                    }
                };
                if matches!(ev, Event::Init) {
                    before = this.store.state();
                }
                writer.apply_watcher_event(&ev);
                match ev {
                    // Subscribers share the cached copy rather than holding one of their own.
                    Event::Apply(o) | Event::InitApply(o) => {
                        let cached = this.store.get(&o.to_object_ref(()));
                        this.publish(cached.unwrap_or_else(|| Arc::new(o)))
                    }
                    Event::Delete(o) => this.publish(Arc::new(o)),
                    Event::InitDone => {
                        // Objects deleted while the watch was down are gone from the new list.
                        for old in std::mem::take(&mut before) {
                            let key = old.to_object_ref(());
                            if this.store.get(&key).is_none() {
                                this.publish(old);
                            }
                        }
                    }
                    Event::Init => {}
                }
            }
        });
    }
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {LAST_APPLIED: "{}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"containers": []},
        }))
        .unwrap()
    }

    #[test]
    fn trims_what_no_controller_reads() {
        let mut full = pod();
        trim(&mut full, Trim::Full);
        assert_eq!(full.metadata.managed_fields, None);
        let annotations = full.metadata.annotations.clone().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["keep"]);

        let mut kept = pod();
        trim(&mut kept, Trim::ManagedFields);
        assert_eq!(kept.metadata.managed_fields, None);
        assert!(
            kept.metadata
                .annotations
                .unwrap()
                .contains_key(LAST_APPLIED)
        );

        let mut only = pod();
        only.metadata.annotations = Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
        trim(&mut only, Trim::Full);
        assert_eq!(only.metadata.annotations, None);
    }
}
