//! Integer Unix seconds, the only time representation licenses and keysets carry, plus the UTC
//! calendar arithmetic that quota periods and human-readable messages need.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A point in time as whole seconds since the Unix epoch, UTC.
///
/// Deserializing accepts only a JSON integer between 0 and the end of year 9999: strings, floats,
/// negatives and larger numbers are refused with a message that says so, which closes the class of
/// bugs where a verifier silently skips a time check it could not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UnixTime(u64);

impl UnixTime {
    /// 9999-12-31T23:59:59Z, the latest time a license may name.
    pub const MAX: UnixTime = UnixTime(253_402_300_799);
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: UnixTime = UnixTime(0);

    /// A time from Unix seconds, refused beyond [`UnixTime::MAX`].
    pub fn from_secs(secs: u64) -> Option<Self> {
        (secs <= Self::MAX.0).then_some(Self(secs))
    }

    /// The current time from the system clock (before the epoch reads as the epoch).
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(secs.min(Self::MAX.0))
    }

    /// Seconds since the epoch.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// This time plus `secs`, saturating at [`UnixTime::MAX`].
    pub fn plus(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs).min(Self::MAX.0))
    }

    /// This time minus `secs`, saturating at the epoch.
    pub fn minus(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// Parses `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM:SSZ`, or plain Unix seconds.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().ok().and_then(Self::from_secs);
        }
        let b = text.as_bytes();
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let s = text.get(range)?;
            s.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| s.parse().ok())?
        };
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return None;
        }
        let mut secs = days_from_civil(y, m, d) * 86_400;
        if b.len() > 10 {
            if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
                return None;
            }
            let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
            if hh > 23 || mm > 59 || ss > 59 {
                return None;
            }
            secs += hh * 3600 + mm * 60 + ss;
        }
        u64::try_from(secs).ok().and_then(Self::from_secs)
    }

    /// The UTC calendar date and time: (year, month, day, hour, minute, second).
    pub fn to_civil(self) -> (i64, i64, i64, i64, i64, i64) {
        let secs = self.0 as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
    }

    /// Midnight UTC on the given calendar date (month clamped to 1–12, day to the month's
    /// length, the result to [`UnixTime::MAX`]).
    pub fn from_civil_date(year: i64, month: i64, day: i64) -> Self {
        let year = year.clamp(1970, 9999);
        let month = month.clamp(1, 12);
        let day = day.clamp(1, days_in_month(year, month));
        let secs = days_from_civil(year, month, day) * 86_400;
        Self(u64::try_from(secs).unwrap_or(0).min(Self::MAX.0))
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339 in UTC, for example `2026-11-26T21:49:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.to_civil();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnixTimeVisitor)
    }
}

struct UnixTimeVisitor;

impl Visitor<'_> for UnixTimeVisitor {
    type Value = UnixTime;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer number of Unix seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<UnixTime, E> {
        UnixTime::from_secs(v).ok_or_else(|| {
            E::custom(format_args!(
                "time {v} is after the year 9999; times are Unix seconds"
            ))
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<UnixTime, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format_args!(
                "time {v} is negative; times are Unix seconds"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<UnixTime, E> {
        Err(E::custom(format_args!(
            "time {v} is not an integer; times are integer Unix seconds"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<UnixTime, E> {
        Err(E::custom(format_args!(
            "time {v:?} is a string; times are integer Unix seconds"
        )))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (public domain algorithms).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339() {
        let t = UnixTime::parse("2026-11-26T21:49:07Z").unwrap();
        assert_eq!(t.as_secs(), 1_795_729_747);
        assert_eq!(t.to_string(), "2026-11-26T21:49:07Z");
        assert_eq!(
            UnixTime::parse("2024-02-29").unwrap().to_string(),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(UnixTime::parse("1795729747"), Some(t));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-11-26T24:00:00Z",
            "2026-11-26 21:49:07",
            "",
            "-5",
        ] {
            assert_eq!(UnixTime::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn from_civil_date_clamps_instead_of_panicking() {
        assert_eq!(
            UnixTime::from_civil_date(2026, 0, 0).to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            UnixTime::from_civil_date(2026, 13, 99).to_string(),
            "2026-12-31T00:00:00Z"
        );
        assert_eq!(
            UnixTime::from_civil_date(1900, 2, 30).to_string(),
            "1970-02-28T00:00:00Z"
        );
        assert_eq!(
            UnixTime::from_civil_date(i64::MAX, 1, 1).to_string(),
            "9999-01-01T00:00:00Z"
        );
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-1000..200_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn deserializing_refuses_everything_but_integers() {
        assert_eq!(
            serde_json::from_str::<UnixTime>("17").unwrap().as_secs(),
            17
        );
        for (bad, says) in [
            ("\"17\"", "is a string"),
            ("17.0", "not an integer"),
            ("-1", "negative"),
            ("253402300800", "after the year 9999"),
            ("1e300", "not an integer"),
            ("18446744073709551616", "not an integer"),
        ] {
            let err = serde_json::from_str::<UnixTime>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
