//! Accounts, deposits, ledger entries and merchant overrides.

use payd_domain::timestamp::format_ms;
use payd_domain::{
    AccountId, Amount, Balances, Bucket, Category, CategoryBalance, EntryCause, MerchantPattern,
};
use payd_ports::{AccountView, DepositReceipt, EntryPage, EntryView};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{
    CategoryBody, Money, account_id, category, non_negative_amount, parse_body, positive_amount,
    required,
};
use crate::error::{ApiError, Code};

// ---------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    fn code(result: Result<impl std::fmt::Debug, ApiError>) -> Code {
        result.unwrap_err().code
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
}
