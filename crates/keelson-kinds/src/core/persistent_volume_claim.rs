//! The PersistentVolumeClaim kind (v1): defaults, initial status and the `kubectl get pvc` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};

use crate::Column;
use crate::core::persistent_volume::{access_modes, attributes_class, phase, storage_class};
use crate::core::pod_defaults::set_str;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, arr_at, col, name_cell, s, str_at, wide};

pub static STRATEGY: Typed<PersistentVolumeClaim> = Typed::new("PersistentVolumeClaim", "v1")
    .defaults(defaults)
    .prepare(|obj| obj["status"] = json!({"phase": "Pending"}))
    .validate(crate::core::validation::validate_plain)
    .table(COLUMNS, row)
    .status(false);

fn defaults(pvc: &mut PersistentVolumeClaim) {
    set_str(
        &mut pvc.spec.get_or_insert_with(Default::default).volume_mode,
        "Filesystem",
    );
    set_str(
        &mut pvc.status.get_or_insert_with(Default::default).phase,
        "Pending",
    );
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1",
    ),
    col(
        "StorageClass",
        "storageClassName is the name of the StorageClass required by the claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#class-1",
    ),
    col(
        "VolumeAttributesClass",
        "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(obj, &["spec", "volumeName"]).unwrap_or("");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let cap = str_at(obj, &["status", "capacity", "storage"])
            .unwrap_or("0")
            .to_string();
        (cap, access_modes(arr_at(obj, &["status", "accessModes"])))
    };
    vec![
        name_cell(obj),
        s(phase(obj)),
        s(volume),
        s(capacity),
        s(modes),
        s(storage_class(obj)),
        s(attributes_class(obj)),
        age_cell(obj, now),
        s(str_at(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
    ]
}
