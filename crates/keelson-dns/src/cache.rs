//! The DNS server's view of the cluster: Services and EndpointSlices kept current from watches,
//! indexed the way lookups need them (a Service by namespace and name, its slices by the
//! `kubernetes.io/service-name` label). Applying a watch event is pure; [`run`] feeds it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)`.
type Key = (String, String);

/// Services and their EndpointSlices.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    services: HashMap<Key, Arc<Service>>,
    /// `(namespace, service)` → slice name → slice.
    slices: HashMap<Key, BTreeMap<String, Arc<EndpointSlice>>>,
    /// `(namespace, slice)` → the service it was filed under.
    slice_service: HashMap<Key, String>,
    /// How many Services each namespace has (a namespace with none has no names).
    namespaces: HashMap<String, usize>,
    /// Objects of an initial list not yet complete.
    init_services: Option<Vec<Service>>,
    init_slices: Option<Vec<EndpointSlice>>,
}

fn key_of(m: &kube::api::ObjectMeta) -> Key {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl Cache {
    /// The Service `ns/name`.
    pub fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        self.services
            .get(&(ns.to_string(), name.to_string()))
            .map(|s| s.as_ref())
    }

    /// The EndpointSlices of the Service `ns/name`.
    pub fn slices(&self, ns: &str, name: &str) -> impl Iterator<Item = &EndpointSlice> {
        self.slices
            .get(&(ns.to_string(), name.to_string()))
            .into_iter()
            .flat_map(|m| m.values().map(|s| s.as_ref()))
    }

    /// Whether namespace `ns` has any Service.
    pub fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.get(ns).is_some_and(|n| *n > 0)
    }

    /// Adds or replaces a Service.
    pub fn put_service(&mut self, svc: Service) {
        let key = key_of(&svc.metadata);
        if self.services.insert(key.clone(), Arc::new(svc)).is_none() {
            *self.namespaces.entry(key.0).or_default() += 1;
        }
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, svc: &Service) {
        let key = key_of(&svc.metadata);
        if self.services.remove(&key).is_some()
            && let Some(n) = self.namespaces.get_mut(&key.0)
        {
            *n -= 1;
            if *n == 0 {
                self.namespaces.remove(&key.0);
            }
        }
    }

    /// Adds or replaces an EndpointSlice (filed under the Service its label names).
    pub fn put_slice(&mut self, slice: EndpointSlice) {
        self.delete_slice(&slice);
        let (ns, name) = key_of(&slice.metadata);
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned()
        else {
            return;
        };
        self.slice_service
            .insert((ns.clone(), name.clone()), svc.clone());
        self.slices
            .entry((ns, svc))
            .or_default()
            .insert(name, Arc::new(slice));
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        let (ns, name) = key_of(&slice.metadata);
        if let Some(svc) = self.slice_service.remove(&(ns.clone(), name.clone())) {
            let key = (ns, svc);
            if let Some(m) = self.slices.get_mut(&key) {
                m.remove(&name);
                if m.is_empty() {
                    self.slices.remove(&key);
                }
            }
        }
    }

    /// Applies one event of the Service watch.
    pub fn service_event(&mut self, event: Event<Service>) {
        match event {
            Event::Init => self.init_services = Some(Vec::new()),
            Event::InitApply(s) => self.init_services.get_or_insert_default().push(s),
            Event::InitDone => {
                self.services.clear();
                self.namespaces.clear();
                for s in self.init_services.take().unwrap_or_default() {
                    self.put_service(s);
                }
            }
            Event::Apply(s) => self.put_service(s),
            Event::Delete(s) => self.delete_service(&s),
        }
    }

    /// Applies one event of the EndpointSlice watch.
    pub fn slice_event(&mut self, event: Event<EndpointSlice>) {
        match event {
            Event::Init => self.init_slices = Some(Vec::new()),
            Event::InitApply(s) => self.init_slices.get_or_insert_default().push(s),
            Event::InitDone => {
                self.slices.clear();
                self.slice_service.clear();
                for s in self.init_slices.take().unwrap_or_default() {
                    self.put_slice(s);
                }
            }
            Event::Apply(s) => self.put_slice(s),
            Event::Delete(s) => self.delete_slice(&s),
        }
    }
}

/// The cache shared by the watches and the server.
pub type Shared = Arc<RwLock<Cache>>;

/// Keeps `cache` current from watches of every Service and EndpointSlice until the process
/// ends (the watches retry with back-off on errors).
pub async fn run(client: Client, cache: Shared) {
    let services = watcher::watcher(Api::<Service>::all(client.clone()), Default::default());
    let slices = watcher::watcher(Api::<EndpointSlice>::all(client), Default::default());
    let services = services.default_backoff().map(|e| e.map(Either::Service));
    let slices = slices.default_backoff().map(|e| e.map(Either::Slice));
    let mut events = std::pin::pin!(futures::stream::select(services, slices));
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                let mut c = cache.write().unwrap_or_else(|e| e.into_inner());
                match e {
                    Either::Service(e) => c.service_event(e),
                    Either::Slice(e) => c.slice_event(e),
                }
            }
            Err(e) => tracing::warn!(error = %e, "dns watch"),
        }
    }
}

#[allow(clippy::large_enum_variant)] // one event at a time, never stored
enum Either {
    Service(Event<Service>),
    Slice(Event<EndpointSlice>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s
    }

    fn slice(ns: &str, name: &str, svc: &str) -> EndpointSlice {
        let mut s = EndpointSlice::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into());
        s
    }

    #[test]
    fn services_and_namespaces() {
        let mut c = Cache::default();
        c.service_event(Event::Apply(svc("a", "x")));
        c.service_event(Event::Apply(svc("a", "x")));
        c.service_event(Event::Apply(svc("a", "y")));
        assert!(c.service("a", "x").is_some() && c.has_namespace("a"));
        c.service_event(Event::Delete(svc("a", "x")));
        assert!(c.service("a", "x").is_none() && c.has_namespace("a"));
        c.service_event(Event::Delete(svc("a", "y")));
        assert!(!c.has_namespace("a"));
    }

    #[test]
    fn relist_replaces_everything() {
        let mut c = Cache::default();
        c.service_event(Event::Apply(svc("a", "old")));
        c.slice_event(Event::Apply(slice("a", "old-1", "old")));
        c.service_event(Event::Init);
        c.service_event(Event::InitApply(svc("a", "new")));
        assert!(
            c.service("a", "old").is_some(),
            "kept until the list is done"
        );
        c.service_event(Event::InitDone);
        assert!(c.service("a", "old").is_none() && c.service("a", "new").is_some());
        c.slice_event(Event::Init);
        c.slice_event(Event::InitApply(slice("a", "new-1", "new")));
        c.slice_event(Event::InitDone);
        assert_eq!(c.slices("a", "old").count(), 0);
        assert_eq!(c.slices("a", "new").count(), 1);
    }

    #[test]
    fn slice_moves_when_its_label_changes() {
        let mut c = Cache::default();
        c.slice_event(Event::Apply(slice("a", "s1", "x")));
        c.slice_event(Event::Apply(slice("a", "s2", "x")));
        assert_eq!(c.slices("a", "x").count(), 2);
        c.slice_event(Event::Apply(slice("a", "s1", "y")));
        assert_eq!(c.slices("a", "x").count(), 1);
        assert_eq!(c.slices("a", "y").count(), 1);
        c.slice_event(Event::Delete(slice("a", "s1", "y")));
        assert_eq!(c.slices("a", "y").count(), 0);
        // Without the label a slice belongs to no Service.
        let mut unlabelled = slice("a", "s3", "x");
        unlabelled.metadata.labels = None;
        c.slice_event(Event::Apply(unlabelled));
        assert_eq!(c.slices("a", "x").count(), 1);
    }
}
