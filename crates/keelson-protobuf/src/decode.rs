//! One message's bytes turned into its JSON value by walking the schema table: fields by
//! number, names and zero-value rules from the table, apimachinery's special types by name.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};

use crate::format::{Civil, go_duration};
use crate::schema::{Field, Label, Message, Schema, Special, Type};
use crate::wire::{Reader, WireValue};
use crate::{Error, MAGIC, MAX_DEPTH, decode_nested};

/// Where a value sits in the object, for error messages: `spec.containers[0].ports[1]`.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Field(&'a str),
    Index(usize),
    Key(&'a str),
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    fn child(&'a self, seg: Seg<'a>) -> Path<'a> {
        Path {
            parent: Some(self),
            seg,
        }
    }

    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(p) = at {
            segs.push(p.seg);
            at = p.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Field(name) if out.is_empty() => out.push_str(name),
                Seg::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
                Seg::Key(k) => out.push_str(&format!("[{k}]")),
            }
        }
        if out.is_empty() { "<root>".into() } else { out }
    }
}

/// What a message's field collected while its bytes were read.
enum Slot {
    Single(Value),
    Many(Vec<Value>),
    Entries(Map<String, Value>),
    Inline(Map<String, Value>),
}

pub(crate) struct Decoder<'s> {
    pub schema: &'s Schema,
    /// Levels of envelopes this decoder sits in.
    pub depth: usize,
}

impl Decoder<'_> {
    /// The JSON fields of a top-level object's message.
    pub fn object(
        &self,
        message: &Message,
        bytes: &[u8],
        at: usize,
    ) -> Result<Map<String, Value>, Error> {
        self.fields(message, bytes, at, &Path::ROOT, self.depth)
    }

    fn fields(
        &self,
        message: &Message,
        bytes: &[u8],
        at: usize,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Map<String, Value>, Error> {
        let mut slots: Vec<Option<Slot>> = message.fields.iter().map(|_| None).collect();
        let mut reader = Reader::new(bytes, at);
        while let Some((number, value)) = reader.field()? {
            let Some((i, field)) = message.field(number) else {
                continue;
            };
            let field_path = if field.inline {
                *path
            } else {
                path.child(Seg::Field(&field.json))
            };
            let slot = &mut slots[i];
            match field.label {
                Label::Single => {
                    let v = self.value(field.ty, value, &field_path, depth)?;
                    *slot = Some(match (field.inline, v, slot.take()) {
                        (true, Value::Object(mut m), Some(Slot::Inline(mut old))) => {
                            old.append(&mut m);
                            Slot::Inline(old)
                        }
                        (true, Value::Object(m), _) => Slot::Inline(m),
                        (_, v, _) => Slot::Single(v),
                    });
                }
                Label::Repeated => {
                    let Slot::Many(items) = slot.get_or_insert_with(|| Slot::Many(Vec::new()))
                    else {
                        continue;
                    };
                    self.repeated(field.ty, value, &field_path, depth, items)?;
                }
                Label::Map => {
                    let Slot::Entries(entries) =
                        slot.get_or_insert_with(|| Slot::Entries(Map::new()))
                    else {
                        continue;
                    };
                    let (key, v) = self.entry(field.ty, value, &field_path, depth)?;
                    entries.insert(key, v);
                }
            }
        }
        let mut out = Map::new();
        for (field, slot) in message.fields.iter().zip(slots) {
            match slot {
                None if field.required && field.label == Label::Repeated => {
                    out.insert(field.json.clone(), Value::Array(Vec::new()));
                }
                None if field.required && field.label == Label::Map => {
                    out.insert(field.json.clone(), Value::Object(Map::new()));
                }
                None => {}
                Some(Slot::Single(v)) if drops_zero(field) && is_zero(&v) => {}
                Some(Slot::Single(v)) => {
                    out.insert(field.json.clone(), v);
                }
                Some(Slot::Many(items)) => {
                    out.insert(field.json.clone(), Value::Array(items));
                }
                Some(Slot::Entries(entries)) => {
                    out.insert(field.json.clone(), Value::Object(entries));
                }
                Some(Slot::Inline(mut fields)) => out.append(&mut fields),
            }
        }
        Ok(out)
    }

    /// Appends the values of one wire field of a repeated field: one value, or several packed.
    fn repeated(
        &self,
        ty: Type,
        value: WireValue<'_>,
        path: &Path<'_>,
        depth: usize,
        items: &mut Vec<Value>,
    ) -> Result<(), Error> {
        let packed = matches!(ty, Type::Bool | Type::Int32 | Type::Int64 | Type::Double);
        match value {
            WireValue::Bytes(bytes, at) if packed => {
                let mut reader = Reader::new(bytes, at);
                while !reader.is_empty() {
                    let item_path = path.child(Seg::Index(items.len()));
                    let v = if ty == Type::Double {
                        WireValue::Fixed64(reader.fixed64()?)
                    } else {
                        WireValue::Varint(reader.varint()?)
                    };
                    items.push(self.value(ty, v, &item_path, depth)?);
                }
            }
            v => {
                let item_path = path.child(Seg::Index(items.len()));
                items.push(self.value(ty, v, &item_path, depth)?);
            }
        }
        Ok(())
    }

    /// One map entry: key = 1 (string), value = 2.
    fn entry(
        &self,
        ty: Type,
        value: WireValue<'_>,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(String, Value), Error> {
        let (bytes, at) = expect_bytes(value, path)?;
        let mut reader = Reader::new(bytes, at);
        let mut key = String::new();
        let mut raw_value = None;
        while let Some((number, v)) = reader.field()? {
            match number {
                1 => key = string(expect_bytes(v, &path.child(Seg::Key("<key>")))?.0),
                2 => raw_value = Some(v),
                _ => {}
            }
        }
        let value_path = path.child(Seg::Key(&key));
        let v = match raw_value {
            Some(v) => self.value(ty, v, &value_path, depth)?,
            None => self.zero(ty, &value_path, depth)?,
        };
        Ok((key, v))
    }

    /// The value of a map entry that leaves its value out.
    fn zero(&self, ty: Type, path: &Path<'_>, depth: usize) -> Result<Value, Error> {
        let empty = match ty {
            Type::Bool | Type::Int32 | Type::Int64 => WireValue::Varint(0),
            Type::Double => WireValue::Fixed64(0),
            Type::String | Type::Bytes | Type::Message(_) => WireValue::Bytes(&[], 0),
        };
        self.value(ty, empty, path, depth)
    }

    fn value(
        &self,
        ty: Type,
        value: WireValue<'_>,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, Error> {
        if value.wire_type() != ty.wire_type() {
            return Err(wire_type_error(path, value, ty.wire_type()));
        }
        Ok(match (ty, value) {
            (Type::String, WireValue::Bytes(b, _)) => Value::String(string(b)),
            (Type::Bytes, WireValue::Bytes(b, _)) => Value::String(STANDARD.encode(b)),
            (Type::Bool, WireValue::Varint(n)) => Value::Bool(n != 0),
            (Type::Int32, WireValue::Varint(n)) => Value::from(n as i64 as i32),
            (Type::Int64, WireValue::Varint(n)) => Value::from(n as i64),
            (Type::Double, WireValue::Fixed64(bits)) => Number::from_f64(f64::from_bits(bits))
                .map(Value::Number)
                .ok_or_else(|| Error::NonFinite {
                    path: path.render(),
                })?,
            (Type::Message(i), WireValue::Bytes(b, at)) => match self.schema.messages.get(i) {
                Some(message) => self.message(message, b, at, path, depth + 1)?,
                None => Value::Null,
            },
            _ => Value::Null,
        })
    }

    fn message(
        &self,
        message: &Message,
        bytes: &[u8],
        at: usize,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep {
                path: path.render(),
            });
        }
        let small = || Small::read(bytes, at, path);
        Ok(match message.special {
            Special::None => Value::Object(self.fields(message, bytes, at, path, depth)?),
            Special::Time | Special::MicroTime if bytes.is_empty() => Value::Null,
            Special::Time | Special::MicroTime => {
                let s = small()?;
                let seconds = s.varint(1, "seconds")? as i64;
                let nanos = i64::from(s.varint(2, "nanos")? as i64 as i32);
                let civil =
                    Civil::from_unix(seconds, nanos).ok_or_else(|| Error::TimeOutOfRange {
                        path: path.render(),
                    })?;
                let text = if message.special == Special::Time {
                    civil.rfc3339()
                } else {
                    civil.rfc3339_micro()
                };
                Value::String(text)
            }
            Special::Duration => Value::String(go_duration(small()?.varint(1, "duration")? as i64)),
            Special::Quantity => {
                let text = string(small()?.bytes(1, "string")?);
                Value::String(if text.is_empty() { "0".into() } else { text })
            }
            Special::IntOrString => {
                let s = small()?;
                match s.varint(1, "type")? {
                    0 => Value::from(s.varint(2, "intVal")? as i64 as i32),
                    1 => Value::String(string(s.bytes(3, "strVal")?)),
                    found => {
                        return Err(Error::IntOrStringType {
                            path: path.render(),
                            found,
                        });
                    }
                }
            }
            Special::RawExtension | Special::FieldsV1 => {
                let s = small()?;
                let raw = s.bytes(1, "raw")?;
                self.embedded(raw, s.offset(1).unwrap_or(at), path, depth)?
            }
            Special::Wrapper => {
                let mut fields = self.fields(message, bytes, at, path, depth)?;
                let items = message.fields.first().and_then(|f| fields.remove(&f.json));
                items.unwrap_or(Value::Array(Vec::new()))
            }
        })
    }

    /// The JSON (or nested protobuf envelope) a `RawExtension` or `FieldsV1` holds.
    fn embedded(
        &self,
        raw: &[u8],
        at: usize,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Value, Error> {
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        if raw.starts_with(MAGIC) {
            if depth > MAX_DEPTH {
                return Err(Error::TooDeep {
                    path: path.render(),
                });
            }
            return decode_nested(raw, at, None, depth + 1);
        }
        serde_json::from_slice(raw).map_err(|source| Error::EmbeddedJson {
            path: path.render(),
            source,
        })
    }
}

/// The fields of a small apimachinery message (last value of each number wins).
struct Small<'b, 'p> {
    fields: Vec<(u32, WireValue<'b>)>,
    path: &'p Path<'p>,
}

impl<'b, 'p> Small<'b, 'p> {
    fn read(bytes: &'b [u8], at: usize, path: &'p Path<'p>) -> Result<Self, Error> {
        let mut reader = Reader::new(bytes, at);
        let mut fields = Vec::new();
        while let Some(f) = reader.field()? {
            fields.push(f);
        }
        Ok(Small { fields, path })
    }

    fn last(&self, number: u32) -> Option<WireValue<'b>> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| *v)
    }

    fn varint(&self, number: u32, name: &str) -> Result<u64, Error> {
        match self.last(number) {
            None => Ok(0),
            Some(WireValue::Varint(n)) => Ok(n),
            Some(v) => Err(wire_type_error(&self.path.child(Seg::Field(name)), v, 0)),
        }
    }

    fn bytes(&self, number: u32, name: &str) -> Result<&'b [u8], Error> {
        match self.last(number) {
            None => Ok(&[]),
            Some(v) => Ok(expect_bytes(v, &self.path.child(Seg::Field(name)))?.0),
        }
    }

    /// Offset in the body of the bytes of field `number`.
    fn offset(&self, number: u32) -> Option<usize> {
        match self.last(number)? {
            WireValue::Bytes(_, at) => Some(at),
            _ => None,
        }
    }
}

fn expect_bytes<'b>(value: WireValue<'b>, path: &Path<'_>) -> Result<(&'b [u8], usize), Error> {
    match value {
        WireValue::Bytes(b, at) => Ok((b, at)),
        v => Err(wire_type_error(path, v, 2)),
    }
}

fn wire_type_error(path: &Path<'_>, value: WireValue<'_>, expected: u8) -> Error {
    let expected = match expected {
        0 => "0 (varint)",
        1 => "1 (64-bit)",
        2 => "2 (length-delimited)",
        _ => "5 (32-bit)",
    };
    Error::WireType {
        path: path.render(),
        found: value.wire_type(),
        expected,
    }
}

/// A protobuf string; Go keeps invalid UTF-8 and its JSON encoding replaces it with U+FFFD.
fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether Go's `omitempty` drops the field's zero value: scalars only (Go never omits a
/// struct), unless required or a pointer whose zero means something.
fn drops_zero(field: &Field) -> bool {
    !matches!(field.ty, Type::Message(_)) && !field.required && !field.keep_zero
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}
