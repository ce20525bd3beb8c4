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

use std::borrow::Cow;

use payd_domain::CorrelationId;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::timestamp::{format_ms, parse_ms};
use payd_domain::{
    AccountId, Amount, AmountError, AuthorizationRequest, Balances, Bucket, Category,
    CategoryBalance, Code as CardCode, EntryCause, IdempotencyKey, Mcc, MerchantPattern,
    TransactionId,
};
use payd_ports::{
    AccountView, DepositReceipt, EntryPage, EntryView, HoldView, PaymentRecord, PaymentSummary,
    ProcessorTotals,
};
use serde::ser::Error as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Code};

pub(crate) mod wallet;

/// Longest card-acceptor (`merchant`) field we accept, in characters. The real field is 40;
/// the slack is for free-form test clients, the bound keeps stored rows small.
pub(crate) const MERCHANT_LEN_MAX: usize = 100;

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

fn required<'a>(name: &str, raw: Option<&'a RawValue>) -> Result<&'a RawValue, ApiError> {
    raw.ok_or_else(|| ApiError::missing(name))
}

/// A JSON string field, unescaped.
fn string(name: &str, raw: &RawValue) -> Result<String, ApiError> {
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
fn positive_amount(name: &str, raw: &RawValue) -> Result<Amount, ApiError> {
    let text = amount_text(name, raw)?;
    Amount::parse_positive(&text).map_err(|error| amount_error(name, error))
}

/// A zero-or-positive amount (initial balances).
fn non_negative_amount(name: &str, raw: &RawValue) -> Result<Amount, ApiError> {
    let text = amount_text(name, raw)?;
    Amount::parse_non_negative(&text).map_err(|error| {
        if error == AmountError::NotPositive {
            ApiError::invalid_amount(name, "must not be negative")
        } else {
            amount_error(name, error)
        }
    })
}

fn category(name: &str, raw: &RawValue) -> Result<Category, ApiError> {
    string(name, raw)?
        .parse()
        .map_err(|error| ApiError::invalid(name, error))
}

fn account_id(name: &str, raw: &RawValue) -> Result<AccountId, ApiError> {
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

// ---------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------

/// Money: a JSON number with exactly two decimals (`100.00`, `-12.05`), exact to the cent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[schema(value_type = f64, example = 100.00)]
pub(crate) struct Money(pub(crate) Amount);

impl Serialize for Money {
    /// Through `RawValue` because serde_json prints floats in shortest form (`100.0`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.0.to_string()).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

// ---------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------

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

/// Initial balances of a new account, all optional (default 0); a non-negative number or
/// decimal string each.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InitialBalances)]
pub(crate) struct InitialBalancesBody<'a> {
    #[serde(borrow, rename = "FOOD")]
    #[schema(value_type = Option<f64>, example = 100.00)]
    food: Option<&'a RawValue>,
    #[serde(borrow, rename = "MEAL")]
    #[schema(value_type = Option<f64>, example = 50.00)]
    meal: Option<&'a RawValue>,
    #[serde(borrow, rename = "CASH")]
    #[schema(value_type = Option<f64>, example = 10.00)]
    cash: Option<&'a RawValue>,
}

/// `POST /accounts`. Both fields are optional; an empty body opens an account with a
/// generated id and zero balances.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewAccountRequest)]
pub(crate) struct NewAccountBody<'a> {
    /// The account id (1–64 of `A-Z a-z 0-9 . _ : -`); a UUIDv7 is generated when absent.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "acc-1")]
    id: Option<&'a RawValue>,
    /// Initial available balances per category.
    #[serde(borrow)]
    balances: Option<InitialBalancesBody<'a>>,
}

/// Parses a `POST /accounts` body: the id if given, and the balances.
pub(crate) fn parse_new_account(bytes: &[u8]) -> Result<(Option<AccountId>, Balances), ApiError> {
    // An empty body is `{}`: "open me an account" needs no payload.
    let body: NewAccountBody<'_> = if bytes.iter().all(u8::is_ascii_whitespace) {
        NewAccountBody::default()
    } else {
        parse_body(bytes)?
    };
    let id = body.id.map(|raw| account_id("id", raw)).transpose()?;
    let balances = body.balances.unwrap_or_default();
    let amount = |name: &str, raw: Option<&RawValue>| {
        raw.map_or(Ok(Amount::ZERO), |raw| non_negative_amount(name, raw))
    };
    let food = amount("balances.FOOD", balances.food)?;
    let meal = amount("balances.MEAL", balances.meal)?;
    let cash = amount("balances.CASH", balances.cash)?;
    Ok((id, Balances::with_available(food, meal, cash)))
}

/// One category's balance.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CategoryBalance)]
pub(crate) struct CategoryBalanceBody {
    /// Spendable now.
    available: Money,
    /// Reserved by holds.
    held: Money,
}

impl From<CategoryBalance> for CategoryBalanceBody {
    fn from(balance: CategoryBalance) -> CategoryBalanceBody {
        CategoryBalanceBody {
            available: Money(balance.available),
            held: Money(balance.held),
        }
    }
}

/// The three balances of an account.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Balances)]
pub(crate) struct BalancesBody {
    #[serde(rename = "FOOD")]
    food: CategoryBalanceBody,
    #[serde(rename = "MEAL")]
    meal: CategoryBalanceBody,
    #[serde(rename = "CASH")]
    cash: CategoryBalanceBody,
}

/// An account and its balances.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Account)]
pub(crate) struct AccountBody {
    /// The account id.
    #[schema(example = "acc-1")]
    id: String,
    /// Balances per category.
    balances: BalancesBody,
}

impl From<&AccountView> for AccountBody {
    fn from(view: &AccountView) -> AccountBody {
        let of = |category| CategoryBalanceBody::from(view.balances.get(category));
        AccountBody {
            id: view.id.to_string(),
            balances: BalancesBody {
                food: of(Category::Food),
                meal: of(Category::Meal),
                cash: of(Category::Cash),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deposits
// ---------------------------------------------------------------------------------------

/// `POST /accounts/{id}/deposits`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DepositRequest)]
pub(crate) struct DepositBody<'a> {
    /// The category credited: `FOOD`, `MEAL` or `CASH`.
    #[serde(borrow)]
    #[schema(value_type = CategoryBody)]
    category: Option<&'a RawValue>,
    /// Amount > 0 with at most 2 decimals: a JSON number or a decimal string.
    #[serde(borrow)]
    #[schema(value_type = f64, example = 25.00)]
    amount: Option<&'a RawValue>,
}

/// Parses a deposit body into (category, amount).
pub(crate) fn parse_deposit(bytes: &[u8]) -> Result<(Category, Amount), ApiError> {
    let body: DepositBody<'_> = parse_body(bytes)?;
    let category = category("category", required("category", body.category)?)?;
    let amount = positive_amount("amount", required("amount", body.amount)?)?;
    Ok((category, amount))
}

/// A committed deposit. A replay answers the same body with `Idempotent-Replayed: true`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Deposit)]
pub(crate) struct DepositReceiptBody {
    /// The Idempotency-Key of the deposit.
    id: String,
    /// The account credited.
    account: String,
    /// The category credited.
    category: CategoryBody,
    /// The amount credited.
    amount: Money,
    /// The category's available balance right after this deposit.
    available_after: Money,
    /// Commit time, RFC 3339 UTC with milliseconds.
    #[schema(example = "2026-11-21T13:45:00.123Z")]
    created_at: String,
}

impl DepositReceiptBody {
    pub(crate) fn new(receipt: &DepositReceipt) -> DepositReceiptBody {
        DepositReceiptBody {
            id: receipt.key.to_string(),
            account: receipt.account.to_string(),
            category: receipt.category.into(),
            amount: Money(receipt.amount),
            available_after: Money(receipt.available_after),
            created_at: format_ms(receipt.created_at_ms),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------

/// Default page size of `GET /accounts/{id}/entries`.
pub(crate) const ENTRIES_LIMIT_DEFAULT: u32 = 50;
/// Largest page size.
pub(crate) const ENTRIES_LIMIT_MAX: u32 = 1000;

/// Query of `GET /accounts/{id}/entries`. Values are read as text and validated here so
/// that the error names the parameter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EntriesParams {
    /// Page size, 1..=1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Cursor: only entries with a smaller sequence (the `next` of the previous page).
    #[param(value_type = Option<i64>)]
    before: Option<String>,
}

impl EntriesParams {
    /// Validated (limit, before).
    pub(crate) fn parse(&self) -> Result<(u32, Option<i64>), ApiError> {
        let limit = match &self.limit {
            None => ENTRIES_LIMIT_DEFAULT,
            Some(text) => match text.parse::<u32>() {
                Ok(limit) if (1..=ENTRIES_LIMIT_MAX).contains(&limit) => limit,
                _ => {
                    return Err(ApiError::new(
                        Code::InvalidQuery,
                        format!("`limit` must be an integer from 1 to {ENTRIES_LIMIT_MAX}"),
                    ));
                }
            },
        };
        let before = match &self.before {
            None => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                ApiError::new(
                    Code::InvalidQuery,
                    "`before` must be an entry sequence (integer)",
                )
            })?),
        };
        Ok((limit, before))
    }
}

/// The cause of an entry.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EntryCause)]
pub(crate) enum EntryCauseBody {
    /// The initial balances of the account.
    Opening,
    /// A deposit.
    Deposit,
    /// An approved card transaction.
    Transaction,
    /// A withdrawal.
    Withdrawal,
    /// A hold placed (available → held).
    Hold,
    /// A hold captured (held → out; any rest back to available).
    Capture,
    /// A hold voided (held → available).
    Void,
    /// A hold expired (held → available).
    Expiry,
    /// A transfer between accounts.
    Transfer,
    /// A pay-in from the wallet: its hold, then its capture or release.
    Payment,
}

impl From<EntryCause> for EntryCauseBody {
    fn from(cause: EntryCause) -> EntryCauseBody {
        match cause {
            EntryCause::Opening => EntryCauseBody::Opening,
            EntryCause::Deposit => EntryCauseBody::Deposit,
            EntryCause::Transaction => EntryCauseBody::Transaction,
            EntryCause::Withdrawal => EntryCauseBody::Withdrawal,
            EntryCause::Hold => EntryCauseBody::Hold,
            EntryCause::Capture => EntryCauseBody::Capture,
            EntryCause::Void => EntryCauseBody::Void,
            EntryCause::Expiry => EntryCauseBody::Expiry,
            EntryCause::Transfer => EntryCauseBody::Transfer,
            EntryCause::Payment => EntryCauseBody::Payment,
        }
    }
}

/// Which part of a balance an entry changed.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Bucket)]
pub(crate) enum BucketBody {
    /// Spendable money.
    Available,
    /// Money reserved by holds.
    Held,
}

impl From<Bucket> for BucketBody {
    fn from(bucket: Bucket) -> BucketBody {
        match bucket {
            Bucket::Available => BucketBody::Available,
            Bucket::Held => BucketBody::Held,
        }
    }
}

/// One ledger entry of an account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Entry)]
pub(crate) struct EntryBody {
    /// Position in the ledger; strictly increasing with commit order.
    sequence: i64,
    /// The category balance that changed.
    category: CategoryBody,
    /// The part of it that changed: `available`, or `held` by holds.
    bucket: BucketBody,
    /// Signed change (negative: money left that part of the balance).
    amount: Money,
    /// Why the money moved.
    cause: EntryCauseBody,
    /// What caused it: a transaction id (or `transaction <seq>`), a deposit key, a
    /// withdrawal, hold or transfer id, a payment's correlation id, or the account id
    /// (opening).
    reference: String,
    /// Commit time, RFC 3339 UTC with milliseconds.
    #[schema(example = "2026-11-21T13:45:00.123Z")]
    created_at: String,
}

impl EntryBody {
    fn new(entry: &EntryView) -> EntryBody {
        EntryBody {
            sequence: entry.sequence,
            category: entry.category.into(),
            bucket: entry.bucket.into(),
            amount: Money(entry.amount),
            cause: entry.cause.into(),
            reference: entry.reference.clone(),
            created_at: format_ms(entry.created_at_ms),
        }
    }
}

/// A page of entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EntryPage)]
pub(crate) struct EntryPageBody {
    /// Newest first.
    entries: Vec<EntryBody>,
    /// Pass as `before` to read the next (older) page; `null` on the last page.
    next: Option<i64>,
}

impl EntryPageBody {
    pub(crate) fn new(page: &EntryPage) -> EntryPageBody {
        EntryPageBody {
            entries: page.entries.iter().map(EntryBody::new).collect(),
            next: page.next_before_sequence,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Merchants
// ---------------------------------------------------------------------------------------

/// `PUT /merchants/{pattern}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MerchantCategory)]
pub(crate) struct MerchantCategoryBody<'a> {
    /// The category transactions at this merchant are charged to first.
    #[serde(borrow)]
    #[schema(value_type = CategoryBody)]
    category: Option<&'a RawValue>,
}

/// Parses a `PUT /merchants/{pattern}` body.
pub(crate) fn parse_merchant_category(bytes: &[u8]) -> Result<Category, ApiError> {
    let body: MerchantCategoryBody<'_> = parse_body(bytes)?;
    category("category", required("category", body.category)?)
}

/// A merchant override.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Merchant)]
pub(crate) struct MerchantBody {
    /// Normalized pattern: an exact merchant name, or a prefix ending in `*`.
    #[schema(example = "UBER EATS")]
    pattern: String,
    /// The category it maps to.
    category: CategoryBody,
}

impl MerchantBody {
    pub(crate) fn new(pattern: &MerchantPattern, category: Category) -> MerchantBody {
        MerchantBody {
            pattern: pattern.to_string(),
            category: category.into(),
        }
    }
}

/// The merchant override table, sorted by pattern.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MerchantList)]
pub(crate) struct MerchantListBody {
    /// Every override.
    pub(crate) merchants: Vec<MerchantBody>,
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

    fn auth(body: &str) -> Result<AuthorizationRequest, ApiError> {
        parse_authorization(body.as_bytes())
    }

    fn code(result: Result<impl std::fmt::Debug, ApiError>) -> Code {
        result.unwrap_err().code
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
    fn new_accounts() {
        let (id, balances) = parse_new_account(
            br#"{"id":"acc-1","balances":{"FOOD":100.00,"MEAL":50,"CASH":"10.00"}}"#,
        )
        .unwrap();
        assert_eq!(id.unwrap().as_str(), "acc-1");
        assert_eq!(
            balances,
            Balances::with_available(
                Amount::from_cents(10_000),
                Amount::from_cents(5_000),
                Amount::from_cents(1_000)
            )
        );
        let (id, balances) = parse_new_account(b"").unwrap();
        assert!(id.is_none());
        assert_eq!(balances, Balances::default());
        assert_eq!(
            parse_new_account(br#"{"balances":{"FOOD":0}}"#).unwrap().1,
            Balances::default()
        );
        assert_eq!(
            code(parse_new_account(br#"{"balances":{"GAS":1}}"#)),
            Code::InvalidField
        );
        assert_eq!(
            code(parse_new_account(br#"{"balance":{}}"#)),
            Code::InvalidField
        );
        assert_eq!(
            code(parse_new_account(br#"{"balances":{"FOOD":-1}}"#)),
            Code::InvalidAmount
        );
        assert_eq!(
            code(parse_new_account(br#"{"balances":{"FOOD":1.001}}"#)),
            Code::InvalidAmount
        );
        assert_eq!(
            code(parse_new_account(br#"{"id":"@x"}"#)),
            Code::InvalidField
        );
        assert_eq!(code(parse_new_account(br#"{"id":5}"#)), Code::InvalidField);
        assert_eq!(code(parse_new_account(b"{")), Code::MalformedJson);
    }

    #[test]
    fn deposits_and_merchants() {
        assert_eq!(
            parse_deposit(br#"{"category":"FOOD","amount":"25.00"}"#).unwrap(),
            (Category::Food, Amount::from_cents(2500))
        );
        assert_eq!(
            code(parse_deposit(br#"{"category":"food","amount":1}"#)),
            Code::InvalidField
        );
        assert_eq!(code(parse_deposit(br#"{"amount":1}"#)), Code::MissingField);
        assert_eq!(
            code(parse_deposit(br#"{"category":"FOOD","amount":0}"#)),
            Code::InvalidAmount
        );
        assert_eq!(
            parse_merchant_category(br#"{"category":"MEAL"}"#).unwrap(),
            Category::Meal
        );
        assert_eq!(code(parse_merchant_category(br#"{}"#)), Code::MissingField);
        assert_eq!(
            code(parse_merchant_category(br#"{"category":1}"#)),
            Code::InvalidField
        );
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
    fn entries_params() {
        let params = |limit: Option<&str>, before: Option<&str>| EntriesParams {
            limit: limit.map(str::to_owned),
            before: before.map(str::to_owned),
        };
        assert_eq!(params(None, None).parse().unwrap(), (50, None));
        assert_eq!(
            params(Some("1000"), Some("7")).parse().unwrap(),
            (1000, Some(7))
        );
        for bad in ["0", "1001", "-1", "x", ""] {
            assert_eq!(
                code(params(Some(bad), None).parse()),
                Code::InvalidQuery,
                "{bad}"
            );
        }
        assert_eq!(code(params(None, Some("x")).parse()), Code::InvalidQuery);
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_009_500_123), "2026-11-18T13:45:00.123Z");
    }
}

// ---------------------------------------------------------------------------------------
// Gateway payments
// ---------------------------------------------------------------------------------------

/// `POST /payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PaymentRequest)]
pub(crate) struct PaymentBody<'a> {
    /// A UUID; the payment's idempotency key here and at the processors.
    #[serde(borrow)]
    #[schema(value_type = String, example = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3")]
    correlation_id: Option<&'a RawValue>,
    /// Amount > 0 with at most 2 decimals: a JSON number or a decimal string.
    #[serde(borrow)]
    #[schema(value_type = f64, example = 19.90)]
    amount: Option<&'a RawValue>,
    /// A pay-in: the wallet account that pays. Its amount is held at once (or the payment
    /// is refused with `insufficient_funds`), captured when a processor books it and
    /// released when it definitively fails.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "acc-1")]
    account: Option<&'a RawValue>,
    /// The category a pay-in is paid from (default `CASH`); only with `account`.
    #[serde(borrow)]
    #[schema(value_type = Option<CategoryBody>)]
    category: Option<&'a RawValue>,
}

/// A parsed `POST /payments`.
pub(crate) struct PaymentRequest {
    pub(crate) id: CorrelationId,
    pub(crate) amount: Amount,
    /// A pay-in's wallet.
    pub(crate) payer: Option<(AccountId, Category)>,
}

/// Parses a payment body.
pub(crate) fn parse_payment(bytes: &[u8]) -> Result<PaymentRequest, ApiError> {
    let body: PaymentBody<'_> = parse_body(bytes)?;
    let id = string(
        "correlationId",
        required("correlationId", body.correlation_id)?,
    )?;
    let id =
        CorrelationId::parse(&id).map_err(|error| ApiError::invalid("correlationId", error))?;
    let amount = positive_amount("amount", required("amount", body.amount)?)?;
    let payer = match (body.account, body.category) {
        (None, None) => None,
        (None, Some(_)) => return Err(ApiError::invalid("category", "only with `account`")),
        (Some(account), category_raw) => Some((
            account_id("account", account)?,
            category_raw.map_or(Ok(Category::Cash), |raw| category("category", raw))?,
        )),
    };
    Ok(PaymentRequest { id, amount, payer })
}

/// A correlation id from the path.
pub(crate) fn path_correlation_id(text: &str) -> Result<CorrelationId, ApiError> {
    CorrelationId::parse(text)
        .map_err(|error| ApiError::new(Code::InvalidPath, format!("correlation id: {error}")))
}

/// The answer to an accepted payment (first time or repeat).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PaymentAccepted)]
pub(crate) struct PaymentAcceptedBody {
    /// The correlation id.
    pub(crate) correlation_id: String,
    /// Always `accepted`: stored durably and queued (or already known).
    #[schema(example = "accepted")]
    pub(crate) status: &'static str,
}

/// A payment as `GET /payments/{correlationId}` shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Payment)]
pub(crate) struct PaymentStatusBody {
    correlation_id: String,
    amount: Money,
    /// The instant sent to processors on every attempt, fixed at intake.
    #[schema(example = "2026-11-21T13:45:00.123Z")]
    requested_at: String,
    /// `pending` (queued, not sent yet), `processing` (sent), `unknown` (bound to its
    /// processor until resolved), `succeeded` (booked by a processor) or `failed`.
    #[schema(example = "succeeded")]
    status: &'static str,
    /// The processor it is at, bound to, or booked by; `null` while free.
    #[schema(example = "default")]
    processor: Option<&'static str>,
    /// Submissions sent to processors so far.
    attempts: u32,
    /// A pay-in's hold on its wallet (`active` while the payment is open, `captured` once
    /// booked, `voided` once it failed); `null` for a plain gateway payment.
    hold: Option<wallet::HoldViewBody>,
}

/// A payment's wire status (the wallet spec's names; the store's are `queued` and `booked`).
pub(crate) const fn payment_status(state: &PaymentState) -> &'static str {
    match state {
        PaymentState::Queued { .. } => "pending",
        PaymentState::Processing { .. } => "processing",
        PaymentState::Unknown { .. } => "unknown",
        PaymentState::Booked { .. } => "succeeded",
        PaymentState::Failed => "failed",
    }
}

impl PaymentStatusBody {
    pub(crate) fn new(record: &PaymentRecord, hold: Option<&HoldView>) -> PaymentStatusBody {
        PaymentStatusBody {
            correlation_id: record.id.to_string(),
            amount: Money(record.amount),
            requested_at: format_ms(record.requested_at_ms),
            status: payment_status(&record.state),
            processor: PaymentState::processor(&record.state).map(|p| p.as_str()),
            attempts: record.attempts,
            hold: hold.map(wallet::HoldViewBody::from),
        }
    }
}

/// Booked payments at one processor.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ProcessorTotals)]
pub(crate) struct TotalsBody {
    total_requests: u64,
    total_amount: Money,
}

/// `GET /payments-summary`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PaymentsSummary)]
pub(crate) struct SummaryBody {
    default: TotalsBody,
    fallback: TotalsBody,
}

impl From<&PaymentSummary> for SummaryBody {
    fn from(summary: &PaymentSummary) -> SummaryBody {
        let totals = |t: &ProcessorTotals| TotalsBody {
            total_requests: t.requests,
            total_amount: Money(t.amount),
        };
        SummaryBody {
            default: totals(&summary.default),
            fallback: totals(&summary.fallback),
        }
    }
}

/// Query of `GET /payments-summary`: optional, inclusive bounds on `requestedAt`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SummaryParams {
    /// ISO-8601 UTC with milliseconds, e.g. `2026-11-21T13:45:00.000Z`; missing or empty =
    /// unbounded.
    from: Option<String>,
    /// Same format; inclusive.
    to: Option<String>,
}

impl SummaryParams {
    /// Validated (from_ms, to_ms).
    pub(crate) fn parse(&self) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let bound = |name: &str, text: &Option<String>| match text.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => parse_ms(text)
                .map(Some)
                .map_err(|error| ApiError::new(Code::InvalidQuery, format!("`{name}`: {error}"))),
        };
        Ok((bound("from", &self.from)?, bound("to", &self.to)?))
    }
}
