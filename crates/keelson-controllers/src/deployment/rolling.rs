//! RollingUpdate arithmetic, pure: maxSurge and maxUnavailable from numbers or percentages
//! (surge rounds up, unavailability down, never both zero), how far the new ReplicaSet may
//! grow and how far old ones may shrink.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// An int-or-percent against `total`, rounded up or down.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool, default_pct: i32) -> i32 {
    let pct = |p: i32| {
        let x = i64::from(p) * i64::from(total);
        (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
    };
    match v {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse().ok())
            .map(pct)
            .unwrap_or(0),
        None => pct(default_pct),
    }
}

/// (maxSurge, maxUnavailable) for `replicas`; when both resolve to 0, unavailability is 1.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let surge = scaled_value(max_surge, replicas, true, 25).max(0);
    let unavailable = scaled_value(max_unavailable, replicas, false, 25).max(0);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// The replicas the new ReplicaSet should have: at most `replicas + surge` pods in all.
pub fn new_rs_replicas(replicas: i32, surge: i32, new_current: i32, all_current: i32) -> i32 {
    if new_current >= replicas {
        return replicas;
    }
    let max_total = replicas.saturating_add(surge);
    if all_current >= max_total {
        return new_current;
    }
    new_current.saturating_add(
        max_total
            .saturating_sub(all_current)
            .min(replicas.saturating_sub(new_current)),
    )
}

/// One ReplicaSet as the arithmetic sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// spec.replicas
    pub replicas: i32,
    /// status.availableReplicas
    pub available: i32,
}

/// New spec.replicas for each of `old` (oldest first), given the new ReplicaSet's counts:
/// first unhealthy pods go, then available ones while at least `replicas - unavailable`
/// pods stay available.
pub fn scale_down_old(old: &[Counts], new: Counts, replicas: i32, unavailable: i32) -> Vec<i32> {
    let mut out: Vec<i32> = old.iter().map(|c| c.replicas).collect();
    let old_total: i32 = out.iter().fold(0i32, |a, b| a.saturating_add(*b));
    if old_total == 0 {
        return out;
    }
    let all_total = old_total.saturating_add(new.replicas);
    let min_available = replicas.saturating_sub(unavailable);
    let new_unavailable = new.replicas.saturating_sub(new.available);
    let mut budget = all_total
        .saturating_sub(min_available)
        .saturating_sub(new_unavailable);
    if budget <= 0 {
        return out;
    }
    // Unhealthy pods of old ReplicaSets first: they do not count towards availability.
    for (i, c) in old.iter().enumerate() {
        if budget <= 0 {
            break;
        }
        let unhealthy = out[i].saturating_sub(c.available).max(0);
        let n = unhealthy.min(budget);
        out[i] -= n;
        budget -= n;
    }
    // Then available pods, while enough stay available.
    let available = old
        .iter()
        .fold(new.available, |a, c| a.saturating_add(c.available));
    let mut can_remove = available.saturating_sub(min_available);
    for slot in out.iter_mut() {
        if can_remove <= 0 {
            break;
        }
        let n = (*slot).min(can_remove);
        *slot -= n;
        can_remove -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> IntOrString {
        IntOrString::String(v.into())
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        // (maxSurge, maxUnavailable, replicas, want)
        let cases = [
            (Some(s("25%")), Some(s("25%")), 3, (1, 0)),
            (Some(s("25%")), Some(s("25%")), 4, (1, 1)),
            (Some(s("25%")), Some(s("25%")), 10, (3, 2)),
            (
                Some(IntOrString::Int(0)),
                Some(IntOrString::Int(0)),
                3,
                (0, 1),
            ),
            (Some(IntOrString::Int(2)), Some(s("50%")), 5, (2, 2)),
            (None, None, 1, (1, 0)),
        ];
        for (surge, unavailable, replicas, want) in cases {
            assert_eq!(
                resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), replicas),
                want,
                "{surge:?} {unavailable:?} {replicas}"
            );
        }
    }

    #[test]
    fn new_replica_set_grows_within_the_surge() {
        // (replicas, surge, new, all, want)
        for (replicas, surge, new, all, want) in [
            (3, 1, 0, 3, 1),
            (3, 1, 1, 4, 1),
            (3, 1, 1, 3, 2),
            (3, 0, 0, 2, 1),
            (3, 1, 3, 3, 3),
            (3, 1, 5, 5, 3),
            (10, 3, 0, 10, 3),
        ] {
            assert_eq!(
                new_rs_replicas(replicas, surge, new, all),
                want,
                "{replicas} {surge} {new} {all}"
            );
        }
    }

    fn c(replicas: i32, available: i32) -> Counts {
        Counts {
            replicas,
            available,
        }
    }

    #[test]
    fn old_replica_sets_shrink_while_enough_stay_available() {
        // maxUnavailable 0: nothing goes until the new pods are available.
        assert_eq!(scale_down_old(&[c(3, 3)], c(1, 0), 3, 0), [3]);
        assert_eq!(scale_down_old(&[c(3, 3)], c(1, 1), 3, 0), [2]);
        // maxUnavailable 1 with 3 replicas: one old pod may go at once.
        assert_eq!(scale_down_old(&[c(3, 3)], c(0, 0), 3, 1), [2]);
        // Unavailable old pods go first, without counting against availability.
        assert_eq!(scale_down_old(&[c(3, 1)], c(1, 1), 3, 0), [2]);
        // The oldest ReplicaSet shrinks first.
        assert_eq!(scale_down_old(&[c(2, 2), c(2, 2)], c(2, 2), 4, 0), [0, 2]);
        assert_eq!(scale_down_old(&[c(0, 0)], c(3, 3), 3, 0), [0]);
    }
}
