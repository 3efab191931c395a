//! The Services, ReplicationControllers, ReplicaSets and StatefulSets the scheduler watches so
//! PodTopologySpread's system default constraints can spread the pods they select (upstream's
//! `DefaultSelector`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::terms::Selector;

type Writers = (
    Writer<Service>,
    Writer<ReplicationController>,
    Writer<ReplicaSet>,
    Writer<StatefulSet>,
);

/// The listers, filled by the scheduler's loop through [`WorkloadListers::changes`].
#[derive(Clone)]
pub struct WorkloadListers {
    services: Store<Service>,
    controllers: Store<ReplicationController>,
    replica_sets: Store<ReplicaSet>,
    stateful_sets: Store<StatefulSet>,
    writers: Arc<Mutex<Option<Writers>>>,
}

impl Default for WorkloadListers {
    fn default() -> Self {
        let (services, sw) = reflector::store();
        let (controllers, cw) = reflector::store();
        let (replica_sets, rw) = reflector::store();
        let (stateful_sets, fw) = reflector::store();
        WorkloadListers {
            services,
            controllers,
            replica_sets,
            stateful_sets,
            writers: Arc::new(Mutex::new(Some((sw, cw, rw, fw)))),
        }
    }
}

fn reflect<K>(api: Api<K>, w: Writer<K>) -> impl Stream<Item = ()> + Send + 'static
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(w)
        .filter_map(|ev| async move {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "watching workloads for default spreading");
            }
            None
        })
}

impl WorkloadListers {
    /// The watches that fill the listers, as a stream that yields nothing (spreading only
    /// scores, so a change retries no pod). Empty on a second call.
    pub fn changes(&self, client: &Client) -> impl Stream<Item = ()> + Send + 'static {
        let writers = self.writers.lock().ok().and_then(|mut w| w.take());
        let Some((sw, cw, rw, fw)) = writers else {
            return futures::stream::empty().boxed();
        };
        futures::stream::select(
            futures::stream::select(
                reflect(Api::<Service>::all(client.clone()), sw),
                reflect(Api::<ReplicationController>::all(client.clone()), cw),
            ),
            futures::stream::select(
                reflect(Api::<ReplicaSet>::all(client.clone()), rw),
                reflect(Api::<StatefulSet>::all(client.clone()), fw),
            ),
        )
        .boxed()
    }

    /// Adds a Service as its watch would (for tests).
    #[cfg(test)]
    pub(crate) fn apply_service(&self, service: Service) {
        if let Ok(mut w) = self.writers.lock()
            && let Some((sw, ..)) = w.as_mut()
        {
            sw.apply_watcher_event(&watcher::Event::Apply(service));
        }
    }

    /// The selector of the workloads selecting `pod`, as [`default_selector`].
    pub fn default_selector(&self, pod: &Pod) -> Option<Selector> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let services: Vec<Arc<Service>> = self
            .services
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let owner = controller_of(pod);
        let get = |kind: &str| {
            owner
                .as_ref()
                .filter(|(k, _)| k == kind)
                .map(|(_, name)| *name)
        };
        let rc = get("v1/ReplicationController")
            .and_then(|n| self.controllers.get(&ObjectRef::new(n).within(ns)));
        let rs = get("apps/v1/ReplicaSet")
            .and_then(|n| self.replica_sets.get(&ObjectRef::new(n).within(ns)));
        let ss = get("apps/v1/StatefulSet")
            .and_then(|n| self.stateful_sets.get(&ObjectRef::new(n).within(ns)));
        default_selector(
            pod,
            &services,
            rc.as_deref(),
            rs.as_ref()
                .and_then(|r| r.spec.as_ref())
                .map(|s| &s.selector),
            ss.as_ref()
                .and_then(|s| s.spec.as_ref())
                .map(|s| &s.selector),
        )
    }
}

/// The pod's controller as (`apiVersion/kind`, name).
fn controller_of(pod: &Pod) -> Option<(String, &str)> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (format!("{}/{}", o.api_version, o.kind), o.name.as_str()))
}

/// Upstream's `DefaultSelector`: the labels of the Services selecting the pod and of its
/// ReplicationController, and the requirements of its ReplicaSet's or StatefulSet's selector
/// (the one controlling it); `None` when that selects nothing in particular.
pub fn default_selector(
    pod: &Pod,
    services: &[Arc<Service>],
    controller: Option<&ReplicationController>,
    replica_set: Option<&LabelSelector>,
    stateful_set: Option<&LabelSelector>,
) -> Option<Selector> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&EMPTY);
    let mut set: BTreeMap<String, String> = BTreeMap::new();
    for s in services {
        // A Service without a selector selects nothing.
        let Some(sel) = s.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    if let Some(sel) = controller
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.selector.as_ref())
    {
        set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut expressions: Vec<LabelSelectorRequirement> = Vec::new();
    if let Some(sel) = replica_set.or(stateful_set)
        && Selector::new(Some(sel)) != Selector::new(None)
    {
        expressions.extend(sel.match_labels.iter().flatten().map(|(k, v)| {
            LabelSelectorRequirement {
                key: k.clone(),
                operator: "In".into(),
                values: Some(vec![v.clone()]),
            }
        }));
        expressions.extend(sel.match_expressions.iter().flatten().cloned());
    }
    if set.is_empty() && expressions.is_empty() {
        return None;
    }
    Some(Selector::new(Some(&LabelSelector {
        match_labels: Some(set),
        match_expressions: Some(expressions),
    })))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default",
            "labels": {"app": "web", "tier": "front", "pod-template-hash": "abc"}}}))
        .expect("pod")
    }

    fn service(selector: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "default"},
                "spec": {"selector": selector}}))
            .expect("service"),
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn services_and_controllers_make_the_selector() {
        let p = pod();
        assert_eq!(default_selector(&p, &[], None, None, None), None);
        let other = service(json!({"app": "db"}));
        let none = service(json!(null));
        assert_eq!(
            default_selector(&p, &[other.clone(), none], None, None, None),
            None,
            "services not selecting the pod add nothing"
        );
        let sel = default_selector(
            &p,
            &[service(json!({"app": "web"})), other],
            None,
            None,
            None,
        )
        .expect("a selector");
        assert!(sel.matches(&labels(&[("app", "web")])));
        assert!(!sel.matches(&labels(&[("app", "db")])));

        let rs: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"pod-template-hash": "abc"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}))
        .expect("selector");
        let sel = default_selector(&p, &[service(json!({"app": "web"}))], None, Some(&rs), None)
            .expect("a selector");
        assert!(sel.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("pod-template-hash", "abc")
        ])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "front")])));
        let rc: ReplicationController =
            serde_json::from_value(json!({"spec": {"selector": {"tier": "front"}}})).expect("rc");
        let sel = default_selector(&p, &[], Some(&rc), None, None).expect("a selector");
        assert!(sel.matches(&labels(&[("tier", "front")])));
    }
}
