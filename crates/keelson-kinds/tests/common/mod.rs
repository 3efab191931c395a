//! Helpers shared by the integration tests: finding a kind's strategy and decoding objects.

#![allow(dead_code)]

use keelson_kinds::{Kind, lookup_kind};
use serde_json::Value;

/// The kind row for an `apiVersion` and `kind`.
pub fn kind(api_version: &str, kind: &str) -> &'static Kind {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    lookup_kind(group, version, kind).unwrap_or_else(|| panic!("no kind {api_version} {kind}"))
}

/// Decodes and defaults an object by its own apiVersion and kind.
pub fn defaulted(obj: Value) -> Value {
    let k = kind(
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    );
    k.strategy.decode_and_default(obj).expect("decodes")
}

/// Decodes, defaults and prepares an object for create.
pub fn created(obj: Value) -> Value {
    let k = kind(
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    );
    let mut v = k.strategy.decode_and_default(obj).expect("decodes");
    k.strategy.prepare_create(&mut v);
    v
}

/// The messages of validating `obj` (against `old` on update).
pub fn messages(obj: &Value, old: Option<&Value>) -> Vec<String> {
    let k = kind(
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    );
    k.strategy
        .validate(obj, old)
        .iter()
        .map(|e| e.message())
        .collect()
}
