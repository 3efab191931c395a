//! Human durations of the AGE column, at upstream's thresholds.

use std::time::Duration;

use keelson_apimachinery::duration::{age, human_duration, short_human_duration};

const S: u64 = 1;
const M: u64 = 60;
const H: u64 = 3600;
const D: u64 = 24 * H;
const Y: u64 = 365 * D;

fn check(f: fn(Duration) -> String, cases: &[(u64, &str)]) {
    for (secs, want) in cases {
        assert_eq!(f(Duration::from_secs(*secs)), *want, "{secs}s");
    }
}

#[test]
fn human_duration_thresholds() {
    check(
        human_duration,
        &[
            (0, "0s"),
            (59 * S, "59s"),
            (119 * S, "119s"),
            (2 * M, "2m"),
            (2 * M + 3, "2m3s"),
            (9 * M + 59, "9m59s"),
            (10 * M, "10m"),
            (10 * M + 30, "10m"),
            (179 * M, "179m"),
            (3 * H, "3h"),
            (3 * H + 5 * M, "3h5m"),
            (7 * H + 59 * M + 59, "7h59m"),
            (8 * H, "8h"),
            (47 * H, "47h"),
            (48 * H, "2d"),
            (2 * D + 3 * H, "2d3h"),
            (7 * D + 23 * H, "7d23h"),
            (8 * D, "8d"),
            (729 * D, "729d"),
            (2 * Y, "2y"),
            (2 * Y + 10 * D, "2y10d"),
            (7 * Y + 364 * D, "7y364d"),
            (8 * Y, "8y"),
            (8 * Y + 100 * D, "8y"),
        ],
    );
}

#[test]
fn human_duration_ignores_subseconds() {
    assert_eq!(human_duration(Duration::from_millis(1999)), "1s");
    assert_eq!(human_duration(Duration::from_millis(130_500)), "2m10s");
}

#[test]
fn short_human_duration_thresholds() {
    check(
        short_human_duration,
        &[
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (59 * M + 59, "59m"),
            (H, "1h"),
            (23 * H, "23h"),
            (D, "1d"),
            (364 * D, "364d"),
            (Y, "1y"),
            (3 * Y, "3y"),
        ],
    );
}

#[test]
fn age_from_timestamps() {
    let now: jiff::Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
    let cases = [
        (None, "<unknown>"),
        (Some("not a time"), "<unknown>"),
        (Some(""), "<unknown>"),
        (Some("2024-05-01T12:00:00Z"), "0s"),
        (Some("2024-05-01T11:59:30Z"), "30s"),
        (Some("2024-05-01T11:55:00Z"), "5m"),
        (Some("2024-04-30T12:00:00Z"), "24h"),
        (Some("2024-04-25T09:00:00Z"), "6d3h"),
        (Some("2024-05-01T12:00:01Z"), "0s"),
        (Some("2024-05-01T12:00:05Z"), "<invalid>"),
    ];
    for (created, want) in cases {
        assert_eq!(age(created, now), want, "{created:?}");
    }
}
