//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded into the
//! JSON objects the rest of the apiserver works on.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` envelope naming the kind and holding
//! the object's message. The message is decoded against a table generated from k8s-pb and
//! the OpenAPI schemas (`schema.txt`, see `gen/generator.rs`) into the JSON upstream's JSON
//! encoding of the same Go object gives:
//!
//! - scalar fields (strings, numbers, booleans, bytes) holding their zero value are dropped,
//!   as Go's `omitempty` does, unless the schema requires the field or Go declares it as a
//!   pointer where zero differs from unset (`replicas: 0`, `runAsUser: 0`);
//! - message fields present on the wire are kept even when empty (`resources: {}`,
//!   `strategy: {}`), since Go writes a nested struct to protobuf exactly when its JSON
//!   encoding writes it (non-pointer structs always, pointers when set);
//! - a present but zero `Time` or `MicroTime` (an empty message) is `null`, as Go marshals a
//!   zero time: `creationTimestamp: null`;
//! - repeated fields and maps with no entries are dropped, or `[]` / `{}` when required.

use serde_json::{Map, Value};
use thiserror::Error;

mod decode;
mod format;
mod schema;
mod wire;

pub use schema::SchemaError;
pub use wire::WireError;

use schema::Schema;
use wire::{Reader, WireValue};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The magic bytes every body starts with.
const MAGIC: &[u8; 4] = b"k8s\0";

/// How deep messages (and envelopes inside `RawExtension`s) may nest.
const MAX_DEPTH: usize = 100;

#[derive(Debug, Error)]
pub enum Error {
    #[error("body does not start with the kubernetes protobuf magic bytes `k8s\\0`")]
    BadMagic,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("body holds `{found}` but `{expected}` was expected")]
    KindMismatch { found: String, expected: String },
    #[error("unknown kind `{0}`")]
    UnknownKind(String),
    #[error("unsupported content encoding `{0}` of the body")]
    ContentEncoding(String),
    #[error("field `{path}` has wire type {found} but schema says {expected}")]
    WireType {
        path: String,
        found: u8,
        expected: &'static str,
    },
    #[error("field `{path}` holds invalid embedded JSON: {source}")]
    EmbeddedJson {
        path: String,
        source: serde_json::Error,
    },
    #[error("field `{path}` holds a time outside years 0000-9999")]
    TimeOutOfRange { path: String },
    #[error("field `{path}` holds a non-finite number")]
    NonFinite { path: String },
    #[error("field `{path}` has intOrString type {found}, not 0 (int) or 1 (string)")]
    IntOrStringType { path: String, found: u64 },
    #[error("field `{path}` nests messages deeper than {MAX_DEPTH} levels")]
    TooDeep { path: String },
    #[error("built-in protobuf schema: {0}")]
    Schema(#[from] SchemaError),
}

/// Decodes a protobuf request body into the JSON object of the same Kubernetes object.
///
/// `expect` is the (apiVersion, kind) the request path serves; a body of another kind is
/// refused, and an envelope that leaves apiVersion or kind empty takes them from `expect`.
pub fn decode(body: &[u8], expect: Option<(&str, &str)>) -> Result<Value, Error> {
    decode_nested(body, 0, expect, 0)
}

/// Every (apiVersion, kind) [`decode`] knows, sorted: the served kinds, `DeleteOptions` in
/// every served group-version and `meta.k8s.io/v1`, and the subresource bodies `Scale`,
/// `Eviction` and `Binding`.
pub fn supported_kinds() -> Vec<(&'static str, &'static str)> {
    let mut kinds: Vec<_> = Schema::get()
        .map(|s| s.kinds().collect())
        .unwrap_or_default();
    kinds.sort_unstable();
    kinds
}

/// Decodes an envelope starting at `base` in the body, `depth` levels down.
pub(crate) fn decode_nested(
    body: &[u8],
    base: usize,
    expect: Option<(&str, &str)>,
    depth: usize,
) -> Result<Value, Error> {
    let rest = body.strip_prefix(MAGIC).ok_or(Error::BadMagic)?;
    let envelope = Envelope::parse(rest, base + MAGIC.len())?;
    let (mut api_version, mut kind) = (envelope.api_version, envelope.kind);
    if let Some((want_version, want_kind)) = expect {
        if api_version.is_empty() {
            api_version = want_version.to_string();
        }
        if kind.is_empty() {
            kind = want_kind.to_string();
        }
        if (api_version.as_str(), kind.as_str()) != (want_version, want_kind) {
            return Err(Error::KindMismatch {
                found: format!("{api_version} {kind}"),
                expected: format!("{want_version} {want_kind}"),
            });
        }
    }
    if !envelope.content_encoding.is_empty() {
        return Err(Error::ContentEncoding(envelope.content_encoding));
    }
    let schema = Schema::get()?;
    let message = schema
        .kind(&api_version, &kind)
        .ok_or_else(|| Error::UnknownKind(format!("{api_version} {kind}")))?;
    let fields =
        decode::Decoder { schema, depth }.object(message, envelope.raw, envelope.raw_at)?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

/// The `runtime.Unknown` around an object's message.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    /// Offset of `raw` in the body.
    raw_at: usize,
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8], base: usize) -> Result<Self, Error> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            raw_at: base,
            content_encoding: String::new(),
        };
        let mut reader = Reader::new(buf, base);
        while let Some((number, value)) = reader.field()? {
            let bytes = match value {
                WireValue::Bytes(bytes, at) => (bytes, at),
                other if (1..=4).contains(&number) => {
                    return Err(Error::WireType {
                        path: ENVELOPE_FIELDS[number as usize - 1].into(),
                        found: other.wire_type(),
                        expected: "2 (length-delimited)",
                    });
                }
                _ => continue,
            };
            match number {
                1 => {
                    let mut type_meta = Reader::new(bytes.0, bytes.1);
                    while let Some((n, v)) = type_meta.field()? {
                        if let (1 | 2, WireValue::Bytes(s, _)) = (n, v) {
                            let s = String::from_utf8_lossy(s).into_owned();
                            if n == 1 {
                                envelope.api_version = s
                            } else {
                                envelope.kind = s
                            }
                        }
                    }
                }
                2 => (envelope.raw, envelope.raw_at) = bytes,
                3 => envelope.content_encoding = String::from_utf8_lossy(bytes.0).into_owned(),
                _ => {}
            }
        }
        Ok(envelope)
    }
}

const ENVELOPE_FIELDS: [&str; 4] = ["typeMeta", "raw", "contentEncoding", "contentType"];
