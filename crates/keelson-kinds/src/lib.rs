//! The table of built-in kinds the apiserver serves, and each kind's strategy.
//!
//! The apiserver has one generic handler; everything that differs between kinds lives here:
//! names and scope for discovery, the subresources, defaults and validation as upstream applies
//! them, which fields a field selector may name, and the columns of `kubectl get`.

use jiff::Timestamp;
use keelson_apimachinery::{ApiError, FieldError};
use serde_json::Value;

pub mod apps;
pub mod batch;
pub mod core;
pub mod other;
pub mod placement;
mod table;
pub mod typed;
pub mod util;
pub mod workload;

pub use table::{ALL, lookup, lookup_kind, preferred_version};

/// A subresource served under `<plural>/<name>/<sub>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: get, update and patch of `.status` alone.
    Status,
    /// `scale`: an `autoscaling/v1` `Scale` over `.spec.replicas`.
    Scale,
    /// `binding` (pods): create a `Binding` to set `spec.nodeName`.
    Binding,
    /// `eviction` (pods).
    Eviction,
    /// `log` (pods).
    Log,
    /// `exec`, `attach`, `portforward` (pods).
    Exec,
    Attach,
    PortForward,
    /// `proxy` (pods, services, nodes).
    Proxy,
    /// `finalize` (namespaces).
    Finalize,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Proxy => "proxy",
            Subresource::Finalize => "finalize",
        }
    }
}

/// One served kind: a row of the table.
pub struct Kind {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    pub strategy: &'static dyn Strategy,
}

impl Kind {
    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-qualified resource as upstream's messages print it: `pods`, `deployments.apps`.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
}

/// A column of the `meta.k8s.io/v1` Table `kubectl get` prints.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Upstream's column name, e.g. `Name`, `Ready`, `Age`, `Nominated Node`.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// e.g. `name` for the Name column.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: shown with `-o wide`.
    pub priority: u8,
}

/// How a kind served in one group-version is stored in the form of another (upstream keeps
/// one storage version per resource: events.k8s.io/v1 Events are stored as core/v1 Events,
/// autoscaling/v1 HorizontalPodAutoscalers as autoscaling/v2).
pub struct Conversion {
    /// The group and plural of the resource whose storage this kind shares.
    pub storage_group: &'static str,
    pub storage_plural: &'static str,
    /// This kind's form → the stored form.
    pub to_storage: fn(Value) -> Value,
    /// The stored form → this kind's form.
    pub from_storage: fn(Value) -> Value,
}

/// Everything about one kind that differs from the generic registry behaviour.
///
/// Every method works on the JSON form of the object; implementations decode into the
/// k8s-openapi type where they need to.
pub trait Strategy: Send + Sync {
    /// Decodes `obj` into the kind's type, so that a value of the wrong type is refused with
    /// a 400 naming its path and the expected type; applies upstream's defaults; re-encodes.
    /// Unknown fields are dropped, as upstream does when field validation is not strict.
    fn decode_and_default(&self, obj: Value) -> Result<Value, ApiError>;

    /// Validates the object with upstream's messages; `old` is the stored object on update.
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError>;

    /// Called on create after defaults: resets what a client may not set (e.g. status, to the
    /// kind's initial status).
    fn prepare_create(&self, _obj: &mut Value) {}

    /// Whether the kind splits spec and status (writes to the main resource keep the old
    /// status; writes to `status` keep everything else).
    fn has_status(&self) -> bool {
        false
    }

    /// Whether `metadata.generation` starts at 1 and grows on every change outside metadata
    /// and status.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// The value of a field a field selector names (`metadata.name` and `metadata.namespace`
    /// are handled generically); `None` if the kind does not support selecting on it.
    fn field(&self, _obj: &Value, _path: &str) -> Option<String> {
        None
    }

    /// Top-level fields the kind accepts on write but consumes while defaulting, so they are
    /// known to strict field validation although never stored (Secret's `stringData`).
    fn write_only_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// How the kind is stored when it shares another kind's storage; `None`: as itself.
    fn conversion(&self) -> Option<&Conversion> {
        None
    }

    /// The columns of `kubectl get` (Name first, as upstream).
    fn columns(&self) -> &'static [Column];

    /// One table row: a cell per column, in order.
    fn row(&self, obj: &Value, now: Timestamp) -> Vec<Value>;
}
