//! Events about what controllers do (core/v1 Events, which `kubectl describe` reads), with
//! repeats folded into one Event whose `count` grows, as upstream's recorder does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// (involved object uid, reason, message): repeats of one key fold into one Event.
type EventKey = (String, String, String);

/// Records Events for one controller (the `source.component`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    seen: Arc<Mutex<HashMap<EventKey, (String, i32)>>>,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder {
            client,
            component,
            seen: Arc::default(),
        }
    }

    /// Records an event about `obj` in the background; failures are logged, never returned.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let involved = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: obj.meta().name.clone(),
            namespace: obj.meta().namespace.clone(),
            uid: obj.meta().uid.clone(),
            resource_version: obj.meta().resource_version.clone(),
            field_path: None,
        };
        let this = self.clone();
        let (reason, message) = (reason.to_string(), message.to_string());
        tokio::spawn(async move { this.publish_ref(involved, kind, &reason, &message).await });
    }

    /// Records an event about the object `involved` names.
    pub async fn publish_ref(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let ns = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(jiff::Timestamp::now());
        let key = (
            involved.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        let repeat = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.remember(key, name, count + 1);
                return;
            }
        }
        let obj_name = involved.name.clone().unwrap_or_default();
        let ev = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!(
                    "{obj_name}.{:x}",
                    jiff::Timestamp::now().as_nanosecond()
                )),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(kind.as_str().into()),
            source: Some(EventSource {
                component: Some(self.component.into()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some(self.component.into()),
            reporting_instance: Some(self.component.into()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(created) => self.remember(key, created.name_any(), 1),
            Err(e) => tracing::debug!(error = %e, reason, "could not record event"),
        }
    }

    fn remember(&self, key: EventKey, name: String, count: i32) {
        if let Ok(mut m) = self.seen.lock() {
            if m.len() > 4096 {
                m.clear();
            }
            m.insert(key, (name, count));
        }
    }
}
