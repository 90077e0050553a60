//! Times as people and programs read them (seconds since the epoch inside the portal).

/// (year, month, day, hour, minute, second) in UTC: civil-from-days, proleptic Gregorian.
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

/// `2026-12-04 09:30 UTC`, for emails and pages.
pub fn human(secs: i64) -> String {
    let (y, mo, d, h, mi, _) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

/// `2026-12-04T09:30:00Z`, for JSON.
pub fn rfc3339(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        let cases = [
            (0, "1970-01-01 00:00 UTC", "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29 00:00 UTC", "2000-02-29T00:00:00Z"),
            (1_800_000_000, "2027-01-15 08:00 UTC", "2027-01-15T08:00:00Z"),
            (1_798_761_599, "2026-12-31 23:59 UTC", "2026-12-31T23:59:59Z"),
        ];
        for (secs, shown, iso) in cases {
            assert_eq!((human(secs).as_str(), rfc3339(secs).as_str()), (shown, iso));
        }
    }
}
