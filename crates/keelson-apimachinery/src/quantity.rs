//! Resource quantities (`500m`, `1.5`, `128Mi`, `1G`, `2e3`) as exact milli-units (rounded
//! up, as upstream's `MilliValue`), for every sum and comparison of resources in the project,
//! and their canonical printed form.

/// A quantity in thousandths of its unit (cores, bytes, or objects).
pub type Milli = i128;

/// Parses a Kubernetes quantity into milli-units; `None` if it is not one.
pub fn parse(s: &str) -> Option<Milli> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (sign, s) = match s.as_bytes()[0] {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // Value as a decimal: digits * 10^-frac_len.
    let joined = format!("{int_part}{frac_part}");
    if joined.is_empty() {
        return None;
    }
    let digits: i128 = joined.parse().ok()?;
    let frac_len = frac_part.len() as i32;
    let (mult_num, pow10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        e if e.starts_with(['e', 'E']) => (1, e[1..].parse().ok()?),
        _ => return None,
    };
    // milli = digits * mult * 10^(pow10 - frac_len + 3), rounded up as upstream rounds.
    let exp = pow10 - frac_len + 3;
    let base = digits.checked_mul(mult_num)?;
    let value = if exp >= 0 {
        base.checked_mul(10i128.checked_pow(exp as u32)?)?
    } else {
        let div = 10i128.checked_pow((-exp) as u32)?;
        (base + div - 1) / div
    };
    Some(sign * value)
}

/// The canonical form of a count of milli-units of `resource`: cores for cpu (`2`, `1500m`),
/// bytes with the largest exact suffix for memory and storage (`1Gi`, `500M`), else a number.
pub fn format(resource: &str, milli: Milli) -> String {
    let bytes_like = ["memory", "storage", "ephemeral-storage"]
        .iter()
        .any(|r| resource.ends_with(r));
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let v = milli / 1000;
    if !bytes_like || v == 0 {
        return v.to_string();
    }
    for (suffix, unit) in [
        ("Ei", 1i128 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if v % unit == 0 {
            return format!("{}{suffix}", v / unit);
        }
    }
    for (suffix, unit) in [
        ("E", 10i128.pow(18)),
        ("P", 10i128.pow(15)),
        ("T", 10i128.pow(12)),
        ("G", 10i128.pow(9)),
        ("M", 10i128.pow(6)),
        ("k", 1000),
    ] {
        if v % unit == 0 {
            return format!("{}{suffix}", v / unit);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_suffix_exactly() {
        let cases = [
            ("500m", Some(500)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("0.1", Some(100)),
            ("128Mi", Some(128 * 1024 * 1024 * 1000)),
            ("1G", Some(1_000_000_000_000)),
            ("2e3", Some(2_000_000)),
            ("1Ki", Some(1_024_000)),
            ("1u", Some(1)),
            ("1500n", Some(1)),
            ("-1", Some(-1000)),
            ("abc", None),
            ("1X", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{input}");
        }
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format("requests.cpu", 1500), "1500m");
        assert_eq!(format("cpu", 2000), "2");
        assert_eq!(format("requests.memory", parse("700Mi").unwrap()), "700Mi");
        assert_eq!(format("limits.memory", parse("1G").unwrap()), "1G");
        assert_eq!(format("pods", 3000), "3");
    }
}
