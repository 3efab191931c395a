//! Human durations as `kubectl get` prints them in AGE columns (upstream's `HumanDuration`).

use std::time::Duration;

/// Upstream's `duration.HumanDuration`: two units of precision for recent times, one later
/// (`59s`, `2m3s`, `10m`, `3h5m`, `8h`, `2d3h`, `8d`, `2y10d`, `8y`).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_remainder(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_remainder(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// `3m` when the remainder is zero, else `3m7s`.
fn with_remainder(major: u64, major_unit: &str, minor: u64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

/// Upstream's `duration.ShortHumanDuration`: one unit (`59s`, `5m`, `3h`, `12d`, `2y`).
pub fn short_human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m", seconds / 60)
    } else if seconds < 24 * 3600 {
        format!("{}h", seconds / 3600)
    } else if seconds < 365 * 24 * 3600 {
        format!("{}d", seconds / (24 * 3600))
    } else {
        format!("{}y", seconds / (365 * 24 * 3600))
    }
}

/// The AGE of an object created at `created_rfc3339`, as upstream's
/// `translateTimestampSince`: `<unknown>` when missing or unparseable; a creation time up to
/// a second in the future reads `0s`, further is `<invalid>` (upstream's clock-skew marker).
pub fn age(created_rfc3339: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(created) = created_rfc3339.and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".to_string();
    };
    let elapsed = now.as_duration().saturating_sub(created.as_duration());
    match Duration::try_from(elapsed) {
        Ok(d) => human_duration(d),
        Err(_) if elapsed.as_secs() >= -1 => "0s".to_string(),
        Err(_) => "<invalid>".to_string(),
    }
}
