//! The Deployment status `kubectl rollout status` reads: counts summed over its ReplicaSets
//! and the Available and Progressing conditions with upstream's reasons and messages.

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Progressing reasons.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// The counts for `all` ReplicaSets, `new` among them.
pub fn counts(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    generation: i64,
    collision_count: Option<i32>,
) -> DeploymentStatus {
    let sum =
        |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().fold(0i32, |a, rs| a.saturating_add(f(rs)));
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let available = sum(&|rs| st(rs).available_replicas.unwrap_or(0));
    let total = sum(&spec_replicas);
    let opt = |n: i32| (n != 0).then_some(n);
    DeploymentStatus {
        observed_generation: Some(generation),
        replicas: opt(sum(&|rs| st(rs).replicas)),
        updated_replicas: opt(new.map(|rs| st(rs).replicas).unwrap_or(0)),
        ready_replicas: opt(sum(&|rs| st(rs).ready_replicas.unwrap_or(0))),
        available_replicas: opt(available),
        unavailable_replicas: opt(total.saturating_sub(available).max(0)),
        collision_count,
        conditions: None,
        terminating_replicas: None,
    }
}

/// Sets condition `type_`, keeping its transition time when the status does not change and
/// its whole entry when nothing changes.
pub fn set_condition(
    conds: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let now = Time(jiff::Timestamp::now());
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return;
        }
        if c.status != status {
            c.last_transition_time = Some(now.clone());
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_update_time = Some(now);
        return;
    }
    conds.push(DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(now.clone()),
        last_update_time: Some(now),
    });
}

/// The condition `type_`, if set.
pub fn condition<'a>(
    conds: &'a [DeploymentCondition],
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Whether every replica is updated and available and nothing old is left.
pub fn complete(status: &DeploymentStatus, replicas: i32) -> bool {
    status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_transition_times_while_status_holds() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            "Progressing",
            "True",
            NEW_RS_CREATED,
            "Created new replica set \"a\"",
        );
        let first = conds[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        set_condition(
            &mut conds,
            "Progressing",
            "True",
            RS_UPDATED,
            "ReplicaSet \"a\" is progressing.",
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(conds[0].last_transition_time, first);
        assert_ne!(conds[0].last_update_time, first);
        set_condition(&mut conds, "Progressing", "False", DEADLINE_EXCEEDED, "x");
        assert_ne!(conds[0].last_transition_time, first);
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "y",
        );
        assert_eq!(conds.len(), 2);
    }

    #[test]
    fn completeness() {
        let s = |u, r, a| DeploymentStatus {
            updated_replicas: Some(u),
            replicas: Some(r),
            available_replicas: Some(a),
            ..Default::default()
        };
        for (st, want) in [
            (s(3, 3, 3), true),
            (s(3, 4, 3), false),
            (s(2, 3, 3), false),
            (s(3, 3, 2), false),
        ] {
            assert_eq!(complete(&st, 3), want, "{st:?}");
        }
    }
}
