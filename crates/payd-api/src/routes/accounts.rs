//! Accounts, deposits and the ledger entries of an account.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use payd_domain::AccountId;
use payd_ports::{DepositRequest, EntryQuery, NewAccount};

use super::{Shared, json};
use crate::dto::{
    AccountBody, DepositBody, DepositReceiptBody, EntriesParams, EntryPageBody, NewAccountBody,
    idempotency_key, parse_deposit, parse_new_account, path_account,
};
use crate::error::{ApiError, Code, ErrorBody};
use crate::extract::{JsonBytes, PathParam, QueryParams};

/// The header that makes a deposit idempotent.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a response that replays an earlier identical request.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Opens an account.
///
/// The id is generated (a UUIDv7) when absent. Initial balances are credited as `opening`
/// entries. Unknown balance keys are refused.
#[utoipa::path(
    post,
    path = "/accounts",
    operation_id = "open_account",
    tag = "accounts",
    request_body(content = NewAccountBody<'_>, content_type = "application/json"),
    responses(
        (status = 201, description = "Opened.", body = AccountBody,
            headers(("Location" = String, description = "`/accounts/{id}`"))),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 409, description = "`account_exists`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `invalid_amount`, `balance_overflow`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(ctx): State<Shared>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let (id, balances) = parse_new_account(&body)?;
    let id = match id {
        Some(id) => id,
        None => generated_id()?,
    };
    let view = ctx.store.open_account(NewAccount { id, balances }).await?;
    let mut response = json(StatusCode::CREATED, &AccountBody::from(&view))?;
    // Account ids are restricted to URL-safe characters, so no escaping is needed.
    let location = HeaderValue::try_from(format!("/accounts/{}", view.id)).map_err(|error| {
        ApiError::new(
            Code::Internal,
            format!("account id not usable in a header: {error}"),
        )
    })?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// A UUIDv7: unique without coordination, and time-ordered so ids sort by creation.
fn generated_id() -> Result<AccountId, ApiError> {
    AccountId::parse(&uuid::Uuid::now_v7().to_string())
        .map_err(|error| ApiError::new(Code::Internal, format!("generated id invalid: {error}")))
}

/// Reads an account and its balances.
#[utoipa::path(
    get,
    path = "/accounts/{id}",
    operation_id = "get_account",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account.", body = AccountBody),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn get(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = path_account(&id)?;
    match ctx.store.account(&id).await? {
        Some(view) => json(StatusCode::OK, &AccountBody::from(&view)),
        None => Err(ApiError::new(
            Code::AccountNotFound,
            format!("no account with id `{id}`"),
        )),
    }
}

/// Credits money to one category of an account, idempotently.
///
/// The `Idempotency-Key` header is required. Repeating a request with the same key and body
/// replays the first answer (with `Idempotent-Replayed: true`) and credits nothing more; the
/// same key with another body is `idempotency_key_reused`.
#[utoipa::path(
    post,
    path = "/accounts/{id}/deposits",
    operation_id = "deposit",
    tag = "accounts",
    params(
        ("id" = String, Path, description = "Account id"),
        ("Idempotency-Key" = String, Header, description = "1–255 printable ASCII characters, unique per deposit"),
    ),
    request_body(content = DepositBody<'_>, content_type = "application/json"),
    responses(
        (status = 201, description = "Credited (or replayed).", body = DepositReceiptBody,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        (status = 400, description = "`malformed_json`, `idempotency_key_missing`, `invalid_idempotency_key`, `invalid_path`", body = ErrorBody),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`, `invalid_amount`, `idempotency_key_reused`, `balance_overflow`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn deposit(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let account = path_account(&id)?;
    let key = idempotency_key(headers.get(IDEMPOTENCY_KEY).map(HeaderValue::as_bytes))?;
    let (category, amount) = parse_deposit(&body)?;
    let receipt = ctx
        .store
        .deposit(DepositRequest {
            key,
            account,
            category,
            amount,
        })
        .await?;
    let mut response = json(StatusCode::CREATED, &DepositReceiptBody::new(&receipt))?;
    if receipt.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Lists an account's ledger entries, newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/accounts/{id}/entries",
    operation_id = "list_entries",
    tag = "accounts",
    params(("id" = String, Path, description = "Account id"), EntriesParams),
    responses(
        (status = 200, description = "A page of entries.", body = EntryPageBody),
        (status = 400, description = "`invalid_query`, `invalid_path`", body = ErrorBody),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn entries(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    QueryParams(params): QueryParams<EntriesParams>,
) -> Result<Response, ApiError> {
    let account = path_account(&id)?;
    let (limit, before_sequence) = params.parse()?;
    let page = ctx
        .store
        .entries(
            &account,
            EntryQuery {
                before_sequence,
                limit,
            },
        )
        .await?;
    json(StatusCode::OK, &EntryPageBody::new(&page))
}
