//! The generic strategy: decode into a k8s-openapi type, default, re-encode; everything else
//! is delegated to small per-kind functions.

use std::marker::PhantomData;

use jiff::Timestamp;
use keelson_apimachinery::{ApiError, FieldError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Column, Strategy};

/// A strategy for one kind backed by the k8s-openapi type `K`.
pub struct Typed<K> {
    /// The kind, e.g. `Pod`.
    pub kind: &'static str,
    /// The version within its group, e.g. `v1`.
    pub version: &'static str,
    pub defaults: fn(&mut K),
    pub validate: fn(&Value, Option<&Value>) -> Vec<FieldError>,
    pub prepare: fn(&mut Value),
    pub field: fn(&Value, &str) -> Option<String>,
    pub columns: &'static [Column],
    pub row: fn(&Value, Timestamp) -> Vec<Value>,
    pub has_status: bool,
    pub tracks_generation: bool,
    pub conversion: Option<crate::Conversion>,
    pub write_only: &'static [&'static str],
    marker: PhantomData<fn() -> K>,
}

impl<K> Typed<K> {
    /// A strategy with no defaults, no validation beyond none, Name/Age columns.
    pub const fn new(kind: &'static str, version: &'static str) -> Self {
        Typed {
            kind,
            version,
            defaults: |_| {},
            validate: |_, _| Vec::new(),
            prepare: |_| {},
            field: |_, _| None,
            columns: crate::util::NAME_AGE,
            row: crate::util::name_age_row,
            has_status: false,
            tracks_generation: false,
            conversion: None,
            write_only: &[],
            marker: PhantomData,
        }
    }

    pub const fn defaults(mut self, f: fn(&mut K)) -> Self {
        self.defaults = f;
        self
    }

    pub const fn validate(mut self, f: fn(&Value, Option<&Value>) -> Vec<FieldError>) -> Self {
        self.validate = f;
        self
    }

    pub const fn prepare(mut self, f: fn(&mut Value)) -> Self {
        self.prepare = f;
        self
    }

    pub const fn fields(mut self, f: fn(&Value, &str) -> Option<String>) -> Self {
        self.field = f;
        self
    }

    pub const fn table(
        mut self,
        columns: &'static [Column],
        row: fn(&Value, Timestamp) -> Vec<Value>,
    ) -> Self {
        self.columns = columns;
        self.row = row;
        self
    }

    /// Fields accepted on write and consumed by the defaults (never stored).
    pub const fn write_only(mut self, fields: &'static [&'static str]) -> Self {
        self.write_only = fields;
        self
    }

    /// Stores the kind in another kind's storage, converting both ways.
    pub const fn stored_as(mut self, conversion: crate::Conversion) -> Self {
        self.conversion = Some(conversion);
        self
    }

    /// Marks the kind as having a status subresource and tracking generation.
    pub const fn status(mut self, tracks_generation: bool) -> Self {
        self.has_status = true;
        self.tracks_generation = tracks_generation;
        self
    }
}

/// Decodes `obj` as `K`, refusing a value of the wrong type with upstream's framing.
pub fn decode<K: DeserializeOwned>(kind: &str, version: &str, obj: Value) -> Result<K, ApiError> {
    serde_path_to_error::deserialize::<_, K>(obj).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {what}"
        ))
    })
}

impl<K> Strategy for Typed<K>
where
    K: DeserializeOwned + Serialize,
{
    fn decode_and_default(&self, obj: Value) -> Result<Value, ApiError> {
        let mut typed: K = decode(self.kind, self.version, obj)?;
        (self.defaults)(&mut typed);
        serde_json::to_value(&typed)
            .map_err(|e| ApiError::internal(format!("encoding {}: {e}", self.kind)))
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        (self.validate)(obj, old)
    }

    fn prepare_create(&self, obj: &mut Value) {
        (self.prepare)(obj)
    }

    fn has_status(&self) -> bool {
        self.has_status
    }

    fn tracks_generation(&self) -> bool {
        self.tracks_generation
    }

    fn field(&self, obj: &Value, path: &str) -> Option<String> {
        (self.field)(obj, path)
    }

    fn columns(&self) -> &'static [Column] {
        self.columns
    }

    fn write_only_fields(&self) -> &'static [&'static str] {
        self.write_only
    }

    fn conversion(&self) -> Option<&crate::Conversion> {
        self.conversion.as_ref()
    }

    fn row(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        (self.row)(obj, now)
    }
}
