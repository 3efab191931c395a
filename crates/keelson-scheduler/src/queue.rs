//! The scheduling queue: pods waiting for a cycle (active, by priority then arrival), pods
//! backing off after a failed attempt, and unschedulable pods parked until a cluster event
//! that could help them (or a periodic flush) moves them back.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// The first back-off after a failed attempt; it doubles per attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable without a cluster event before it is retried anyway.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Popped and being scheduled; `moved` records a cluster event seen meanwhile.
    InFlight {
        moved: bool,
    },
}

struct Entry {
    pod: Arc<Pod>,
    at: Where,
    attempts: u32,
    /// Arrival order, for FIFO among equal priorities.
    seq: u64,
}

/// The queue, keyed by `namespace/name`.
#[derive(Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    /// (-priority, seq, key) of the active pods.
    active: BTreeSet<(i64, u64, String)>,
    next_seq: u64,
}

fn priority(pod: &Pod) -> i64 {
    i64::from(pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0))
}

/// Whether an update changes what scheduling looks at (not only status or bookkeeping).
fn scheduling_relevant_change(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl Queue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push_active(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.at = Where::Active;
            self.active
                .insert((-priority(&e.pod), e.seq, key.to_string()));
        }
    }

    fn remove_active(&mut self, key: &str) {
        if let Some(e) = self.entries.get(key)
            && e.at == Where::Active
        {
            self.active
                .remove(&(-priority(&e.pod), e.seq, key.to_string()));
        }
    }

    /// A pending pod was added or updated.
    pub fn add_or_update(&mut self, key: &str, pod: Arc<Pod>) {
        match self.entries.get_mut(key) {
            None => {
                self.next_seq += 1;
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        pod,
                        at: Where::Active,
                        attempts: 0,
                        seq: self.next_seq,
                    },
                );
                self.push_active(key);
            }
            Some(e) => {
                let relevant = scheduling_relevant_change(&e.pod, &pod);
                let at = e.at;
                self.remove_active(key);
                if let Some(e) = self.entries.get_mut(key) {
                    e.pod = pod;
                }
                match at {
                    Where::Active => self.push_active(key),
                    Where::Unschedulable(_) if relevant => self.push_active(key),
                    Where::InFlight { .. } if relevant => {
                        if let Some(e) = self.entries.get_mut(key) {
                            e.at = Where::InFlight { moved: true };
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The pod is gone, bound, or no longer ours.
    pub fn delete(&mut self, key: &str) {
        self.remove_active(key);
        self.entries.remove(key);
    }

    /// Moves due back-off pods (and unschedulable pods parked too long) to active, then pops
    /// the highest-priority active pod.
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Pod>> {
        self.flush(now);
        let (_, _, key) = self.active.pop_first()?;
        let e = self.entries.get_mut(&key)?;
        e.at = Where::InFlight { moved: false };
        e.attempts += 1;
        Some(e.pod.clone())
    }

    fn flush(&mut self, now: Instant) {
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| match e.at {
                Where::Backoff(t) => t <= now,
                Where::Unschedulable(since) => now.duration_since(since) >= MAX_UNSCHEDULABLE,
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.push_active(&k);
        }
    }

    fn backoff_for(attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(8);
        (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
    }

    /// A popped pod did not fit: it waits for a cluster event (or backs off if one already
    /// came while it was being scheduled).
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.at = match e.at {
            Where::InFlight { moved: true } => Where::Backoff(now + Self::backoff_for(e.attempts)),
            _ => Where::Unschedulable(now),
        };
    }

    /// A popped pod hit an error (a failed bind): it backs off and is retried.
    pub fn backoff(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.at = Where::Backoff(now + Self::backoff_for(e.attempts));
        }
    }

    /// A cluster event that may help: unschedulable pods go to back-off (or straight to
    /// active if their back-off is over); in-flight pods remember it.
    pub fn move_all(&mut self, now: Instant) {
        let mut to_active = Vec::new();
        for (k, e) in self.entries.iter_mut() {
            match e.at {
                Where::Unschedulable(since) => {
                    let until = since + Self::backoff_for(e.attempts);
                    if until <= now {
                        to_active.push(k.clone());
                    } else {
                        e.at = Where::Backoff(until);
                    }
                }
                Where::InFlight { .. } => e.at = Where::InFlight { moved: true },
                _ => {}
            }
        }
        for k in to_active {
            self.push_active(&k);
        }
    }

    /// Drops every queued pod whose key `keep` rejects.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.entries.keys().filter(|k| !keep(k)).cloned().collect();
        for k in gone {
            self.delete(&k);
        }
    }

    /// The pod's latest version, if it is queued.
    pub fn get(&self, key: &str) -> Option<&Arc<Pod>> {
        self.entries.get(key).map(|e| &e.pod)
    }

    /// Whether any pod is ready to pop at `now` (moving due back-off pods to active first).
    pub fn has_active(&mut self, now: Instant) -> bool {
        self.flush(now);
        !self.active.is_empty()
    }

    /// When the next parked pod becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.at {
                Where::Backoff(t) => Some(t),
                Where::Unschedulable(since) => Some(since + MAX_UNSCHEDULABLE),
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "c"}], "priority": priority}}))
            .expect("pod"),
        )
    }

    fn pop_names(q: &mut Queue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now))
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn pops_by_priority_then_arrival() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_or_update("default/a", pod("a", 0));
        q.add_or_update("default/b", pod("b", 10));
        q.add_or_update("default/c", pod("c", 0));
        assert_eq!(pop_names(&mut q, now), ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_then_back_off() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_or_update("default/a", pod("a", 0));
        assert!(q.pop(now).is_some());
        q.unschedulable("default/a", now);
        assert!(
            q.pop(now + Duration::from_secs(60)).is_none(),
            "parked until an event"
        );
        q.move_all(now);
        assert!(!q.has_active(now), "backs off first");
        assert!(q.has_active(now + INITIAL_BACKOFF));
        assert!(q.pop(now + INITIAL_BACKOFF).is_some());
        q.unschedulable("default/a", now);
        assert!(
            q.pop(now + MAX_UNSCHEDULABLE).is_some(),
            "flushed after the maximum wait"
        );
    }

    #[test]
    fn an_event_during_the_attempt_means_back_off_not_park() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_or_update("default/a", pod("a", 0));
        assert!(q.pop(now).is_some());
        q.move_all(now);
        q.unschedulable("default/a", now);
        assert_eq!(q.next_due(), Some(now + INITIAL_BACKOFF));
    }

    #[test]
    fn deleted_pods_leave_the_queue() {
        let mut q = Queue::default();
        q.add_or_update("default/a", pod("a", 0));
        q.delete("default/a");
        assert!(q.pop(Instant::now()).is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        assert_eq!(Queue::backoff_for(1), Duration::from_secs(1));
        assert_eq!(Queue::backoff_for(2), Duration::from_secs(2));
        assert_eq!(Queue::backoff_for(4), Duration::from_secs(8));
        assert_eq!(Queue::backoff_for(5), MAX_BACKOFF);
        assert_eq!(Queue::backoff_for(50), MAX_BACKOFF);
    }
}
