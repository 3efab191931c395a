//! OpenAPI documents of the served kinds, generated from the k8s-openapi types, as
//! `/openapi/v3` (an index plus one document per group-version) serves them to kubectl.
//!
//! Construction only computes the index and a hash per document; each document is generated
//! on its first request and its serialized bytes are kept.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResourceList, APIVersions,
};
use keelson_kinds::Kind;
use serde_json::{Map, Value, json};

mod merge_keys;
mod paths;
mod schemas;
#[cfg(test)]
mod tests;
mod v2;

pub use merge_keys::list_map_keys;
use paths::{api_prefix, capitalize, discovery_path, group_tag, tag};
use schemas::{Components, reference};
pub use v2::{OpenApiV2, PROTOBUF_MEDIA_TYPE, Served};

/// The Kubernetes version the documents describe.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// What one document of the index describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// `api`: `/api/`, the core API versions.
    CoreVersions,
    /// `apis`: `/apis/`, the list of groups.
    Groups,
    /// `apis/<group>`: `/apis/<group>/`.
    Group(&'static str),
    /// `api/v1`, `apis/<group>/<version>`: the kinds of one group-version.
    GroupVersion(&'static str, &'static str),
}

/// One document: its hash is known at once, its bytes on first request.
struct Document {
    source: Source,
    hash: String,
    bytes: OnceLock<Bytes>,
}

/// The `/openapi/v3` documents of a table of kinds.
pub struct OpenApiV3 {
    kinds: &'static [Kind],
    /// By index path (`api/v1`, `apis/apps/v1`, `api`, `apis`, `apis/apps`), sorted.
    documents: BTreeMap<String, Document>,
    index: Bytes,
    v2: OpenApiV2,
}

impl OpenApiV3 {
    /// Indexes the group-versions of `kinds`; generates no document yet.
    pub fn new(kinds: &'static [Kind]) -> Self {
        let mut documents = BTreeMap::new();
        let mut add = |path: String, source: Source| {
            let hash = source_hash(&path, source, kinds);
            documents.entry(path).or_insert(Document {
                source,
                hash,
                bytes: OnceLock::new(),
            });
        };
        add("api".into(), Source::CoreVersions);
        add("apis".into(), Source::Groups);
        for kind in kinds {
            let path = api_prefix(kind.group, kind.version)
                .trim_start_matches('/')
                .to_string();
            add(path, Source::GroupVersion(kind.group, kind.version));
            if !kind.group.is_empty() {
                add(format!("apis/{}", kind.group), Source::Group(kind.group));
            }
        }
        let index = index_json(&documents);
        OpenApiV3 {
            kinds,
            documents,
            index,
            v2: OpenApiV2::new(kinds),
        }
    }

    /// The `/openapi/v3` index: every document's path and hashed URL.
    pub fn index(&self) -> Bytes {
        self.index.clone()
    }

    /// The document at `gv_path` (`api/v1`, `apis/apps/v1`, and the discovery documents `api`,
    /// `apis`, `apis/<group>`) and its hash; generated on the first call.
    pub fn document(&self, gv_path: &str) -> Option<(Bytes, String)> {
        let document = self.documents.get(gv_path.trim_matches('/'))?;
        let bytes = document
            .bytes
            .get_or_init(|| Bytes::from(self.generate(document.source).to_string()));
        Some((bytes.clone(), document.hash.clone()))
    }

    /// The hash of the document at `gv_path`, without generating it (for `ETag`s and for
    /// checking a request's `hash` parameter).
    pub fn hash(&self, gv_path: &str) -> Option<&str> {
        self.documents
            .get(gv_path.trim_matches('/'))
            .map(|d| d.hash.as_str())
    }

    /// The `/openapi/v2` document of the same kinds (built on its first request).
    pub fn v2(&self) -> &OpenApiV2 {
        &self.v2
    }

    /// The index paths of every document, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.documents.keys().map(String::as_str)
    }

    fn generate(&self, source: Source) -> Value {
        match source {
            Source::CoreVersions => {
                discovery_document::<APIVersions>("/api/", "getCoreAPIVersions", "core", VERSIONS)
            }
            Source::Groups => {
                discovery_document::<APIGroupList>("/apis/", "getAPIVersions", "apis", VERSIONS)
            }
            Source::Group(group) => {
                let ident = paths::group_ident(group);
                let id = format!("get{ident}APIGroup");
                let path = format!("/apis/{group}/");
                discovery_document::<APIGroup>(
                    &path,
                    &id,
                    &group_tag(group),
                    "get information of a group",
                )
            }
            Source::GroupVersion(group, version) => {
                let kinds = self
                    .kinds
                    .iter()
                    .filter(|k| k.group == group && k.version == version);
                group_version_document(group, version, kinds)
            }
        }
    }
}

const VERSIONS: &str = "get available API versions";

/// The index JSON: `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=…"}}}`.
fn index_json(documents: &BTreeMap<String, Document>) -> Bytes {
    let mut paths = Map::new();
    for (path, document) in documents {
        let url = format!("/openapi/v3/{path}?hash={}", document.hash);
        paths.insert(path.clone(), json!({ "serverRelativeURL": url }));
    }
    Bytes::from(json!({ "paths": paths }).to_string())
}

/// An OpenAPI 3.0 document around `paths` and `schemas`.
fn openapi(mut paths: Map<String, Value>, schemas: Map<String, Value>) -> Value {
    paths.sort_keys();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// A discovery document: one `get` path returning `T`.
fn discovery_document<T>(path: &str, id: &str, tag: &str, description: &str) -> Value
where
    T: k8s_openapi::Resource + k8s_openapi::schemars::JsonSchema,
{
    let mut components = Components::new();
    let schema = reference(&components.resource::<T>());
    let mut paths = Map::new();
    paths.insert(
        path.to_string(),
        discovery_path(id, tag, description, &schema),
    );
    openapi(paths, components.finish())
}

/// The document of one group-version: `/<prefix>/` (its resource list) and every kind's paths.
fn group_version_document<'a>(
    group: &str,
    version: &str,
    kinds: impl Iterator<Item = &'a Kind>,
) -> Value {
    let mut components = Components::new();
    let mut paths = Map::new();
    let resources = reference(&components.resource::<APIResourceList>());
    let id = format!(
        "get{}{}APIResources",
        paths::group_ident(group),
        capitalize(version)
    );
    let root = discovery_path(
        &id,
        &tag(group, version),
        "get available resources",
        &resources,
    );
    paths.insert(format!("{}/", api_prefix(group, version)), root);
    for kind in kinds {
        paths::add_kind(&mut paths, kind, &mut components);
    }
    openapi(paths, components.finish())
}

/// The hash of everything a document's content depends on: this crate's version, the
/// Kubernetes version, the path, and the rows of the kinds it describes.
fn source_hash(path: &str, source: Source, kinds: &[Kind]) -> String {
    let mut hasher = Fnv128::new();
    for part in [env!("CARGO_PKG_VERSION"), KUBERNETES_VERSION, path] {
        hasher.write(part);
    }
    let relevant = |kind: &&Kind| match source {
        Source::GroupVersion(group, version) => kind.group == group && kind.version == version,
        _ => false,
    };
    for kind in kinds.iter().filter(relevant) {
        for part in [
            kind.kind,
            kind.plural,
            if kind.namespaced {
                "namespaced"
            } else {
                "cluster"
            },
        ] {
            hasher.write(part);
        }
        kind.verbs.iter().for_each(|verb| hasher.write(verb));
        kind.subresources
            .iter()
            .for_each(|sub| hasher.write(sub.name()));
    }
    hasher.hex()
}

/// Two FNV-1a 64-bit hashes with different offsets, printed as 32 upper-case hex digits;
/// stable across runs and platforms.
struct Fnv128 {
    state: [u64; 2],
}

impl Fnv128 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv128 {
            state: [0xcbf2_9ce4_8422_2325, 0x6c62_272e_07bb_0142],
        }
    }

    /// Adds `part` and a separator, so that `("ab", "c")` and `("a", "bc")` differ.
    fn write(&mut self, part: &str) {
        for byte in part.bytes().chain([0xff]) {
            for state in &mut self.state {
                *state = (*state ^ u64::from(byte)).wrapping_mul(Self::PRIME);
            }
        }
    }

    /// Adds raw bytes, without a separator.
    fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            for state in &mut self.state {
                *state = (*state ^ u64::from(*byte)).wrapping_mul(Self::PRIME);
            }
        }
    }

    fn hex(&self) -> String {
        format!("{:016X}{:016X}", self.state[0], self.state[1])
    }
}
