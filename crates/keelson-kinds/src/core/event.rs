//! The Event kind (v1), and the table and field selectors both event APIs share.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use serde_json::Value;

use crate::Column;
use crate::typed::Typed;
use crate::util::{NAME_DESC, age, at, col, field_string, i, int_at, s, str_at, wide};

pub static STRATEGY: Typed<Event> = Typed::new("Event", "v1")
    .validate(crate::core::validation::validate_plain)
    .fields(field)
    .table(COLUMNS, row);

/// Where each printed field lives: core/v1 names, or events.k8s.io/v1 names.
pub struct Layout {
    pub regarding: &'static str,
    pub message: &'static str,
    pub first: &'static str,
    pub last: &'static str,
    pub count: &'static str,
    pub source: &'static str,
}

pub const CORE: Layout = Layout {
    regarding: "involvedObject",
    message: "message",
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    source: "source",
};

pub const EVENTS_V1: Layout = Layout {
    regarding: "regarding",
    message: "note",
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    source: "deprecatedSource",
};

/// The field selectors of events (upstream names them after the core/v1 fields).
pub fn fields_of(obj: &Value, path: &str, l: &Layout) -> Option<String> {
    let v = match path {
        "reason" | "type" => obj.get(path),
        "reportingComponent" => obj
            .get("reportingController")
            .or_else(|| obj.get("reportingComponent")),
        "source" => at(obj, &[l.source, "component"]),
        _ => {
            let sub = path.strip_prefix("involvedObject.")?;
            if ![
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            ]
            .contains(&sub)
            {
                return None;
            }
            at(obj, &[l.regarding, sub])
        }
    };
    Some(field_string(v))
}

fn field(obj: &Value, path: &str) -> Option<String> {
    fields_of(obj, path, &CORE)
}

pub static COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "Type of this event (Normal, Warning), new types could be added in the future.",
    ),
    col(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "The object that this event is about."),
    wide(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", "The number of times this event has occurred."),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DESC,
        priority: 1,
    },
];

fn nonempty<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// upstream's printEvent over either layout.
pub fn row_of(obj: &Value, now: Timestamp, l: &Layout) -> Vec<Value> {
    let first = match nonempty(obj, l.first) {
        Some(t) => age(Some(t), now),
        None => age(nonempty(obj, "eventTime"), now),
    };
    let mut last = nonempty(obj, l.last).map_or_else(|| first.clone(), |t| age(Some(t), now));
    let mut count = obj.get(l.count).and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = obj.get("series").filter(|v| v.is_object()) {
        last = age(str_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let regarding = obj.get(l.regarding);
    let kind = regarding
        .and_then(|r| str_at(r, &["kind"]))
        .unwrap_or("")
        .to_lowercase();
    let target = match regarding
        .and_then(|r| str_at(r, &["name"]))
        .filter(|n| !n.is_empty())
    {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    let component = at(obj, &[l.source, "component"])
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .or_else(|| nonempty(obj, "reportingController"))
        .or_else(|| nonempty(obj, "reportingComponent"))
        .unwrap_or("");
    let instance = at(obj, &[l.source, "host"])
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .or_else(|| nonempty(obj, "reportingInstance"))
        .unwrap_or("");
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        s(last),
        s(nonempty(obj, "type").unwrap_or("")),
        s(nonempty(obj, "reason").unwrap_or("")),
        s(target),
        s(regarding
            .and_then(|r| str_at(r, &["fieldPath"]))
            .unwrap_or("")),
        s(source),
        s(nonempty(obj, l.message).unwrap_or("").trim()),
        s(first),
        i(count),
        s(str_at(obj, &["metadata", "name"]).unwrap_or("")),
    ]
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    row_of(obj, now, &CORE)
}
