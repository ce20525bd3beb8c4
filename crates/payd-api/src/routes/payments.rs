//! The payment gateway's endpoints: intake, status, summary and the admin purge.
//!
//! Intake answers `202` only once the payment and its queue entry are committed in one
//! write (the store's group commit); the gateway engine is then woken to forward it. The
//! correlation id is the idempotency key: a repeat is accepted again and never queued twice.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use payd_ports::{NewPayment, Payer};

use super::{Shared, generated_resource_id, json};
use crate::AdminAccess;
use crate::dto::{
    PaymentAcceptedBody, PaymentBody, PaymentStatusBody, SummaryBody, SummaryParams, parse_payment,
    path_correlation_id,
};
use crate::error::{ApiError, Code, ErrorBody};
use crate::extract::{JsonBytes, PathParam, QueryParams};

/// Accepts a payment for asynchronous forwarding to a processor.
///
/// `202` means the payment is durably stored and queued. Repeating a correlation id with
/// the same amount is accepted again and changes nothing; with another amount it is
/// `idempotency_key_reused`.
///
/// With `account` it is a pay-in from that wallet: the amount is held in the same commit
/// (`insufficient_funds` at once otherwise, and nothing is queued), captured when a
/// processor books the payment, released when it definitively fails, and kept held while
/// the outcome is unknown.
#[utoipa::path(
    post,
    path = "/payments",
    operation_id = "accept_payment",
    tag = "payments",
    request_body(content = PaymentBody<'_>, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored and queued (or already known).", body = PaymentAcceptedBody),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 404, description = "`account_not_found` (pay-in)", body = ErrorBody),
        (status = 409, description = "`idempotency_request_in_flight`: the same correlation id is being accepted right now", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`, `invalid_amount`, `idempotency_key_reused`, `insufficient_funds` (pay-in)", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn accept(
    State(ctx): State<Shared>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let request = parse_payment(&body)?;
    let correlation_id = request.id.to_string();
    // A repeat after the first answered is accepted again (it changes nothing); one sent
    // while the first is still being committed is refused, as for every idempotency key.
    let _guard =
        crate::idempotency::enter(&*ctx.in_flight, &format!("payment:{correlation_id}")).await?;
    let payer = match request.payer {
        Some((account, category)) => Some(Payer {
            account,
            category,
            hold: generated_resource_id()?,
        }),
        None => None,
    };
    ctx.store
        .accept_payment(NewPayment {
            id: request.id,
            amount: request.amount,
            requested_at_ms: ctx.clock.now_ms(),
            payer,
        })
        .await?;
    (ctx.on_payment_accepted)();
    json(
        StatusCode::ACCEPTED,
        &PaymentAcceptedBody {
            correlation_id,
            status: "accepted",
        },
    )
}

/// Reads a payment's status: where it is in its lifecycle and at which processor.
#[utoipa::path(
    get,
    path = "/payments/{correlationId}",
    operation_id = "get_payment",
    tag = "payments",
    params(("correlationId" = String, Path, description = "The payment's correlation id (UUID)")),
    responses(
        (status = 200, description = "The payment.", body = PaymentStatusBody),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`payment_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn get(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = path_correlation_id(&id)?;
    match ctx.store.payment(&id).await? {
        Some(record) => {
            let hold = match &record.hold {
                Some(id) => ctx.store.hold(id).await?,
                None => None,
            };
            json(
                StatusCode::OK,
                &PaymentStatusBody::new(&record, hold.as_ref()),
            )
        }
        None => Err(ApiError::new(
            Code::PaymentNotFound,
            format!("no payment with correlation id `{id}`"),
        )),
    }
}

/// Booked payments per processor, filtered on `requestedAt` (inclusive bounds).
///
/// Counts only payments a processor confirmed (`200`, or `422` for an earlier attempt of
/// ours). Answers from per-second totals plus the two partial edge seconds, so it stays fast
/// under load; without parameters it covers everything (load balancers poll it that way).
#[utoipa::path(
    get,
    path = "/payments-summary",
    operation_id = "payments_summary",
    tag = "payments",
    params(SummaryParams),
    responses(
        (status = 200, description = "Totals per processor.", body = SummaryBody),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn summary(
    State(ctx): State<Shared>,
    QueryParams(params): QueryParams<SummaryParams>,
) -> Result<Response, ApiError> {
    let (from_ms, to_ms) = params.parse()?;
    let summary = ctx.store.payments_summary(from_ms, to_ms).await?;
    json(StatusCode::OK, &SummaryBody::from(&summary))
}

/// Deletes every gateway payment (test resets). Needs `Authorization: Bearer <admin token>`
/// unless payd runs with `--dev`.
#[utoipa::path(
    post,
    path = "/purge-payments",
    operation_id = "purge_payments",
    tag = "payments",
    params(("Authorization" = Option<String>, Header, description = "`Bearer <admin token>`")),
    responses(
        (status = 200, description = "Purged."),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`admin_disabled`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn purge(
    State(ctx): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&ctx.admin, &headers)?;
    let purged = ctx.store.purge_payments().await?;
    tracing::warn!(purged, "All gateway payments were purged.");
    json(
        StatusCode::OK,
        &serde_json::json!({"message": "All payments purged.", "purged": purged}),
    )
}

/// Checks the admin token, comparing in constant time so that response timing does not
/// reveal how much of a guess was right.
fn authorize_admin(access: &AdminAccess, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = match access {
        AdminAccess::Open => return Ok(()),
        AdminAccess::Closed => {
            return Err(ApiError::new(
                Code::AdminDisabled,
                "admin endpoints are disabled: start payd with --admin-token (or --dev)",
            ));
        }
        AdminAccess::Token(token) => token,
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let same_length = presented.len() == token.len();
    let difference = presented
        .bytes()
        .zip(token.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same_length && difference == 0 {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::Unauthorized,
            "missing or wrong `Authorization: Bearer <admin token>`",
        ))
    }
}
