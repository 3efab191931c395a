//! Latency summaries (nearest-rank percentiles) and the outcome of one measured phase.

use std::time::Duration;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// Summarises `samples` (any order); all zero when there are none.
    pub fn of(samples: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let (Some(&min_ms), Some(&max_ms)) = (ms.first(), ms.last()) else {
            return Summary::default();
        };
        Summary {
            count: ms.len(),
            min_ms,
            p50_ms: percentile(&ms, 50.0),
            p99_ms: percentile(&ms, 99.0),
            max_ms,
        }
    }
}

/// The nearest-rank percentile `p` (0–100) of sorted values: the smallest value with at least
/// `p` % of the values at or below it. Zero for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one phase of requests produced.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// Latencies of the requests that succeeded.
    pub latencies: Vec<Duration>,
    /// Requests that failed (transport error, timeout or non-2xx answer).
    pub errors: usize,
    /// The first failure, to show the user.
    pub first_error: Option<String>,
    /// From the start of the phase to the end of its last request.
    pub elapsed: Duration,
}

impl Phase {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.latencies)
    }

    /// Successful requests per second over the phase.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.latencies.len() as f64 / secs
        } else {
            0.0
        }
    }

    /// Records the outcome of one request.
    pub fn record<E: std::fmt::Display>(&mut self, outcome: Result<Duration, E>) {
        match outcome {
            Ok(d) => self.latencies.push(d),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Adds the requests of `other` (e.g. another worker) to this phase.
    pub fn merge(&mut self, other: Phase) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn summaries() {
        fn check(samples: &[u64], want: (usize, f64, f64, f64, f64)) {
            let s = Summary::of(&ms(samples));
            assert_eq!(
                (s.count, s.min_ms, s.p50_ms, s.p99_ms, s.max_ms),
                want,
                "samples {samples:?}"
            );
        }
        check(&[], (0, 0.0, 0.0, 0.0, 0.0));
        check(&[7], (1, 7.0, 7.0, 7.0, 7.0));
        check(&[3, 1, 2], (3, 1.0, 2.0, 3.0, 3.0));
        check(&[4, 1, 3, 2], (4, 1.0, 2.0, 4.0, 4.0));
        // 1..=100: the 50th and 99th values.
        let hundred: Vec<u64> = (1..=100).rev().collect();
        check(&hundred, (100, 1.0, 50.0, 99.0, 100.0));
        // One slow request in 200 stays out of p99; three do not.
        let mut mostly_fast = vec![1; 199];
        mostly_fast.push(500);
        check(&mostly_fast, (200, 1.0, 1.0, 1.0, 500.0));
        let mut some_slow = vec![1; 197];
        some_slow.extend([500, 500, 500]);
        check(&some_slow, (200, 1.0, 1.0, 500.0, 500.0));
    }

    #[test]
    fn phases_record_and_merge() {
        let mut a = Phase {
            elapsed: Duration::from_secs(2),
            ..Phase::default()
        };
        a.record::<String>(Ok(Duration::from_millis(1)));
        a.record(Err("first"));
        let mut b = Phase {
            elapsed: Duration::from_secs(4),
            ..Phase::default()
        };
        b.record::<String>(Ok(Duration::from_millis(3)));
        b.record(Err("second"));
        a.merge(b);
        assert_eq!(a.latencies.len(), 2);
        assert_eq!(a.errors, 2);
        assert_eq!(a.first_error.as_deref(), Some("first"));
        assert_eq!(a.elapsed, Duration::from_secs(4));
        assert_eq!(a.rate(), 0.5);
        assert_eq!(Phase::default().rate(), 0.0);
    }
}
