//! `POST /transactions`: the card transaction body and its answer code.

use payd_domain::{AuthorizationRequest, Code as CardCode, Mcc, TransactionId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{account_id, parse_body, positive_amount, required, string};
use crate::error::ApiError;

/// Longest card-acceptor (`merchant`) field we accept, in characters. The real field is 40;
/// the slack is for free-form test clients, the bound keeps stored rows small.
pub(crate) const MERCHANT_LEN_MAX: usize = 100;

// ---------------------------------------------------------------------------------------
// POST /transactions
// ---------------------------------------------------------------------------------------

/// A card transaction. Aliases: `accountId` for `account`, `amount` for `totalAmount`.
/// Unknown fields are ignored (card networks add fields).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AuthorizationRequest)]
pub(crate) struct AuthorizationBody<'a> {
    /// Optional client id: the idempotency key. A repeat with the same body answers as the
    /// first time and debits nothing; with another body it is answered `07`.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "6e2b3f0a-tx-1")]
    id: Option<&'a RawValue>,
    /// The account id (alias `accountId`).
    #[serde(borrow, alias = "accountId")]
    #[schema(value_type = String, example = "acc-1")]
    account: Option<&'a RawValue>,
    /// Amount > 0 with at most 2 decimals: a JSON number or a decimal string
    /// (alias `amount`).
    #[serde(borrow, alias = "amount")]
    #[schema(value_type = f64, example = 100.00)]
    total_amount: Option<&'a RawValue>,
    /// Merchant category code: exactly four digits, as a string.
    #[serde(borrow)]
    #[schema(value_type = String, example = "5811", pattern = "^[0-9]{4}$")]
    mcc: Option<&'a RawValue>,
    /// The card-acceptor field (name 25 + city 12 + space + country 2), at most 100
    /// characters.
    #[serde(borrow)]
    #[schema(value_type = String, example = "PADARIA DO ZE               SAO PAULO BR")]
    merchant: Option<&'a RawValue>,
}

/// Parses a `POST /transactions` body. Every error means answer `07`; the [`ApiError`]
/// says why, for the debug log.
pub(crate) fn parse_authorization(bytes: &[u8]) -> Result<AuthorizationRequest, ApiError> {
    let body: AuthorizationBody<'_> = parse_body(bytes)?;
    let id = match body.id {
        None => None,
        Some(raw) => Some(
            TransactionId::parse(&string("id", raw)?)
                .map_err(|error| ApiError::invalid("id", error))?,
        ),
    };
    let account = account_id("account", required("account", body.account)?)?;
    let amount = positive_amount("totalAmount", required("totalAmount", body.total_amount)?)?;
    let mcc = string("mcc", required("mcc", body.mcc)?)?;
    let mcc = Mcc::parse(&mcc).map_err(|_| ApiError::invalid("mcc", "must be exactly 4 digits"))?;
    let merchant = string("merchant", required("merchant", body.merchant)?)?;
    if merchant.chars().count() > MERCHANT_LEN_MAX {
        return Err(ApiError::invalid(
            "merchant",
            format!("must be at most {MERCHANT_LEN_MAX} characters"),
        ));
    }
    Ok(AuthorizationRequest {
        id,
        account,
        amount,
        mcc,
        merchant,
    })
}

/// The answer code of a card transaction.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[schema(as = AuthorizationCode)]
pub(crate) enum CardCodeBody {
    /// Approved: the balance was debited.
    #[serde(rename = "00")]
    Approved,
    /// Insufficient funds in the category and in CASH.
    #[serde(rename = "51")]
    InsufficientFunds,
    /// Any other problem (unknown account, invalid request, id reused, store unavailable).
    #[serde(rename = "07")]
    Rejected,
}

impl From<CardCode> for CardCodeBody {
    fn from(code: CardCode) -> CardCodeBody {
        match code {
            CardCode::Approved => CardCodeBody::Approved,
            CardCode::InsufficientFunds => CardCodeBody::InsufficientFunds,
            CardCode::Rejected => CardCodeBody::Rejected,
        }
    }
}

/// The answer to a card transaction: always HTTP 200.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuthorizationResponse)]
pub(crate) struct AuthorizationAnswer {
    /// `00` approved, `51` insufficient funds, `07` anything else.
    pub(crate) code: CardCodeBody,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
    use payd_domain::Amount;
    fn code(result: Result<impl std::fmt::Debug, ApiError>) -> Code {
        result.unwrap_err().code
    }

    fn auth(body: &str) -> Result<AuthorizationRequest, ApiError> {
        parse_authorization(body.as_bytes())
    }

    const OK: &str =
        r#"{"id":"t1","account":"a1","totalAmount":19.9,"mcc":"5811","merchant":"PADARIA"}"#;

    #[test]
    fn parses_a_card_transaction() {
        let request = auth(OK).unwrap();
        assert_eq!(request.id.unwrap().as_str(), "t1");
        assert_eq!(request.account.as_str(), "a1");
        assert_eq!(request.amount, Amount::from_cents(1990));
        assert_eq!(request.mcc.to_string(), "5811");
        assert_eq!(request.merchant, "PADARIA");
    }

    #[test]
    fn amount_notations_are_equivalent_and_exact() {
        for amount in [
            "19.9",
            "19.90",
            "\"19.90\"",
            "1.99e1",
            "1990e-2",
            "\"19.9\"",
            " 19.90 ",
        ] {
            let body =
                format!(r#"{{"accountId":"a","amount":{amount},"mcc":"5811","merchant":"M"}}"#);
            assert_eq!(
                auth(&body).unwrap().amount,
                Amount::from_cents(1990),
                "{amount}"
            );
        }
        for (amount, expected) in [
            ("19.905", Code::InvalidAmount),
            ("\"19.905\"", Code::InvalidAmount),
            ("0", Code::InvalidAmount),
            ("-1", Code::InvalidAmount),
            ("\"abc\"", Code::InvalidAmount),
            ("\" 1\"", Code::InvalidAmount),
            ("1e400", Code::InvalidAmount),
            ("true", Code::InvalidField),
            ("{}", Code::InvalidField),
            ("[1]", Code::InvalidField),
            ("null", Code::MissingField),
        ] {
            let body =
                format!(r#"{{"account":"a","totalAmount":{amount},"mcc":"5811","merchant":"M"}}"#);
            assert_eq!(code(auth(&body)), expected, "{amount}");
        }
        // Exponent beyond the domain's bound.
        let body = r#"{"account":"a","totalAmount":1e10000,"mcc":"5811","merchant":"M"}"#;
        assert_eq!(code(auth(body)), Code::InvalidAmount);
    }

    #[test]
    fn card_field_errors() {
        assert_eq!(code(auth("{")), Code::MalformedJson);
        assert_eq!(code(auth("")), Code::MalformedJson);
        assert_eq!(code(auth("[]")), Code::InvalidField);
        assert_eq!(
            code(auth(r#"{"totalAmount":1,"mcc":"5811","merchant":"M"}"#)),
            Code::MissingField
        );
        assert_eq!(
            code(auth(r#"{"account":"a","mcc":"5811","merchant":"M"}"#)),
            Code::MissingField
        );
        assert_eq!(
            code(auth(r#"{"account":"a","totalAmount":1,"merchant":"M"}"#)),
            Code::MissingField
        );
        assert_eq!(
            code(auth(r#"{"account":"a","totalAmount":1,"mcc":"5811"}"#)),
            Code::MissingField
        );
        let bad_mcc = [r#"5811"#, r#""581""#, r#""58a1""#, r#"null"#];
        for mcc in bad_mcc {
            let body = format!(r#"{{"account":"a","totalAmount":1,"mcc":{mcc},"merchant":"M"}}"#);
            assert!(auth(&body).is_err(), "{mcc}");
        }
        let long = "M".repeat(MERCHANT_LEN_MAX + 1);
        let body = format!(r#"{{"account":"a","totalAmount":1,"mcc":"5811","merchant":"{long}"}}"#);
        assert_eq!(code(auth(&body)), Code::InvalidField);
        let body = r#"{"account":7,"totalAmount":1,"mcc":"5811","merchant":"M"}"#;
        assert_eq!(code(auth(body)), Code::InvalidField);
        let body = r#"{"id":"a b","account":"a","totalAmount":1,"mcc":"5811","merchant":"M"}"#;
        assert_eq!(code(auth(body)), Code::InvalidField);
        // Unknown fields are ignored; escapes in strings are decoded.
        let body = r#"{"x":1,"account":"a","totalAmount":1,"mcc":"\u0035811","merchant":"M\"Q"}"#;
        let request = auth(body).unwrap();
        assert_eq!(request.mcc.code(), 5811);
        assert_eq!(request.merchant, "M\"Q");
    }
}
