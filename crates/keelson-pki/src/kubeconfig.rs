//! Kubeconfig files: rendering keelson's own, writing them safely, and merging keelson's
//! cluster, user and context into a user's existing kubeconfig without losing anything else.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::fsutil;

/// Errors of the kubeconfig functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kubeconfig {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write kubeconfig {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot parse kubeconfig {what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("invalid kubeconfig {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("cannot serialize kubeconfig {what}: {reason}")]
    Serialize { what: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The three named lists of a kubeconfig, with the key of each entry's body.
const SECTIONS: [(&str, &str); 3] = [
    ("clusters", "cluster"),
    ("users", "user"),
    ("contexts", "context"),
];

/// A kubeconfig whose cluster, user and context are all called `name` (and current), with the
/// CA, client certificate and client key embedded as base64 data.
pub fn render(
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
    name: &str,
) -> String {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let doc = json!({
        "apiVersion": "v1",
        "clusters": [{
            "cluster": {
                "certificate-authority-data": b64(ca_pem),
                "server": server_url,
            },
            "name": name,
        }],
        "contexts": [{
            "context": {"cluster": name, "user": name},
            "name": name,
        }],
        "current-context": name,
        "kind": "Config",
        "preferences": {},
        "users": [{
            "name": name,
            "user": {
                "client-certificate-data": b64(client_cert_pem),
                "client-key-data": b64(client_key_pem),
            },
        }],
    });
    // JSON is YAML too, and kubectl reads it: the fallback keeps this infallible.
    to_yaml(&doc, name).unwrap_or_else(|_| doc.to_string())
}

/// Writes a kubeconfig atomically (temporary file and rename) with mode 0600, creating the
/// parent directories.
pub fn write(path: &Path, contents: &str) -> Result<()> {
    fsutil::write_atomic(path, contents.as_bytes(), 0o600).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Merges the cluster, user and context of `keelson_kubeconfig` into `user_kubeconfig` under
/// `name`, replacing entries of that name, keeping every other entry and field, and making
/// `name` the current context. A missing or empty file is created.
///
/// The entries taken from `keelson_kubeconfig` are its context called `name` (else its current
/// context) and the cluster and user that context points at.
pub fn merge_into(user_kubeconfig: &Path, keelson_kubeconfig: &str, name: &str) -> Result<()> {
    let path_what = user_kubeconfig.display().to_string();
    let mut doc = match std::fs::read_to_string(user_kubeconfig) {
        Ok(text) => parse(&text, &path_what)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
        Err(source) => {
            return Err(Error::Read {
                path: user_kubeconfig.to_path_buf(),
                source,
            });
        }
    };
    let ours = parse(keelson_kubeconfig, "to merge")?;
    let entries = own_entries(&ours, name)?;
    doc.entry("apiVersion").or_insert_with(|| json!("v1"));
    doc.entry("kind").or_insert_with(|| json!("Config"));
    for ((section, _), body) in SECTIONS.iter().zip(entries) {
        upsert(&mut doc, section, name, body, &path_what)?;
    }
    doc.insert("current-context".to_owned(), json!(name));
    let text = to_yaml(&Value::Object(doc), &path_what)?;
    write(user_kubeconfig, &text)
}

/// The kubeconfig kubectl uses by default: the first entry of `$KUBECONFIG` when set, else
/// `$HOME/.kube/config`.
pub fn default_user_kubeconfig() -> Option<PathBuf> {
    user_kubeconfig_from(std::env::var_os("KUBECONFIG"), std::env::var_os("HOME"))
}

/// [`default_user_kubeconfig`] with the two environment values passed in.
pub fn user_kubeconfig_from(
    kubeconfig: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(list) = kubeconfig
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    let home = home.filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".kube").join("config"))
}

/// Parses a kubeconfig into its top-level mapping; an empty document is an empty mapping.
fn parse(text: &str, what: &str) -> Result<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let value: Value = serde_saphyr::from_str(text).map_err(|e| Error::Parse {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(Error::Invalid {
            what: what.to_owned(),
            reason: "the document is not a mapping".to_owned(),
        }),
    }
}

/// The bodies of the cluster, user and context (in [`SECTIONS`] order) to merge, with the
/// context rewritten to point at entries called `name`.
fn own_entries(ours: &Map<String, Value>, name: &str) -> Result<[Value; 3]> {
    let current = ours.get("current-context").and_then(Value::as_str);
    let context_name = if find_entry(ours, "contexts", name).is_some() {
        name
    } else {
        current.ok_or_else(|| missing(format!("context {name:?}")))?
    };
    let context = find_entry(ours, "contexts", context_name)
        .and_then(|entry| entry.get("context"))
        .and_then(Value::as_object)
        .ok_or_else(|| missing(format!("context {context_name:?}")))?;
    let referenced = |key: &str, section: &str, body: &str| -> Result<Value> {
        let target = context
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| missing(format!("{key} of context {context_name:?}")))?;
        find_entry(ours, section, target)
            .and_then(|entry| entry.get(body))
            .cloned()
            .ok_or_else(|| missing(format!("{key} {target:?}")))
    };
    let cluster = referenced("cluster", "clusters", "cluster")?;
    let user = referenced("user", "users", "user")?;
    let mut context = context.clone();
    context.insert("cluster".to_owned(), json!(name));
    context.insert("user".to_owned(), json!(name));
    Ok([cluster, user, Value::Object(context)])
}

fn missing(what: String) -> Error {
    Error::Invalid {
        what: "to merge".to_owned(),
        reason: format!("no {what}"),
    }
}

fn find_entry<'a>(doc: &'a Map<String, Value>, section: &str, name: &str) -> Option<&'a Value> {
    doc.get(section)?
        .as_array()?
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))
}

/// Replaces the entry called `name` in `section` (keeping its position) or appends it.
fn upsert(
    doc: &mut Map<String, Value>,
    section: &str,
    name: &str,
    body: Value,
    what: &str,
) -> Result<()> {
    let body_key = SECTIONS
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(section, |(_, key)| key);
    let list = doc.entry(section).or_insert(Value::Null);
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let Value::Array(entries) = list else {
        return Err(Error::Invalid {
            what: what.to_owned(),
            reason: format!("{section} is not a list"),
        });
    };
    let mut entry = Map::new();
    entry.insert("name".to_owned(), json!(name));
    entry.insert(body_key.to_owned(), body);
    let entry = Value::Object(entry);
    match entries
        .iter_mut()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(existing) => *existing = entry,
        None => entries.push(entry),
    }
    Ok(())
}

/// Block style (plain scalars) like kubectl writes; long base64 data stays on one line.
fn to_yaml(doc: &Value, what: &str) -> Result<String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(doc, options).map_err(|e| Error::Serialize {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}
