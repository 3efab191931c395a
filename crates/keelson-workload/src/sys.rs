//! Facts about the host the workload runs on (hostname, uptime, IP, DNS servers, clock) and
//! the few libc calls std does not offer (signal handlers, pause).

use std::os::raw::c_int;
use std::time::{SystemTime, UNIX_EPOCH};

unsafe extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn pause() -> c_int;
    fn _exit(code: c_int) -> !;
}

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

extern "C" fn exit_zero(_signum: c_int) {
    // Only async-signal-safe calls here: _exit skips atexit handlers and buffers.
    unsafe { _exit(0) }
}

/// Makes SIGTERM and SIGINT end the process with status 0. Needed because PID 1 in a
/// container ignores every signal it has no handler for.
pub fn exit_on_term_signals() {
    let handler = exit_zero as extern "C" fn(c_int) as usize;
    unsafe {
        signal(SIGTERM, handler);
        signal(SIGINT, handler);
    }
}

/// Sleeps until a signal handler ends the process.
pub fn sleep_forever() -> ! {
    loop {
        unsafe {
            pause();
        }
    }
}

/// The host name (the pod name inside a pod).
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Seconds since boot, as /proc/uptime gives them (e.g. `12345.67`).
pub fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "0".into())
}

/// The first non-loopback IPv4 address of this network namespace.
pub fn ip_address() -> String {
    std::fs::read_to_string("/proc/net/fib_trie")
        .ok()
        .and_then(|t| local_ipv4_from_fib_trie(&t))
        .or_else(udp_route_address)
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Local addresses are the lines followed by `/32 host LOCAL` in /proc/net/fib_trie.
fn local_ipv4_from_fib_trie(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines.windows(2).find_map(|w| {
        let addr = w[0].trim().trim_start_matches(['|', '+', '-', ' ']).trim();
        let is_local = w[1].trim() == "/32 host LOCAL";
        let ok = is_local
            && addr
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| !a.is_loopback());
        ok.then(|| addr.to_string())
    })
}

/// The source address the kernel would use for an outside destination (no packet is sent).
fn udp_route_address() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:53").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

/// Resolver settings from /etc/resolv.conf.
#[derive(Debug, Default, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub ndots: usize,
}

pub fn resolv_conf() -> ResolvConf {
    parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut rc = ResolvConf {
        ndots: 1,
        ..Default::default()
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => rc.nameservers.extend(words.next().map(String::from)),
            Some("search") | Some("domain") => rc.search = words.map(String::from).collect(),
            Some("options") => {
                for w in words {
                    if let Some(n) = w.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                        rc.ndots = n;
                    }
                }
            }
            _ => {}
        }
    }
    rc
}

/// The time as JavaScript's `Date()` prints it, in UTC:
/// `Sun Nov 22 2026 05:29:09 GMT+0000 (Coordinated Universal Time)`.
pub fn js_date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    js_date(secs)
}

pub fn js_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86400;
    let rem = unix_secs % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{} {} {:02} {} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_like_javascript() {
        let check = |secs: u64, want: &str| assert_eq!(js_date(secs), want, "{secs}");
        check(
            0,
            "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)",
        );
        check(
            951_782_400,
            "Tue Feb 29 2000 00:00:00 GMT+0000 (Coordinated Universal Time)",
        );
        check(
            1_795_325_349,
            "Sun Nov 22 2026 05:29:09 GMT+0000 (Coordinated Universal Time)",
        );
    }

    #[test]
    fn finds_local_address_in_fib_trie() {
        let trie = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 10.42.0.0
        /24 link UNICAST
     |-- 10.42.0.7
        /32 host LOCAL
";
        assert_eq!(local_ipv4_from_fib_trie(trie).as_deref(), Some("10.42.0.7"));
        assert_eq!(local_ipv4_from_fib_trie("Main:\n"), None);
    }

    #[test]
    fn parses_resolv_conf() {
        let rc = parse_resolv_conf(
            "# generated\nsearch default.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\nnameserver 8.8.8.8\noptions ndots:5\n",
        );
        assert_eq!(
            rc,
            ResolvConf {
                nameservers: vec!["10.43.0.10".into(), "8.8.8.8".into()],
                search: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into()
                ],
                ndots: 5,
            }
        );
    }
}
