//! The merchant override table (L3): merchant name patterns that beat the MCC.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Shared, json};
use crate::dto::{
    MerchantBody, MerchantCategoryBody, MerchantListBody, parse_merchant_category, path_pattern,
};
use crate::error::{ApiError, Code, ErrorBody};
use crate::extract::{JsonBytes, PathParam};

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
/// single spaces) and matched against the name part of the card-acceptor field.
#[utoipa::path(
    put,
    path = "/merchants/{pattern}",
    operation_id = "put_merchant",
    tag = "merchants",
    params(("pattern" = String, Path, description = "Exact merchant name, or a prefix ending in `*`")),
    request_body(content = MerchantCategoryBody<'_>, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced.", body = MerchantBody),
        (status = 201, description = "Added.", body = MerchantBody),
        (status = 400, description = "`malformed_json`, `invalid_path`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn put(
    State(ctx): State<Shared>,
    PathParam(pattern): PathParam,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let pattern = path_pattern(&pattern)?;
    let category = parse_merchant_category(&body)?;
    let body = MerchantBody::new(&pattern, category);
    let created = ctx.store.put_merchant(pattern, category).await?;
    json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &body,
    )
}

/// Removes a merchant override.
#[utoipa::path(
    delete,
    path = "/merchants/{pattern}",
    operation_id = "delete_merchant",
    tag = "merchants",
    params(("pattern" = String, Path, description = "Exact merchant name, or a prefix ending in `*`")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`merchant_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(
    State(ctx): State<Shared>,
    PathParam(pattern): PathParam,
) -> Result<Response, ApiError> {
    let pattern = path_pattern(&pattern)?;
    let text = pattern.to_string();
    if ctx.store.delete_merchant(pattern).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            Code::MerchantNotFound,
            format!("no merchant override `{text}`"),
        ))
    }
}
