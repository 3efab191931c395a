//! Events about what controllers do (core/v1 Events, which `kubectl describe` reads), written
//! as upstream's recorder writes them: queued and sent by one worker per recorder (dropped
//! when 1,000 are waiting), repeats folded into one Event whose `count` grows, and from the
//! tenth distinct message of one reason about one object on, one Event "(combined from
//! similar events): ...".

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

/// Events waiting for the worker; more are dropped, as upstream's broadcaster drops them.
const MAX_QUEUED: usize = 1000;
/// Distinct messages of one reason about one object before they are combined (upstream's
/// `maxEvents` of the event aggregator).
const AGGREGATE_AFTER: usize = 10;
/// How long the aggregator remembers the messages of one reason about one object.
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Bound on remembered keys; past it the memory starts over (a lost count, never an error).
const MAX_REMEMBERED: usize = 4096;

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
/// (involved object uid, type, reason): the messages the aggregator groups.
type AggregateKey = (String, &'static str, String);

/// One event waiting in the queue.
struct Pending {
    involved: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

/// What the recorder remembers between events.
#[derive(Default)]
struct Memory {
    /// The Event (name, count) each key was last written as.
    seen: HashMap<EventKey, (String, i32)>,
    /// The distinct messages seen per aggregate key, and when the group started.
    similar: HashMap<AggregateKey, (Instant, HashSet<String>)>,
}

impl Memory {
    /// The message to record for `message`: itself, or the combined form once the object has
    /// had `AGGREGATE_AFTER` distinct messages of this type and reason within the window.
    fn aggregate(&mut self, key: AggregateKey, message: &str, now: Instant) -> String {
        if self.similar.len() > MAX_REMEMBERED {
            self.similar.clear();
        }
        let group = self
            .similar
            .entry(key)
            .or_insert_with(|| (now, HashSet::new()));
        if now.duration_since(group.0) > AGGREGATE_WINDOW {
            *group = (now, HashSet::new());
        }
        if group.1.len() < AGGREGATE_AFTER {
            group.1.insert(message.to_string());
        }
        if group.1.len() < AGGREGATE_AFTER {
            message.to_string()
        } else {
            format!("{COMBINED}{message}")
        }
    }

    fn remember(&mut self, key: EventKey, name: String, count: i32) {
        if self.seen.len() > MAX_REMEMBERED {
            self.seen.clear();
        }
        self.seen.insert(key, (name, count));
    }
}

/// The key repeats of `message` fold under: the message itself, or, for combined messages,
/// one key per object and reason so that they all count on one Event (as upstream's
/// aggregator keys them).
fn dedupe_key(uid: &str, reason: &str, message: &str) -> EventKey {
    let folded = if message.starts_with(COMBINED) {
        COMBINED
    } else {
        message
    };
    (uid.to_string(), reason.to_string(), folded.to_string())
}

/// The prefix of combined messages.
const COMBINED: &str = "(combined from similar events): ";

/// Writes Events for one component.
struct Sink {
    client: Client,
    component: &'static str,
    memory: Mutex<Memory>,
}

/// Records Events for one controller (the `source.component`).
#[derive(Clone)]
pub struct Recorder {
    sink: Arc<Sink>,
    queue: Arc<OnceLock<mpsc::Sender<Pending>>>,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder {
            sink: Arc::new(Sink {
                client,
                component,
                memory: Mutex::default(),
            }),
            queue: Arc::default(),
        }
    }

    /// Queues an event about `obj` for the background worker; never waits for the write.
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
        let queue = self.queue.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<Pending>(MAX_QUEUED);
            let sink = self.sink.clone();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    sink.write(p.involved, p.kind, &p.reason, &p.message).await;
                }
            });
            tx
        });
        let pending = Pending {
            involved,
            kind,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if queue.try_send(pending).is_err() {
            tracing::debug!(reason, "event queue full, dropping event");
        }
    }

    /// Records an event about the object `involved` names, waiting for the write.
    pub async fn publish_ref(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        self.sink.write(involved, kind, reason, message).await;
    }
}

impl Sink {
    async fn write(&self, involved: ObjectReference, kind: EventType, reason: &str, message: &str) {
        let ns = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(jiff::Timestamp::now());
        let uid = involved.uid.clone().unwrap_or_default();
        let (message, repeat) = {
            let Ok(mut memory) = self.memory.lock() else {
                return;
            };
            let message = memory.aggregate(
                (uid.clone(), kind.as_str(), reason.to_string()),
                message,
                Instant::now(),
            );
            let key = dedupe_key(&uid, reason, &message);
            let repeat = memory.seen.get(&key).cloned();
            (message, repeat)
        };
        let key = dedupe_key(&uid, reason, &message);
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now, "message": message});
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
            message: Some(message.clone()),
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
            // Upstream's recorder reports `source.host`, which controllers leave empty.
            reporting_instance: None,
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(created) => self.remember(key, created.name_any(), 1),
            Err(e) => tracing::debug!(error = %e, reason, "could not record event"),
        }
    }

    fn remember(&self, key: EventKey, name: String, count: i32) {
        if let Ok(mut memory) = self.memory.lock() {
            memory.remember(key, name, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AggregateKey {
        ("uid-1".into(), "Normal", "SuccessfulCreate".into())
    }

    #[test]
    fn the_tenth_distinct_message_is_combined() {
        let mut m = Memory::default();
        let now = Instant::now();
        for i in 0..9 {
            let msg = format!("Created pod: web-{i}");
            assert_eq!(m.aggregate(key(), &msg, now), msg);
        }
        assert_eq!(
            m.aggregate(key(), "Created pod: web-9", now),
            "(combined from similar events): Created pod: web-9"
        );
        assert_eq!(
            m.aggregate(key(), "Created pod: web-10", now),
            "(combined from similar events): Created pod: web-10"
        );
    }

    #[test]
    fn repeats_of_one_message_are_not_combined() {
        let mut m = Memory::default();
        let now = Instant::now();
        for _ in 0..20 {
            assert_eq!(m.aggregate(key(), "Back-off", now), "Back-off");
        }
    }

    #[test]
    fn other_reasons_and_objects_count_apart() {
        let mut m = Memory::default();
        let now = Instant::now();
        for i in 0..9 {
            m.aggregate(key(), &format!("Created pod: web-{i}"), now);
        }
        let other = (
            "uid-2".to_string(),
            "Normal",
            "SuccessfulCreate".to_string(),
        );
        assert_eq!(m.aggregate(other, "Created pod: x", now), "Created pod: x");
        let deleted = (
            "uid-1".to_string(),
            "Normal",
            "SuccessfulDelete".to_string(),
        );
        assert_eq!(
            m.aggregate(deleted, "Deleted pod: x", now),
            "Deleted pod: x"
        );
    }

    #[test]
    fn the_group_starts_over_after_the_window() {
        let mut m = Memory::default();
        let start = Instant::now();
        for i in 0..10 {
            m.aggregate(key(), &format!("Created pod: web-{i}"), start);
        }
        let later = start + AGGREGATE_WINDOW + Duration::from_secs(1);
        assert_eq!(
            m.aggregate(key(), "Created pod: web-11", later),
            "Created pod: web-11"
        );
    }
}
