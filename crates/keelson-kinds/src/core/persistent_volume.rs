//! The PersistentVolume kind (v1): defaults, initial status and the `kubectl get pv` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolume;
use serde_json::{Value, json};

use crate::Column;
use crate::core::pod_defaults::set_str;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, at, col, name_cell, s, str_at, wide};

pub static STRATEGY: Typed<PersistentVolume> = Typed::new("PersistentVolume", "v1")
    .defaults(defaults)
    .prepare(|obj| obj["status"] = json!({"phase": "Pending"}))
    .validate(crate::core::validation::validate_cluster_plain)
    .table(COLUMNS, row)
    .status(false);

fn defaults(pv: &mut PersistentVolume) {
    let spec = pv.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.persistent_volume_reclaim_policy, "Retain");
    set_str(&mut spec.volume_mode, "Filesystem");
    set_str(
        &mut pv.status.get_or_insert_with(Default::default).phase,
        "Pending",
    );
}

/// upstream's GetAccessModesAsString: RWO, ROX, RWX, RWOP in that order.
pub fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v == m);
    let all = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ];
    all.iter()
        .filter(|(m, _)| has(m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class: the beta annotation first, then `spec.storageClassName`.
pub fn storage_class(obj: &Value) -> String {
    at(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .or_else(|| at(obj, &["spec", "storageClassName"]))
    .and_then(Value::as_str)
    .unwrap_or("")
    .to_string()
}

/// The phase, or `Terminating` once deletion started.
pub fn phase(obj: &Value) -> String {
    if at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null()) {
        return "Terminating".to_string();
    }
    str_at(obj, &["status", "phase"]).unwrap_or("").to_string()
}

/// `spec.volumeAttributesClassName`, or `<unset>`.
pub fn attributes_class(obj: &Value) -> String {
    str_at(obj, &["spec", "volumeAttributesClassName"])
        .filter(|c| !c.is_empty())
        .unwrap_or("<unset>")
        .to_string()
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Capacity",
        "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity",
    ),
    col(
        "Access Modes",
        "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes",
    ),
    col(
        "Reclaim Policy",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col(
        "Status",
        "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase",
    ),
    col(
        "Claim",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col(
        "StorageClass",
        "storageClassName is the name of StorageClass to which this persistent volume belongs. Empty value means that this volume does not belong to any StorageClass.",
    ),
    col(
        "VolumeAttributesClass",
        "Name of VolumeAttributesClass to which this persistent volume belongs. Empty value is not allowed.",
    ),
    col(
        "Reason",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = at(obj, &["spec", "claimRef"]).map_or(String::new(), |c| {
        format!(
            "{}/{}",
            str_at(c, &["namespace"]).unwrap_or(""),
            str_at(c, &["name"]).unwrap_or("")
        )
    });
    vec![
        name_cell(obj),
        s(str_at(obj, &["spec", "capacity", "storage"]).unwrap_or("0")),
        s(access_modes(arr_at(obj, &["spec", "accessModes"]))),
        s(str_at(obj, &["spec", "persistentVolumeReclaimPolicy"]).unwrap_or("")),
        s(phase(obj)),
        s(claim),
        s(storage_class(obj)),
        s(attributes_class(obj)),
        s(str_at(obj, &["status", "reason"]).unwrap_or("")),
        age_cell(obj, now),
        s(str_at(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
    ]
}
