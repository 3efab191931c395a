//! Small helpers shared by the kinds: reading JSON, the Name and Age columns, cell values.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::Column;

/// upstream's description of the Name column.
pub const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// upstream's description of the Age column.
pub const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

pub const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
pub const AGE: Column = Column {
    name: "Age",
    type_: "string",
    format: "",
    description: AGE_DESC,
    priority: 0,
};

/// A plain string column.
pub const fn col(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_: "string",
        format: "",
        description,
        priority: 0,
    }
}

/// A plain integer column.
pub const fn int_col(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_: "integer",
        format: "",
        description,
        priority: 0,
    }
}

/// A string column shown only with `-o wide`.
pub const fn wide(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_: "string",
        format: "",
        description,
        priority: 1,
    }
}

pub static NAME_AGE: &[Column] = &[NAME, AGE];

/// The Name and Age cells.
pub fn name_age_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), age_cell(obj, now)]
}

/// `metadata.name` as a cell.
pub fn name_cell(obj: &Value) -> Value {
    Value::String(name(obj).to_string())
}

/// `metadata.name`, or "".
pub fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"]).unwrap_or("")
}

/// The Age cell from `metadata.creationTimestamp`.
pub fn age_cell(obj: &Value, now: Timestamp) -> Value {
    Value::String(age(str_at(obj, &["metadata", "creationTimestamp"]), now))
}

/// Age of a timestamp as `kubectl get` prints it.
pub fn age(ts: Option<&str>, now: Timestamp) -> String {
    keelson_apimachinery::duration::age(ts, now)
}

/// The value at a path of object keys.
pub fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

/// The string at a path of object keys.
pub fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(obj, path).and_then(Value::as_str)
}

/// The integer at a path of object keys.
pub fn int_at(obj: &Value, path: &[&str]) -> Option<i64> {
    at(obj, path).and_then(Value::as_i64)
}

/// The array at a path of object keys (empty if absent).
pub fn arr_at<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    at(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A string cell.
pub fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

/// An integer cell.
pub fn i(v: i64) -> Value {
    json!(v)
}

/// `<none>` when empty.
pub fn or_none(v: String) -> Value {
    if v.is_empty() { s("<none>") } else { s(v) }
}

/// A field as a string for field selectors: strings as they are, booleans and numbers printed.
pub fn field_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}
