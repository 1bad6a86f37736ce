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

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_735_689_600_000_000_000), "2025-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400_000_000_000 + 3_661_000_000_000), "2000-02-29T01:01:01Z");
        assert_eq!(super::utc_ns(1_735_689_600_000_250_000), "2025-01-01T00:00:00.000250000Z");
        assert_eq!(super::utc_micros(1_735_689_600_000_250_999), "2025-01-01T00:00:00.000250Z");
    }
}
