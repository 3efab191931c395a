//! The `paths` of a group-version document: for each served kind its collection, item and
//! subresource paths, with upstream's operation IDs, actions, query parameters and the
//! `x-kubernetes-group-version-kind` extension kubectl matches on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Patch, Status};
use keelson_kinds::{Kind, Subresource};
use serde_json::{Map, Value, json};

use crate::schemas::{self, Components, GVK_EXTENSION, gvk, reference};

/// A query or path parameter.
pub(crate) struct Param {
    name: &'static str,
    location: &'static str,
    ty: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        ty,
        description,
    }
}

const PRETTY: Param = query(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "A name associated with the actor or entity that is making these changes.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "How the server handles unknown or duplicate fields in the object: Ignore, Warn (the default) or Strict.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It must be unset for non-apply patch requests.",
);
const GRACE_PERIOD: Param = query(
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted.",
);
const IGNORE_STORE_READ_ERRORS: Param = query(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "boolean",
    "If set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error.",
);
const ORPHAN: Param = query(
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy. Whether the dependent objects should be orphaned.",
);
const PROPAGATION: Param = query(
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.",
);
const ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    "boolean",
    "Requests watch events with type \"BOOKMARK\".",
);
const CONTINUE: Param = query(
    "continue",
    "string",
    "The continue option should be set when retrieving more results from the server.",
);
const FIELD_SELECTOR: Param = query(
    "fieldSelector",
    "string",
    "A selector to restrict the list of returned objects by their fields.",
);
const LABEL_SELECTOR: Param = query(
    "labelSelector",
    "string",
    "A selector to restrict the list of returned objects by their labels.",
);
const LIMIT: Param = query(
    "limit",
    "integer",
    "The maximum number of responses to return for a list call.",
);
const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    "string",
    "Sets a constraint on what resource versions a request may be served from.",
);
const RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    "string",
    "Determines how resourceVersion is applied to list calls.",
);
const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    "boolean",
    "With watch=true, starts the watch stream with synthetic events producing the current state of objects.",
);
const TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    "integer",
    "Timeout for the list/watch call, regardless of any activity.",
);
const WATCH: Param = query(
    "watch",
    "boolean",
    "Watch for changes to the described resources and return them as a stream.",
);
const CONTAINER: Param = query(
    "container",
    "string",
    "The container for which to stream logs or run the command.",
);
const FOLLOW: Param = query("follow", "boolean", "Follow the log stream of the pod.");
const INSECURE_SKIP_TLS: Param = query(
    "insecureSkipTLSVerifyBackend",
    "boolean",
    "Skips verifying the serving certificate of the backend the logs are read from.",
);
const LIMIT_BYTES: Param = query(
    "limitBytes",
    "integer",
    "The number of bytes to read from the server before terminating the log output.",
);
const PREVIOUS: Param = query(
    "previous",
    "boolean",
    "Return previous terminated container logs.",
);
const SINCE_SECONDS: Param = query(
    "sinceSeconds",
    "integer",
    "A relative time in seconds before the current time from which to show logs.",
);
const STREAM: Param = query(
    "stream",
    "string",
    "Which container log stream to return: All, Stdout or Stderr.",
);
const TAIL_LINES: Param = query(
    "tailLines",
    "integer",
    "The number of lines from the end of the logs to show.",
);
const TIMESTAMPS: Param = query(
    "timestamps",
    "boolean",
    "Add an RFC3339 timestamp at the beginning of every line of log output.",
);
const COMMAND: Param = query(
    "command",
    "string",
    "Command is the remote command to execute.",
);
const STDIN: Param = query(
    "stdin",
    "boolean",
    "Redirect the standard input stream of the pod for this call.",
);
const STDOUT: Param = query(
    "stdout",
    "boolean",
    "Redirect the standard output stream of the pod for this call.",
);
const STDERR: Param = query(
    "stderr",
    "boolean",
    "Redirect the standard error stream of the pod for this call.",
);
const TTY: Param = query("tty", "boolean", "Allocate a terminal for this call.");
const PORTS: Param = query("ports", "integer", "List of ports to forward.");
const PROXY_PATH: Param = query(
    "path",
    "string",
    "Path is the URL path to use for the current proxy request.",
);

const NAMESPACE: Param = Param {
    name: "namespace",
    location: "path",
    ty: "string",
    description: "object name and auth scope, such as for teams and projects",
};
const PATH_SUFFIX: Param = Param {
    name: "path",
    location: "path",
    ty: "string",
    description: "path to the resource",
};

/// Parameters of create, update and the subresources that take an object.
const WRITE: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
const DELETE: &[Param] = &[
    DRY_RUN,
    GRACE_PERIOD,
    IGNORE_STORE_READ_ERRORS,
    ORPHAN,
    PROPAGATION,
];
const LIST: &[Param] = &[
    ALLOW_WATCH_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
    WATCH,
];
const DELETE_COLLECTION: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD,
    IGNORE_STORE_READ_ERRORS,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN,
    PROPAGATION,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
];
const LOG: &[Param] = &[
    CONTAINER,
    FOLLOW,
    INSECURE_SKIP_TLS,
    LIMIT_BYTES,
    PREVIOUS,
    SINCE_SECONDS,
    STREAM,
    TAIL_LINES,
    TIMESTAMPS,
];
const EXEC: &[Param] = &[COMMAND, CONTAINER, STDERR, STDIN, STDOUT, TTY];
const ATTACH: &[Param] = &[CONTAINER, STDERR, STDIN, STDOUT, TTY];
const PORT_FORWARD: &[Param] = &[PORTS];
const PROXY: &[Param] = &[PROXY_PATH];

/// The JSON of a parameter as upstream's v3 documents write it.
fn param_json(param: &Param) -> Value {
    let mut out = json!({
        "name": param.name,
        "in": param.location,
        "description": param.description,
        "schema": {"type": param.ty, "uniqueItems": true},
    });
    if param.location == "path" {
        out["required"] = Value::Bool(true);
    }
    out
}

fn params_json(params: &[Param]) -> Value {
    Value::Array(params.iter().map(param_json).collect())
}

pub(crate) fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A group as upstream writes it in operation IDs: `Core`, `Apps`, `RbacAuthorization`.
pub(crate) fn group_ident(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_string();
    }
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    group.split(['.', '-']).map(capitalize).collect()
}

/// The operation tag of a group: `core`, `apps`, `rbacAuthorization`.
pub(crate) fn group_tag(group: &str) -> String {
    let ident = group_ident(group);
    let mut chars = ident.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The operation tag of a group-version: `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
pub(crate) fn tag(group: &str, version: &str) -> String {
    format!("{}_{version}", group_tag(group))
}

/// The URL prefix of a group-version: `/api/v1`, `/apis/apps/v1`.
pub(crate) fn api_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// JSON and YAML bodies of `schema`.
fn content(schema: &Value) -> Value {
    json!({"application/json": {"schema": schema}, "application/yaml": {"schema": schema}})
}

/// Responses with the given success codes, all of `schema`, plus 401.
fn responses(codes: &[u16], schema: &Value) -> Value {
    let mut out = Map::new();
    for code in codes {
        let description = match code {
            201 => "Created",
            202 => "Accepted",
            _ => "OK",
        };
        out.insert(
            code.to_string(),
            json!({"description": description, "content": content(schema)}),
        );
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

fn request_body(schema: &Value, required: bool) -> Value {
    json!({"content": {"*/*": {"schema": schema}}, "required": required})
}

/// The patch media types; kinds without a built-in schema (like custom resources upstream)
/// take no strategic merge patch, which tells `kubectl apply` to send a merge patch.
fn patch_body(patch: &Value, strategic: bool) -> Value {
    let mut content = Map::new();
    let mut media_types = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if strategic {
        media_types.push("application/strategic-merge-patch+json");
    }
    for media in media_types {
        content.insert(media.into(), json!({"schema": patch}));
    }
    json!({"content": content, "required": true})
}

/// A discovery path (`/api/`, `/apis/`, `/apis/apps/`, `/api/v1/`): one `get` of `schema`.
pub(crate) fn discovery_path(id: &str, tag: &str, description: &str, schema: &Value) -> Value {
    json!({"get": {
        "tags": [tag],
        "description": description,
        "operationId": id,
        "responses": responses(&[200], schema),
    }})
}

/// One operation before it is written out.
struct Op {
    method: &'static str,
    id: String,
    action: &'static str,
    description: String,
    gvk: Value,
    params: &'static [Param],
    body: Option<Value>,
    responses: Value,
}

/// A path and its operations.
struct PathItem {
    params: Vec<Value>,
    ops: Vec<Op>,
}

/// Everything the operations of one kind share.
struct Target<'a> {
    kind: &'a Kind,
    /// `CoreV1`, `AppsV1`.
    gv: String,
    tag: String,
    /// `Namespaced` or empty.
    scope: &'static str,
    schema: Value,
    gvk: Value,
    status: Value,
    delete_options: Value,
    patch: Value,
    /// Whether patches may be strategic merge patches.
    strategic: bool,
    collection: String,
    item: String,
}

impl Target<'_> {
    fn id(&self, verb: &str, suffix: &str) -> String {
        format!("{verb}{}{}{}{suffix}", self.gv, self.scope, self.kind.kind)
    }

    fn has(&self, verb: &str) -> bool {
        self.kind.verbs.contains(&verb)
    }

    fn path_params(&self, named: bool) -> Vec<Value> {
        let mut params = Vec::new();
        if named {
            let description = format!("name of the {}", self.kind.kind);
            params.push(json!({
                "name": "name", "in": "path", "description": description, "required": true,
                "schema": {"type": "string", "uniqueItems": true},
            }));
        }
        if self.kind.namespaced {
            params.push(param_json(&NAMESPACE));
        }
        params
    }

    fn write(&self, item: PathItem) -> Value {
        let mut out = Map::new();
        if !item.params.is_empty() {
            out.insert("parameters".into(), Value::Array(item.params));
        }
        for op in item.ops {
            let mut json_op = Map::new();
            json_op.insert("tags".into(), json!([self.tag]));
            json_op.insert("description".into(), op.description.into());
            json_op.insert("operationId".into(), op.id.into());
            if !op.params.is_empty() {
                json_op.insert("parameters".into(), params_json(op.params));
            }
            if let Some(body) = op.body {
                json_op.insert("requestBody".into(), body);
            }
            json_op.insert("responses".into(), op.responses);
            json_op.insert("x-kubernetes-action".into(), op.action.into());
            json_op.insert(GVK_EXTENSION.into(), op.gvk);
            out.insert(op.method.into(), Value::Object(json_op));
        }
        Value::Object(out)
    }

    fn collection_ops(&self, list: &Value) -> Vec<Op> {
        let kind = self.kind.kind;
        let mut ops = Vec::new();
        if self.has("list") {
            ops.push(Op {
                method: "get",
                id: self.id("list", ""),
                action: "list",
                description: format!("list or watch objects of kind {kind}"),
                gvk: self.gvk.clone(),
                params: LIST,
                body: None,
                responses: responses(&[200], list),
            });
        }
        if self.has("create") {
            ops.push(Op {
                method: "post",
                id: self.id("create", ""),
                action: "post",
                description: format!("create a {kind}"),
                gvk: self.gvk.clone(),
                params: WRITE,
                body: Some(request_body(&self.schema, true)),
                responses: responses(&[200, 201, 202], &self.schema),
            });
        }
        if self.has("deletecollection") {
            ops.push(Op {
                method: "delete",
                id: format!("delete{}Collection{}{kind}", self.gv, self.scope),
                action: "deletecollection",
                description: format!("delete collection of {kind}"),
                gvk: self.gvk.clone(),
                params: DELETE_COLLECTION,
                body: Some(request_body(&self.delete_options, false)),
                responses: responses(&[200], &self.status),
            });
        }
        ops
    }

    fn item_ops(&self) -> Vec<Op> {
        let kind = self.kind.kind;
        let mut ops = Vec::new();
        if self.has("get") {
            ops.push(self.read_op(
                "",
                format!("read the specified {kind}"),
                &self.schema,
                &self.gvk,
            ));
        }
        if self.has("update") {
            ops.push(self.replace_op(
                "",
                format!("replace the specified {kind}"),
                &self.schema,
                &self.gvk,
            ));
        }
        if self.has("patch") {
            ops.push(self.patch_op(
                "",
                format!("partially update the specified {kind}"),
                &self.schema,
                &self.gvk,
            ));
        }
        if self.has("delete") {
            ops.push(Op {
                method: "delete",
                id: self.id("delete", ""),
                action: "delete",
                description: format!("delete a {kind}"),
                gvk: self.gvk.clone(),
                params: DELETE,
                body: Some(request_body(&self.delete_options, false)),
                responses: responses(&[200, 202], &self.status),
            });
        }
        ops
    }

    fn read_op(&self, suffix: &str, description: String, schema: &Value, gvk: &Value) -> Op {
        Op {
            method: "get",
            id: self.id("read", suffix),
            action: "get",
            description,
            gvk: gvk.clone(),
            params: &[],
            body: None,
            responses: responses(&[200], schema),
        }
    }

    fn replace_op(&self, suffix: &str, description: String, schema: &Value, gvk: &Value) -> Op {
        Op {
            method: "put",
            id: self.id("replace", suffix),
            action: "put",
            description,
            gvk: gvk.clone(),
            params: WRITE,
            body: Some(request_body(schema, true)),
            responses: responses(&[200, 201], schema),
        }
    }

    fn patch_op(&self, suffix: &str, description: String, schema: &Value, gvk: &Value) -> Op {
        Op {
            method: "patch",
            id: self.id("patch", suffix),
            action: "patch",
            description,
            gvk: gvk.clone(),
            params: PATCH,
            body: Some(patch_body(&self.patch, self.strategic)),
            responses: responses(&[200, 201], schema),
        }
    }

    fn create_op(&self, suffix: &str, schema: &Value, gvk: &Value) -> Op {
        Op {
            method: "post",
            id: self.id("create", suffix),
            action: "post",
            description: format!("create {} of a {}", suffix.to_lowercase(), self.kind.kind),
            gvk: gvk.clone(),
            params: WRITE,
            body: Some(request_body(schema, true)),
            responses: responses(&[200, 201, 202], schema),
        }
    }

    /// `get`, `put` and `patch` of a subresource that reads and writes `schema`.
    fn read_write_ops(&self, suffix: &str, schema: &Value, gvk: &Value) -> Vec<Op> {
        let (kind, what) = (self.kind.kind, suffix.to_lowercase());
        vec![
            self.read_op(
                suffix,
                format!("read {what} of the specified {kind}"),
                schema,
                gvk,
            ),
            self.replace_op(
                suffix,
                format!("replace {what} of the specified {kind}"),
                schema,
                gvk,
            ),
            self.patch_op(
                suffix,
                format!("partially update {what} of the specified {kind}"),
                schema,
                gvk,
            ),
        ]
    }

    /// Connect operations (exec, attach, portforward, proxy) for the given HTTP methods.
    fn connect_ops(
        &self,
        suffix: &str,
        methods: &[&'static str],
        params: &'static [Param],
    ) -> Vec<Op> {
        let options = format!("{}{}Options", self.kind.kind, connect_kind(suffix));
        let gvk = gvk(self.kind.group, self.kind.version, &options);
        let text = json!({"type": "string"});
        methods
            .iter()
            .map(|&method| Op {
                method,
                id: format!("connect{}{}{}{}{suffix}", self.gv, capitalize(method), self.scope, self.kind.kind),
                action: "connect",
                description: format!("connect {} requests to {} of {}", method.to_uppercase(), strip_with_path(suffix), self.kind.kind),
                gvk: gvk.clone(),
                params,
                body: None,
                responses: json!({"200": {"description": "OK", "content": {"*/*": {"schema": text}}}, "401": {"description": "Unauthorized"}}),
            })
            .collect()
    }
}

/// The options kind of a connect subresource: `Exec`, `Attach`, `PortForward`, `Proxy`.
fn connect_kind(suffix: &str) -> &'static str {
    match strip_with_path(suffix) {
        "exec" => "Exec",
        "attach" => "Attach",
        "portforward" => "PortForward",
        _ => "Proxy",
    }
}

fn strip_with_path(suffix: &str) -> &'static str {
    match suffix {
        "Exec" => "exec",
        "Attach" => "attach",
        "Portforward" => "portforward",
        _ => "proxy",
    }
}

const PROXY_METHODS: &[&str] = &["delete", "get", "head", "options", "patch", "post", "put"];

/// Adds every path of `kind` to `paths` and its schemas to `components`.
pub(crate) fn add_kind(paths: &mut Map<String, Value>, kind: &Kind, components: &mut Components) {
    let name = components.kind(kind);
    let prefix = api_prefix(kind.group, kind.version);
    let collection = if kind.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", kind.plural)
    } else {
        format!("{prefix}/{}", kind.plural)
    };
    let target = Target {
        kind,
        gv: format!("{}{}", group_ident(kind.group), capitalize(kind.version)),
        tag: tag(kind.group, kind.version),
        scope: if kind.namespaced { "Namespaced" } else { "" },
        schema: reference(&name),
        gvk: gvk(kind.group, kind.version, kind.kind),
        status: reference(&components.resource::<Status>()),
        delete_options: reference(&components.of::<DeleteOptions>()),
        patch: reference(&components.of::<Patch>()),
        strategic: schemas::is_builtin(kind),
        item: format!("{collection}/{{name}}"),
        collection,
    };
    let list = reference(&components.list(kind, &name));
    add_collections(paths, &target, &list, &prefix);
    let item_ops = target.item_ops();
    if !item_ops.is_empty() {
        let params = with_pretty(target.path_params(true));
        paths.insert(
            target.item.clone(),
            target.write(PathItem {
                params,
                ops: item_ops,
            }),
        );
    }
    for &sub in kind.subresources {
        add_subresource(paths, &target, sub, components);
    }
}

fn with_pretty(mut params: Vec<Value>) -> Vec<Value> {
    params.push(param_json(&PRETTY));
    params
}

fn add_collections(paths: &mut Map<String, Value>, target: &Target, list: &Value, prefix: &str) {
    let ops = target.collection_ops(list);
    if !ops.is_empty() {
        let params = with_pretty(target.path_params(false));
        paths.insert(
            target.collection.clone(),
            target.write(PathItem { params, ops }),
        );
    }
    if target.kind.namespaced && target.has("list") {
        let op = Op {
            method: "get",
            id: format!("list{}{}ForAllNamespaces", target.gv, target.kind.kind),
            action: "list",
            description: format!("list or watch objects of kind {}", target.kind.kind),
            gvk: target.gvk.clone(),
            params: LIST,
            body: None,
            responses: responses(&[200], list),
        };
        let path = format!("{prefix}/{}", target.kind.plural);
        paths.insert(
            path,
            target.write(PathItem {
                params: vec![param_json(&PRETTY)],
                ops: vec![op],
            }),
        );
    }
}

fn add_subresource(
    paths: &mut Map<String, Value>,
    target: &Target,
    sub: Subresource,
    components: &mut Components,
) {
    let ops = match sub {
        Subresource::Status => target.read_write_ops("Status", &target.schema, &target.gvk),
        Subresource::Scale => {
            let scale = components
                .known("autoscaling", "v1", "Scale")
                .map(|name| reference(&name));
            let scale = scale.unwrap_or_else(|| target.schema.clone());
            target.read_write_ops("Scale", &scale, &gvk("autoscaling", "v1", "Scale"))
        }
        Subresource::Binding => object_op(target, components, "Binding", ("", "v1", "Binding")),
        Subresource::Eviction => {
            object_op(target, components, "Eviction", ("policy", "v1", "Eviction"))
        }
        Subresource::Finalize => vec![target.replace_op(
            "Finalize",
            format!("replace finalize of the specified {}", target.kind.kind),
            &target.schema,
            &target.gvk,
        )],
        Subresource::Log => vec![log_op(target)],
        Subresource::Exec => target.connect_ops("Exec", &["get", "post"], EXEC),
        Subresource::Attach => target.connect_ops("Attach", &["get", "post"], ATTACH),
        Subresource::PortForward => {
            target.connect_ops("Portforward", &["get", "post"], PORT_FORWARD)
        }
        Subresource::Proxy => {
            let with_path = target.connect_ops("Proxy", PROXY_METHODS, &[]);
            let with_path = with_path
                .into_iter()
                .map(|op| Op {
                    id: format!("{}WithPath", op.id),
                    ..op
                })
                .collect();
            let mut params = target.path_params(true);
            params.push(param_json(&PATH_SUFFIX));
            let path = format!("{}/proxy/{{path}}", target.item);
            paths.insert(
                path,
                target.write(PathItem {
                    params,
                    ops: with_path,
                }),
            );
            target.connect_ops("Proxy", PROXY_METHODS, PROXY)
        }
    };
    let params = target.path_params(true);
    let params = match sub {
        Subresource::Status
        | Subresource::Scale
        | Subresource::Binding
        | Subresource::Eviction
        | Subresource::Finalize => with_pretty(params),
        _ => params,
    };
    paths.insert(
        format!("{}/{}", target.item, sub.name()),
        target.write(PathItem { params, ops }),
    );
}

/// `get` of a pod's log as plain text.
fn log_op(target: &Target) -> Op {
    Op {
        method: "get",
        id: target.id("read", "Log"),
        action: "get",
        description: format!("read log of the specified {}", target.kind.kind),
        gvk: target.gvk.clone(),
        params: LOG,
        body: None,
        responses: json!({
            "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "401": {"description": "Unauthorized"},
        }),
    }
}

/// A `post` of an object of another kind to a subresource (binding, eviction).
fn object_op(
    target: &Target,
    components: &mut Components,
    suffix: &str,
    kind: (&str, &str, &str),
) -> Vec<Op> {
    let (group, version, kind) = kind;
    let schema = components
        .known(group, version, kind)
        .map(|name| reference(&name));
    let schema = schema.unwrap_or_else(|| json!({"type": "object"}));
    vec![target.create_op(suffix, &schema, &gvk(group, version, kind))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_upstream() {
        let check = |group: &str, version: &str, ident: &str, want_tag: &str| {
            assert_eq!(group_ident(group), ident, "{group}");
            assert_eq!(tag(group, version), want_tag, "{group}");
        };
        check("", "v1", "Core", "core_v1");
        check("apps", "v1", "Apps", "apps_v1");
        check(
            "rbac.authorization.k8s.io",
            "v1",
            "RbacAuthorization",
            "rbacAuthorization_v1",
        );
        check(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowcontrolApiserver",
            "flowcontrolApiserver_v1",
        );
        check(
            "networking.k8s.io",
            "v1beta1",
            "Networking",
            "networking_v1beta1",
        );
        check("policy", "v1", "Policy", "policy_v1");
    }
}
