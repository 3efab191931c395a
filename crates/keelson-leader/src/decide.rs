//! The election's decision as a pure function of the Lease read, what was seen before and
//! the time: create, take over or renew (a Lease to write), or wait.

use std::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use crate::Config;

/// The Lease record as last seen, and when it was seen to change.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub holder: String,
    pub renew_time: Option<jiff::Timestamp>,
    pub transitions: i32,
    /// When this process first saw this record (holder and renewal); expiry counts from here.
    pub at: Instant,
}

impl Observed {
    pub fn of(lease: &Lease, at: Instant) -> Observed {
        let spec = lease.spec.clone().unwrap_or_default();
        Observed {
            holder: spec.holder_identity.unwrap_or_default(),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
            at,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Wait,
    Create(Lease),
    Update(Lease),
}

fn spec(
    cfg: &Config,
    acquired: jiff::Timestamp,
    now: jiff::Timestamp,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// What to do about `current` (the Lease as read now). `seen` is updated to the record read
/// when it changed, so that another holder's Lease expires `lease_duration` after this process
/// last saw it renewed.
pub fn decide(
    cfg: &Config,
    current: Option<&Lease>,
    seen: &mut Option<Observed>,
    now: Instant,
    wall: jiff::Timestamp,
) -> Action {
    let Some(lease) = current else {
        return Action::Create(Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(spec(cfg, wall, wall, 0)),
        });
    };
    let read = Observed::of(lease, now);
    let changed = seen
        .as_ref()
        .is_none_or(|s| s.holder != read.holder || s.renew_time != read.renew_time);
    if changed {
        *seen = Some(read.clone());
    }
    let observed_at = seen.as_ref().map_or(now, |s| s.at);
    let old = lease.spec.clone().unwrap_or_default();
    let mine = read.holder == cfg.identity;
    let free = read.holder.is_empty();
    let duration = old
        .lease_duration_seconds
        .map(|s| std::time::Duration::from_secs(s.max(0) as u64))
        .unwrap_or(cfg.lease_duration);
    let expired = now.duration_since(observed_at) >= duration;
    if !mine && !free && !expired {
        return Action::Wait;
    }
    let (acquired, transitions) = if mine {
        (old.acquire_time.map_or(wall, |t| t.0), read.transitions)
    } else {
        (wall, read.transitions + 1)
    };
    let mut next = lease.clone();
    next.spec = Some(spec(cfg, acquired, wall, transitions));
    Action::Update(next)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg(id: &str) -> Config {
        Config::new("kube-scheduler", id.into())
    }

    fn lease(holder: &str, renewed: &str, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("kube-scheduler".into()),
                namespace: Some("kube-system".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                acquire_time: Some(MicroTime("2026-01-01T00:00:00Z".parse().unwrap())),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_transitions: Some(transitions),
                ..Default::default()
            }),
        }
    }

    fn written(a: Action) -> LeaseSpec {
        match a {
            Action::Create(l) | Action::Update(l) => l.spec.unwrap(),
            Action::Wait => panic!("expected a write, got Wait"),
        }
    }

    #[test]
    fn no_lease_is_created_with_this_holder() {
        let wall: jiff::Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        let a = decide(&cfg("a"), None, &mut None, Instant::now(), wall);
        let Action::Create(l) = a else {
            panic!("expected Create")
        };
        assert_eq!(l.metadata.namespace.as_deref(), Some("kube-system"));
        let s = l.spec.unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.lease_transitions, Some(0));
        assert_eq!(s.renew_time.unwrap().0, wall);
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_resource_version() {
        let wall: jiff::Timestamp = "2026-01-01T00:00:09Z".parse().unwrap();
        let held = lease("a", "2026-01-01T00:00:07Z", 2);
        let a = decide(&cfg("a"), Some(&held), &mut None, Instant::now(), wall);
        let Action::Update(l) = a.clone() else {
            panic!("expected Update")
        };
        assert_eq!(l.metadata.resource_version.as_deref(), Some("7"));
        let s = written(a);
        assert_eq!(s.lease_transitions, Some(2));
        assert_eq!(
            s.acquire_time.unwrap().0,
            "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(s.renew_time.unwrap().0, wall);
    }

    #[test]
    fn another_holder_is_waited_for_until_unrenewed_for_the_duration() {
        let t0 = Instant::now();
        let wall: jiff::Timestamp = "2026-01-01T00:00:09Z".parse().unwrap();
        let mut seen = None;
        let held = lease("b", "2026-01-01T00:00:07Z", 1);
        // First sight: the clock in the record is not trusted; wait a full duration from now.
        assert_eq!(
            decide(&cfg("a"), Some(&held), &mut seen, t0, wall),
            Action::Wait
        );
        let t1 = t0 + Duration::from_secs(14);
        assert_eq!(
            decide(&cfg("a"), Some(&held), &mut seen, t1, wall),
            Action::Wait
        );
        // Renewed meanwhile: the wait starts over.
        let renewed = lease("b", "2026-01-01T00:00:20Z", 1);
        assert_eq!(
            decide(&cfg("a"), Some(&renewed), &mut seen, t1, wall),
            Action::Wait
        );
        let t2 = t1 + Duration::from_secs(14);
        assert_eq!(
            decide(&cfg("a"), Some(&renewed), &mut seen, t2, wall),
            Action::Wait
        );
        // Unrenewed for 15 s as seen here: taken over, one more transition.
        let t3 = t1 + Duration::from_secs(15);
        let s = written(decide(&cfg("a"), Some(&renewed), &mut seen, t3, wall));
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.lease_transitions, Some(2));
        assert_eq!(s.acquire_time.unwrap().0, wall);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let wall: jiff::Timestamp = "2026-01-01T00:00:09Z".parse().unwrap();
        let released = lease("", "2026-01-01T00:00:07Z", 3);
        let s = written(decide(
            &cfg("a"),
            Some(&released),
            &mut None,
            Instant::now(),
            wall,
        ));
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.lease_transitions, Some(4));
    }
}
