//! Accounts, deposits and the ledger entries of an account.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use payd_domain::AccountId;
use payd_ports::{DepositRequest, EntryQuery, HEADER_KEY_PREFIX, Mutation, NewAccount};

use super::{Shared, execute_stored, generated_id, json};
use crate::dto::{
    AccountBody, DepositBody, DepositReceiptBody, EntriesParams, EntryPageBody, NewAccountBody,
    idempotency_key, parse_deposit, parse_new_account, path_account,
};
use crate::error::{ApiError, Code, ErrorBody};
use crate::extract::{JsonBytes, PathParam, QueryParams};
use crate::idempotency::{self, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, Request};

/// Opens an account.
///
/// The id is generated (a UUIDv7) when absent. Initial balances are credited as `opening`
/// entries. Unknown balance keys are refused. With an `Idempotency-Key` header a retry
/// replays the first answer (without one, a retry with the same id is `account_exists`).
#[utoipa::path(
    post,
    path = "/accounts",
    operation_id = "open_account",
    tag = "accounts",
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional; 1–255 printable ASCII characters")),
    request_body(content = NewAccountBody<'_>, content_type = "application/json"),
    responses(
        (status = 201, description = "Opened.", body = AccountBody,
            headers(("Location" = String, description = "`/accounts/{id}`"))),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 409, description = "`account_exists`, `idempotency_request_in_flight`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `invalid_amount`, `balance_overflow`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(ctx): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let (id, balances) = parse_new_account(&body)?;
    let id = match id {
        Some(id) => id,
        None => generated_id(AccountId::parse)?,
    };
    let (stored, replayed) = execute_stored(
        &ctx,
        Request::new("POST", &uri, &headers, &body),
        Mutation::OpenAccount(NewAccount { id, balances }),
    )
    .await?;
    // The body names the account (a replay's too: its id may have been generated).
    let opened = (stored.status == StatusCode::CREATED.as_u16())
        .then(|| serde_json::from_slice::<OpenedId>(&stored.body).ok())
        .flatten();
    let mut response = idempotency::to_response(stored, replayed)?;
    if let Some(opened) = opened {
        // Account ids are restricted to URL-safe characters, so no escaping is needed.
        let location =
            HeaderValue::try_from(format!("/accounts/{}", opened.id)).map_err(|error| {
                ApiError::new(
                    Code::Internal,
                    format!("account id not usable in a header: {error}"),
                )
            })?;
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The id in an opened account's body.
#[derive(serde::Deserialize)]
struct OpenedId {
    id: String,
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
        (status = 409, description = "`idempotency_request_in_flight`", body = ErrorBody),
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
    // Concurrent duplicates are refused (a deposit's key shares the namespace of every
    // other `Idempotency-Key`); its first answer is kept by the deposits table itself.
    let _guard = idempotency::enter(&*ctx.in_flight, &format!("{HEADER_KEY_PREFIX}{key}")).await?;
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
