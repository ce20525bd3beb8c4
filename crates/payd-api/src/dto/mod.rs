//! Wire types and their translation to and from domain types. Pure: no IO, no state.
//!
//! Request bodies are deserialized into structs of `Option<&RawValue>` and each field is then
//! parsed by hand. Two reasons:
//! - every problem becomes an [`ApiError`] naming the field (`missing_field` vs
//!   `invalid_field` vs `invalid_amount`), instead of serde's one-size message;
//! - amounts are read from their exact JSON text (number text, or a string's content) by
//!   [`Amount::parse`]: a JSON number never passes through `f64`, so `19.905` is refused
//!   rather than rounded and `19.9`, `19.90`, `"19.90"` and `1.99e1` are the same amount.
//!
//! Amounts are written back as JSON numbers with exactly two decimals ([`Money`]).

//!
//! # Layout
//! - this file: the parsing helpers every body shares, [`Money`], [`CategoryBody`] and
//!   [`StatusBody`];
//! - `card`: `POST /transactions`;
//! - `accounts`: accounts, deposits, entries and merchant overrides;
//! - `payments`: the gateway's payments and summary;
//! - `wallet`: holds, withdrawals, transfers, pay-ins and events;
//! - `webhooks`: webhook registrations and delivery attempts.

use std::borrow::Cow;

use payd_domain::{AccountId, Amount, AmountError, Category, IdempotencyKey, MerchantPattern};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::error::{ApiError, Code};

mod accounts;
mod card;
mod payments;
pub(crate) mod wallet;
pub(crate) mod webhooks;

pub(crate) use accounts::*;
pub(crate) use card::*;
pub(crate) use payments::*;

// ---------------------------------------------------------------------------------------
// Generic parsing helpers
// ---------------------------------------------------------------------------------------

/// Deserializes a body into a struct of raw fields. Invalid JSON (syntax, truncated) is
/// `malformed_json`; valid JSON of the wrong shape (not an object, unknown field where we
/// deny them) is `invalid_field`.
pub(crate) fn parse_body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category as C;
        match error.classify() {
            C::Data => ApiError::new(Code::InvalidField, format!("invalid request body: {error}")),
            C::Syntax | C::Eof | C::Io => ApiError::new(
                Code::MalformedJson,
                format!("the body is not valid JSON: {error}"),
            ),
        }
    })
}

pub(crate) fn required<'a>(
    name: &str,
    raw: Option<&'a RawValue>,
) -> Result<&'a RawValue, ApiError> {
    raw.ok_or_else(|| ApiError::missing(name))
}

/// A JSON string field, unescaped.
pub(crate) fn string(name: &str, raw: &RawValue) -> Result<String, ApiError> {
    serde_json::from_str(raw.get()).map_err(|_| ApiError::invalid(name, "must be a string"))
}

/// The exact decimal text of an amount: a JSON number's own text, or a JSON string's
/// content. Anything else (bool, object, null...) is a type error.
fn amount_text<'a>(name: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, ApiError> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => string(name, raw).map(Cow::Owned),
        Some(b'-' | b'0'..=b'9') => Ok(Cow::Borrowed(text)),
        _ => Err(ApiError::invalid(
            name,
            "must be a number or a decimal string",
        )),
    }
}

fn amount_error(name: &str, error: AmountError) -> ApiError {
    let reason = match error {
        AmountError::Syntax => Cow::Borrowed("is not a decimal number"),
        AmountError::TooManyDecimals => Cow::Borrowed("has more than 2 decimal places"),
        AmountError::NotPositive => Cow::Borrowed("must be greater than zero"),
        AmountError::OutOfRange => Cow::Owned(format!("must be at most {}", Amount::MAX_INPUT)),
    };
    ApiError::invalid_amount(name, reason)
}

/// A strictly positive amount (card transactions, deposits).
pub(crate) fn positive_amount(name: &str, raw: &RawValue) -> Result<Amount, ApiError> {
    let text = amount_text(name, raw)?;
    Amount::parse_positive(&text).map_err(|error| amount_error(name, error))
}

/// A zero-or-positive amount (initial balances).
pub(crate) fn non_negative_amount(name: &str, raw: &RawValue) -> Result<Amount, ApiError> {
    let text = amount_text(name, raw)?;
    Amount::parse_non_negative(&text).map_err(|error| {
        if error == AmountError::NotPositive {
            ApiError::invalid_amount(name, "must not be negative")
        } else {
            amount_error(name, error)
        }
    })
}

pub(crate) fn category(name: &str, raw: &RawValue) -> Result<Category, ApiError> {
    string(name, raw)?
        .parse()
        .map_err(|error| ApiError::invalid(name, error))
}

pub(crate) fn account_id(name: &str, raw: &RawValue) -> Result<AccountId, ApiError> {
    AccountId::parse(&string(name, raw)?).map_err(|error| ApiError::invalid(name, error))
}

/// An account id taken from the URL path.
pub(crate) fn path_account(text: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(text)
        .map_err(|error| ApiError::new(Code::InvalidPath, format!("account id in path: {error}")))
}

/// A merchant pattern taken from the URL path (already percent-decoded).
pub(crate) fn path_pattern(text: &str) -> Result<MerchantPattern, ApiError> {
    MerchantPattern::parse(text).map_err(|error| {
        ApiError::new(
            Code::InvalidPath,
            format!("merchant pattern in path: {error}"),
        )
    })
}

/// The `Idempotency-Key` header of a deposit.
pub(crate) fn idempotency_key(value: Option<&[u8]>) -> Result<IdempotencyKey, ApiError> {
    let Some(bytes) = value else {
        return Err(ApiError::new(
            Code::IdempotencyKeyMissing,
            "the Idempotency-Key header is required: a unique id for this deposit, reused \
             only to retry it",
        ));
    };
    let invalid = |reason: &dyn std::fmt::Display| {
        ApiError::new(
            Code::InvalidIdempotencyKey,
            format!("Idempotency-Key header: {reason}"),
        )
    };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid(&"must be printable ASCII"))?;
    IdempotencyKey::parse(text).map_err(|error| invalid(&error))
}
// ---------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------

/// Money: a JSON number with exactly two decimals (`100.00`, `-12.05`), exact to the cent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[schema(value_type = f64, example = 100.00)]
pub(crate) struct Money(pub(crate) Amount);

impl Serialize for Money {
    /// As every amount payd writes, events included: [`payd_ports::Money`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        payd_ports::Money(self.0).serialize(serializer)
    }
}

/// A balance category.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[schema(as = Category)]
pub(crate) enum CategoryBody {
    /// Groceries.
    #[serde(rename = "FOOD")]
    Food,
    /// Prepared meals.
    #[serde(rename = "MEAL")]
    Meal,
    /// Free use; the fallback.
    #[serde(rename = "CASH")]
    Cash,
}

impl From<Category> for CategoryBody {
    fn from(category: Category) -> CategoryBody {
        match category {
            Category::Food => CategoryBody::Food,
            Category::Meal => CategoryBody::Meal,
            Category::Cash => CategoryBody::Cash,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Status)]
pub(crate) struct StatusBody {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(example = "ok")]
    pub(crate) status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use payd_domain::timestamp::format_ms;
    fn code(result: Result<impl std::fmt::Debug, ApiError>) -> Code {
        result.unwrap_err().code
    }

    #[test]
    fn money_serializes_with_two_decimals() {
        let json = serde_json::to_string(&[
            Money(Amount::from_cents(10_000)),
            Money(Amount::from_cents(-5)),
        ])
        .unwrap();
        assert_eq!(json, "[100.00,-0.05]");
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key(Some(b"k-1")).unwrap().as_str(), "k-1");
        assert_eq!(code(idempotency_key(None)), Code::IdempotencyKeyMissing);
        assert_eq!(
            code(idempotency_key(Some(b""))),
            Code::InvalidIdempotencyKey
        );
        assert_eq!(
            code(idempotency_key(Some(b"a b"))),
            Code::InvalidIdempotencyKey
        );
        assert_eq!(
            code(idempotency_key(Some(&[0xff]))),
            Code::InvalidIdempotencyKey
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_009_500_123), "2026-11-18T13:45:00.123Z");
    }
}
