//! Instants as milliseconds since the Unix epoch, and their one text form on the wire:
//! ISO-8601 UTC with milliseconds, `2025-07-15T12:34:56.000Z`.
//!
//! Pure calendar arithmetic (Howard Hinnant's `days_from_civil` / `civil_from_days`), so the
//! domain needs no date crate. Parsing is deliberately narrow: `YYYY-MM-DDTHH:MM:SS[.f]Z`
//! with 1–9 fraction digits, upper-case `T` and `Z`, no offsets; a non-zero digit below the
//! millisecond is rejected rather than truncated, because summaries filter at millisecond
//! precision and must see exactly the instant the client meant.

/// Why a timestamp text was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
    #[error("expected an ISO-8601 UTC timestamp like 2025-07-15T12:34:56.000Z")]
    Shape,
    /// Shaped right, but no such date or time (month 13, February 30, hour 24, ...).
    #[error("not a valid calendar date and time")]
    NotADate,
    /// A non-zero digit below the millisecond.
    #[error("timestamps are precise to the millisecond; sub-millisecond digits must be zero")]
    SubMillisecond,
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

const MS_PER_DAY: i64 = 86_400_000;

/// Formats ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (years 0000–9999; instants
/// outside are clamped to that range, which no real payment reaches).
pub fn format_ms(unix_ms: i64) -> String {
    let min = days_from_civil(0, 1, 1) * MS_PER_DAY;
    let max = days_from_civil(10_000, 1, 1) * MS_PER_DAY - 1;
    let unix_ms = unix_ms.clamp(min, max);
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let in_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1_000 % 60, in_day % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into ms since the epoch.
pub fn parse_ms(text: &str) -> Result<i64, TimestampError> {
    let bytes = text.as_bytes();
    if !(20..=30).contains(&bytes.len()) {
        return Err(TimestampError::Shape);
    }
    let at = |i: usize, b: u8| bytes.get(i) == Some(&b);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':'))
        || bytes.last() != Some(&b'Z')
    {
        return Err(TimestampError::Shape);
    }
    let number = |from: usize, to: usize| -> Result<u32, TimestampError> {
        bytes[from..to].iter().try_fold(0u32, |value, &digit| {
            if digit.is_ascii_digit() {
                Ok(value * 10 + u32::from(digit - b'0'))
            } else {
                Err(TimestampError::Shape)
            }
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let milli = match &bytes[19..bytes.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(TimestampError::Shape);
            }
            let (ms_digits, below) = digits.split_at(digits.len().min(3));
            if below.iter().any(|&d| d != b'0') {
                return Err(TimestampError::SubMillisecond);
            }
            let value = number(20, 20 + ms_digits.len())?;
            value * 10u32.pow(3 - ms_digits.len() as u32)
        }
        _ => return Err(TimestampError::Shape),
    };
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(TimestampError::NotADate);
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(TimestampError::NotADate);
    }
    let seconds_in_day = i64::from(hour * 3_600 + minute * 60 + second);
    Ok(days_from_civil(year, month, day) * MS_PER_DAY + seconds_in_day * 1_000 + i64::from(milli))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_ms("1970-01-01T00:00:00.000Z"), Ok(0));
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_ms("2025-07-15T12:34:56.789Z"), Ok(1_752_582_896_789));
        assert_eq!(parse_ms("2025-07-15T12:34:56.7Z"), Ok(1_752_582_896_700));
        assert_eq!(
            parse_ms("2025-07-15T12:34:56.789000Z"),
            Ok(1_752_582_896_789)
        );
        assert_eq!(parse_ms("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(parse_ms("2024-02-29T00:00:00.000Z"), Ok(1_709_164_800_000));
        assert_eq!(format_ms(1_752_582_896_789), "2025-07-15T12:34:56.789Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rejects_what_is_not_an_instant() {
        use TimestampError::{NotADate, Shape, SubMillisecond};
        for (text, error) in [
            ("", Shape),
            ("2025-07-15 12:34:56.000Z", Shape),
            ("2025-07-15T12:34:56.000", Shape),
            ("2025-07-15T12:34:56.000+00:00", Shape),
            ("2025-07-15t12:34:56.000z", Shape),
            ("2025-07-15T12:34:56.Z", Shape),
            ("2025-07-15T12:34:56.0000000000Z", Shape),
            ("2025-7-15T12:34:56.000Z", Shape),
            ("2025-07-15T12:34:56.00aZ", Shape),
            ("2025-13-01T00:00:00.000Z", NotADate),
            ("2025-02-29T00:00:00.000Z", NotADate),
            ("2100-02-29T00:00:00.000Z", NotADate),
            ("2025-04-31T00:00:00.000Z", NotADate),
            ("2025-07-15T24:00:00.000Z", NotADate),
            ("2025-07-15T12:60:00.000Z", NotADate),
            ("2025-07-15T12:34:60.000Z", NotADate),
            ("2025-07-15T12:34:56.0001Z", SubMillisecond),
        ] {
            assert_eq!(parse_ms(text), Err(error), "{text}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in -62_000_000_000_000i64..253_000_000_000_000i64) {
            prop_assert_eq!(parse_ms(&format_ms(ms)), Ok(ms));
        }

        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse_ms(&text);
        }
    }
}
