//! Facts about pods that several controllers need: active, ready, available, who controls it.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Neither finished (Succeeded/Failed) nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The time the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => {
            since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now
        }
    }
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &kube::api::ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(phase: &str, ready_secs_ago: Option<i64>, deleting: bool) -> Pod {
        let now = jiff::Timestamp::now();
        let mut p = Pod::default();
        if deleting {
            p.metadata.deletion_timestamp = Some(Time(now));
        }
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: ready_secs_ago.map(|s| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(now - jiff::SignedDuration::from_secs(s))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        p
    }

    #[test]
    fn activity_readiness_and_availability() {
        let now = jiff::Timestamp::now();
        // (pod, active, ready, available with minReadySeconds 10)
        let cases = [
            (pod("Pending", None, false), true, false, false),
            (pod("Running", Some(1), false), true, true, false),
            (pod("Running", Some(60), false), true, true, true),
            (pod("Running", Some(60), true), false, true, true),
            (pod("Succeeded", None, false), false, false, false),
            (pod("Failed", None, false), false, false, false),
        ];
        for (p, active, ready, available) in cases {
            assert_eq!(is_active(&p), active, "{:?}", p.status);
            assert_eq!(is_ready(&p), ready, "{:?}", p.status);
            assert_eq!(is_available(&p, 10, now), available, "{:?}", p.status);
            assert_eq!(is_available(&p, 0, now), ready, "{:?}", p.status);
        }
    }
}
