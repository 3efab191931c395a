//! The Event kind of events.k8s.io/v1: the same table and field selectors as core/v1 events.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use serde_json::Value;

use crate::core::event::{COLUMNS, EVENTS_V1, fields_of, row_of};
use crate::typed::Typed;

pub static STRATEGY: Typed<Event> = Typed::new("Event", "v1")
    .validate(crate::core::validation::validate_plain)
    .fields(field)
    .table(COLUMNS, row);

fn field(obj: &Value, path: &str) -> Option<String> {
    fields_of(obj, path, &EVENTS_V1)
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    row_of(obj, now, &EVENTS_V1)
}
