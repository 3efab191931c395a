//! The generator of `src/schema.txt`: the protobuf schema of every message reachable from the
//! served kinds, from two dependencies: k8s-pb's prost-generated source (field numbers, wire
//! types, message types) and keelson-openapi's documents (JSON names, `required` lists).
//!
//! It is run by the tests in `tests/schema.rs`: one checks the committed file is up to date,
//! an ignored one rewrites it (`cargo test -p keelson-protobuf --test schema -- --ignored`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use keelson_openapi::OpenApiV3;
use serde_json::{Map, Value};

/// Kinds decoded besides the served ones: request bodies of subresources and deletes.
const EXTRA_KINDS: &[(&str, &str)] = &[
    ("autoscaling/v1", "Scale"),
    ("policy/v1", "Eviction"),
    ("v1", "Binding"),
    ("meta.k8s.io/v1", "DeleteOptions"),
];

const DELETE_OPTIONS: &str = "DeleteOptions";
const DELETE_OPTIONS_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";

/// Fields that Go declares as pointers, so that an explicit zero (`replicas: 0`,
/// `runAsUser: 0`, `allowPrivilegeEscalation: false`, `storageClassName: ""`) differs from
/// unset: their zero values are kept although the schema does not require them. Keeping the
/// zero value of a same-named non-pointer field is harmless (it is what unset means there).
const KEEP_ZERO: &[&str] = &[
    "activeDeadlineSeconds",
    "allocateLoadBalancerNodePorts",
    "allowPrivilegeEscalation",
    "allowVolumeExpansion",
    "automountServiceAccountToken",
    "averageUtilization",
    "backoffLimit",
    "backoffLimitPerIndex",
    "completions",
    "defaultMode",
    "enableServiceLinks",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "fsGroup",
    "gracePeriodSeconds",
    "hostUsers",
    "immutable",
    "leaseDurationSeconds",
    "leaseTransitions",
    "manualSelector",
    "maxFailedIndexes",
    "minReplicas",
    "mode",
    "optional",
    "orphanDependents",
    "parallelism",
    "partition",
    "priority",
    "privileged",
    "progressDeadlineSeconds",
    "readOnlyRootFilesystem",
    "ready",
    "replicas",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "serving",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "stabilizationWindowSeconds",
    "startingDeadlineSeconds",
    "storageClassName",
    "successfulJobsHistoryLimit",
    "suspend",
    "targetCPUUtilizationPercentage",
    "terminating",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
    "ttlSecondsAfterFinished",
];

/// apimachinery messages whose JSON form is not an object of their fields.
const SPECIALS: &[(&str, &str)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "time"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
        "microtime",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Duration", "duration"),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "quantity"),
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "intorstring",
    ),
    (
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
        "rawextension",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "fieldsv1"),
];

/// One `#[prost(...)]` field of a k8s-pb struct.
#[derive(Debug, Clone)]
struct PbField {
    name: String,
    tag: u32,
    /// `1` single, `*` repeated, `%` map from string.
    label: char,
    /// A scalar type name, or the resolved struct (`module::path::Name`) of a message.
    ty: PbType,
}

#[derive(Debug, Clone)]
enum PbType {
    Scalar(&'static str),
    Message(String),
}

/// Every k8s-pb struct by full Rust path (`api::core::v1::Pod`).
type PbStructs = BTreeMap<String, Vec<PbField>>;

/// The generated schema text.
pub fn generate() -> Result<String, String> {
    let structs = parse_k8s_pb(&k8s_pb_src()?)?;
    let schemas = openapi_schemas();
    Generator::new(structs, schemas).run()
}

/// The `src` directory of the k8s-pb package this crate depends on, from `cargo metadata`.
fn k8s_pb_src() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    // Only this platform's packages: the sources of other platforms' dependencies may never
    // have been downloaded, and `--offline` cannot fetch them.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let host = Command::new(rustc)
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        })
        .ok_or("cannot ask rustc for the host platform")?;
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages")?;
    let pkg = packages
        .iter()
        .find(|p| p["name"] == "k8s-pb")
        .ok_or("k8s-pb is not a dependency")?;
    let manifest = pkg["manifest_path"]
        .as_str()
        .ok_or("k8s-pb has no manifest path")?;
    Ok(Path::new(manifest).with_file_name("src"))
}

/// Parses every `mod.rs` under k8s-pb's `src`.
fn parse_k8s_pb(src: &Path) -> Result<PbStructs, String> {
    let mut structs = PbStructs::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "mod.rs") {
                let rel = dir.strip_prefix(src).map_err(|e| e.to_string())?;
                let module: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                parse_module(&module, &text, &mut structs)?;
            }
        }
    }
    Ok(structs)
}

/// Parses the prost structs of one module file.
fn parse_module(module: &[String], text: &str, out: &mut PbStructs) -> Result<(), String> {
    let mut current: Option<(String, Vec<PbField>)> = None;
    let mut attr: Option<String> = None;
    let mut decl: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t
            .strip_prefix("pub struct ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            current = Some((name.to_string(), Vec::new()));
            continue;
        }
        if t == "}" {
            if let Some((name, fields)) = current.take() {
                out.insert(format!("{}::{name}", module.join("::")), fields);
            }
            continue;
        }
        let Some((_, fields)) = current.as_mut() else {
            continue;
        };
        if let Some(a) = t
            .strip_prefix("#[prost(")
            .and_then(|r| r.strip_suffix(")]"))
        {
            attr = Some(a.to_string());
            continue;
        }
        if attr.is_some() && decl.is_none() && t.starts_with("pub ") {
            decl = Some(String::new());
        }
        if let Some(d) = decl.as_mut() {
            d.push_str(t);
            let balanced = d.matches('<').count() == d.matches('>').count();
            if balanced && d.ends_with(',') {
                let a = attr.take().unwrap_or_default();
                let text = decl.take().unwrap_or_default();
                fields.push(parse_field(module, &a, &text)?);
            }
        }
    }
    Ok(())
}

/// One field from its prost attribute and its declaration `pub name: Type,`.
fn parse_field(module: &[String], attr: &str, decl: &str) -> Result<PbField, String> {
    let (name, ty) = decl
        .strip_prefix("pub ")
        .and_then(|d| d.split_once(':'))
        .ok_or_else(|| format!("bad field declaration {decl}"))?;
    let name = name.trim().trim_start_matches("r#").to_string();
    let tag = attr
        .split("tag = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no tag in {attr}"))?;
    let parts: Vec<&str> = attr.split(',').map(str::trim).collect();
    let repeated = parts.contains(&"repeated");
    let (label, kind) = if let Some(map) = attr.strip_prefix("btree_map = \"") {
        let value = map
            .split('"')
            .next()
            .unwrap_or_default()
            .split(", ")
            .nth(1)
            .unwrap_or_default();
        ('%', value.to_string())
    } else {
        let kind = parts[0].split(' ').next().unwrap_or_default();
        (if repeated { '*' } else { '1' }, kind.to_string())
    };
    let ty = match kind.as_str() {
        "message" => PbType::Message(resolve_type(module, ty)?),
        "string" => PbType::Scalar("string"),
        "bytes" => PbType::Scalar("bytes"),
        "bool" => PbType::Scalar("bool"),
        "int32" => PbType::Scalar("int32"),
        "int64" => PbType::Scalar("int64"),
        "double" => PbType::Scalar("double"),
        other => return Err(format!("field {name}: unsupported prost type {other}")),
    };
    Ok(PbField {
        name,
        tag,
        label,
        ty,
    })
}

/// The full path of the message type named in a field's Rust type, relative to `module`.
fn resolve_type(module: &[String], ty: &str) -> Result<String, String> {
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    let ty = ty.replace(",>", ">");
    let ty = ty.trim_end_matches(',');
    // The innermost type argument, after any key type of a map.
    let inner = ty
        .rsplit('<')
        .next()
        .unwrap_or(ty)
        .trim_end_matches('>')
        .rsplit(',')
        .next()
        .unwrap_or_default();
    let mut path: Vec<String> = module.to_vec();
    for seg in inner.split("::") {
        match seg {
            "super" => {
                path.pop().ok_or_else(|| format!("bad type path {ty}"))?;
            }
            "crate" => path.clear(),
            s => path.push(s.to_string()),
        }
    }
    Ok(path.join("::"))
}

/// `components.schemas` of every document keelson-openapi serves for the served kinds.
fn openapi_schemas() -> Map<String, Value> {
    let openapi = OpenApiV3::new(keelson_kinds::ALL);
    let mut all = Map::new();
    let paths: Vec<String> = openapi.paths().map(str::to_string).collect();
    for path in paths {
        let Some((bytes, _)) = openapi.document(&path) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if let Some(schemas) = doc["components"]["schemas"].as_object() {
            for (k, v) in schemas {
                all.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    all
}

/// The openapi package of a k8s-pb module path: `api::core::v1` → `io.k8s.api.core.v1`.
fn package_of(module: &str) -> String {
    let dotted = module.replace("::", ".");
    let dotted = dotted
        .replacen("apiextensions_apiserver", "apiextensions-apiserver", 1)
        .replacen("kube_aggregator", "kube-aggregator", 1);
    format!("io.k8s.{dotted}")
}

/// The lowercase name without underscores both sides of a field match are compared by.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

struct Generator {
    structs: PbStructs,
    schemas: Map<String, Value>,
    /// openapi name by (package, lowercase simple name).
    openapi_by_key: HashMap<(String, String), String>,
    /// Message order of the table: k8s-pb struct path → index.
    index: BTreeMap<String, usize>,
    order: Vec<String>,
    /// Embedded structs without a schema of their own: the schema naming their fields.
    inlined_in: HashMap<String, String>,
}

impl Generator {
    fn new(structs: PbStructs, schemas: Map<String, Value>) -> Self {
        let openapi_by_key = schemas
            .keys()
            .filter_map(|k| {
                let (pkg, name) = k.rsplit_once('.')?;
                Some(((pkg.to_string(), name.to_lowercase()), k.clone()))
            })
            .collect();
        Generator {
            structs,
            schemas,
            openapi_by_key,
            index: BTreeMap::new(),
            order: Vec::new(),
            inlined_in: HashMap::new(),
        }
    }

    /// The openapi schema name of a k8s-pb struct.
    fn openapi_name(&self, path: &str) -> Option<&String> {
        let (module, name) = path.rsplit_once("::")?;
        self.openapi_by_key
            .get(&(package_of(module), name.to_lowercase()))
    }

    /// The k8s-pb struct of an openapi schema name.
    fn struct_of(&self, openapi: &str) -> Option<String> {
        self.structs
            .keys()
            .find(|p| self.openapi_name(p).is_some_and(|n| n == openapi))
            .cloned()
    }

    /// Whether the fields of struct `path` are properties of the embedding schema (Go embeds
    /// it: its fields appear inline in the JSON object).
    fn embeds(&self, path: &str, properties: &Map<String, Value>) -> bool {
        let names: BTreeSet<String> = properties.keys().map(|k| normalize(k)).collect();
        self.structs.get(path).is_some_and(|fields| {
            let known = fields
                .iter()
                .filter(|f| names.contains(&normalize(&f.name)))
                .count();
            known > 0 && known * 2 >= fields.len()
        })
    }

    fn add(&mut self, path: &str, queue: &mut VecDeque<String>) -> usize {
        if let Some(i) = self.index.get(path) {
            return *i;
        }
        let i = self.order.len();
        self.index.insert(path.to_string(), i);
        self.order.push(path.to_string());
        queue.push_back(path.to_string());
        i
    }

    fn run(mut self) -> Result<String, String> {
        let mut kinds: BTreeSet<(String, String, String)> = BTreeSet::new();
        let mut wanted: Vec<(String, String)> = keelson_kinds::ALL
            .iter()
            .map(|k| (k.api_version(), k.kind.to_string()))
            .collect();
        wanted.extend(
            EXTRA_KINDS
                .iter()
                .map(|(a, k)| (a.to_string(), k.to_string())),
        );
        // DeleteOptions is the body of a delete in every group-version, as upstream marks it.
        let served: BTreeSet<String> = keelson_kinds::ALL.iter().map(|k| k.api_version()).collect();
        wanted.extend(
            served
                .into_iter()
                .map(|av| (av, DELETE_OPTIONS.to_string())),
        );
        for (api_version, kind) in &wanted {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let name = self
                .schemas
                .iter()
                .find(|(_, s)| has_gvk(s, group, version, kind))
                .map(|(n, _)| n.clone())
                .or_else(|| (kind == DELETE_OPTIONS).then(|| DELETE_OPTIONS_SCHEMA.to_string()))
                .ok_or_else(|| format!("no openapi schema for {api_version} {kind}"))?;
            if self.struct_of(&name).is_none() {
                return Err(format!("k8s-pb has no message for {name}"));
            }
            // Every group-version the schema is marked with (DeleteOptions: all of them).
            for gvk in self.schemas[&name]["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let g = gvk["group"].as_str().unwrap_or_default();
                let v = gvk["version"].as_str().unwrap_or_default();
                let k = gvk["kind"].as_str().unwrap_or_default();
                if k == kind {
                    let av = if g.is_empty() {
                        v.to_string()
                    } else {
                        format!("{g}/{v}")
                    };
                    kinds.insert((av, k.to_string(), name.clone()));
                }
            }
            kinds.insert((api_version.clone(), kind.clone(), name));
        }
        let mut queue = VecDeque::new();
        let mut lines = Vec::new();
        for (api_version, kind, name) in &kinds {
            let path = self.struct_of(name).unwrap_or_default();
            let i = self.add(&path, &mut queue);
            lines.push(format!("K {api_version} {kind} {i}"));
        }
        let mut messages = BTreeMap::new();
        while let Some(path) = queue.pop_front() {
            let text = self.message(&path, &mut queue)?;
            messages.insert(self.index[&path], text);
        }
        let mut out = String::from(
            "# keelson-protobuf schema, generated from k8s-pb and keelson-openapi by gen/generator.rs: do not edit.\n\
             # K apiVersion kind message | M name [special] | F tag jsonName label(1 * %) type flags(r required, z keep zero)\n",
        );
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        for text in messages.values() {
            out.push_str(text);
        }
        Ok(out)
    }

    /// The `M` line and `F` lines of one message.
    fn message(&mut self, path: &str, queue: &mut VecDeque<String>) -> Result<String, String> {
        // A struct Go embeds (`VolumeSource` in `Volume`) may have no schema of its own: its
        // fields are named in the schema of the struct embedding it.
        let name = match self.openapi_name(path) {
            Some(n) => n.clone(),
            None => self
                .inlined_in
                .get(path)
                .cloned()
                .ok_or_else(|| format!("no openapi schema for {path}"))?,
        };
        let schema = self.schemas[&name].clone();
        let mut out = String::new();
        let special = SPECIALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
        let fields = self.structs.get(path).cloned().unwrap_or_default();
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let special = special.or_else(|| {
            let wrapper = properties.is_empty()
                && schema["type"] == "array"
                && fields.len() == 1
                && fields[0].label == '*';
            wrapper.then_some("wrapper")
        });
        let short = name.trim_start_matches("io.k8s.");
        match special {
            Some(s) => writeln!(out, "M {short} {s}"),
            None => writeln!(out, "M {short}"),
        }
        .map_err(|e| e.to_string())?;
        if special.is_some() && special != Some("wrapper") {
            return Ok(out);
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for field in &fields {
            let json = if special == Some("wrapper") {
                field.name.clone()
            } else {
                let matches: Vec<&String> = properties
                    .keys()
                    .filter(|k| normalize(k) == normalize(&field.name))
                    .collect();
                match matches.as_slice() {
                    [one] => (*one).clone(),
                    [] => match &field.ty {
                        PbType::Message(m) if field.label == '1' && self.embeds(m, &properties) => {
                            self.inlined_in
                                .entry(m.clone())
                                .or_insert_with(|| name.clone());
                            "-".to_string()
                        }
                        _ => {
                            eprintln!("{name}.{}: no JSON name, skipped", field.name);
                            continue;
                        }
                    },
                    _ => return Err(format!("{name}.{}: several JSON names match", field.name)),
                }
            };
            let ty = match &field.ty {
                PbType::Scalar(s) => s.to_string(),
                PbType::Message(m) => {
                    if !self.structs.contains_key(m) {
                        return Err(format!("{name}.{json}: unknown message {m}"));
                    }
                    format!("@{}", self.add(m, queue))
                }
            };
            let mut flags = String::new();
            if required.contains(&json.as_str()) {
                flags.push('r');
            }
            // Status fields are written by controllers; none in the list is a pointer there.
            if KEEP_ZERO.contains(&json.as_str()) && !name.ends_with("Status") {
                flags.push('z');
            }
            if json == "-" {
                flags.push('i');
            }
            if flags.is_empty() {
                flags.push('-');
            }
            writeln!(out, "F {} {json} {} {ty} {flags}", field.tag, field.label)
                .map_err(|e| e.to_string())?;
        }
        Ok(out)
    }
}

fn has_gvk(schema: &Value, group: &str, version: &str, kind: &str) -> bool {
    schema["x-kubernetes-group-version-kind"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|g| g["group"] == group && g["version"] == version && g["kind"] == kind)
}
