//! Storage admission on create, as upstream's DefaultStorageClass and
//! StorageObjectInUseProtection plugins: a claim that names no class gets the default one
//! (the newest if several are marked), and claims and volumes get their protection
//! finalizers.

use keelson_kinds::Kind;
use serde_json::{Value, json};

use crate::{Api, keys, meta};

/// The annotations that mark the default class (GA and beta).
const DEFAULT_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Whether a StorageClass object is marked default.
fn is_default(class: &Value) -> bool {
    DEFAULT_ANNOTATIONS.iter().any(|a| {
        class
            .pointer(&format!("/metadata/annotations/{}", a.replace('/', "~1")))
            .and_then(Value::as_str)
            == Some("true")
    })
}

/// The default class among `classes`: the newest marked one, ties broken by name.
pub fn default_class<'a>(classes: impl IntoIterator<Item = &'a Value>) -> Option<String> {
    let created = |c: &Value| {
        c.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut marked: Vec<&Value> = classes.into_iter().filter(|c| is_default(c)).collect();
    marked.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| meta::name(a).cmp(&meta::name(b)))
    });
    marked.first().and_then(|c| meta::name(c)).map(String::from)
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let m = meta::meta_mut(obj);
    let list = m.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(a) = list.as_array_mut()
        && !a.iter().any(|x| x == f)
    {
        a.push(json!(f));
    }
}

/// Fills in a new claim's class and the protection finalizers; `classes` are the
/// StorageClass objects of the cluster.
pub fn admit_with<'a>(kind: &str, obj: &mut Value, classes: impl IntoIterator<Item = &'a Value>) {
    match kind {
        "PersistentVolumeClaim" => {
            let annotated = obj
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    BETA_CLASS.replace('/', "~1")
                ))
                .is_some();
            let named = obj
                .pointer("/spec/storageClassName")
                .is_some_and(|v| !v.is_null());
            if !annotated
                && !named
                && let Some(class) = default_class(classes)
                && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.insert("storageClassName".into(), json!(class));
            }
            add_finalizer(obj, PVC_FINALIZER);
        }
        "PersistentVolume" => add_finalizer(obj, PV_FINALIZER),
        _ => {}
    }
}

/// Storage admission for a create of `obj` as `kind`.
pub fn admit(api: &Api, kind: &Kind, obj: &mut Value) {
    if !kind.group.is_empty() || !matches!(kind.kind, "PersistentVolumeClaim" | "PersistentVolume")
    {
        return;
    }
    let classes = keelson_kinds::lookup("storage.k8s.io", "v1", "storageclasses")
        .and_then(|k| Some((k, api.cache.resource(k)?)))
        .map(|(k, cache)| cache.list(&keys::list_prefix(k, None)))
        .unwrap_or_default();
    admit_with(kind.kind, obj, classes.iter().map(|c| &c.value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: bool) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created, "annotations":
            if default { json!({"storageclass.kubernetes.io/is-default-class": "true"}) } else { json!({}) }}})
    }

    #[test]
    fn claims_without_a_class_get_the_newest_default() {
        let classes = [
            class("old", "2026-01-01T00:00:00Z", true),
            class("new", "2026-02-01T00:00:00Z", true),
            class("plain", "2026-03-01T00:00:00Z", false),
        ];
        let cases = [
            (json!({"spec": {}}), Some("new")),
            (json!({"spec": {"storageClassName": ""}}), Some("")),
            (
                json!({"spec": {"storageClassName": "plain"}}),
                Some("plain"),
            ),
            (
                json!({"metadata": {"annotations": {BETA_CLASS: "x"}}, "spec": {}}),
                None,
            ),
        ];
        for (mut claim, want) in cases {
            admit_with("PersistentVolumeClaim", &mut claim, classes.iter());
            assert_eq!(
                claim
                    .pointer("/spec/storageClassName")
                    .and_then(Value::as_str),
                want,
                "{claim}"
            );
            assert_eq!(claim["metadata"]["finalizers"], json!([PVC_FINALIZER]));
        }
        let mut claim = json!({"spec": {}});
        admit_with("PersistentVolumeClaim", &mut claim, [].iter());
        assert!(claim.pointer("/spec/storageClassName").is_none());
    }

    #[test]
    fn volumes_get_their_finalizer_once() {
        let mut pv = json!({"metadata": {"finalizers": [PV_FINALIZER, "x"]}});
        admit_with("PersistentVolume", &mut pv, [].iter());
        assert_eq!(pv["metadata"]["finalizers"], json!([PV_FINALIZER, "x"]));
    }
}
