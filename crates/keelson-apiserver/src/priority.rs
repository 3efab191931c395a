//! Priority admission (upstream's `Priority` plugin): a new pod's `spec.priorityClassName`
//! is resolved to `spec.priority` (and the class's `preemptionPolicy`); a pod without one
//! gets the global default class, if there is one, or priority 0.

use keelson_apimachinery::ApiError;
use keelson_kinds::Kind;
use serde_json::Value;

use crate::{Api, keys, meta};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The classes every cluster has (upstream creates them at start-up).
const SYSTEM_CLASSES: [(&str, i64); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// A PriorityClass as admission reads it.
#[derive(Clone, Debug, PartialEq)]
struct Class {
    name: String,
    value: i64,
    global_default: bool,
    preemption_policy: Option<String>,
}

fn classes(api: &Api) -> Vec<Class> {
    let Some(kind) = keelson_kinds::lookup("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Vec::new();
    };
    let Some(cache) = api.cache.resource(kind) else {
        return Vec::new();
    };
    cache
        .list(&keys::list_prefix(kind, None))
        .iter()
        .map(|pc| Class {
            name: meta::name(&pc.value).unwrap_or("").to_string(),
            value: pc.value.get("value").and_then(Value::as_i64).unwrap_or(0),
            global_default: pc
                .value
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            preemption_policy: pc
                .value
                .get("preemptionPolicy")
                .and_then(Value::as_str)
                .map(String::from),
        })
        .collect()
}

/// Fills in a new pod's priority from its class.
pub fn admit(api: &Api, kind: &Kind, obj: &mut Value) -> Result<()> {
    if !kind.group.is_empty() || kind.kind != "Pod" {
        return Ok(());
    }
    resolve(&classes(api), obj)
}

/// The decision, over the classes that exist.
fn resolve(classes: &[Class], obj: &mut Value) -> Result<()> {
    let pod_name = meta::name(obj).unwrap_or("").to_string();
    let asked = obj
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let class = if asked.is_empty() {
        classes
            .iter()
            .filter(|c| c.global_default)
            .min_by_key(|c| c.value)
            .cloned()
    } else {
        let found = classes
            .iter()
            .find(|c| c.name == asked)
            .cloned()
            .or_else(|| {
                SYSTEM_CLASSES
                    .iter()
                    .find(|(n, _)| *n == asked)
                    .map(|(n, v)| Class {
                        name: n.to_string(),
                        value: *v,
                        global_default: false,
                        preemption_policy: None,
                    })
            });
        match found {
            Some(c) => Some(c),
            None => {
                return Err(ApiError::forbidden(
                    "pods",
                    &pod_name,
                    &format!("no PriorityClass with name {asked} was found"),
                ));
            }
        }
    };
    let priority = class.as_ref().map_or(0, |c| c.value);
    let given = obj.pointer("/spec/priority").and_then(Value::as_i64);
    // The defaults set priority 0 for pods without a class; only a different value given
    // together with a class is refused.
    if let Some(given) = given
        && given != priority
        && !(asked.is_empty() && given == 0)
    {
        return Err(ApiError::forbidden(
            "pods",
            &pod_name,
            &format!(
                "the integer value of priority ({given}) must not be provided in pod spec; \
                 priority admission controller computed {priority} from the given PriorityClass name"
            ),
        ));
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    spec.insert("priority".into(), priority.into());
    if let Some(c) = class {
        spec.insert("priorityClassName".into(), c.name.into());
        if let Some(p) = c.preemption_policy {
            spec.insert("preemptionPolicy".into(), p.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn class(name: &str, value: i64, global_default: bool, policy: Option<&str>) -> Class {
        Class {
            name: name.into(),
            value,
            global_default,
            preemption_policy: policy.map(String::from),
        }
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn resolves_classes_as_upstream() {
        let classes = [
            class("high", 1000, false, Some("Never")),
            class("low", 10, true, None),
        ];
        let mut p = pod(json!({"priorityClassName": "high"}));
        resolve(&classes, &mut p).expect("admitted");
        assert_eq!(p["spec"]["priority"], 1000);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");

        let mut p = pod(json!({"priority": 0}));
        resolve(&classes, &mut p).expect("admitted");
        assert_eq!(p["spec"]["priority"], 10);
        assert_eq!(p["spec"]["priorityClassName"], "low");

        let mut p = pod(json!({"priority": 0}));
        resolve(&[], &mut p).expect("admitted");
        assert_eq!(p["spec"]["priority"], 0);

        let mut p = pod(json!({"priorityClassName": "system-node-critical"}));
        resolve(&[], &mut p).expect("admitted");
        assert_eq!(p["spec"]["priority"], 2_000_001_000);

        let err = resolve(&classes, &mut pod(json!({"priorityClassName": "nope"})))
            .expect_err("unknown class");
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: no PriorityClass with name nope was found"
        );
        let err = resolve(
            &classes,
            &mut pod(json!({"priorityClassName": "high", "priority": 5})),
        )
        .expect_err("mismatched priority");
        assert!(
            err.message.contains("must not be provided in pod spec"),
            "{err:?}"
        );
    }
}
