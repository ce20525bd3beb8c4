//! Webhooks: register an endpoint (URL + signing secret), list, read, delete, and read its
//! latest delivery attempts. The deliveries themselves are the engine's
//! `WebhookDeliverer`; the wire types live here, next to their only handlers.
//!
//! A webhook receives every event created after its registration (none from before), as a
//! signed `POST` of the event's JSON (the `Event` schema of `GET /events`): see
//! `payd_domain::webhook` for the signature scheme.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use payd_domain::ResourceId;
use payd_domain::timestamp::format_ms;
use payd_ports::{AttemptView, Mutation, NewWebhook, WebhookView};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{Shared, execute, generated_resource_id, json};
use crate::dto::parse_body;
use crate::dto::wallet::path_resource;
use crate::error::{ApiError, Code, ErrorBody};
use crate::extract::{JsonBytes, PathParam, QueryParams};
use crate::idempotency::Request;

/// Longest webhook URL, in characters.
pub(crate) const URL_LEN_MAX: usize = 2_048;
/// Shortest client-chosen secret.
pub(crate) const SECRET_LEN_MIN: usize = 16;
/// Longest client-chosen secret.
pub(crate) const SECRET_LEN_MAX: usize = 256;

// ---------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------

/// `POST /webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookRequest)]
pub(crate) struct WebhookBody<'a> {
    /// The webhook id (1–64 of `A-Z a-z 0-9 . _ : -`); a UUIDv7 is generated when absent.
    /// Ids are never reused, also after a delete.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "orders-service")]
    id: Option<&'a RawValue>,
    /// Where events are POSTed: an absolute `http` or `https` URL, at most 2048
    /// characters.
    #[serde(borrow)]
    #[schema(value_type = String, example = "https://example.com/payd/events")]
    url: Option<&'a RawValue>,
    /// The HMAC-SHA256 key of the signatures: 16–256 printable ASCII characters without
    /// spaces. Generated (and returned once, in this response) when absent.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "whsec_0123456789abcdef")]
    secret: Option<&'a RawValue>,
}

/// A parsed registration.
#[derive(Debug)]
pub(crate) struct WebhookRequest {
    pub(crate) id: Option<ResourceId>,
    pub(crate) url: String,
    pub(crate) secret: Option<String>,
}

fn string_field(name: &str, raw: Option<&RawValue>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|_| ApiError::invalid(name, "must be a string")),
    }
}

/// Checks a webhook URL: absolute, `http` or `https`, with a host, at most
/// [`URL_LEN_MAX`] characters.
pub(crate) fn check_url(url: &str) -> Result<(), ApiError> {
    if url.chars().count() > URL_LEN_MAX {
        return Err(ApiError::invalid(
            "url",
            format!("must be at most {URL_LEN_MAX} characters"),
        ));
    }
    let parsed: Uri = url
        .parse()
        .map_err(|_| ApiError::invalid("url", "is not a valid absolute URL"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(ApiError::invalid(
                "url",
                "must start with http:// or https://",
            ));
        }
    }
    let host = parsed.authority().map(|a| a.host()).unwrap_or_default();
    if host.is_empty() {
        return Err(ApiError::invalid("url", "must name a host"));
    }
    Ok(())
}

pub(crate) fn parse_webhook(bytes: &[u8]) -> Result<WebhookRequest, ApiError> {
    let body: WebhookBody<'_> = parse_body(bytes)?;
    let id = string_field("id", body.id)?
        .map(|text| ResourceId::parse(&text).map_err(|error| ApiError::invalid("id", error)))
        .transpose()?;
    let url = string_field("url", body.url)?.ok_or_else(|| ApiError::missing("url"))?;
    check_url(&url)?;
    let secret = string_field("secret", body.secret)?;
    if let Some(secret) = &secret {
        let length = secret.chars().count();
        if !(SECRET_LEN_MIN..=SECRET_LEN_MAX).contains(&length) {
            return Err(ApiError::invalid(
                "secret",
                format!("must be {SECRET_LEN_MIN} to {SECRET_LEN_MAX} characters"),
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(
                "secret",
                "must be printable ASCII without spaces",
            ));
        }
    }
    Ok(WebhookRequest { id, url, secret })
}

/// A fresh secret: `whsec_` and 64 hex digits from two random UUIDs (244 random bits).
fn generated_secret() -> String {
    format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A registered webhook (its secret is never shown again after creation).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Webhook)]
pub(crate) struct WebhookViewBody {
    #[schema(example = "orders-service")]
    id: String,
    #[schema(example = "https://example.com/payd/events")]
    url: String,
    /// The newest event at registration (`null` if there was none): the webhook receives
    /// the events after it.
    #[schema(example = "evt_41")]
    after_event: Option<String>,
    created_at: String,
}

impl From<&WebhookView> for WebhookViewBody {
    fn from(view: &WebhookView) -> WebhookViewBody {
        WebhookViewBody {
            id: view.id.to_string(),
            url: view.url.clone(),
            after_event: (view.after_seq > 0).then(|| format!("evt_{}", view.after_seq)),
            created_at: format_ms(view.created_at_ms),
        }
    }
}

/// The answer to a registration: the webhook and its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookCreated)]
pub(crate) struct WebhookCreatedBody {
    #[serde(flatten)]
    #[schema(inline)]
    webhook: WebhookViewBody,
    /// The signing secret. Returned only here: keep it.
    #[schema(example = "whsec_0123456789abcdef")]
    secret: String,
}

impl WebhookCreatedBody {
    pub(crate) fn new(view: &WebhookView, secret: String) -> WebhookCreatedBody {
        WebhookCreatedBody {
            webhook: WebhookViewBody::from(view),
            secret,
        }
    }
}

/// `GET /webhooks`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookList)]
pub(crate) struct WebhookListBody {
    webhooks: Vec<WebhookViewBody>,
}

/// Query of `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttemptsParams {
    /// How many attempts, 1..=1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

impl AttemptsParams {
    fn parse(&self) -> Result<u32, ApiError> {
        match &self.limit {
            None => Ok(100),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=1_000).contains(limit))
                .ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidQuery,
                        "`limit` must be an integer from 1 to 1000",
                    )
                }),
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookAttempt)]
pub(crate) struct AttemptBody {
    /// The event delivered.
    #[schema(example = "evt_42")]
    event: String,
    /// 1 for the first attempt of this event.
    attempt: u32,
    attempted_at: String,
    duration_ms: u64,
    /// The receiver's HTTP status; `null` if it did not answer.
    #[schema(example = 500)]
    status: Option<u16>,
    /// Why it failed (`HTTP 500`, `connection failed: ...`, `timed out ...`).
    error: Option<String>,
    /// `delivered`, `retrying` or `gave_up` (the last attempt of a delivery that failed
    /// for the whole retry window).
    #[schema(example = "retrying")]
    result: &'static str,
}

impl From<&AttemptView> for AttemptBody {
    fn from(view: &AttemptView) -> AttemptBody {
        AttemptBody {
            event: format!("evt_{}", view.event_seq),
            attempt: view.attempt,
            attempted_at: format_ms(view.at_ms),
            duration_ms: view.duration_ms,
            status: view.status,
            error: view.error.clone(),
            result: view.result.as_str(),
        }
    }
}

/// `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookAttemptList)]
pub(crate) struct AttemptListBody {
    /// Newest first.
    attempts: Vec<AttemptBody>,
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
    let webhooks = ctx.webhooks.webhooks().await?;
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
    match ctx.webhooks.webhook(&id).await? {
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
    if ctx.webhooks.webhook(&id).await?.is_none() {
        return Err(not_found(&id));
    }
    let attempts = ctx.webhooks.delivery_attempts(&id, limit).await?;
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
    fn registrations_parse() {
        let r = parse_webhook(br#"{"url":"https://example.com/hooks?x=1"}"#).unwrap();
        assert_eq!(r.url, "https://example.com/hooks?x=1");
        assert!(r.id.is_none() && r.secret.is_none());
        let r = parse_webhook(
            br#"{"id":"w-1","url":"http://127.0.0.1:8080/h","secret":"0123456789abcdef"}"#,
        )
        .unwrap();
        assert_eq!(r.id.unwrap().as_str(), "w-1");
        assert_eq!(r.secret.as_deref(), Some("0123456789abcdef"));
        let long_url = format!(r#"{{"url":"https://example.com/{}"}}"#, "a".repeat(2_048));
        let long_secret = format!(r#"{{"url":"http://h/","secret":"{}"}}"#, "s".repeat(257));
        for (body, code) in [
            (&br#"{}"#[..], Code::MissingField),
            (br#"{"url":null}"#, Code::MissingField),
            (br#"{"url":1}"#, Code::InvalidField),
            (br#"{"url":"ftp://example.com/"}"#, Code::InvalidField),
            (br#"{"url":"example.com/hook"}"#, Code::InvalidField),
            (br#"{"url":"/hook"}"#, Code::InvalidField),
            (br#"{"url":"http://exa mple.com/"}"#, Code::InvalidField),
            (long_url.as_bytes(), Code::InvalidField),
            (
                br#"{"url":"http://h/","secret":"short"}"#,
                Code::InvalidField,
            ),
            (long_secret.as_bytes(), Code::InvalidField),
            (
                br#"{"url":"http://h/","secret":"has spaces in it, sixteen+"}"#,
                Code::InvalidField,
            ),
            (br#"{"url":"http://h/","id":"a/b"}"#, Code::InvalidField),
            (br#"{"url":"http://h/","extra":1}"#, Code::InvalidField),
            (b"{", Code::MalformedJson),
        ] {
            assert_eq!(
                parse_webhook(body).err().map(|e| e.code),
                Some(code),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (generated_secret(), generated_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
        assert!(a.starts_with("whsec_"));
    }
}
