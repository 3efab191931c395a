//! Per-key exponential back-off for failed reconciles (5 ms doubling to 60 s, as upstream's
//! default controller rate limiter), reset when a reconcile succeeds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_millis(5);
const MAX: Duration = Duration::from_secs(60);

/// Failure counts per key.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure.
    pub fn next(&self, key: &str) -> Duration {
        let Ok(mut m) = self.failures.lock() else {
            return MAX;
        };
        let n = m.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        BASE.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(20)))
            .min(MAX)
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let b = Backoff::default();
        let got: Vec<u128> = (0..4).map(|_| b.next("k").as_millis()).collect();
        assert_eq!(got, [5, 10, 20, 40]);
        for _ in 0..30 {
            b.next("k");
        }
        assert_eq!(b.next("k"), MAX);
        b.reset("k");
        assert_eq!(b.next("k").as_millis(), 5);
    }
}
