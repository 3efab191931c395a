//! A shared informer: one watch per kind feeding one reflector store, with every change
//! (deletions included) fanned out to the controllers that subscribed before it started.

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
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    K: Send + Sync + 'static,
{
    /// An informer over every object of `api`; nothing is watched until [`Informer::start`].
    pub fn new(api: Api<K>) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            api,
            store,
            writer: Mutex::new(Some(writer)),
            subscribers: Mutex::new(Vec::new()),
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
            let mut events = watcher(this.api.clone()).boxed();
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
                    Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) => {
                        this.publish(Arc::new(o))
                    }
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
