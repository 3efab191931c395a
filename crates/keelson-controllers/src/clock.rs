//! The controllers' clock: real time by default, or any time source tests drive.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where "now" comes from.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn real() -> Clock {
        Clock(Arc::new(jiff::Timestamp::now))
    }

    /// The system clock shifted by `offset`.
    pub fn offset(offset: jiff::SignedDuration) -> Clock {
        Clock(Arc::new(move || jiff::Timestamp::now() + offset))
    }

    /// The system clock shifted by an offset that the returned [`ClockDriver`] moves
    /// forward (for tests that drive time from outside the crate).
    pub fn driven() -> (Clock, ClockDriver) {
        let offset = Arc::new(Mutex::new(Duration::ZERO));
        let read = offset.clone();
        let clock = Clock(Arc::new(move || {
            let d = read.lock().map(|d| *d).unwrap_or_default();
            jiff::Timestamp::now() + jiff::SignedDuration::try_from(d).unwrap_or_default()
        }));
        (clock, ClockDriver(offset))
    }

    /// Any time source.
    pub fn from_fn(f: impl Fn() -> jiff::Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> jiff::Timestamp {
        (self.0)()
    }
}

/// Moves a [`Clock::driven`] clock forward.
#[derive(Clone, Debug)]
pub struct ClockDriver(Arc<Mutex<Duration>>);

impl ClockDriver {
    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut d) = self.0.lock() {
            *d += by;
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::real()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_driven_clocks() {
        let real = Clock::real().now();
        let ahead = Clock::offset(jiff::SignedDuration::from_hours(1)).now();
        let diff = ahead.duration_since(real).as_secs();
        assert!((3599..=3601).contains(&diff), "{diff}");
        let fixed: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        assert_eq!(Clock::from_fn(move || fixed).now(), fixed);
        let (clock, driver) = Clock::driven();
        driver.advance(Duration::from_secs(120));
        let diff = clock.now().duration_since(jiff::Timestamp::now()).as_secs();
        assert!((119..=120).contains(&diff), "{diff}");
    }
}
