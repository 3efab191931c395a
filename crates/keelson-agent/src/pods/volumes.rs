//! A pod's volumes on the node: what each one is (computed without IO from the pod and the
//! objects it references), setting them up under `<pods>/<uid>/volumes/<plugin>/<name>`
//! (emptyDir, hostPath with its type checks, configMap/secret/downwardAPI/projected files
//! written as upstream's atomic writer does), the CRI mounts of a container, and cleaning up.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, Container, DownwardAPIVolumeFile, KeyToPath, Pod, SecretProjection,
    Volume as PodVolume,
};
use keelson_apimachinery::quantity;
use keelson_cri::cri;

use super::env::{self, EnvError, Objects, PodContext, Refs};
use super::spec::expand;

/// The mode of projected files when the volume names none.
pub const DEFAULT_MODE: i32 = 0o644;

/// Why a volume cannot be set up or mounted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Object(#[from] EnvError),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    SecretKey(String),
    #[error("hostPath type check failed: {path} is not a {what}")]
    HostPathType { path: String, what: String },
    #[error("invalid path {0:?}: must be relative and may not contain '..'")]
    BadPath(String),
    #[error("volume type of {0:?} is not supported by this node")]
    Unsupported(String),
    #[error("subpath {sub:?} not within volume path {volume:?}")]
    SubPathOutside { sub: String, volume: String },
    #[error("volume {0:?} not found in the pod")]
    NoVolume(String),
    /// A claim that cannot be used (yet): the message says why, as the kubelet's.
    #[error("{0}")]
    Claim(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

fn io_err(path: &Path, e: io::Error) -> VolumeError {
    VolumeError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of a projected volume, by relative path.
pub type Payload = BTreeMap<String, File>;

/// What a volume is on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory of the pod, on tmpfs (of `size` bytes, if given) for `medium: Memory`.
    EmptyDir { tmpfs: bool, size: Option<u64> },
    /// A path of the node, checked (or made) as `type_` says.
    HostPath { type_: String },
    /// Files written by the atomic writer (configMap, secret, downwardAPI, projected); on
    /// tmpfs when they hold secrets. `payload` is the error when it cannot be made.
    Files {
        tmpfs: bool,
        payload: Result<Payload, VolumeError>,
    },
    /// A persistentVolumeClaim: `path` is the node path of the volume bound to `claim`
    /// (hostPath checked as `type_`, or local), once [`super::claims::apply`] has found it;
    /// `error` says why the claim cannot be used yet.
    Claim {
        claim: String,
        read_only: bool,
        type_: String,
        error: Option<VolumeError>,
    },
    /// A volume type this node does not handle.
    Unsupported(String),
}

/// One volume of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// The node path containers bind.
    pub path: PathBuf,
    pub kind: Kind,
    /// The pod's `fsGroup`: the group that owns what the pod writes and reads in the volume.
    pub fs_group: Option<u32>,
}

impl Volume {
    /// Files volumes, and claims the pod mounts read-only, are mounted read-only whatever the
    /// volumeMount says.
    fn read_only(&self) -> bool {
        matches!(
            self.kind,
            Kind::Files { .. }
                | Kind::Claim {
                    read_only: true,
                    ..
                }
        )
    }
}

/// The directory of a pod's own files: `<pods>/<uid>`.
pub fn pod_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(uid)
}

/// What the pod's volumes reference.
pub fn volume_refs(pod: &Pod) -> Refs {
    let mut r = Refs::default();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(cm) = &v.config_map {
            r.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &v.secret
            && let Some(n) = &s.secret_name
        {
            r.secrets.insert(n.clone());
        }
        let downward = |items: &Option<Vec<DownwardAPIVolumeFile>>| {
            items
                .iter()
                .flatten()
                .any(|i| i.resource_field_ref.is_some())
        };
        if let Some(d) = &v.downward_api {
            r.resources |= downward(&d.items);
        }
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &s.config_map {
                r.config_maps.insert(cm.name.clone());
            }
            if let Some(sec) = &s.secret {
                r.secrets.insert(sec.name.clone());
            }
            if let Some(d) = &s.downward_api {
                r.resources |= downward(&d.items);
            }
        }
    }
    r
}

/// Checks a payload path as upstream does: relative, no `..` element.
fn check_path(p: &str) -> Result<(), VolumeError> {
    let path = Path::new(p);
    let bad = p.is_empty()
        || p.starts_with("..")
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)));
    if bad {
        return Err(VolumeError::BadPath(p.to_string()));
    }
    Ok(())
}

fn mode_of(m: Option<i32>, default: i32) -> u32 {
    (m.unwrap_or(default) & 0o7777) as u32
}

/// Files from a key → value map, all keys or only `items` (keys missing from the map are an
/// error, from `missing`, unless `optional`).
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    missing: fn(String) -> VolumeError,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                check_path(k)?;
                out.insert(
                    k.clone(),
                    File {
                        data: v.clone(),
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for i in items {
                let Some(v) = data.get(&i.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(i.key.clone()));
                };
                check_path(&i.path)?;
                out.insert(
                    i.path.clone(),
                    File {
                        data: v.clone(),
                        mode: mode_of(i.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(())
}

fn config_map_files(
    objects: &Objects,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: i32,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let Some(cm) = objects.config_map(name)? else {
        if optional {
            return Ok(());
        }
        return Err(EnvError::ConfigMapNotFound(name.to_string()).into());
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    key_files(
        &data,
        items,
        default_mode,
        optional,
        VolumeError::ConfigMapKey,
        out,
    )
}

fn secret_files(
    objects: &Objects,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: i32,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let Some(s) = objects.secret(name)? else {
        if optional {
            return Ok(());
        }
        return Err(EnvError::SecretNotFound(name.to_string()).into());
    };
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    key_files(
        &data,
        items,
        default_mode,
        optional,
        VolumeError::SecretKey,
        out,
    )
}

fn downward_files(
    pod: &Pod,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: i32,
    objects: &Objects,
    ctx: &PodContext,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    for i in items.into_iter().flatten() {
        check_path(&i.path)?;
        let value = if let Some(f) = &i.field_ref {
            env::field_value(pod, f, ctx)?
        } else if let Some(r) = &i.resource_field_ref {
            env::resource_value(pod, None, r, &objects.allocatable)?
        } else {
            continue;
        };
        out.insert(
            i.path.clone(),
            File {
                data: value.into_bytes(),
                mode: mode_of(i.mode, default_mode),
            },
        );
    }
    Ok(())
}

fn projected_config_map(
    objects: &Objects,
    p: &ConfigMapProjection,
    default_mode: i32,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let optional = p.optional == Some(true);
    config_map_files(
        objects,
        &p.name,
        p.items.as_ref(),
        optional,
        default_mode,
        out,
    )
}

fn projected_secret(
    objects: &Objects,
    p: &SecretProjection,
    default_mode: i32,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let optional = p.optional == Some(true);
    secret_files(
        objects,
        &p.name,
        p.items.as_ref(),
        optional,
        default_mode,
        out,
    )
}

/// What one pod volume is, its directory under `dir` (`<pods>/<uid>/volumes`).
fn volume(pod: &Pod, v: &PodVolume, dir: &Path, objects: &Objects, ctx: &PodContext) -> Volume {
    let under = |plugin: &str| dir.join(plugin).join(&v.name);
    let (path, mut kind) = if let Some(e) = &v.empty_dir {
        let tmpfs = e.medium.as_deref() == Some("Memory");
        let size = e
            .size_limit
            .as_ref()
            .and_then(|q| quantity::parse(&q.0))
            .map(|m| (m / 1000).max(0) as u64)
            .filter(|s| *s > 0);
        (
            under("kubernetes.io~empty-dir"),
            Kind::EmptyDir { tmpfs, size },
        )
    } else if let Some(h) = &v.host_path {
        (
            PathBuf::from(&h.path),
            Kind::HostPath {
                type_: h.type_.clone().unwrap_or_default(),
            },
        )
    } else if let Some(c) = &v.config_map {
        let mut out = Payload::new();
        let payload = config_map_files(
            objects,
            &c.name,
            c.items.as_ref(),
            c.optional == Some(true),
            c.default_mode.unwrap_or(DEFAULT_MODE),
            &mut out,
        )
        .map(|_| out);
        (
            under("kubernetes.io~configmap"),
            Kind::Files {
                tmpfs: false,
                payload,
            },
        )
    } else if let Some(s) = &v.secret {
        let mut out = Payload::new();
        let payload = secret_files(
            objects,
            s.secret_name.as_deref().unwrap_or_default(),
            s.items.as_ref(),
            s.optional == Some(true),
            s.default_mode.unwrap_or(DEFAULT_MODE),
            &mut out,
        )
        .map(|_| out);
        (
            under("kubernetes.io~secret"),
            Kind::Files {
                tmpfs: true,
                payload,
            },
        )
    } else if let Some(d) = &v.downward_api {
        let mut out = Payload::new();
        let payload = downward_files(
            pod,
            d.items.as_ref(),
            d.default_mode.unwrap_or(DEFAULT_MODE),
            objects,
            ctx,
            &mut out,
        )
        .map(|_| out);
        (
            under("kubernetes.io~downward-api"),
            Kind::Files {
                tmpfs: false,
                payload,
            },
        )
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut out = Payload::new();
        let mut secrets = false;
        let mut result = Ok(());
        for s in p.sources.iter().flatten() {
            let r = if let Some(c) = &s.config_map {
                projected_config_map(objects, c, mode, &mut out)
            } else if let Some(sec) = &s.secret {
                secrets = true;
                projected_secret(objects, sec, mode, &mut out)
            } else if let Some(d) = &s.downward_api {
                downward_files(pod, d.items.as_ref(), mode, objects, ctx, &mut out)
            } else {
                // serviceAccountToken and clusterTrustBundle: not projected by this node.
                Ok(())
            };
            if r.is_err() {
                result = r;
                break;
            }
        }
        (
            under("kubernetes.io~projected"),
            Kind::Files {
                tmpfs: secrets,
                payload: result.map(|_| out),
            },
        )
    } else if let Some(c) = &v.persistent_volume_claim {
        (
            under("kubernetes.io~pvc"),
            Kind::Claim {
                claim: c.claim_name.clone(),
                read_only: c.read_only == Some(true),
                type_: String::new(),
                error: Some(VolumeError::Claim(format!(
                    "persistentvolumeclaim \"{}\" not looked up",
                    c.claim_name
                ))),
            },
        )
    } else {
        let what = serde_json::to_value(v)
            .ok()
            .and_then(|j| {
                j.as_object()?
                    .keys()
                    .find(|k| k.as_str() != "name")
                    .cloned()
            })
            .unwrap_or_else(|| "unknown".into());
        (under("unsupported"), Kind::Unsupported(what))
    };
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref()?.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    if fs_group.is_some()
        && let Kind::Files {
            payload: Ok(files), ..
        } = &mut kind
    {
        // Readable by the group, as upstream's SetVolumeOwnership makes them.
        for f in files.values_mut() {
            f.mode |= 0o440;
        }
    }
    Volume {
        name: v.name.clone(),
        path,
        kind,
        fs_group,
    }
}

/// The pod's volumes, their directories under `pod_dir`.
pub fn desired(pod: &Pod, pod_dir: &Path, objects: &Objects, ctx: &PodContext) -> Vec<Volume> {
    let dir = pod_dir.join("volumes");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| volume(pod, v, &dir, objects, ctx))
        .collect()
}

/// The CRI mounts of container `c` (whose environment is `env`, for `subPathExpr`).
pub fn mounts(
    c: &Container,
    volumes: &[Volume],
    env: &[(String, String)],
) -> Result<Vec<cri::Mount>, VolumeError> {
    let vars = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| VolumeError::NoVolume(m.name.clone()))?;
        if let Kind::Unsupported(what) = &v.kind {
            return Err(VolumeError::Unsupported(what.clone()));
        }
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => expand(e, &vars),
            _ => String::new(),
        };
        let host = if sub.is_empty() {
            v.path.clone()
        } else {
            check_path(&sub)?;
            v.path.join(&sub)
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only == Some(true) || v.read_only(),
            propagation: cri::MountPropagation::PropagationPrivate as i32,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Makes the host side of subPath mounts exist: a missing subPath of a directory volume
/// becomes a directory; a symlink (a projected file) is resolved to what it points at now.
/// A subPath must stay inside its volume, even through symlinks a container made.
pub fn prepare_mounts(
    c: &Container,
    volumes: &[Volume],
    mounts: &mut [cri::Mount],
) -> Result<(), VolumeError> {
    for (vm, m) in c.volume_mounts.iter().flatten().zip(mounts.iter_mut()) {
        let sub = vm.sub_path.as_deref().is_some_and(|s| !s.is_empty())
            || vm.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty());
        let Some(v) = volumes.iter().find(|v| v.name == vm.name) else {
            continue;
        };
        if !sub {
            continue;
        }
        let p = PathBuf::from(&m.host_path);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
        let real = std::fs::canonicalize(&p).map_err(|e| io_err(&p, e))?;
        let base = std::fs::canonicalize(&v.path).map_err(|e| io_err(&v.path, e))?;
        if !real.starts_with(&base) {
            return Err(VolumeError::SubPathOutside {
                sub: real.display().to_string(),
                volume: base.display().to_string(),
            });
        }
        m.host_path = real.to_string_lossy().into_owned();
    }
    Ok(())
}

/// The mount table effects volumes need.
pub trait Mounter: Send + Sync {
    fn is_mounted(&self, path: &Path) -> bool;
    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()>;
    fn unmount(&self, path: &Path) -> io::Result<()>;
}

/// [`Mounter`] on this machine's mount table.
pub struct HostMounter;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// Decodes a mountinfo path (spaces and such are octal escapes).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Mounter for HostMounter {
    fn is_mounted(&self, path: &Path) -> bool {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return false;
        };
        let want = path.to_string_lossy();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| unescape_mountinfo(m) == want)
    }

    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
        let target = cpath(path)?;
        let data = CString::new(match size {
            Some(s) => format!("mode=0777,size={s}"),
            None => "mode=0777".to_string(),
        })
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad mount options"))?;
        let fstype = c"tmpfs";
        // SAFETY: every pointer is a valid NUL-terminated string living across the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        let target = cpath(path)?;
        // SAFETY: `target` is a valid NUL-terminated string living across the call.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<(), VolumeError> {
    std::fs::create_dir_all(p).map_err(|e| io_err(p, e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| io_err(p, e))
}

fn ensure_tmpfs(m: &dyn Mounter, p: &Path, size: Option<u64>) -> Result<(), VolumeError> {
    if !m.is_mounted(p) {
        m.mount_tmpfs(p, size).map_err(|e| io_err(p, e))?;
    }
    Ok(())
}

/// Checks (or makes) a hostPath as its type says.
pub fn check_host_path(path: &Path, type_: &str) -> Result<(), VolumeError> {
    let meta = std::fs::metadata(path).ok();
    let fail = |what: &str| {
        Err(VolumeError::HostPathType {
            path: path.display().to_string(),
            what: what.to_string(),
        })
    };
    let ft = meta.as_ref().map(|m| m.file_type());
    match type_ {
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_err(path, e))
        }
        "DirectoryOrCreate" | "Directory" if !ft.is_some_and(|t| t.is_dir()) => fail("directory"),
        "FileOrCreate" if meta.is_none() => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| io_err(path, e))?;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| io_err(path, e))
        }
        "FileOrCreate" | "File" if !ft.is_some_and(|t| t.is_file()) => fail("file"),
        "Socket" if !ft.is_some_and(|t| t.is_socket()) => fail("socket file"),
        "CharDevice" if !ft.is_some_and(|t| t.is_char_device()) => fail("character device"),
        "BlockDevice" if !ft.is_some_and(|t| t.is_block_device()) => fail("block device"),
        _ => Ok(()),
    }
}

/// Sets up one volume (idempotent): its directory, tmpfs, hostPath check, or files.
pub fn setup(m: &dyn Mounter, v: &Volume) -> Result<(), VolumeError> {
    match &v.kind {
        Kind::EmptyDir { tmpfs, size } => {
            mkdir(&v.path, 0o777)?;
            if *tmpfs {
                ensure_tmpfs(m, &v.path, *size)?;
            }
            if let Some(gid) = v.fs_group {
                std::os::unix::fs::lchown(&v.path, None, Some(gid))
                    .map_err(|e| io_err(&v.path, e))?;
                std::fs::set_permissions(&v.path, std::fs::Permissions::from_mode(0o2777))
                    .map_err(|e| io_err(&v.path, e))?;
            }
            Ok(())
        }
        Kind::HostPath { type_ } => check_host_path(&v.path, type_),
        Kind::Files { tmpfs, payload } => {
            let payload = match payload {
                Ok(p) => p,
                // Once written, a volume keeps its files when its object goes away.
                Err(_) if v.path.join(DATA).exists() => return Ok(()),
                Err(e) => return Err(e.clone()),
            };
            if !v.path.exists() {
                mkdir(&v.path, 0o777)?;
            }
            if *tmpfs {
                ensure_tmpfs(m, &v.path, None)?;
            }
            match write_atomic(&v.path, payload) {
                Ok(true) => own(&v.path, v.fs_group).map_err(|e| io_err(&v.path, e)),
                Ok(false) => Ok(()),
                Err(e) => Err(io_err(&v.path, e)),
            }
        }
        Kind::Claim { error: Some(e), .. } => Err(e.clone()),
        Kind::Claim { type_, .. } => {
            if type_ == "DirectoryOrCreate" && std::fs::symlink_metadata(&v.path).is_err() {
                // As the local-path provisioner makes them: writable by any user of the pod.
                return mkdir(&v.path, 0o777);
            }
            check_host_path(&v.path, type_)
        }
        Kind::Unsupported(what) => Err(VolumeError::Unsupported(what.clone())),
    }
}

/// Rewrites the files of already set-up Files volumes whose payload changed (a ConfigMap or
/// Secret update); volumes not set up yet, or whose payload cannot be made, are left alone.
/// Returns the names of the volumes rewritten.
pub fn refresh(volumes: &[Volume]) -> Vec<String> {
    let mut out = Vec::new();
    for v in volumes {
        if let Kind::Files {
            payload: Ok(payload),
            ..
        } = &v.kind
            && v.path.join(DATA).exists()
            && let Ok(true) = write_atomic(&v.path, payload)
        {
            if let Err(e) = own(&v.path, v.fs_group) {
                tracing::warn!(path = %v.path.display(), error = %e, "setting the volume's group failed");
            }
            out.push(v.name.clone());
        }
    }
    out
}

/// Gives everything under `dir` (not following symlinks) to group `gid`, directories setgid.
fn own(dir: &Path, gid: Option<u32>) -> io::Result<()> {
    let Some(gid) = gid else { return Ok(()) };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        std::os::unix::fs::lchown(&d, None, Some(gid))?;
        let mode = std::fs::metadata(&d)?.permissions().mode() & 0o7777;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o2000))?;
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                std::os::unix::fs::lchown(e.path(), None, Some(gid))?;
            }
        }
    }
    Ok(())
}

/// The symlink to the current timestamped directory of a projected volume.
pub const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// What the current `..data` of `dir` holds, if anything.
fn read_payload(dir: &Path) -> io::Result<Option<Payload>> {
    let data = dir.join(DATA);
    if std::fs::symlink_metadata(&data).is_err() {
        return Ok(None);
    }
    let mut out = Payload::new();
    let mut stack = vec![(data, String::new())];
    while let Some((d, rel)) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                stack.push((e.path(), r));
            } else {
                out.insert(
                    r,
                    File {
                        data: std::fs::read(e.path())?,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Ok(Some(out))
}

/// A fresh timestamped directory name, as upstream's (`..2006_01_02_15_04_05.<n>`).
fn ts_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now();
    format!(
        "..{}.{}{}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `payload` into `dir` as upstream's atomic writer does: the files go into a new
/// timestamped directory, the `..data` symlink is swapped to it in one rename, and each
/// top-level name is a symlink through `..data`; names no longer present disappear. Returns
/// whether anything changed.
pub fn write_atomic(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for p in payload.keys() {
        if check_path(p).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid file path {p:?}"),
            ));
        }
    }
    if read_payload(dir)?.as_ref() == Some(payload) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let ts = ts_name();
    let ts_dir = dir.join(&ts);
    std::fs::create_dir(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    for (rel, f) in payload {
        let p = ts_dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &f.data)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    let top: BTreeSet<&str> = payload.keys().filter_map(|k| k.split('/').next()).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(name.as_str()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old
        && old.as_os_str() != ts.as_str()
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// Removes the volumes of every pod under `pods_dir` (`<agent data>/pods`), unmounting their
/// tmpfs first: for a node that removes all its pods on exit. Log directories stay.
pub fn cleanup_all(m: &dyn Mounter, pods_dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(pods_dir).into_iter().flatten().flatten() {
        if e.path().join("volumes").is_dir() {
            cleanup(m, &e.path())?;
        }
    }
    Ok(())
}

/// Removes a pod's directory, unmounting the tmpfs volumes in it first.
pub fn cleanup(m: &dyn Mounter, pod_dir: &Path) -> io::Result<()> {
    let volumes = pod_dir.join("volumes");
    if let Ok(plugins) = std::fs::read_dir(&volumes) {
        for p in plugins.flatten() {
            for v in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
                let path = v.path();
                if m.is_mounted(&path) {
                    m.unmount(&path)?;
                }
            }
        }
    }
    match std::fs::remove_dir_all(pod_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Serializes volume setup on this node: containers of one pod start concurrently.
static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How often a FailedMount that does not change is reported again.
const MOUNT_EVENT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

// The pod manager's side: fetching the referenced objects, reporting failures as upstream.
impl super::PodManager {
    fn source(&self) -> env::ApiSource {
        env::ApiSource {
            client: self.client.clone(),
            node: self.cfg.node.clone(),
        }
    }

    fn context(&self, rt: &super::observe::PodRuntime) -> PodContext {
        PodContext {
            pod_ip: rt.ip.clone(),
            host_ip: self.cfg.host_ip.clone(),
        }
    }

    /// The directory of the pod's volumes.
    fn pod_volumes_dir(&self, uid: &str) -> PathBuf {
        pod_dir(&self.cfg.logs_dir, uid)
    }

    /// Sets up every volume of the pod; `None` (with a FailedMount event, the containers
    /// waiting in ContainerCreating) when one cannot be.
    pub(super) async fn prepare_volumes(
        &self,
        pod: &Pod,
        uid: &str,
        rt: &super::observe::PodRuntime,
    ) -> Option<Vec<Volume>> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let objects = env::fetch(&self.source(), &ns, &volume_refs(pod)).await;
        let mut vols = desired(pod, &self.pod_volumes_dir(uid), &objects, &self.context(rt));
        let claims = super::claims::fetch(&self.client, &ns, &super::claims::names(&vols)).await;
        super::claims::apply(&mut vols, &claims);
        let failed = {
            let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
            vols.iter()
                .find_map(|v| setup(&HostMounter, v).err().map(|e| (v.name.clone(), e)))
        };
        let Some((name, e)) = failed else {
            if let Ok(mut st) = self.state.lock() {
                st.mount_errors.remove(uid);
            }
            return Some(vols);
        };
        let msg = match &e {
            VolumeError::Claim(why) => format!(
                "Unable to attach or mount volumes: unmounted volumes=[{name}], unattached volumes=[], failed to process volumes=[{name}]: {why}"
            ),
            _ => format!("MountVolume.SetUp failed for volume \"{name}\" : {e}"),
        };
        let report = self.state.lock().is_ok_and(|mut st| {
            let now = std::time::Instant::now();
            let again = st
                .mount_errors
                .get(uid)
                .is_none_or(|(m, at)| *m != msg || now.duration_since(*at) >= MOUNT_EVENT_EVERY);
            if again {
                st.mount_errors.insert(uid.to_string(), (msg.clone(), now));
            }
            again
        });
        if report {
            self.event(
                pod,
                None,
                keelson_controllers::events::EventType::Warning,
                "FailedMount",
                &msg,
            );
        }
        None
    }

    /// The environment and mounts of container `c`; `None` (the container waiting with
    /// CreateContainerConfigError, and a Failed event) when they cannot be made.
    pub(super) async fn container_env_and_mounts(
        &self,
        pod: &Pod,
        uid: &str,
        c: &Container,
        rt: &super::observe::PodRuntime,
        volumes: &[Volume],
    ) -> Option<(Vec<(String, String)>, Vec<cri::Mount>)> {
        use keelson_controllers::events::EventType;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let objects = env::fetch(&self.source(), &ns, &env::container_refs(c)).await;
        let made = env::resolve(pod, c, &objects, &self.context(rt))
            .map_err(|e| e.to_string())
            .and_then(|r| {
                let mut m = mounts(c, volumes, &r.env).map_err(|e| e.to_string())?;
                prepare_mounts(c, volumes, &mut m).map_err(|e| e.to_string())?;
                Ok((r, m))
            });
        match made {
            Ok((r, m)) => {
                for (kind, name, keys) in &r.skipped {
                    self.event(
                        pod,
                        Some(&c.name),
                        EventType::Warning,
                        "InvalidEnvironmentVariableNames",
                        &format!(
                            "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                            keys.join(", ")
                        ),
                    );
                }
                Some((r.env, m))
            }
            Err(msg) => {
                const REASON: &str = "CreateContainerConfigError";
                let same = self.state.lock().is_ok_and(|st| {
                    st.errors
                        .get(uid)
                        .and_then(|e| e.get(&c.name))
                        .is_some_and(|(r, m)| r == REASON && *m == msg)
                });
                if !same {
                    self.event(
                        pod,
                        Some(&c.name),
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {msg}"),
                    );
                }
                self.set_error(uid, &c.name, REASON, msg);
                None
            }
        }
    }

    /// Brings the files of a running pod's configMap, secret, downwardAPI and projected
    /// volumes up to date.
    pub(super) async fn refresh_volumes(
        &self,
        pod: &Pod,
        uid: &str,
        rt: &super::observe::PodRuntime,
    ) {
        let has_files = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            });
        let running = rt
            .instances
            .iter()
            .any(|i| i.state == super::observe::State::Running);
        if !has_files || !running || pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let objects = env::fetch(&self.source(), &ns, &volume_refs(pod)).await;
        let vols = desired(pod, &self.pod_volumes_dir(uid), &objects, &self.context(rt));
        let changed = {
            let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
            refresh(&vols)
        };
        for name in changed {
            tracing::debug!(pod = %uid, volume = %name, "volume files updated");
        }
    }

    /// Removes the pod's volumes (unmounting its tmpfs) once the pod is gone.
    pub(super) fn remove_volumes(&self, uid: &str) {
        let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = cleanup(&HostMounter, &self.pod_volumes_dir(uid)) {
            tracing::warn!(pod = %uid, error = %e, "removing the pod's volumes failed");
        }
        if let Ok(mut st) = self.state.lock() {
            st.mount_errors.remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use serde_json::json;
    use std::sync::Mutex;

    fn pod(volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u1", "labels": {"app": "w"}},
            "spec": {"volumes": volumes, "containers": [{
                "name": "c", "image": "busybox", "volumeMounts": mounts,
                "resources": {"limits": {"memory": "64Mi"}},
            }]},
        }))
        .unwrap()
    }

    fn objects() -> Objects {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"},
        }))
        .unwrap();
        let s = Secret {
            data: Some(BTreeMap::from([(
                "pw".to_string(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        };
        let mut o = Objects::default();
        o.config_maps.insert("cfg".into(), Ok(Some(cm)));
        o.secrets.insert("sec".into(), Ok(Some(s)));
        o
    }

    fn file(data: &str, mode: u32) -> File {
        File {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    /// The one volume of a pod with `volume`, as [`desired`] sees it.
    fn kind_of(volume: serde_json::Value) -> Kind {
        let p = pod(json!([volume]), json!(null));
        let ctx = PodContext {
            pod_ip: Some("10.0.0.9".into()),
            host_ip: "192.168.0.1".into(),
        };
        desired(&p, Path::new("pods/u1"), &objects(), &ctx)
            .remove(0)
            .kind
    }

    fn files(p: &[(&str, &str, u32)]) -> Kind {
        Kind::Files {
            tmpfs: false,
            payload: Ok(p
                .iter()
                .map(|(k, v, m)| (k.to_string(), file(v, *m)))
                .collect()),
        }
    }

    fn failed(e: &str) -> String {
        e.to_string()
    }

    #[test]
    fn volume_kinds_and_payloads() {
        let err = |k: Kind| match k {
            Kind::Files {
                payload: Err(e), ..
            } => Some(e.to_string()),
            _ => None,
        };
        let cases: Vec<(&str, serde_json::Value, Kind)> = vec![
            (
                "emptyDir",
                json!({"name": "v", "emptyDir": {}}),
                Kind::EmptyDir {
                    tmpfs: false,
                    size: None,
                },
            ),
            (
                "emptyDir memory",
                json!({"name": "v", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}),
                Kind::EmptyDir {
                    tmpfs: true,
                    size: Some(1 << 20),
                },
            ),
            (
                "hostPath",
                json!({"name": "v", "hostPath": {"path": "/x", "type": "Directory"}}),
                Kind::HostPath {
                    type_: "Directory".into(),
                },
            ),
            (
                "configMap all keys",
                json!({"name": "v", "configMap": {"name": "cfg"}}),
                files(&[("a", "1", 0o644), ("b", "2", 0o644)]),
            ),
            (
                "configMap items and modes",
                json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o600,
                "items": [{"key": "a", "path": "dir/a.txt"}, {"key": "b", "path": "b", "mode": 0o400}]}}),
                files(&[("b", "2", 0o400), ("dir/a.txt", "1", 0o600)]),
            ),
            (
                "configMap optional missing",
                json!({"name": "v", "configMap": {"name": "gone", "optional": true}}),
                files(&[]),
            ),
            (
                "configMap optional missing item",
                json!({"name": "v", "configMap": {"name": "cfg", "optional": true,
                "items": [{"key": "zz", "path": "z"}]}}),
                files(&[]),
            ),
            (
                "secret on tmpfs, decoded",
                json!({"name": "v", "secret": {"secretName": "sec"}}),
                Kind::Files {
                    tmpfs: true,
                    payload: Ok(Payload::from([("pw".to_string(), file("hunter2", 0o644))])),
                },
            ),
            (
                "downwardAPI",
                json!({"name": "v", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}),
                files(&[
                    ("labels", "app=\"w\"", 0o644),
                    ("mem", "64", 0o644),
                    ("name", "web", 0o644),
                ]),
            ),
            (
                "projected",
                json!({"name": "v", "projected": {"defaultMode": 0o640, "sources": [
                {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"serviceAccountToken": {"path": "token"}}]}}),
                files(&[("a", "1", 0o640), ("ns", "ns1", 0o640)]),
            ),
            (
                "unsupported",
                json!({"name": "v", "nfs": {"server": "s", "path": "/x"}}),
                Kind::Unsupported("nfs".into()),
            ),
        ];
        for (what, v, want) in cases {
            assert_eq!(kind_of(v), want, "{what}");
        }
        let errors: Vec<(&str, serde_json::Value, &str)> = vec![
            (
                "missing configmap",
                json!({"name": "v", "configMap": {"name": "gone"}}),
                "configmap \"gone\" not found",
            ),
            (
                "missing key",
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}),
                "configmap references non-existent config key: zz",
            ),
            (
                "missing secret",
                json!({"name": "v", "secret": {"secretName": "s"}}),
                "secret \"s\" not found",
            ),
            (
                "missing secret key",
                json!({"name": "v", "secret": {"secretName": "sec", "items": [{"key": "k", "path": "k"}]}}),
                "references non-existent secret key: k",
            ),
            (
                "projected missing secret",
                json!({"name": "v", "projected": {"sources": [{"secret": {"name": "nope"}}]}}),
                "secret \"nope\" not found",
            ),
            (
                "bad path",
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "../a"}]}}),
                "invalid path \"../a\": must be relative and may not contain '..'",
            ),
        ];
        for (what, v, want) in errors {
            assert_eq!(err(kind_of(v)), Some(failed(want)), "{what}");
        }
    }

    #[test]
    fn container_mounts() {
        let p = pod(
            json!([{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
                   {"name": "host", "hostPath": {"path": "/srv"}}]),
            json!([{"name": "data", "mountPath": "/data"},
                   {"name": "cfg", "mountPath": "/etc/app"},
                   {"name": "cfg", "mountPath": "/etc/a.conf", "subPath": "a"},
                   {"name": "host", "mountPath": "/srv", "readOnly": true},
                   {"name": "data", "mountPath": "/per", "subPathExpr": "$(POD)/x"}]),
        );
        let vols = desired(&p, Path::new("pods/u1"), &objects(), &PodContext::default());
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env = vec![("POD".to_string(), "web".to_string())];
        let got: Vec<(String, String, bool)> = mounts(c, &vols, &env)
            .unwrap()
            .into_iter()
            .map(|m| (m.container_path, m.host_path, m.readonly))
            .collect();
        let want = [
            (
                "/data",
                "pods/u1/volumes/kubernetes.io~empty-dir/data",
                false,
            ),
            (
                "/etc/app",
                "pods/u1/volumes/kubernetes.io~configmap/cfg",
                true,
            ),
            (
                "/etc/a.conf",
                "pods/u1/volumes/kubernetes.io~configmap/cfg/a",
                true,
            ),
            ("/srv", "/srv", true),
            (
                "/per",
                "pods/u1/volumes/kubernetes.io~empty-dir/data/web/x",
                false,
            ),
        ];
        let want: Vec<(String, String, bool)> = want
            .iter()
            .map(|(a, b, r)| (a.to_string(), b.to_string(), *r))
            .collect();
        assert_eq!(got, want);

        let bad = pod(json!([]), json!([{"name": "nope", "mountPath": "/x"}]));
        let c = &bad.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            mounts(c, &[], &[]).unwrap_err().to_string(),
            "volume \"nope\" not found in the pod"
        );
    }

    fn listing(dir: &Path) -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .map(|n| {
                let text = std::fs::read_to_string(dir.join(&n)).unwrap_or_else(|_| "<dir>".into());
                (n, text)
            })
            .collect()
    }

    #[test]
    fn atomic_writer_updates_and_removes_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let p1 = Payload::from([
            ("a".to_string(), file("1", 0o644)),
            ("b".to_string(), file("2", 0o400)),
        ]);
        assert!(write_atomic(&dir, &p1).unwrap());
        assert_eq!(
            listing(&dir),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        let link = std::fs::read_link(dir.join("a")).unwrap();
        assert_eq!(link, Path::new("..data/a"));
        let mode = std::fs::metadata(dir.join("b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o400);
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        assert!(first.to_string_lossy().starts_with(".."));
        // Same payload: nothing to do.
        assert!(!write_atomic(&dir, &p1).unwrap());
        // An update changes a, removes b, adds a nested c.
        let p2 = Payload::from([
            ("a".to_string(), file("10", 0o644)),
            ("c/d".to_string(), file("3", 0o644)),
        ]);
        assert!(write_atomic(&dir, &p2).unwrap());
        assert_eq!(
            listing(&dir),
            BTreeMap::from([("a".into(), "10".into()), ("c".into(), "<dir>".into())])
        );
        assert_eq!(std::fs::read_to_string(dir.join("c/d")).unwrap(), "3");
        assert!(
            !dir.join(&first).exists(),
            "the old timestamped dir is gone"
        );
        let entries: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        assert_eq!(entries.len(), 1, "one timestamped dir: {entries:?}");
        assert!(
            write_atomic(
                &dir,
                &Payload::from([("../x".to_string(), file("", 0o644))])
            )
            .is_err()
        );
    }

    /// Records mounts instead of making them.
    #[derive(Default)]
    struct FakeMounter {
        mounted: Mutex<BTreeSet<PathBuf>>,
    }

    impl Mounter for FakeMounter {
        fn is_mounted(&self, path: &Path) -> bool {
            self.mounted.lock().unwrap().contains(path)
        }
        fn mount_tmpfs(&self, path: &Path, _size: Option<u64>) -> io::Result<()> {
            self.mounted.lock().unwrap().insert(path.to_path_buf());
            Ok(())
        }
        fn unmount(&self, path: &Path) -> io::Result<()> {
            self.mounted.lock().unwrap().remove(path);
            Ok(())
        }
    }

    #[test]
    fn setup_refresh_and_cleanup() {
        let tmp = tempfile::tempdir().unwrap();
        let pd = pod_dir(tmp.path(), "u1");
        let host = tmp.path().join("host/made");
        let p = pod(
            json!([{"name": "data", "emptyDir": {"medium": "Memory"}},
                   {"name": "cfg", "configMap": {"name": "cfg"}},
                   {"name": "sec", "secret": {"secretName": "sec"}},
                   {"name": "h", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}}]),
            json!(null),
        );
        let m = FakeMounter::default();
        let mut objs = objects();
        for v in desired(&p, &pd, &objs, &PodContext::default()) {
            setup(&m, &v).unwrap();
        }
        assert!(host.is_dir());
        let cfg = pd.join("volumes/kubernetes.io~configmap/cfg");
        assert_eq!(std::fs::read_to_string(cfg.join("a")).unwrap(), "1");
        let sec = pd.join("volumes/kubernetes.io~secret/sec");
        assert_eq!(std::fs::read_to_string(sec.join("pw")).unwrap(), "hunter2");
        assert!(m.is_mounted(&sec));
        assert!(m.is_mounted(&pd.join("volumes/kubernetes.io~empty-dir/data")));

        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "new"}}))
                .unwrap();
        objs.config_maps.insert("cfg".into(), Ok(Some(cm)));
        let vols = desired(&p, &pd, &objs, &PodContext::default());
        assert_eq!(refresh(&vols), vec!["cfg".to_string()]);
        assert_eq!(std::fs::read_to_string(cfg.join("a")).unwrap(), "new");
        assert!(!cfg.join("b").exists());
        assert!(refresh(&vols).is_empty());
        // The ConfigMap gone: the volume keeps its files, setup still succeeds.
        objs.config_maps.insert("cfg".into(), Ok(None));
        for v in desired(&p, &pd, &objs, &PodContext::default()) {
            setup(&m, &v).unwrap();
        }
        assert_eq!(std::fs::read_to_string(cfg.join("a")).unwrap(), "new");

        let logs = tmp.path().join("default_web_u1");
        std::fs::create_dir(&logs).unwrap();
        cleanup_all(&m, tmp.path()).unwrap();
        assert!(!pd.exists());
        assert!(logs.exists(), "log dirs stay");
        assert!(m.mounted.lock().unwrap().is_empty());
        assert!(host.is_dir(), "hostPaths stay");
    }

    #[test]
    fn sub_paths_are_made_and_stay_inside_their_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let p = pod(
            json!([{"name": "data", "emptyDir": {}}]),
            json!([{"name": "data", "mountPath": "/a", "subPath": "new/dir"},
                   {"name": "data", "mountPath": "/b", "subPath": "escape"},
                   {"name": "data", "mountPath": "/c"}]),
        );
        let vols = desired(&p, tmp.path(), &Objects::default(), &PodContext::default());
        let m = FakeMounter::default();
        setup(&m, &vols[0]).unwrap();
        std::os::unix::fs::symlink("/", vols[0].path.join("escape")).unwrap();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mut ms = mounts(c, &vols, &[]).unwrap();
        let err = prepare_mounts(c, &vols, &mut ms).unwrap_err().to_string();
        assert!(
            err.starts_with("subpath \"/\" not within volume path"),
            "{err}"
        );
        assert!(vols[0].path.join("new/dir").is_dir());
        let mut ms: Vec<cri::Mount> = mounts(c, &vols, &[]).unwrap();
        ms.remove(1);
        let mut c2 = c.clone();
        c2.volume_mounts.as_mut().unwrap().remove(1);
        prepare_mounts(&c2, &vols, &mut ms).unwrap();
        let real = std::fs::canonicalize(vols[0].path.join("new/dir")).unwrap();
        assert_eq!(ms[0].host_path, real.to_string_lossy());
    }

    #[test]
    fn fs_group_owns_volumes() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        // Root may give files to any group; others only to their own.
        let meta = std::fs::metadata(tmp.path()).unwrap();
        let gid = if meta.uid() == 0 { 1234 } else { meta.gid() };
        let mut p = pod(
            json!([{"name": "data", "emptyDir": {}},
                   {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}}]),
            json!(null),
        );
        p.spec.as_mut().unwrap().security_context =
            Some(serde_json::from_value(json!({"fsGroup": gid})).unwrap());
        let m = FakeMounter::default();
        let vols = desired(&p, tmp.path(), &objects(), &PodContext::default());
        for v in &vols {
            setup(&m, v).unwrap();
        }
        let data = std::fs::metadata(&vols[0].path).unwrap();
        assert_eq!((data.gid(), data.mode() & 0o7777), (gid, 0o2777));
        let pw = std::fs::metadata(vols[1].path.join("pw")).unwrap();
        assert_eq!((pw.gid(), pw.mode() & 0o777), (gid, 0o440));
        // Unchanged files are not rewritten on the next pass.
        assert!(refresh(&vols).is_empty());
    }

    #[test]
    fn host_path_type_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        let f = tmp.path().join("f");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(&f, "x").unwrap();
        let check = |p: &Path, t: &str| check_host_path(p, t).map_err(|e| e.to_string());
        let not = |p: &Path, what: &str| {
            Err(format!(
                "hostPath type check failed: {} is not a {what}",
                p.display()
            ))
        };
        assert_eq!(check(&d, "Directory"), Ok(()));
        assert_eq!(check(&f, "Directory"), not(&f, "directory"));
        assert_eq!(
            check(&tmp.path().join("none"), "Directory"),
            not(&tmp.path().join("none"), "directory")
        );
        assert_eq!(check(&f, "File"), Ok(()));
        assert_eq!(check(&d, "File"), not(&d, "file"));
        assert_eq!(check(&d, "FileOrCreate"), not(&d, "file"));
        assert_eq!(check(&f, "DirectoryOrCreate"), not(&f, "directory"));
        assert_eq!(check(&f, "Socket"), not(&f, "socket file"));
        assert_eq!(check(&f, "CharDevice"), not(&f, "character device"));
        assert_eq!(check(&f, "BlockDevice"), not(&f, "block device"));
        assert_eq!(check(&tmp.path().join("none"), ""), Ok(()));
        let made = tmp.path().join("newfile");
        assert_eq!(check(&made, "FileOrCreate"), Ok(()));
        assert!(made.is_file());
    }
}
