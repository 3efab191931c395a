//! Field validation: the fields of a request body that the kind's type does not know.
//!
//! The kind's strategy decodes a body into its typed form and encodes it again; every field of
//! the body that did not survive the round trip is unknown (upstream's strict decoding).

use serde_json::Value;

/// Fields the server owns: known to every kind although a round trip may drop them.
const SERVER_OWNED: &[&str] = &["status", "metadata.managedFields"];

/// Paths of the fields in `input` that are absent from `decoded`, as upstream prints them
/// (`spec.containers[0].imagee`). `write_only` names the kind's top-level fields that its
/// defaults consume (known, though never stored).
pub fn unknown_fields(input: &Value, decoded: &Value, write_only: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, decoded, &mut String::new(), &mut out);
    out.retain(|p| !write_only.contains(&p.as_str()));
    out
}

fn walk(input: &Value, decoded: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            for (k, v) in i {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match d.get(k) {
                    Some(dv) => walk(v, dv, path, out),
                    None if v.is_null() => {}
                    None if SERVER_OWNED.contains(&path.as_str()) => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(d)) if i.len() == d.len() => {
            for (n, (iv, dv)) in i.iter().zip(d).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                walk(iv, dv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Paths of the keys a JSON body repeats within one object (`metadata.name`), which strict
/// field validation refuses. Bodies that are not valid JSON yield nothing (the decoder reports
/// them).
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = serde::de::DeserializeSeed::deserialize(
        Walk {
            path: String::new(),
            out: &mut out,
        },
        &mut de,
    );
    out
}

/// Walks any JSON value, recording repeated object keys under `path`.
struct Walk<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Walk {
                path: format!("{}[{i}]", self.path),
                out: &mut *self.out,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.out.push(path.clone());
            }
            map.next_value_seed(Walk {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_with_paths() {
        let input = json!({"spec": {"containers": [{"name": "a", "imagee": "x"}], "nodeName": null}, "foo": 1});
        let decoded = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            unknown_fields(&input, &decoded, &[]),
            vec!["spec.containers[0].imagee", "foo"]
        );
    }

    #[test]
    fn finds_duplicate_keys_with_paths() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [{"image": "x", "image": "y"}]}}"#;
        assert_eq!(
            duplicate_fields(body),
            vec!["metadata.name", "spec.containers[0].image"]
        );
        assert!(duplicate_fields(br#"{"a": {"b": 1}, "c": [1, 2]}"#).is_empty());
    }

    #[test]
    fn known_fields_pass() {
        let v = json!({"metadata": {"labels": {"a": "b"}}, "data": {"k": "v"}});
        assert!(unknown_fields(&v, &v, &[]).is_empty());
    }
}
