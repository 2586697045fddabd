//! Calendar arithmetic for UTC dates and RFC 3339 timestamps, by hand because the
//! format needs only proleptic-Gregorian day numbers and whole seconds.

/// Days since 1970-01-01 (UTC). Validity windows and the lookup's `at` compare
/// whole days, because the registry's `valid_from`/`valid_until` are dates,
/// both inclusive.
pub type Day = i32;

/// Seconds per day.
pub const DAY_SECONDS: i64 = 86_400;

/// Days since the epoch for a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse `YYYY-MM-DD` (years 1970–9999) into a day number.
#[allow(clippy::many_single_char_names)]
pub fn parse_date(s: &str) -> Result<Day, String> {
    let bad = || format!("{s:?} is not a date: expected YYYY-MM-DD, e.g. 2026-11-25");
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let y = num(&s[..4]).ok_or_else(bad)?;
    let m = num(&s[5..7]).ok_or_else(bad)?;
    let d = num(&s[8..10]).ok_or_else(bad)?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) {
        return Err(bad());
    }
    if d == 0 || d > days_in_month(i64::from(y), m) {
        return Err(format!("{s:?} is not a date: that month has no day {d}"));
    }
    Ok(days_from_civil(i64::from(y), m, d) as Day)
}

/// Parse an RFC 3339 timestamp (`2025-01-02T09:00:00Z`, optional fraction,
/// `Z` or `±HH:MM`) into Unix seconds; a bare date means its midnight UTC.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    if s.len() == 10 {
        return parse_date(s).map(|d| i64::from(d) * DAY_SECONDS);
    }
    let bad = || format!("{s:?} is not an RFC 3339 timestamp: expected e.g. 2025-01-02T09:00:00Z");
    if s.len() < 20 || !s.is_ascii() {
        return Err(bad());
    }
    let day = parse_date(&s[..10]).map_err(|_| bad())?;
    let b = s.as_bytes();
    if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let hh = num(&s[11..13]).ok_or_else(bad)?;
    let mm = num(&s[14..16]).ok_or_else(bad)?;
    let ss = num(&s[17..19]).ok_or_else(bad)?;
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        rest = &frac[n..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            if rest.as_bytes()[3] != b':' {
                return Err(bad());
            }
            let oh = num(&rest[1..3]).ok_or_else(bad)?;
            let om = num(&rest[4..6]).ok_or_else(bad)?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = i64::from(oh * 3600 + om * 60);
            if rest.starts_with('-') { -o } else { o }
        }
        _ => return Err(bad()),
    };
    Ok(i64::from(day) * DAY_SECONDS + i64::from(hh * 3600 + mm * 60 + ss.min(59)) - offset)
}

/// `YYYY-MM-DD` for a day number.
pub fn format_date(day: Day) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
pub fn format_timestamp(secs: i64) -> String {
    let day = secs.div_euclid(DAY_SECONDS);
    let rem = secs.rem_euclid(DAY_SECONDS);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_date(day as Day),
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The UTC day that contains the instant.
/// Longest duration [`parse_duration`] accepts: 100 years. Anything longer is
/// a typo (`99999999999999d`), not a policy.
pub const MAX_DURATION_SECS: u64 = 100 * 366 * 86_400;

/// Parse `30d`, `72h`, `15m`, `3600s` or `2w` into seconds. The unit is
/// required: a bare `72` has been read as 72 seconds by people who meant hours.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 72h, 30d or 3600s"))?;
    let mul = match unit {
        "" => {
            return Err(format!(
                "{s:?} has no unit: write {n}s, {n}m, {n}h, {n}d or {n}w"
            ));
        }
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h, d or w")),
    };
    n.checked_mul(mul)
        .filter(|secs| *secs <= MAX_DURATION_SECS)
        .ok_or_else(|| format!("{s:?} is longer than 100 years"))
}

pub fn day_of(secs: i64) -> Day {
    secs.div_euclid(DAY_SECONDS) as Day
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for s in [
            "1970-01-01",
            "2000-02-29",
            "2026-06-30",
            "2027-01-01",
            "9999-12-31",
        ] {
            assert_eq!(format_date(parse_date(s).unwrap()), s);
        }
        assert_eq!(parse_date("1970-01-02").unwrap(), 1);
    }

    #[test]
    fn bad_dates_are_refused() {
        for s in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "26-01-01",
            "2026/01/01",
            "",
            "1969-12-31",
        ] {
            assert!(parse_date(s).is_err(), "{s}");
        }
    }

    #[test]
    fn timestamps_parse_with_offsets() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z").unwrap(), 1);
        assert_eq!(
            parse_timestamp("2026-11-25").unwrap(),
            i64::from(parse_date("2026-11-25").unwrap()) * 86_400
        );
        assert_eq!(
            format_timestamp(parse_timestamp("2025-01-02T09:00:00Z").unwrap()),
            "2025-01-02T09:00:00Z"
        );
        for s in [
            "2025-01-02T09:00:00",
            "2025-01-02T25:00:00Z",
            "2025-01-02T09:00:00+0100",
            "x",
        ] {
            assert!(parse_timestamp(s).is_err(), "{s}");
        }
    }
}
