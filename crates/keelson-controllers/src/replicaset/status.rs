//! The status a ReplicaSet or ReplicationController reports, computed from its active pods.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::pod::{is_available, is_ready};
use crate::selector::Labels;

/// The counts both kinds report under the same field names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    /// The ReplicaFailure condition's (reason, message), when the last create or delete failed.
    pub failure: Option<(String, String)>,
}

impl ReplicaStatus {
    /// Counts `pods` (active and owned) against the template's labels.
    pub fn compute(
        pods: &[Arc<Pod>],
        template_labels: &Labels,
        min_ready_seconds: i32,
        generation: i64,
        now: jiff::Timestamp,
    ) -> Self {
        let count = |f: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| f(p)).count() as i32;
        ReplicaStatus {
            replicas: pods.len() as i32,
            fully_labeled_replicas: count(&|p| {
                let labels = p.metadata.labels.as_ref();
                template_labels
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            }),
            ready_replicas: count(&is_ready),
            available_replicas: count(&|p| is_available(p, min_ready_seconds, now)),
            observed_generation: generation,
            failure: None,
        }
    }

    /// Reads the counts back from a stored `status` (absent fields are 0).
    pub fn from_json(status: &Value) -> Self {
        let n = |f: &str| status.get(f).and_then(Value::as_i64).unwrap_or(0);
        ReplicaStatus {
            replicas: n("replicas") as i32,
            fully_labeled_replicas: n("fullyLabeledReplicas") as i32,
            ready_replicas: n("readyReplicas") as i32,
            available_replicas: n("availableReplicas") as i32,
            observed_generation: n("observedGeneration"),
            failure: status
                .get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("ReplicaFailure"))
                .map(|c| {
                    let s = |f: &str| {
                        c.get(f)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    (s("reason"), s("message"))
                }),
        }
    }

    /// The merge patch body that writes these counts (zeros as upstream omits them).
    pub fn patch(&self) -> Value {
        let opt = |n: i32| if n == 0 { Value::Null } else { json!(n) };
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": opt(self.fully_labeled_replicas),
            "readyReplicas": opt(self.ready_replicas),
            "availableReplicas": opt(self.available_replicas),
            "observedGeneration": self.observed_generation,
            "conditions": self.failure.as_ref().map(|(reason, message)| json!([{
                "type": "ReplicaFailure",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            }])),
        }})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_patch() {
        let cases = [
            ReplicaStatus::default(),
            ReplicaStatus {
                replicas: 3,
                fully_labeled_replicas: 2,
                ready_replicas: 1,
                available_replicas: 1,
                observed_generation: 4,
                failure: Some(("FailedCreate".into(), "pods \"x\" is forbidden".into())),
            },
        ];
        for want in cases {
            let patch = want.patch();
            assert_eq!(ReplicaStatus::from_json(&patch["status"]), want, "{patch}");
        }
    }
}
