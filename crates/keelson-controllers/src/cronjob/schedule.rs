//! Cron schedules as upstream's CronJob reads them (robfig/cron's standard parser): five
//! fields, names for months and weekdays, ranges, steps, lists, `@hourly`-style macros, and
//! the day-of-month / day-of-week "either" rule when both are restricted.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A bad schedule or time zone.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected exactly 5 fields, found {0}: {1:?}")]
    Fields(usize, String),
    #[error("unrecognized descriptor: {0:?}")]
    Descriptor(String),
    #[error("failed to parse int from {0:?}")]
    Number(String),
    #[error("{what} ({value}) {bound} of range ({min}-{max}): {field:?}")]
    Range {
        what: &'static str,
        value: u32,
        bound: &'static str,
        min: u32,
        max: u32,
        field: String,
    },
    #[error("step of range should be a positive number: {0:?}")]
    Step(String),
    #[error("unknown time zone {0}")]
    TimeZone(String),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Day of month or day of week was `*` or `?`: both must match then, else either.
    day_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn value(s: &str, b: &Bounds) -> Result<u32> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + b.min);
    }
    s.parse().map_err(|_| Error::Number(s.to_string()))
}

/// One comma-separated part of a field: returns its bits and whether it was a star.
fn part(p: &str, b: &Bounds) -> Result<(u64, bool)> {
    let (range, step) = match p.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().map_err(|_| Error::Number(s.to_string()))?;
            if step == 0 {
                return Err(Error::Step(p.to_string()));
            }
            (r, Some(step))
        }
        None => (p, None),
    };
    let star = range == "*" || range == "?";
    let (lo, hi) = if star {
        (b.min, b.max)
    } else if let Some((a, z)) = range.split_once('-') {
        (value(a, b)?, value(z, b)?)
    } else {
        let v = value(range, b)?;
        (v, if step.is_some() { b.max } else { v })
    };
    let range_err = |what, value, bound, field: &str| Error::Range {
        what,
        value,
        bound,
        min: b.min,
        max: b.max,
        field: field.to_string(),
    };
    if lo < b.min {
        return Err(range_err("beginning", lo, "below", p));
    }
    if hi > b.max {
        return Err(range_err("end", hi, "above", p));
    }
    if lo > hi {
        return Err(range_err("beginning", lo, "beyond end", p));
    }
    let mut bits = 0u64;
    let mut v = lo;
    while v <= hi {
        bits |= 1 << v;
        v += step.unwrap_or(1);
    }
    Ok((bits, star))
}

fn field(f: &str, b: &Bounds) -> Result<(u64, bool)> {
    let mut bits = 0;
    let mut star = false;
    for p in f.split(',') {
        let (b2, s) = part(p, b)?;
        bits |= b2;
        star |= s;
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule such as `*/5 * * * *`, `0 9 * * MON-FRI` or `@daily`.
    pub fn parse(spec: &str) -> Result<Schedule> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(Error::Descriptor(s.to_string())),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, dom, mo, dow] = fields[..] else {
            return Err(Error::Fields(fields.len(), spec.to_string()));
        };
        let (dom, dom_star) = field(dom, &DOM)?;
        let (mut dow, dow_star) = field(&dow.replace('7', "0"), &DOW)?;
        dow &= 0x7f;
        Ok(Schedule {
            minute: field(mi, &MINUTE)?.0,
            hour: field(h, &HOUR)?.0,
            dom,
            month: field(mo, &MONTH)?.0,
            dow,
            day_star: dom_star || dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, in `tz`; none within five years.
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        // The next whole minute after `after`.
        let mut t: DateTime = start.with().second(0).subsec_nanosecond(0).build().ok()?;
        t = t.checked_add(1.minute()).ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if self.month & (1 << t.month()) == 0 {
                let first = t.date().first_of_month().checked_add(1.month()).ok()?;
                t = first.to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hour & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minute & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }

    /// The latest scheduled time in `(earliest, now]` and how many there were (counting
    /// stops past 100, as upstream only warns about too many missed starts).
    pub fn most_recent(
        &self,
        earliest: Timestamp,
        now: Timestamp,
        tz: &TimeZone,
    ) -> (Option<Timestamp>, usize) {
        let mut last = None;
        let mut count = 0;
        let mut t = earliest;
        while let Some(next) = self.next(t, tz) {
            if next > now || count > 100 {
                break;
            }
            last = Some(next);
            count += 1;
            t = next;
        }
        if count > 100 {
            // Skip to the last one without walking every time in between: look back over
            // growing windows until one holds a scheduled time.
            for hours in [1, 24, 24 * 32, 24 * 366] {
                let mut probe = (now - jiff::SignedDuration::from_hours(hours)).max(t);
                while let Some(next) = self.next(probe, tz) {
                    if next > now {
                        break;
                    }
                    last = Some(next);
                    probe = next;
                }
                if last.is_some_and(|l| l > t) {
                    break;
                }
            }
        }
        (last, count)
    }
}

/// The time zone of a CronJob (`spec.timeZone`), UTC when unset.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone> {
    match name {
        None | Some("") => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| Error::TimeZone(n.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn check(spec: &str, tz: &str, after: &str, want: &[&str]) {
        let sched = Schedule::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let tz = time_zone(Some(tz)).expect("tz");
        let mut t = ts(after);
        let mut got = Vec::new();
        for _ in want {
            t = sched.next(t, &tz).expect("a next time");
            got.push(t.to_string());
        }
        assert_eq!(got, want, "{spec} in {tz:?} after {after}");
    }

    #[test]
    fn next_times() {
        check(
            "*/1 * * * *",
            "UTC",
            "2026-01-01T00:00:30Z",
            &["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
        );
        check(
            "*/15 * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"],
        );
        check(
            "@hourly",
            "UTC",
            "2026-01-01T00:59:59Z",
            &["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"],
        );
        check(
            "@daily",
            "UTC",
            "2026-01-01T10:00:00Z",
            &["2026-01-02T00:00:00Z"],
        );
        check(
            "@weekly",
            "UTC",
            "2026-01-01T10:00:00Z",
            &["2026-01-04T00:00:00Z"],
        );
        check(
            "@monthly",
            "UTC",
            "2026-01-31T10:00:00Z",
            &["2026-02-01T00:00:00Z"],
        );
        check(
            "@yearly",
            "UTC",
            "2026-03-01T00:00:00Z",
            &["2027-01-01T00:00:00Z"],
        );
        // Weekdays by name and range: 2026-01-02 is a Friday.
        check(
            "30 9 * * MON-FRI",
            "UTC",
            "2026-01-02T10:00:00Z",
            &["2026-01-05T09:30:00Z", "2026-01-06T09:30:00Z"],
        );
        check(
            "0 0 * * 7",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T00:00:00Z"],
        );
        // Both day fields restricted: either matches (the 13th, or a Friday).
        check(
            "0 0 13 * 5",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-02T00:00:00Z",
                "2026-01-09T00:00:00Z",
                "2026-01-13T00:00:00Z",
            ],
        );
        check(
            "0 12 1,15 feb *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-02-01T12:00:00Z",
                "2026-02-15T12:00:00Z",
                "2027-02-01T12:00:00Z",
            ],
        );
        check(
            "5-10/5 1 * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T01:05:00Z",
                "2026-01-01T01:10:00Z",
                "2026-01-02T01:05:00Z",
            ],
        );
        check(
            "0 0 29 2 *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2028-02-29T00:00:00Z"],
        );
        // In a time zone: 9:00 in New York is 14:00 UTC in winter, 13:00 in summer.
        check(
            "0 9 * * *",
            "America/New_York",
            "2026-03-07T15:00:00Z",
            &["2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"],
        );
        check(
            "0 9 * * *",
            "America/New_York",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T14:00:00Z"],
        );
    }

    #[test]
    fn bad_schedules() {
        for (spec, want) in [
            ("* * * *", "expected exactly 5 fields, found 4: \"* * * *\""),
            ("@fortnightly", "unrecognized descriptor: \"@fortnightly\""),
            ("61 * * * *", "end (61) above of range (0-59): \"61\""),
            ("* * 0 * *", "beginning (0) below of range (1-31): \"0\""),
            (
                "*/0 * * * *",
                "step of range should be a positive number: \"*/0\"",
            ),
            ("x * * * *", "failed to parse int from \"x\""),
        ] {
            assert_eq!(
                Schedule::parse(spec).map_err(|e| e.to_string()),
                Err(want.to_string()),
                "{spec}"
            );
        }
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn most_recent_counts_missed_times() {
        let s = Schedule::parse("*/10 * * * *").expect("parse");
        let (t, n) = s.most_recent(
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T00:35:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(
            (t.map(|t| t.to_string()), n),
            (Some("2026-01-01T00:30:00Z".into()), 3)
        );
        let (t, n) = s.most_recent(
            ts("2026-01-01T00:30:00Z"),
            ts("2026-01-01T00:35:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!((t, n), (None, 0));
        // Years of missed minutes: still the latest.
        let m = Schedule::parse("* * * * *").expect("parse");
        let (t, n) = m.most_recent(
            ts("2024-01-01T00:00:00Z"),
            ts("2026-01-01T00:35:30Z"),
            &TimeZone::UTC,
        );
        assert_eq!(
            t.map(|t| t.to_string()),
            Some("2026-01-01T00:35:00Z".into())
        );
        assert!(n > 100);
    }
}
