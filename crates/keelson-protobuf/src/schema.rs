//! The message table of the served kinds, parsed once from the generated `schema.txt`
//! (see `gen/generator.rs`): for each message its fields by number, with JSON name, type,
//! label and whether the JSON keeps the field's zero value.

use std::collections::HashMap;
use std::sync::OnceLock;

use thiserror::Error;

/// The committed output of the generator.
const SCHEMA_TEXT: &str = include_str!("schema.txt");

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SchemaError {
    #[error("schema.txt line {line}: {message}")]
    Line { line: usize, message: String },
}

/// How many values a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Single,
    Repeated,
    /// A map from string keys (entries are messages with key = 1, value = 2).
    Map,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// Index of the message in [`Schema::messages`].
    Message(usize),
}

impl Type {
    /// The wire type a single value of the type has.
    pub fn wire_type(self) -> u8 {
        match self {
            Type::String | Type::Bytes | Type::Message(_) => 2,
            Type::Bool | Type::Int32 | Type::Int64 => 0,
            Type::Double => 1,
        }
    }
}

/// apimachinery messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    None,
    Time,
    MicroTime,
    Duration,
    Quantity,
    IntOrString,
    RawExtension,
    FieldsV1,
    /// A named list type (`type X []string`): a message with one repeated field.
    Wrapper,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub number: u32,
    /// JSON name; empty for a Go-embedded struct whose fields are inlined.
    pub json: String,
    pub label: Label,
    pub ty: Type,
    /// Listed in the schema's `required`: the JSON keeps its zero value.
    pub required: bool,
    /// A Go pointer field whose explicit zero the JSON keeps.
    pub keep_zero: bool,
    /// Go embeds the struct: its fields go into the enclosing object.
    pub inline: bool,
}

#[derive(Clone, Debug)]
pub struct Message {
    /// The OpenAPI name without `io.k8s.`: `api.core.v1.Pod` (read by tests).
    #[allow(dead_code)]
    pub name: String,
    pub special: Special,
    /// In declaration order.
    pub fields: Vec<Field>,
}

impl Message {
    pub fn field(&self, number: u32) -> Option<(usize, &Field)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.number == number)
    }
}

#[derive(Debug)]
pub struct Schema {
    pub messages: Vec<Message>,
    /// Message index by (apiVersion, kind).
    kinds: HashMap<(String, String), usize>,
}

impl Schema {
    /// The schema of the crate, parsed on first use.
    pub fn get() -> Result<&'static Schema, SchemaError> {
        static SCHEMA: OnceLock<Result<Schema, SchemaError>> = OnceLock::new();
        SCHEMA
            .get_or_init(|| Schema::parse(SCHEMA_TEXT))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The message of a kind.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&Message> {
        let i = self
            .kinds
            .get(&(api_version.to_string(), kind.to_string()))?;
        self.messages.get(*i)
    }

    /// Every (apiVersion, kind) the schema decodes.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kinds.keys().map(|(a, k)| (a.as_str(), k.as_str()))
    }

    pub fn parse(text: &str) -> Result<Schema, SchemaError> {
        let mut messages: Vec<Message> = Vec::new();
        let mut kinds = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let err = |message: &str| SchemaError::Line {
                line: i + 1,
                message: message.to_string(),
            };
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["#", ..] | [""] => {}
                ["K", api_version, kind, index] => {
                    let index = index.parse().map_err(|_| err("bad message index"))?;
                    kinds.insert((api_version.to_string(), kind.to_string()), index);
                }
                ["M", name, rest @ ..] => {
                    let special = parse_special(rest.first().copied())
                        .ok_or_else(|| err("unknown special"))?;
                    messages.push(Message {
                        name: name.to_string(),
                        special,
                        fields: Vec::new(),
                    });
                }
                ["F", number, json, label, ty, flags] => {
                    let field = parse_field(number, json, label, ty, flags)
                        .ok_or_else(|| err("bad field"))?;
                    messages
                        .last_mut()
                        .ok_or_else(|| err("field before any message"))?
                        .fields
                        .push(field);
                }
                _ => return Err(err("unrecognized line")),
            }
        }
        let count = messages.len();
        let dangling = messages
            .iter()
            .flat_map(|m| &m.fields)
            .any(|f| matches!(f.ty, Type::Message(i) if i >= count));
        if dangling || kinds.values().any(|i| *i >= count) {
            return Err(SchemaError::Line {
                line: 0,
                message: "message index out of range".into(),
            });
        }
        Ok(Schema { messages, kinds })
    }
}

fn parse_special(word: Option<&str>) -> Option<Special> {
    Some(match word {
        None => Special::None,
        Some("time") => Special::Time,
        Some("microtime") => Special::MicroTime,
        Some("duration") => Special::Duration,
        Some("quantity") => Special::Quantity,
        Some("intorstring") => Special::IntOrString,
        Some("rawextension") => Special::RawExtension,
        Some("fieldsv1") => Special::FieldsV1,
        Some("wrapper") => Special::Wrapper,
        Some(_) => return None,
    })
}

fn parse_field(number: &str, json: &str, label: &str, ty: &str, flags: &str) -> Option<Field> {
    let label = match label {
        "1" => Label::Single,
        "*" => Label::Repeated,
        "%" => Label::Map,
        _ => return None,
    };
    let ty = match ty {
        "string" => Type::String,
        "bytes" => Type::Bytes,
        "bool" => Type::Bool,
        "int32" => Type::Int32,
        "int64" => Type::Int64,
        "double" => Type::Double,
        other => Type::Message(other.strip_prefix('@')?.parse().ok()?),
    };
    let inline = flags.contains('i');
    Some(Field {
        number: number.parse().ok()?,
        json: if inline {
            String::new()
        } else {
            json.to_string()
        },
        label,
        ty,
        required: flags.contains('r'),
        keep_zero: flags.contains('z'),
        inline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_parses_and_names_the_kinds() {
        let schema = Schema::get().expect("schema.txt parses");
        let check = |api_version: &str, kind: &str, message: &str| {
            let m = schema
                .kind(api_version, kind)
                .unwrap_or_else(|| panic!("{api_version} {kind} missing"));
            assert_eq!(m.name, message);
        };
        check("v1", "Namespace", "api.core.v1.Namespace");
        check("apps/v1", "Deployment", "api.apps.v1.Deployment");
        check("autoscaling/v1", "Scale", "api.autoscaling.v1.Scale");
        check("policy/v1", "Eviction", "api.policy.v1.Eviction");
        check("v1", "Binding", "api.core.v1.Binding");
        check(
            "meta.k8s.io/v1",
            "DeleteOptions",
            "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        );
        check(
            "apps/v1",
            "DeleteOptions",
            "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        );
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let check = |text: &str, line: usize| match Schema::parse(text) {
            Err(SchemaError::Line { line: l, .. }) => assert_eq!(l, line, "{text}"),
            Ok(_) => panic!("{text:?} parsed"),
        };
        check("M a\nF 1 x 1 wat -\n", 2);
        check("F 1 x 1 string -\n", 1);
        check("K v1 A 3\nM a\n", 0);
        check("M a\nZ\n", 2);
    }
}
