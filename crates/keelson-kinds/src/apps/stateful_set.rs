//! The StatefulSet kind (apps/v1): defaults, validation and the `kubectl get statefulsets` table.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
};
use serde_json::Value;

use crate::Column;
use crate::core::pod_defaults::{self, set, set_str};
use crate::typed::Typed;
use crate::util::{AGE, NAME, age_cell, at, col, name_cell, s, wide};
use crate::workload::{containers_and_images, status_int};

pub static STRATEGY: Typed<StatefulSet> = Typed::new("StatefulSet", "v1")
    .defaults(defaults)
    .prepare(crate::apps::empty_status)
    .validate(crate::apps::validate_replicated)
    .table(COLUMNS, row)
    .status(true);

fn defaults(ss: &mut StatefulSet) {
    let spec = ss.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    if strategy.type_.as_deref().is_none_or(str::is_empty) {
        strategy.type_ = Some("RollingUpdate".to_string());
        set(
            &mut strategy.rolling_update,
            RollingUpdateStatefulSetStrategy::default(),
        );
    }
    if strategy.type_.as_deref() == Some("RollingUpdate")
        && let Some(ru) = &mut strategy.rolling_update
    {
        set(&mut ru.partition, 0);
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    set_str(&mut retention.when_deleted, "Retain");
    set_str(&mut retention.when_scaled, "Retain");
    set(&mut spec.replicas, 1);
    set(&mut spec.revision_history_limit, 10);
    pod_defaults::template(&mut spec.template);
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        if let Some(cs) = &mut claim.spec {
            set_str(&mut cs.volume_mode, "Filesystem");
        }
    }
}

static COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "Names of each container in the template."),
    wide(
        "Images",
        "Images referenced by each container in the template.",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let desired = at(obj, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let (containers, images) = containers_and_images(at(obj, &["spec", "template", "spec"]));
    vec![
        name_cell(obj),
        s(format!("{}/{desired}", status_int(obj, "readyReplicas"))),
        age_cell(obj, now),
        containers,
        images,
    ]
}
