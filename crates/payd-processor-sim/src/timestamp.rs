//! `requestedAt`, `from` and `to`: ISO-8601 UTC instants at millisecond precision.
//!
//! The grammar and the calendar arithmetic are `payd_domain::timestamp`'s (strict:
//! `YYYY-MM-DDTHH:MM:SS[.fff]Z`, no offsets, sub-millisecond digits must be zero); this
//! module only keeps the canonical text next to the instant, so that `GET /payments/{id}`
//! answers exactly what the summary filters on.

use payd_domain::timestamp::{format_ms, parse_ms};

/// An instant, as milliseconds since the Unix epoch, with its canonical text
/// (`2025-07-15T12:34:56.000Z`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Timestamp {
    /// The sort and filter key.
    pub(crate) unix_ms: i64,
    /// What `GET /payments/{id}` answers; kept instead of re-formatting so that reading a
    /// payment back can never fail.
    pub(crate) text: Box<str>,
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fraction]Z`. The error says what is wrong, for the 400 body.
pub(crate) fn parse(text: &str) -> Result<Timestamp, String> {
    let unix_ms = parse_ms(text).map_err(|error| error.to_string())?;
    Ok(Timestamp {
        unix_ms,
        text: format_ms(unix_ms).into_boxed_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_always_has_three_fraction_digits() {
        for (input, canonical) in [
            ("2025-07-15T12:34:56Z", "2025-07-15T12:34:56.000Z"),
            ("2025-07-15T12:34:56.5Z", "2025-07-15T12:34:56.500Z"),
            ("2025-07-15T12:34:56.05Z", "2025-07-15T12:34:56.050Z"),
            ("2025-07-15T12:34:56.123000000Z", "2025-07-15T12:34:56.123Z"),
        ] {
            let parsed = parse(input).unwrap();
            assert_eq!(&*parsed.text, canonical, "{input}");
            assert_eq!(parse(canonical).unwrap().unix_ms, parsed.unix_ms);
        }
        assert!(parse("2025-07-15T12:34:56.123456Z").is_err());
        assert!(parse("２０２５-07-15T12:34:56.000Z").is_err());
    }
}
