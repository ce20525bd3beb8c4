//! Money as integer cents.
//!
//! [`Amount`] is a signed count of cents. Every operation that can overflow is `checked_*`,
//! and the only way in from text is [`Amount::parse`], which reads decimal notation exactly:
//! digits are counted, never converted through `f64`, so `0.1 + 0.2`-style surprises cannot
//! happen and `19.905` is rejected instead of being rounded.

use std::fmt;

/// A signed amount of money in cents (asset scale 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

/// Why a text could not become an [`Amount`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not decimal notation (empty, stray characters, a lone `.`, whitespace, ...).
    #[error("amount is not a decimal number")]
    Syntax,
    /// A non-zero digit below the cent.
    #[error("amount has more than 2 decimal places")]
    TooManyDecimals,
    /// Larger than [`Amount::MAX_INPUT`] or than an `i64` of cents.
    #[error("amount is out of range")]
    OutOfRange,
    /// Zero or negative where a positive amount is required.
    #[error("amount must be greater than zero")]
    NotPositive,
}

/// Longest decimal text we read; anything longer is rejected before any arithmetic.
const TEXT_LEN_MAX: usize = 64;

impl Amount {
    /// No money.
    pub const ZERO: Amount = Amount(0);
    /// The largest amount one request may carry: ten trillion units (10^15 cents). Far above
    /// any real payment, and small enough that sums of many such amounts stay far from
    /// `i64` overflow.
    pub const MAX_INPUT: Amount = Amount(1_000_000_000_000_000);

    /// An amount of `cents` cents.
    pub const fn from_cents(cents: i64) -> Amount {
        Amount(cents)
    }

    /// The number of cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `-self`, or `None` for `i64::MIN` cents.
    pub fn checked_neg(self) -> Option<Amount> {
        self.0.checked_neg().map(Amount)
    }

    /// Whether the amount is strictly greater than zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Whether the amount is strictly below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Reads a decimal number exactly: an optional `-`, digits, an optional fraction and an
    /// optional exponent (`19.9`, `19.90`, `1990e-2`, `0.5E1`). Trailing zeros below the
    /// cent are accepted (`19.900` is 1990 cents); any other digit below the cent is
    /// [`AmountError::TooManyDecimals`].
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        if text.is_empty() || text.len() > TEXT_LEN_MAX {
            return Err(AmountError::Syntax);
        }
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = split_exponent(unsigned)?;
        let (int_digits, frac_digits) = match mantissa.split_once('.') {
            Some((int, frac)) if !int.is_empty() && !frac.is_empty() => (int, frac),
            Some(_) => return Err(AmountError::Syntax),
            None => (mantissa, ""),
        };
        if int_digits.is_empty() || !all_digits(int_digits) || !all_digits(frac_digits) {
            return Err(AmountError::Syntax);
        }
        // value = digits * 10^(exponent - frac_len); cents = value * 100.
        let frac_len = i32::try_from(frac_digits.len()).map_err(|_| AmountError::Syntax)?;
        let mut shift = exponent + 2 - frac_len;
        let digits: Vec<u8> = int_digits.bytes().chain(frac_digits.bytes()).collect();
        let mut significant = digits.as_slice();
        while let [first, rest @ ..] = significant {
            if *first != b'0' {
                break;
            }
            significant = rest;
        }
        while shift < 0 {
            match significant {
                [] => break,
                [rest @ .., b'0'] => {
                    significant = rest;
                    shift += 1;
                }
                _ => return Err(AmountError::TooManyDecimals),
            }
        }
        if significant.is_empty() {
            return Ok(Amount::ZERO);
        }
        // An i64 has at most 19 digits; the checked steps below catch the rest.
        if significant.len() > 19 || shift > 18 {
            return Err(AmountError::OutOfRange);
        }
        let mut cents: i64 = 0;
        for digit in significant {
            cents = cents
                .checked_mul(10)
                .and_then(|c| c.checked_add(i64::from(digit - b'0')))
                .ok_or(AmountError::OutOfRange)?;
        }
        for _ in 0..shift {
            cents = cents.checked_mul(10).ok_or(AmountError::OutOfRange)?;
        }
        Ok(Amount(if negative { -cents } else { cents }))
    }

    /// [`Amount::parse`], then requires `0 < amount <= MAX_INPUT`.
    pub fn parse_positive(text: &str) -> Result<Amount, AmountError> {
        Amount::parse(text)?.require_positive()
    }

    /// `self` if `0 < self <= MAX_INPUT`.
    pub fn require_positive(self) -> Result<Amount, AmountError> {
        if !self.is_positive() {
            Err(AmountError::NotPositive)
        } else if self > Amount::MAX_INPUT {
            Err(AmountError::OutOfRange)
        } else {
            Ok(self)
        }
    }

    /// [`Amount::parse`], then requires `0 <= amount <= MAX_INPUT` (initial balances).
    pub fn parse_non_negative(text: &str) -> Result<Amount, AmountError> {
        let amount = Amount::parse(text)?;
        if amount.is_negative() {
            Err(AmountError::NotPositive)
        } else if amount > Amount::MAX_INPUT {
            Err(AmountError::OutOfRange)
        } else {
            Ok(amount)
        }
    }
}

/// Splits `1.5e3` into (`1.5`, 3). The exponent is bounded so that shifts cannot overflow.
fn split_exponent(text: &str) -> Result<(&str, i32), AmountError> {
    let Some(at) = text.find(['e', 'E']) else {
        return Ok((text, 0));
    };
    let (mantissa, exponent_text) = (&text[..at], &text[at + 1..]);
    let digits = exponent_text
        .strip_prefix(['-', '+'])
        .unwrap_or(exponent_text);
    if digits.is_empty() || digits.len() > 3 || !all_digits(digits) {
        return Err(AmountError::Syntax);
    }
    let exponent: i32 = exponent_text.parse().map_err(|_| AmountError::Syntax)?;
    Ok((mantissa, exponent))
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// Formats as a decimal with exactly two places: `-12.05`, `0.00`, `1990.00`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", magnitude / 100, magnitude % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(text: &str) -> Result<i64, AmountError> {
        Amount::parse(text).map(Amount::cents)
    }

    #[test]
    fn equivalent_notations_are_the_same_amount() {
        for text in [
            "19.9", "19.90", "19.900", "1990e-2", "1.99e1", "1.99E+1", "019.90",
        ] {
            assert_eq!(cents(text), Ok(1990), "{text}");
        }
        assert_eq!(cents("20"), Ok(2000));
        assert_eq!(cents("0.01"), Ok(1));
        assert_eq!(cents("-0.5"), Ok(-50));
        assert_eq!(cents("0"), Ok(0));
        assert_eq!(cents("0e5"), Ok(0));
        assert_eq!(cents("1e-2"), Ok(1));
    }

    #[test]
    fn sub_cent_digits_are_rejected_not_rounded() {
        for text in [
            "19.905",
            "0.001",
            "1e-3",
            "100.123",
            "0.0000000000000000001",
        ] {
            assert_eq!(cents(text), Err(AmountError::TooManyDecimals), "{text}");
        }
    }

    #[test]
    fn malformed_text_is_a_syntax_error() {
        for text in [
            "", "-", ".", "1.", ".5", "1..2", "1,50", " 1", "1 ", "+1", "abc", "1e", "1e+",
            "1e1000", "0x10", "NaN", "inf", "--1", "1.5.5", "١٢",
        ] {
            assert_eq!(cents(text), Err(AmountError::Syntax), "{text:?}");
        }
        assert_eq!(cents(&"1".repeat(65)), Err(AmountError::Syntax));
    }

    #[test]
    fn huge_values_are_out_of_range() {
        assert_eq!(cents("92233720368547758.08"), Err(AmountError::OutOfRange));
        assert_eq!(cents("1e30"), Err(AmountError::OutOfRange));
        assert_eq!(cents("9999999999999999999"), Err(AmountError::OutOfRange));
        assert_eq!(cents("92233720368547758.07"), Ok(i64::MAX));
        assert_eq!(cents("-92233720368547758.07"), Ok(-i64::MAX));
        assert_eq!(
            Amount::parse_positive("10000000000000.01"),
            Err(AmountError::OutOfRange)
        );
        assert_eq!(
            Amount::parse_positive("10000000000000").map(Amount::cents),
            Ok(Amount::MAX_INPUT.cents())
        );
    }

    #[test]
    fn positive_and_non_negative_bounds() {
        assert_eq!(Amount::parse_positive("0"), Err(AmountError::NotPositive));
        assert_eq!(
            Amount::parse_positive("0.00"),
            Err(AmountError::NotPositive)
        );
        assert_eq!(Amount::parse_positive("-1"), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse_non_negative("0").map(Amount::cents), Ok(0));
        assert_eq!(
            Amount::parse_non_negative("-0.01"),
            Err(AmountError::NotPositive)
        );
    }

    #[test]
    fn display_has_two_decimals() {
        assert_eq!(Amount::from_cents(1990).to_string(), "19.90");
        assert_eq!(Amount::from_cents(5).to_string(), "0.05");
        assert_eq!(Amount::from_cents(-1205).to_string(), "-12.05");
        assert_eq!(Amount::ZERO.to_string(), "0.00");
        assert_eq!(
            Amount::from_cents(i64::MIN).to_string(),
            "-92233720368547758.08"
        );
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        let max = Amount::from_cents(i64::MAX);
        assert_eq!(max.checked_add(Amount::from_cents(1)), None);
        assert_eq!(
            Amount::from_cents(i64::MIN).checked_sub(Amount::from_cents(1)),
            None
        );
        assert_eq!(Amount::from_cents(i64::MIN).checked_neg(), None);
        assert_eq!(
            Amount::from_cents(5).checked_sub(Amount::from_cents(7)),
            Some(Amount::from_cents(-2))
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Formatting then parsing gives back the same cents, for every i64 in range.
            #[test]
            fn display_round_trips(c in -(1i64 << 60)..(1i64 << 60)) {
                prop_assert_eq!(cents(&Amount::from_cents(c).to_string()), Ok(c));
            }

            /// Padding the fraction with zeros never changes the value; a non-zero third
            /// decimal always makes it invalid.
            #[test]
            fn third_decimal_decides(units in 0u64..1_000_000_000, fraction in 0u8..100, extra in 1u8..10) {
                let base = format!("{units}.{fraction:02}");
                let expected = i64::try_from(units).unwrap() * 100 + i64::from(fraction);
                prop_assert_eq!(cents(&format!("{base}000")), Ok(expected));
                prop_assert_eq!(cents(&format!("{base}{extra}")), Err(AmountError::TooManyDecimals));
            }

            /// Arbitrary text never panics.
            #[test]
            fn never_panics(text in "\\PC{0,70}") {
                let _ = Amount::parse(&text);
            }
        }
    }
}
