//! Times for people: RFC 3339 in UTC, from nanoseconds since the epoch.

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`: RFC 5424's precision (microseconds).
pub fn utc_micros(ns: u64) -> String {
    let whole = utc(ns);
    format!("{}.{:06}Z", &whole[..whole.len() - 1], ns % 1_000_000_000 / 1000)
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: every nanosecond an audit record has.
pub fn utc_ns(ns: u64) -> String {
    let whole = utc(ns);
    format!("{}.{:09}Z", &whole[..whole.len() - 1], ns % 1_000_000_000)
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` into
/// nanoseconds since the epoch; None for anything else, or a date before 1970.
pub fn parse_utc(s: &str) -> Option<u64> {
    let num = |part: &str| -> Option<i64> {
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || date.len() != 10 || !(1..=12).contains(&m) || day < 1 {
        return None;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if day > month_days[(m - 1) as usize] {
        return None;
    }
    let secs_of_day = match time {
        None => 0,
        Some(t) => {
            let mut p = t.split(':');
            let (h, mi, se) = (num(p.next()?)?, num(p.next()?)?, num(p.next()?)?);
            if p.next().is_some() || t.len() != 8 || h > 23 || mi > 59 || se > 59 {
                return None;
            }
            h * 3600 + mi * 60 + se
        }
    };
    // Days since 1970-01-01 from a civil date (H. Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + secs_of_day).ok()?.checked_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_dates() {
        for ns in [
            0,
            1_735_689_600_000_000_000,
            951_782_400_000_000_000 + 3_661_000_000_000,
            4_102_444_799_000_000_000,
        ] {
            assert_eq!(super::parse_utc(&super::utc(ns)), Some(ns));
        }
        assert_eq!(super::parse_utc("2025-01-01"), Some(1_735_689_600_000_000_000));
        for bad in [
            "2025-02-29",
            "2025-13-01",
            "2025-1-01",
            "1969-12-31",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:00",
            "+2025-01-01",
            "2025-01-01T00:00:00+01:00",
            "",
        ] {
            assert_eq!(super::parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_735_689_600_000_000_000), "2025-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400_000_000_000 + 3_661_000_000_000), "2000-02-29T01:01:01Z");
        assert_eq!(super::utc_ns(1_735_689_600_000_250_000), "2025-01-01T00:00:00.000250000Z");
        assert_eq!(super::utc_micros(1_735_689_600_000_250_999), "2025-01-01T00:00:00.000250Z");
    }
}
