//! The StorageClass kind (storage.k8s.io/v1): defaults and the `kubectl get sc` table.

use jiff::Timestamp;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::set_str;
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, at, col, name, s, str_at};

pub static STRATEGY: Typed<StorageClass> = Typed::new("StorageClass", "v1")
    .defaults(defaults)
    .validate(crate::core::validation::validate_cluster_plain)
    .table(COLUMNS, row);

fn defaults(sc: &mut StorageClass) {
    set_str(&mut sc.reclaim_policy, "Delete");
    set_str(&mut sc.volume_binding_mode, "Immediate");
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Provisioner",
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
    ),
    col(
        "VolumeBindingMode",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
    ),
    col(
        "AllowVolumeExpansion",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

/// Whether the class carries the (beta) default-class annotation set to "true".
pub fn is_default(obj: &Value) -> bool {
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| at(obj, &["metadata", "annotations", k]).and_then(Value::as_str) == Some("true"))
}

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let shown = if is_default(obj) {
        format!("{} (default)", name(obj))
    } else {
        name(obj).to_string()
    };
    vec![
        s(shown),
        s(str_at(obj, &["provisioner"]).unwrap_or("")),
        s(str_at(obj, &["reclaimPolicy"]).unwrap_or("Delete")),
        s(str_at(obj, &["volumeBindingMode"]).unwrap_or("Immediate")),
        Value::Bool(
            obj.get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        age_cell(obj, now),
    ]
}
