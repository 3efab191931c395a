//! Exponential back-off per container, as the kubelet's: 10 s doubling to 5 min, forgotten
//! after 10 min without a failure.

use std::collections::HashMap;
use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(300);

/// Delays keyed by (pod UID, container name, what).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, (Duration, i64)>,
}

impl Backoff {
    /// The delay that applies after a failure at `event_ns`, if it is still running at `now_ns`.
    pub fn remaining(&self, key: &str, event_ns: i64, now_ns: i64) -> Option<Duration> {
        let (delay, _) = self.entries.get(key)?;
        let since = Duration::from_nanos((now_ns - event_ns).max(0) as u64);
        (since < *delay).then(|| *delay - since)
    }

    /// The current delay of `key` (for messages).
    pub fn delay(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(INITIAL, |e| e.0)
    }

    /// Records a retry after a failure at `event_ns`: the next delay doubles, or starts over
    /// when the last failure is long past.
    pub fn next(&mut self, key: &str, event_ns: i64) {
        let expired = |last: i64| Duration::from_nanos((event_ns - last).max(0) as u64) > MAX * 2;
        let delay = match self.entries.get(key) {
            Some((d, last)) if !expired(*last) => (*d * 2).min(MAX),
            _ => INITIAL,
        };
        self.entries.insert(key.to_string(), (delay, event_ns));
    }

    /// Forgets every key of a pod.
    pub fn forget_pod(&mut self, uid: &str) {
        self.entries.retain(|k, _| !k.starts_with(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn doubles_and_caps() {
        let mut b = Backoff::default();
        assert_eq!(b.remaining("k", 0, 0), None, "no failure yet: no back-off");
        b.next("k", 0);
        assert_eq!(b.remaining("k", 0, 4 * S), Some(Duration::from_secs(6)));
        assert_eq!(b.remaining("k", 0, 10 * S), None);
        b.next("k", 11 * S);
        assert_eq!(b.delay("k"), Duration::from_secs(20));
        for i in 0..10 {
            b.next("k", (12 + i) * S);
        }
        assert_eq!(b.delay("k"), MAX);
        b.next("k", 10_000 * S);
        assert_eq!(b.delay("k"), INITIAL, "a long quiet spell starts over");
    }
}
