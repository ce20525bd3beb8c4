//! The merchant override table (L3): merchant name patterns that beat the MCC.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use payd_ports::Mutation;

use super::{Shared, execute, json};
use crate::dto::{
    MerchantBody, MerchantCategoryBody, MerchantListBody, parse_merchant_category, path_pattern,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBytes, PathParam};
use crate::idempotency::Request;

/// Lists the merchant overrides, sorted by pattern.
#[utoipa::path(
    get,
    path = "/merchants",
    operation_id = "list_merchants",
    tag = "merchants",
    responses(
        (status = 200, description = "The table.", body = MerchantListBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn list(State(ctx): State<Shared>) -> Result<Response, ApiError> {
    let merchants = ctx.store.merchants().await?;
    let body = MerchantListBody {
        merchants: merchants
            .iter()
            .map(|(pattern, category)| MerchantBody::new(pattern, *category))
            .collect(),
    };
    json(StatusCode::OK, &body)
}

/// Adds or replaces a merchant override; later transactions use it.
///
/// The pattern is the (percent-encoded) path segment: an exact merchant name such as
/// `UBER%20EATS`, or a prefix ending in `*` such as `PICPAY*`. It is normalized (upper case,
/// single spaces) and matched against the name part of the card-acceptor field. With an
/// `Idempotency-Key`, a retry replays the first answer.
#[utoipa::path(
    put,
    path = "/merchants/{pattern}",
    operation_id = "put_merchant",
    tag = "merchants",
    params(
        ("pattern" = String, Path, description = "Exact merchant name, or a prefix ending in `*`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional"),
    ),
    request_body(content = MerchantCategoryBody<'_>, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced.", body = MerchantBody),
        (status = 201, description = "Added.", body = MerchantBody),
        (status = 400, description = "`malformed_json`, `invalid_path`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 409, description = "`idempotency_request_in_flight`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`, `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn put(
    State(ctx): State<Shared>,
    PathParam(pattern): PathParam,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let pattern = path_pattern(&pattern)?;
    let category = parse_merchant_category(&body)?;
    execute(
        &ctx,
        Request::new("PUT", &uri, &headers, &body),
        Mutation::PutMerchant { pattern, category },
    )
    .await
}

/// Removes a merchant override. With an `Idempotency-Key`, a retry replays the first
/// answer (`204`) instead of `merchant_not_found`.
#[utoipa::path(
    delete,
    path = "/merchants/{pattern}",
    operation_id = "delete_merchant",
    tag = "merchants",
    params(
        ("pattern" = String, Path, description = "Exact merchant name, or a prefix ending in `*`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional"),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`merchant_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_request_in_flight`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(
    State(ctx): State<Shared>,
    PathParam(pattern): PathParam,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pattern = path_pattern(&pattern)?;
    execute(
        &ctx,
        Request::new("DELETE", &uri, &headers, b""),
        Mutation::DeleteMerchant { pattern },
    )
    .await
}
