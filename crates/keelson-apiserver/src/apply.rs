//! Server-side apply and field managers: merging an apply configuration into the live object
//! with conflicts against other managers, removing what a manager stopped applying, and
//! recording who changed what on every other write.

use keelson_apimachinery::ApiError;
use serde_json::{Value, json};

use crate::fields::{self, Entry, FieldSet};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Who is writing, as managedFields records it.
pub struct Manager<'a> {
    pub name: &'a str,
    pub api_version: &'a str,
    pub time: &'a str,
    pub subresource: Option<&'a str>,
}

impl Manager<'_> {
    fn entry(&self, operation: &str, fields: FieldSet) -> Entry {
        Entry {
            manager: self.name.to_string(),
            operation: operation.to_string(),
            api_version: self.api_version.to_string(),
            time: self.time.to_string(),
            subresource: self.subresource.map(String::from),
            fields,
        }
    }

    fn owns(&self, e: &Entry, operation: &str) -> bool {
        e.manager == self.name
            && e.operation == operation
            && e.subresource.as_deref() == self.subresource
    }
}

/// The 409 upstream answers when an apply would change fields other managers own.
fn conflict_error(conflicts: &[(String, String)]) -> ApiError {
    let message = if let [(manager, path)] = conflicts {
        format!("Apply failed with 1 conflict: conflict with {manager}: {path}")
    } else {
        let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(
                conflicts
                    .iter()
                    .filter(|(cm, _)| cm == m)
                    .map(|(_, p)| format!("- {p}")),
            );
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p}))
        .collect();
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(json!({"causes": causes})),
    }
}

/// Merges `applied` into `current` (None: the object is being created) for `manager`.
/// Returns the object to store, with its managedFields updated.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &Manager<'_>,
    force: bool,
) -> Result<Value> {
    let new_set = FieldSet::of_object(applied, false);
    let mut entries = current.map(fields::entries).unwrap_or_default();
    let previous = entries
        .iter()
        .find(|e| manager.owns(e, "Apply"))
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    // Conflicts: fields this apply sets to a new value that another manager owns.
    let mut conflicts = Vec::new();
    if let Some(cur) = current {
        for leaf in new_set.leaves() {
            if leaf.last().is_some_and(|l| l == ".") {
                continue;
            }
            let live = fields::get(cur, &leaf);
            if live.is_none() || live == fields::get(applied, &leaf) {
                continue;
            }
            for e in entries.iter().filter(|e| !manager.owns(e, "Apply")) {
                if e.fields.contains(&leaf) {
                    conflicts.push((e.describe(), fields::display(&leaf), leaf.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            let list: Vec<(String, String)> =
                conflicts.into_iter().map(|(m, p, _)| (m, p)).collect();
            return Err(conflict_error(&list));
        }
        // Forced: the conflicting fields change owner.
        for (_, _, leaf) in &conflicts {
            for e in entries.iter_mut().filter(|e| !manager.owns(e, "Apply")) {
                e.fields.remove(leaf);
            }
        }
    }

    let mut merged = match current {
        Some(c) => c.clone(),
        None => json!({}),
    };
    let mut config = applied.clone();
    if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    merge_applied(&mut merged, &config, "");

    // Fields this manager applied before and no longer does are removed, unless someone else
    // owns them too. List items go first, so their members need no separate removal.
    let mut dropped = previous.difference(&new_set).leaves();
    dropped.sort_by_key(|l| l.last().is_none_or(|x| x != "."));
    for leaf in dropped {
        let shared = entries
            .iter()
            .any(|e| !manager.owns(e, "Apply") && e.fields.contains(&leaf));
        let is_key_of_kept_item = leaf.len() >= 2
            && leaf[leaf.len() - 2].starts_with("k:")
            && new_set.contains(&leaf[..leaf.len() - 1]);
        if !shared && !is_key_of_kept_item {
            fields::remove(&mut merged, &leaf);
        }
    }

    entries.retain(|e| !manager.owns(e, "Apply"));
    entries.push(manager.entry("Apply", new_set));
    fields::set_entries(&mut merged, entries);
    Ok(merged)
}

/// Merges an apply configuration into the live object: maps and structs field by field,
/// associative lists item by item on all their list-map keys (a port is its number and its
/// protocol, so `53/TCP` and `53/UDP` stay two ports), sets as unions, anything else replaced.
fn merge_applied(target: &mut Value, config: &Value, field: &str) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(cur) = t.get_mut(k) {
                    merge_applied(cur, v, k);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Array(cur), Value::Array(items))
            if items.iter().all(Value::is_object) && fields::set_keys(field, items).is_some() =>
        {
            let keys = fields::set_keys(field, items).unwrap_or_default();
            for item in items {
                match cur.iter_mut().find(|c| fields::same_item(keys, c, item)) {
                    Some(c) => merge_applied(c, item, ""),
                    None => cur.push(item.clone()),
                }
            }
        }
        (Value::Array(cur), Value::Array(items)) if field == "finalizers" => {
            for i in items {
                if !cur.contains(i) {
                    cur.push(i.clone());
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

/// Records a non-apply write: the fields it changed now belong to `manager` (operation
/// Update), and no longer to anyone else.
pub fn record_update(current: Option<&Value>, next: &mut Value, manager: &Manager<'_>) {
    let with_status = manager.subresource == Some("status");
    let changed = fields::changed(current, next, with_status);
    let mut entries = current.map(fields::entries).unwrap_or_default();
    if changed.is_empty() {
        fields::set_entries(next, entries);
        return;
    }
    let leaves = changed.leaves();
    for e in entries.iter_mut().filter(|e| !manager.owns(e, "Update")) {
        for leaf in &leaves {
            e.fields.remove(leaf);
        }
    }
    match entries.iter_mut().find(|e| manager.owns(e, "Update")) {
        Some(e) => {
            for leaf in &leaves {
                e.fields.insert(leaf);
            }
            e.time = manager.time.to_string();
            e.api_version = manager.api_version.to_string();
        }
        None => entries.push(manager.entry("Update", changed)),
    }
    fields::set_entries(next, entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(name: &str) -> Manager<'_> {
        Manager {
            name,
            api_version: "apps/v1",
            time: "2026-01-01T00:00:00Z",
            subresource: None,
        }
    }

    fn deploy(replicas: i64, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": labels}, "spec": {"replicas": replicas}})
    }

    #[test]
    fn apply_removes_what_a_manager_stops_applying() {
        let first = apply(
            None,
            &deploy(2, json!({"a": "1", "b": "2"})),
            &mgr("kubectl"),
            false,
        )
        .unwrap();
        assert_eq!(first["metadata"]["managedFields"][0]["operation"], "Apply");
        let second = apply(
            Some(&first),
            &deploy(3, json!({"a": "1"})),
            &mgr("kubectl"),
            false,
        )
        .unwrap();
        assert_eq!(second["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(second["spec"]["replicas"], 3);
    }

    #[test]
    fn conflicts_name_the_other_manager_unless_forced() {
        let mut live = deploy(2, json!({"a": "1"}));
        record_update(None, &mut live, &mgr("kubectl-client-side-apply"));
        let err = apply(
            Some(&live),
            &deploy(5, json!({"a": "1"})),
            &mgr("kubectl"),
            false,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        // The same value is no conflict: ownership is shared.
        let shared = apply(
            Some(&live),
            &deploy(2, json!({"a": "1"})),
            &mgr("kubectl"),
            false,
        )
        .unwrap();
        assert_eq!(fields::entries(&shared).len(), 2);
        let forced = apply(
            Some(&live),
            &deploy(5, json!({"a": "1"})),
            &mgr("kubectl"),
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let other = fields::entries(&forced)
            .into_iter()
            .find(|e| e.manager != "kubectl")
            .unwrap();
        assert!(
            !other
                .fields
                .contains(&["f:spec".to_string(), "f:replicas".to_string()])
        );
    }

    fn pod(ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dns"},
            "spec": {"containers": [{"name": "c", "image": "dns", "ports": ports}]}})
    }

    #[test]
    fn ports_are_keyed_by_number_and_protocol() {
        let config = pod(json!([
            {"containerPort": 53, "name": "dns-tcp"},
            {"containerPort": 53, "protocol": "UDP", "name": "dns"}
        ]));
        let first = apply(None, &config, &mgr("kubectl"), false).unwrap();
        let owned = fields::entries(&first)[0].fields.to_fields_v1();
        let ports = &owned["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:ports"];
        assert!(
            ports
                .get("k:{\"containerPort\":53,\"protocol\":\"TCP\"}")
                .is_some(),
            "{ports}"
        );
        assert!(
            ports
                .get("k:{\"containerPort\":53,\"protocol\":\"UDP\"}")
                .is_some(),
            "{ports}"
        );
        // The live object as stored, with the protocol defaulted.
        let mut live = first.clone();
        live["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        let again = apply(Some(&live), &config, &mgr("kubectl"), false).unwrap();
        assert_eq!(
            again["spec"]["containers"][0]["ports"],
            json!([
                {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"},
                {"containerPort": 53, "protocol": "UDP", "name": "dns"}
            ])
        );
        // Dropping the UDP port removes only that one.
        let tcp_only = pod(json!([{"containerPort": 53, "name": "dns-tcp"}]));
        let third = apply(Some(&again), &tcp_only, &mgr("kubectl"), false).unwrap();
        assert_eq!(
            third["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}])
        );
    }

    #[test]
    fn updates_take_ownership_of_what_they_change() {
        let mut v1 = deploy(1, json!({"a": "1"}));
        record_update(None, &mut v1, &mgr("creator"));
        let mut v2 = v1.clone();
        v2["spec"]["replicas"] = json!(4);
        record_update(Some(&v1), &mut v2, &mgr("scaler"));
        let entries = fields::entries(&v2);
        let path = ["f:spec".to_string(), "f:replicas".to_string()];
        assert!(
            entries
                .iter()
                .find(|e| e.manager == "scaler")
                .unwrap()
                .fields
                .contains(&path)
        );
        assert!(
            !entries
                .iter()
                .find(|e| e.manager == "creator")
                .unwrap()
                .fields
                .contains(&path)
        );
    }
}
