//! Field ownership for server-side apply: the set of fields an object (or an apply
//! configuration) sets, as upstream's `FieldsV1` (`f:` fields, `k:` list items by merge key,
//! `v:` set members, `.` for the item or map itself), and the managedFields entries built on it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// A tree of owned fields. A node with no children is a leaf: the value there is owned whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeMap<String, FieldSet>);

/// Fields the server owns or that are not part of an object's content.
const IGNORED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// Maps (as opposed to structs) get a `.` member, as upstream's field sets show them.
const MAPS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "binaryData",
    "nodeSelector",
    "matchLabels",
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
];

/// The merge key of an associative list, by field name (see `patch.rs`).
pub fn list_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    })
}

/// The keys that identify an item of an associative list in a field set and in server-side
/// apply: the `x-kubernetes-list-map-keys` the OpenAPI documents declare for the list (see
/// `keelson_openapi::list_map_keys`), which for ports include the protocol (upstream's
/// `k:{"containerPort":80,"protocol":"TCP"}`), unlike the strategic merge key, so `53/TCP`
/// and `53/UDP` are two items. A name several schemas declare (`ports`) takes the key set
/// whose first key the items carry.
pub fn set_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let declared = keelson_openapi::list_map_keys(field);
    let carried = declared
        .iter()
        .find(|keys| items.iter().any(|i| i.get(keys[0]).is_some()));
    carried.or(declared.first()).copied()
}

fn is_set(field: &str) -> bool {
    field == "finalizers"
}

/// The value of a list-map key of an item: its own, or the schema's default for the key when
/// it is unset (a port's `protocol` is `TCP`), as upstream's structured merge reads keys.
fn key_value(item: &Value, key: &str) -> Option<Value> {
    match item.get(key) {
        Some(v) if !v.is_null() => Some(v.clone()),
        _ if key == "protocol" => Some(Value::String("TCP".into())),
        _ => None,
    }
}

/// Whether two items of an associative list with `keys` are the same item (an item missing a
/// key with no default matches nothing).
pub fn same_item(keys: &[&str], a: &Value, b: &Value) -> bool {
    keys.iter().all(|k| {
        let v = key_value(a, k);
        v.is_some() && v == key_value(b, k)
    })
}

/// Whether a list item matches the key values of a `k:` path element.
fn matches_key(item: &Value, want: &Map<String, Value>) -> bool {
    want.iter()
        .all(|(wk, wv)| key_value(item, wk).as_ref() == Some(wv))
}

/// The path element of a list item identified by `keys` (keys the item lacks and the schema
/// gives no default are left out, as upstream's are when the field is unset).
fn item_key(keys: &[&str], item: &Value) -> String {
    let mut m = Map::new();
    for key in keys {
        match key_value(item, key) {
            Some(v) => {
                m.insert(key.to_string(), v);
            }
            _ if keys.len() == 1 => {
                m.insert(key.to_string(), Value::Null);
            }
            _ => {}
        }
    }
    format!("k:{}", Value::Object(m))
}

impl FieldSet {
    /// The fields an object sets (apiVersion, kind, status and server-owned metadata excluded).
    pub fn of_object(obj: &Value, with_status: bool) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(m) = obj.as_object() else { return set };
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "status" if !with_status => {}
                "metadata" => {
                    let mut meta = FieldSet::default();
                    if let Some(mm) = v.as_object() {
                        for (mk, mv) in mm {
                            if !IGNORED_META.contains(&mk.as_str()) && !mv.is_null() {
                                meta.0.insert(format!("f:{mk}"), Self::of_value(mk, mv));
                            }
                        }
                    }
                    if !meta.0.is_empty() {
                        set.0.insert("f:metadata".into(), meta);
                    }
                }
                _ if v.is_null() => {}
                _ => {
                    set.0.insert(format!("f:{k}"), Self::of_value(k, v));
                }
            }
        }
        set
    }

    fn of_value(field: &str, v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        match v {
            Value::Object(m) => {
                if MAPS.contains(&field) {
                    set.0.insert(".".into(), FieldSet::default());
                }
                for (k, v) in m {
                    if !v.is_null() {
                        set.0.insert(format!("f:{k}"), Self::of_value(k, v));
                    }
                }
            }
            Value::Array(items) => {
                if let Some(keys) =
                    set_keys(field, items).filter(|_| items.iter().all(Value::is_object))
                {
                    for item in items {
                        let mut node = Self::of_value("", item);
                        node.0.insert(".".into(), FieldSet::default());
                        set.0.insert(item_key(keys, item), node);
                    }
                } else if is_set(field) {
                    for item in items {
                        set.0.insert(format!("v:{item}"), FieldSet::default());
                    }
                }
                // Other lists are atomic: owned whole, as a leaf.
            }
            _ => {}
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every path from the root to a leaf.
    pub fn leaves(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (k, child) in &self.0 {
            prefix.push(k.clone());
            if child.0.is_empty() {
                out.push(prefix.clone());
            } else {
                child.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => true,
            Some((head, rest)) => self.0.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    pub fn insert(&mut self, path: &[String]) {
        if let Some((head, rest)) = path.split_first() {
            self.0.entry(head.clone()).or_default().insert(rest);
        }
    }

    /// Removes the leaf at `path` and any ancestors left empty.
    pub fn remove(&mut self, path: &[String]) {
        if let Some((head, rest)) = path.split_first() {
            if rest.is_empty() {
                self.0.remove(head);
            } else if let Some(child) = self.0.get_mut(head) {
                child.remove(rest);
                if child.0.is_empty() {
                    self.0.remove(head);
                }
            }
        }
    }

    /// The set without the leaves of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for leaf in other.leaves() {
            if self.contains(&leaf) && leaf_of(self, &leaf) {
                out.remove(&leaf);
            }
        }
        out
    }

    pub fn to_fields_v1(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_fields_v1()))
                .collect(),
        )
    }

    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Some(m) = v.as_object() {
            for (k, child) in m {
                set.0.insert(k.clone(), Self::from_fields_v1(child));
            }
        }
        set
    }
}

/// Whether `path` ends at a leaf of `set`.
fn leaf_of(set: &FieldSet, path: &[String]) -> bool {
    let mut node = set;
    for p in path {
        match node.0.get(p) {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.0.is_empty()
}

/// A path as upstream prints it in conflicts: `.spec.replicas`,
/// `.spec.template.spec.containers[name="nginx"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(k) {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
        } else if let Some(v) = p.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// The value at a field-set path in an object (`.` is the node itself).
pub fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        cur = step(cur, p)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, p: &str) -> Option<&'a Value> {
    if p == "." {
        return Some(cur);
    }
    if let Some(f) = p.strip_prefix("f:") {
        return cur.get(f);
    }
    if let Some(k) = p.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        return cur.as_array()?.iter().find(|i| matches_key(i, &want));
    }
    if let Some(v) = p.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        return cur.as_array()?.iter().find(|i| **i == want);
    }
    None
}

/// Removes the value at a field-set path from an object (a `.` leaf removes the list item or
/// map that holds it).
pub fn remove(obj: &mut Value, path: &[String]) {
    let (path, last) = match path.split_last() {
        Some((last, rest)) if last == "." => match rest.split_last() {
            Some((item, parent)) => (parent, item.as_str()),
            None => return,
        },
        Some((last, rest)) => (rest, last.as_str()),
        None => return,
    };
    let mut cur = obj;
    for p in path {
        let next = if p == "." {
            Some(cur)
        } else {
            step_mut(cur, p)
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(want), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|i| !matches_key(i, &want));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut())
    {
        a.retain(|i| *i != want);
    }
}

fn step_mut<'a>(cur: &'a mut Value, p: &str) -> Option<&'a mut Value> {
    if let Some(f) = p.strip_prefix("f:") {
        return cur.get_mut(f);
    }
    if let Some(k) = p.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        return cur
            .as_array_mut()?
            .iter_mut()
            .find(|i| matches_key(i, &want));
    }
    None
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    pub fn parse(v: &Value) -> Option<Entry> {
        Some(Entry {
            manager: v.get("manager")?.as_str()?.to_string(),
            operation: v
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("Update")
                .to_string(),
            api_version: v
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            time: v
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            subresource: v
                .get("subresource")
                .and_then(Value::as_str)
                .map(String::from),
            fields: FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }

    pub fn to_value(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(s) = &self.subresource {
            v["subresource"] = json!(s);
        }
        v
    }

    /// How conflicts name this manager (upstream's `printManager` of the manager identifier,
    /// which never carries the time).
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The managedFields entries of an object.
pub fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

/// Writes entries back as `metadata.managedFields` (dropping empty ones).
pub fn set_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_value)
        .collect();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// The leaves whose values differ between two objects (present in `new` and changed or added).
pub fn changed(old: Option<&Value>, new: &Value, with_status: bool) -> FieldSet {
    let new_set = FieldSet::of_object(new, with_status);
    let mut out = FieldSet::default();
    for leaf in new_set.leaves() {
        let before = old.and_then(|o| get(o, &leaf));
        if before != get(new, &leaf) || before.is_none() {
            out.insert(&leaf);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_as_upstream_writes_them() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "x"}, "uid": "u"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
        });
        let fs = FieldSet::of_object(&obj, false).to_fields_v1();
        assert_eq!(
            fs,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}
                    }}
                }}}}
            })
        );
    }

    #[test]
    fn paths_display_and_removal() {
        let path: Vec<String> = ["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(display(&path), ".spec.containers[name=\"c\"].image");
        let mut obj = json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"name": "d"}]}});
        remove(&mut obj, &path);
        assert_eq!(
            obj,
            json!({"spec": {"containers": [{"name": "c"}, {"name": "d"}]}})
        );
        let item: Vec<String> = ["f:spec", "f:containers", "k:{\"name\":\"d\"}", "."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        remove(&mut obj, &item);
        assert_eq!(obj, json!({"spec": {"containers": [{"name": "c"}]}}));
    }
}
