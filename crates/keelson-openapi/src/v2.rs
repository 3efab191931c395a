//! `/openapi/v2`: the Swagger 2.0 document of the served kinds (`definitions` named as
//! upstream, with descriptions, `x-kubernetes-group-version-kind` and the patch and list
//! markers), converted from the same generated schemas as the v3 documents, and served as JSON
//! or as gnostic's `openapi_v2.Document` protobuf, which is what kubectl asks for.
//!
//! Nothing is built until the first request; each format's bytes are then kept.

use std::sync::OnceLock;

use bytes::Bytes;
use keelson_kinds::Kind;
use serde_json::{Map, Value, json};

use crate::schemas::{Components, REF_PREFIX};
use crate::{Fnv128, KUBERNETES_VERSION, paths};

/// The media type of gnostic's protobuf encoding of a Swagger 2.0 document, as upstream answers
/// it: kubectl asks for `...spec.v2@v1.0+protobuf`, but `@` does not parse as a media type in
/// client-go, so the reply says `.v1.0`.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Where every `$ref` of the v2 document points.
const DEFINITIONS_PREFIX: &str = "#/definitions/";

/// One encoding of the document and its `ETag` (quoted).
#[derive(Clone, Debug)]
pub struct Served {
    pub bytes: Bytes,
    pub etag: String,
}

impl Served {
    fn new(bytes: Vec<u8>) -> Self {
        let mut hasher = Fnv128::new();
        hasher.write_bytes(&bytes);
        Served {
            bytes: Bytes::from(bytes),
            etag: format!("\"{}\"", hasher.hex()),
        }
    }
}

/// The `/openapi/v2` document of a table of kinds, built on first request.
pub struct OpenApiV2 {
    kinds: &'static [Kind],
    json: OnceLock<Served>,
    protobuf: OnceLock<Served>,
}

impl OpenApiV2 {
    /// Remembers `kinds`; builds nothing yet.
    pub fn new(kinds: &'static [Kind]) -> Self {
        OpenApiV2 {
            kinds,
            json: OnceLock::new(),
            protobuf: OnceLock::new(),
        }
    }

    /// The document as JSON.
    pub fn json(&self) -> Served {
        self.json
            .get_or_init(|| Served::new(document(self.kinds).to_string().into_bytes()))
            .clone()
    }

    /// The document as gnostic's `openapi_v2.Document` protobuf.
    pub fn protobuf(&self) -> Served {
        self.protobuf
            .get_or_init(|| Served::new(encode_document(&document(self.kinds))))
            .clone()
    }
}

/// The Swagger 2.0 document: `definitions` only (kubectl reads the paths from `/openapi/v3`).
pub(crate) fn document(kinds: &[Kind]) -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": {},
        "definitions": definitions(kinds),
    })
}

/// Every schema the v3 documents of `kinds` hold, converted to Swagger 2.0 and sorted.
fn definitions(kinds: &[Kind]) -> Map<String, Value> {
    let mut components = Components::new();
    let mut scratch = Map::new();
    for kind in kinds {
        paths::add_kind(&mut scratch, kind, &mut components);
    }
    drop(scratch);
    components
        .finish()
        .into_iter()
        .map(|(name, schema)| (name, schema_v2(schema)))
        .collect()
}

/// An OpenAPI 3.0 schema as Swagger 2.0 writes it: `$ref`s into `#/definitions/`, a lone
/// `allOf: [$ref]` folded into a `$ref` beside the description, no `nullable`, `oneOf`,
/// `anyOf` or `not`, and int-or-string as upstream's `type: string, format: int-or-string`.
fn schema_v2(schema: Value) -> Value {
    let Value::Object(map) = schema else {
        return schema;
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "$ref" => {
                out.insert(key, reference_v2(value));
            }
            "allOf" => match value {
                Value::Array(mut all) if all.len() == 1 && all[0].get("$ref").is_some() => {
                    if let Some(Value::Object(only)) = all.pop()
                        && let Some(target) = only.get("$ref")
                    {
                        out.insert("$ref".into(), reference_v2(target.clone()));
                    }
                }
                Value::Array(all) => {
                    out.insert(key, all.into_iter().map(schema_v2).collect());
                }
                _ => {}
            },
            "nullable" | "oneOf" | "anyOf" | "not" | "writeOnly" | "deprecated" => {}
            "x-kubernetes-int-or-string" if value == Value::Bool(true) => {
                out.entry("type").or_insert_with(|| "string".into());
                out.insert("format".into(), "int-or-string".into());
            }
            "properties" => {
                let properties = match value {
                    Value::Object(properties) => properties
                        .into_iter()
                        .map(|(name, property)| (name, schema_v2(property)))
                        .collect(),
                    _ => Map::new(),
                };
                out.insert(key, Value::Object(properties));
            }
            "items" => {
                let items = match value {
                    Value::Array(items) => items.into_iter().map(schema_v2).collect(),
                    other => schema_v2(other),
                };
                out.insert(key, items);
            }
            "additionalProperties" => {
                out.insert(key, schema_v2(value));
            }
            _ => {
                out.insert(key, value);
            }
        }
    }
    Value::Object(out)
}

fn reference_v2(target: Value) -> Value {
    match target {
        Value::String(s) => match s.strip_prefix(REF_PREFIX) {
            Some(name) => Value::String(format!("{DEFINITIONS_PREFIX}{name}")),
            None => Value::String(s),
        },
        other => other,
    }
}

/// Protobuf wire-format writer for the message subset of gnostic's `OpenAPIv2.proto`.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    const VARINT: u64 = 0;
    const FIXED64: u64 = 1;
    const LEN: u64 = 2;

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u64) {
        self.varint((u64::from(field) << 3) | wire);
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, Self::LEN);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        build(&mut inner);
        self.bytes(field, &inner.0);
    }

    fn boolean(&mut self, field: u32, v: bool) {
        if v {
            self.key(field, Self::VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, Self::VARINT);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, Self::FIXED64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// `Any { yaml (2) }`: JSON text, which YAML reads as the same value.
    fn any(&mut self, field: u32, value: &Value) {
        self.message(field, |any| any.string(2, &value.to_string()));
    }

    /// `NamedAny { name (1), value (2) }`.
    fn named_any(&mut self, field: u32, name: &str, value: &Value) {
        self.message(field, |named| {
            named.string(1, name);
            named.any(2, value);
        });
    }
}

/// `Document { swagger (1), info (2), paths (8), definitions (9) }`.
fn encode_document(document: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    let text = |pointer: &str| document.pointer(pointer).and_then(Value::as_str);
    w.string(1, text("/swagger").unwrap_or("2.0"));
    w.message(2, |info| {
        info.string(1, text("/info/title").unwrap_or_default());
        info.string(2, text("/info/version").unwrap_or_default());
    });
    w.message(8, |_| {});
    if let Some(Value::Object(definitions)) = document.get("definitions") {
        // Definitions { additional_properties (1): NamedSchema }
        w.message(9, |defs| named_schemas(defs, definitions));
    }
    w.0
}

/// `NamedSchema { name (1), value (2) }` for each entry, as field 1 of the enclosing message.
fn named_schemas(w: &mut Writer, schemas: &Map<String, Value>) {
    for (name, schema) in schemas {
        w.message(1, |named| {
            named.string(1, name);
            named.message(2, |s| encode_schema(s, schema));
        });
    }
}

/// gnostic's `Schema` message from a Swagger 2.0 schema object.
fn encode_schema(w: &mut Writer, schema: &Value) {
    let Value::Object(map) = schema else {
        return;
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
    let number = |key: &str| map.get(key).and_then(Value::as_f64).unwrap_or_default();
    let integer = |key: &str| map.get(key).and_then(Value::as_i64).unwrap_or_default();
    let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or_default();
    w.string(1, text("$ref"));
    w.string(2, text("format"));
    w.string(3, text("title"));
    w.string(4, text("description"));
    if let Some(default) = map.get("default") {
        w.any(5, default);
    }
    w.double(6, number("multipleOf"));
    w.double(7, number("maximum"));
    w.boolean(8, flag("exclusiveMaximum"));
    w.double(9, number("minimum"));
    w.boolean(10, flag("exclusiveMinimum"));
    w.int64(11, integer("maxLength"));
    w.int64(12, integer("minLength"));
    w.string(13, text("pattern"));
    w.int64(14, integer("maxItems"));
    w.int64(15, integer("minItems"));
    w.boolean(16, flag("uniqueItems"));
    w.int64(17, integer("maxProperties"));
    w.int64(18, integer("minProperties"));
    for field in map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.string(19, field.as_str().unwrap_or_default());
    }
    for value in map
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.any(20, value);
    }
    // AdditionalPropertiesItem { oneof { schema (1), boolean (2) } }
    match map.get("additionalProperties") {
        Some(Value::Bool(allowed)) => w.message(21, |item| {
            item.key(2, Writer::VARINT);
            item.varint(u64::from(*allowed));
        }),
        Some(nested @ Value::Object(_)) => {
            w.message(21, |item| item.message(1, |s| encode_schema(s, nested)));
        }
        _ => {}
    }
    // TypeItem { repeated value (1) }
    match map.get("type") {
        Some(Value::String(t)) => w.message(22, |item| item.string(1, t)),
        Some(Value::Array(types)) => w.message(22, |item| {
            types
                .iter()
                .filter_map(Value::as_str)
                .for_each(|t| item.string(1, t));
        }),
        _ => {}
    }
    // ItemsItem { repeated schema (1) }
    match map.get("items") {
        Some(Value::Array(items)) => w.message(23, |item| {
            for nested in items {
                item.message(1, |s| encode_schema(s, nested));
            }
        }),
        Some(nested @ Value::Object(_)) => {
            w.message(23, |item| item.message(1, |s| encode_schema(s, nested)));
        }
        _ => {}
    }
    for nested in map
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(24, |s| encode_schema(s, nested));
    }
    // Properties { additional_properties (1): NamedSchema }
    if let Some(Value::Object(properties)) = map.get("properties") {
        w.message(25, |p| named_schemas(p, properties));
    }
    w.string(26, text("discriminator"));
    w.boolean(27, flag("readOnly"));
    if let Some(example) = map.get("example") {
        w.any(30, example);
    }
    for (name, value) in map.iter().filter(|(name, _)| name.starts_with("x-")) {
        w.named_any(31, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subset of gnostic's `openapi_v2` messages the tests read back.
    mod gnostic {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Document {
            #[prost(string, tag = "1")]
            pub swagger: String,
            #[prost(message, optional, tag = "2")]
            pub info: Option<Info>,
            #[prost(message, optional, tag = "9")]
            pub definitions: Option<Definitions>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Info {
            #[prost(string, tag = "1")]
            pub title: String,
            #[prost(string, tag = "2")]
            pub version: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Definitions {
            #[prost(message, repeated, tag = "1")]
            pub additional_properties: Vec<NamedSchema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct NamedSchema {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<Schema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Schema {
            #[prost(string, tag = "1")]
            pub reference: String,
            #[prost(string, tag = "2")]
            pub format: String,
            #[prost(string, tag = "4")]
            pub description: String,
            #[prost(string, repeated, tag = "19")]
            pub required: Vec<String>,
            #[prost(message, optional, tag = "22")]
            pub r#type: Option<TypeItem>,
            #[prost(message, optional, tag = "23")]
            pub items: Option<ItemsItem>,
            #[prost(message, optional, tag = "25")]
            pub properties: Option<Properties>,
            #[prost(message, repeated, tag = "31")]
            pub vendor_extension: Vec<NamedAny>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct TypeItem {
            #[prost(string, repeated, tag = "1")]
            pub value: Vec<String>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ItemsItem {
            #[prost(message, repeated, tag = "1")]
            pub schema: Vec<Schema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Properties {
            #[prost(message, repeated, tag = "1")]
            pub additional_properties: Vec<NamedSchema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct NamedAny {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<Any>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Any {
            #[prost(string, tag = "2")]
            pub yaml: String,
        }
    }

    fn decoded() -> gnostic::Document {
        let served = OpenApiV2::new(keelson_kinds::ALL).protobuf();
        <gnostic::Document as prost::Message>::decode(served.bytes).expect("document decodes")
    }

    fn find<'a>(schemas: &'a [gnostic::NamedSchema], name: &str) -> &'a gnostic::Schema {
        schemas
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.value.as_ref())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn extension(schema: &gnostic::Schema, name: &str) -> Value {
        let yaml = schema
            .vendor_extension
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_ref())
            .map(|v| v.yaml.as_str())
            .unwrap_or_else(|| panic!("no {name}"));
        serde_json::from_str(yaml).expect("extension is JSON (and so YAML)")
    }

    fn properties(schema: &gnostic::Schema) -> &[gnostic::NamedSchema] {
        schema
            .properties
            .as_ref()
            .map(|p| p.additional_properties.as_slice())
            .unwrap_or_default()
    }

    #[test]
    fn protobuf_decodes_with_pod_gvk_and_merge_keys() {
        let doc = decoded();
        assert_eq!(doc.swagger, "2.0");
        assert_eq!(
            doc.info.as_ref().map(|i| i.title.as_str()),
            Some("Kubernetes")
        );
        let defs = &doc.definitions.expect("definitions").additional_properties;
        let pod = find(defs, "io.k8s.api.core.v1.Pod");
        assert_eq!(
            extension(pod, "x-kubernetes-group-version-kind"),
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert!(
            pod.description
                .starts_with("Pod is a collection of containers")
        );
        let spec = find(properties(pod), "spec");
        assert_eq!(spec.reference, "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(!spec.description.is_empty(), "a $ref keeps its description");
        let pod_spec = find(defs, "io.k8s.api.core.v1.PodSpec");
        assert_eq!(pod_spec.required, ["containers"]);
        let containers = find(properties(pod_spec), "containers");
        assert_eq!(
            extension(containers, "x-kubernetes-patch-merge-key"),
            json!("name")
        );
        assert_eq!(
            extension(containers, "x-kubernetes-patch-strategy"),
            json!("merge")
        );
        assert_eq!(
            containers.r#type.as_ref().map(|t| t.value.clone()),
            Some(vec!["array".to_string()])
        );
        let item = &containers.items.as_ref().expect("items").schema[0];
        assert_eq!(item.reference, "#/definitions/io.k8s.api.core.v1.Container");
        let port = find(
            properties(find(defs, "io.k8s.api.core.v1.ContainerPort")),
            "containerPort",
        );
        assert_eq!(port.format, "int32");
        let deployment_list = find(defs, "io.k8s.api.apps.v1.DeploymentList");
        assert_eq!(
            extension(deployment_list, "x-kubernetes-group-version-kind"),
            json!([{"group": "apps", "kind": "DeploymentList", "version": "v1"}])
        );
    }

    /// Only Swagger 2.0 keywords, and every `$ref` names a definition (kubectl refuses the
    /// whole document otherwise).
    #[test]
    fn json_is_swagger_2_with_resolving_refs() {
        let doc: Value =
            serde_json::from_slice(&OpenApiV2::new(keelson_kinds::ALL).json().bytes).expect("JSON");
        let defs = doc["definitions"].as_object().expect("definitions");
        const KEYWORDS: &[&str] = &[
            "$ref",
            "format",
            "title",
            "description",
            "default",
            "multipleOf",
            "maximum",
            "exclusiveMaximum",
            "minimum",
            "exclusiveMinimum",
            "maxLength",
            "minLength",
            "pattern",
            "maxItems",
            "minItems",
            "uniqueItems",
            "maxProperties",
            "minProperties",
            "required",
            "enum",
            "additionalProperties",
            "type",
            "items",
            "allOf",
            "properties",
            "readOnly",
            "example",
        ];
        fn walk(schema: &Value, defs: &Map<String, Value>, at: &str) {
            let map = schema
                .as_object()
                .unwrap_or_else(|| panic!("{at}: {schema}"));
            for (key, value) in map {
                assert!(
                    KEYWORDS.contains(&key.as_str()) || key.starts_with("x-"),
                    "{at}: keyword {key}"
                );
                match key.as_str() {
                    "$ref" => {
                        let name = value
                            .as_str()
                            .and_then(|r| r.strip_prefix(DEFINITIONS_PREFIX));
                        assert!(name.is_some_and(|n| defs.contains_key(n)), "{at}: {value}");
                    }
                    "type" => assert!(
                        ["object", "array", "string", "integer", "number", "boolean"]
                            .contains(&value.as_str().unwrap_or_default()),
                        "{at}: type {value}"
                    ),
                    "properties" => {
                        for (name, property) in value.as_object().expect("properties") {
                            walk(property, defs, &format!("{at}.{name}"));
                        }
                    }
                    "items" | "additionalProperties" if value.is_object() => {
                        walk(value, defs, &format!("{at}[]"));
                    }
                    _ => {}
                }
            }
            if map.get("type") == Some(&json!("array")) {
                assert!(
                    map.get("items").is_some_and(Value::is_object),
                    "{at}: no items"
                );
            }
        }
        for (name, schema) in defs {
            walk(schema, defs, name);
        }
        let int_or_string = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(int_or_string["type"], "string");
        assert_eq!(int_or_string["format"], "int-or-string");
        assert!(defs.contains_key("io.k8s.api.apps.v1.Deployment"));
    }
}
