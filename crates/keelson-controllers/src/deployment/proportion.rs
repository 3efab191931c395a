//! Proportional scaling, pure: when a Deployment is resized while several of its ReplicaSets
//! hold pods (mid-rollout), the change is shared among them in proportion to their sizes, as
//! upstream does, so a rollout neither stalls nor overshoots `replicas + maxSurge`.

use std::cmp::Reverse;

/// One active ReplicaSet as proportional scaling sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active {
    /// spec.replicas
    pub replicas: i32,
    /// Its `deployment.kubernetes.io/max-replicas` annotation, when it has a valid one.
    pub max_replicas: Option<i32>,
    /// Its age rank: larger is newer.
    pub newness: usize,
}

/// The new sizes of `sets` for a Deployment of `replicas` with `surge`, whose status counted
/// `status_replicas` pods.
pub fn sizes(sets: &[Active], replicas: i32, surge: i32, status_replicas: i32) -> Vec<i32> {
    let mut out: Vec<i32> = sets.iter().map(|s| s.replicas).collect();
    let allowed = if replicas > 0 {
        replicas.saturating_add(surge)
    } else {
        0
    };
    let total = sets.iter().fold(0i32, |a, s| a.saturating_add(s.replicas));
    let to_add = allowed.saturating_sub(total);
    if to_add == 0 || sets.is_empty() {
        return out;
    }
    // Growing: the largest first, the newer of equals first; shrinking: the older first.
    let mut order: Vec<usize> = (0..sets.len()).collect();
    if to_add > 0 {
        order.sort_by_key(|&i| (Reverse(sets[i].replicas), Reverse(sets[i].newness)));
    } else {
        order.sort_by_key(|&i| (Reverse(sets[i].replicas), sets[i].newness));
    }
    let mut added = 0i32;
    for &i in &order {
        let share = fraction(&sets[i], replicas, surge, status_replicas);
        let left = to_add - added;
        let share = if to_add > 0 {
            share.min(left)
        } else {
            share.max(left)
        };
        out[i] += share;
        added += share;
    }
    // What rounding left goes to the largest.
    let first = order[0];
    out[first] = (out[first] + to_add - added).max(0);
    out
}

/// How many replicas `set` gains (or loses) to keep its share of the Deployment.
fn fraction(set: &Active, replicas: i32, surge: i32, status_replicas: i32) -> i32 {
    if replicas == 0 {
        return -set.replicas;
    }
    let now = i64::from(replicas) + i64::from(surge);
    let before = i64::from(set.max_replicas.unwrap_or(status_replicas));
    if before <= 0 {
        return 0;
    }
    let size = (i64::from(set.replicas) * now * 2 + before) / (before * 2);
    (size - i64::from(set.replicas)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(replicas: i32, max: i32, newness: usize) -> Active {
        Active {
            replicas,
            max_replicas: Some(max),
            newness,
        }
    }

    #[test]
    fn scaling_up_mid_rollout_shares_in_proportion() {
        // Upstream's example: 10 replicas, surge 3 (13 allowed), old has 8 and new 5;
        // scaled to 15 (18 allowed): 5 more shared 8:5 → old +3, new +2.
        let got = sizes(&[set(8, 13, 0), set(5, 13, 1)], 15, 3, 13);
        assert_eq!(got, vec![11, 7]);
        assert_eq!(got.iter().sum::<i32>(), 18);
    }

    #[test]
    fn scaling_down_takes_from_the_larger_and_older_first() {
        let got = sizes(&[set(6, 13, 0), set(7, 13, 1)], 5, 1, 13);
        assert_eq!(got.iter().sum::<i32>(), 6);
        assert_eq!(got, vec![3, 3]);
    }

    #[test]
    fn rounding_leftovers_go_to_the_largest() {
        let got = sizes(&[set(3, 6, 0), set(3, 6, 1)], 6, 1, 6);
        // 7 allowed, 6 held: each share rounds up to one more, but only one is there to give.
        assert_eq!(got.iter().sum::<i32>(), 7);
        assert!(got.contains(&4) && got.contains(&3), "{got:?}");
    }

    #[test]
    fn scaling_to_zero_empties_every_set() {
        assert_eq!(sizes(&[set(4, 5, 0), set(2, 5, 1)], 0, 1, 6), vec![0, 0]);
    }

    #[test]
    fn nothing_to_add_changes_nothing() {
        assert_eq!(
            sizes(&[set(8, 13, 0), set(5, 13, 1)], 10, 3, 13),
            vec![8, 5]
        );
    }

    #[test]
    fn without_a_hint_the_status_count_stands_in() {
        let a = Active {
            replicas: 4,
            max_replicas: None,
            newness: 0,
        };
        let got = sizes(&[a, set(4, 8, 1)], 16, 0, 8);
        assert_eq!(got, vec![8, 8]);
    }
}
