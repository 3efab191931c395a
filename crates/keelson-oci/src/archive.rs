//! Writing OCI image-layout archives: one gzip layer built from a list of entries, its image
//! config and manifest, and an index.json naming the image so `ctr images import` and
//! `skopeo copy oci-archive:` both take it. Deterministic: fixed times, owners and order.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The modification time of every file in the images keelson writes (2000-01-01T00:00:00Z).
pub const FIXED_MTIME: u64 = 946_684_800;
const FIXED_CREATED: &str = "2000-01-01T00:00:00Z";

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation containerd reads the full image name from.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for the reference (the tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image entry path {0:?} must be absolute and must not contain `..`")]
    BadPath(String),
    #[error("building an image layer: {0}")]
    Layer(#[source] std::io::Error),
    #[error("writing image archive {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One thing in the image's filesystem. Paths are absolute (`/bin/sh`).
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    File {
        path: String,
        mode: u32,
        contents: Vec<u8>,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Dir { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// An image to write: its name, one layer's entries and the config a container starts from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSpec {
    /// The full reference, e.g. `docker.io/library/nginx:latest`.
    pub name: String,
    pub files: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` strings.
    pub env: Vec<String>,
    pub working_dir: String,
    /// `8080/tcp` style.
    pub exposed_ports: Vec<String>,
}

/// The OCI architecture name of the target this crate was built for (`amd64`, `arm64`, ...).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The tag of a reference: what follows the last `:` of its last path segment, else `latest`.
pub fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => "latest",
    }
}

/// The reference with `:latest` added when it has no tag.
pub fn with_tag(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Checks an entry path and returns it relative (`bin/sh`), as tar stores it.
fn relative(path: &str) -> Result<String> {
    let rel = path.trim_start_matches('/').trim_end_matches('/');
    let ok = path.starts_with('/')
        && !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(rel.to_string())
    } else {
        Err(Error::BadPath(path.to_string()))
    }
}

/// The uncompressed layer: the entries in the order given, each missing parent directory
/// added (mode 0755) before its first child; owner root, fixed mtime.
pub fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let io = Error::Layer;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        let rel = relative(entry.path())?;
        let mut parent = String::new();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            if seen.insert(parent.clone()) {
                append(
                    &mut b,
                    &Entry::Dir {
                        path: parent.clone(),
                        mode: 0o755,
                    },
                    &parent,
                )
                .map_err(io)?;
            }
        }
        if matches!(entry, Entry::Dir { .. }) && !seen.insert(rel.clone()) {
            continue;
        }
        seen.insert(rel.clone());
        append(&mut b, entry, &rel).map_err(io)?;
    }
    b.into_inner().map_err(io)
}

fn append(b: &mut tar::Builder<Vec<u8>>, entry: &Entry, rel: &str) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(FIXED_MTIME);
    match entry {
        Entry::File { mode, contents, .. } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode & 0o7777);
            h.set_size(contents.len() as u64);
            b.append_data(&mut h, rel, contents.as_slice())
        }
        Entry::Dir { mode, .. } => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(*mode & 0o7777);
            h.set_size(0);
            b.append_data(&mut h, format!("{rel}/"), std::io::empty())
        }
        Entry::Symlink { target, .. } => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, rel, target)
        }
    }
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    // flate2 writes a gzip header with mtime 0 and no file name, so the output is stable.
    let mut gz = GzEncoder::new(Vec::with_capacity(data.len() / 2), Compression::default());
    gz.write_all(data)?;
    gz.finish()
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// The image config document.
fn config_json(spec: &ImageSpec, diff_id: &str) -> Value {
    let mut cfg = Map::new();
    if !spec.env.is_empty() {
        cfg.insert("Env".into(), json!(spec.env));
    }
    if !spec.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(spec.cmd));
    }
    if !spec.working_dir.is_empty() {
        cfg.insert("WorkingDir".into(), json!(spec.working_dir));
    }
    if !spec.exposed_ports.is_empty() {
        let ports: Map<String, Value> = spec
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        cfg.insert("ExposedPorts".into(), Value::Object(ports));
    }
    json!({
        "created": FIXED_CREATED,
        "architecture": oci_arch(),
        "os": "linux",
        "config": cfg,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": FIXED_CREATED, "created_by": "keelson-oci" }],
    })
}

/// The blobs and index of an image, computed in memory.
pub struct Layout {
    /// (digest, contents) of the layer, config and manifest.
    pub blobs: Vec<(String, Vec<u8>)>,
    pub index: Vec<u8>,
    pub manifest_digest: String,
}

/// Computes the image layout for a spec (no IO).
pub fn layout(spec: &ImageSpec) -> Result<Layout> {
    let tar = layer_tar(&spec.files)?;
    let diff_id = sha256_digest(&tar);
    let layer = gzip(&tar).map_err(Error::Layer)?;
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&config_json(spec, &diff_id)).expect("json values serialize");
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, &config_digest, config.len()),
        "layers": [descriptor(MEDIA_LAYER_GZIP, &layer_digest, layer.len())],
    }))
    .expect("json values serialize");
    let manifest_digest = sha256_digest(&manifest);
    let mut mdesc = descriptor(MEDIA_MANIFEST, &manifest_digest, manifest.len());
    mdesc["platform"] = json!({ "architecture": oci_arch(), "os": "linux" });
    mdesc["annotations"] = json!({
        ANNOTATION_CONTAINERD_NAME: with_tag(&spec.name),
        ANNOTATION_REF_NAME: tag_of(&spec.name),
    });
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [mdesc],
    }))
    .expect("json values serialize");
    Ok(Layout {
        blobs: vec![
            (layer_digest, layer),
            (config_digest, config),
            (manifest_digest.clone(), manifest),
        ],
        index,
        manifest_digest,
    })
}

/// Writes `spec` as an OCI image-layout tar to `out`; returns the manifest digest.
pub fn write_oci_archive(spec: &ImageSpec, out: &Path) -> Result<String> {
    let l = layout(spec)?;
    let write_err = |source| Error::Write {
        path: out.to_path_buf(),
        source,
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], dir: bool| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(FIXED_MTIME);
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, false).map_err(write_err)?;
    add("index.json", &l.index, false).map_err(write_err)?;
    add("blobs/", &[], true).map_err(write_err)?;
    add("blobs/sha256/", &[], true).map_err(write_err)?;
    for (digest, data) in &l.blobs {
        let hex = digest.trim_start_matches("sha256:");
        add(&format!("blobs/sha256/{hex}"), data, false).map_err(write_err)?;
    }
    let bytes = b.into_inner().map_err(write_err)?;
    std::fs::write(out, bytes).map_err(write_err)?;
    Ok(l.manifest_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tags_of_references() {
        let check = |r: &str, tag: &str, full: &str| {
            assert_eq!((tag_of(r), with_tag(r).as_str()), (tag, full), "{r}");
        };
        check(
            "docker.io/library/nginx:1.10",
            "1.10",
            "docker.io/library/nginx:1.10",
        );
        check(
            "docker.io/library/nginx",
            "latest",
            "docker.io/library/nginx:latest",
        );
        check(
            "localhost:5000/kubetm/p8000",
            "latest",
            "localhost:5000/kubetm/p8000:latest",
        );
        check(
            "localhost/keelson/pause:1",
            "1",
            "localhost/keelson/pause:1",
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["bin/sh", "/", "/a/../b", "/a//b"] {
            let e = layer_tar(&[Entry::Dir {
                path: bad.into(),
                mode: 0o755,
            }]);
            assert!(matches!(e, Err(Error::BadPath(_))), "{bad}: {e:?}");
        }
    }

    #[test]
    fn adds_parent_directories_once() {
        let tar = layer_tar(&[
            Entry::File {
                path: "/usr/bin/a".into(),
                mode: 0o755,
                contents: b"a".to_vec(),
            },
            Entry::Symlink {
                path: "/usr/bin/b".into(),
                target: "a".into(),
            },
            Entry::Dir {
                path: "/usr".into(),
                mode: 0o755,
            },
            Entry::Dir {
                path: "/tmp".into(),
                mode: 0o1777,
            },
        ])
        .unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["usr/", "usr/bin/", "usr/bin/a", "usr/bin/b", "tmp/"]
        );
    }
}
