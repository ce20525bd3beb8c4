//! Webhooks: register an endpoint (URL + signing secret), list, read, delete, and read its
//! latest delivery attempts. The deliveries themselves are the engine's
//! `WebhookDeliverer`; the wire types are in `dto::webhooks`.
//!
//! A webhook receives every event created after its registration (none from before), as a
//! signed `POST` of the event's JSON (the `Event` schema of `GET /events`): see
//! `payd_domain::webhook` for the signature scheme.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use payd_domain::ResourceId;
use payd_ports::{Mutation, NewWebhook};

use super::{Shared, execute, generated_resource_id, json};
use crate::dto::wallet::path_resource;
use crate::dto::webhooks::{
    AttemptBody, AttemptListBody, AttemptsParams, WebhookBody, WebhookCreatedBody, WebhookListBody,
    WebhookViewBody, parse_webhook,
};
use crate::error::{ApiError, Code, ErrorBody};
use crate::extract::{JsonBytes, PathParam, QueryParams};
use crate::idempotency::Request;

/// A fresh secret: `whsec_` and 64 hex digits from two random UUIDs (244 random bits).
fn generated_secret() -> String {
    format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn not_found(id: &ResourceId) -> ApiError {
    ApiError::new(Code::WebhookNotFound, format!("no webhook with id `{id}`"))
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

/// Registers a webhook: every event created from now on is POSTed to `url`, signed.
///
/// Each delivery carries `Payd-Event-Id: evt_N`, `Payd-Timestamp: <unix seconds>` and
/// `Payd-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`. Any 2xx answer
/// counts as delivered; anything else is retried with jittered exponential backoff (1 s
/// doubling to 1 h) for at least 24 h. Delivery is at least once and unordered:
/// deduplicate by event id. Idempotent by `Idempotency-Key` or by the client's `id`: a
/// retried registration replays the first answer (secret included) instead of registering
/// twice; the same id or key with another body is `idempotency_key_reused`.
#[utoipa::path(
    post,
    path = "/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional")),
    request_body(content = WebhookBody<'_>, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; the only answer that shows the secret.", body = WebhookCreatedBody),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 409, description = "`resource_exists`, `idempotency_request_in_flight`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `missing_field`, `invalid_request` (too many webhooks), `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(ctx): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let request = parse_webhook(&body)?;
    let resource_key = request.id.as_ref().map(|id| format!("webhook:{id}"));
    let id = match request.id {
        Some(id) => id,
        None => generated_resource_id()?,
    };
    let secret = request.secret.unwrap_or_else(generated_secret);
    execute(
        &ctx,
        Request::new("POST", &uri, &headers, &body).keyed_by(resource_key),
        Mutation::CreateWebhook(NewWebhook {
            id,
            url: request.url,
            secret,
        }),
    )
    .await
}

/// Lists the registered webhooks, oldest first (without their secrets).
#[utoipa::path(
    get,
    path = "/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The webhooks.", body = WebhookListBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn list(State(ctx): State<Shared>) -> Result<Response, ApiError> {
    let webhooks = ctx.store.webhooks().await?;
    json(
        StatusCode::OK,
        &WebhookListBody {
            webhooks: webhooks.iter().map(WebhookViewBody::from).collect(),
        },
    )
}

/// Reads a webhook (without its secret).
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The webhook.", body = WebhookViewBody),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn get(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = path_resource("webhook", &id)?;
    match ctx.store.webhook(&id).await? {
        Some(view) => json(StatusCode::OK, &WebhookViewBody::from(&view)),
        None => Err(not_found(&id)),
    }
}

/// Deletes a webhook: no further deliveries; pending retries are cancelled. With an
/// `Idempotency-Key`, a retry replays the first answer (`204`).
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "Webhook id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional"),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "`invalid_path`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_request_in_flight`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_resource("webhook", &id)?;
    execute(
        &ctx,
        Request::new("DELETE", &uri, &headers, b""),
        Mutation::DeleteWebhook { id },
    )
    .await
}

/// A webhook's latest delivery attempts, newest first: when, how long, the receiver's
/// status or the transport error, and whether the delivery is done, retrying or given up.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id"), AttemptsParams),
    responses(
        (status = 200, description = "The latest attempts.", body = AttemptListBody),
        (status = 400, description = "`invalid_path`, `invalid_query`", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
)]
pub(crate) async fn deliveries(
    State(ctx): State<Shared>,
    PathParam(id): PathParam,
    QueryParams(params): QueryParams<AttemptsParams>,
) -> Result<Response, ApiError> {
    let id = path_resource("webhook", &id)?;
    let limit = params.parse()?;
    if ctx.store.webhook(&id).await?.is_none() {
        return Err(not_found(&id));
    }
    let attempts = ctx.store.delivery_attempts(&id, limit).await?;
    json(
        StatusCode::OK,
        &AttemptListBody {
            attempts: attempts.iter().map(AttemptBody::from).collect(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (generated_secret(), generated_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
        assert!(a.starts_with("whsec_"));
    }
}
