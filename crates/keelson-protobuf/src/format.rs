//! Go's text forms of apimachinery values: RFC 3339 times (`Time`, `MicroTime`) and
//! `time.Duration` strings (`1h0m0s`).

/// A time in UTC; `None` when the year is outside 0000–9999.
pub struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
}

impl Civil {
    /// The UTC time `seconds` + `nanos` after the Unix epoch (`nanos` may be out of range, as
    /// Go's `time.Unix` allows).
    pub fn from_unix(seconds: i64, nanos: i64) -> Option<Civil> {
        let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000))?;
        let nanos = nanos.rem_euclid(1_000_000_000);
        let days = seconds.div_euclid(86_400);
        let secs = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return None;
        }
        Some(Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            nanos,
        })
    }

    /// `2006-01-02T15:04:05Z`, as `metav1.Time` marshals.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2006-01-02T15:04:05.000000Z`, as `metav1.MicroTime` marshals (truncated, not rounded).
    pub fn rfc3339_micro(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.nanos / 1000
        )
    }
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration.String()` of a count of nanoseconds.
pub fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (digits, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        return format!("{sign}{}{unit}", decimal(u, digits));
    }
    let seconds = u / 1_000_000_000;
    let frac = fraction(u % 1_000_000_000, 9);
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}{frac}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}{frac}s")
    } else {
        format!("{sign}{s}{frac}s")
    }
}

/// `value / 10^digits` with its fraction, trailing zeros dropped.
fn decimal(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    format!("{}{}", value / scale, fraction(value % scale, digits))
}

/// `.ddd` of a fraction with `digits` digits, trailing zeros dropped; empty for 0.
fn fraction(value: u64, digits: u32) -> String {
    if value == 0 {
        return String::new();
    }
    let text = format!("{value:0width$}", width = digits as usize);
    format!(".{}", text.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them() {
        let check = |nanos: i64, want: &str| assert_eq!(go_duration(nanos), want, "{nanos}");
        check(0, "0s");
        check(1, "1ns");
        check(1_500, "1.5µs");
        check(2_000_000, "2ms");
        check(1_500_000_000, "1.5s");
        check(90_000_000_000, "1m30s");
        check(3_600_000_000_000, "1h0m0s");
        check(-5_000_000_000, "-5s");
        check(259_200_000_000_000 + 180_500_000_000, "72h3m0.5s");
        check(i64::MIN, "-2562047h47m16.854775808s");
    }

    #[test]
    fn times_read_as_rfc3339_in_utc() {
        let check = |seconds: i64, nanos: i64, want: &str, want_micro: &str| {
            let civil = Civil::from_unix(seconds, nanos).expect("in range");
            assert_eq!(civil.rfc3339(), want);
            assert_eq!(civil.rfc3339_micro(), want_micro);
        };
        check(0, 0, "1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000000Z");
        check(
            1_767_225_600,
            0,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000000Z",
        );
        check(
            951_782_400,
            123_456_789,
            "2000-02-29T00:00:00Z",
            "2000-02-29T00:00:00.123456Z",
        );
        check(-1, 0, "1969-12-31T23:59:59Z", "1969-12-31T23:59:59.000000Z");
        check(
            10,
            -1,
            "1970-01-01T00:00:09Z",
            "1970-01-01T00:00:09.999999Z",
        );
        check(
            253_402_300_799,
            0,
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59.000000Z",
        );
        assert!(Civil::from_unix(253_402_300_800, 0).is_none());
        assert!(Civil::from_unix(i64::MAX, i64::MAX).is_none());
    }
}
