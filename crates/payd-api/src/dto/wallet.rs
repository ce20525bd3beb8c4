//! Wire types of holds, withdrawals, transfers, pay-ins and events.

use payd_domain::timestamp::format_ms;
use payd_domain::{AccountId, Amount, Category, Hold, ResourceId, Transfer, TransferStatus};
use payd_ports::{EventView, HoldView, TransferView, WithdrawalReceipt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{
    CategoryBody, Money, account_id, category, parse_body, positive_amount, required, string,
};
use crate::error::{ApiError, Code};

/// Longest transfer description, in characters.
pub(crate) const DESCRIPTION_LEN_MAX: usize = 500;

/// Parses a body that may be empty (`{}` then).
fn parse_optional_body<'a, T: Deserialize<'a> + Default>(bytes: &'a [u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(bytes)
    }
}

fn resource_id(name: &str, raw: &RawValue) -> Result<ResourceId, ApiError> {
    ResourceId::parse(&string(name, raw)?).map_err(|error| ApiError::invalid(name, error))
}

/// A resource id taken from the URL path.
pub(crate) fn path_resource(what: &str, text: &str) -> Result<ResourceId, ApiError> {
    ResourceId::parse(text)
        .map_err(|error| ApiError::new(Code::InvalidPath, format!("{what} id in path: {error}")))
}

/// An optional category field, CASH when absent.
fn category_or_cash(raw: Option<&RawValue>) -> Result<Category, ApiError> {
    raw.map_or(Ok(Category::Cash), |raw| category("category", raw))
}

// ---------------------------------------------------------------------------------------
// Holds
// ---------------------------------------------------------------------------------------

/// `POST /accounts/{id}/holds`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = HoldRequest)]
pub(crate) struct HoldBody<'a> {
    /// The hold id (1–64 of `A-Z a-z 0-9 . _ : -`); a UUIDv7 is generated when absent. A
    /// client id is an idempotency key kept forever.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "hold-1")]
    id: Option<&'a RawValue>,
    /// `FOOD`, `MEAL` or `CASH` (default `CASH`).
    #[serde(borrow)]
    #[schema(value_type = Option<CategoryBody>)]
    category: Option<&'a RawValue>,
    /// Amount > 0 with at most 2 decimals: a JSON number or a decimal string.
    #[serde(borrow)]
    #[schema(value_type = f64, example = 25.00)]
    amount: Option<&'a RawValue>,
    /// Lifetime in milliseconds (default: the server's `--hold-ttl-ms`; at most
    /// `--hold-ttl-max-ms`).
    #[serde(borrow)]
    #[schema(value_type = Option<u64>, example = 600000)]
    expires_in_ms: Option<&'a RawValue>,
}

/// A parsed hold request.
pub(crate) struct HoldRequest {
    pub(crate) id: Option<ResourceId>,
    pub(crate) category: Category,
    pub(crate) amount: Amount,
    pub(crate) expires_in_ms: Option<u64>,
}

pub(crate) fn parse_hold(bytes: &[u8]) -> Result<HoldRequest, ApiError> {
    let body: HoldBody<'_> = parse_body(bytes)?;
    let expires_in_ms = body
        .expires_in_ms
        .map(|raw| {
            raw.get()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| ApiError::invalid("expiresInMs", "must be a positive integer"))
        })
        .transpose()?;
    Ok(HoldRequest {
        id: body.id.map(|raw| resource_id("id", raw)).transpose()?,
        category: category_or_cash(body.category)?,
        amount: positive_amount("amount", required("amount", body.amount)?)?,
        expires_in_ms,
    })
}

/// `POST /holds/{id}/capture`; an empty body captures everything.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaptureRequest)]
pub(crate) struct CaptureBody<'a> {
    /// How much to capture (default: all); the rest returns to available.
    #[serde(borrow)]
    #[schema(value_type = Option<f64>, example = 20.00)]
    amount: Option<&'a RawValue>,
}

pub(crate) fn parse_capture(bytes: &[u8]) -> Result<Option<Amount>, ApiError> {
    let body: CaptureBody<'_> = parse_optional_body(bytes)?;
    body.amount
        .map(|raw| positive_amount("amount", raw))
        .transpose()
}

/// `POST /holds/{id}/void` takes no fields; an empty body or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

pub(crate) fn parse_empty(bytes: &[u8]) -> Result<(), ApiError> {
    parse_optional_body::<EmptyBody>(bytes).map(|_| ())
}

/// A hold.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Hold)]
pub(crate) struct HoldViewBody {
    #[schema(example = "hold-1")]
    id: String,
    account: String,
    category: CategoryBody,
    /// The amount held when placed.
    amount: Money,
    /// The amount captured (0 unless `captured`).
    captured: Money,
    /// `active`, `captured`, `voided` or `expired`.
    #[schema(example = "active")]
    status: &'static str,
    /// When it expires; `null` for a pay-in's hold (it follows its payment).
    expires_at: Option<String>,
    /// The pay-in it backs, if any.
    payment: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<&HoldView> for HoldViewBody {
    fn from(view: &HoldView) -> HoldViewBody {
        let Hold {
            id,
            account,
            category,
            amount,
            captured,
            status,
            expires_at_ms,
        } = &view.hold;
        HoldViewBody {
            id: id.to_string(),
            account: account.to_string(),
            category: (*category).into(),
            amount: Money(*amount),
            captured: Money(*captured),
            status: status.as_str(),
            expires_at: expires_at_ms.map(format_ms),
            payment: view.payment.as_ref().map(ToString::to_string),
            created_at: format_ms(view.created_at_ms),
            updated_at: format_ms(view.updated_at_ms),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Withdrawals
// ---------------------------------------------------------------------------------------

/// A committed withdrawal. A replay answers the same body with `Idempotent-Replayed: true`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Withdrawal)]
pub(crate) struct WithdrawalBody {
    /// Generated id (the journal's reference).
    id: String,
    account: String,
    category: CategoryBody,
    amount: Money,
    /// The category's available balance right after.
    available_after: Money,
    created_at: String,
}

impl From<&WithdrawalReceipt> for WithdrawalBody {
    fn from(receipt: &WithdrawalReceipt) -> WithdrawalBody {
        WithdrawalBody {
            id: receipt.id.to_string(),
            account: receipt.account.to_string(),
            category: receipt.category.into(),
            amount: Money(receipt.amount),
            available_after: Money(receipt.available_after),
            created_at: format_ms(receipt.created_at_ms),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Transfers
// ---------------------------------------------------------------------------------------

/// `POST /transfers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TransferRequest)]
pub(crate) struct TransferBody<'a> {
    /// The transfer id; a UUIDv7 is generated when absent. A client id is an idempotency
    /// key kept forever.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "tr-1")]
    id: Option<&'a RawValue>,
    /// The account debited.
    #[serde(borrow)]
    #[schema(value_type = String, example = "acc-1")]
    from: Option<&'a RawValue>,
    /// The account credited.
    #[serde(borrow)]
    #[schema(value_type = String, example = "acc-2")]
    to: Option<&'a RawValue>,
    /// Amount > 0 with at most 2 decimals: a JSON number or a decimal string.
    #[serde(borrow)]
    #[schema(value_type = f64, example = 99.01)]
    amount: Option<&'a RawValue>,
    /// `FOOD`, `MEAL` or `CASH` (default `CASH`), on both sides.
    #[serde(borrow)]
    #[schema(value_type = Option<CategoryBody>)]
    category: Option<&'a RawValue>,
    /// Free text, at most 500 characters.
    #[serde(borrow)]
    #[schema(value_type = Option<String>)]
    description: Option<&'a RawValue>,
}

/// A parsed transfer request (the id is generated by the handler when absent).
pub(crate) struct TransferRequest {
    pub(crate) id: Option<ResourceId>,
    pub(crate) from: AccountId,
    pub(crate) to: AccountId,
    pub(crate) category: Category,
    pub(crate) amount: Amount,
    pub(crate) description: Option<String>,
}

impl TransferRequest {
    pub(crate) fn into_transfer(self, id: ResourceId) -> (Transfer, Option<String>) {
        (
            Transfer {
                id,
                from: self.from,
                to: self.to,
                category: self.category,
                amount: self.amount,
            },
            self.description,
        )
    }
}

pub(crate) fn parse_transfer(bytes: &[u8]) -> Result<TransferRequest, ApiError> {
    let body: TransferBody<'_> = parse_body(bytes)?;
    let from = account_id("from", required("from", body.from)?)?;
    let to = account_id("to", required("to", body.to)?)?;
    if from == to {
        return Err(ApiError::invalid("to", "must differ from `from`"));
    }
    let description = body
        .description
        .filter(|raw| raw.get() != "null")
        .map(|raw| string("description", raw))
        .transpose()?;
    if description
        .as_ref()
        .is_some_and(|text| text.chars().count() > DESCRIPTION_LEN_MAX)
    {
        return Err(ApiError::invalid(
            "description",
            format!("must be at most {DESCRIPTION_LEN_MAX} characters"),
        ));
    }
    Ok(TransferRequest {
        id: body.id.map(|raw| resource_id("id", raw)).transpose()?,
        from,
        to,
        category: category_or_cash(body.category)?,
        amount: positive_amount("amount", required("amount", body.amount)?)?,
        description,
    })
}

/// A transfer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Transfer)]
pub(crate) struct TransferViewBody {
    #[schema(example = "tr-1")]
    id: String,
    from: String,
    to: String,
    category: CategoryBody,
    amount: Money,
    description: Option<String>,
    /// `pending`, `completed` or `rejected`.
    #[schema(example = "completed")]
    status: &'static str,
    /// Why it was rejected: `insufficient_funds`, `account_not_found` or
    /// `balance_overflow`; `null` otherwise.
    reason: Option<&'static str>,
    created_at: String,
    updated_at: String,
}

impl From<&TransferView> for TransferViewBody {
    fn from(view: &TransferView) -> TransferViewBody {
        let transfer = &view.transfer;
        TransferViewBody {
            id: transfer.id.to_string(),
            from: transfer.from.to_string(),
            to: transfer.to.to_string(),
            category: transfer.category.into(),
            amount: Money(transfer.amount),
            description: view.description.clone(),
            status: view.status.as_str(),
            reason: match view.status {
                TransferStatus::Rejected(reason) => Some(reason.as_str()),
                _ => None,
            },
            created_at: format_ms(view.created_at_ms),
            updated_at: format_ms(view.updated_at_ms),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// Query of `GET /events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsParams {
    /// Only events after this one (an event id `evt_<n>`, the `next` of the previous page).
    #[param(value_type = Option<String>, example = "evt_42")]
    after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// Parses an event id `evt_<seq>`.
pub(crate) fn event_seq(text: &str) -> Option<i64> {
    text.strip_prefix("evt_")?
        .parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
}

impl EventsParams {
    /// Validated (after sequence, limit).
    pub(crate) fn parse(&self) -> Result<(i64, u32), ApiError> {
        let after = match &self.after {
            None => 0,
            Some(text) => event_seq(text).ok_or_else(|| {
                ApiError::new(
                    Code::InvalidQuery,
                    "`after` must be an event id (`evt_<n>`)",
                )
            })?,
        };
        let limit = match &self.limit {
            None => 100,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=1_000).contains(limit))
                .ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidQuery,
                        "`limit` must be an integer from 1 to 1000",
                    )
                })?,
        };
        Ok((after, limit))
    }
}

/// One event, as listed and as delivered to webhooks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Event)]
pub(crate) struct EventBody {
    /// `evt_<n>`, unique, increasing with commit order; receivers deduplicate on it.
    #[schema(example = "evt_42")]
    id: String,
    /// `payment.succeeded`, `payment.failed`, `payment.unknown`, `transfer.completed`,
    /// `transfer.rejected`, `hold.captured`, `hold.voided` or `hold.expired`.
    #[serde(rename = "type")]
    #[schema(example = "transfer.completed")]
    kind: &'static str,
    /// The id of the payment, transfer or hold it is about.
    subject: String,
    /// The resource as of the change (amounts as exact decimal strings).
    #[schema(value_type = Object)]
    data: Box<RawValue>,
    created_at: String,
}

impl EventBody {
    pub(crate) fn new(event: &EventView) -> Result<EventBody, ApiError> {
        let data = RawValue::from_string(event.payload.clone()).map_err(|error| {
            ApiError::new(Code::Internal, format!("stored event payload: {error}"))
        })?;
        Ok(EventBody {
            id: format!("evt_{}", event.seq),
            kind: event.kind.as_str(),
            subject: event.subject.clone(),
            data,
            created_at: format_ms(event.created_at_ms),
        })
    }
}

/// A page of events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EventPage)]
pub(crate) struct EventPageBody {
    pub(crate) events: Vec<EventBody>,
    /// Pass as `after` to read on; `null` when this page was not full.
    pub(crate) next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_parse() {
        let t = parse_transfer(br#"{"from":"a","to":"b","amount":"99.01","description":"rent"}"#)
            .unwrap();
        assert_eq!(t.amount, Amount::from_cents(9901));
        assert_eq!(t.category, Category::Cash);
        assert_eq!(t.description.as_deref(), Some("rent"));
        let t =
            parse_transfer(br#"{"id":"t1","from":"a","to":"b","amount":1.5,"category":"FOOD"}"#)
                .unwrap();
        assert_eq!(t.amount, Amount::from_cents(150));
        assert_eq!(t.id.unwrap().as_str(), "t1");
        for (body, code) in [
            (
                &br#"{"from":"a","to":"a","amount":1}"#[..],
                Code::InvalidField,
            ),
            (br#"{"from":"a","amount":1}"#, Code::MissingField),
            (br#"{"from":"a","to":"b","amount":0}"#, Code::InvalidAmount),
            (
                br#"{"from":"a","to":"b","amount":1.001}"#,
                Code::InvalidAmount,
            ),
            (
                br#"{"from":"a","to":"b","amount":1,"x":1}"#,
                Code::InvalidField,
            ),
            (
                br#"{"from":"@external","to":"b","amount":1}"#,
                Code::InvalidField,
            ),
            (
                br#"{"id":"a/b","from":"a","to":"b","amount":1}"#,
                Code::InvalidField,
            ),
        ] {
            assert_eq!(
                parse_transfer(body).err().map(|e| e.code),
                Some(code),
                "{body:?}"
            );
        }
        let long = format!(
            r#"{{"from":"a","to":"b","amount":1,"description":"{}"}}"#,
            "x".repeat(501)
        );
        assert!(parse_transfer(long.as_bytes()).is_err());
    }

    #[test]
    fn holds_and_captures_parse() {
        let h = parse_hold(br#"{"amount":"10","expiresInMs":5000}"#).unwrap();
        assert_eq!(
            (h.amount.cents(), h.category, h.expires_in_ms),
            (1000, Category::Cash, Some(5000))
        );
        assert!(parse_hold(br#"{"amount":1,"expiresInMs":0}"#).is_err());
        assert!(parse_hold(br#"{"amount":1,"expiresInMs":1.5}"#).is_err());
        assert!(parse_hold(b"{}").is_err());
        assert_eq!(parse_capture(b"").unwrap(), None);
        assert_eq!(
            parse_capture(br#"{"amount":"2.50"}"#).unwrap(),
            Some(Amount::from_cents(250))
        );
        assert!(parse_capture(br#"{"amount":-1}"#).is_err());
        assert!(parse_empty(b" ").is_ok());
        assert!(parse_empty(b"{}").is_ok());
        assert!(parse_empty(br#"{"a":1}"#).is_err());
    }

    #[test]
    fn event_ids() {
        assert_eq!(event_seq("evt_42"), Some(42));
        assert_eq!(event_seq("evt_-1"), None);
        assert_eq!(event_seq("42"), None);
    }
}
