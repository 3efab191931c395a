//! The Event kind of events.k8s.io/v1: the same table and field selectors as core/v1 events.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use serde_json::Value;

use crate::core::event::{COLUMNS, EVENTS_V1, fields_of, row_of};
use crate::typed::Typed;

pub static STRATEGY: Typed<Event> = Typed::new("Event", "v1")
    .validate(crate::core::validation::validate_plain)
    .fields(field)
    .table(COLUMNS, row)
    .stored_as(crate::Conversion {
        storage_group: "",
        storage_plural: "events",
        to_storage,
        from_storage,
    });

/// events.k8s.io/v1 field names and their core/v1 counterparts (upstream's conversion).
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(mut obj: Value, api_version: &str, forward: bool) -> Value {
    if let Some(m) = obj.as_object_mut() {
        for (new, old) in RENAMES {
            let (from, to) = if forward { (new, old) } else { (old, new) };
            if let Some(v) = m.remove(*from) {
                m.insert((*to).to_string(), v);
            }
        }
        m.insert("apiVersion".into(), Value::String(api_version.into()));
        m.insert("kind".into(), Value::String("Event".into()));
    }
    obj
}

/// An events.k8s.io/v1 Event as the core/v1 Event it is stored as.
pub fn to_storage(obj: Value) -> Value {
    rename(obj, "v1", true)
}

/// A stored core/v1 Event as events.k8s.io/v1 shows it.
pub fn from_storage(obj: Value) -> Value {
    rename(obj, "events.k8s.io/v1", false)
}

fn field(obj: &Value, path: &str) -> Option<String> {
    fields_of(obj, path, &EVENTS_V1)
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    row_of(obj, now, &EVENTS_V1)
}
