//! Objects of kinds stored in another kind's form (events.k8s.io/v1 Events as core/v1 Events,
//! autoscaling/v1 HorizontalPodAutoscalers as autoscaling/v2): the view a request sees and
//! the form that is stored.

use std::borrow::Cow;

use keelson_kinds::Kind;
use serde_json::Value;

/// A stored object as the request's kind shows it.
pub fn view<'a>(kind: &Kind, stored: &'a Value) -> Cow<'a, Value> {
    match kind.strategy.conversion() {
        Some(c)
            if stored.get("apiVersion").and_then(Value::as_str) != Some(&kind.api_version()) =>
        {
            Cow::Owned((c.from_storage)(stored.clone()))
        }
        _ => Cow::Borrowed(stored),
    }
}

/// An object of the request's kind in the form it is stored in.
pub fn stored(kind: &Kind, obj: Value) -> Value {
    match kind.strategy.conversion() {
        Some(c) => (c.to_storage)(obj),
        None => obj,
    }
}

/// Whether objects of `kind` need converting when read.
pub fn converts(kind: &Kind) -> bool {
    kind.strategy.conversion().is_some()
}
