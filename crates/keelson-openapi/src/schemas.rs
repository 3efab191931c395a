//! The `components.schemas` of one document: the schemas of the k8s-openapi types a document
//! names (found through a table keyed by group, version and kind), everything they reference,
//! the list kinds, and the Kubernetes extensions kubectl reads.

use k8s_openapi::Resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use keelson_kinds::Kind;
use serde_json::{Map, Value, json};

use crate::merge_keys;

/// Where every `$ref` of a document points.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

/// The extension naming the kinds a schema or an operation belongs to.
pub(crate) const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// A `$ref` to the component schema `name`.
pub(crate) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// `{group, kind, version}` as upstream writes it (keys in sorted order).
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// A k8s-openapi resource type of the table.
struct TypeEntry {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    register: fn(&mut Components) -> String,
}

const fn entry<T: Resource + JsonSchema>() -> TypeEntry {
    TypeEntry {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        register: Components::of::<T>,
    }
}

/// Every top-level resource type of k8s-openapi (Kubernetes 1.33).
static TYPES: &[TypeEntry] = {
    use k8s_openapi::api;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
    &[
        entry::<api::admissionregistration::v1::MutatingWebhookConfiguration>(),
        entry::<api::admissionregistration::v1::ValidatingAdmissionPolicy>(),
        entry::<api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
        entry::<api::admissionregistration::v1::ValidatingWebhookConfiguration>(),
        entry::<api::admissionregistration::v1alpha1::MutatingAdmissionPolicy>(),
        entry::<api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding>(),
        entry::<api::admissionregistration::v1beta1::ValidatingAdmissionPolicy>(),
        entry::<api::admissionregistration::v1beta1::ValidatingAdmissionPolicyBinding>(),
        entry::<api::apiserverinternal::v1alpha1::StorageVersion>(),
        entry::<api::apps::v1::ControllerRevision>(),
        entry::<api::apps::v1::DaemonSet>(),
        entry::<api::apps::v1::Deployment>(),
        entry::<api::apps::v1::ReplicaSet>(),
        entry::<api::apps::v1::StatefulSet>(),
        entry::<api::authentication::v1::SelfSubjectReview>(),
        entry::<api::authentication::v1::TokenRequest>(),
        entry::<api::authentication::v1::TokenReview>(),
        entry::<api::authorization::v1::LocalSubjectAccessReview>(),
        entry::<api::authorization::v1::SelfSubjectAccessReview>(),
        entry::<api::authorization::v1::SelfSubjectRulesReview>(),
        entry::<api::authorization::v1::SubjectAccessReview>(),
        entry::<api::autoscaling::v1::HorizontalPodAutoscaler>(),
        entry::<api::autoscaling::v1::Scale>(),
        entry::<api::autoscaling::v2::HorizontalPodAutoscaler>(),
        entry::<api::batch::v1::CronJob>(),
        entry::<api::batch::v1::Job>(),
        entry::<api::certificates::v1::CertificateSigningRequest>(),
        entry::<api::certificates::v1alpha1::ClusterTrustBundle>(),
        entry::<api::certificates::v1beta1::ClusterTrustBundle>(),
        entry::<api::coordination::v1::Lease>(),
        entry::<api::coordination::v1alpha2::LeaseCandidate>(),
        entry::<api::coordination::v1beta1::LeaseCandidate>(),
        entry::<api::core::v1::Binding>(),
        entry::<api::core::v1::ComponentStatus>(),
        entry::<api::core::v1::ConfigMap>(),
        entry::<api::core::v1::Endpoints>(),
        entry::<api::core::v1::Event>(),
        entry::<api::core::v1::LimitRange>(),
        entry::<api::core::v1::Namespace>(),
        entry::<api::core::v1::Node>(),
        entry::<api::core::v1::PersistentVolume>(),
        entry::<api::core::v1::PersistentVolumeClaim>(),
        entry::<api::core::v1::Pod>(),
        entry::<api::core::v1::PodTemplate>(),
        entry::<api::core::v1::ReplicationController>(),
        entry::<api::core::v1::ResourceQuota>(),
        entry::<api::core::v1::Secret>(),
        entry::<api::core::v1::Service>(),
        entry::<api::core::v1::ServiceAccount>(),
        entry::<api::discovery::v1::EndpointSlice>(),
        entry::<api::events::v1::Event>(),
        entry::<api::flowcontrol::v1::FlowSchema>(),
        entry::<api::flowcontrol::v1::PriorityLevelConfiguration>(),
        entry::<api::networking::v1::IPAddress>(),
        entry::<api::networking::v1::Ingress>(),
        entry::<api::networking::v1::IngressClass>(),
        entry::<api::networking::v1::NetworkPolicy>(),
        entry::<api::networking::v1::ServiceCIDR>(),
        entry::<api::networking::v1beta1::IPAddress>(),
        entry::<api::networking::v1beta1::ServiceCIDR>(),
        entry::<api::node::v1::RuntimeClass>(),
        entry::<api::policy::v1::Eviction>(),
        entry::<api::policy::v1::PodDisruptionBudget>(),
        entry::<api::rbac::v1::ClusterRole>(),
        entry::<api::rbac::v1::ClusterRoleBinding>(),
        entry::<api::rbac::v1::Role>(),
        entry::<api::rbac::v1::RoleBinding>(),
        entry::<api::resource::v1alpha3::DeviceClass>(),
        entry::<api::resource::v1alpha3::DeviceTaintRule>(),
        entry::<api::resource::v1alpha3::ResourceClaim>(),
        entry::<api::resource::v1alpha3::ResourceClaimTemplate>(),
        entry::<api::resource::v1alpha3::ResourceSlice>(),
        entry::<api::resource::v1beta1::DeviceClass>(),
        entry::<api::resource::v1beta1::ResourceClaim>(),
        entry::<api::resource::v1beta1::ResourceClaimTemplate>(),
        entry::<api::resource::v1beta1::ResourceSlice>(),
        entry::<api::resource::v1beta2::DeviceClass>(),
        entry::<api::resource::v1beta2::ResourceClaim>(),
        entry::<api::resource::v1beta2::ResourceClaimTemplate>(),
        entry::<api::resource::v1beta2::ResourceSlice>(),
        entry::<api::scheduling::v1::PriorityClass>(),
        entry::<api::storage::v1::CSIDriver>(),
        entry::<api::storage::v1::CSINode>(),
        entry::<api::storage::v1::CSIStorageCapacity>(),
        entry::<api::storage::v1::StorageClass>(),
        entry::<api::storage::v1::VolumeAttachment>(),
        entry::<api::storage::v1alpha1::VolumeAttributesClass>(),
        entry::<api::storage::v1beta1::VolumeAttributesClass>(),
        entry::<api::storagemigration::v1alpha1::StorageVersionMigration>(),
        entry::<apiextensions::v1::CustomResourceDefinition>(),
        entry::<apiregistration::v1::APIService>(),
    ]
};

/// Whether k8s-openapi has the kind's schema (and so the kind takes strategic merge patches).
pub(crate) fn is_builtin(kind: &Kind) -> bool {
    find_type(kind.group, kind.version, kind.kind).is_some()
}

fn find_type(group: &str, version: &str, kind: &str) -> Option<&'static TypeEntry> {
    TYPES
        .iter()
        .find(|t| t.group == group && t.version == version && t.kind == kind)
}

/// A list kind to add once the item schema is known.
struct ListKind {
    name: String,
    item: String,
    gvk: Value,
    plural: &'static str,
}

/// The schemas of one document, gathered while its paths are built.
pub(crate) struct Components {
    generator: SchemaGenerator,
    /// Schemas built here rather than by the generator.
    extra: Map<String, Value>,
    lists: Vec<ListKind>,
    /// Schema name and the GVK it is marked with.
    marks: Vec<(String, Value)>,
}

impl Components {
    pub(crate) fn new() -> Self {
        Components {
            generator: SchemaSettings::openapi3().into_generator(),
            extra: Map::new(),
            lists: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Adds `T` and everything it references; returns the component name of `T`.
    pub(crate) fn of<T: JsonSchema>(&mut self) -> String {
        let schema = self.generator.subschema_for::<T>();
        match schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
        {
            Some(name) => name.to_string(),
            None => {
                let name = T::schema_name().into_owned();
                self.extra.insert(name.clone(), schema.to_value());
                name
            }
        }
    }

    /// Adds a resource type and marks its schema with its GVK.
    pub(crate) fn resource<T: Resource + JsonSchema>(&mut self) -> String {
        let name = self.of::<T>();
        self.mark(&name, gvk(T::GROUP, T::VERSION, T::KIND));
        name
    }

    /// Adds the schema of a kind known by group, version and kind, if k8s-openapi has one.
    pub(crate) fn known(&mut self, group: &str, version: &str, kind: &str) -> Option<String> {
        let entry = find_type(group, version, kind)?;
        let name = (entry.register)(self);
        self.mark(&name, gvk(group, version, kind));
        Some(name)
    }

    /// Adds the schema of a served kind: k8s-openapi's, or an open object schema for a kind
    /// it does not know.
    pub(crate) fn kind(&mut self, kind: &Kind) -> String {
        if let Some(name) = self.known(kind.group, kind.version, kind.kind) {
            return name;
        }
        let name = fallback_name(kind);
        if !self.extra.contains_key(&name) {
            let schema = self.open_schema(kind);
            self.extra.insert(name.clone(), schema);
        }
        self.mark(&name, gvk(kind.group, kind.version, kind.kind));
        name
    }

    /// Adds `<Kind>List` for a kind whose schema is `item`; returns its name.
    pub(crate) fn list(&mut self, kind: &Kind, item: &str) -> String {
        let name = format!("{item}List");
        if !self.lists.iter().any(|l| l.name == name) {
            self.of::<ListMeta>();
            let list_kind = format!("{}List", kind.kind);
            self.lists.push(ListKind {
                name: name.clone(),
                item: item.to_string(),
                gvk: gvk(kind.group, kind.version, &list_kind),
                plural: kind.plural,
            });
        }
        name
    }

    /// Records that schema `name` stands for the kind `gvk`.
    pub(crate) fn mark(&mut self, name: &str, gvk: Value) {
        if !self.marks.iter().any(|(n, g)| n == name && *g == gvk) {
            self.marks.push((name.to_string(), gvk));
        }
    }

    /// The finished `components.schemas`, sorted by name.
    pub(crate) fn finish(mut self) -> Map<String, Value> {
        let mut schemas = self.generator.take_definitions(true);
        schemas.append(&mut self.extra);
        for list in &self.lists {
            let schema = list_schema(list, schemas.get(&list.item));
            schemas.insert(list.name.clone(), schema);
        }
        merge_keys::apply(&mut schemas);
        schemas
            .iter_mut()
            .filter(|(name, _)| !METADATA_REQUIRED.contains(&name.as_str()))
            .for_each(|(_, schema)| {
                optional_metadata(schema);
            });
        for (name, gvk) in self.marks {
            mark_schema(&mut schemas, &name, gvk);
        }
        schemas.sort_keys();
        schemas
    }

    fn open_schema(&mut self, kind: &Kind) -> Value {
        let meta = self.of::<ObjectMeta>();
        json!({
            "description": format!("{} is served without a published schema; any fields are kept.", kind.kind),
            "type": "object",
            "properties": {
                "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
                "kind": {"description": KIND_DESCRIPTION, "type": "string"},
                "metadata": {"allOf": [reference(&meta)], "description": "Standard object's metadata."},
            },
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

const API_VERSION_DESCRIPTION: &str =
    "APIVersion defines the versioned schema of this representation of an object.";
const KIND_DESCRIPTION: &str =
    "Kind is a string value representing the REST resource this object represents.";

/// The component name of a kind k8s-openapi does not know, in upstream's naming style.
fn fallback_name(kind: &Kind) -> String {
    let group = match kind.group {
        "" => "core",
        group => group.split('.').next().unwrap_or(group),
    };
    format!("io.k8s.api.{group}.{}.{}", kind.version, kind.kind)
}

/// `<Kind>List`: `apiVersion` and `kind` described as in the item's schema.
fn list_schema(list: &ListKind, item: Option<&Value>) -> Value {
    let item_property = |field: &str, fallback: &str| {
        item.and_then(|schema| schema.pointer(&format!("/properties/{field}")))
            .cloned()
            .unwrap_or_else(|| json!({"description": fallback, "type": "string"}))
    };
    let kind = list
        .gvk
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let list_meta = format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta");
    json!({
        "description": format!("{kind} is a list of {}.", list.plural),
        "type": "object",
        "properties": {
            "apiVersion": item_property("apiVersion", API_VERSION_DESCRIPTION),
            "items": {
                "description": format!("List of {}.", list.plural),
                "type": "array",
                "items": reference(&list.item),
            },
            "kind": item_property("kind", KIND_DESCRIPTION),
            "metadata": {
                "allOf": [{"$ref": list_meta}],
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
        "required": ["items"],
        GVK_EXTENSION: [list.gvk.clone()],
    })
}

/// The only kinds whose `metadata` upstream marks required (k8s-openapi requires it of all).
const METADATA_REQUIRED: &[&str] = &["io.k8s.api.core.v1.Event"];

/// Drops `metadata` from the schema's `required` list, and the list if it is left empty.
fn optional_metadata(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(Value::Array(required)) = object.get_mut("required") else {
        return;
    };
    required.retain(|field| field != "metadata");
    if required.is_empty() {
        object.remove("required");
    }
}

/// Appends `gvk` to the schema's `x-kubernetes-group-version-kind` list.
fn mark_schema(schemas: &mut Map<String, Value>, name: &str, gvk: Value) {
    let Some(schema) = schemas.get_mut(name).and_then(Value::as_object_mut) else {
        return;
    };
    let marks = schema
        .entry(GVK_EXTENSION)
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(marks) = marks
        && !marks.contains(&gvk)
    {
        marks.push(gvk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_type_is_named_as_upstream() {
        let mut components = Components::new();
        for entry in TYPES {
            let name = (entry.register)(&mut components);
            let check = |prefix: &str| {
                name.starts_with(prefix) && name.ends_with(&format!(".{}", entry.kind))
            };
            assert!(
                check("io.k8s.api.")
                    || check("io.k8s.apiextensions-apiserver.")
                    || check("io.k8s.kube-aggregator."),
                "{name}"
            );
            assert!(name.contains(&format!(".{}.", entry.version)), "{name}");
        }
    }

    #[test]
    fn metadata_is_required_only_where_upstream_requires_it() {
        let mut components = Components::new();
        for kind in ["Event", "ControllerRevision"] {
            let group = if kind == "Event" { "" } else { "apps" };
            components.known(group, "v1", kind);
        }
        let schemas = components.finish();
        let required = |name: &str| schemas[name]["required"].clone();
        assert_eq!(
            required("io.k8s.api.core.v1.Event"),
            json!(["involvedObject", "metadata"])
        );
        assert_eq!(
            required("io.k8s.api.apps.v1.ControllerRevision"),
            json!(["revision"])
        );
    }

    #[test]
    fn known_kind_schema_carries_gvk() {
        let mut components = Components::new();
        let name = components.known("apps", "v1", "Deployment");
        assert_eq!(name.as_deref(), Some("io.k8s.api.apps.v1.Deployment"));
        assert!(components.known("apps", "v1", "NoSuchKind").is_none());
        let schemas = components.finish();
        let marks = &schemas["io.k8s.api.apps.v1.Deployment"][GVK_EXTENSION];
        assert_eq!(
            marks,
            &json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(
            schemas["io.k8s.api.apps.v1.Deployment"]
                .get("required")
                .is_none()
        );
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    }
}
