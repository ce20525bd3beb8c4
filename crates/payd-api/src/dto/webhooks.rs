//! Webhook registrations and delivery attempts.

use axum::http::Uri;
use payd_domain::ResourceId;
use payd_domain::timestamp::format_ms;
use payd_ports::{AttemptView, WebhookView};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::parse_body;
use crate::error::{ApiError, Code};

/// Longest webhook URL, in characters.
pub(crate) const URL_LEN_MAX: usize = 2_048;
/// Shortest client-chosen secret.
pub(crate) const SECRET_LEN_MIN: usize = 16;
/// Longest client-chosen secret.
pub(crate) const SECRET_LEN_MAX: usize = 256;

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
    pub(crate) webhooks: Vec<WebhookViewBody>,
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
    pub(crate) fn parse(&self) -> Result<u32, ApiError> {
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
    pub(crate) attempts: Vec<AttemptBody>,
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
}
