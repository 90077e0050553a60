//! Points in time (whole seconds since the Unix epoch, UTC) and how people and programs read them.

use std::fmt;
use std::ops::{Add, Sub};

use serde::{Deserialize, Serialize};

/// A point in time, to the second. Stored as the number of seconds since the epoch (what DynamoDB's
/// TTL reads); shown with [`human`] and [`rfc3339`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs)
    }

    pub const fn as_secs(self) -> i64 {
        self.0
    }

    /// The number of the `len`-second window (counted from the epoch) this point falls in.
    pub const fn window(self, len: i64) -> i64 {
        self.0.div_euclid(len)
    }

    /// The seconds from this point to the end of its `len`-second window.
    pub const fn secs_left_in_window(self, len: i64) -> i64 {
        len - self.0.rem_euclid(len)
    }
}

/// `time + seconds`: the point that many seconds later.
impl Add<i64> for Timestamp {
    type Output = Timestamp;

    fn add(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }
}

/// `time - seconds`: the point that many seconds earlier.
impl Sub<i64> for Timestamp {
    type Output = Timestamp;

    fn sub(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_sub(secs))
    }
}

/// `later - earlier`: the seconds between two points.
impl Sub for Timestamp {
    type Output = i64;

    fn sub(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// The stored form: seconds since the epoch.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

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
pub fn human(time: Timestamp) -> String {
    let (y, mo, d, h, mi, _) = civil(time.0);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

/// `2026-12-04`: the day (UTC), for a list's column.
pub fn day(time: Timestamp) -> String {
    let (y, mo, d, ..) = civil(time.0);
    format!("{y:04}-{mo:02}-{d:02}")
}

/// `2026-12-04T09:30:00Z`, for JSON.
pub fn rfc3339(time: Timestamp) -> String {
    let (y, mo, d, h, mi, s) = civil(time.0);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Reads a UTC RFC 3339 time (`2026-12-04T09:30:00Z`, fractions of a second ignored), as AWS
/// writes them in failure records; `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, d) = (date.next()??, date.next()??, date.next()??);
    let time = time.split('.').next()?;
    let mut time = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (time.next()??, time.next()??, time.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // days-from-civil, the inverse of `civil`.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if mo > 2 { mo - 3 } else { mo + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp(days * 86_400 + h * 3600 + mi * 60 + sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_back_what_they_write() {
        for secs in [0, 1_800_000_000, 951_782_400, 1_709_164_800 + 86_399] {
            assert_eq!(parse_rfc3339(&rfc3339(Timestamp(secs))), Some(Timestamp(secs)));
        }
        assert_eq!(parse_rfc3339("2027-01-15T08:00:00.123Z"), Some(Timestamp(1_800_000_000)));
        for bad in ["", "2027-01-15", "2027-13-01T00:00:00Z", "2027-01-15T08:00:00", "x-01-15T08:00:00Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_utc_times() {
        let cases = [
            (0, "1970-01-01 00:00 UTC", "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29 00:00 UTC", "2000-02-29T00:00:00Z"),
            (1_800_000_000, "2027-01-15 08:00 UTC", "2027-01-15T08:00:00Z"),
            (1_798_761_599, "2026-12-31 23:59 UTC", "2026-12-31T23:59:59Z"),
        ];
        for (secs, shown, iso) in cases {
            let time = Timestamp::from_secs(secs);
            assert_eq!((human(time).as_str(), rfc3339(time).as_str()), (shown, iso));
            assert_eq!(day(time), shown[..10], "the day alone");
        }
    }
}
