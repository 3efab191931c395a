//! Tests of the index and the documents as kubectl reads them: the query-parameter check of
//! `kubectl apply --validate=strict`, the schema walk of `kubectl explain`, and `$ref`s.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use keelson_apimachinery::{ApiError, FieldError};
use keelson_kinds::{Column, Kind, Strategy, Subresource};
use serde_json::{Value, json};

use crate::OpenApiV3;

/// A strategy the documents never call.
struct Unused;

impl Strategy for Unused {
    fn decode_and_default(&self, obj: Value) -> Result<Value, ApiError> {
        Ok(obj)
    }
    fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        Vec::new()
    }
    fn columns(&self) -> &'static [Column] {
        &[]
    }
    fn row(&self, _obj: &Value, _now: Timestamp) -> Vec<Value> {
        Vec::new()
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    subresources: &'static [Subresource],
) -> Kind {
    Kind {
        group,
        version,
        kind,
        plural,
        singular: "",
        short_names: &[],
        categories: &[],
        namespaced,
        verbs: ALL_VERBS,
        subresources,
        strategy: &Unused,
    }
}

use Subresource::*;

static KINDS: &[Kind] = &[
    kind(
        "",
        "v1",
        "Pod",
        "pods",
        true,
        &[
            Status,
            Binding,
            Eviction,
            Log,
            Exec,
            Attach,
            PortForward,
            Proxy,
        ],
    ),
    kind("", "v1", "Node", "nodes", false, &[Status, Proxy]),
    kind(
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &[Status, Finalize],
    ),
    kind("", "v1", "Service", "services", true, &[Status, Proxy]),
    kind("", "v1", "ConfigMap", "configmaps", true, &[]),
    kind(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &[Status, Scale],
    ),
    kind(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &[Status, Scale],
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
    ),
    Kind {
        verbs: &["create"],
        ..kind(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            &[],
        )
    },
    kind(
        "example.keelson.dev",
        "v1alpha1",
        "Widget",
        "widgets",
        true,
        &[Status],
    ),
];

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("documents are JSON")
}

fn doc(api: &OpenApiV3, path: &str) -> Value {
    let (bytes, _) = api
        .document(path)
        .unwrap_or_else(|| panic!("no document {path}"));
    parse(&bytes)
}

/// cli-runtime's `supportsQueryParamV3`: the first `patch` operation whose GVK matches decides.
fn supports_query_param(doc: &Value, gvk: &Value, param: &str) -> Result<(), String> {
    let paths = doc["paths"]
        .as_object()
        .ok_or("Invalid OpenAPI V3 document")?;
    for item in paths.values() {
        let Some(op) = item.get("patch") else {
            continue;
        };
        if op.get("x-kubernetes-group-version-kind") != Some(gvk) {
            continue;
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        if params
            .iter()
            .any(|p| p["name"] == param && p["in"] == "query")
        {
            return Ok(());
        }
        return Err(format!("{gvk} does not support {param}"));
    }
    Err(format!("Path not found for GVK ({gvk}) in OpenAPI V3 doc"))
}

fn gv_path(kind: &Kind) -> String {
    if kind.group.is_empty() {
        format!("api/{}", kind.version)
    } else {
        format!("apis/{}/{}", kind.group, kind.version)
    }
}

fn gvk_of(kind: &Kind) -> Value {
    json!({"group": kind.group, "kind": kind.kind, "version": kind.version})
}

#[test]
fn index_lists_documents_with_hashed_urls() {
    let api = OpenApiV3::new(KINDS);
    let index = parse(&api.index());
    let paths = index["paths"].as_object().expect("paths object");
    for path in [
        "api",
        "apis",
        "api/v1",
        "apis/apps",
        "apis/apps/v1",
        "apis/rbac.authorization.k8s.io/v1",
    ] {
        let url = paths[path]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} not indexed"));
        let hash = url
            .strip_prefix(&format!("/openapi/v3/{path}?hash="))
            .unwrap_or_else(|| panic!("{url}"));
        assert_eq!(hash.len(), 32, "{url}");
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{url}");
        assert_eq!(api.hash(path), Some(hash));
        assert_eq!(api.document(path).map(|(_, h)| h).as_deref(), Some(hash));
    }
    assert_eq!(paths.len(), api.paths().count());
    assert!(api.document("apis/apps/v2").is_none());
    assert!(api.document("apis/batch/v1").is_none());
}

#[test]
fn hashes_are_stable_and_follow_the_kinds() {
    static FEWER: &[Kind] = &[kind(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &[Status, Scale],
    )];
    let (a, b, fewer) = (
        OpenApiV3::new(KINDS),
        OpenApiV3::new(KINDS),
        OpenApiV3::new(FEWER),
    );
    assert_eq!(a.index(), b.index());
    assert_ne!(a.hash("apis/apps/v1"), fewer.hash("apis/apps/v1"));
    assert_ne!(a.hash("api/v1"), a.hash("apis/apps/v1"));
    let (first, _) = a.document("api/v1").expect("api/v1");
    let (again, _) = a.document("/api/v1/").expect("api/v1 with slashes");
    assert_eq!(first, again);
}

#[test]
fn deployment_patch_supports_field_validation() {
    let api = OpenApiV3::new(KINDS);
    let apps = doc(&api, "apis/apps/v1");
    let deployment = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    assert_eq!(
        supports_query_param(&apps, &deployment, "fieldValidation"),
        Ok(())
    );
    let missing = json!({"group": "apps", "version": "v1", "kind": "StatefulSet"});
    assert!(supports_query_param(&apps, &missing, "fieldValidation").is_err());
}

/// The kinds of these tests, and the table the apiserver serves.
const TABLES: [&[Kind]; 2] = [KINDS, keelson_kinds::ALL];

#[test]
fn every_patchable_kind_supports_field_validation() {
    for table in TABLES {
        let api = OpenApiV3::new(table);
        for kind in table.iter().filter(|k| k.verbs.contains(&"patch")) {
            let document = doc(&api, &gv_path(kind));
            let found = supports_query_param(&document, &gvk_of(kind), "fieldValidation");
            assert_eq!(found, Ok(()), "{}/{}", kind.api_version(), kind.kind);
        }
    }
}

/// Every `$ref` under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn check_refs_resolve(path: &str, document: &Value) {
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let mut found = Vec::new();
    refs(document, &mut found);
    assert!(!found.is_empty(), "{path} has no $ref");
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{path}: {target}"));
        assert!(
            schemas.contains_key(name),
            "{path}: {target} does not resolve"
        );
    }
}

#[test]
fn every_ref_resolves() {
    for table in TABLES {
        let api = OpenApiV3::new(table);
        for path in api.paths() {
            check_refs_resolve(path, &doc(&api, path));
        }
    }
}

#[test]
fn documents_are_openapi_3() {
    let api = OpenApiV3::new(KINDS);
    for path in api.paths() {
        let document = doc(&api, path);
        assert_eq!(document["openapi"], "3.0.0", "{path}");
        assert_eq!(
            document["info"],
            json!({"title": "Kubernetes", "version": "v1.33.0"}),
            "{path}"
        );
        assert!(
            !document["paths"].as_object().expect("paths").is_empty(),
            "{path}"
        );
    }
}

/// kubectl explain: find the GVK on the resource's paths, then the schema carrying it.
fn explain_schema<'a>(document: &'a Value, kind: &Kind) -> Option<&'a Value> {
    let prefix = if kind.group.is_empty() {
        "/api".to_string()
    } else {
        format!("/apis/{}", kind.group)
    };
    let v = kind.version;
    let candidates = [
        format!("{prefix}/{v}/{}", kind.plural),
        format!("{prefix}/{v}/{}/{{name}}", kind.plural),
        format!("{prefix}/{v}/namespaces/{{namespace}}/{}", kind.plural),
        format!(
            "{prefix}/{v}/namespaces/{{namespace}}/{}/{{name}}",
            kind.plural
        ),
    ];
    let gvk = candidates.iter().find_map(|path| {
        let item = document["paths"].get(path)?;
        ["get", "post", "put", "patch", "delete"]
            .iter()
            .find_map(|method| item.get(method)?.get("x-kubernetes-group-version-kind"))
    })?;
    let schemas = document["components"]["schemas"].as_object()?;
    schemas.values().find(|schema| {
        schema["x-kubernetes-group-version-kind"]
            .as_array()
            .is_some_and(|marks| marks.contains(gvk))
    })
}

#[test]
fn explain_finds_every_kind() {
    for table in TABLES {
        let api = OpenApiV3::new(table);
        for kind in table {
            let document = doc(&api, &gv_path(kind));
            let schema =
                explain_schema(&document, kind).unwrap_or_else(|| panic!("explain {}", kind.kind));
            assert!(
                schema["properties"]["metadata"].is_object(),
                "{}",
                kind.kind
            );
        }
    }
}

#[test]
fn every_served_kind_has_its_upstream_schema() {
    let api = OpenApiV3::new(keelson_kinds::ALL);
    for kind in keelson_kinds::ALL {
        let document = doc(&api, &gv_path(kind));
        let schema =
            explain_schema(&document, kind).unwrap_or_else(|| panic!("explain {}", kind.kind));
        assert!(
            schema.get("x-kubernetes-preserve-unknown-fields").is_none(),
            "{}",
            kind.kind
        );
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{}",
            kind.kind
        );
    }
}

/// Follows `$ref`, single-element `allOf` and array `items` as explain does.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let name = target.trim_start_matches("#/components/schemas/");
        return resolve(document, &document["components"]["schemas"][name]);
    }
    if let Some([only]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return resolve(document, only);
    }
    if let Some(items) = schema.get("items") {
        return resolve(document, items);
    }
    schema
}

#[test]
fn explain_pod_spec_containers() {
    let api = OpenApiV3::new(KINDS);
    let core = doc(&api, "api/v1");
    let pod = explain_schema(&core, &KINDS[0]).expect("pod schema");
    let spec = &pod["properties"]["spec"];
    assert!(
        spec["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{spec}"
    );
    let containers = &resolve(&core, spec)["properties"]["containers"];
    assert!(
        containers["description"]
            .as_str()
            .is_some_and(|d| d.contains("containers")),
        "{containers}"
    );
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    let container = resolve(&core, containers);
    assert_eq!(container["required"], json!(["name"]));
    assert_eq!(
        container["properties"]["ports"]["x-kubernetes-patch-merge-key"],
        "containerPort"
    );
    assert_eq!(
        container["properties"]["env"]["x-kubernetes-patch-merge-key"],
        "name"
    );
    assert_eq!(
        container["properties"]["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    let meta = resolve(&core, &pod["properties"]["metadata"]);
    assert_eq!(
        meta["properties"]["ownerReferences"]["x-kubernetes-patch-merge-key"],
        "uid"
    );
    let service =
        &core["components"]["schemas"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
    assert_eq!(service["x-kubernetes-patch-merge-key"], "port");
}

/// `(document, path, method, operationId, action, GVK kind)`.
const OPERATIONS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}",
        "patch",
        "patchCoreV1NamespacedPod",
        "patch",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}",
        "get",
        "readCoreV1NamespacedPod",
        "get",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}",
        "put",
        "replaceCoreV1NamespacedPod",
        "put",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}",
        "delete",
        "deleteCoreV1NamespacedPod",
        "delete",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods",
        "get",
        "listCoreV1NamespacedPod",
        "list",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods",
        "post",
        "createCoreV1NamespacedPod",
        "post",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods",
        "delete",
        "deleteCoreV1CollectionNamespacedPod",
        "deletecollection",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/pods",
        "get",
        "listCoreV1PodForAllNamespaces",
        "list",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}/status",
        "patch",
        "patchCoreV1NamespacedPodStatus",
        "patch",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}/binding",
        "post",
        "createCoreV1NamespacedPodBinding",
        "post",
        "Binding",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
        "post",
        "createCoreV1NamespacedPodEviction",
        "post",
        "Eviction",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}/log",
        "get",
        "readCoreV1NamespacedPodLog",
        "get",
        "Pod",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}/exec",
        "post",
        "connectCoreV1PostNamespacedPodExec",
        "connect",
        "PodExecOptions",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
        "get",
        "connectCoreV1GetNamespacedPodPortforward",
        "connect",
        "PodPortForwardOptions",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
        "get",
        "connectCoreV1GetNamespacedPodProxyWithPath",
        "connect",
        "PodProxyOptions",
    ),
    (
        "api/v1",
        "/api/v1/nodes/{name}",
        "get",
        "readCoreV1Node",
        "get",
        "Node",
    ),
    (
        "api/v1",
        "/api/v1/nodes",
        "get",
        "listCoreV1Node",
        "list",
        "Node",
    ),
    (
        "api/v1",
        "/api/v1/nodes/{name}/proxy",
        "put",
        "connectCoreV1PutNodeProxy",
        "connect",
        "NodeProxyOptions",
    ),
    (
        "api/v1",
        "/api/v1/namespaces/{name}/finalize",
        "put",
        "replaceCoreV1NamespaceFinalize",
        "put",
        "Namespace",
    ),
    (
        "apis/apps/v1",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        "patch",
        "patchAppsV1NamespacedDeployment",
        "patch",
        "Deployment",
    ),
    (
        "apis/apps/v1",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
        "get",
        "readAppsV1NamespacedDeploymentScale",
        "get",
        "Scale",
    ),
    (
        "apis/apps/v1",
        "/apis/apps/v1/namespaces/{namespace}/deployments",
        "delete",
        "deleteAppsV1CollectionNamespacedDeployment",
        "deletecollection",
        "Deployment",
    ),
    (
        "apis/rbac.authorization.k8s.io/v1",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
        "patch",
        "patchRbacAuthorizationV1ClusterRole",
        "patch",
        "ClusterRole",
    ),
    (
        "apis/authorization.k8s.io/v1",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "post",
        "createAuthorizationV1SelfSubjectAccessReview",
        "post",
        "SelfSubjectAccessReview",
    ),
];

#[test]
fn operations_are_named_as_upstream() {
    let api = OpenApiV3::new(KINDS);
    for &(document, path, method, id, action, kind) in OPERATIONS {
        let op = &doc(&api, document)["paths"][path][method];
        let context = format!("{method} {path}: {op}");
        assert_eq!(op["operationId"], id, "{context}");
        assert_eq!(op["x-kubernetes-action"], action, "{context}");
        assert_eq!(
            op["x-kubernetes-group-version-kind"]["kind"], kind,
            "{context}"
        );
    }
}

#[test]
fn write_operations_list_their_query_parameters() {
    let api = OpenApiV3::new(KINDS);
    let core = doc(&api, "api/v1");
    let item = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    let names = |op: &Value| -> Vec<String> {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        params
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        names(&item["patch"]),
        ["dryRun", "fieldManager", "fieldValidation", "force"]
    );
    assert_eq!(
        names(&item["put"]),
        ["dryRun", "fieldManager", "fieldValidation"]
    );
    let collection = &core["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(
        names(&collection["post"]),
        ["dryRun", "fieldManager", "fieldValidation"]
    );
    let patch_types = item["patch"]["requestBody"]["content"]
        .as_object()
        .expect("patch content");
    assert!(patch_types.contains_key("application/strategic-merge-patch+json"));
    let pod_ref = json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.Pod"});
    assert_eq!(
        collection["post"]["requestBody"]["content"]["*/*"]["schema"],
        pod_ref
    );
    assert_eq!(
        item["put"]["responses"]["200"]["content"]["application/json"]["schema"],
        pod_ref
    );
    let list_ref = json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.PodList"});
    assert_eq!(
        collection["get"]["responses"]["200"]["content"]["application/json"]["schema"],
        list_ref
    );
    let path_params: Vec<&Value> = item["parameters"]
        .as_array()
        .expect("path parameters")
        .iter()
        .collect();
    assert!(
        path_params
            .iter()
            .any(|p| p["name"] == "namespace" && p["in"] == "path" && p["required"] == true)
    );
}

#[test]
fn scale_subresource_uses_autoscaling_scale() {
    let api = OpenApiV3::new(KINDS);
    let apps = doc(&api, "apis/apps/v1");
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    let want = json!({"$ref": "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"});
    assert_eq!(
        scale["put"]["requestBody"]["content"]["*/*"]["schema"],
        want
    );
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    let marks = &apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"];
    assert_eq!(
        marks,
        &json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}])
    );
}

#[test]
fn schemas_carry_their_gvk() {
    let api = OpenApiV3::new(KINDS);
    let core = doc(&api, "api/v1");
    let schemas = &core["components"]["schemas"];
    let check = |name: &str, kind: &str| {
        let want = json!([{"group": "", "kind": kind, "version": "v1"}]);
        assert_eq!(
            schemas[name]["x-kubernetes-group-version-kind"], want,
            "{name}"
        );
    };
    check("io.k8s.api.core.v1.Pod", "Pod");
    check("io.k8s.api.core.v1.PodList", "PodList");
    check("io.k8s.api.core.v1.Namespace", "Namespace");
    check("io.k8s.api.core.v1.Binding", "Binding");
    assert!(
        schemas["io.k8s.api.core.v1.PodSpec"]
            .get("x-kubernetes-group-version-kind")
            .is_none()
    );
    assert_eq!(
        schemas["io.k8s.api.core.v1.PodList"]["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Pod"
    );
}

#[test]
fn unknown_kind_gets_an_open_schema() {
    let api = OpenApiV3::new(KINDS);
    let document = doc(&api, "apis/example.keelson.dev/v1alpha1");
    let schema = explain_schema(&document, &KINDS[9]).expect("widget schema");
    assert_eq!(schema["x-kubernetes-preserve-unknown-fields"], true);
    let gvk = json!({"group": "example.keelson.dev", "version": "v1alpha1", "kind": "Widget"});
    assert_eq!(
        supports_query_param(&document, &gvk, "fieldValidation"),
        Ok(())
    );
}

#[test]
fn operation_ids_are_unique() {
    for table in TABLES {
        let api = OpenApiV3::new(table);
        for path in api.paths() {
            let document = doc(&api, path);
            let mut ids: Vec<&str> = document["paths"]
                .as_object()
                .expect("paths")
                .values()
                .flat_map(|item| item.as_object().into_iter().flat_map(|ops| ops.values()))
                .filter_map(|op| op["operationId"].as_str())
                .collect();
            let total = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), total, "{path}");
        }
    }
}

fn generate_all(kinds: &'static [Kind]) -> Duration {
    let api = OpenApiV3::new(kinds);
    let start = Instant::now();
    for path in api.paths() {
        let (bytes, _) = api.document(path).expect("indexed document");
        assert!(bytes.len() > 100, "{path}");
    }
    start.elapsed()
}

#[test]
fn generating_every_document_is_fast() {
    for table in TABLES {
        let took = generate_all(table);
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}
