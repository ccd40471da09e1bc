//! Calendar dates as records carry them: `YYYY-MM-DD`, no time zone, no time of day.

use std::fmt;

/// A calendar date (proleptic Gregorian), ordered chronologically.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Date {
    /// Year (1000..=9999).
    pub year: i32,
    /// Month (1..=12).
    pub month: u8,
    /// Day (1..=31, checked against the month).
    pub day: u8,
}

impl Date {
    /// Parses `YYYY-MM-DD`, checking that the day exists.
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| {
            s.get(r).filter(|t| t.bytes().all(|c| c.is_ascii_digit())).and_then(|t| t.parse::<i32>().ok())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1000..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month as u8) as i32
        {
            return None;
        }
        Some(Date { year, month: month as u8, day: day as u8 })
    }

    /// The same day `years` years later (29 February becomes 28 February in common years).
    pub fn plus_years(&self, years: i32) -> Date {
        let year = self.year + years;
        Date { year, month: self.month, day: self.day.min(days_in_month(year, self.month)) }
    }

    /// Midnight UTC at the start of this date, in microseconds since the epoch.
    pub fn to_micros(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let (m, y) = (i64::from(self.month), i64::from(self.year) - i64::from(self.month <= 2));
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        (era * 146_097 + doe - 719_468) * 86_400_000_000
    }

    /// The date of a timestamp (UTC).
    pub fn from_micros(micros: i64) -> Date {
        let days = micros.div_euclid(86_400_000_000);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        Date { year: (y + i64::from(m <= 2)) as i32, month: m, day: d }
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl serde::Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Written on the stack: projections hold many dates, each serialized on every persist.
        let Ok(year) = u16::try_from(self.year) else { return s.collect_str(self) };
        if year > 9999 || self.month > 99 || self.day > 99 {
            return s.collect_str(self);
        }
        let mut b = *b"0000-00-00";
        let digits = |n: u16, out: &mut [u8]| {
            let mut n = n;
            for d in out.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        digits(year, &mut b[0..4]);
        digits(u16::from(self.month), &mut b[5..7]);
        digits(u16::from(self.day), &mut b[8..10]);
        s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Date;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // As a `String` would say: what is not a string is refused as before.
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Date, E> {
                Date::parse(s).ok_or_else(|| E::custom(format!("{s:?} is not a date (YYYY-MM-DD)")))
            }
        }
        // Parsed from the input where it lies, without a copy.
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_micros_round_trip_through_dates() {
        assert_eq!(Date::parse("1970-01-01").unwrap().to_micros(), 0);
        assert_eq!(Date::parse("2000-03-01").unwrap().to_micros(), 951_868_800_000_000);
        for days in (-800_000i64..800_000).step_by(997) {
            let t = days * 86_400_000_000;
            let d = Date::from_micros(t);
            if (1000..=9999).contains(&d.year) {
                assert_eq!(d.to_micros(), t, "{d}");
                assert_eq!(Date::from_micros(t + 86_399_999_999), d);
            }
        }
    }

    #[test]
    fn dates_serialize_as_their_display_and_parse_back() {
        for s in ["1000-01-01", "1999-12-31", "2024-02-29", "9999-12-31", "2020-10-05"] {
            let d = Date::parse(s).unwrap();
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{d}\""));
            assert_eq!(serde_json::from_str::<Date>(&json).unwrap(), d);
            let packed = rmp_serde::to_vec(&d).unwrap();
            assert_eq!(rmp_serde::from_slice::<Date>(&packed).unwrap(), d);
        }
        // Years outside the four digits (arithmetic can make them) serialize as Display does.
        for d in [
            Date { year: 10000, month: 1, day: 2 },
            Date { year: 999, month: 3, day: 4 },
            Date { year: -5, month: 1, day: 1 },
        ] {
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        }
        let err = |json: &str| serde_json::from_str::<Date>(json).unwrap_err().to_string();
        assert_eq!(err("\"2021-02-29\""), "\"2021-02-29\" is not a date (YYYY-MM-DD) at line 1 column 12");
        assert_eq!(err("5"), "invalid type: integer `5`, expected a string at line 1 column 1");
        // Escapes are decoded before the date is read.
        assert_eq!(serde_json::from_str::<Date>("\"2020-01-0\\u0031\"").unwrap(), Date::parse("2020-01-01").unwrap());
    }

    #[test]
    fn parses_real_dates_only() {
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert!(Date::parse("2023-02-29").is_none());
        assert!(Date::parse("2023-13-01").is_none());
        assert!(Date::parse("2023-1-01").is_none());
        assert!(Date::parse("+023-01-01").is_none());
        assert_eq!(Date::parse("2024-02-29").unwrap().plus_years(1).to_string(), "2025-02-28");
        assert_eq!(Date::from_micros(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_micros(1_700_000_000_000_000).to_string(), "2023-11-14");
        assert_eq!(Date::from_micros(-86_400_000_000).to_string(), "1969-12-31");
    }
}
