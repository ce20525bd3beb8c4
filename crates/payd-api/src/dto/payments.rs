//! The gateway's payments: intake, status, the summary and its query.

use payd_domain::gateway::payment::PaymentState;
use payd_domain::timestamp::{format_ms, parse_ms};
use payd_domain::{AccountId, Amount, Category, CorrelationId};
use payd_ports::{HoldView, PaymentRecord, PaymentSummary, ProcessorTotals};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{
    CategoryBody, Money, account_id, category, parse_body, positive_amount, required, string,
    wallet,
};
use crate::error::{ApiError, Code};

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
