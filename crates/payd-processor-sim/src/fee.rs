//! The processor's fee, in basis points, and the exact decimal text of summary numbers.
//!
//! A fee is a fraction of each payment (`0.05` = 5 % = 500 bps). It is read from decimal
//! text digit by digit and kept as an integer number of basis points, so no `f64` ever
//! touches money. Each payment's fee is rounded **half-up to the cent on its own**
//! (`19.90 × 5 % = 0.995 → 1.00`, `0.10 × 5 % = 0.005 → 0.01`, `0.09 × 5 % = 0.0045 →
//! 0.00`), and `totalFee` is the sum of those rounded fees: what a processor would actually
//! have charged, payment by payment.

/// One in basis points: a fee may not exceed the whole amount.
const BPS_PER_UNIT: u32 = 10_000;

/// Longest fee text we read; `0.0500` is six characters, a hundred is generous.
const TEXT_LEN_MAX: usize = 100;

/// Reads a fee fraction (`"0.05"` → 500 bps) exactly. Accepts `0` to `1` with at most four
/// decimal places that are not zero (`"0.0500"` is fine, `"0.00005"` is finer than a basis
/// point and rejected, `"1.5"` is more than 100 % and rejected).
pub fn parse_fee(text: &str) -> Result<u32, String> {
    let syntax = || format!("fee {text:?} is not a decimal fraction such as 0.05");
    if text.is_empty() || text.len() > TEXT_LEN_MAX {
        return Err(syntax());
    }
    let (int_digits, frac_digits) = match text.split_once('.') {
        Some((int, frac)) if !frac.is_empty() => (int, frac),
        Some(_) => return Err(syntax()),
        None => (text, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_digits.is_empty() || !all_digits(int_digits) || !all_digits(frac_digits) {
        return Err(syntax());
    }
    let frac_significant = frac_digits.trim_end_matches('0');
    if frac_significant.len() > 4 {
        return Err(format!(
            "fee {text:?} has more than 4 decimal places (finer than a basis point)"
        ));
    }
    let too_large = || format!("fee {text:?} is more than 1 (100 % of the amount)");
    let units = match int_digits.trim_start_matches('0') {
        "" => 0,
        "1" => 1,
        _ => return Err(too_large()),
    };
    let mut bps = units * BPS_PER_UNIT;
    let mut place = BPS_PER_UNIT / 10;
    for digit in frac_significant.bytes() {
        bps += u32::from(digit - b'0') * place;
        place /= 10;
    }
    if bps > BPS_PER_UNIT {
        return Err(too_large());
    }
    Ok(bps)
}

/// `bps` as a decimal fraction with at least two places: 500 → `0.05`, 1 → `0.0001`,
/// 10 000 → `1.00`. What `feePerTransaction` shows.
pub(crate) fn format_bps(bps: u32) -> String {
    let mut text = format!("{}.{:04}", bps / BPS_PER_UNIT, bps % BPS_PER_UNIT);
    // Drop the two optional trailing zeros (`0.0500` → `0.05`), never more.
    for _ in 0..2 {
        if text.ends_with('0') {
            text.pop();
        }
    }
    text
}

/// The fee on one payment of `cents` (> 0), in cents, rounded half-up to the cent. `i128`
/// because `cents × bps` can exceed `i64` for the largest accepted amounts.
pub(crate) fn fee_cents(cents: i64, bps: u32) -> i128 {
    let divisor = i128::from(BPS_PER_UNIT);
    (i128::from(cents) * i128::from(bps) + divisor / 2) / divisor
}

/// A count of cents as a decimal with exactly two places (`-0.05`, `123.45`). Totals are
/// `i128` so that no number of payments can overflow them.
pub(crate) fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let magnitude = cents.unsigned_abs();
    format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_parse_exactly() {
        for (text, bps) in [
            ("0.05", 500),
            ("0.1", 1000),
            ("0.15", 1500),
            ("0.0500", 500),
            ("0.0001", 1),
            ("0", 0),
            ("0.0", 0),
            ("00.07", 700),
            ("1", 10_000),
            ("1.0000", 10_000),
            ("0.123400000", 1234),
        ] {
            assert_eq!(parse_fee(text), Ok(bps), "{text}");
        }
    }

    #[test]
    fn bad_fees_are_rejected() {
        for text in [
            "0.00005", "1.5", "1.0001", "2", "10", "", ".05", "0.", "-0.05", "+0.05", "5%", "0,05",
            " 0.05", "1e-2", "0.05.1", "NaN",
        ] {
            assert!(parse_fee(text).is_err(), "{text:?}");
        }
        assert!(parse_fee(&format!("0.{}", "0".repeat(200))).is_err());
    }

    #[test]
    fn fee_text_round_trips() {
        for bps in 0..=BPS_PER_UNIT {
            assert_eq!(parse_fee(&format_bps(bps)), Ok(bps));
        }
        assert_eq!(format_bps(500), "0.05");
        assert_eq!(format_bps(1), "0.0001");
        assert_eq!(format_bps(1234), "0.1234");
        assert_eq!(format_bps(10_000), "1.00");
        assert_eq!(format_bps(0), "0.00");
    }

    #[test]
    fn each_fee_rounds_half_up_to_the_cent() {
        assert_eq!(fee_cents(1990, 500), 100); // 0.995 → 1.00
        assert_eq!(fee_cents(10, 500), 1); // 0.005 → 0.01
        assert_eq!(fee_cents(9, 500), 0); // 0.0045 → 0.00
        assert_eq!(fee_cents(30, 1500), 5); // 0.045 → 0.05
        assert_eq!(fee_cents(29, 1500), 4); // 0.0435 → 0.04
        assert_eq!(
            fee_cents(1_000_000_000_000_000, 10_000),
            1_000_000_000_000_000
        );
        assert_eq!(fee_cents(i64::MAX, 10_000), i128::from(i64::MAX));
    }

    #[test]
    fn cents_have_two_places_and_are_valid_json_numbers() {
        assert_eq!(format_cents(0), "0.00");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(12345), "123.45");
        assert_eq!(format_cents(-5), "-0.05");
        for cents in [0, 1, 99, 100, i128::from(i64::MAX), i128::MAX, i128::MIN] {
            let text = format_cents(cents);
            assert!(
                serde_json::value::RawValue::from_string(text.clone()).is_ok(),
                "{text}"
            );
        }
    }
}
