//! Holds, withdrawals, transfers and the event outbox. Every mutation is
//! parse → claim (idempotency) → `WalletStore::execute` → the one renderer.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use payd_domain::ResourceId;
use payd_ports::{Mutation, NewHold, NewTransfer, NewWithdrawal};

use super::{Shared, execute, generated_resource_id, json};
use crate::dto::wallet::{
    EventBody, EventPageBody, EventsParams, HoldViewBody, TransferViewBody, WithdrawalBody,
    parse_capture, parse_empty, parse_hold, parse_transfer, path_resource,
};
use crate::dto::{DepositBody, parse_deposit, path_account};
use crate::error::{ApiError, Code, ErrorBody};
use crate::extract::{JsonBytes, PathParam, QueryParams};
use crate::idempotency::Request;

/// Places a hold: moves `amount` from the category's available balance to held.
///
/// Answers `201` with the hold, or `insufficient_funds` at once. The hold expires after
/// `expiresInMs` (default `--hold-ttl-ms`): its amount returns to available and it can no
/// longer be captured. Idempotent by `Idempotency-Key` or by the client's hold `id`.
#[utoipa::path(
    post,
    path = "/accounts/{id}/holds",
    operation_id = "place_hold",
    tag = "holds",
    params(
        ("id" = String, Path, description = "Account id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional; 1–255 printable ASCII characters"),
    ),
    request_body(content = crate::dto::wallet::HoldBody<'_>, content_type = "application/json"),
    responses(
        (status = 201, description = "Placed (or replayed, with `Idempotent-Replayed: true`).", body = HoldViewBody),
        (status = 400, description = "`malformed_json`, `invalid_path`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 409, description = "`resource_exists`, `idempotency_request_in_flight`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`, `invalid_amount`, `insufficient_funds`, `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn place_hold(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let account = path_account(&id)?;
    let request = parse_hold(&body)?;
    let ttl_ms = request
        .expires_in_ms
        .unwrap_or(ctx.wallet_config.hold_ttl_ms);
    if ttl_ms > ctx.wallet_config.hold_ttl_max_ms {
        return Err(ApiError::invalid(
            "expiresInMs",
            format!("must be at most {}", ctx.wallet_config.hold_ttl_max_ms),
        ));
    }
    let resource_key = request.id.as_ref().map(|id| format!("hold:{id}"));
    let id = match request.id {
        Some(id) => id,
        None => generated_resource_id()?,
    };
    let expires_at_ms = ctx
        .clock
        .now_ms()
        .saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
    execute(
        &ctx,
        Request::new("POST", &uri, &headers, &body).keyed_by(resource_key),
        Mutation::PlaceHold(NewHold {
            id,
            account,
            category: request.category,
            amount: request.amount,
            expires_at_ms,
        }),
    )
    .await
}

/// Reads a hold.
#[utoipa::path(
    get,
    path = "/holds/{id}",
    operation_id = "get_hold",
    tag = "holds",
    params(("id" = String, Path, description = "Hold id")),
    responses(
        (status = 200, description = "The hold.", body = HoldViewBody),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`hold_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn get_hold(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = path_resource("hold", &id)?;
    match ctx.store.hold(&id).await? {
        Some(view) => json(StatusCode::OK, &HoldViewBody::from(&view)),
        None => Err(ApiError::new(
            Code::HoldNotFound,
            format!("no hold with id `{id}`"),
        )),
    }
}

/// Captures an active hold, fully (empty body) or partly (`amount`); the rest returns to
/// available. A hold past its expiry is released instead and the answer is `hold_expired`.
#[utoipa::path(
    post,
    path = "/holds/{id}/capture",
    operation_id = "capture_hold",
    tag = "holds",
    params(
        ("id" = String, Path, description = "Hold id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional"),
    ),
    request_body(content = crate::dto::wallet::CaptureBody<'_>, content_type = "application/json"),
    responses(
        (status = 200, description = "Captured.", body = HoldViewBody),
        (status = 400, description = "`malformed_json`, `invalid_path`", body = ErrorBody),
        (status = 404, description = "`hold_not_found`", body = ErrorBody),
        (status = 409, description = "`hold_not_active`, `hold_expired`, `hold_owned_by_payment`, `idempotency_request_in_flight`", body = ErrorBody),
        (status = 422, description = "`invalid_amount`, `capture_exceeds_hold`, `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn capture_hold(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let id = path_resource("hold", &id)?;
    let amount = parse_capture(&body)?;
    execute(
        &ctx,
        Request::new("POST", &uri, &headers, &body),
        Mutation::CaptureHold { id, amount },
    )
    .await
}

/// Voids an active hold: everything returns to available.
#[utoipa::path(
    post,
    path = "/holds/{id}/void",
    operation_id = "void_hold",
    tag = "holds",
    params(
        ("id" = String, Path, description = "Hold id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional"),
    ),
    responses(
        (status = 200, description = "Voided.", body = HoldViewBody),
        (status = 400, description = "`malformed_json`, `invalid_path`", body = ErrorBody),
        (status = 404, description = "`hold_not_found`", body = ErrorBody),
        (status = 409, description = "`hold_not_active`, `hold_expired`, `hold_owned_by_payment`, `idempotency_request_in_flight`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn void_hold(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let id = path_resource("hold", &id)?;
    parse_empty(&body)?;
    execute(
        &ctx,
        Request::new("POST", &uri, &headers, &body),
        Mutation::VoidHold { id },
    )
    .await
}

/// Withdraws money from one category of an account to the outside world.
///
/// The `Idempotency-Key` header is required, as for deposits.
#[utoipa::path(
    post,
    path = "/accounts/{id}/withdrawals",
    operation_id = "withdraw",
    tag = "accounts",
    params(
        ("id" = String, Path, description = "Account id"),
        ("Idempotency-Key" = String, Header, description = "1–255 printable ASCII characters"),
    ),
    request_body(content = DepositBody<'_>, content_type = "application/json"),
    responses(
        (status = 201, description = "Withdrawn (or replayed, with `Idempotent-Replayed: true`).", body = WithdrawalBody),
        (status = 400, description = "`malformed_json`, `idempotency_key_missing`, `invalid_idempotency_key`, `invalid_path`", body = ErrorBody),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_request_in_flight`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`, `invalid_amount`, `insufficient_funds`, `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn withdraw(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let account = path_account(&id)?;
    let (category, amount) = parse_deposit(&body)?;
    let id = generated_resource_id()?;
    execute(
        &ctx,
        Request::new("POST", &uri, &headers, &body).key_required(),
        Mutation::Withdraw(NewWithdrawal {
            id,
            account,
            category,
            amount,
        }),
    )
    .await
}

/// Accepts a transfer between two accounts.
///
/// Answers `202` with the transfer `pending` once it is durably queued; transfers settle
/// asynchronously in acceptance order (so in order per account, both accounts
/// serialized), to `completed` or `rejected` with a reason. Idempotent by
/// `Idempotency-Key` or by the client's transfer `id`.
#[utoipa::path(
    post,
    path = "/transfers",
    operation_id = "submit_transfer",
    tag = "transfers",
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional")),
    request_body(content = crate::dto::wallet::TransferBody<'_>, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted, pending (or replayed).", body = TransferViewBody),
        (status = 400, description = "`malformed_json`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 409, description = "`resource_exists`, `idempotency_request_in_flight`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`, `invalid_amount`, `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn submit_transfer(
    State(ctx): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let request = parse_transfer(&body)?;
    let resource_key = request.id.as_ref().map(|id| format!("transfer:{id}"));
    let id = match &request.id {
        Some(id) => id.clone(),
        None => generated_resource_id()?,
    };
    let (transfer, description) = request.into_transfer(id);
    let response = execute(
        &ctx,
        Request::new("POST", &uri, &headers, &body).keyed_by(resource_key),
        Mutation::SubmitTransfer(NewTransfer {
            transfer,
            description,
        }),
    )
    .await?;
    if response.status() == StatusCode::ACCEPTED {
        (ctx.on_transfer_accepted)();
    }
    Ok(response)
}

/// Reads a transfer: `pending`, `completed`, or `rejected` with its reason.
#[utoipa::path(
    get,
    path = "/transfers/{id}",
    operation_id = "get_transfer",
    tag = "transfers",
    params(("id" = String, Path, description = "Transfer id")),
    responses(
        (status = 200, description = "The transfer.", body = TransferViewBody),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`transfer_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn get_transfer(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id: ResourceId = path_resource("transfer", &id)?;
    match ctx.store.transfer(&id).await? {
        Some(view) => json(StatusCode::OK, &TransferViewBody::from(&view)),
        None => Err(ApiError::new(
            Code::TransferNotFound,
            format!("no transfer with id `{id}`"),
        )),
    }
}

/// Lists outbox events, oldest first: every payment, transfer and hold outcome, written in
/// the same commit as the change itself.
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "list_events",
    tag = "events",
    params(EventsParams),
    responses(
        (status = 200, description = "A page of events.", body = EventPageBody),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn events(
    State(ctx): State<Shared>,
    QueryParams(params): QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    let (after, limit) = params.parse()?;
    let events = ctx.store.events(after, limit).await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|event| format!("evt_{}", event.seq)))
        .flatten();
    let events = events
        .iter()
        .map(EventBody::new)
        .collect::<Result<Vec<_>, _>>()?;
    json(StatusCode::OK, &EventPageBody { events, next })
}
