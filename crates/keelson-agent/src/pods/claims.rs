//! persistentVolumeClaim volumes: the claim → its bound PersistentVolume → the node path
//! (hostPath or local) the pod mounts, resolved without IO from what [`fetch`] read; a claim
//! that is missing, being deleted or not bound yet leaves the pod waiting, as the kubelet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{Api, Client};

use super::volumes::{Kind, Volume, VolumeError};

/// A claim and the volume it is bound to, as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub claim: Option<PersistentVolumeClaim>,
    pub volume: Option<PersistentVolume>,
    /// Why reading failed, if it did.
    pub error: Option<String>,
}

/// What was read for each claim, by claim name (all in the pod's namespace).
pub type Claims = BTreeMap<String, Fetched>;

/// Where a claim's volume is on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: PathBuf,
    /// The hostPath type to check ("" for none or a local volume).
    pub type_: String,
}

/// The claims the volumes name.
pub fn names(volumes: &[Volume]) -> BTreeSet<String> {
    volumes
        .iter()
        .filter_map(|v| match &v.kind {
            Kind::Claim { claim, .. } => Some(claim.clone()),
            _ => None,
        })
        .collect()
}

/// The node path of claim `name` in `namespace`, or why it cannot be used yet.
pub fn resolve(namespace: &str, name: &str, f: &Fetched) -> Result<Resolved, VolumeError> {
    if let Some(e) = &f.error {
        return Err(VolumeError::Claim(e.clone()));
    }
    let Some(claim) = &f.claim else {
        return Err(VolumeError::Claim(format!(
            "persistentvolumeclaim \"{name}\" not found"
        )));
    };
    let processing = |why: &str| {
        Err(VolumeError::Claim(format!(
            "error processing PVC {namespace}/{name}: {why}"
        )))
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return processing("PVC is being deleted");
    }
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if !bound || volume_name.is_empty() {
        return processing("PVC is not bound");
    }
    let Some(pv) = &f.volume else {
        return processing(&format!("persistentvolume \"{volume_name}\" not found"));
    };
    let claim_uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref());
    if claim_uid.is_some_and(|u| Some(u) != claim.metadata.uid.as_deref()) {
        return processing(&format!(
            "volume {volume_name} is bound to a different claim"
        ));
    }
    let spec = pv.spec.as_ref();
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok(Resolved {
            path: PathBuf::from(&h.path),
            type_: h.type_.clone().unwrap_or_default(),
        });
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        // A local volume must exist: it is checked as a directory.
        return Ok(Resolved {
            path: PathBuf::from(&l.path),
            type_: "Directory".into(),
        });
    }
    let what = spec
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|j| {
            const NOT_SOURCES: [&str; 9] = [
                "accessModes",
                "capacity",
                "claimRef",
                "mountOptions",
                "nodeAffinity",
                "persistentVolumeReclaimPolicy",
                "storageClassName",
                "volumeMode",
                "volumeAttributesClassName",
            ];
            j.as_object()?
                .keys()
                .find(|k| !NOT_SOURCES.contains(&k.as_str()))
                .cloned()
        })
        .unwrap_or_else(|| "unknown".into());
    Err(VolumeError::Unsupported(what))
}

/// Puts what the claims resolve to into the pod's claim volumes.
pub fn apply(volumes: &mut [Volume], claims: &Claims) {
    for v in volumes.iter_mut() {
        let Kind::Claim {
            claim,
            type_,
            error,
            ..
        } = &mut v.kind
        else {
            continue;
        };
        let ns = claims
            .get(claim.as_str())
            .and_then(|f| f.claim.as_ref())
            .and_then(|c| c.metadata.namespace.clone())
            .unwrap_or_default();
        let fetched = claims.get(claim.as_str()).cloned().unwrap_or_default();
        match resolve(&ns, claim, &fetched) {
            Ok(r) => {
                v.path = r.path;
                *type_ = r.type_;
                *error = None;
            }
            Err(e) => *error = Some(e),
        }
    }
}

/// Reads the claims `names` of `namespace` and the volumes they are bound to.
pub async fn fetch(client: &Client, namespace: &str, names: &BTreeSet<String>) -> Claims {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut out = Claims::new();
    for name in names {
        let mut f = Fetched::default();
        match claims.get_opt(name).await {
            Ok(c) => f.claim = c,
            Err(e) => {
                f.error = Some(format!(
                    "failed to get persistentvolumeclaim {namespace}/{name}: {e}"
                ))
            }
        }
        let volume = f
            .claim
            .as_ref()
            .and_then(|c| c.spec.as_ref()?.volume_name.clone())
            .filter(|v| !v.is_empty());
        if let Some(v) = volume {
            match volumes.get_opt(&v).await {
                Ok(pv) => f.volume = pv,
                Err(e) => f.error = Some(format!("failed to get persistentvolume {v}: {e}")),
            }
        }
        out.insert(name.clone(), f);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn claim(phase: &str, volume: Option<&str>, deleting: bool) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u1",
            "deletionTimestamp": if deleting { json!("2026-01-01T00:00:00Z") } else { Value::Null }},
            "spec": {"volumeName": volume}, "status": {"phase": phase}}))
        .unwrap()
    }

    fn pv(source: Value, uid: &str) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "claimRef": {"namespace": "ns", "name": "data", "uid": uid}});
        for (k, v) in source.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": "v1"}, "spec": spec})).unwrap()
    }

    #[test]
    fn claims_resolve_to_their_volume_path_or_wait() {
        let host = pv(
            json!({"hostPath": {"path": "/srv/v1", "type": "DirectoryOrCreate"}}),
            "u1",
        );
        let local = pv(json!({"local": {"path": "/mnt/disk"}}), "u1");
        let nfs = pv(json!({"nfs": {"server": "s", "path": "/e"}}), "u1");
        let other = pv(json!({"hostPath": {"path": "/srv/v1"}}), "u2");
        let fetched = |c: Option<PersistentVolumeClaim>, v: Option<&PersistentVolume>| Fetched {
            claim: c,
            volume: v.cloned(),
            error: None,
        };
        let bound = || Some(claim("Bound", Some("v1"), false));
        let ok = |p: &str, t: &str| {
            Ok(Resolved {
                path: PathBuf::from(p),
                type_: t.into(),
            })
        };
        let wait = |m: &str| Err(VolumeError::Claim(m.into()));
        let cases: Vec<(&str, Fetched, Result<Resolved, VolumeError>)> = vec![
            (
                "hostPath",
                fetched(bound(), Some(&host)),
                ok("/srv/v1", "DirectoryOrCreate"),
            ),
            (
                "local",
                fetched(bound(), Some(&local)),
                ok("/mnt/disk", "Directory"),
            ),
            (
                "missing claim",
                fetched(None, None),
                wait("persistentvolumeclaim \"data\" not found"),
            ),
            (
                "pending",
                fetched(Some(claim("Pending", None, false)), None),
                wait("error processing PVC ns/data: PVC is not bound"),
            ),
            (
                "deleting",
                fetched(Some(claim("Bound", Some("v1"), true)), Some(&host)),
                wait("error processing PVC ns/data: PVC is being deleted"),
            ),
            (
                "volume gone",
                fetched(bound(), None),
                wait("error processing PVC ns/data: persistentvolume \"v1\" not found"),
            ),
            (
                "misbound",
                fetched(bound(), Some(&other)),
                wait("error processing PVC ns/data: volume v1 is bound to a different claim"),
            ),
            (
                "unsupported source",
                fetched(bound(), Some(&nfs)),
                Err(VolumeError::Unsupported("nfs".into())),
            ),
        ];
        for (what, f, want) in cases {
            assert_eq!(resolve("ns", "data", &f), want, "{what}");
        }
    }

    #[test]
    fn claim_volumes_take_the_resolved_path_and_honour_read_only() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "pu"},
            "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}],
                "containers": [{"name": "c", "volumeMounts": [{"name": "d", "mountPath": "/data"}]}]}}))
        .unwrap();
        let mut vols = super::super::volumes::desired(
            &pod,
            std::path::Path::new("/pods/pu"),
            &Default::default(),
            &Default::default(),
        );
        assert_eq!(names(&vols), BTreeSet::from(["data".to_string()]));
        let claims = Claims::from([(
            "data".to_string(),
            Fetched {
                claim: Some(claim("Bound", Some("v1"), false)),
                volume: Some(pv(json!({"hostPath": {"path": "/srv/v1"}}), "u1")),
                error: None,
            },
        )]);
        apply(&mut vols, &claims);
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let m = super::super::volumes::mounts(c, &vols, &[]).unwrap();
        assert_eq!((m[0].host_path.as_str(), m[0].readonly), ("/srv/v1", true));
    }
}
